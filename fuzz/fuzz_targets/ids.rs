//! Ids and times as text: every id type, timestamps, signers and media object keys
//! (`FromStr` and serde), and TURN usernames; each accepted value must round-trip.
#![no_main]

use cinder_fuzz::{json, text};
use cinder_proto::calls::turn_expiry;
use cinder_proto::media::ObjectKey;
use cinder_proto::{ChannelId, EnvelopeId, MediaId, RoomId, Signer, Timestamp, UserId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        text::<RoomId>(s);
        text::<ChannelId>(s);
        text::<UserId>(s);
        text::<MediaId>(s);
        text::<EnvelopeId>(s);
        text::<Timestamp>(s);
        text::<Signer>(s);
        text::<ObjectKey>(s);
        let _ = turn_expiry(s);
    }
    // The same types inside JSON, as bodies, paths and responses carry them.
    json::<RoomId>(data);
    json::<ChannelId>(data);
    json::<UserId>(data);
    json::<MediaId>(data);
    json::<EnvelopeId>(data);
    json::<Timestamp>(data);
});

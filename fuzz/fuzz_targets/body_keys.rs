//! The key directory's request bodies: a key bundle (publish, rotate), a lookup, an
//! envelope dropped into an inbox.
#![no_main]

use cinder_fuzz::body;
use cinder_proto::KeyBundle;
use cinder_proto::api::{DropEnvelope, LookupRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(bundle) = body::<KeyBundle>(data) {
        // What publishing checks next: never a panic, whatever the fields hold.
        let _ = bundle.verify_genesis();
        let _ = bundle.verify_successor(&bundle);
    }
    body::<LookupRequest>(data);
    body::<DropEnvelope>(data);
});

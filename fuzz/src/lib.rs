//! What the fuzz targets share: the round-trip checks every accepted value must pass.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses `data` as the server parses a request body of type `T`
/// (`cinder_server::extract::parse_json`). A refusal must map to a status and code; an
/// accepted value must serialise, and parse back from that to the same value.
pub fn body<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    match cinder_server::extract::parse_json::<T>(data) {
        Ok(value) => {
            let json = serde_json::to_vec(&value).expect("an accepted body re-serialises");
            let again: T = cinder_server::extract::parse_json(&json).unwrap_or_else(|e| {
                panic!(
                    "a re-serialised body does not parse: {e}: {}",
                    String::from_utf8_lossy(&json)
                )
            });
            assert_eq!(again, value, "a round trip changed the body");
            Some(value)
        }
        Err(e) => {
            let _ = e.status_and_code();
            let _ = e.to_string();
            None
        }
    }
}

/// Parses `data` as the client parses a server's JSON (`serde_json::from_slice`); an
/// accepted value must serialise and parse back to the same value.
pub fn json<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let value: T = serde_json::from_slice(data).ok()?;
    let json = serde_json::to_vec(&value).expect("an accepted value re-serialises");
    let again: T = serde_json::from_slice(&json).unwrap_or_else(|e| {
        panic!(
            "a re-serialised value does not parse: {e}: {}",
            String::from_utf8_lossy(&json)
        )
    });
    assert_eq!(again, value, "a round trip changed the value");
    Some(value)
}

/// Text `T` parses from `s` (`FromStr`), if any: its `Display` form must parse back to
/// the same value, and so must its JSON form through serde.
pub fn text<T>(s: &str) -> Option<T>
where
    T: std::str::FromStr + std::fmt::Display + PartialEq + Debug,
{
    let value: T = s.parse().ok()?;
    let shown = value.to_string();
    let again: T = shown
        .parse()
        .unwrap_or_else(|_| panic!("{shown:?} (shown from {s:?}) does not parse back"));
    assert_eq!(again, value, "{s:?} did not round-trip");
    Some(value)
}

/// Fixed keys and a room for the client targets: one user (`me`), a room whose first state
/// lists `me` as its admin and one text channel, and the keys of epoch 1.
pub mod room {
    use cinder_client::Identity;
    use cinder_client::fuzzing;
    use cinder_client::rooms::{Membership, Secret32, Spine};
    use cinder_proto::{Blob, ChannelId, RoomId};

    /// The room.
    pub const ROOM: RoomId = RoomId([0x11; 16]);
    /// Its one channel.
    pub const CHANNEL: ChannelId = ChannelId([0x22; 16]);
    /// Seeds of `me`.
    pub const ME: ([u8; 32], [u8; 32]) = ([1; 32], [2; 32]);
    /// Seeds of another user.
    pub const OTHER: ([u8; 32], [u8; 32]) = ([3; 32], [4; 32]);

    /// `me`.
    pub fn me() -> Identity {
        fuzzing::identity(ME.0, ME.1)
    }

    /// The other user.
    pub fn other() -> Identity {
        fuzzing::identity(OTHER.0, OTHER.1)
    }

    /// The master key of epoch 1.
    pub fn master() -> Secret32 {
        fuzzing::secret([0x33; 32])
    }

    /// The channel key of epoch 1.
    pub fn channel_key() -> Secret32 {
        fuzzing::secret([0x44; 32])
    }

    /// The room's first state, as its JSON value (for targets to vary).
    pub fn genesis_json() -> serde_json::Value {
        let me = me();
        serde_json::json!({
            "room": ROOM,
            "version": 1,
            "prev": Blob(vec![0; 32]),
            "epoch": 1,
            "name": "fuzz",
            "members": [{ "user_id": me.user_id(), "name": "me", "admin": true }],
            "former": [],
            "channels": [{
                "id": CHANNEL, "name": "general", "voice": false,
                "burn_secs": 86400, "since_epoch": 1,
            }],
            "admin_key": me.bundle.sign_key,
            "member_key": fuzzing::member_key(&master(), ROOM),
            "channel_keys": { CHANNEL.to_string(): fuzzing::channel_key(&channel_key(), ROOM, CHANNEL) },
        })
    }

    /// The room's first state.
    pub fn genesis() -> Spine {
        serde_json::from_value(genesis_json()).expect("the fixture state parses")
    }

    /// `me`'s membership at the first state, holding the keys of epoch 1.
    pub fn membership() -> Membership {
        let spine = genesis();
        fuzzing::membership(
            &spine,
            &Blob(vec![0; 32]),
            &master(),
            &[(CHANNEL, 1, channel_key())],
        )
        .expect("the fixture membership parses")
    }
}

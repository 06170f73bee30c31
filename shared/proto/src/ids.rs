//! Identifiers and time, parsed once at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

use crate::{ProtoError, VerifyKey};

/// Parses exactly `N` bytes of lowercase hex.
fn parse_hex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], ProtoError> {
    let valid = s.len() == N * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(ProtoError::BadId(what));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| ProtoError::BadId(what))?;
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 16]);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = ProtoError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_hex(s, $what).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(
    /// A user's id: 32 lowercase hex characters, derived from the user's first Ed25519 key.
    ///
    /// Deriving the id from the first key makes the directory self-certifying: the server
    /// cannot answer a lookup for a fresh id with a key of its own choosing, because the id
    /// would not match. Later keys hang off the first by a chain of rotation signatures.
    UserId,
    "user id"
);

hex_id!(
    /// An inbox envelope's id: 8 bytes of creation time (milliseconds, big-endian) then
    /// 8 random bytes, so ids sort by arrival and never collide in practice.
    EnvelopeId,
    "envelope id"
);

hex_id!(
    /// A room's id: 16 random bytes chosen by the creating client.
    RoomId,
    "room id"
);

hex_id!(
    /// A channel's id: 16 random bytes chosen by the client that adds the channel. Unique
    /// only within its room; the server always addresses a channel with its room.
    ChannelId,
    "channel id"
);

hex_id!(
    /// A media object's id: 16 random bytes chosen by the server when it hands out an
    /// upload URL. It names the object under its room and channel (or the room's avatars).
    MediaId,
    "media id"
);

impl UserId {
    /// The id that belongs to a user whose first signing key is `key`.
    pub fn derive(key: &VerifyKey) -> Self {
        let digest = Sha256::new()
            .chain_update(b"cinder/user-id/v1\0")
            .chain_update(key.as_bytes())
            .finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        Self(id)
    }
}

impl EnvelopeId {
    /// Builds an id from its creation time and 8 random bytes.
    pub fn new(created_ms: u64, random: [u8; 8]) -> Self {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&created_ms.to_be_bytes());
        id[8..].copy_from_slice(&random);
        Self(id)
    }
}

/// Seconds since the Unix epoch. The server's unit for every deadline and window.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current time from the system clock. Only entry points call this: domain code
    /// takes `now` as a parameter so tests can set it.
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(secs)
    }

    /// This time plus `secs` seconds, saturating.
    pub fn plus(self, secs: u64) -> Self {
        Self(self.0.saturating_add(secs))
    }

    /// Absolute distance in seconds between two times.
    pub fn distance(self, other: Self) -> u64 {
        self.0.abs_diff(other.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Timestamp {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ProtoError::BadId("timestamp"));
        }
        s.parse()
            .map(Self)
            .map_err(|_| ProtoError::BadId("timestamp"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_id_accepts_only_lowercase_hex_of_the_right_length() {
        let id: UserId = "00112233445566778899aabbccddeeff".parse().unwrap();
        assert_eq!(id.to_string(), "00112233445566778899aabbccddeeff");
        for bad in [
            "",
            "00112233445566778899AABBCCDDEEFF",
            "0011",
            "zz112233445566778899aabbccddeeff",
        ] {
            assert!(bad.parse::<UserId>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn envelope_ids_sort_by_creation_time() {
        let early = EnvelopeId::new(1_000, [0xff; 8]);
        let late = EnvelopeId::new(1_001, [0; 8]);
        assert!(early < late);
        assert!(early.to_string() < late.to_string());
    }

    #[test]
    fn timestamp_parse_rejects_signs_and_junk() {
        assert_eq!(
            "1700000000".parse::<Timestamp>(),
            Ok(Timestamp(1_700_000_000))
        );
        for bad in ["", "-1", "+5", "1e9", " 1", "99999999999999999999999"] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad:?} was accepted");
        }
    }
}

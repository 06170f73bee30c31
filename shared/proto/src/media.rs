//! Encrypted media on the wire. Bytes never pass through a function: the server checks a
//! capability and hands out a short-lived URL for one object (S3 presigned, or the dev
//! server's HMAC-signed equivalent of the same shape), and the client moves ciphertext
//! straight to or from storage. `docs/API.md` ("Media") has the routes and the format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ChannelId, MediaId, RoomId, Timestamp};

/// Bounds of media.
pub mod limits {
    /// Default largest object, in ciphertext bytes (configurable per deployment).
    pub const DEFAULT_MAX_MEDIA_BYTES: u64 = 100 * 1024 * 1024;
    /// How long an upload or download URL stays valid, in seconds.
    pub const URL_TTL_SECS: u64 = 300;
    /// Most objects one message may link.
    pub const MAX_MEDIA_PER_MESSAGE: usize = 16;
}

/// `POST /media/{room}/{channel}/{number}` (channel capability, for a reserved message
/// number) or `POST /media/{room}/avatars` (member capability): a URL to upload one object
/// of exactly `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadRequest {
    /// The ciphertext's exact length; the URL accepts no other.
    pub size: u64,
}

/// Where and how to upload: `PUT` the bytes to `url` with exactly `headers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadGrant {
    /// The new object's id, to link from a message (or a member's avatar).
    pub media_id: MediaId,
    /// Where to `PUT` the bytes.
    pub url: String,
    /// Headers the upload must carry, as signed (`content-length` among them).
    pub headers: BTreeMap<String, String>,
    /// When the URL stops working.
    pub expires_at: Timestamp,
}

/// Where to `GET` one object's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadGrant {
    /// Where to `GET` the bytes.
    pub url: String,
    /// When the URL stops working.
    pub expires_at: Timestamp,
}

/// Where an object lives: the storage key is derived from this alone, so a capability for
/// one channel (or room) reaches no other's objects, and an attachment belongs to exactly
/// one message number: no other message can link it, and it goes when that message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKey {
    /// An attachment of a message in a channel.
    Attachment {
        /// The room.
        room: RoomId,
        /// The channel.
        channel: ChannelId,
        /// The message it belongs to.
        number: u64,
        /// The object.
        media: MediaId,
    },
    /// A member's avatar, as sealed for one room. Under its own prefix, apart from
    /// attachments: attachments burn (and the bucket's lifecycle rule expires what the burn
    /// missed), avatars do not.
    Avatar {
        /// The room.
        room: RoomId,
        /// The object.
        media: MediaId,
    },
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Attachment {
                room,
                channel,
                number,
                media,
            } => write!(f, "rooms/{room}/channels/{channel}/{number}/{media}"),
            Self::Avatar { room, media } => write!(f, "avatars/{room}/{media}"),
        }
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = crate::ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || crate::ProtoError::BadId("object key");
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["rooms", room, "channels", channel, number, media] => Ok(Self::Attachment {
                room: room.parse()?,
                channel: channel.parse()?,
                number: number
                    .parse()
                    .ok()
                    .filter(|n: &u64| *n > 0 && n.to_string() == *number)
                    .ok_or_else(bad)?,
                media: media.parse()?,
            }),
            ["avatars", room, media] => Ok(Self::Avatar {
                room: room.parse()?,
                media: media.parse()?,
            }),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_keys_print_and_parse_back() {
        let keys = [
            ObjectKey::Attachment {
                room: RoomId([1; 16]),
                channel: ChannelId([2; 16]),
                number: 7,
                media: MediaId([3; 16]),
            },
            ObjectKey::Avatar {
                room: RoomId([1; 16]),
                media: MediaId([4; 16]),
            },
        ];
        for key in keys {
            assert_eq!(key.to_string().parse::<ObjectKey>(), Ok(key));
        }
        let (r, c, m) = (RoomId([1; 16]), ChannelId([2; 16]), MediaId([3; 16]));
        for bad in [
            String::new(),
            "rooms".into(),
            "avatars/x/y".into(),
            format!("rooms/{r}/avatars/{m}"),
            "rooms/../../etc/passwd".into(),
            format!("rooms/{r}/channels/{c}/0/{m}"),
            format!("rooms/{r}/channels/{c}/07/{m}"),
            format!("rooms/{r}/channels/{c}/+7/{m}"),
            format!("rooms/{r}/channels/{c}/7/{m}/x"),
        ] {
            let bad = bad.as_str();
            assert!(bad.parse::<ObjectKey>().is_err(), "{bad}");
        }
    }
}

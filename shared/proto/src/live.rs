//! The live socket: a WebSocket on which the server tells a client, at once, that a channel
//! it proved it may read has a new or deleted message. A notice names only the room, the
//! channel and the number, never the content or the sender: nothing the server does not
//! already see. The client then reads the message itself, with every check it makes of a
//! page.
//!
//! Frames are JSON text. The client sends [`ClientFrame`]s; the server sends
//! [`ServerFrame`]s. A subscription proves the channel capability with the signed-request
//! scheme of the HTTP API: a [`Proof`] is the signature of `POST /live/{room}/{channel}`
//! with an empty body, by the channel's capability key, with a timestamp within the window
//! and a nonce the server spends once.

use serde::{Deserialize, Serialize};

use crate::auth::{RequestSignature, Signer};
use crate::{ChannelId, ErrorCode, Nonce, RoomId, Signature, Timestamp};

/// Bounds of the live socket.
pub mod limits {
    /// Largest frame a client may send, in bytes.
    pub const MAX_FRAME_BYTES: usize = 32 * 1024;
    /// Most channels one frame subscribes to or drops.
    pub const MAX_CHANNELS_PER_FRAME: usize = 64;
    /// Most channels one connection follows.
    pub const MAX_CHANNELS_PER_CONNECTION: usize = 256;
    /// How long a subscription is kept without being renewed: API Gateway closes every
    /// WebSocket after two hours, so anything older belongs to a dead connection.
    pub const SUBSCRIPTION_SECS: u64 = 2 * 3600;
}

/// The method a subscription proof signs.
pub const PROOF_METHOD: &str = "POST";

/// The path a subscription proof signs for one channel.
pub fn proof_path(room: RoomId, channel: ChannelId) -> String {
    format!("/live/{room}/{channel}")
}

/// A channel, as frames name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// The room.
    pub room: RoomId,
    /// The channel.
    pub channel: ChannelId,
}

/// Proof that the subscriber holds a channel's capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proof {
    /// The room.
    pub room: RoomId,
    /// The channel.
    pub channel: ChannelId,
    /// When it was signed (seconds since the Unix epoch).
    pub timestamp: Timestamp,
    /// 16 random bytes, spent once.
    pub nonce: Nonce,
    /// The channel capability's signature of `POST /live/{room}/{channel}` (empty body).
    pub signature: Signature,
}

impl Proof {
    /// Signs a proof for `place` with the channel's capability key.
    pub fn sign(
        key: &ed25519_dalek::SigningKey,
        place: Place,
        timestamp: Timestamp,
        nonce: Nonce,
    ) -> Self {
        let sig = RequestSignature::sign(
            key,
            Signer::Channel(place.room, place.channel),
            PROOF_METHOD,
            &proof_path(place.room, place.channel),
            b"",
            timestamp,
            nonce,
        );
        Self {
            room: place.room,
            channel: place.channel,
            timestamp,
            nonce,
            signature: sig.signature,
        }
    }

    /// The request signature this proof stands for, as the server checks it.
    pub fn as_request(&self) -> RequestSignature {
        RequestSignature {
            signer: Signer::Channel(self.room, self.channel),
            timestamp: self.timestamp,
            nonce: self.nonce,
            signature: self.signature,
        }
    }

    /// The channel it is for.
    pub fn place(&self) -> Place {
        Place {
            room: self.room,
            channel: self.channel,
        }
    }
}

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Follow these channels (renewing any already followed).
    Subscribe {
        /// One proof per channel, at most [`limits::MAX_CHANNELS_PER_FRAME`].
        channels: Vec<Proof>,
    },
    /// Stop following these channels.
    Unsubscribe {
        /// At most [`limits::MAX_CHANNELS_PER_FRAME`].
        channels: Vec<Place>,
    },
}

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerFrame {
    /// A message was posted.
    Message {
        /// The room.
        room: RoomId,
        /// The channel.
        channel: ChannelId,
        /// Its number.
        number: u64,
    },
    /// A message was deleted.
    Deleted {
        /// The room.
        room: RoomId,
        /// The channel.
        channel: ChannelId,
        /// Its number.
        number: u64,
    },
    /// A subscription was accepted: notices for this channel follow.
    Subscribed {
        /// The room.
        room: RoomId,
        /// The channel.
        channel: ChannelId,
    },
    /// A subscription was refused (its proof, or a bound); the others in the frame stand.
    Refused {
        /// The room.
        room: RoomId,
        /// The channel.
        channel: ChannelId,
        /// Why, as the HTTP API would say it.
        code: ErrorCode,
    },
    /// A frame the server could not take at all.
    Error {
        /// Why.
        code: ErrorCode,
        /// For people.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_and_write_as_documented() {
        let frame: ClientFrame =
            serde_json::from_str(r#"{"action":"unsubscribe","channels":[]}"#).unwrap();
        assert_eq!(frame, ClientFrame::Unsubscribe { channels: vec![] });
        let notice = ServerFrame::Message {
            room: RoomId([1; 16]),
            channel: ChannelId([2; 16]),
            number: 7,
        };
        let json = serde_json::to_value(&notice).unwrap();
        assert_eq!(json["type"], "message");
        assert_eq!(json["number"], 7);
        assert!(serde_json::from_str::<ClientFrame>(r#"{"action":"shout"}"#).is_err());
    }

    #[test]
    fn a_proof_is_the_signature_of_its_channels_subscribe_request() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let place = Place {
            room: RoomId([1; 16]),
            channel: ChannelId([2; 16]),
        };
        let proof = Proof::sign(&key, place, Timestamp(1_800_000_000), Nonce([3; 16]));
        let sig = proof.as_request();
        let msg = crate::auth::canonical_request(
            PROOF_METHOD,
            &proof_path(place.room, place.channel),
            b"",
            &sig.signer,
            sig.timestamp,
            &sig.nonce,
        );
        let verify = crate::VerifyKey::from(key.verifying_key());
        assert_eq!(verify.verify(msg.as_bytes(), &proof.signature), Ok(()));
        let other = proof_path(place.room, ChannelId([9; 16]));
        let moved = crate::auth::canonical_request(
            PROOF_METHOD,
            &other,
            b"",
            &sig.signer,
            sig.timestamp,
            &sig.nonce,
        );
        assert!(verify.verify(moved.as_bytes(), &proof.signature).is_err());
    }
}

//! Rooms and messages on the wire.
//!
//! A room's *spine* is one ciphertext (members, channels, burn times), sealed under the room
//! master key; the server keeps it with the verification keys of the room's capabilities.
//! A channel's *shards* are its messages, one ciphertext each, numbered by the server and
//! burnt at `burn_at`. `docs/API.md` ("Room cryptography") has the formats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Blob, ChannelId, RoomId, Timestamp, VerifyKey};

/// Bounds of rooms and messages.
pub mod limits {
    /// Largest spine ciphertext, in bytes.
    pub const MAX_SPINE_BYTES: usize = 128 * 1024;
    /// Most channels in a room.
    pub const MAX_CHANNELS: usize = 64;
    /// Largest message ciphertext, in bytes.
    pub const MAX_SHARD_BYTES: usize = 64 * 1024;
    /// Most messages in one page.
    pub const MAX_SHARD_PAGE: usize = 100;
    /// Most spine versions in one page of a room's spine log. Spines are up to
    /// [`MAX_SPINE_BYTES`] each: 20 of them are 2.5 MiB, about 3.5 MB as base64url JSON,
    /// and under 4.7 MB even if the Lambda runtime base64-encodes the body once more, so a
    /// full page stays below the 6 MB limit on a Lambda (API Gateway proxy) response.
    pub const MAX_SPINE_PAGE: usize = 20;
    /// Largest request body of the spine and shards functions.
    pub const MAX_ROOMS_BODY: usize = 256 * 1024;
    /// Bytes of a hold's proof ([`super::Reserved::hold`]).
    pub const HOLD_BYTES: usize = 16;
    /// How long a held number waits for its message: long enough to upload the largest
    /// attachments first, after which the number is never used.
    pub const HOLD_SECS: u64 = 3600;
}

/// A room as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// The room.
    pub room_id: RoomId,
    /// 1 at creation, one more per update.
    pub version: u64,
    /// Sealed under the room master key, with the version inside.
    pub spine: Blob,
    /// Verifies `admin:<room>` signatures: updates, deletion, moderation.
    pub admin_key: VerifyKey,
    /// Verifies `member:<room>` signatures: reading the spine.
    pub member_key: VerifyKey,
    /// Per channel, the key that verifies `channel:<room>/<channel>` signatures.
    pub channels: BTreeMap<ChannelId, VerifyKey>,
}

/// `POST /rooms`, signed `admin:<room>` by the admin key in the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRoom {
    /// A fresh random id.
    pub room_id: RoomId,
    /// The first spine (version 1).
    pub spine: Blob,
    /// The admin capability.
    pub admin_key: VerifyKey,
    /// The member capability.
    pub member_key: VerifyKey,
    /// The channels' capabilities.
    #[serde(default)]
    pub channels: BTreeMap<ChannelId, VerifyKey>,
}

/// `PUT /rooms/{room}`, signed `admin:<room>`: a new spine and capability set, if the room is
/// still at `expected_version`. Removing a member replaces every key here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRoom {
    /// The version the admin read.
    pub expected_version: u64,
    /// The new spine, sealed for `expected_version + 1`.
    pub spine: Blob,
    /// The admin capability (may be rotated).
    pub admin_key: VerifyKey,
    /// The member capability.
    pub member_key: VerifyKey,
    /// The channels' capabilities; a channel left out is removed.
    pub channels: BTreeMap<ChannelId, VerifyKey>,
}

/// One past or current version of a room's sealed spine, as the server logged it when that
/// version was written. Clients check the whole sequence, not only the latest version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpineEntry {
    /// The room version this spine was sealed for.
    pub version: u64,
    /// The sealed spine of that version, byte for byte as it was stored.
    pub spine: Blob,
}

/// `GET /rooms/{room_id}/spines?after=N`: versions above N, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpinePage {
    /// Up to [`limits::MAX_SPINE_PAGE`] versions above the cursor, in version order.
    pub entries: Vec<SpineEntry>,
    /// Pass as `after` for the next page; present when this page is full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// A message number held for one poster: `POST /messages/{room}/{channel}/numbers`
/// answers with one, and so does a post whose number was taken (`number_taken`), so that
/// the poster's one retry succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    /// Unique in the channel, and higher than every number taken before it.
    pub number: u64,
    /// Proof of the hold: post under `number` with this as [`PostShard::hold`].
    pub hold: Blob,
    /// When the hold lapses; the number is then never used.
    pub expires_at: Timestamp,
}

/// `PUT /messages/{room}/{channel}/{number}`: post a message, either as the channel's next
/// number (one past the highest taken), or under a number held for the poster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostShard {
    /// Sealed under the channel key; room, channel, number and burn_at are its associated data.
    pub ciphertext: Blob,
    /// When the message burns; at most the server's horizon from now.
    pub burn_at: Timestamp,
    /// SHA-256 of a secret only the sender can re-derive, which deletes the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_hash: Option<Blob>,
    /// The media objects the message links (uploaded to this channel): download URLs are
    /// issued for them only while the message lives, and they are deleted with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<crate::MediaId>,
    /// The [`Reserved::hold`] of a held number; absent when proposing the next number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Blob>,
}

/// A message as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Its number in the channel.
    pub number: u64,
    /// The sealed message.
    pub ciphertext: Blob,
    /// When it burns.
    pub burn_at: Timestamp,
    /// When the server stored it.
    pub posted_at: Timestamp,
    /// See [`PostShard::delete_hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_hash: Option<Blob>,
    /// See [`PostShard::media`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<crate::MediaId>,
}

/// One page of a channel, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPage {
    /// Messages after the cursor that have not burnt.
    pub shards: Vec<Shard>,
    /// Pass as `after` for the next page; present when this page is full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `DELETE /messages/{room}/{channel}/{number}` by the sender, signed by the channel: the
/// secret whose hash the message was posted with. An admin-signed delete needs no body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteShard {
    /// The delete secret.
    pub delete_secret: Blob,
}

//! Rooms, channels and messages from the client's side: every key is made and kept here,
//! and nothing the server says about a room is taken on its word.
//!
//! A room's state (its *spine*: name, members, admins, channels, key epoch, capability keys)
//! is a hash-chained sequence of versions, each signed by an admin's own directory key and
//! sealed under the room's master key. A client pins the version it joined at and accepts
//! only versions that extend it, each signed by an admin of the version before. Keys come
//! in epochs: removing a member starts a new epoch with a new master key and new channel
//! keys, and the signed state records, per channel, the last message number of the old
//! epoch, so readers refuse anything later under the old key.
//!
//! # Layout
//! - [`capabilities`]: the keys derived from master and channel keys, and request signing
//!   with them.
//! - [`state`]: the signed room state, its chain rules, and every change to a room:
//!   re-applied to the newest state when another admin changed it first, and leaving.
//! - [`invites`]: invitations, re-keyings and admin grants, HPKE-sealed and signed, and
//!   accepting them only where they match the signed state.
//! - [`messages`]: sealing, signing, opening and verifying channel messages.
//! - [`thread`]: a channel's verified messages folded into what a reader shows (edits,
//!   replies, reactions).
//! - [`avatars`]: members' pictures, sealed per room and epoch, pointed at by the state.

pub mod avatars;
pub mod capabilities;
pub mod invites;
pub mod messages;
pub mod state;
pub mod thread;

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce};
use cinder_proto::{Blob, ChannelId, RoomId};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ClientError;

pub use messages::{
    Break, Content, Continuity, Opened, Page, Received, Refusal, open_message, seal_content,
    seal_message, seal_message_with,
};
pub use state::{BurnChange, ChannelInfo, FormerMember, Spine, SpineMember};
pub use thread::{Thread, thread};

/// A 32-byte secret (room master key, channel key, admin seed), base64url in JSON. Its
/// bytes never leave this crate, and it serialises only into the crate's own storage.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Deserialize)]
#[serde(try_from = "Blob")]
pub struct Secret32([u8; 32]);

impl Serialize for Secret32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::secret::guard::<S::Error>()?;
        s.serialize_str(&cinder_proto::encoding::encode(&self.0))
    }
}

impl Secret32 {
    /// A fresh random secret (a file key, say).
    pub fn random() -> Result<Self, ClientError> {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).map_err(|_| ClientError::Randomness)?;
        Ok(Self(s))
    }

    /// A secret from derived bytes.
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes, for this crate's own key schedules.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TryFrom<Blob> for Secret32 {
    type Error = &'static str;
    fn try_from(b: Blob) -> Result<Self, Self::Error> {
        b.0.as_slice()
            .try_into()
            .map(Self)
            .map_err(|_| "a key is 32 bytes")
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// One room's keys and the newest verified state, as kept in the enclave.
#[derive(Clone, Serialize, Deserialize)]
pub struct Membership {
    /// The room.
    pub room: RoomId,
    /// Master keys by epoch; the newest is current. Older ones open older spine versions
    /// while catching up.
    master_keys: BTreeMap<u64, Secret32>,
    /// The shared admin capability's seed, for admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin_key: Option<Secret32>,
    /// Per channel, its keys by epoch: the newest signs and seals, older ones open older
    /// messages (up to the cut-off the signed state records).
    channel_keys: BTreeMap<ChannelId, BTreeMap<u64, Secret32>>,
    /// The newest state verified along the chain from where this member joined.
    head: state::Head,
    /// Per channel, this user's last message: the next one counts on from it.
    #[serde(default)]
    sent: BTreeMap<ChannelId, messages::SentMark>,
    /// Avatars members asked this admin to put into the next state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    avatar_requests: BTreeMap<cinder_proto::UserId, avatars::AvatarRef>,
    /// After a removal or an admin change this admin stored: the members its new keys have
    /// not yet been sent to, and as what (re-sharing stopped part-way). Running the change
    /// again, or the next removal or admin change, sends them first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    owed_keys: BTreeMap<cinder_proto::UserId, invites::InviteKind>,
    /// A removal or admin change whose state write got no answer (a 5xx, or no
    /// connection): the keys that state was made with, kept until the room shows whether
    /// the server stored it. Without them a stored state would list keys nobody holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unsettled: Option<Box<state::Unsettled>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("room", &self.room)
            .field("version", &self.head.spine.version)
            .field("epoch", &self.head.spine.epoch)
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// The newest room state this membership has verified.
    pub fn spine(&self) -> &Spine {
        &self.head.spine
    }

    /// Whether members asked this admin to show avatars it has not signed into a state yet.
    pub fn has_avatar_requests(&self) -> bool {
        !self.avatar_requests.is_empty()
    }

    /// Whether this member holds a key for the channel.
    pub fn holds_channel_key(&self, channel: ChannelId) -> bool {
        self.channel_keys
            .get(&channel)
            .is_some_and(|k| !k.is_empty())
    }

    /// The hash of the newest verified state.
    pub(crate) fn head_hash(&self) -> &Blob {
        &self.head.hash
    }

    /// Whether this member holds the room's current admin capability.
    pub fn holds_admin_key(&self) -> bool {
        self.admin_key.as_ref().is_some_and(|k| {
            let key: cinder_proto::VerifyKey =
                capabilities::admin_capability(k).verifying_key().into();
            key == self.head.spine.admin_key
        })
    }
}

/// Seals `plaintext` under `key`: a random 96-bit nonce, then AES-256-GCM. Every key this
/// is used with is single-purpose (derived per room, channel and epoch).
pub(crate) fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<Blob, ClientError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| ClientError::Randomness)?;
    seal_with_nonce(key, &nonce, plaintext, aad)
}

/// [`seal`] under a given nonce: `nonce ‖ ciphertext ‖ tag`. Only [`seal`] and the known-answer
/// tests (`crate::vectors`) call it; a nonce must never repeat under a key.
pub(crate) fn seal_with_nonce(
    key: &[u8; 32],
    nonce: &[u8; 12],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Blob, ClientError> {
    let ct = Aes256Gcm::new(key.into())
        .encrypt(
            GcmNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ClientError::Internal("AES-GCM sealing failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(Blob(out))
}

/// Opens what [`seal`] made, or `None`.
pub(crate) fn open(key: &[u8; 32], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let (nonce, ct) = sealed.split_at_checked(12)?;
    Aes256Gcm::new(key.into())
        .decrypt(GcmNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

/// 16 random bytes: room and channel ids, nonces.
pub(crate) fn random_id() -> Result<[u8; 16], ClientError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| ClientError::Randomness)?;
    Ok(id)
}

#[cfg(test)]
mod hostile;

//! The keys a room's secrets derive, and requests signed with them.
//!
//! HKDF-SHA256 (salt `cinder/room/v1`) turns the master key into the spine key and the
//! `member:` capability's Ed25519 seed, and each channel key into its message keys and its
//! `channel:` capability's seed. The server holds only the capabilities' verification keys;
//! the signed room state holds them too, which is how a client checks that keys it is
//! handed are the room's: they must derive the verification keys an admin signed.
//!
//! A reader derives a channel key's message keys (`MessageKeys`) once per page and
//! epoch, not once per message.

use std::collections::BTreeMap;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use cinder_proto::{ChannelId, RoomId, VerifyKey};
use ed25519_dalek::SigningKey;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

use super::{Membership, Secret32};
use crate::ClientError;

const SALT: &[u8] = b"cinder/room/v1";

/// HKDF-SHA256 of `ikm` with Cinder's room salt and `label ‖ parts` as info.
pub(crate) fn derive(ikm: &[u8; 32], label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut info = label.to_vec();
    for p in parts {
        info.extend_from_slice(p);
    }
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit.
    let _ = Hkdf::<Sha256>::new(Some(SALT), ikm).expand(&info, &mut out);
    out
}

/// The `member:` capability of a master key.
pub(crate) fn member_capability(master: &Secret32, room: RoomId) -> SigningKey {
    SigningKey::from_bytes(&derive(&master.0, b"member-capability", &[&room.0]))
}

/// The key that seals spine versions under a master key.
pub(crate) fn spine_key(master: &Secret32, room: RoomId) -> [u8; 32] {
    derive(&master.0, b"spine", &[&room.0])
}

/// The `channel:` capability of a channel key.
pub(crate) fn channel_capability(key: &Secret32, room: RoomId, channel: ChannelId) -> SigningKey {
    SigningKey::from_bytes(&derive(
        &key.0,
        b"channel-capability",
        &[&room.0, &channel.0],
    ))
}

/// The AES-256-GCM key of a channel's messages under one channel key.
pub(crate) fn message_key(key: &Secret32, room: RoomId, channel: ChannelId) -> [u8; 32] {
    derive(&key.0, b"messages", &[&room.0, &channel.0])
}

/// The key whose HMAC commits a message ciphertext to its channel key.
pub(crate) fn commitment_key(key: &Secret32, room: RoomId, channel: ChannelId) -> [u8; 32] {
    derive(&key.0, b"message-commitment", &[&room.0, &channel.0])
}

/// HMAC-SHA256 keyed with the commitment key, before any input: cloned for each message.
pub(crate) fn commitment_mac(key: &Secret32, room: RoomId, channel: ChannelId) -> Hmac<Sha256> {
    let mut bytes = commitment_key(key, room, channel);
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(&bytes)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    bytes.zeroize();
    mac
}

/// A channel key's message keys, derived once and used for every message under that key
/// on a page: two HKDF derivations, an AES key schedule and an HMAC key block, where a
/// reader made all four per message before.
pub(crate) struct MessageKeys {
    /// AES-256-GCM under the message key.
    pub aead: Aes256Gcm,
    /// HMAC-SHA256 under the commitment key, before any input.
    pub commit: Hmac<Sha256>,
}

impl MessageKeys {
    /// The message keys of channel key `key`.
    pub(crate) fn new(key: &Secret32, room: RoomId, channel: ChannelId) -> Self {
        let mut message = message_key(key, room, channel);
        let aead = Aes256Gcm::new((&message).into());
        message.zeroize();
        Self {
            aead,
            commit: commitment_mac(key, room, channel),
        }
    }
}

/// The verification key of an admin seed.
pub(crate) fn admin_capability(seed: &Secret32) -> SigningKey {
    SigningKey::from_bytes(&seed.0)
}

/// The verification keys a set of room keys makes, as the signed state lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CapabilityKeys {
    pub admin: VerifyKey,
    pub member: VerifyKey,
    pub channels: BTreeMap<ChannelId, VerifyKey>,
}

impl Membership {
    /// The current epoch and its master key.
    pub(crate) fn master(&self) -> Result<(u64, &Secret32), ClientError> {
        self.master_keys
            .iter()
            .next_back()
            .map(|(e, k)| (*e, k))
            .ok_or_else(|| ClientError::Internal("a membership without a master key".into()))
    }

    /// The `member:` capability of the current master key.
    pub(crate) fn member_key(&self) -> Result<SigningKey, ClientError> {
        Ok(member_capability(self.master()?.1, self.room))
    }

    /// The admin capability, for admins.
    pub(crate) fn admin(&self) -> Result<SigningKey, ClientError> {
        self.admin_key
            .as_ref()
            .map(admin_capability)
            .ok_or_else(|| ClientError::Input("only a room admin can do that".into()))
    }

    /// The channel's newest key and its epoch.
    pub(crate) fn channel_key(&self, channel: ChannelId) -> Result<(u64, &Secret32), ClientError> {
        self.channel_keys
            .get(&channel)
            .and_then(|keys| keys.iter().next_back())
            .map(|(e, k)| (*e, k))
            .ok_or_else(|| {
                ClientError::Input(format!(
                    "no key for channel {channel} of this room yet; `cinder accept` takes keys sent since"
                ))
            })
    }

    /// The channel's key of one epoch.
    pub(crate) fn channel_key_of(&self, channel: ChannelId, epoch: u64) -> Option<&Secret32> {
        self.channel_keys.get(&channel)?.get(&epoch)
    }

    /// The verification keys of the current keys (admins only: the admin key is included).
    pub(crate) fn capabilities(&self) -> Result<CapabilityKeys, ClientError> {
        let channels = self
            .channel_keys
            .iter()
            .filter_map(|(id, keys)| {
                keys.values().next_back().map(|k| {
                    (
                        *id,
                        channel_capability(k, self.room, *id).verifying_key().into(),
                    )
                })
            })
            .collect();
        Ok(CapabilityKeys {
            admin: self.admin()?.verifying_key().into(),
            member: self.member_key()?.verifying_key().into(),
            channels,
        })
    }
}

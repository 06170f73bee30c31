//! Rooms, channels and messages from the client's side: every key is made and kept here.
//!
//! From a room's 32-byte master key, HKDF-SHA256 derives the key that seals the spine and
//! the Ed25519 seed of the `member:` capability. From each channel key it derives the
//! message key and the `channel:` capability. The admin key is a separate Ed25519 key held
//! only by admins. The server stores the capabilities' verification keys and checks them;
//! it never holds a secret. Invitations carry the keys, HPKE-sealed to the invitee's
//! directory key and signed by the inviter. Removing a member replaces the master key and
//! every channel key, and re-shares the new ones with everyone who stays.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce};
use cinder_proto::api::limits as api_limits;
use cinder_proto::rooms::{CreateRoom, PostShard, Reserved, Room, Shard, ShardPage, UpdateRoom};
use cinder_proto::{
    Blob, ChannelId, KeyBundle, Nonce, RequestSignature, RoomId, Signature, Signer, Timestamp,
    UserId, VerifyKey,
};
use ed25519_dalek::{Signer as _, SigningKey};
use hkdf::Hkdf;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Client, ClientError, Identity};

/// A 32-byte secret (room master key, channel key, admin seed), base64url in JSON.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
#[serde(try_from = "Blob", into = "Blob")]
pub struct Secret32([u8; 32]);

impl Secret32 {
    /// A fresh random secret.
    pub fn random() -> Result<Self, ClientError> {
        let mut s = [0u8; 32];
        getrandom::fill(&mut s).map_err(|_| ClientError::Randomness)?;
        Ok(Self(s))
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

impl From<Secret32> for Blob {
    fn from(s: Secret32) -> Self {
        Blob(s.0.to_vec())
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

/// One room's keys, as kept in the enclave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Membership {
    /// The room.
    pub room: RoomId,
    /// The current master key.
    pub master_key: Secret32,
    /// The admin key's seed, for admins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key: Option<Secret32>,
    /// Per channel, its keys, newest first: the newest signs and seals, older ones still
    /// open older messages.
    pub channel_keys: BTreeMap<ChannelId, Vec<Secret32>>,
    /// The newest spine version seen; an older one is refused.
    #[serde(default)]
    pub spine_version: u64,
}

/// What a room's spine says, readable by members only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spine {
    /// Equals the stored version; bound in the associated data too.
    pub version: u64,
    /// The room's name.
    pub name: String,
    /// Who is in the room.
    pub members: Vec<SpineMember>,
    /// Its channels.
    pub channels: Vec<ChannelInfo>,
}

/// A member as the spine lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpineMember {
    /// Directory id.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Status line.
    #[serde(default)]
    pub status: String,
    /// Holds the admin key.
    pub admin: bool,
}

/// A channel as the spine lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Its id.
    pub id: ChannelId,
    /// Its name.
    pub name: String,
    /// A voice channel (calls) rather than text.
    pub voice: bool,
    /// Seconds until a message burns.
    pub burn_secs: u64,
}

/// A message as a reader sees it: opened and its signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its number in the channel.
    pub number: u64,
    /// Who wrote it (verified against the key directory).
    pub sender: UserId,
    /// The sender's name from the spine, if still a member.
    pub sender_name: Option<String>,
    /// When the sender wrote it, by the sender's clock.
    pub sent_at: Timestamp,
    /// When it burns.
    pub burn_at: Timestamp,
    /// The text.
    pub text: String,
}

const SALT: &[u8] = b"cinder/room/v1";

fn derive(ikm: &[u8; 32], label: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut info = label.to_vec();
    for p in parts {
        info.extend_from_slice(p);
    }
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's output limit.
    let _ = Hkdf::<Sha256>::new(Some(SALT), ikm).expand(&info, &mut out);
    out
}

impl Membership {
    fn member_key(&self) -> SigningKey {
        SigningKey::from_bytes(&derive(
            &self.master_key.0,
            b"member-capability",
            &[&self.room.0],
        ))
    }

    fn spine_key(&self) -> [u8; 32] {
        derive(&self.master_key.0, b"spine", &[&self.room.0])
    }

    fn admin(&self) -> Result<SigningKey, ClientError> {
        self.admin_key
            .as_ref()
            .map(|s| SigningKey::from_bytes(&s.0))
            .ok_or_else(|| ClientError::Input("only a room admin can do that".into()))
    }

    fn channel_key(&self, channel: ChannelId) -> Result<&Secret32, ClientError> {
        self.channel_keys
            .get(&channel)
            .and_then(|keys| keys.first())
            .ok_or_else(|| ClientError::Input(format!("no key for channel {channel} in this room")))
    }

    /// The capability verification keys the server must hold for this membership's keys.
    fn capabilities(
        &self,
    ) -> Result<(VerifyKey, VerifyKey, BTreeMap<ChannelId, VerifyKey>), ClientError> {
        let admin = self.admin()?.verifying_key().into();
        let member = self.member_key().verifying_key().into();
        let channels = self
            .channel_keys
            .iter()
            .filter_map(|(id, keys)| {
                keys.first().map(|k| {
                    (
                        *id,
                        channel_capability(k, self.room, *id).verifying_key().into(),
                    )
                })
            })
            .collect();
        Ok((admin, member, channels))
    }
}

fn channel_capability(key: &Secret32, room: RoomId, channel: ChannelId) -> SigningKey {
    SigningKey::from_bytes(&derive(
        &key.0,
        b"channel-capability",
        &[&room.0, &channel.0],
    ))
}

fn message_key(key: &Secret32, room: RoomId, channel: ChannelId) -> [u8; 32] {
    derive(&key.0, b"messages", &[&room.0, &channel.0])
}

fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<Blob, ClientError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| ClientError::Randomness)?;
    let ct = Aes256Gcm::new(key.into())
        .encrypt(
            GcmNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ClientError::Verification("sealing failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(Blob(out))
}

fn open(key: &[u8; 32], sealed: &Blob, aad: &[u8]) -> Option<Vec<u8>> {
    let (nonce, ct) = sealed.0.split_at_checked(12)?;
    Aes256Gcm::new(key.into())
        .decrypt(GcmNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}

fn spine_aad(room: RoomId, version: u64) -> Vec<u8> {
    [
        b"cinder/spine/v1\0".as_slice(),
        &room.0,
        &version.to_be_bytes(),
    ]
    .concat()
}

fn shard_aad(room: RoomId, channel: ChannelId, number: u64, burn_at: Timestamp) -> Vec<u8> {
    [
        b"cinder/shard/v1\0".as_slice(),
        &room.0,
        &channel.0,
        &number.to_be_bytes(),
        &burn_at.0.to_be_bytes(),
    ]
    .concat()
}

/// A message's plaintext: the sender's words and signature, inside the ciphertext.
#[derive(Serialize, Deserialize)]
struct MessageBody {
    sender: UserId,
    /// Which version of the sender's directory keys signed it, so readers can check
    /// messages written before a rotation.
    key_version: u64,
    sent_at: Timestamp,
    text: String,
    delete_nonce: Nonce,
    signature: Signature,
}

#[allow(clippy::too_many_arguments)]
fn message_signed_bytes(
    room: RoomId,
    channel: ChannelId,
    number: u64,
    burn_at: Timestamp,
    sender: UserId,
    key_version: u64,
    sent_at: Timestamp,
    delete_nonce: &Nonce,
    text: &str,
) -> Vec<u8> {
    [
        b"cinder/message/v1\0".as_slice(),
        &room.0,
        &channel.0,
        &number.to_be_bytes(),
        &burn_at.0.to_be_bytes(),
        &sender.0,
        &key_version.to_be_bytes(),
        &sent_at.0.to_be_bytes(),
        delete_nonce.as_bytes(),
        text.as_bytes(),
    ]
    .concat()
}

/// The secret that deletes a message: only its sender can derive it again.
fn delete_secret(me: &Identity, room: RoomId, channel: ChannelId, nonce: &Nonce) -> [u8; 32] {
    derive(
        &me.seeds.sign,
        b"delete",
        &[&room.0, &channel.0, nonce.as_bytes()],
    )
}

/// An invitation (or, after a removal, a re-keying): the keys of a room, for one recipient.
#[derive(Debug, Serialize, Deserialize)]
struct InviteBody {
    rekey: bool,
    room: RoomId,
    recipient: UserId,
    from: UserId,
    master_key: Secret32,
    channel_keys: BTreeMap<ChannelId, Secret32>,
    spine_version: u64,
}

/// What is HPKE-sealed: the body's exact bytes and the sender's signature over them.
#[derive(Serialize, Deserialize)]
struct SignedInvite {
    body: Blob,
    signature: Signature,
}

const INVITE_INFO: &[u8] = b"cinder/invite/v1";
const INVITE_DOMAIN: &[u8] = b"cinder/invite-signature/v1\0";

fn random_id() -> Result<[u8; 16], ClientError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| ClientError::Randomness)?;
    Ok(id)
}

impl Client {
    /// Creates a room with the given channels; the creator is its admin. Returns the keys to
    /// keep in the enclave and the first spine.
    pub async fn create_room(
        &self,
        me: &Identity,
        my_name: &str,
        name: &str,
        channels: &[(String, bool, u64)],
    ) -> Result<(Membership, Spine), ClientError> {
        let room = RoomId(random_id()?);
        let mut m = Membership {
            room,
            master_key: Secret32::random()?,
            admin_key: Some(Secret32::random()?),
            channel_keys: BTreeMap::new(),
            spine_version: 1,
        };
        let mut infos = Vec::new();
        for (cname, voice, burn_secs) in channels {
            let id = ChannelId(random_id()?);
            m.channel_keys.insert(id, vec![Secret32::random()?]);
            infos.push(ChannelInfo {
                id,
                name: cname.clone(),
                voice: *voice,
                burn_secs: *burn_secs,
            });
        }
        let spine = Spine {
            version: 1,
            name: name.into(),
            members: vec![SpineMember {
                user_id: me.user_id(),
                name: my_name.into(),
                status: String::new(),
                admin: true,
            }],
            channels: infos,
        };
        let (admin_key, member_key, caps) = m.capabilities()?;
        let body = CreateRoom {
            room_id: room,
            spine: self.seal_spine(&m, &spine)?,
            admin_key,
            member_key,
            channels: caps,
        };
        let _: Room = self
            .call_capability(
                &m.admin()?,
                Signer::Admin(room),
                Method::POST,
                "/rooms",
                Some(&body),
            )
            .await?;
        Ok((m, spine))
    }

    fn seal_spine(&self, m: &Membership, spine: &Spine) -> Result<Blob, ClientError> {
        let json =
            serde_json::to_vec(spine).map_err(|e| ClientError::Verification(e.to_string()))?;
        seal(&m.spine_key(), &json, &spine_aad(m.room, spine.version))
    }

    /// Reads and opens a room's spine, refusing one older than this membership has seen.
    pub async fn room(&self, m: &mut Membership) -> Result<(Room, Spine), ClientError> {
        let room: Room = self
            .call_capability::<(), _>(
                &m.member_key(),
                Signer::Member(m.room),
                Method::GET,
                &format!("/rooms/{}", m.room),
                None,
            )
            .await?;
        if room.version < m.spine_version {
            return Err(ClientError::Verification(format!(
                "the server returned spine version {} but version {} was seen before (rollback)",
                room.version, m.spine_version
            )));
        }
        let bad = || {
            ClientError::Verification("the room's spine does not open with this room's key".into())
        };
        let json = open(
            &m.spine_key(),
            &room.spine,
            &spine_aad(m.room, room.version),
        )
        .ok_or_else(bad)?;
        let spine: Spine = serde_json::from_slice(&json).map_err(|_| bad())?;
        if spine.version != room.version {
            return Err(bad());
        }
        m.spine_version = room.version;
        Ok((room, spine))
    }

    /// Stores `spine` as the next version with `m`'s current capabilities (admins only).
    async fn put_spine(
        &self,
        m: &mut Membership,
        mut spine: Spine,
        expected_version: u64,
    ) -> Result<Spine, ClientError> {
        spine.version = expected_version + 1;
        let (admin_key, member_key, channels) = m.capabilities()?;
        let body = UpdateRoom {
            expected_version,
            spine: self.seal_spine(m, &spine)?,
            admin_key,
            member_key,
            channels,
        };
        let room: Room = self
            .call_capability(
                &m.admin()?,
                Signer::Admin(m.room),
                Method::PUT,
                &format!("/rooms/{}", m.room),
                Some(&body),
            )
            .await?;
        m.spine_version = room.version;
        Ok(spine)
    }

    /// Adds a channel (admins only).
    pub async fn add_channel(
        &self,
        m: &mut Membership,
        name: &str,
        voice: bool,
        burn_secs: u64,
    ) -> Result<ChannelId, ClientError> {
        let (room, mut spine) = self.room(m).await?;
        let id = ChannelId(random_id()?);
        m.channel_keys.insert(id, vec![Secret32::random()?]);
        spine.channels.push(ChannelInfo {
            id,
            name: name.into(),
            voice,
            burn_secs,
        });
        self.put_spine(m, spine, room.version).await?;
        Ok(id)
    }

    /// Invites a user (admins only): adds them to the spine, then seals the room's keys to
    /// their verified directory key and drops the envelope in their inbox.
    pub async fn invite(
        &self,
        me: &Identity,
        m: &mut Membership,
        invitee: &KeyBundle,
        name: &str,
    ) -> Result<(), ClientError> {
        let (room, mut spine) = self.room(m).await?;
        if !spine.members.iter().any(|x| x.user_id == invitee.user_id) {
            spine.members.push(SpineMember {
                user_id: invitee.user_id,
                name: name.into(),
                status: String::new(),
                admin: false,
            });
            spine = self.put_spine(m, spine, room.version).await?;
        }
        self.send_keys(me, m, invitee, false, spine.version).await
    }

    async fn send_keys(
        &self,
        me: &Identity,
        m: &Membership,
        to: &KeyBundle,
        rekey: bool,
        spine_version: u64,
    ) -> Result<(), ClientError> {
        let body = InviteBody {
            rekey,
            room: m.room,
            recipient: to.user_id,
            from: me.user_id(),
            master_key: m.master_key.clone(),
            channel_keys: m
                .channel_keys
                .iter()
                .filter_map(|(id, k)| k.first().map(|k| (*id, k.clone())))
                .collect(),
            spine_version,
        };
        let body =
            serde_json::to_vec(&body).map_err(|e| ClientError::Verification(e.to_string()))?;
        let signature = Signature(
            me.signing_key()
                .sign(&[INVITE_DOMAIN, &body].concat())
                .to_bytes(),
        );
        let plaintext = serde_json::to_vec(&SignedInvite {
            body: Blob(body),
            signature,
        })
        .map_err(|e| ClientError::Verification(e.to_string()))?;
        let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(to.hpke_key.as_bytes())
            .map_err(|_| {
                ClientError::Verification("the invitee's HPKE key is not a valid X25519 key".into())
            })?;
        let (encapped, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &pk,
            INVITE_INFO,
            &plaintext,
            &to.user_id.0,
            &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
        )
        .map_err(|_| ClientError::Verification("HPKE sealing failed".into()))?;
        let sealed = [encapped.to_bytes().as_slice(), &ct].concat();
        if sealed.len() > api_limits::MAX_ENVELOPE_BYTES {
            return Err(ClientError::Input(
                "this room has too many channels to fit one invitation".into(),
            ));
        }
        self.drop_envelope(me, to.user_id, sealed, None)
            .await
            .map(drop)
    }

    /// Opens every envelope in the inbox, verifies each inviter against the key directory
    /// (following `pins`), merges the keys into `memberships`, and deletes the envelopes.
    /// Returns the rooms joined or re-keyed. Envelopes that do not open or verify are
    /// deleted and skipped.
    pub async fn accept_invites(
        &self,
        me: &Identity,
        memberships: &mut BTreeMap<RoomId, Membership>,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<Vec<RoomId>, ClientError> {
        let mut joined = Vec::new();
        let mut after = None;
        loop {
            let page = self.inbox(me, after, None).await?;
            for envelope in &page.envelopes {
                match self
                    .open_invite(me, &envelope.sealed, envelope.sender, pins)
                    .await
                {
                    Ok(body) => {
                        if let Some(m) = self
                            .checked_membership(memberships.get(&body.room), &body)
                            .await?
                        {
                            memberships.insert(body.room, m);
                            joined.push(body.room);
                        }
                    }
                    // Not for us, not from its sender, or from nobody in the directory.
                    Err(e) if e.code().is_some() || matches!(e, ClientError::Verification(_)) => {}
                    // The server could not be asked: keep the envelope for the next try.
                    Err(e) => return Err(e),
                }
                self.delete_envelope(me, envelope.id).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(joined),
            }
        }
    }

    /// The membership an invitation would give, if it is genuine: the server must accept
    /// the member capability of its master key (so the keys are the room's current ones), and
    /// the spine they open must name the inviter as an admin. Anyone else's "invitation",
    /// even a validly signed one, cannot replace a member's keys. `Ok(None)` means ignore it.
    async fn checked_membership(
        &self,
        current: Option<&Membership>,
        body: &InviteBody,
    ) -> Result<Option<Membership>, ClientError> {
        let mut m = current.cloned().unwrap_or_else(|| Membership {
            room: body.room,
            master_key: body.master_key.clone(),
            admin_key: None,
            channel_keys: BTreeMap::new(),
            spine_version: 0,
        });
        m.master_key = body.master_key.clone();
        for (id, key) in &body.channel_keys {
            let keys = m.channel_keys.entry(*id).or_default();
            if keys.first() != Some(key) {
                keys.insert(0, key.clone());
            }
        }
        m.spine_version = m.spine_version.max(body.spine_version);
        match self.room(&mut m).await {
            Ok((_, spine))
                if spine
                    .members
                    .iter()
                    .any(|x| x.user_id == body.from && x.admin) =>
            {
                Ok(Some(m))
            }
            Ok(_) => Ok(None),
            Err(e) if e.code().is_some() || matches!(e, ClientError::Verification(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn open_invite(
        &self,
        me: &Identity,
        sealed: &Blob,
        sender: UserId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<InviteBody, ClientError> {
        let bad = |why: &str| ClientError::Verification(format!("an invitation {why}"));
        let (encapped, ct) = sealed
            .0
            .split_at_checked(32)
            .ok_or_else(|| bad("is truncated"))?;
        let encapped = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(encapped)
            .map_err(|_| bad("is malformed"))?;
        let (sk, _) = me.seeds.hpke_keypair();
        let plaintext = hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk,
            &encapped,
            INVITE_INFO,
            ct,
            &me.user_id().0,
        )
        .map_err(|_| bad("does not open with this user's key"))?;
        let signed: SignedInvite =
            serde_json::from_slice(&plaintext).map_err(|_| bad("is malformed"))?;
        let body: InviteBody =
            serde_json::from_slice(&signed.body.0).map_err(|_| bad("is malformed"))?;
        if body.recipient != me.user_id() || body.from != sender {
            return Err(bad("names another sender or recipient"));
        }
        let sender_keys = self.verified_keys(sender, pins.get(&sender)).await?;
        sender_keys
            .sign_key
            .verify(&[INVITE_DOMAIN, &signed.body.0].concat(), &signed.signature)
            .map_err(|_| bad("is not signed by its sender"))?;
        pins.insert(sender, sender_keys);
        Ok(body)
    }

    /// Sends a message: reserves a number, then posts it sealed under the channel key with
    /// room, channel, number and burn time as associated data, signed by the sender.
    pub async fn send_message(
        &self,
        me: &Identity,
        m: &Membership,
        channel: ChannelId,
        text: &str,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        let key = m.channel_key(channel)?.clone();
        let cap = channel_capability(&key, m.room, channel);
        let signer = Signer::Channel(m.room, channel);
        let base = format!("/messages/{}/{channel}", m.room);
        let Reserved { number } = self
            .call_capability::<(), _>(&cap, signer, Method::POST, &format!("{base}/numbers"), None)
            .await?;
        let sent_at = self.now();
        let post = seal_message(
            me,
            m,
            channel,
            number,
            text,
            sent_at,
            sent_at.plus(burn_secs),
        )?;
        let _: Shard = self
            .call_capability(
                &cap,
                signer,
                Method::PUT,
                &format!("{base}/{number}"),
                Some(&post),
            )
            .await?;
        Ok(number)
    }

    /// Reads a page of messages after `after`: opens each with the channel's keys (newest
    /// first), and verifies its signature against the sender's verified directory key.
    /// Messages that fail either check are left out; the count of those is returned too.
    pub async fn read(
        &self,
        m: &Membership,
        spine: &Spine,
        channel: ChannelId,
        after: u64,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(Vec<Received>, Option<u64>, usize), ClientError> {
        let key = m.channel_key(channel)?;
        let cap = channel_capability(key, m.room, channel);
        let page: ShardPage = self
            .call_capability::<(), _>(
                &cap,
                Signer::Channel(m.room, channel),
                Method::GET,
                &format!("/messages/{}/{channel}?after={after}", m.room),
                None,
            )
            .await?;
        let mut out = Vec::new();
        let mut refused = 0;
        // Each sender's keys are verified once per page, not once per message.
        let mut senders: BTreeMap<UserId, Option<Vec<KeyBundle>>> = BTreeMap::new();
        for shard in page.shards {
            let Some(message) = open_message(m, channel, &shard) else {
                refused += 1;
                continue;
            };
            let key = self
                .sender_key(&mut senders, pins, message.sender, message.key_version)
                .await;
            match key {
                Some(key) if message.verify(&key) => out.push(Received {
                    number: shard.number,
                    sender: message.sender,
                    sender_name: spine
                        .members
                        .iter()
                        .find(|x| x.user_id == message.sender)
                        .map(|x| x.name.clone()),
                    sent_at: message.sent_at,
                    burn_at: shard.burn_at,
                    text: message.text,
                }),
                _ => refused += 1,
            }
        }
        Ok((out, page.next, refused))
    }

    /// The verification key of `version` of `sender`'s keys, verified: the current version
    /// through the pinned chain, an older one through the whole chain from version 1, which
    /// must end at the current keys. Cached in `senders` for the rest of a page.
    async fn sender_key(
        &self,
        senders: &mut BTreeMap<UserId, Option<Vec<KeyBundle>>>,
        pins: &mut BTreeMap<UserId, KeyBundle>,
        sender: UserId,
        version: u64,
    ) -> Option<VerifyKey> {
        if let std::collections::btree_map::Entry::Vacant(slot) = senders.entry(sender) {
            let current = self.verified_keys(sender, pins.get(&sender)).await.ok();
            if let Some(k) = &current {
                pins.insert(sender, k.clone());
            }
            slot.insert(current.map(|k| vec![k]));
        }
        let known = senders.get_mut(&sender)?.as_mut()?;
        let current = known.last()?.clone();
        if version < current.version && known.len() == 1 {
            let mut chain = Vec::new();
            let mut after = 0;
            while let Ok(page) = self.chain(sender, after).await {
                let Some(last) = page.bundles.last() else {
                    break;
                };
                after = last.version;
                chain.extend(page.bundles);
                if !page.more {
                    break;
                }
            }
            match crate::directory::verify_chain(None, &chain) {
                Ok(end) if end == current => *known = chain,
                _ => return None,
            }
        }
        known
            .iter()
            .find(|b| b.version == version)
            .map(|b| b.sign_key)
    }

    /// Removes a member (admins only): new master and channel keys, a spine without them,
    /// and the new keys sealed to everyone who stays. The removed member keeps only keys
    /// that no longer verify anywhere.
    pub async fn kick(
        &self,
        me: &Identity,
        m: &mut Membership,
        user: UserId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        let (room, mut spine) = self.room(m).await?;
        if !spine.members.iter().any(|x| x.user_id == user) {
            return Err(ClientError::Input(format!(
                "{user} is not a member of this room"
            )));
        }
        spine.members.retain(|x| x.user_id != user);
        let mut next = m.clone();
        next.master_key = Secret32::random()?;
        for keys in next.channel_keys.values_mut() {
            keys.insert(0, Secret32::random()?);
        }
        let spine = self.put_spine(&mut next, spine, room.version).await?;
        *m = next;
        for member in spine.members.iter().filter(|x| x.user_id != me.user_id()) {
            let keys = self
                .verified_keys(member.user_id, pins.get(&member.user_id))
                .await?;
            self.send_keys(me, m, &keys, true, spine.version).await?;
            pins.insert(member.user_id, keys);
        }
        Ok(())
    }

    /// Deletes one of my own messages, proving authorship with its delete secret.
    pub async fn delete_message(
        &self,
        me: &Identity,
        m: &Membership,
        channel: ChannelId,
        number: u64,
    ) -> Result<(), ClientError> {
        let key = m.channel_key(channel)?;
        let cap = channel_capability(key, m.room, channel);
        let signer = Signer::Channel(m.room, channel);
        let path = format!("/messages/{}/{channel}/{number}", m.room);
        let shard: Shard = self
            .call_capability::<(), _>(&cap, signer, Method::GET, &path, None)
            .await?;
        let aad = shard_aad(m.room, channel, number, shard.burn_at);
        let json = m.channel_keys[&channel]
            .iter()
            .find_map(|k| open(&message_key(k, m.room, channel), &shard.ciphertext, &aad))
            .ok_or_else(|| ClientError::Verification("the message does not open".into()))?;
        let body: MessageBody =
            serde_json::from_slice(&json).map_err(|e| ClientError::Verification(e.to_string()))?;
        let secret = delete_secret(me, m.room, channel, &body.delete_nonce);
        let proof = cinder_proto::rooms::DeleteShard {
            delete_secret: Blob(secret.to_vec()),
        };
        self.call_capability::<_, ()>(&cap, signer, Method::DELETE, &path, Some(&proof))
            .await
    }
}

/// Seals a message for a reserved `number`: signed by `me` over the room, channel, number,
/// burn time, send time, delete nonce and text; sealed under the channel's newest key with
/// room, channel, number and burn time as associated data.
pub fn seal_message(
    me: &Identity,
    m: &Membership,
    channel: ChannelId,
    number: u64,
    text: &str,
    sent_at: Timestamp,
    burn_at: Timestamp,
) -> Result<PostShard, ClientError> {
    let key = m.channel_key(channel)?;
    let delete_nonce = Nonce(random_id()?);
    let signed = message_signed_bytes(
        m.room,
        channel,
        number,
        burn_at,
        me.user_id(),
        me.bundle.version,
        sent_at,
        &delete_nonce,
        text,
    );
    let body = MessageBody {
        sender: me.user_id(),
        key_version: me.bundle.version,
        sent_at,
        text: text.into(),
        delete_nonce,
        signature: Signature(me.signing_key().sign(&signed).to_bytes()),
    };
    let json = serde_json::to_vec(&body).map_err(|e| ClientError::Verification(e.to_string()))?;
    let ciphertext = seal(
        &message_key(key, m.room, channel),
        &json,
        &shard_aad(m.room, channel, number, burn_at),
    )?;
    let secret = delete_secret(me, m.room, channel, &delete_nonce);
    Ok(PostShard {
        ciphertext,
        burn_at,
        delete_hash: Some(Blob(Sha256::digest(secret).to_vec())),
    })
}

/// A message opened with the channel's keys; its signature is checked by [`Opened::verify`].
pub struct Opened {
    /// Who it claims to be from.
    pub sender: UserId,
    /// Which version of the sender's keys it claims to be signed with.
    pub key_version: u64,
    /// When the sender says it was written.
    pub sent_at: Timestamp,
    /// The text.
    pub text: String,
    signature: Signature,
    signed: Vec<u8>,
}

impl Opened {
    /// Whether `key` (the sender's verified directory key) signed this message, in this
    /// room, channel, number and burn time.
    pub fn verify(&self, key: &VerifyKey) -> bool {
        key.verify(&self.signed, &self.signature).is_ok()
    }
}

/// Opens a shard with the membership's keys for `channel`, newest first. `None` if no key
/// opens it under its room, channel, number and burn time.
pub fn open_message(m: &Membership, channel: ChannelId, shard: &Shard) -> Option<Opened> {
    let aad = shard_aad(m.room, channel, shard.number, shard.burn_at);
    let json = m
        .channel_keys
        .get(&channel)?
        .iter()
        .find_map(|k| open(&message_key(k, m.room, channel), &shard.ciphertext, &aad))?;
    let body: MessageBody = serde_json::from_slice(&json).ok()?;
    let signed = message_signed_bytes(
        m.room,
        channel,
        shard.number,
        shard.burn_at,
        body.sender,
        body.key_version,
        body.sent_at,
        &body.delete_nonce,
        &body.text,
    );
    Some(Opened {
        sender: body.sender,
        key_version: body.key_version,
        sent_at: body.sent_at,
        text: body.text,
        signature: body.signature,
        signed,
    })
}

/// Signs a capability request; used by [`Client`]'s room calls.
pub(crate) fn sign_capability(
    key: &SigningKey,
    signer: Signer,
    method: &str,
    path: &str,
    body: &[u8],
    now: Timestamp,
) -> Result<RequestSignature, ClientError> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(|_| ClientError::Randomness)?;
    Ok(RequestSignature::sign(
        key,
        signer,
        method,
        path,
        body,
        now,
        Nonce(nonce),
    ))
}

impl Client {
    /// Deletes a room (admins only). Its messages become unreachable and burn on their own.
    pub async fn delete_room(&self, m: &Membership) -> Result<(), ClientError> {
        self.call_capability::<(), ()>(
            &m.admin()?,
            Signer::Admin(m.room),
            Method::DELETE,
            &format!("/rooms/{}", m.room),
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn server() -> Client {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let store = cinder_dev::open_store(dir.path()).unwrap();
        let secrets = std::sync::Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
        let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = cinder_dev::app(store, secrets, cinder_server::Clock::system());
        tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
        Client::new(&url)
    }

    async fn user(client: &Client) -> Identity {
        let me = Identity::generate(Timestamp::now()).unwrap();
        client.publish(&me.bundle).await.unwrap();
        me
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_signed_invitation_from_a_non_admin_cannot_replace_a_members_keys() {
        let client = server().await;
        let (alice, bob, mallory) = (
            user(&client).await,
            user(&client).await,
            user(&client).await,
        );
        let (mut m, spine) = client
            .create_room(&alice, "alice", "Team", &[("general".into(), false, 3600)])
            .await
            .unwrap();
        let general = spine.channels[0].id;
        client
            .invite(&alice, &mut m, &bob.bundle, "bob")
            .await
            .unwrap();
        let (mut bob_rooms, mut pins) = (BTreeMap::new(), BTreeMap::new());
        assert_eq!(
            client
                .accept_invites(&bob, &mut bob_rooms, &mut pins)
                .await
                .unwrap(),
            vec![m.room]
        );
        let before = bob_rooms[&m.room].clone();

        // Mallory knows the room id and Bob's id, and sends him validly signed bogus keys.
        let forged = Membership {
            room: m.room,
            master_key: Secret32::random().unwrap(),
            admin_key: None,
            channel_keys: [(general, vec![Secret32::random().unwrap()])]
                .into_iter()
                .collect(),
            spine_version: 99,
        };
        client
            .send_keys(&mallory, &forged, &bob.bundle, true, 99)
            .await
            .unwrap();
        assert_eq!(
            client
                .accept_invites(&bob, &mut bob_rooms, &mut pins)
                .await
                .unwrap(),
            vec![]
        );
        assert_eq!(
            bob_rooms[&m.room].master_key, before.master_key,
            "Bob's keys are untouched"
        );
        assert!(
            client
                .inbox(&bob, None, None)
                .await
                .unwrap()
                .envelopes
                .is_empty(),
            "the forgery is discarded"
        );

        // And Bob still reads the room.
        client
            .send_message(&alice, &m, general, "still here", 600)
            .await
            .unwrap();
        let (read, _, refused) = client
            .read(&bob_rooms[&m.room], &spine, general, 0, &mut pins)
            .await
            .unwrap();
        assert_eq!((read.len(), refused), (1, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_written_before_a_key_rotation_still_verify() {
        let client = server().await;
        let (alice, bob) = (user(&client).await, user(&client).await);
        let (mut m, spine) = client
            .create_room(&alice, "alice", "Team", &[("general".into(), false, 3600)])
            .await
            .unwrap();
        let general = spine.channels[0].id;
        client
            .invite(&alice, &mut m, &bob.bundle, "bob")
            .await
            .unwrap();
        let (mut bob_rooms, mut pins) = (BTreeMap::new(), BTreeMap::new());
        client
            .accept_invites(&bob, &mut bob_rooms, &mut pins)
            .await
            .unwrap();

        client
            .send_message(&alice, &m, general, "before", 600)
            .await
            .unwrap();
        let rotated = alice.rotated(Timestamp::now()).unwrap();
        client.rotate(&rotated.bundle).await.unwrap();
        client
            .send_message(&rotated, &m, general, "after", 600)
            .await
            .unwrap();

        let (read, _, refused) = client
            .read(&bob_rooms[&m.room], &spine, general, 0, &mut pins)
            .await
            .unwrap();
        let texts: Vec<_> = read.iter().map(|r| r.text.as_str()).collect();
        assert_eq!((texts, refused), (vec!["before", "after"], 0));
    }
}

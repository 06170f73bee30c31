//! Channel messages: signed by their sender inside the ciphertext, sealed under the
//! channel key of an epoch with room, channel, number, burn time and epoch as associated
//! data, and committed to that key.
//!
//! A reader trusts none of the server's word about a message. It refuses (and reports):
//! a message it cannot open; one under a superseded epoch's key numbered past that epoch's
//! cut-off in the signed state; one from someone who was not a member in that epoch; one
//! signed with a retired directory key after its retirement; one whose `burn_at` lies
//! beyond the channel's burn time, or already passed; and one with a bad signature.

use std::collections::BTreeMap;

use cinder_proto::rooms::{PostShard, Reserved, Shard, ShardPage};
use cinder_proto::{
    Blob, ChannelId, KeyBundle, Nonce, RoomId, Signature, Signer, Timestamp, UserId, VerifyKey,
};
use ed25519_dalek::Signer as _;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::capabilities::{channel_capability, commitment_key, derive, message_key};
use super::{Membership, Secret32, open, random_id, seal};
use crate::directory::KeyCache;
use crate::media::Attachment;
use crate::{Client, ClientError, Identity};

/// Seconds a reader allows between clocks: for a `burn_at` just passed, a `sent_at` a
/// little ahead, a message signed just after its key was retired.
pub const CLOCK_ALLOWANCE_SECS: u64 = 120;

/// A message as a reader sees it: opened, its signature verified, its epoch and burn
/// time checked against the signed room state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its number in the channel.
    pub number: u64,
    /// Who wrote it (verified against the key directory).
    pub sender: UserId,
    /// The sender's name from the room state (marked if they have since been removed).
    pub sender_name: Option<String>,
    /// When the sender wrote it, by the sender's clock.
    pub sent_at: Timestamp,
    /// When it burns.
    pub burn_at: Timestamp,
    /// The text.
    pub text: String,
    /// The sender's count of messages in this channel: 1, 2, 3, … (signed).
    pub seq: u64,
    /// The hash of this message's signed bytes, which the sender's next one names.
    pub hash: Blob,
    /// The hash of the sender's previous message in this channel (zeros for the first).
    pub prev: Blob,
    /// Files linked from the message; [`Client::download`] fetches and opens one.
    pub attachments: Vec<Attachment>,
}

/// Per sender, the last message a reader has seen in a channel, to notice messages the
/// server withheld or replaced: each message carries, signed, its sender's count and the
/// hash of the sender's previous message.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Continuity {
    last: BTreeMap<UserId, (u64, Blob)>,
}

/// A break in a sender's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Break {
    /// `count` messages of `sender` are missing before message `number`: burnt, deleted by
    /// their sender, or withheld by the server.
    Missing {
        /// Whose.
        sender: UserId,
        /// How many.
        count: u64,
        /// The message that came next.
        number: u64,
    },
    /// Message `number` does not follow `sender`'s previous one: the server replaced or
    /// replayed one, or the sender wrote from two devices at once.
    Forked {
        /// Whose.
        sender: UserId,
        /// The message that does not follow.
        number: u64,
    },
}

impl Continuity {
    /// Takes in the next message shown, in channel order; says if it breaks its sender's
    /// sequence. The first message seen from a sender is the baseline.
    pub fn observe(&mut self, r: &Received) -> Option<Break> {
        let previous = self.last.get(&r.sender).cloned();
        let found = match previous {
            None => None,
            Some((seq, ref hash)) if r.seq == seq + 1 && &r.prev == hash => None,
            Some((seq, _)) if r.seq > seq + 1 => Some(Break::Missing {
                sender: r.sender,
                count: r.seq - seq - 1,
                number: r.number,
            }),
            Some(_) => Some(Break::Forked {
                sender: r.sender,
                number: r.number,
            }),
        };
        if previous.as_ref().is_none_or(|(seq, _)| r.seq > *seq) {
            self.last.insert(r.sender, (r.seq, r.hash.clone()));
        }
        found
    }
}

/// What a sender remembers of its last message in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SentMark {
    pub seq: u64,
    pub hash: Blob,
}

/// Why a reader refused a message the server served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Refusal {
    /// No key this member holds opens it, or it is malformed.
    Unreadable,
    /// Under a superseded key but numbered after that key's cut-off.
    AfterCutoff,
    /// From someone who was not a member when its key was current.
    NotAMember,
    /// Its signature does not verify with the sender's directory key.
    BadSignature,
    /// Signed with a directory key after the sender replaced it.
    RetiredKey,
    /// It asks to live longer than the channel's burn time, or claims to come from the future.
    BadTimes,
    /// Its burn time has passed: the server should not have served it.
    Burnt,
    /// Not after the cursor, or not after the message before it on the page: a replay.
    OutOfOrder,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unreadable => "does not open with this room's keys",
            Self::AfterCutoff => "uses a retired channel key after its cut-off",
            Self::NotAMember => "is from someone who was not a member then",
            Self::BadSignature => "has a bad signature",
            Self::RetiredKey => "is signed with a key its sender had replaced",
            Self::BadTimes => "has impossible send or burn times",
            Self::Burnt => "is past its burn time",
            Self::OutOfOrder => "was served again, or out of order",
        })
    }
}

/// One page of a channel, as a reader takes it.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The messages that passed every check, oldest first.
    pub messages: Vec<Received>,
    /// The numbers of those that did not, and why.
    pub refused: Vec<(u64, Refusal)>,
    /// The highest number on this page, shown or not: read on after it.
    pub last: Option<u64>,
    /// More messages may follow.
    pub more: bool,
}

fn shard_aad(
    room: RoomId,
    channel: ChannelId,
    number: u64,
    burn_at: Timestamp,
    epoch: u64,
) -> Vec<u8> {
    [
        b"cinder/shard/v2\0".as_slice(),
        &room.0,
        &channel.0,
        &number.to_be_bytes(),
        &burn_at.0.to_be_bytes(),
        &epoch.to_be_bytes(),
    ]
    .concat()
}

/// HMAC-SHA256 under a key derived from the channel key, over the nonce and associated
/// data: a ciphertext opens under one channel key only (AES-GCM alone is not committing).
fn commitment(
    key: &Secret32,
    room: RoomId,
    channel: ChannelId,
    nonce: &[u8],
    aad: &[u8],
) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&commitment_key(key, room, channel))
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(nonce);
    mac.update(aad);
    mac
}

/// `epoch ‖ commitment ‖ nonce ‖ AES-256-GCM ciphertext and tag`.
fn seal_body(
    key: &Secret32,
    (room, channel, epoch): (RoomId, ChannelId, u64),
    json: &[u8],
    aad: &[u8],
) -> Result<Blob, ClientError> {
    let sealed = seal(&message_key(key, room, channel), json, aad)?;
    let commit = commitment(key, room, channel, &sealed.0[..12], aad)
        .finalize()
        .into_bytes();
    Ok(Blob(
        [epoch.to_be_bytes().as_slice(), &commit, &sealed.0].concat(),
    ))
}

/// The epoch a ciphertext names, and the rest.
fn split_epoch(ciphertext: &[u8]) -> Option<(u64, &[u8], &[u8])> {
    let (epoch, rest) = ciphertext.split_at_checked(8)?;
    let (commit, sealed) = rest.split_at_checked(32)?;
    Some((u64::from_be_bytes(epoch.try_into().ok()?), commit, sealed))
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
    /// The sender's count of messages in this channel.
    seq: u64,
    /// The hash of the sender's previous message's signed bytes.
    prev: Blob,
    /// Files linked from the message: where they are, and the keys that open them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    attachments: Vec<Attachment>,
    signature: Signature,
}

/// Where a message sits: the fields its signature and associated data bind.
#[derive(Clone, Copy)]
struct Place {
    room: RoomId,
    channel: ChannelId,
    number: u64,
    burn_at: Timestamp,
    epoch: u64,
}

fn message_signed_bytes(at: Place, body: &MessageBody) -> Vec<u8> {
    [
        b"cinder/message/v2\0".as_slice(),
        &at.room.0,
        &at.channel.0,
        &at.number.to_be_bytes(),
        &at.burn_at.0.to_be_bytes(),
        &at.epoch.to_be_bytes(),
        &body.sender.0,
        &body.key_version.to_be_bytes(),
        &body.sent_at.0.to_be_bytes(),
        body.delete_nonce.as_bytes(),
        &body.seq.to_be_bytes(),
        &body.prev.0,
        &attachments_hash(&body.attachments),
        body.text.as_bytes(),
    ]
    .concat()
}

/// SHA-256 of the attachments as the signature covers them: count, then each in order.
fn attachments_hash(attachments: &[Attachment]) -> [u8; 32] {
    let mut h = Sha256::new().chain_update((attachments.len() as u64).to_be_bytes());
    for a in attachments {
        h.update(a.signed_bytes());
    }
    h.finalize().into()
}

fn message_hash(signed: &[u8]) -> Blob {
    Blob(
        Sha256::new()
            .chain_update(b"cinder/message-hash/v2\0")
            .chain_update(signed)
            .finalize()
            .to_vec(),
    )
}

/// The secret that deletes a message: only its sender can derive it again.
fn delete_secret(me: &Identity, room: RoomId, channel: ChannelId, nonce: &Nonce) -> [u8; 32] {
    derive(
        &me.seeds.sign,
        b"delete",
        &[&room.0, &channel.0, nonce.as_bytes()],
    )
}

impl Client {
    /// Sends a message: reserves a number, then posts it sealed under the channel's
    /// current key, signed by the sender. `burn_secs` may not exceed the channel's. `m`
    /// counts the message (keep it, so the next one follows on).
    pub async fn send_message(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        text: &str,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        let number = self.reserve_for(m, channel, burn_secs).await?;
        self.post_message(me, m, (channel, number), (text, Vec::new()), burn_secs)
            .await?;
        Ok(number)
    }

    /// Checks `burn_secs` against the channel's burn time, then reserves a number.
    pub(crate) async fn reserve_for(
        &self,
        m: &Membership,
        channel: ChannelId,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        let info = m
            .spine()
            .channel(channel)
            .ok_or_else(|| ClientError::Input(format!("no channel {channel} in this room")))?;
        if burn_secs > info.burn_secs {
            return Err(ClientError::Input(format!(
                "this channel's messages burn within {}s; readers refuse longer",
                info.burn_secs
            )));
        }
        let (_, key) = m.channel_key(channel)?;
        let Reserved { number } = self
            .call_capability::<(), _>(
                &channel_capability(key, m.room, channel),
                Signer::Channel(m.room, channel),
                Method::POST,
                &format!("/messages/{}/{channel}/numbers", m.room),
                None,
            )
            .await?;
        Ok(number)
    }

    /// Seals and posts a message under a reserved number.
    pub(crate) async fn post_message(
        &self,
        me: &Identity,
        m: &mut Membership,
        (channel, number): (ChannelId, u64),
        (text, attachments): (&str, Vec<Attachment>),
        burn_secs: u64,
    ) -> Result<(), ClientError> {
        let sent_at = self.now();
        let post = seal_message_with(
            me,
            m,
            (channel, number),
            (text, attachments),
            (sent_at, sent_at.plus(burn_secs)),
        )?;
        let (_, key) = m.channel_key(channel)?;
        let _: Shard = self
            .call_capability(
                &channel_capability(key, m.room, channel),
                Signer::Channel(m.room, channel),
                Method::PUT,
                &format!("/messages/{}/{channel}/{number}", m.room),
                Some(&post),
            )
            .await?;
        Ok(())
    }

    /// One message, with every check [`Client::read`] makes.
    pub async fn message(
        &self,
        m: &Membership,
        channel: ChannelId,
        number: u64,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<Received, ClientError> {
        let (_, key) = m.channel_key(channel)?;
        let shard: Shard = self
            .call_capability::<(), _>(
                &channel_capability(key, m.room, channel),
                Signer::Channel(m.room, channel),
                Method::GET,
                &format!("/messages/{}/{channel}/{number}", m.room),
                None,
            )
            .await?;
        // The associated data binds the number the shard claims; it must be the one asked
        // for, or the server could answer for message N with another message.
        if shard.number != number {
            return Err(ClientError::Verification(format!(
                "asked for message {number}, the server answered with message {}",
                shard.number
            )));
        }
        let now = Timestamp(self.now().0.max(Timestamp::now().0));
        let mut cache = KeyCache::default();
        self.check(m, channel, shard, now, pins, &mut cache)
            .await
            .map_err(|why| ClientError::Verification(format!("message {number} {why}")))
    }

    /// Reads a page of messages after `after` and checks each against the room state `m`
    /// has verified and the senders' verified directory keys (see the module's
    /// introduction). Messages that fail are left out and listed in [`Page::refused`].
    pub async fn read(
        &self,
        m: &Membership,
        channel: ChannelId,
        after: u64,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<Page, ClientError> {
        let (_, key) = m.channel_key(channel)?;
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
        // The server may have taught this client a clock that runs late, to keep burnt
        // messages alive: burn by whichever clock is later.
        let now = Timestamp(self.now().0.max(Timestamp::now().0));
        let mut out = Page {
            last: page.shards.iter().map(|s| s.number).max(),
            more: page.next.is_some(),
            ..Page::default()
        };
        // Each sender's keys are verified once per page, not once per message.
        let mut cache = KeyCache::default();
        let mut floor = after;
        for shard in page.shards {
            let number = shard.number;
            // Numbers only go up, past the cursor: anything else is the server repeating one.
            if number <= floor {
                out.refused.push((number, Refusal::OutOfOrder));
                continue;
            }
            floor = number;
            match self.check(m, channel, shard, now, pins, &mut cache).await {
                Ok(r) => out.messages.push(r),
                Err(why) => out.refused.push((number, why)),
            }
        }
        Ok(out)
    }

    /// Every check a reader makes of one served message.
    async fn check(
        &self,
        m: &Membership,
        channel: ChannelId,
        shard: Shard,
        now: Timestamp,
        pins: &mut BTreeMap<UserId, KeyBundle>,
        cache: &mut KeyCache,
    ) -> Result<Received, Refusal> {
        if shard.burn_at.0.saturating_add(CLOCK_ALLOWANCE_SECS) < now.0 {
            return Err(Refusal::Burnt);
        }
        let message = open_message(m, channel, &shard)?;
        let spine = m.spine();
        let info = spine.channel(channel).ok_or(Refusal::Unreadable)?;
        let lifetime = shard.burn_at.0.checked_sub(message.sent_at.0);
        if lifetime.is_none_or(|l| l > info.burn_secs)
            || message.sent_at.0 > now.0.saturating_add(CLOCK_ALLOWANCE_SECS)
        {
            return Err(Refusal::BadTimes);
        }
        if message.epoch < spine.epoch {
            match info.cutoffs.get(&message.epoch) {
                Some(cutoff) if shard.number <= *cutoff => {}
                _ => return Err(Refusal::AfterCutoff),
            }
        }
        let member_then = spine.member(message.sender).is_some()
            || spine
                .former
                .iter()
                .any(|f| f.user_id == message.sender && f.last_epoch >= message.epoch);
        if !member_then {
            return Err(Refusal::NotAMember);
        }
        let key = cache
            .key(self, pins, message.sender, message.key_version)
            .await
            .ok_or(Refusal::BadSignature)?;
        if !message.verify(&key.key) {
            return Err(Refusal::BadSignature);
        }
        if key
            .superseded_at
            .is_some_and(|t| message.sent_at.0 > t.0.saturating_add(CLOCK_ALLOWANCE_SECS))
        {
            return Err(Refusal::RetiredKey);
        }
        Ok(Received {
            number: shard.number,
            sender: message.sender,
            sender_name: spine
                .member(message.sender)
                .map(|x| x.name.clone())
                .or_else(|| {
                    let former = spine.former.iter().find(|f| f.user_id == message.sender)?;
                    Some(format!("{} (removed)", former.name))
                }),
            sent_at: message.sent_at,
            burn_at: shard.burn_at,
            text: message.text,
            seq: message.seq,
            hash: message_hash(&message.signed),
            prev: message.prev,
            attachments: message.attachments,
        })
    }

    /// Deletes one of my own messages, proving authorship with its delete secret.
    pub async fn delete_message(
        &self,
        me: &Identity,
        m: &Membership,
        channel: ChannelId,
        number: u64,
    ) -> Result<(), ClientError> {
        let (_, key) = m.channel_key(channel)?;
        let cap = channel_capability(key, m.room, channel);
        let signer = Signer::Channel(m.room, channel);
        let path = format!("/messages/{}/{channel}/{number}", m.room);
        let shard: Shard = self
            .call_capability::<(), _>(&cap, signer, Method::GET, &path, None)
            .await?;
        let opened = open_message(m, channel, &shard)
            .map_err(|why| ClientError::Verification(format!("message {number} {why}")))?;
        let secret = delete_secret(me, m.room, channel, &opened.delete_nonce);
        let proof = cinder_proto::rooms::DeleteShard {
            delete_secret: Blob(secret.to_vec()),
        };
        self.call_capability::<_, ()>(&cap, signer, Method::DELETE, &path, Some(&proof))
            .await
    }
}

/// Seals a message for a reserved `number`: signed by `me` over the room, channel, number,
/// burn time, epoch, send time, delete nonce and text; sealed under the channel's current
/// key with room, channel, number, burn time and epoch as associated data. Counts the
/// message in `m`: it names the sender's previous message in the channel.
pub fn seal_message(
    me: &Identity,
    m: &mut Membership,
    channel: ChannelId,
    number: u64,
    text: &str,
    sent_at: Timestamp,
    burn_at: Timestamp,
) -> Result<PostShard, ClientError> {
    seal_message_with(
        me,
        m,
        (channel, number),
        (text, Vec::new()),
        (sent_at, burn_at),
    )
}

/// Like [`seal_message`], with files linked: the message carries their keys, names, sizes
/// and hashes (signed), and the post lists their media ids for the server.
pub fn seal_message_with(
    me: &Identity,
    m: &mut Membership,
    (channel, number): (ChannelId, u64),
    (text, attachments): (&str, Vec<Attachment>),
    (sent_at, burn_at): (Timestamp, Timestamp),
) -> Result<PostShard, ClientError> {
    let media = attachments.iter().map(|a| a.media_id).collect();
    let (epoch, key) = m.channel_key(channel)?;
    let key = key.clone();
    let at = Place {
        room: m.room,
        channel,
        number,
        burn_at,
        epoch,
    };
    let last = m.sent.get(&channel).cloned().unwrap_or(SentMark {
        seq: 0,
        hash: Blob(vec![0; 32]),
    });
    let mut body = MessageBody {
        sender: me.user_id(),
        key_version: me.bundle.version,
        sent_at,
        text: text.into(),
        delete_nonce: Nonce(random_id()?),
        seq: last.seq + 1,
        prev: last.hash,
        attachments,
        signature: Signature([0; 64]),
    };
    let signed = message_signed_bytes(at, &body);
    body.signature = Signature(me.signing_key().sign(&signed).to_bytes());
    m.sent.insert(
        channel,
        SentMark {
            seq: body.seq,
            hash: message_hash(&signed),
        },
    );
    let json = crate::secret::exposing(|| serde_json::to_vec(&body))
        .map_err(|e| ClientError::Internal(e.to_string()))?;
    let ciphertext = seal_body(
        &key,
        (m.room, channel, epoch),
        &json,
        &shard_aad(m.room, channel, number, burn_at, epoch),
    )?;
    let secret = delete_secret(me, m.room, channel, &body.delete_nonce);
    Ok(PostShard {
        ciphertext,
        burn_at,
        delete_hash: Some(Blob(Sha256::digest(secret).to_vec())),
        media,
    })
}

/// A message opened with the channel's key of its epoch; its signature is checked by
/// [`Opened::verify`].
pub struct Opened {
    /// Who it claims to be from.
    pub sender: UserId,
    /// Which version of the sender's keys it claims to be signed with.
    pub key_version: u64,
    /// The key epoch it was sealed under.
    pub epoch: u64,
    /// When the sender says it was written.
    pub sent_at: Timestamp,
    /// The text.
    pub text: String,
    /// The sender's count of messages in the channel.
    pub seq: u64,
    /// The hash of the sender's previous message.
    pub prev: Blob,
    /// Files linked from the message.
    pub attachments: Vec<Attachment>,
    delete_nonce: Nonce,
    signature: Signature,
    signed: Vec<u8>,
}

impl Opened {
    /// Whether `key` (the sender's verified directory key) signed this message, in this
    /// room, channel, number, burn time and epoch.
    pub fn verify(&self, key: &VerifyKey) -> bool {
        key.verify(&self.signed, &self.signature).is_ok()
    }
}

/// Opens a shard with the membership's key of the epoch it names, after checking the
/// key commitment.
pub fn open_message(m: &Membership, channel: ChannelId, shard: &Shard) -> Result<Opened, Refusal> {
    let (epoch, commit, sealed) = split_epoch(&shard.ciphertext.0).ok_or(Refusal::Unreadable)?;
    let key = m
        .channel_key_of(channel, epoch)
        .ok_or(Refusal::Unreadable)?;
    let aad = shard_aad(m.room, channel, shard.number, shard.burn_at, epoch);
    let nonce = sealed.get(..12).ok_or(Refusal::Unreadable)?;
    // Checked in constant time, before any decryption.
    commitment(key, m.room, channel, nonce, &aad)
        .verify_slice(commit)
        .map_err(|_| Refusal::Unreadable)?;
    let json = open(&message_key(key, m.room, channel), sealed, &aad).ok_or(Refusal::Unreadable)?;
    let body: MessageBody = serde_json::from_slice(&json).map_err(|_| Refusal::Unreadable)?;
    let at = Place {
        room: m.room,
        channel,
        number: shard.number,
        burn_at: shard.burn_at,
        epoch,
    };
    let signed = message_signed_bytes(at, &body);
    Ok(Opened {
        sender: body.sender,
        key_version: body.key_version,
        epoch,
        sent_at: body.sent_at,
        text: body.text,
        seq: body.seq,
        prev: body.prev,
        attachments: body.attachments,
        delete_nonce: body.delete_nonce,
        signature: body.signature,
        signed,
    })
}

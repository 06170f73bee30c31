//! Channel messages: signed by their sender inside the ciphertext, sealed under the
//! channel key of an epoch with room, channel, number, burn time and epoch as associated
//! data, and committed to that key.
//!
//! A reader trusts none of the server's word about a message. It refuses (and reports):
//! a message it cannot open; one under a superseded epoch's key numbered past that epoch's
//! cut-off in the signed state; one from someone who was not a member in that epoch; one
//! signed with a retired directory key after its retirement; one whose `burn_at` lies
//! beyond the channel's burn time, or already passed; and one with a bad signature.
//!
//! A page is taken in three steps ([`open_page`], then each sender's keys, then
//! [`OpenedPage::verify`]): every message is opened and checked against the room state,
//! with each epoch's message keys derived once; each sender's directory keys are fetched
//! and verified once; and the page's signatures are verified together, in one batch
//! (Ed25519 batch verification: one multi-scalar multiplication for the page). Only if the
//! batch fails is each signature verified on its own, so exactly the bad ones are refused.
//! A signature whose `R` is not canonically encoded or of small order never joins the
//! batch (strict verification refuses it; a batch equation could accept one its signer
//! crafted). A signer could still craft a signature whose `R` carries a mixed-order
//! component: strict verification refuses it, a batch accepts it with a probability that
//! depends on the rest of the page. Nobody without the sender's key can make one; it only
//! lets a sender have its own message shown by some readers and refused by others.
//!
//! A message carries one typed, versioned [`Content`] (a text, an edit, a reaction, a call
//! signal, or a kind this client does not know), kept as the exact JSON bytes the sender
//! signed: the signature (`cinder/message/v4`) covers those bytes, so a reader verifies a
//! message whether or not it understands its kind, and nobody can alter a field a reader
//! ignores. [`super::thread`] folds a channel's verified messages into what a reader shows.

use std::collections::{BTreeMap, BTreeSet};

use aes_gcm::Nonce as GcmNonce;
use aes_gcm::aead::{Aead, Payload};
use cinder_proto::ErrorCode;
use cinder_proto::rooms::{PostShard, Reserved, Shard, ShardPage};
use cinder_proto::{
    Blob, ChannelId, KeyBundle, MediaId, Nonce, RoomId, Signature, Signer, Timestamp, UserId,
    VerifyKey,
};
use ed25519_dalek::Signer as _;
use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::capabilities::{MessageKeys, channel_capability, commitment_mac, derive, message_key};
use super::{ChannelInfo, Membership, Secret32, Spine, random_id, seal};
use crate::call::CallSignal;
use crate::directory::{KeyCache, SignerKey};
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
    /// What it carries, as the signature covers it.
    pub content: Content,
    /// The sender's count of messages in this channel: 1, 2, 3, … (signed).
    pub seq: u64,
    /// The hash of this message's signed bytes, which the sender's next one names.
    pub hash: Blob,
    /// The hash of the sender's previous message in this channel (zeros for the first).
    pub prev: Blob,
}

impl Received {
    /// The text of a text message (a reply too); `None` for any other kind.
    pub fn text(&self) -> Option<&str> {
        match &self.content {
            Content::Text { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The files a text message links; [`Client::download`] fetches and opens one.
    pub fn attachments(&self) -> &[Attachment] {
        match &self.content {
            Content::Text { attachments, .. } => attachments,
            _ => &[],
        }
    }

    /// The call signal it carries (voice channels; see [`crate::call`]).
    pub fn signal(&self) -> Option<&CallSignal> {
        match &self.content {
            Content::Call { signal } => Some(signal),
            _ => None,
        }
    }
}

/// The longest emoji (in UTF-8 bytes) a reaction may carry: a few code points with
/// modifiers and joiners, never a message smuggled in as a reaction.
pub const MAX_EMOJI_BYTES: usize = 64;

/// The longest unknown kind name a reader keeps (to show in its placeholder).
const MAX_KIND_BYTES: usize = 64;

/// What a message carries: JSON tagged by `kind`. A reader that meets a kind it does not
/// know (a newer client's), or a known kind whose fields do not parse or break a bound,
/// still verifies the signature over the exact bytes and shows [`Content::Unknown`]: a
/// placeholder, never an error, so new kinds can ship without breaking old readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Content {
    /// Words, maybe with files, maybe a reply to message `reply_to`.
    Text {
        /// The text (may be empty when files are attached).
        text: String,
        /// The message this one answers.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<u64>,
        /// Files linked from the message: where they are, and the keys that open them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        attachments: Vec<Attachment>,
    },
    /// A new text for message `of`, which only its own sender may edit.
    Edit {
        /// The message edited.
        of: u64,
        /// Its new text.
        text: String,
    },
    /// An emoji on message `to` (or, with `remove`, taking the sender's one back).
    Reaction {
        /// The message reacted to.
        to: u64,
        /// The emoji, at most [`MAX_EMOJI_BYTES`] bytes.
        emoji: String,
        /// Takes back this sender's earlier reaction with the same emoji.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        remove: bool,
    },
    /// A call signal (voice channels): who is in the call, and the SDP and ICE candidates
    /// of its connections.
    Call {
        /// The signal.
        signal: CallSignal,
    },
    /// A kind this client does not show (or one whose fields do not parse): verified, shown
    /// as a placeholder. Never sent.
    #[serde(skip)]
    Unknown {
        /// The kind the message names (empty if none), at most 64 bytes.
        kind: String,
    },
}

impl Content {
    /// A plain text.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text {
            text: text.into(),
            reply_to: None,
            attachments: Vec::new(),
        }
    }

    /// The content of the exact bytes a sender signed: a known kind if it parses and keeps
    /// its bounds, else [`Content::Unknown`] naming the kind.
    pub(crate) fn parse(raw: &RawValue) -> Self {
        #[derive(Deserialize)]
        struct Kind {
            kind: Option<String>,
        }
        match serde_json::from_str::<Self>(raw.get()) {
            Ok(content) if content.within_bounds() => content,
            _ => {
                let mut kind = serde_json::from_str::<Kind>(raw.get())
                    .ok()
                    .and_then(|k| k.kind)
                    .unwrap_or_default();
                kind.truncate(kind.floor_char_boundary(MAX_KIND_BYTES));
                Self::Unknown { kind }
            }
        }
    }

    /// Whether its fields keep the bounds every client enforces.
    fn within_bounds(&self) -> bool {
        match self {
            Self::Reaction { emoji, .. } => !emoji.is_empty() && emoji.len() <= MAX_EMOJI_BYTES,
            _ => true,
        }
    }

    /// The JSON bytes to sign and send (attachments' keys included, so only inside the
    /// sealed body).
    fn to_raw(&self) -> Result<Box<RawValue>, ClientError> {
        if matches!(self, Self::Unknown { .. }) {
            return Err(ClientError::Input(
                "a message of an unknown kind cannot be sent".into(),
            ));
        }
        if !self.within_bounds() {
            return Err(ClientError::Input(format!(
                "a reaction is one emoji of 1 to {MAX_EMOJI_BYTES} bytes"
            )));
        }
        let json = crate::secret::exposing(|| serde_json::to_string(self))
            .map_err(|e| ClientError::Internal(e.to_string()))?;
        RawValue::from_string(json).map_err(|e| ClientError::Internal(e.to_string()))
    }
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
    /// The message's number in the channel (absent in profiles from before it was kept).
    #[serde(default)]
    pub number: u64,
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
    /// An edit of a message someone else wrote (see [`super::thread`]): never applied.
    ForgedEdit,
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
            Self::ForgedEdit => "edits a message someone else wrote",
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
    /// The highest number on this page past the cursor, shown or not: read on after it.
    pub last: Option<u64>,
    /// More messages may follow (never said of a page that did not move the cursor on).
    pub more: bool,
}

/// The associated data of a message: `cinder/shard/v2` ‖ 0 ‖ room ‖ channel ‖ number ‖
/// burn time ‖ epoch, in a fixed 72 bytes (no allocation per message).
pub(crate) fn shard_aad(
    room: RoomId,
    channel: ChannelId,
    number: u64,
    burn_at: Timestamp,
    epoch: u64,
) -> [u8; 72] {
    let mut aad = [0u8; 72];
    let parts: [&[u8]; 6] = [
        b"cinder/shard/v2\0",
        &room.0,
        &channel.0,
        &number.to_be_bytes(),
        &burn_at.0.to_be_bytes(),
        &epoch.to_be_bytes(),
    ];
    let mut at = 0;
    for part in parts {
        aad[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, aad.len());
    aad
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
    commitment_over(commitment_mac(key, room, channel), nonce, aad)
}

/// The commitment's input, into an HMAC already keyed with the commitment key.
fn commitment_over(mut mac: Hmac<Sha256>, nonce: &[u8], aad: &[u8]) -> Hmac<Sha256> {
    mac.update(nonce);
    mac.update(aad);
    mac
}

/// `epoch ‖ commitment ‖ nonce ‖ AES-256-GCM ciphertext and tag`.
pub(crate) fn seal_body(
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
    delete_nonce: Nonce,
    /// The sender's count of messages in this channel.
    seq: u64,
    /// The hash of the sender's previous message's signed bytes.
    prev: Blob,
    /// The [`Content`], as the exact JSON bytes the sender signed: a reader hashes what it
    /// was sent, not what it re-serialises, so the signature holds for kinds and fields it
    /// does not know.
    content: Box<RawValue>,
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
        b"cinder/message/v4\0".as_slice(),
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
        &content_hash(&body.content),
    ]
    .concat()
}

/// SHA-256 of the content's exact bytes, domain-separated: what the signature covers of it.
fn content_hash(content: &RawValue) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"cinder/message-content/v1\0")
        .chain_update(content.get().as_bytes())
        .finalize()
        .into()
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

/// The secret that deletes a message: only its sender can derive it again, from the delete
/// seed, which key rotations keep (so older messages stay deletable after one).
fn delete_secret(me: &Identity, room: RoomId, channel: ChannelId, nonce: &Nonce) -> [u8; 32] {
    derive(
        &me.seeds.delete,
        b"delete",
        &[&room.0, &channel.0, nonce.as_bytes()],
    )
}

/// Refuses a burn time longer than the channel's: readers would refuse the message.
fn check_burn(m: &Membership, channel: ChannelId, burn_secs: u64) -> Result<(), ClientError> {
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
    Ok(())
}

impl Client {
    /// Sends a message sealed under the channel's current key, signed by the sender, in
    /// one request when nobody else posted since this client last saw the channel: it
    /// proposes the number after the highest it has seen, and if that was taken the server
    /// answers with another number held for this client, under which it seals and posts
    /// once more. `burn_secs` may not exceed the channel's. `m` counts the message (keep
    /// it, so the next one follows on).
    pub async fn send_message(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        text: &str,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        self.send_content(me, m, channel, &Content::text(text), burn_secs)
            .await
    }

    /// Sends a reply to message `to`: a text naming it, shown with it by readers (even if
    /// they no longer hold message `to`). Returns the number it was posted under.
    pub async fn reply(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        to: u64,
        text: &str,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        let content = Content::Text {
            text: text.into(),
            reply_to: Some(to),
            attachments: Vec::new(),
        };
        self.send_content(me, m, channel, &content, burn_secs).await
    }

    /// Sends a new text for my message `of`. Readers show the newest edit in its place,
    /// marked edited, and refuse an edit of anyone else's message. The edit is a message
    /// of its own, with its own burn time: once it burns, readers show the text before it.
    pub async fn edit(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        of: u64,
        text: &str,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        let content = Content::Edit {
            of,
            text: text.into(),
        };
        self.send_content(me, m, channel, &content, burn_secs).await
    }

    /// Reacts to message `to` with `emoji` (at most [`MAX_EMOJI_BYTES`] bytes), or with
    /// `remove` takes my reaction with that emoji back.
    #[allow(clippy::too_many_arguments)] // the message's place, its two fields, its burn
    pub async fn react(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        to: u64,
        emoji: &str,
        remove: bool,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        let content = Content::Reaction {
            to,
            emoji: emoji.into(),
            remove,
        };
        self.send_content(me, m, channel, &content, burn_secs).await
    }

    /// Sends `content` (without files) as the channel's next message.
    async fn send_content(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        content: &Content,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        check_burn(m, channel, burn_secs)?;
        let mine = m.sent.get(&channel).map_or(0, |s| s.number);
        let proposal = self.seen(m.room, channel).max(mine) + 1;
        self.post_message(me, m, (channel, proposal, None), content, burn_secs)
            .await
    }

    /// Sends a call signal in `channel` (a voice channel), as a message with no text that
    /// burns with the channel's burn time: sealed and signed like any message, so only
    /// members read it and nobody can forge or alter it.
    pub async fn send_signal(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        signal: &CallSignal,
    ) -> Result<u64, ClientError> {
        let info = m
            .spine()
            .channel(channel)
            .ok_or_else(|| ClientError::Input(format!("no channel {channel} in this room")))?;
        if !info.voice {
            return Err(ClientError::Input(format!(
                "#{} is not a voice channel: calls are signalled in voice channels",
                info.name
            )));
        }
        let burn_secs = info.burn_secs;
        let content = Content::Call {
            signal: signal.clone(),
        };
        self.send_content(me, m, channel, &content, burn_secs).await
    }

    /// Checks `burn_secs` against the channel's burn time, then holds a number: for a
    /// message whose files are uploaded first, as their storage keys name the number.
    pub(crate) async fn reserve_for(
        &self,
        m: &Membership,
        channel: ChannelId,
        burn_secs: u64,
    ) -> Result<Reserved, ClientError> {
        check_burn(m, channel, burn_secs)?;
        let (_, key) = m.channel_key(channel)?;
        self.call_capability::<(), _>(
            &channel_capability(key, m.room, channel),
            Signer::Channel(m.room, channel),
            Method::POST,
            &format!("/messages/{}/{channel}/numbers", m.room),
            None,
        )
        .await
    }

    /// Seals and posts a message under `number`: proposed as the channel's next, or held
    /// for this client (`hold`). A message without files whose number was taken is sealed
    /// again for the number the server then holds for it (at most twice more: a server
    /// that keeps answering so is refusing the message); one with files is not, since
    /// they were uploaded under their number. Returns the number it was posted under.
    pub(crate) async fn post_message(
        &self,
        me: &Identity,
        m: &mut Membership,
        (channel, mut number, mut hold): (ChannelId, u64, Option<Blob>),
        content: &Content,
        burn_secs: u64,
    ) -> Result<u64, ClientError> {
        let raw = content.to_raw()?;
        let media: Vec<MediaId> = match content {
            Content::Text { attachments, .. } => attachments.iter().map(|a| a.media_id).collect(),
            _ => Vec::new(),
        };
        let movable = media.is_empty();
        let before = m.sent.get(&channel).cloned();
        let mut attempt = 0;
        loop {
            let sent_at = self.now();
            let mut post = seal_raw(
                me,
                m,
                (channel, number),
                (&raw, media.clone()),
                (sent_at, sent_at.plus(burn_secs)),
            )?;
            post.hold = hold.take();
            let (_, key) = m.channel_key(channel)?;
            let answer: Result<Shard, _> = self
                .call_capability(
                    &channel_capability(key, m.room, channel),
                    Signer::Channel(m.room, channel),
                    Method::PUT,
                    &format!("/messages/{}/{channel}/{number}", m.room),
                    Some(&post),
                )
                .await;
            match answer {
                Ok(_) => {
                    self.saw(m.room, channel, number);
                    return Ok(number);
                }
                Err(ClientError::Api { status, body })
                    if body.code == ErrorCode::NumberTaken && movable && attempt < 2 =>
                {
                    // Not sent: the sender's count goes back to before this attempt.
                    match &before {
                        Some(mark) => m.sent.insert(channel, mark.clone()),
                        None => m.sent.remove(&channel),
                    };
                    let reserved = body
                        .reserved
                        .clone()
                        .ok_or(ClientError::Api { status, body })?;
                    self.saw(m.room, channel, number);
                    number = reserved.number;
                    hold = Some(reserved.hold);
                    attempt += 1;
                }
                Err(e) => {
                    // No answer (a 5xx, a lost connection): the message may be stored all
                    // the same. If it is, this post succeeded; forgetting it would make the
                    // next message look forked from it, as if the server had replaced one.
                    if !super::invites::definitive(&e) {
                        match self.stored_as(m, channel, number, &post.ciphertext).await {
                            Some(true) => {
                                self.saw(m.room, channel, number);
                                return Ok(number);
                            }
                            // Unknown: keep the count moved on. If the message was lost,
                            // readers see one of this sender's messages missing, which it
                            // is, rather than a fork.
                            None => return Err(e),
                            Some(false) => {}
                        }
                    }
                    match &before {
                        Some(mark) => m.sent.insert(channel, mark.clone()),
                        None => m.sent.remove(&channel),
                    };
                    return Err(e);
                }
            }
        }
    }

    /// Whether the channel holds exactly `ciphertext` as message `number` (`None` if that
    /// cannot be read now).
    async fn stored_as(
        &self,
        m: &Membership,
        channel: ChannelId,
        number: u64,
        ciphertext: &Blob,
    ) -> Option<bool> {
        let (_, key) = m.channel_key(channel).ok()?;
        let read: Result<Shard, _> = self
            .call_capability::<(), _>(
                &channel_capability(key, m.room, channel),
                Signer::Channel(m.room, channel),
                Method::GET,
                &format!("/messages/{}/{channel}/{number}", m.room),
                None,
            )
            .await;
        match read {
            Ok(shard) => Some(&shard.ciphertext == ciphertext),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => Some(false),
            Err(_) => None,
        }
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
        // Read as a page of one, with every check a page gets.
        let mut page = self
            .verified_page(m, channel, number.saturating_sub(1), &[shard], pins)
            .await;
        match (page.messages.pop(), page.refused.first()) {
            (Some(received), _) => Ok(received),
            (None, Some((_, why))) => {
                Err(ClientError::Verification(format!("message {number} {why}")))
            }
            (None, None) => unreachable!("a page of one message shows or refuses it"),
        }
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
        let mut out = self
            .verified_page(m, channel, after, &page.shards, pins)
            .await;
        // More only if this page moved the cursor on: a server that says more follow
        // after a page of nothing new would keep a reader asking forever.
        out.more = page.next.is_some() && out.last.is_some();
        // Only where this client's next message proposes to go: no trust is placed in it.
        if let Some(last) = out.last {
            self.saw(m.room, channel, last);
        }
        Ok(out)
    }

    /// Every check of the module's introduction, for `shards` served after `after`: opened
    /// and checked against the room state, each sender's directory keys fetched and
    /// verified once, then the page's signatures verified in one batch.
    async fn verified_page(
        &self,
        m: &Membership,
        channel: ChannelId,
        after: u64,
        shards: &[Shard],
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Page {
        let now = self.burn_clock();
        let opened = open_page(m, channel, after, shards, now);
        let mut cache = KeyCache::default();
        let mut keys = BTreeMap::new();
        for (sender, version) in opened.signers() {
            let key = cache.key(self, pins, sender, version).await;
            keys.insert((sender, version), key);
        }
        opened.verify(|sender, version| keys.get(&(sender, version)).copied().flatten())
    }

    /// The clock a reader burns by. The server may have taught this client a clock that
    /// runs late, to keep burnt messages alive: burn by whichever clock is later.
    pub(crate) fn burn_clock(&self) -> Timestamp {
        Timestamp(self.now().0.max(Timestamp::now().0))
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
/// burn time, epoch, send time, delete nonce and content; sealed under the channel's current
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
    seal_content(
        me,
        m,
        (channel, number),
        &Content::text(text),
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
    let content = Content::Text {
        text: text.into(),
        reply_to: None,
        attachments,
    };
    seal_content(me, m, (channel, number), &content, (sent_at, burn_at))
}

/// Like [`seal_message`], for any content: an edit, a reaction, a call signal.
pub fn seal_content(
    me: &Identity,
    m: &mut Membership,
    place: (ChannelId, u64),
    content: &Content,
    times: (Timestamp, Timestamp),
) -> Result<PostShard, ClientError> {
    let media = match content {
        Content::Text { attachments, .. } => attachments.iter().map(|a| a.media_id).collect(),
        _ => Vec::new(),
    };
    seal_raw(me, m, place, (&content.to_raw()?, media), times)
}

/// Seals content given as its exact JSON bytes (whatever its kind), linking `media`.
pub(crate) fn seal_raw(
    me: &Identity,
    m: &mut Membership,
    (channel, number): (ChannelId, u64),
    (content, media): (&RawValue, Vec<MediaId>),
    (sent_at, burn_at): (Timestamp, Timestamp),
) -> Result<PostShard, ClientError> {
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
        number: 0,
    });
    let mut body = MessageBody {
        sender: me.user_id(),
        key_version: me.bundle.version,
        sent_at,
        delete_nonce: Nonce(random_id()?),
        seq: last.seq + 1,
        prev: last.hash,
        content: content.to_owned(),
        signature: Signature([0; 64]),
    };
    let signed = message_signed_bytes(at, &body);
    body.signature = Signature(me.signing_key().sign(&signed).to_bytes());
    m.sent.insert(
        channel,
        SentMark {
            seq: body.seq,
            hash: message_hash(&signed),
            number,
        },
    );
    let json = serde_json::to_vec(&body).map_err(|e| ClientError::Internal(e.to_string()))?;
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
        hold: None,
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
    /// What it carries (a kind this client does not know is [`Content::Unknown`]).
    pub content: Content,
    /// The sender's count of messages in the channel.
    pub seq: u64,
    /// The hash of the sender's previous message.
    pub prev: Blob,
    number: u64,
    burn_at: Timestamp,
    delete_nonce: Nonce,
    signature: Signature,
    signed: Vec<u8>,
}

/// Names the message, never its content or signature (bodies are not logged).
impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("number", &self.number)
            .field("sender", &self.sender)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
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
    let keys = MessageKeys::new(key, m.room, channel);
    open_with(&keys, place(m, channel, shard, epoch), commit, sealed)
}

fn place(m: &Membership, channel: ChannelId, shard: &Shard, epoch: u64) -> Place {
    Place {
        room: m.room,
        channel,
        number: shard.number,
        burn_at: shard.burn_at,
        epoch,
    }
}

/// Opens `commit ‖ sealed` (a ciphertext past its epoch) with the message keys of its
/// epoch, for the associated data of `at`.
fn open_with(
    keys: &MessageKeys,
    at: Place,
    commit: &[u8],
    sealed: &[u8],
) -> Result<Opened, Refusal> {
    let aad = shard_aad(at.room, at.channel, at.number, at.burn_at, at.epoch);
    let (nonce, ciphertext) = sealed.split_at_checked(12).ok_or(Refusal::Unreadable)?;
    // Checked in constant time, before any decryption.
    commitment_over(keys.commit.clone(), nonce, &aad)
        .verify_slice(commit)
        .map_err(|_| Refusal::Unreadable)?;
    let json = keys
        .aead
        .decrypt(
            GcmNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .map_err(|_| Refusal::Unreadable)?;
    let body: MessageBody = serde_json::from_slice(&json).map_err(|_| Refusal::Unreadable)?;
    let signed = message_signed_bytes(at, &body);
    Ok(Opened {
        sender: body.sender,
        key_version: body.key_version,
        epoch: at.epoch,
        sent_at: body.sent_at,
        content: Content::parse(&body.content),
        seq: body.seq,
        prev: body.prev,
        number: at.number,
        burn_at: at.burn_at,
        delete_nonce: body.delete_nonce,
        signature: body.signature,
        signed,
    })
}

/// A page of messages opened and checked against the signed room state, their signatures
/// not yet verified: [`OpenedPage::signers`] names the directory keys it needs, and
/// [`OpenedPage::verify`] finishes it.
pub struct OpenedPage<'a> {
    spine: &'a Spine,
    /// Per served message, in the order served: its number, and the message or why it is
    /// refused.
    entries: Vec<(u64, Result<Opened, Refusal>)>,
    last: Option<u64>,
}

/// Opens the messages of a page served after `after`, and makes every check but the
/// signatures' (see the module's introduction): in order, and past the cursor; not burnt
/// by `now`; opening under the key of the epoch it names, with a valid commitment;
/// possible send and burn times; before its epoch's cut-off; from a member of that epoch.
/// Each epoch's message keys are derived once for the page. [`Client::read`] takes a
/// page this way; so can an app that fetched the shards itself.
pub fn open_page<'a>(
    m: &'a Membership,
    channel: ChannelId,
    after: u64,
    shards: &[Shard],
    now: Timestamp,
) -> OpenedPage<'a> {
    let spine = m.spine();
    let info = spine.channel(channel);
    let mut keys: BTreeMap<u64, Option<MessageKeys>> = BTreeMap::new();
    let mut floor = after;
    let entries = shards
        .iter()
        .map(|shard| {
            let number = shard.number;
            // Numbers only go up, past the cursor: anything else is the server repeating one.
            if number <= floor {
                return (number, Err(Refusal::OutOfOrder));
            }
            floor = number;
            (number, check_shard(m, channel, info, shard, now, &mut keys))
        })
        .collect();
    OpenedPage {
        spine,
        entries,
        // Past the cursor only: a page of numbers at or before it must not move it back.
        last: shards.iter().map(|s| s.number).filter(|n| *n > after).max(),
    }
}

/// Whether something that burns at `burn_at` has burnt by `now`, with the clocks' allowance.
pub(crate) fn burnt(burn_at: Timestamp, now: Timestamp) -> bool {
    burn_at.0.saturating_add(CLOCK_ALLOWANCE_SECS) < now.0
}

/// Every check of one served message but its signature's.
fn check_shard(
    m: &Membership,
    channel: ChannelId,
    info: Option<&ChannelInfo>,
    shard: &Shard,
    now: Timestamp,
    keys: &mut BTreeMap<u64, Option<MessageKeys>>,
) -> Result<Opened, Refusal> {
    if burnt(shard.burn_at, now) {
        return Err(Refusal::Burnt);
    }
    let (epoch, commit, sealed) = split_epoch(&shard.ciphertext.0).ok_or(Refusal::Unreadable)?;
    // Only epochs this member holds a key of are derived, each once.
    let epoch_keys = keys
        .entry(epoch)
        .or_insert_with(|| {
            m.channel_key_of(channel, epoch)
                .map(|key| MessageKeys::new(key, m.room, channel))
        })
        .as_ref()
        .ok_or(Refusal::Unreadable)?;
    let message = open_with(epoch_keys, place(m, channel, shard, epoch), commit, sealed)?;
    let spine = m.spine();
    let info = info.ok_or(Refusal::Unreadable)?;
    let lifetime = shard.burn_at.0.checked_sub(message.sent_at.0);
    if lifetime.is_none_or(|l| l > info.burn_secs_for(shard.number))
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
    Ok(message)
}

impl OpenedPage<'_> {
    /// The directory keys the page's signatures need: each sender and key version once,
    /// in the order they first appear.
    pub fn signers(&self) -> Vec<(UserId, u64)> {
        let mut seen = BTreeSet::new();
        self.entries
            .iter()
            .filter_map(|(_, e)| e.as_ref().ok())
            .map(|o| (o.sender, o.key_version))
            .filter(|k| seen.insert(*k))
            .collect()
    }

    /// Verifies the page's signatures with `keys`, which gives a sender's verified
    /// directory key of a version (`None`: it could not be verified), and returns the
    /// page: a message whose key is missing or whose signature does not verify is refused
    /// as [`Refusal::BadSignature`], one signed with a key after its replacement as
    /// [`Refusal::RetiredKey`]. The signatures are verified in one batch, and one by one
    /// only if the batch fails.
    pub fn verify(self, mut keys: impl FnMut(UserId, u64) -> Option<SignerKey>) -> Page {
        // Each key is looked up and decompressed once for the page. A weak (small-order)
        // key never joins the batch: strict verification refuses what it signs.
        let found: BTreeMap<(UserId, u64), Option<PageKey>> = self
            .signers()
            .into_iter()
            .map(|(sender, version)| {
                let key = keys(sender, version).map(|signer| PageKey {
                    point: VerifyingKey::from_bytes(signer.key.as_bytes())
                        .ok()
                        .filter(|p| !p.is_weak()),
                    signer,
                });
                ((sender, version), key)
            })
            .collect();
        let key_of = |o: &Opened| {
            found
                .get(&(o.sender, o.key_version))
                .and_then(Option::as_ref)
        };
        let mut at = Vec::new();
        let mut batch = Vec::new();
        for (i, (_, entry)) in self.entries.iter().enumerate() {
            if let Ok(o) = entry
                && let Some(key) = key_of(o)
            {
                at.push(i);
                batch.push(SignedBytes {
                    bytes: &o.signed,
                    signature: &o.signature,
                    key: &key.signer.key,
                    point: key.point.as_ref(),
                });
            }
        }
        let mut good = vec![false; self.entries.len()];
        for (i, ok) in at.into_iter().zip(verify_signatures(&batch)) {
            good[i] = ok;
        }
        drop(batch);
        let mut page = Page {
            last: self.last,
            ..Page::default()
        };
        for ((number, entry), good) in self.entries.into_iter().zip(good) {
            let message = match entry {
                Ok(message) if good => message,
                Ok(_) => {
                    page.refused.push((number, Refusal::BadSignature));
                    continue;
                }
                Err(why) => {
                    page.refused.push((number, why));
                    continue;
                }
            };
            let superseded = key_of(&message).and_then(|k| k.signer.superseded_at);
            if superseded
                .is_some_and(|t| message.sent_at.0 > t.0.saturating_add(CLOCK_ALLOWANCE_SECS))
            {
                page.refused.push((number, Refusal::RetiredKey));
                continue;
            }
            page.messages.push(received(self.spine, message));
        }
        page
    }
}

/// A sender's key as a page uses it: verified, and decompressed once for the batch.
struct PageKey {
    signer: SignerKey,
    point: Option<VerifyingKey>,
}

/// A verified message as a reader is shown it.
fn received(spine: &Spine, message: Opened) -> Received {
    Received {
        number: message.number,
        sender: message.sender,
        sender_name: spine
            .member(message.sender)
            .map(|x| x.name.clone())
            .or_else(|| {
                let former = spine.former.iter().find(|f| f.user_id == message.sender)?;
                Some(format!("{} (removed)", former.name))
            }),
        sent_at: message.sent_at,
        burn_at: message.burn_at,
        hash: message_hash(&message.signed),
        content: with_burn_time(message.content, message.burn_at),
        seq: message.seq,
        prev: message.prev,
    }
}

/// `content` with its attachments marked with their message's burn time, so a download
/// refuses them once it passes.
fn with_burn_time(mut content: Content, burn_at: Timestamp) -> Content {
    if let Content::Text { attachments, .. } = &mut content {
        for a in attachments {
            a.burn_at = Some(burn_at);
        }
    }
    content
}

/// A lone signature is verified on its own: a batch of one costs more (45 us against 39 on
/// the development machine); from two on a batch costs less (30 us a signature for two, 16
/// for fifty, 11 for a thousand).
const BATCH_MIN: usize = 2;

/// One signature to verify.
struct SignedBytes<'a> {
    bytes: &'a [u8],
    signature: &'a Signature,
    /// The signer's verified directory key.
    key: &'a VerifyKey,
    /// The same key decompressed, if it may join a batch.
    point: Option<&'a VerifyingKey>,
}

/// Which of `items` verify, as strict verification ([`VerifyKey::verify`]) says: those that
/// may are verified in one batch; if the batch fails (or was not tried), each is verified
/// on its own.
fn verify_signatures(items: &[SignedBytes<'_>]) -> Vec<bool> {
    let mut ok = vec![false; items.len()];
    let batch: Vec<(usize, &VerifyingKey)> = items
        .iter()
        .enumerate()
        .filter(|(_, item)| strict_r(&item.signature.0))
        .filter_map(|(i, item)| Some((i, item.point?)))
        .collect();
    if batch.len() >= BATCH_MIN {
        let messages: Vec<&[u8]> = batch.iter().map(|(i, _)| items[*i].bytes).collect();
        let signatures: Vec<ed25519_dalek::Signature> = batch
            .iter()
            .map(|(i, _)| ed25519_dalek::Signature::from_bytes(&items[*i].signature.0))
            .collect();
        let keys: Vec<VerifyingKey> = batch.iter().map(|(_, key)| **key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            for (i, _) in &batch {
                ok[*i] = true;
            }
        }
    }
    for (item, ok) in items.iter().zip(&mut ok) {
        if !*ok {
            *ok = item.key.verify(item.bytes, item.signature).is_ok();
        }
    }
    ok
}

/// The y-coordinates (little-endian, sign bit clear) of the eight points of small order:
/// 0 (order 4), 1 (the identity), p − 1 (order 2), and the two of order 8.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// Whether a signature's `R` may join a batch: its y-coordinate is canonical (below
/// p = 2^255 − 19) and not one of a small-order point. Strict verification refuses
/// signatures whose `R` is either; a batch equation would not notice (an `R` of small order
/// is how a signer makes a signature only the batch accepts), so those are left to strict
/// verification.
fn strict_r(signature: &[u8; 64]) -> bool {
    let mut y = [0u8; 32];
    y.copy_from_slice(&signature[..32]);
    y[31] &= 0x7f;
    // y ≥ p exactly when bytes 1 to 30 are 0xff, byte 31 is 0x7f and byte 0 is ≥ 0xed.
    let canonical = !(y[0] >= 0xed && y[1..31].iter().all(|b| *b == 0xff) && y[31] == 0x7f);
    canonical && !SMALL_ORDER_Y.contains(&y)
}

/// Someone holding the channel key re-seals `shard` with other content bytes, keeping
/// its sender's signature (the hostile tests' tamperer).
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) fn reseal(m: &Membership, channel: ChannelId, shard: &mut Shard, content: &str) {
    let opened = open_message(m, channel, shard).ok().unwrap();
    let body = MessageBody {
        sender: opened.sender,
        key_version: opened.key_version,
        sent_at: opened.sent_at,
        delete_nonce: opened.delete_nonce,
        seq: opened.seq,
        prev: opened.prev.clone(),
        content: RawValue::from_string(content.into()).unwrap(),
        signature: opened.signature,
    };
    let (epoch, key) = m.channel_key(channel).unwrap();
    let json = serde_json::to_vec(&body).unwrap();
    let aad = shard_aad(m.room, channel, shard.number, shard.burn_at, epoch);
    shard.ciphertext = seal_body(key, (m.room, channel, epoch), &json, &aad).unwrap();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sha2::Sha512;

    use super::*;
    use crate::rooms::SpineMember;
    use crate::rooms::state::{FormerMember, Head};

    /// A room held offline, with `members` in it and one text channel burning in an hour.
    fn room(members: &[&Identity]) -> (Membership, ChannelId) {
        let (room, channel) = (
            RoomId(random_id().unwrap()),
            ChannelId(random_id().unwrap()),
        );
        let key = members[0].bundle.sign_key;
        let spine = Spine {
            room,
            version: 1,
            prev: Blob(vec![0; 32]),
            epoch: 1,
            name: "Team".into(),
            members: members
                .iter()
                .map(|me| SpineMember {
                    user_id: me.user_id(),
                    name: me.user_id().to_string(),
                    status: String::new(),
                    admin: false,
                    avatar: None,
                })
                .collect(),
            former: Vec::new(),
            channels: vec![ChannelInfo {
                id: channel,
                name: "general".into(),
                voice: false,
                burn_secs: 3600,
                since_epoch: 1,
                cutoffs: BTreeMap::new(),
                burn_history: Vec::new(),
            }],
            admin_key: key,
            member_key: key,
            channel_keys: BTreeMap::new(),
        };
        let m = Membership {
            room,
            master_keys: [(1, Secret32::random().unwrap())].into_iter().collect(),
            admin_key: None,
            channel_keys: [(
                channel,
                [(1, Secret32::random().unwrap())].into_iter().collect(),
            )]
            .into_iter()
            .collect(),
            head: Head {
                spine,
                hash: Blob(vec![0; 32]),
            },
            sent: BTreeMap::new(),
            avatar_requests: BTreeMap::new(),
            owed_keys: Default::default(),
            unsettled: None,
        };
        (m, channel)
    }

    /// Message `number`, written by `me` now.
    fn shard(me: &Identity, m: &mut Membership, channel: ChannelId, number: u64) -> Shard {
        let now = Timestamp::now();
        let post = seal_message(me, m, channel, number, "hello", now, now.plus(600)).unwrap();
        Shard {
            number,
            ciphertext: post.ciphertext,
            burn_at: post.burn_at,
            posted_at: now,
            delete_hash: post.delete_hash,
            media: post.media,
        }
    }

    /// Message 1, written by `me` at `sent`, burning 600 s later.
    fn sent_at(me: &Identity, m: &mut Membership, channel: ChannelId, sent: Timestamp) -> Shard {
        let post = seal_message(me, m, channel, 1, "hi", sent, sent.plus(600)).unwrap();
        Shard {
            number: 1,
            ciphertext: post.ciphertext,
            burn_at: post.burn_at,
            posted_at: sent,
            delete_hash: post.delete_hash,
            media: post.media,
        }
    }

    /// The current keys of `users`, as a reader that verified them has them.
    fn keys_of(users: &[&Identity]) -> impl Fn(UserId, u64) -> Option<SignerKey> {
        let keys: BTreeMap<_, _> = users
            .iter()
            .map(|u| ((u.user_id(), u.bundle.version), u.bundle.sign_key))
            .collect();
        move |user, version| {
            keys.get(&(user, version)).map(|key| SignerKey {
                key: *key,
                superseded_at: None,
            })
        }
    }

    fn take(m: &Membership, channel: ChannelId, shards: &[Shard], keys: &[&Identity]) -> Page {
        open_page(m, channel, 0, shards, Timestamp::now()).verify(keys_of(keys))
    }

    #[test]
    fn a_page_of_good_signatures_verifies_in_one_batch() {
        let (alice, bob) = (
            Identity::generate(Timestamp::now()).unwrap(),
            Identity::generate(Timestamp::now()).unwrap(),
        );
        let (mut m, channel) = room(&[&alice, &bob]);
        let shards: Vec<_> = (1..=12)
            .map(|n| shard(if n % 3 == 0 { &bob } else { &alice }, &mut m, channel, n))
            .collect();
        let page = take(&m, channel, &shards, &[&alice, &bob]);
        assert_eq!(page.refused, vec![]);
        let numbers: Vec<_> = page.messages.iter().map(|r| r.number).collect();
        assert_eq!(numbers, (1..=12).collect::<Vec<_>>());
        assert_eq!(page.last, Some(12));
        // Every one was good: the batch alone decided.
        let opened = open_page(&m, channel, 0, &shards, Timestamp::now());
        assert_eq!(opened.signers().len(), 2);
    }

    #[test]
    fn one_forged_signature_among_good_ones_refuses_exactly_that_one() {
        let (alice, mallory) = (
            Identity::generate(Timestamp::now()).unwrap(),
            Identity::generate(Timestamp::now()).unwrap(),
        );
        let (mut m, channel) = room(&[&alice]);
        // Message 6 claims to be Alice's, signed with Mallory's key.
        let impostor = Identity {
            bundle: alice.bundle.clone(),
            seeds: mallory.seeds.clone(),
        };
        let shards: Vec<_> = (1..=10)
            .map(|n| shard(if n == 6 { &impostor } else { &alice }, &mut m, channel, n))
            .collect();
        let page = take(&m, channel, &shards, &[&alice]);
        assert_eq!(page.refused, vec![(6, Refusal::BadSignature)]);
        let numbers: Vec<_> = page.messages.iter().map(|r| r.number).collect();
        assert_eq!(numbers, vec![1, 2, 3, 4, 5, 7, 8, 9, 10]);
        // Two forged among good ones: both, and only they, are refused.
        let mut two = shards.clone();
        two[1] = shard(&impostor, &mut m, channel, 2);
        let page = take(&m, channel, &two, &[&alice]);
        assert_eq!(
            page.refused,
            vec![(2, Refusal::BadSignature), (6, Refusal::BadSignature)]
        );
        assert_eq!(page.messages.len(), 8);
        // And a sender whose keys could not be verified has all of theirs refused.
        let page = take(&m, channel, &shards, &[]);
        assert_eq!(page.messages, vec![]);
        assert_eq!(page.refused.len(), 10);
    }

    #[test]
    fn a_signature_only_a_batch_would_accept_is_refused() {
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let (mut m, channel) = room(&[&alice]);
        let mut shards: Vec<_> = (1..=6).map(|n| shard(&alice, &mut m, channel, n)).collect();
        // GIVEN Alice, with her own key, signs message 4 with R the identity (a point of small
        // order) and s = k·a, which satisfies the batch equation but not strict verification
        let opened = open_message(&m, channel, &shards[3]).ok().unwrap();
        let r = curve25519_dalek::edwards::EdwardsPoint::default().compress();
        let k = curve25519_dalek::Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r.as_bytes())
                .chain_update(alice.bundle.sign_key.as_bytes())
                .chain_update(&opened.signed)
                .finalize()
                .into(),
        );
        let s = k * alice.signing_key().to_scalar();
        let crafted = Signature([r.to_bytes(), s.to_bytes()].concat().try_into().unwrap());
        assert!(
            alice
                .bundle
                .sign_key
                .verify(&opened.signed, &crafted)
                .is_err()
        );
        let body = MessageBody {
            sender: opened.sender,
            key_version: opened.key_version,
            sent_at: opened.sent_at,
            delete_nonce: opened.delete_nonce,
            seq: opened.seq,
            prev: opened.prev.clone(),
            content: Content::text("hello").to_raw().unwrap(),
            signature: crafted,
        };
        let (epoch, key) = m.channel_key(channel).unwrap();
        let json = serde_json::to_vec(&body).unwrap();
        let aad = shard_aad(m.room, channel, 4, shards[3].burn_at, epoch);
        shards[3].ciphertext = seal_body(key, (m.room, channel, epoch), &json, &aad).unwrap();
        // (a batch of it and good ones, on their own, passes)
        let others: Vec<_> = shards
            .iter()
            .map(|s| open_message(&m, channel, s).ok().unwrap())
            .collect();
        let messages: Vec<&[u8]> = others.iter().map(|o| o.signed.as_slice()).collect();
        let signatures: Vec<_> = others
            .iter()
            .map(|o| ed25519_dalek::Signature::from_bytes(&o.signature.0))
            .collect();
        let key = VerifyingKey::from_bytes(alice.bundle.sign_key.as_bytes()).unwrap();
        assert!(ed25519_dalek::verify_batch(&messages, &signatures, &vec![key; 6]).is_ok());
        // THEN a reader refuses it, as strict verification does, and shows the rest
        let page = take(&m, channel, &shards, &[&alice]);
        assert_eq!(page.refused, vec![(4, Refusal::BadSignature)]);
        assert_eq!(page.messages.len(), 5);
    }

    #[test]
    fn a_call_signal_is_covered_by_the_signature() {
        use crate::call::{CallSession, CallSignal};
        let (alice, bob) = (
            Identity::generate(Timestamp::now()).unwrap(),
            Identity::generate(Timestamp::now()).unwrap(),
        );
        let (mut m, channel) = room(&[&alice, &bob]);
        let offer = CallSignal::Offer {
            session: CallSession([1; 16]),
            to: bob.user_id(),
            to_session: CallSession([2; 16]),
            sdp: "v=0 (an offer)".into(),
        };
        let now = Timestamp::now();
        let post = seal_content(
            &alice,
            &mut m,
            (channel, 1),
            &Content::Call {
                signal: offer.clone(),
            },
            (now, now.plus(600)),
        )
        .unwrap();
        let mut shard = Shard {
            number: 1,
            ciphertext: post.ciphertext,
            burn_at: post.burn_at,
            posted_at: now,
            delete_hash: post.delete_hash,
            media: post.media,
        };
        // As sent, a reader gets the signal, verified.
        let page = take(&m, channel, std::slice::from_ref(&shard), &[&alice, &bob]);
        assert_eq!(page.refused, vec![]);
        assert_eq!(page.messages[0].signal(), Some(&offer));
        // GIVEN someone holding the channel key re-seals it with the offer sent elsewhere,
        // keeping Alice's signature
        let opened = open_message(&m, channel, &shard).ok().unwrap();
        let retargeted = CallSignal::Offer {
            session: CallSession([1; 16]),
            to: bob.user_id(),
            to_session: CallSession([3; 16]),
            sdp: "v=0 (an offer)".into(),
        };
        for tampered in [Content::Call { signal: retargeted }, Content::text("")] {
            let body = MessageBody {
                sender: opened.sender,
                key_version: opened.key_version,
                sent_at: opened.sent_at,
                delete_nonce: opened.delete_nonce,
                seq: opened.seq,
                prev: opened.prev.clone(),
                content: tampered.to_raw().unwrap(),
                signature: opened.signature,
            };
            let (epoch, key) = m.channel_key(channel).unwrap();
            let json = serde_json::to_vec(&body).unwrap();
            let aad = shard_aad(m.room, channel, 1, shard.burn_at, epoch);
            shard.ciphertext = seal_body(key, (m.room, channel, epoch), &json, &aad).unwrap();
            // THEN a reader refuses it: the signature covers the signal (and its absence)
            let page = take(&m, channel, std::slice::from_ref(&shard), &[&alice, &bob]);
            assert_eq!(page.refused, vec![(1, Refusal::BadSignature)]);
            assert_eq!(page.messages, vec![]);
        }
    }

    /// Message `number` by `me`, whose content is exactly the JSON `content`.
    fn raw_shard(
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        number: u64,
        content: &str,
    ) -> Shard {
        let now = Timestamp::now();
        let raw = RawValue::from_string(content.into()).unwrap();
        let post = seal_raw(
            me,
            m,
            (channel, number),
            (&raw, Vec::new()),
            (now, now.plus(600)),
        )
        .unwrap();
        Shard {
            number,
            ciphertext: post.ciphertext,
            burn_at: post.burn_at,
            posted_at: now,
            delete_hash: post.delete_hash,
            media: post.media,
        }
    }

    const POLL: &str = r#"{"kind":"poll","question":"lunch?","options":["soup","salad"]}"#;
    const MOODY: &str = r#"{"kind":"text","text":"hi","mood":"sunny"}"#;

    #[test]
    fn an_unknown_kind_verifies_and_shows_as_a_placeholder() {
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let (mut m, channel) = room(&[&alice]);
        // GIVEN a newer client's kind, a reaction past the emoji bound, a content that is no
        // object, and a text with a field this reader does not know
        let long_emoji = format!(
            r#"{{"kind":"reaction","to":1,"emoji":"{}"}}"#,
            "x".repeat(MAX_EMOJI_BYTES + 1)
        );
        let contents = [POLL, &long_emoji, "42", MOODY];
        let shards: Vec<_> = contents
            .iter()
            .zip(1..)
            .map(|(c, n)| raw_shard(&alice, &mut m, channel, n, c))
            .collect();
        // THEN every one verifies: the unknown ones as placeholders naming their kind
        let page = take(&m, channel, &shards, &[&alice]);
        assert_eq!(page.refused, vec![]);
        let shown: Vec<_> = page.messages.iter().map(|r| r.content.clone()).collect();
        assert_eq!(
            shown,
            vec![
                Content::Unknown {
                    kind: "poll".into()
                },
                Content::Unknown {
                    kind: "reaction".into()
                },
                Content::Unknown {
                    kind: String::new()
                },
                Content::text("hi"),
            ]
        );
    }

    #[test]
    fn continuity_tells_a_withheld_message_from_a_replaced_or_replayed_one() {
        let (alice, bob) = (UserId([1; 16]), UserId([2; 16]));
        // Message `number` of `sender`, her `seq`th, naming `prev` and hashing to `hash`.
        let msg = |sender, number, seq, prev: u8, hash: u8| Received {
            number,
            sender,
            sender_name: None,
            sent_at: Timestamp(0),
            burn_at: Timestamp(0),
            content: Content::text("hi"),
            seq,
            hash: Blob(vec![hash; 32]),
            prev: Blob(vec![prev; 32]),
        };
        let forked = |sender, number| Some(Break::Forked { sender, number });
        let mut c = Continuity::default();
        // The first seen is the baseline, and the next that names it follows on.
        assert_eq!(c.observe(&msg(alice, 10, 4, 0, 4)), None);
        assert_eq!(c.observe(&msg(alice, 11, 5, 4, 5)), None);
        // Another sender keeps a sequence of her own.
        assert_eq!(c.observe(&msg(bob, 12, 1, 0, 21)), None);
        // The next count naming another previous message was replaced,
        assert_eq!(c.observe(&msg(alice, 13, 6, 9, 6)), forked(alice, 13));
        // and one whose count is not past the last is a replay,
        assert_eq!(c.observe(&msg(alice, 14, 6, 5, 66)), forked(alice, 14));
        assert_eq!(c.observe(&msg(alice, 15, 2, 1, 2)), forked(alice, 15));
        // which moves the baseline no further back: the next after the last one seen
        // follows on.
        assert_eq!(c.observe(&msg(alice, 16, 7, 6, 7)), None);
        // A gap in the count is that many messages missing.
        assert_eq!(
            c.observe(&msg(alice, 20, 10, 9, 10)),
            Some(Break::Missing {
                sender: alice,
                count: 2,
                number: 20
            })
        );
        assert_eq!(c.observe(&msg(alice, 21, 11, 10, 11)), None);
        assert_eq!(c.observe(&msg(bob, 22, 2, 21, 22)), None);
    }

    #[test]
    fn an_opened_message_verifies_under_its_senders_key_only() {
        let (alice, bob) = (
            Identity::generate(Timestamp::now()).unwrap(),
            Identity::generate(Timestamp::now()).unwrap(),
        );
        let (mut m, channel) = room(&[&alice, &bob]);
        let served = shard(&alice, &mut m, channel, 1);
        let opened = open_message(&m, channel, &served).ok().unwrap();
        assert!(opened.verify(&alice.bundle.sign_key));
        assert!(!opened.verify(&bob.bundle.sign_key));
    }

    #[test]
    fn send_and_burn_times_are_refused_just_past_the_clock_allowance() {
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let (mut m, channel) = room(&[&alice]);
        let sent = Timestamp::now();
        let served = [sent_at(&alice, &mut m, channel, sent)];
        let read_at = |now: u64| {
            let page =
                open_page(&m, channel, 0, &served, Timestamp(now)).verify(keys_of(&[&alice]));
            match (&page.messages[..], &page.refused[..]) {
                ([shown], []) => Ok(shown.number),
                ([], [(_, why)]) => Err(*why),
                _ => panic!("{page:?}"),
            }
        };
        let allowance = CLOCK_ALLOWANCE_SECS;
        // A reader whose clock is behind the sender's by the allowance shows it, one a
        // second further behind sees it sent in the future;
        assert_eq!(read_at(sent.0 - allowance), Ok(1));
        assert_eq!(read_at(sent.0 - allowance - 1), Err(Refusal::BadTimes));
        // one whose clock is the allowance past the burn time shows it, a second more and
        // it has burnt.
        assert_eq!(read_at(sent.0 + 600 + allowance), Ok(1));
        assert_eq!(read_at(sent.0 + 600 + allowance + 1), Err(Refusal::Burnt));
    }

    #[test]
    fn a_key_signs_until_the_allowance_past_its_replacement() {
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let (mut m, channel) = room(&[&alice]);
        let sent = Timestamp::now();
        let served = [sent_at(&alice, &mut m, channel, sent)];
        // Alice's key as the directory shows it, replaced `before` seconds before she wrote.
        let read_with_key_replaced = |before: u64| {
            let page = open_page(&m, channel, 0, &served, sent).verify(|_, _| {
                Some(SignerKey {
                    key: alice.bundle.sign_key,
                    superseded_at: Some(Timestamp(sent.0 - before)),
                })
            });
            (page.messages.len(), page.refused)
        };
        assert_eq!(read_with_key_replaced(CLOCK_ALLOWANCE_SECS), (1, vec![]));
        assert_eq!(
            read_with_key_replaced(CLOCK_ALLOWANCE_SECS + 1),
            (0, vec![(1, Refusal::RetiredKey)])
        );
    }

    #[test]
    fn a_stranger_is_no_member_because_someone_else_was_one_then() {
        let [alice, dave, eve] = [(); 3].map(|()| Identity::generate(Timestamp::now()).unwrap());
        // GIVEN a room from which Dave was removed after epoch 1
        let (mut m, channel) = room(&[&alice]);
        m.head.spine.former.push(FormerMember {
            user_id: dave.user_id(),
            name: "dave".into(),
            last_epoch: 1,
        });
        // WHEN Dave and Eve, who never was a member, post under epoch 1's key
        let shards = [
            shard(&dave, &mut m, channel, 1),
            shard(&eve, &mut m, channel, 2),
        ];
        let page = take(&m, channel, &shards, &[&dave, &eve]);
        // THEN Dave's shows, marked removed, and Eve's is refused
        assert_eq!(page.refused, vec![(2, Refusal::NotAMember)]);
        assert_eq!(page.messages.len(), 1);
        assert_eq!(
            page.messages[0].sender_name.as_deref(),
            Some("dave (removed)")
        );
    }

    #[test]
    fn signatures_under_a_weak_key_are_refused_though_a_batch_would_pass_them() {
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let (mut m, channel) = room(&[&alice]);
        // GIVEN Alice's directory key served as the identity point (of small order), and
        // her messages signed with R = s·B for any s, which that key's batch equation takes
        let identity = curve25519_dalek::edwards::EdwardsPoint::default().compress();
        let weak: VerifyKey = VerifyingKey::from_bytes(identity.as_bytes())
            .unwrap()
            .into();
        let entries: Vec<_> = (1..=3)
            .map(|n| {
                let served = shard(&alice, &mut m, channel, n);
                let mut o = open_message(&m, channel, &served).ok().unwrap();
                let s = curve25519_dalek::Scalar::from_bytes_mod_order([n as u8 + 7; 32]);
                let r = curve25519_dalek::EdwardsPoint::mul_base(&s).compress();
                o.signature = Signature([r.to_bytes(), s.to_bytes()].concat().try_into().unwrap());
                (n, Ok(o))
            })
            .collect();
        let signed: Vec<_> = entries
            .iter()
            .map(|(_, o): &(u64, Result<Opened, Refusal>)| o.as_ref().ok().unwrap())
            .collect();
        assert!(
            ed25519_dalek::verify_batch(
                &signed
                    .iter()
                    .map(|o| o.signed.as_slice())
                    .collect::<Vec<_>>(),
                &signed
                    .iter()
                    .map(|o| ed25519_dalek::Signature::from_bytes(&o.signature.0))
                    .collect::<Vec<_>>(),
                &[VerifyingKey::from_bytes(identity.as_bytes()).unwrap(); 3],
            )
            .is_ok()
        );
        drop(signed);
        let page = OpenedPage {
            spine: m.spine(),
            entries,
            last: Some(3),
        };
        // THEN a reader refuses every one, as strict verification does
        let page = page.verify(|_, _| {
            Some(SignerKey {
                key: weak,
                superseded_at: None,
            })
        });
        assert_eq!(page.messages, vec![]);
        assert_eq!(
            page.refused,
            (1..=3)
                .map(|n| (n, Refusal::BadSignature))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_page_spliced_from_two_of_a_senders_devices_shows_as_a_fork() {
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let (mut m, channel) = room(&[&alice]);
        // GIVEN Alice's first message, then one from each of two devices that both think
        // they write her second, and the second device's third
        let first = shard(&alice, &mut m, channel, 1);
        let mut other = m.clone();
        let second = shard(&alice, &mut m, channel, 2);
        let other_second = shard(&alice, &mut other, channel, 3);
        let other_third = shard(&alice, &mut other, channel, 4);
        // WHEN the server withholds the other device's second
        let page = take(&m, channel, &[first, second, other_third], &[&alice]);
        assert_eq!(page.refused, vec![]);
        // THEN each message names the hash of the one before it from the same device,
        let [one, two, three] = &page.messages[..] else {
            panic!("{page:?}")
        };
        assert_eq!(two.prev, one.hash);
        assert_ne!(three.prev, two.hash);
        // and the reader sees that the third does not follow the second she was shown.
        let mut c = Continuity::default();
        assert_eq!(c.observe(one), None);
        assert_eq!(c.observe(two), None);
        assert_eq!(
            c.observe(three),
            Some(Break::Forked {
                sender: alice.user_id(),
                number: 4
            })
        );
        // Shown the message withheld, she sees it follows the first.
        let page = take(&other, channel, &[other_second], &[&alice]);
        assert_eq!(page.messages[0].prev, one.hash);
    }

    #[test]
    fn an_unknown_kinds_name_is_cut_to_its_bound_on_a_character_boundary() {
        let parse = |kind: &str| {
            let raw = RawValue::from_string(serde_json::json!({ "kind": kind }).to_string());
            match Content::parse(&raw.unwrap()) {
                Content::Unknown { kind } => kind,
                other => panic!("{other:?} is not a placeholder"),
            }
        };
        // A name within the bound is kept whole, one past it is cut to the bound,
        assert_eq!(
            parse(&"k".repeat(MAX_KIND_BYTES)),
            "k".repeat(MAX_KIND_BYTES)
        );
        assert_eq!(
            parse(&"k".repeat(MAX_KIND_BYTES + 1)),
            "k".repeat(MAX_KIND_BYTES)
        );
        // and a two-byte character across the bound is dropped whole, never split.
        let across = format!("{}é", "k".repeat(MAX_KIND_BYTES - 1));
        assert_eq!(parse(&across), "k".repeat(MAX_KIND_BYTES - 1));
        let long = "é".repeat(MAX_KIND_BYTES);
        assert_eq!(parse(&long), "é".repeat(MAX_KIND_BYTES / 2));
    }

    #[test]
    fn the_signature_covers_the_exact_content_bytes_even_those_a_reader_ignores() {
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let (mut m, channel) = room(&[&alice]);
        // GIVEN someone with the channel key re-seals Alice's messages with other content:
        // another poll option, a field the reader ignores, and the same poll re-spaced
        let tamperings = [
            (POLL, POLL.replace("salad", "stew")),
            (MOODY, MOODY.replace("sunny", "rainy")),
            (POLL, POLL.replace(r#""kind":"poll""#, r#""kind": "poll""#)),
        ];
        for (n, (original, tampered)) in (1..).zip(tamperings) {
            let mut shard = raw_shard(&alice, &mut m, channel, n, original);
            assert_eq!(
                take(&m, channel, &[shard.clone()], &[&alice]).refused,
                vec![]
            );
            reseal(&m, channel, &mut shard, &tampered);
            // THEN a reader refuses each: it verifies the bytes sent, not what it parsed
            let page = take(&m, channel, &[shard], &[&alice]);
            assert_eq!(page.refused, vec![(n, Refusal::BadSignature)], "{tampered}");
            assert_eq!(page.messages, vec![]);
        }
    }

    #[test]
    fn the_small_order_list_is_the_eight_torsion_points() {
        let masked = |mut y: [u8; 32]| {
            y[31] &= 0x7f;
            y
        };
        let torsion: BTreeSet<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|p| masked(p.compress().to_bytes()))
            .collect();
        assert_eq!(torsion, SMALL_ORDER_Y.into_iter().collect());
        let sig = |r: [u8; 32]| -> [u8; 64] { [r, [0; 32]].concat().try_into().unwrap() };
        for y in SMALL_ORDER_Y {
            assert!(VerifyingKey::from_bytes(&y).unwrap().is_weak());
            assert!(!strict_r(&sig(y)));
            let mut negative = y;
            negative[31] |= 0x80;
            assert!(!strict_r(&sig(negative)));
        }
        // y ≥ p is not canonical: p + 2 stands for 2.
        let mut p_plus_2 = [0xff; 32];
        p_plus_2[0] = 0xef;
        p_plus_2[31] = 0x7f;
        assert!(!strict_r(&sig(p_plus_2)));
        let mut p_minus_2 = p_plus_2;
        p_minus_2[0] = 0xeb;
        assert!(strict_r(&sig(p_minus_2)));
        // A real signature's R may join a batch.
        let alice = Identity::generate(Timestamp::now()).unwrap();
        assert!(strict_r(&alice.signing_key().sign(b"x").to_bytes()));
    }

    #[test]
    fn the_batch_verifier_gives_strict_verdicts_on_wycheproof_ed25519() {
        // Each vector is put in a batch beside a good signature, its key decompressed (and
        // left out if weak) as a page does: the verdict must be strict verification's
        // (crate::vectors::ed25519), and the good signature must still pass.
        let alice = Identity::generate(Timestamp::now()).unwrap();
        let good = Signature(alice.signing_key().sign(b"good").to_bytes());
        let alice_point = VerifyingKey::from_bytes(alice.bundle.sign_key.as_bytes()).unwrap();
        let mut batched = 0;
        for c in crate::vectors::ed25519::cases() {
            let (Ok(key), Ok(sig)) = (
                cinder_proto::VerifyKey::from_bytes(&c.key),
                <[u8; 64]>::try_from(c.sig.as_slice()),
            ) else {
                assert!(!c.valid, "tc {}", c.id);
                continue;
            };
            let sig = Signature(sig);
            let point = VerifyingKey::from_bytes(&c.key)
                .ok()
                .filter(|p| !p.is_weak());
            let items = [
                SignedBytes {
                    bytes: &c.msg,
                    signature: &sig,
                    key: &key,
                    point: point.as_ref(),
                },
                SignedBytes {
                    bytes: b"good",
                    signature: &good,
                    key: &alice.bundle.sign_key,
                    point: Some(&alice_point),
                },
            ];
            batched += usize::from(strict_r(&sig.0) && point.is_some());
            let verdicts = verify_signatures(&items);
            assert_eq!(verdicts[0], c.valid, "tc {}", c.id);
            assert_eq!(
                verdicts[0],
                crate::vectors::ed25519::verifies(&c),
                "tc {}",
                c.id
            );
            assert!(verdicts[1], "tc {}", c.id);
        }
        assert!(batched > 100, "{batched} vectors went through a batch");
    }
}

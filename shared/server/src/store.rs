//! One storage trait per record. Each is `Send + Sync` and held as `Arc<dyn …>`, so a
//! router never knows whether SQLite or DynamoDB is behind it. Every implementation must pass
//! the conformance suite in the `cinder-tests` crate.
//!
//! Expiry is part of the contract: a record past its `expires_at` is never returned, whatever
//! the database has or has not deleted yet. Stores take `now` from the caller for that.

use async_trait::async_trait;
use cinder_proto::{Envelope, EnvelopeId, KeyBundle, Timestamp, UserId};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the key exists already, or the version moved on.
    #[error("conditional write failed")]
    Conflict,
    /// The database failed or could not be reached.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The database is throttling, busy or briefly unreachable, after any retries the
    /// store makes itself: the call may succeed if made again a little later. Whether a
    /// write that failed this way was applied is unknown (as for `Backend`).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A stored item could not be decoded.
    #[error("stored item is corrupt: {0}")]
    Corrupt(String),
}

/// The key directory: every version of every user's key bundle.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores one bundle version. [`StoreError::Conflict`] if that (user, version) exists.
    async fn insert(&self, bundle: &KeyBundle) -> Result<(), StoreError>;

    /// The highest version of a user's bundle.
    async fn current(&self, user: &UserId) -> Result<Option<KeyBundle>, StoreError>;

    /// The current bundles of many users, in any order; unknown users are left out.
    async fn current_many(&self, users: &[UserId]) -> Result<Vec<KeyBundle>, StoreError>;

    /// Up to `limit` versions above `after`, oldest first.
    async fn chain(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<KeyBundle>, StoreError>;
}

/// Nonces seen inside the replay window.
#[async_trait]
pub trait NonceStore: Send + Sync {
    /// Records `key` until `expires_at`. Returns `false` when it is already recorded and
    /// not yet expired at `now`: the request is a replay.
    async fn remember(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// Invite inboxes: sealed envelopes waiting for their recipient.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Stores an envelope for `owner` unless `max` unexpired envelopes (at the envelope's
    /// `created_at`) already wait there: `false`, and nothing stored. The cap holds under
    /// concurrent drops: never more than `max` stay. [`StoreError::Conflict`] if the id
    /// exists.
    async fn put(
        &self,
        owner: &UserId,
        envelope: &Envelope,
        max: usize,
    ) -> Result<bool, StoreError>;

    /// Up to `limit` unexpired envelopes with ids above `after`, in id order.
    async fn list(
        &self,
        owner: &UserId,
        after: Option<EnvelopeId>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Envelope>, StoreError>;

    /// How many unexpired envelopes wait for `owner`.
    async fn count(&self, owner: &UserId, now: Timestamp) -> Result<usize, StoreError>;

    /// Deletes one envelope; `false` if there was none (or it had expired).
    async fn delete(
        &self,
        owner: &UserId,
        id: &EnvelopeId,
        now: Timestamp,
    ) -> Result<bool, StoreError>;
}

/// The key an account is stored under: HMAC-SHA256 of the normalised login under a server
/// secret, so the table never holds a login and a copy of it cannot be joined to one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct LoginKey(pub [u8; 32]);

impl std::fmt::Display for LoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for LoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginKey({self})")
    }
}

impl std::str::FromStr for LoginKey {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| StoreError::Corrupt("login key".into()))?;
        Ok(Self(out))
    }
}

impl serde::Serialize for LoginKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for LoginKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One account: its OPAQUE registration record, the client's Argon2id parameters and the
/// sealed enclave. Nothing in it lets its holder test a password guess without the OPAQUE
/// server secret, which is not in the database.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountRecord {
    /// Keyed hash of the login.
    pub login: LoginKey,
    /// OPAQUE `ServerRegistration` (the "password file").
    pub registration: cinder_proto::Blob,
    /// Argon2id parameters the client registered with.
    pub ksf: cinder_proto::accounts::KsfParams,
    /// The sealed enclave.
    pub enclave: cinder_proto::accounts::StoredEnclave,
    /// The open sessions.
    #[serde(default)]
    pub sessions: Sessions,
}

/// One open session: a session token names its id, and is good only while the account
/// lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionEntry {
    /// Random, 128 bits, hex.
    pub id: String,
    /// When the login that opened it finished.
    pub created_at: Timestamp,
    /// When it ends by itself.
    pub expires_at: Timestamp,
}

/// An account's open sessions, replaced whole at a version, so a login and a sign-out at
/// the same time never overwrite each other.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Sessions {
    /// One more on every change; 0 for an account that never had a session listed.
    pub version: u64,
    /// The sessions, oldest first.
    pub open: Vec<SessionEntry>,
}

/// Accounts, keyed by [`LoginKey`].
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account. [`StoreError::Conflict`] if the login is taken.
    async fn create(&self, record: &AccountRecord) -> Result<(), StoreError>;

    /// Reads an account.
    async fn account(&self, login: &LoginKey) -> Result<Option<AccountRecord>, StoreError>;

    /// Replaces the enclave if it is still at `expected_version`; the new version is one
    /// more. [`StoreError::Conflict`] otherwise (including a deleted account).
    async fn put_enclave(
        &self,
        login: &LoginKey,
        ciphertext: &cinder_proto::Blob,
        expected_version: u64,
    ) -> Result<u64, StoreError>;

    /// Replaces registration, parameters and enclave in one write, if the enclave is still
    /// at `expected_version`: a password change never leaves one without the other. It
    /// also ends every session (the list is emptied and its version moves on).
    async fn replace_credentials(
        &self,
        login: &LoginKey,
        registration: &cinder_proto::Blob,
        ksf: cinder_proto::accounts::KsfParams,
        ciphertext: &cinder_proto::Blob,
        expected_version: u64,
    ) -> Result<u64, StoreError>;

    /// Replaces the account's open sessions if they are still at `expected_version`; the
    /// new version is one more. [`StoreError::Conflict`] otherwise (including no account).
    async fn put_sessions(
        &self,
        login: &LoginKey,
        open: &[SessionEntry],
        expected_version: u64,
    ) -> Result<u64, StoreError>;

    /// Deletes an account; `false` if there was none.
    async fn delete_account(&self, login: &LoginKey) -> Result<bool, StoreError>;
}

/// Token buckets for rate limits (see [`crate::limits`]), shared by every instance.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Spends one request from the bucket `key` at `rate`, atomically under concurrent
    /// callers: `None` if it goes through (the bucket's new time is stored), or the
    /// milliseconds to wait (nothing stored). Applies [`crate::limits::gcra`] to the stored
    /// time; a bucket past [`crate::limits::forget_at`] may be forgotten.
    async fn take(
        &self,
        key: &str,
        rate: crate::limits::Rate,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError>;
}

/// Rooms: the spine ciphertext and the capabilities' verification keys, and the spine log:
/// every version's sealed spine, so clients can check a room's whole history of states.
///
/// The log is written only by [`create_room`](Self::create_room) and
/// [`update_room`](Self::update_room), in the same atomic write as the room itself: a write
/// that fails for any reason (a conflict included) leaves no log entry behind, and a
/// version's entry, once written, is never overwritten. So the log holds exactly the
/// versions the room has had, each with the spine the room held at that version.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Creates a room and logs its spine. [`StoreError::Conflict`] if the id exists.
    async fn create_room(&self, room: &cinder_proto::rooms::Room) -> Result<(), StoreError>;

    /// Reads a room.
    async fn room(
        &self,
        id: &cinder_proto::RoomId,
    ) -> Result<Option<cinder_proto::rooms::Room>, StoreError>;

    /// Replaces a room whose stored version is `room.version - 1`, and logs its spine.
    /// [`StoreError::Conflict`] otherwise (including a deleted room, or a version already
    /// logged), with neither the room nor the log changed.
    async fn update_room(&self, room: &cinder_proto::rooms::Room) -> Result<(), StoreError>;

    /// Up to `limit` logged spines of a room with versions above `after`, oldest first;
    /// empty for an unknown room. The log outlives [`delete_room`](Self::delete_room), as
    /// the room's messages do: whether a deleted room's history is served is the caller's
    /// decision.
    async fn spines(
        &self,
        id: &cinder_proto::RoomId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<cinder_proto::rooms::SpineEntry>, StoreError>;

    /// Deletes a room, leaving a tombstone: the id is never accepted for a new room, so no
    /// one can register fresh capabilities over the old room's unburnt messages. `false` if
    /// there was no (live) room.
    async fn delete_room(&self, id: &cinder_proto::RoomId) -> Result<bool, StoreError>;
}

/// Where a channel's messages live: the room and the channel, since channel ids are only
/// unique within a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelRef {
    /// The room.
    pub room: cinder_proto::RoomId,
    /// The channel.
    pub channel: cinder_proto::ChannelId,
}

impl std::fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.room, self.channel)
    }
}

/// Channel messages. Burn is part of the contract: a shard whose `burn_at` has passed is
/// never returned, whatever has been deleted.
#[async_trait]
pub trait ShardStore: Send + Sync {
    /// Takes the channel's next message number and holds it for whoever knows `hold`
    /// until `expires_at`: unique, and above every number taken before, under any number of
    /// concurrent callers. A hold is never served as a message.
    async fn reserve(
        &self,
        channel: &ChannelRef,
        hold: &[u8],
        expires_at: Timestamp,
    ) -> Result<u64, StoreError>;

    /// The highest number taken so far, posted or held (0 if none).
    async fn reserved(&self, channel: &ChannelRef) -> Result<u64, StoreError>;

    /// Stores a shard as the channel's next message, taking its number, in one atomic
    /// write: only if `shard.number` is exactly one past the highest number taken.
    /// [`StoreError::Conflict`] otherwise.
    async fn post_next(
        &self,
        channel: &ChannelRef,
        shard: &cinder_proto::rooms::Shard,
    ) -> Result<(), StoreError>;

    /// Stores a shard under a number held with `hold` whose hold has not lapsed by `now`,
    /// ending the hold. [`StoreError::Conflict`] if there is no such hold.
    async fn fill_hold(
        &self,
        channel: &ChannelRef,
        shard: &cinder_proto::rooms::Shard,
        hold: &[u8],
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Up to `limit` unburnt shards numbered above `after`, in number order.
    async fn shards(
        &self,
        channel: &ChannelRef,
        after: u64,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<cinder_proto::rooms::Shard>, StoreError>;

    /// One shard, unless absent or burnt.
    async fn shard(
        &self,
        channel: &ChannelRef,
        number: u64,
        now: Timestamp,
    ) -> Result<Option<cinder_proto::rooms::Shard>, StoreError>;

    /// Deletes one shard's contents, leaving its number taken until it burns; `false` if
    /// there was none.
    async fn delete_shard(&self, channel: &ChannelRef, number: u64) -> Result<bool, StoreError>;
}

/// A URL for one object, and the headers a request to it must carry as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// Where to send the request.
    pub url: String,
    /// Headers the request must carry exactly (an upload's `content-length`).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// Where media ciphertexts are fetched and sent: short-lived URLs for one object each (S3
/// presigned URLs in AWS, the dev server's own under `make dev`). The server never moves
/// bytes.
#[async_trait]
pub trait MediaUrls: Send + Sync {
    /// A URL that accepts one `PUT` of exactly `size` bytes to `key` until `now + ttl`.
    async fn upload_url(
        &self,
        key: &cinder_proto::media::ObjectKey,
        size: u64,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError>;

    /// A URL that serves `key`'s bytes until `now + ttl`.
    async fn download_url(
        &self,
        key: &cinder_proto::media::ObjectKey,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError>;
}

/// Where media ciphertexts live, S3 in AWS and files under `make dev`, as the burn sees
/// them: objects to delete.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Deletes objects; absent ones are not an error.
    async fn delete(&self, keys: &[cinder_proto::media::ObjectKey]) -> Result<(), StoreError>;
}

/// One subscription of a live connection to a channel: who to tell, and the capability key
/// it was proved with (a subscription whose key is no longer the channel's is stale: the
/// room has re-keyed since, and its subscriber may have been removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The connection (API Gateway's connection id; the dev server's own).
    pub connection: String,
    /// The channel.
    pub channel: ChannelRef,
    /// The channel capability key the subscription was proved with.
    pub key: cinder_proto::VerifyKey,
    /// When it lapses unless renewed.
    pub expires_at: Timestamp,
}

/// Live subscriptions: which connections follow which channels. Expiry is part of the
/// contract, as for nonces: a lapsed subscription is never returned.
#[async_trait]
pub trait LiveStore: Send + Sync {
    /// Records (or renews) a subscription.
    async fn subscribe(&self, subscription: &Subscription) -> Result<(), StoreError>;

    /// Drops one subscription; `false` if there was none.
    async fn unsubscribe(&self, connection: &str, channel: &ChannelRef)
    -> Result<bool, StoreError>;

    /// The channels a connection follows (unlapsed at `now`).
    async fn subscriptions_of(
        &self,
        connection: &str,
        now: Timestamp,
    ) -> Result<Vec<ChannelRef>, StoreError>;

    /// Every unlapsed subscription to a channel.
    async fn subscribers(
        &self,
        channel: &ChannelRef,
        now: Timestamp,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Drops every subscription of a connection (it closed, or is gone).
    async fn disconnect(&self, connection: &str) -> Result<(), StoreError>;
}

/// A TURN relay, as it last announced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// The relay's own name for itself (random per process).
    pub relay_id: String,
    /// Its ICE server URLs.
    pub urls: Vec<String>,
    /// When to forget it unless it announces itself again.
    pub expires_at: Timestamp,
}

/// Where the TURN relays are: each announces itself every minute or so, with an expiry a
/// few minutes ahead, so a relay that stops is forgotten on its own.
#[async_trait]
pub trait RelayStore: Send + Sync {
    /// Records a relay's announcement, unless the one stored for it reaches further
    /// ([`StoreError::Conflict`]): a replayed older announcement never shortens a newer one.
    async fn announce(&self, relay: &Relay) -> Result<(), StoreError>;

    /// Every relay whose announcement has not lapsed at `now`, in any order.
    async fn relays(&self, now: Timestamp) -> Result<Vec<Relay>, StoreError>;
}

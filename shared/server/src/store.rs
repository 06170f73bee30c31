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
    /// Stores an envelope for `owner`. [`StoreError::Conflict`] if the id exists.
    async fn put(&self, owner: &UserId, envelope: &Envelope) -> Result<(), StoreError>;

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

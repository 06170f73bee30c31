//! Fault injection: [`Faulty`] wraps a store and fails chosen calls, as [`Faults`] says:
//! the n-th call of an operation from now, or every call from the n-th on, with
//! [`StoreError::Backend`] (a `500`) or [`StoreError::Unavailable`] (a `503`), either
//! before the call reaches the store (nothing written) or after it returns (written, and
//! the answer lost: the case a caller cannot tell from the first).
//!
//! Operations are named `trait.method`: `keys.current`, `inbox.put`, `rooms.update_room`,
//! `shards.post_next`, `nonces.remember`, …

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cinder_proto::rooms::{Room, Shard, SpineEntry};
use cinder_proto::{Envelope, EnvelopeId, KeyBundle, RoomId, Timestamp, UserId};
use cinder_server::store::{
    ChannelRef, InboxStore, KeyStore, NonceStore, RoomStore, ShardStore, StoreError,
};

/// What an injected failure looks like to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `StoreError::Backend`, before the store is called.
    Backend,
    /// `StoreError::Unavailable`, before the store is called.
    Unavailable,
    /// The store is called (a write is applied), then `StoreError::Unavailable`.
    UnavailableAfter,
}

#[derive(Debug)]
struct Rule {
    op: &'static str,
    /// Calls of `op` numbered from 1 since the store was made; fails those in `from..=to`.
    from: usize,
    to: usize,
    fault: Fault,
}

/// Which calls fail, and how many of each operation were made.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    calls: Mutex<HashMap<&'static str, usize>>,
}

impl Faults {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// How many calls of `op` were made (failed ones included).
    pub fn calls(&self, op: &str) -> usize {
        self.calls.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// Fails the `n`-th call of `op` from now (1 is the next).
    pub fn fail_nth(&self, op: &'static str, n: usize, fault: Fault) {
        let at = self.calls(op) + n;
        self.rules.lock().unwrap().push(Rule {
            op,
            from: at,
            to: at,
            fault,
        });
    }

    /// Fails every call of `op` from the `n`-th from now on.
    pub fn fail_from(&self, op: &'static str, n: usize, fault: Fault) {
        let at = self.calls(op) + n;
        self.rules.lock().unwrap().push(Rule {
            op,
            from: at,
            to: usize::MAX,
            fault,
        });
    }

    /// No more failures.
    pub fn heal(&self) {
        self.rules.lock().unwrap().clear();
    }

    /// Counts a call of `op`, and says whether (and how) it fails.
    fn next(&self, op: &'static str) -> Option<Fault> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            let n = calls.entry(op).or_default();
            *n += 1;
            *n
        };
        self.rules
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.op == op && (r.from..=r.to).contains(&n))
            .map(|r| r.fault)
    }
}

/// A store whose calls fail as its [`Faults`] say.
pub struct Faulty<S> {
    inner: Arc<S>,
    faults: Arc<Faults>,
}

impl<S> Faulty<S> {
    pub fn new(inner: Arc<S>, faults: Arc<Faults>) -> Arc<Self> {
        Arc::new(Self { inner, faults })
    }
}

fn injected(op: &str, fault: Fault) -> StoreError {
    let why = format!("injected into {op}");
    match fault {
        Fault::Backend => StoreError::Backend(why),
        Fault::Unavailable | Fault::UnavailableAfter => StoreError::Unavailable(why),
    }
}

/// Runs one call of `op` through the faults.
macro_rules! call {
    ($self:ident, $op:literal, $call:expr) => {{
        match $self.faults.next($op) {
            None => $call.await,
            Some(Fault::UnavailableAfter) => {
                let _ = $call.await;
                Err(injected($op, Fault::UnavailableAfter))
            }
            Some(fault) => Err(injected($op, fault)),
        }
    }};
}

#[async_trait]
impl<S: KeyStore + 'static> KeyStore for Faulty<S> {
    async fn insert(&self, bundle: &KeyBundle) -> Result<(), StoreError> {
        call!(self, "keys.insert", self.inner.insert(bundle))
    }
    async fn current(&self, user: &UserId) -> Result<Option<KeyBundle>, StoreError> {
        call!(self, "keys.current", self.inner.current(user))
    }
    async fn current_many(&self, users: &[UserId]) -> Result<Vec<KeyBundle>, StoreError> {
        call!(self, "keys.current_many", self.inner.current_many(users))
    }
    async fn chain(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<KeyBundle>, StoreError> {
        call!(self, "keys.chain", self.inner.chain(user, after, limit))
    }
}

#[async_trait]
impl<S: NonceStore + 'static> NonceStore for Faulty<S> {
    async fn remember(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        call!(
            self,
            "nonces.remember",
            self.inner.remember(key, expires_at, now)
        )
    }
}

#[async_trait]
impl<S: InboxStore + 'static> InboxStore for Faulty<S> {
    async fn put(
        &self,
        owner: &UserId,
        envelope: &Envelope,
        max: usize,
    ) -> Result<bool, StoreError> {
        call!(self, "inbox.put", self.inner.put(owner, envelope, max))
    }
    async fn list(
        &self,
        owner: &UserId,
        after: Option<EnvelopeId>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Envelope>, StoreError> {
        call!(
            self,
            "inbox.list",
            self.inner.list(owner, after, limit, now)
        )
    }
    async fn count(&self, owner: &UserId, now: Timestamp) -> Result<usize, StoreError> {
        call!(self, "inbox.count", self.inner.count(owner, now))
    }
    async fn delete(
        &self,
        owner: &UserId,
        id: &EnvelopeId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        call!(self, "inbox.delete", self.inner.delete(owner, id, now))
    }
}

#[async_trait]
impl<S: RoomStore + 'static> RoomStore for Faulty<S> {
    async fn create_room(&self, room: &Room) -> Result<(), StoreError> {
        call!(self, "rooms.create_room", self.inner.create_room(room))
    }
    async fn room(&self, id: &RoomId) -> Result<Option<Room>, StoreError> {
        call!(self, "rooms.room", self.inner.room(id))
    }
    async fn update_room(&self, room: &Room) -> Result<(), StoreError> {
        call!(self, "rooms.update_room", self.inner.update_room(room))
    }
    async fn spines(
        &self,
        id: &RoomId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SpineEntry>, StoreError> {
        call!(self, "rooms.spines", self.inner.spines(id, after, limit))
    }
    async fn delete_room(&self, id: &RoomId) -> Result<bool, StoreError> {
        call!(self, "rooms.delete_room", self.inner.delete_room(id))
    }
}

#[async_trait]
impl<S: ShardStore + 'static> ShardStore for Faulty<S> {
    async fn reserve(
        &self,
        channel: &ChannelRef,
        hold: &[u8],
        expires_at: Timestamp,
    ) -> Result<u64, StoreError> {
        call!(
            self,
            "shards.reserve",
            self.inner.reserve(channel, hold, expires_at)
        )
    }
    async fn reserved(&self, channel: &ChannelRef) -> Result<u64, StoreError> {
        call!(self, "shards.reserved", self.inner.reserved(channel))
    }
    async fn post_next(&self, channel: &ChannelRef, shard: &Shard) -> Result<(), StoreError> {
        call!(
            self,
            "shards.post_next",
            self.inner.post_next(channel, shard)
        )
    }
    async fn fill_hold(
        &self,
        channel: &ChannelRef,
        shard: &Shard,
        hold: &[u8],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        call!(
            self,
            "shards.fill_hold",
            self.inner.fill_hold(channel, shard, hold, now)
        )
    }
    async fn shards(
        &self,
        channel: &ChannelRef,
        after: u64,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Shard>, StoreError> {
        call!(
            self,
            "shards.shards",
            self.inner.shards(channel, after, limit, now)
        )
    }
    async fn shard(
        &self,
        channel: &ChannelRef,
        number: u64,
        now: Timestamp,
    ) -> Result<Option<Shard>, StoreError> {
        call!(self, "shards.shard", self.inner.shard(channel, number, now))
    }
    async fn delete_shard(&self, channel: &ChannelRef, number: u64) -> Result<bool, StoreError> {
        call!(
            self,
            "shards.delete_shard",
            self.inner.delete_shard(channel, number)
        )
    }
}

#[async_trait]
impl<S: cinder_server::store::RateLimitStore + 'static> cinder_server::store::RateLimitStore
    for Faulty<S>
{
    async fn take(
        &self,
        key: &str,
        rate: cinder_server::limits::Rate,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        call!(self, "limits.take", self.inner.take(key, rate, now_ms))
    }
}

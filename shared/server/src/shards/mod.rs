//! Channel messages: the shards function's surface. The server numbers messages, stores
//! their ciphertexts and burns them; a channel capability signature gates every call.
//!
//! - [`domain`]: the rules.
//! - [`routes`]: the router.

pub mod domain;
pub mod routes;

use std::sync::Arc;

use axum::extract::FromRef;

pub use domain::delete_hash_of;
pub use routes::{router, routes};

use crate::limits::{Limiter, Limits};
use crate::store::{NonceStore, RateLimitStore, RoomStore, ShardStore};
use crate::{Auth, Clock};

/// How far ahead a message may be set to burn, when the operator does not say (30 days).
pub const DEFAULT_MAX_BURN_SECS: u64 = 30 * 24 * 3600;

/// What the shards function's handlers need.
#[derive(Clone)]
pub struct ShardsState {
    /// Messages.
    pub shards: Arc<dyn ShardStore>,
    /// Capability authentication (reads rooms for channel keys).
    pub auth: Auth,
    /// The per-action limits.
    pub limits: Limiter,
    /// The burn horizon, in seconds.
    pub max_burn_secs: u64,
    /// Live connections in this process to tell of posts and deletes (the dev server);
    /// `None` where the table's stream does it (AWS).
    pub notify: Option<Arc<dyn crate::live::Notify>>,
}

impl ShardsState {
    /// State over one store holding rooms, shards and nonces.
    pub fn new<S>(store: Arc<S>, clock: Clock, max_burn_secs: u64) -> Self
    where
        S: RoomStore + ShardStore + NonceStore + RateLimitStore + 'static,
    {
        Self {
            shards: store.clone(),
            limits: Limiter::new(store.clone(), Limits::default()),
            auth: Auth::for_rooms(store.clone(), store, clock),
            max_burn_secs,
            notify: None,
        }
    }

    /// The same state at `limits` (as configured, see [`Limits::from_env`]).
    pub fn with_limits(self, limits: Limits) -> Self {
        Self {
            limits: Limiter::new(self.limits.store(), limits),
            ..self
        }
    }

    /// The same state, telling `notify` of every post and delete once it is stored.
    pub fn with_notify(self, notify: Arc<dyn crate::live::Notify>) -> Self {
        Self {
            notify: Some(notify),
            ..self
        }
    }
}

impl FromRef<ShardsState> for Auth {
    fn from_ref(state: &ShardsState) -> Self {
        state.auth.clone()
    }
}

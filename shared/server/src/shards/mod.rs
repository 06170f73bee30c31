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

use crate::store::{NonceStore, RoomStore, ShardStore};
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
    /// The burn horizon, in seconds.
    pub max_burn_secs: u64,
}

impl ShardsState {
    /// State over one store holding rooms, shards and nonces.
    pub fn new<S>(store: Arc<S>, clock: Clock, max_burn_secs: u64) -> Self
    where
        S: RoomStore + ShardStore + NonceStore + 'static,
    {
        Self {
            shards: store.clone(),
            auth: Auth::for_rooms(store.clone(), store, clock),
            max_burn_secs,
        }
    }
}

impl FromRef<ShardsState> for Auth {
    fn from_ref(state: &ShardsState) -> Self {
        state.auth.clone()
    }
}

//! Media: the media function's surface. The server checks a capability and hands out a
//! short-lived URL for one object; ciphertext goes straight between the client and the
//! object store, never through a function.
//!
//! - [`domain`]: the rules.
//! - [`routes`]: the router.

pub mod domain;
pub mod routes;

use std::sync::Arc;

use axum::extract::FromRef;

pub use routes::{router, routes};

use crate::limits::{Limiter, Limits};
use crate::store::{MediaUrls, NonceStore, RateLimitStore, RoomStore, ShardStore};
use crate::{Auth, Clock};

/// What the media function's handlers need.
#[derive(Clone)]
pub struct MediaState {
    /// Messages: an attachment is served only while the message linking it lives.
    pub shards: Arc<dyn ShardStore>,
    /// Where the bytes are.
    pub objects: Arc<dyn MediaUrls>,
    /// Capability authentication (reads rooms for channel and member keys).
    pub auth: Auth,
    /// The per-action limits.
    pub limits: Limiter,
    /// The largest object, in bytes.
    pub max_bytes: u64,
}

impl MediaState {
    /// State over one store holding rooms, shards and nonces, and an object store.
    pub fn new<S>(store: Arc<S>, objects: Arc<dyn MediaUrls>, clock: Clock, max_bytes: u64) -> Self
    where
        S: RoomStore + ShardStore + NonceStore + RateLimitStore + 'static,
    {
        Self {
            shards: store.clone(),
            limits: Limiter::new(store.clone(), Limits::default()),
            objects,
            auth: Auth::for_rooms(store.clone(), store, clock),
            max_bytes,
        }
    }

    /// The same state at `limits` (as configured, see [`Limits::from_env`]).
    pub fn with_limits(self, limits: Limits) -> Self {
        Self {
            limits: Limiter::new(self.limits.store(), limits),
            ..self
        }
    }
}

impl FromRef<MediaState> for Auth {
    fn from_ref(state: &MediaState) -> Self {
        state.auth.clone()
    }
}

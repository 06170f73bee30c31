//! Calls: the calls function's surface. A member of a channel (proved by the channel
//! capability) gets short-lived TURN credentials and the URLs of the relays that announced
//! themselves lately; relays announce themselves with a MAC under the shared secret. Call
//! media never passes through a function.
//!
//! - [`domain`]: the rules.
//! - [`routes`]: the router.
//! - [`memory`]: relays in memory, for the dev server.

pub mod domain;
pub mod memory;
pub mod routes;

use std::sync::Arc;

use axum::extract::FromRef;

pub use domain::TurnSecret;
pub use memory::MemoryRelays;
pub use routes::{router, routes};

use crate::limits::{Limiter, Limits};
use crate::store::{NonceStore, RateLimitStore, RelayStore, RoomStore};
use crate::{Auth, Clock};

/// What the calls function's handlers need.
#[derive(Clone)]
pub struct CallsState {
    /// Where the relays are.
    pub relays: Arc<dyn RelayStore>,
    /// The secret shared with the relays.
    pub secret: Arc<TurnSecret>,
    /// Capability authentication (reads rooms for channel keys).
    pub auth: Auth,
    /// The per-action limits.
    pub limits: Limiter,
    /// How long credentials live, in seconds (at most an hour).
    pub credential_secs: u64,
}

impl CallsState {
    /// State over one store holding rooms and nonces, a relay store and the shared secret.
    pub fn new<S>(
        store: Arc<S>,
        relays: Arc<dyn RelayStore>,
        secret: Arc<TurnSecret>,
        clock: Clock,
    ) -> Self
    where
        S: RoomStore + NonceStore + RateLimitStore + 'static,
    {
        Self {
            limits: Limiter::new(store.clone(), Limits::default()),
            relays,
            secret,
            auth: Auth::for_rooms(store.clone(), store, clock),
            credential_secs: cinder_proto::calls::limits::MAX_CREDENTIAL_SECS,
        }
    }

    /// The same state at `limits` (as configured, see [`Limits::from_env`]).
    pub fn with_limits(self, limits: Limits) -> Self {
        Self {
            limits: Limiter::new(self.limits.store(), limits),
            ..self
        }
    }

    /// The same, with credentials that live `secs` (capped at an hour).
    pub fn with_credential_secs(mut self, secs: u64) -> Self {
        self.credential_secs = secs.clamp(1, cinder_proto::calls::limits::MAX_CREDENTIAL_SECS);
        self
    }
}

impl FromRef<CallsState> for Auth {
    fn from_ref(state: &CallsState) -> Self {
        state.auth.clone()
    }
}

//! Rooms: the spine function's surface. The server holds each room's sealed spine and the
//! verification keys of its capabilities, and checks those capabilities, never contents.
//!
//! - [`domain`]: the rules.
//! - [`routes`]: the router.

pub mod domain;
pub mod routes;

use std::sync::Arc;

use axum::extract::FromRef;

pub use routes::{router, routes};

use crate::limits::{Limiter, Limits};
use crate::store::{NonceStore, RateLimitStore, RoomStore};
use crate::{Auth, Clock};

/// What the spine function's handlers need.
#[derive(Clone)]
pub struct SpineState {
    /// Rooms.
    pub rooms: Arc<dyn RoomStore>,
    /// Capability authentication.
    pub auth: Auth,
    /// The per-action limits.
    pub limits: Limiter,
}

impl SpineState {
    /// State over one store holding rooms and nonces.
    pub fn new<S>(store: Arc<S>, clock: Clock) -> Self
    where
        S: RoomStore + NonceStore + RateLimitStore + 'static,
    {
        Self {
            rooms: store.clone(),
            limits: Limiter::new(store.clone(), Limits::default()),
            auth: Auth::for_rooms(store.clone(), store, clock),
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

impl FromRef<SpineState> for Auth {
    fn from_ref(state: &SpineState) -> Self {
        state.auth.clone()
    }
}

//! The key directory and invite inboxes: the `keys` Lambda's whole surface.
//!
//! - [`domain`]: the rules, as functions of parsed input, stores and `now`.
//! - [`routes`]: the router: extract, call the domain, respond.

pub mod domain;
pub mod routes;

use std::sync::Arc;

use axum::extract::FromRef;

pub use routes::{router, routes};

use crate::limits::{Limiter, Limits};
use crate::store::{InboxStore, KeyStore, NonceStore, RateLimitStore};
use crate::{Auth, Clock};

/// Everything the key directory's handlers need, built once per process.
#[derive(Clone)]
pub struct KeysState {
    /// Key bundles.
    pub keys: Arc<dyn KeyStore>,
    /// Invite inboxes.
    pub inbox: Arc<dyn InboxStore>,
    /// Request authentication (holds the clock).
    pub auth: Auth,
    /// Publish, rotation and drop limits.
    pub limits: Limiter,
}

impl KeysState {
    /// State over one store that holds every record it needs, as both implementations
    /// do, at the default limits.
    pub fn new<S>(store: Arc<S>, clock: Clock) -> Self
    where
        S: KeyStore + InboxStore + NonceStore + RateLimitStore + 'static,
    {
        Self {
            keys: store.clone(),
            inbox: store.clone(),
            limits: Limiter::new(store.clone(), Limits::default()),
            auth: Auth::new(store.clone(), store, clock),
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

impl FromRef<KeysState> for Auth {
    fn from_ref(state: &KeysState) -> Self {
        state.auth.clone()
    }
}

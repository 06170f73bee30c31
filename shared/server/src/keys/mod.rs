//! The key directory and invite inboxes: the `keys` Lambda's whole surface.
//!
//! - [`domain`]: the rules, as functions of parsed input, stores and `now`.
//! - [`routes`]: the router: extract, call the domain, respond.

pub mod domain;
pub mod routes;

use std::sync::Arc;

use axum::extract::FromRef;

pub use routes::{router, routes};

use crate::store::{InboxStore, KeyStore, NonceStore};
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
}

impl KeysState {
    /// State over one store that holds all three records, as both implementations do.
    pub fn new<S>(store: Arc<S>, clock: Clock) -> Self
    where
        S: KeyStore + InboxStore + NonceStore + 'static,
    {
        Self {
            keys: store.clone(),
            inbox: store.clone(),
            auth: Auth::new(store.clone(), store, clock),
        }
    }
}

impl FromRef<KeysState> for Auth {
    fn from_ref(state: &KeysState) -> Self {
        state.auth.clone()
    }
}

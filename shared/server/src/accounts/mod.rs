//! Accounts: OPAQUE registration and login, sessions, and the password-protected enclave.
//! The `enclave` Lambda's whole surface.
//!
//! - [`suite`]: the server's OPAQUE cipher suite.
//! - [`secrets`]: OPAQUE setup, login hashing and token sealing, from one master secret.
//! - [`domain`]: the rules, as functions of parsed input, state and `now`.
//! - [`routes`]: the router.
//!
//! Nothing here keeps state between requests: the OPAQUE login state travels to the client
//! sealed under a server key and comes back with the finish, so any Lambda instance can
//! finish a login another one started.

pub mod domain;
pub mod routes;
pub mod secrets;
pub mod suite;

use std::sync::Arc;

pub use routes::{router, routes};
pub use secrets::ServerSecrets;

use crate::Clock;
use crate::limits::{Limiter, Limits};
use crate::store::{AccountStore, NonceStore, RateLimitStore};

/// Everything the enclave function's handlers need, built once per process.
#[derive(Clone)]
pub struct AccountsState {
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Login and registration limits.
    pub limits: Limiter,
    /// Spent login states (each login start finishes at most once).
    pub nonces: Arc<dyn NonceStore>,
    /// Server secrets.
    pub secrets: Arc<ServerSecrets>,
    /// The time source.
    pub clock: Clock,
}

impl AccountsState {
    /// State over one store that holds all three records, as both implementations do,
    /// with the default limits.
    pub fn new<S>(store: Arc<S>, secrets: Arc<ServerSecrets>, clock: Clock) -> Self
    where
        S: AccountStore + RateLimitStore + NonceStore + 'static,
    {
        Self {
            accounts: store.clone(),
            limits: Limiter::new(store.clone(), Limits::default()),
            nonces: store,
            secrets,
            clock,
        }
    }

    /// The same state at `limits` (as configured, see [`Limits::from_env`]).
    pub fn with_limits(self, limits: Limits) -> Self {
        let store = self.limits.store();
        Self {
            limits: Limiter::new(store, limits),
            ..self
        }
    }
}

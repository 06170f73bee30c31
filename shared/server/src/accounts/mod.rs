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
use crate::store::{AccountStore, NonceStore, RateLimitStore};

/// Everything the enclave function's handlers need, built once per process.
#[derive(Clone)]
pub struct AccountsState {
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Login attempt counters.
    pub limits: Arc<dyn RateLimitStore>,
    /// Spent login states (each login start finishes at most once).
    pub nonces: Arc<dyn NonceStore>,
    /// Server secrets.
    pub secrets: Arc<ServerSecrets>,
    /// The time source.
    pub clock: Clock,
}

impl AccountsState {
    /// State over one store that holds all three records, as both implementations do.
    pub fn new<S>(store: Arc<S>, secrets: Arc<ServerSecrets>, clock: Clock) -> Self
    where
        S: AccountStore + RateLimitStore + NonceStore + 'static,
    {
        Self {
            accounts: store.clone(),
            limits: store.clone(),
            nonces: store,
            secrets,
            clock,
        }
    }
}

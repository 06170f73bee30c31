//! Calls on the dev server: the secret its credentials are made under and the relays they
//! name. `make dev` runs our TURN relay (`cinder-turn`) in the same process, on the same
//! secret, and announces it here as a relay on AWS announces itself to the calls function.

use std::sync::Arc;

use cinder_server::calls::{MemoryRelays, TurnSecret};

/// The calls routes' secret and relays.
#[derive(Clone)]
pub struct Calls {
    /// The secret shared with the relay.
    pub secret: Arc<TurnSecret>,
    /// The relays announced (the in-process one, when running).
    pub relays: Arc<MemoryRelays>,
}

impl Calls {
    /// A fresh random secret and no relay yet: credentials work, and name no relay until
    /// one announces itself.
    pub fn unrelayed() -> Self {
        Self {
            secret: Arc::new(fresh_secret()),
            relays: Arc::default(),
        }
    }
}

/// 32 random bytes, base64url; if the system cannot give randomness (it always can on a
/// machine that got this far), the process cannot make credentials and stops.
fn fresh_secret() -> TurnSecret {
    match TurnSecret::random() {
        Ok(secret) => secret,
        Err(e) => {
            tracing::error!(error = %e, "no randomness for the TURN secret");
            std::process::exit(1)
        }
    }
}

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

/// How often the in-process relay announces itself, and how far ahead each announcement
/// reaches (as `cinder-turn --announce-url` does on AWS).
const ANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const ANNOUNCE_SECS: u64 = 180;

/// Our TURN relay, started in this process on `addr` (UDP and TCP; port 0 picks free
/// ones) with `calls`' secret, relaying on 127.0.0.1 and allowing loopback peers (every
/// peer of a local call is on this machine), and announced in `calls`' relays until the
/// process ends.
pub async fn start_relay(
    calls: &Calls,
    addr: std::net::SocketAddr,
    clock: cinder_server::Clock,
) -> Result<cinder_turn::Server, cinder_turn::Error> {
    let mut config = cinder_turn::Config::loopback("cinder", calls.secret.expose().to_vec());
    config.udp = Some(addr);
    config.tcp = Some(addr);
    config.relay_bind = addr.ip();
    let relay = cinder_turn::Server::start(config).await?;
    let announcement = cinder_server::store::Relay {
        relay_id: relay.relay_id().to_owned(),
        urls: relay.urls().to_vec(),
        expires_at: clock.now(),
    };
    let relays = calls.relays.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
        loop {
            tick.tick().await;
            let mut next = announcement.clone();
            next.expires_at = clock.now().plus(ANNOUNCE_SECS);
            if let Err(e) = cinder_server::store::RelayStore::announce(&*relays, &next).await {
                tracing::warn!(error = %e, "announcing the local TURN relay");
            }
        }
    });
    Ok(relay)
}

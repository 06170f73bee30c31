//! Relays in memory: for the dev server, whose one relay runs in the same process and
//! announces itself again after a restart anyway.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use cinder_proto::Timestamp;

use crate::store::{Relay, RelayStore, StoreError};

/// Relays by id.
#[derive(Debug, Default)]
pub struct MemoryRelays {
    relays: Mutex<HashMap<String, Relay>>,
}

#[async_trait]
impl RelayStore for MemoryRelays {
    async fn announce(&self, relay: &Relay) -> Result<(), StoreError> {
        // A panic while holding the lock leaves whole entries, never half-written ones.
        let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        match relays.get(&relay.relay_id) {
            Some(stored) if stored.expires_at > relay.expires_at => Err(StoreError::Conflict),
            _ => {
                relays.insert(relay.relay_id.clone(), relay.clone());
                Ok(())
            }
        }
    }

    async fn relays(&self, now: Timestamp) -> Result<Vec<Relay>, StoreError> {
        let mut relays = self.relays.lock().unwrap_or_else(|p| p.into_inner());
        relays.retain(|_, r| r.expires_at > now);
        Ok(relays.values().cloned().collect())
    }
}

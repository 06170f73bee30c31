//! Where the TURN relays are, on DynamoDB (the relays table, [`crate::schema::RELAYS`]).
//!
//! One item per relay: its id, URLs and `expires_at` (the table's TTL). An announcement is
//! one conditional put that loses to a stored announcement reaching further, so a replayed
//! old one never shortens a newer one. Listing the relays is a scan: a deployment runs a
//! handful, and every read filters on `expires_at`, as TTL deletes lazily.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use cinder_proto::Timestamp;
use cinder_server::store::{Relay, RelayStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::secrets::SecretValue;
use crate::{ConfigError, backend, conditional, from_item, n, to_item};

/// Relays on one table.
#[derive(Debug, Clone)]
pub struct DynamoRelays {
    client: Client,
    table: String,
}

impl DynamoRelays {
    /// A store over an existing client and table.
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }
}

/// The calls function's configuration, read once at start.
#[derive(Debug)]
pub struct CallsConfig {
    /// The relays table.
    pub relays_table: String,
    /// The secret shared with the TURN relays.
    pub turn_secret: SecretValue,
    /// How long credentials live: 60 to 3600 seconds, default 3600.
    pub credential_secs: u64,
}

impl CallsConfig {
    /// Reads `RELAYS_TABLE`, `TURN_SECRET` and `TURN_CREDENTIAL_SECS` (optional).
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ConfigError::Missing(name));
        let max = cinder_proto::calls::limits::MAX_CREDENTIAL_SECS;
        let credential_secs = match std::env::var("TURN_CREDENTIAL_SECS") {
            Err(_) => max,
            Ok(v) => v
                .parse()
                .ok()
                .filter(|secs| (60..=max).contains(secs))
                .ok_or(ConfigError::Invalid("TURN_CREDENTIAL_SECS"))?,
        };
        Ok(Self {
            relays_table: var("RELAYS_TABLE")?,
            turn_secret: SecretValue::from_env("TURN_SECRET")?,
            credential_secs,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct RelayItem {
    relay_id: String,
    urls: Vec<String>,
    expires_at: u64,
}

#[async_trait]
impl RelayStore for DynamoRelays {
    async fn announce(&self, relay: &Relay) -> Result<(), StoreError> {
        let item = to_item(&RelayItem {
            relay_id: relay.relay_id.clone(),
            urls: relay.urls.clone(),
            expires_at: relay.expires_at.0,
        })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(relay_id) OR expires_at <= :new")
            .expression_attribute_values(":new", n(relay.expires_at.0))
            .send()
            .await
            .map_err(conditional)?;
        Ok(())
    }

    async fn relays(&self, now: Timestamp) -> Result<Vec<Relay>, StoreError> {
        let mut relays = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("expires_at > :now")
                .expression_attribute_values(":now", n(now.0))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(backend)?;
            for item in out.items.unwrap_or_default() {
                let item: RelayItem = from_item(item)?;
                relays.push(Relay {
                    relay_id: item.relay_id,
                    urls: item.urls,
                    expires_at: Timestamp(item.expires_at),
                });
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(relays),
            }
        }
    }
}

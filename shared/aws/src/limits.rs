//! Rate-limit buckets on DynamoDB, shared by every instance of every function.
//!
//! One item per bucket: `id`, its time `tat` in milliseconds, and `expires_at` (the table's
//! TTL) after which it is as good as absent. Spending is a compare-and-set: a bucket
//! believed absent or past is written on condition that it still is; one seen at a time is
//! written on condition that it still holds that time. A lost condition answers the
//! bucket's current item, and the rule is applied again to it, so concurrent spenders
//! never both take the last token. In the common case (a bucket not in use or at rest) a
//! request costs one conditional write and no read.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use cinder_server::limits::{self, Decision, Rate};
use cinder_server::store::{RateLimitStore, StoreError};

use crate::{ConfigError, backend, n, s};

/// Rounds of compare-and-set before a bucket under that much contention counts as full.
const ROUNDS: usize = 6;

/// Rate-limit buckets in one table (partition `id`, TTL `expires_at`).
#[derive(Debug, Clone)]
pub struct DynamoLimits {
    client: Client,
    table: String,
}

impl DynamoLimits {
    /// Buckets in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Buckets in the table named by `RATE_LIMITS_TABLE`.
    pub fn from_env(client: Client) -> Result<Self, ConfigError> {
        let table = std::env::var("RATE_LIMITS_TABLE")
            .map_err(|_| ConfigError::Missing("RATE_LIMITS_TABLE"))?;
        Ok(Self::new(client, table))
    }

    /// The bucket's stored time, read consistently (when a lost condition did not say).
    async fn stored(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.item.as_ref().map(tat_of).transpose()
    }
}

fn tat_of(item: &std::collections::HashMap<String, AttributeValue>) -> Result<u64, StoreError> {
    item.get("tat")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("rate-limit bucket".into()))
}

#[async_trait]
impl RateLimitStore for DynamoLimits {
    async fn take(&self, key: &str, rate: Rate, now_ms: u64) -> Result<Option<u64>, StoreError> {
        // `None`: believed absent, or at rest (its time not after now).
        let mut seen: Option<u64> = None;
        for _ in 0..ROUNDS {
            let tat = match limits::gcra(seen, rate, now_ms) {
                Decision::Wait { ms } => return Ok(Some(ms)),
                Decision::Allow { tat } => tat,
            };
            let request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("id", s(key))
                .update_expression("SET tat = :tat, expires_at = :exp")
                .expression_attribute_values(":tat", n(tat))
                .expression_attribute_values(":exp", n(limits::forget_at(tat)))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let request = match seen {
                None => request
                    .condition_expression("attribute_not_exists(tat) OR tat <= :now")
                    .expression_attribute_values(":now", n(now_ms)),
                Some(old) => request
                    .condition_expression("tat = :old")
                    .expression_attribute_values(":old", n(old)),
            };
            match request.send().await {
                Ok(_) => return Ok(None),
                Err(err) => {
                    let Some(UpdateItemError::ConditionalCheckFailedException(lost)) =
                        err.as_service_error()
                    else {
                        return Err(backend(err));
                    };
                    seen = match lost.item() {
                        Some(item) => Some(tat_of(item)?),
                        None => self.stored(key).await?,
                    };
                }
            }
        }
        // Every round lost to another spender of this very bucket: it is that busy.
        Ok(Some(rate.interval_ms()))
    }
}

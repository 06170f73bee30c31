//! Rate-limit buckets on DynamoDB, shared by every instance of every function.
//!
//! One item per bucket: `id`, its time `tat` in milliseconds, and `expires_at` (the table's
//! TTL) after which it is as good as absent. Spending is one conditional update with the
//! arithmetic in DynamoDB: a bucket at rest (absent, or its time not after now) is set to
//! now plus one interval; a bucket in use is moved on by one interval if it stays within
//! the tolerance. A lost condition answers the bucket's item, which says whether the bucket
//! is empty (the wait is returned) or was in the other case (tried once more). Concurrent
//! spenders never both take the last token.
//!
//! Which case to try first is a guess, and a wrong guess costs a second write (a failed
//! condition is billed as a write). The first guess for a bucket is "at rest"; after that
//! an instance remembers each bucket's time as its last spend left it (answered by the
//! update itself, at no extra cost), so a caller who acts again while the bucket is still
//! in use (every burst, every active sender) pays one write, not two. The remembered time
//! only picks the first try: the conditions decide, so a stale one (another instance spent
//! the bucket since) costs the second write and nothing else.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use cinder_server::limits::{self, Decision, Rate};
use cinder_server::store::{RateLimitStore, StoreError};

use crate::{ConfigError, backend, n, s};

/// Tries before a bucket that keeps changing case under a caller counts as busy.
const ROUNDS: usize = 4;

/// How many buckets' times an instance remembers; past that it forgets them all and
/// starts again (a guess lost costs one write, never a wrong decision).
const REMEMBERED: usize = 4096;

/// Rate-limit buckets in one table (partition `id`, TTL `expires_at`).
#[derive(Debug, Clone)]
pub struct DynamoLimits {
    client: Client,
    table: String,
    /// Each bucket's time as this instance last saw it: which case to try first.
    seen: Arc<Mutex<HashMap<String, u64>>>,
}

impl DynamoLimits {
    /// Buckets in `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            seen: Arc::default(),
        }
    }

    /// Buckets in the table named by `RATE_LIMITS_TABLE`.
    pub fn from_env(client: Client) -> Result<Self, ConfigError> {
        let table = std::env::var("RATE_LIMITS_TABLE")
            .map_err(|_| ConfigError::Missing("RATE_LIMITS_TABLE"))?;
        Ok(Self::new(client, table))
    }

    /// The bucket's stored time, read consistently (when a lost condition did not say).
    /// The bucket's time as this instance last saw it.
    fn last_seen(&self, key: &str) -> Option<u64> {
        self.seen.lock().ok()?.get(key).copied()
    }

    fn saw(&self, key: &str, tat: u64) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= REMEMBERED && !seen.contains_key(key) {
                seen.clear();
            }
            seen.insert(key.to_owned(), tat);
        }
    }

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
        let interval = rate.interval_ms();
        let limit = now_ms.saturating_add(rate.tolerance_ms());
        // Which case to try: a bucket at rest (absent, or its time not after now) starts
        // over at now; a bucket in use moves on by one interval, atomically, as long as it
        // stays within the tolerance. Neither needs the exact stored time, so concurrent
        // spenders of one bucket each get through in one write until it is empty.
        let mut at_rest = self.last_seen(key).is_none_or(|t| t <= now_ms);
        for _ in 0..ROUNDS {
            let request = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("id", s(key))
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .expression_attribute_values(":now", n(now_ms));
            let request = if at_rest {
                let tat = now_ms.saturating_add(interval);
                request
                    .update_expression("SET tat = :tat, expires_at = :exp")
                    .condition_expression("attribute_not_exists(tat) OR tat <= :now")
                    .expression_attribute_values(":tat", n(tat))
                    .expression_attribute_values(":exp", n(limits::forget_at(tat)))
            } else {
                // The new time is at most `limit + interval`; the item may be forgotten
                // only after that.
                let latest = limit.saturating_add(interval);
                request
                    .update_expression("SET tat = tat + :interval, expires_at = :exp")
                    .condition_expression("tat > :now AND tat <= :limit")
                    .expression_attribute_values(":interval", n(interval))
                    .expression_attribute_values(":limit", n(limit))
                    .expression_attribute_values(":exp", n(limits::forget_at(latest)))
            };
            match request.send().await {
                Ok(out) => {
                    if let Some(tat) = out.attributes.as_ref().and_then(|a| tat_of(a).ok()) {
                        self.saw(key, tat);
                    }
                    return Ok(None);
                }
                Err(err) => {
                    let Some(UpdateItemError::ConditionalCheckFailedException(lost)) =
                        err.as_service_error()
                    else {
                        return Err(backend(err));
                    };
                    let stored = match lost.item() {
                        Some(item) => Some(tat_of(item)?),
                        None => self.stored(key).await?,
                    };
                    if let Some(tat) = stored {
                        self.saw(key, tat);
                    }
                    match limits::gcra(stored, rate, now_ms) {
                        Decision::Wait { ms } => return Ok(Some(ms)),
                        // Absent or at rest after all (TTL removed it, or it was never
                        // in use): the other case, once more.
                        Decision::Allow { .. } => {
                            at_rest = stored.is_none_or(|t| t <= now_ms);
                        }
                    }
                }
            }
        }
        // The bucket kept changing case under us (it emptied and was removed meanwhile):
        // as busy as a refusal, for one interval.
        Ok(Some(interval))
    }
}

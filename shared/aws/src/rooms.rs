//! The spine and shards functions' stores on DynamoDB.
//!
//! Each room write is one transaction of two puts: the room, conditional on its id being
//! new or on its stored version, and its spine into the spine log, conditional on that
//! version not being logged yet. Either both happen or neither.
//!
//! Shards live in one table keyed by channel (`room/channel`) and number. Number 0 of each
//! channel is not a message but its counter, `next_number`, the highest number taken. A
//! post proposing the next number is one transaction: the counter moves from one below it
//! to it, and the message goes in. `reserve` is one atomic `ADD` on the counter, then a
//! hold item at that number (`hold`, its proof, and `burn_at`, when it lapses), which a post
//! carrying the proof replaces. Queries skip holds, deleted messages and burnt ones.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::builders::PutBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem, Update};
use cinder_proto::rooms::{Room, Shard, SpineEntry};
use cinder_proto::{Blob, RoomId, Timestamp};
use cinder_server::store::{ChannelRef, NonceStore, RoomStore, ShardStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::limits::DynamoLimits;
use crate::{
    ConfigError, backend, conditional, from_item, n, remember_nonce, s, to_item, transaction,
};

/// The spine and shards functions' tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTables {
    /// Rooms: partition `room_id`.
    pub rooms: String,
    /// The spine log: partition `room_id`, sort `version`.
    pub spines: String,
    /// Shards: partition `channel`, sort `number`, TTL `burn_at`.
    pub shards: String,
    /// Spent request nonces (shared with every function).
    pub nonces: String,
    /// Rate-limit buckets (shared with every function that limits an action).
    pub rate_limits: String,
}

impl RoomTables {
    /// Names with a common prefix, as the test harness uses.
    pub fn prefixed(prefix: &str) -> Self {
        Self {
            rooms: format!("{prefix}rooms"),
            spines: format!("{prefix}spines"),
            shards: format!("{prefix}shards"),
            nonces: format!("{prefix}nonces"),
            rate_limits: format!("{prefix}rate-limits"),
        }
    }

    /// Reads `ROOMS_TABLE`, `SPINES_TABLE`, `SHARDS_TABLE`, `NONCES_TABLE` and
    /// `RATE_LIMITS_TABLE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ConfigError::Missing(name));
        Ok(Self {
            rooms: var("ROOMS_TABLE")?,
            spines: var("SPINES_TABLE")?,
            shards: var("SHARDS_TABLE")?,
            nonces: var("NONCES_TABLE")?,
            rate_limits: var("RATE_LIMITS_TABLE")?,
        })
    }
}

/// Reads `MAX_BURN_SECS`, the burn horizon: 60 seconds to a year, default 30 days.
pub fn max_burn_secs_from_env() -> Result<u64, ConfigError> {
    match std::env::var("MAX_BURN_SECS") {
        Err(_) => Ok(cinder_server::shards::DEFAULT_MAX_BURN_SECS),
        Ok(v) => v
            .parse()
            .ok()
            .filter(|secs| (60..=365 * 24 * 3600).contains(secs))
            .ok_or(ConfigError::Invalid("MAX_BURN_SECS")),
    }
}

/// Rooms, shards and nonces on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoRooms {
    client: Client,
    tables: RoomTables,
    limits: DynamoLimits,
}

impl DynamoRooms {
    /// A store over an existing client.
    pub fn new(client: Client, tables: RoomTables) -> Self {
        let limits = DynamoLimits::new(client.clone(), tables.rate_limits.clone());
        Self {
            client,
            tables,
            limits,
        }
    }

    /// Writes `room`, conditional on `room_condition` (with `values`), and logs its spine,
    /// in one transaction: both puts happen, or neither.
    async fn write_room(
        &self,
        room: &Room,
        room_condition: &str,
        values: Option<(&str, AttributeValue)>,
    ) -> Result<(), StoreError> {
        let room_put = Put::builder()
            .table_name(&self.tables.rooms)
            .set_item(Some(to_item(room)?))
            .condition_expression(room_condition);
        let room_put = match values {
            Some((name, value)) => room_put.expression_attribute_values(name, value),
            None => room_put,
        };
        let entry = SpineItem {
            room_id: room.room_id,
            version: room.version,
            spine: room.spine.clone(),
        };
        // A version is logged once: no write may replace the spine a version had.
        let log_put = Put::builder()
            .table_name(&self.tables.spines)
            .set_item(Some(to_item(&entry)?))
            .condition_expression("attribute_not_exists(room_id)");
        self.client
            .transact_write_items()
            .transact_items(transact_put(room_put)?)
            .transact_items(transact_put(log_put)?)
            .send()
            .await
            .map_err(transaction)?;
        Ok(())
    }
}

/// One put of a transaction. Building fails only if table or item is missing, a bug here.
fn transact_put(builder: PutBuilder) -> Result<TransactWriteItem, StoreError> {
    let put = builder
        .build()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A spine log item: one version of a room's sealed spine.
#[derive(Serialize, Deserialize)]
struct SpineItem {
    room_id: RoomId,
    version: u64,
    spine: Blob,
}

#[async_trait]
impl RoomStore for DynamoRooms {
    async fn create_room(&self, room: &Room) -> Result<(), StoreError> {
        self.write_room(room, "attribute_not_exists(room_id)", None)
            .await
    }

    async fn room(&self, id: &RoomId) -> Result<Option<Room>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.rooms)
            .key("room_id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.item
            .filter(|i| !i.contains_key("deleted"))
            .map(from_item)
            .transpose()
    }

    async fn update_room(&self, room: &Room) -> Result<(), StoreError> {
        self.write_room(
            room,
            "version = :prev",
            Some((":prev", n(room.version.saturating_sub(1)))),
        )
        .await
    }

    async fn spines(
        &self,
        id: &RoomId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SpineEntry>, StoreError> {
        let mut out = Vec::with_capacity(limit);
        let mut start = None;
        // A Query answers at most 1 MB, about five of the largest spines: read on until the
        // page is full or the log is exhausted.
        while out.len() < limit {
            let page = self
                .client
                .query()
                .table_name(&self.tables.spines)
                .key_condition_expression("room_id = :r AND version > :after")
                .expression_attribute_values(":r", s(id))
                .expression_attribute_values(":after", n(after))
                .scan_index_forward(true)
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in page.items.unwrap_or_default() {
                let item: SpineItem = from_item(item)?;
                out.push(SpineEntry {
                    version: item.version,
                    spine: item.spine,
                });
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        Ok(out)
    }

    async fn delete_room(&self, id: &RoomId) -> Result<bool, StoreError> {
        // A tombstone, not a delete: the id must never name a new room, or whoever knew it
        // could register new capabilities over the old room's unburnt messages.
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.rooms)
            .item("room_id", s(id))
            .item("deleted", AttributeValue::Bool(true))
            .condition_expression("attribute_exists(room_id) AND attribute_not_exists(deleted)")
            .send()
            .await;
        match put.map_err(conditional) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A shard item: the shard plus its partition key.
#[derive(Serialize, Deserialize)]
struct ShardItem {
    channel: String,
    #[serde(flatten)]
    shard: Shard,
}

/// A shard's item, ready to put.
fn shard_item(
    channel: &ChannelRef,
    shard: &Shard,
) -> Result<std::collections::HashMap<String, AttributeValue>, StoreError> {
    to_item(&ShardItem {
        channel: channel.to_string(),
        shard: shard.clone(),
    })
}

#[async_trait]
impl ShardStore for DynamoRooms {
    async fn reserve(
        &self,
        channel: &ChannelRef,
        hold: &[u8],
        expires_at: Timestamp,
    ) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.tables.shards)
            .key("channel", s(channel))
            .key("number", n(0))
            .update_expression("ADD next_number :one")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(backend)?;
        let number: u64 = out
            .attributes
            .and_then(|a| {
                a.get("next_number")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
            })
            .ok_or_else(|| StoreError::Corrupt("shard counter".into()))?;
        // The number is this caller's alone: nobody else can have written under it.
        self.client
            .put_item()
            .table_name(&self.tables.shards)
            .item("channel", s(channel))
            .item("number", n(number))
            .item("hold", AttributeValue::B(hold.to_vec().into()))
            .item("burn_at", n(expires_at.0))
            .condition_expression("attribute_not_exists(#n)")
            .expression_attribute_names("#n", "number")
            .send()
            .await
            .map_err(backend)?;
        Ok(number)
    }

    async fn reserved(&self, channel: &ChannelRef) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.shards)
            .key("channel", s(channel))
            .key("number", n(0))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        Ok(out
            .item
            .and_then(|i| {
                i.get("next_number")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0))
    }

    async fn post_next(&self, channel: &ChannelRef, shard: &Shard) -> Result<(), StoreError> {
        let previous = shard
            .number
            .checked_sub(1)
            .ok_or_else(|| StoreError::Backend("message numbers start at 1".into()))?;
        // The counter moves from the number below to this one; a channel nobody posted in
        // yet has no counter, which only its first number may start.
        let condition = if previous == 0 {
            "attribute_not_exists(next_number) OR next_number = :prev"
        } else {
            "next_number = :prev"
        };
        let counter = Update::builder()
            .table_name(&self.tables.shards)
            .key("channel", s(channel))
            .key("number", n(0))
            .update_expression("SET next_number = :n")
            .condition_expression(condition)
            .expression_attribute_values(":prev", n(previous))
            .expression_attribute_values(":n", n(shard.number))
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let put = Put::builder()
            .table_name(&self.tables.shards)
            .set_item(Some(shard_item(channel, shard)?))
            .condition_expression("attribute_not_exists(#n)")
            .expression_attribute_names("#n", "number");
        self.client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(counter).build())
            .transact_items(transact_put(put)?)
            .send()
            .await
            .map_err(transaction)?;
        Ok(())
    }

    async fn fill_hold(
        &self,
        channel: &ChannelRef,
        shard: &Shard,
        hold: &[u8],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.shards)
            .set_item(Some(shard_item(channel, shard)?))
            .condition_expression("#h = :hold AND burn_at > :now")
            .expression_attribute_names("#h", "hold")
            .expression_attribute_values(":hold", AttributeValue::B(hold.to_vec().into()))
            .expression_attribute_values(":now", n(now.0))
            .send()
            .await
            .map_err(conditional)?;
        Ok(())
    }

    async fn shards(
        &self,
        channel: &ChannelRef,
        after: u64,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Shard>, StoreError> {
        let mut out = Vec::with_capacity(limit);
        let mut start = None;
        // A filtered page can come back short: read on until full or exhausted.
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.shards)
                .key_condition_expression("channel = :c AND #n > :after")
                .filter_expression(
                    "burn_at > :now AND attribute_not_exists(deleted) AND attribute_not_exists(#h)",
                )
                .expression_attribute_names("#h", "hold")
                .expression_attribute_names("#n", "number")
                .expression_attribute_values(":c", s(channel))
                .expression_attribute_values(":after", n(after))
                .expression_attribute_values(":now", n(now.0))
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item::<ShardItem>(item)?.shard);
            }
            start = page.last_evaluated_key;
            if out.len() >= limit || start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn shard(
        &self,
        channel: &ChannelRef,
        number: u64,
        now: Timestamp,
    ) -> Result<Option<Shard>, StoreError> {
        if number == 0 {
            return Ok(None);
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.shards)
            .key("channel", s(channel))
            .key("number", n(number))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        let item = out
            .item
            .filter(|i| !i.contains_key("deleted") && !i.contains_key("hold"));
        let shard = item
            .map(from_item::<ShardItem>)
            .transpose()?
            .map(|i| i.shard);
        Ok(shard.filter(|s| s.burn_at > now))
    }

    async fn delete_shard(&self, channel: &ChannelRef, number: u64) -> Result<bool, StoreError> {
        if number == 0 {
            return Ok(false);
        }
        // A tombstone keeps the number taken (and burn_at, for TTL) while the text goes.
        // The media list goes too: the stream record of this update then has it in the old
        // image only, which is how the burn function knows which objects to delete.
        let update = self
            .client
            .update_item()
            .table_name(&self.tables.shards)
            .key("channel", s(channel))
            .key("number", n(number))
            .update_expression("SET deleted = :t REMOVE ciphertext, delete_hash, posted_at, media")
            .condition_expression(
                "attribute_exists(#n) AND attribute_not_exists(deleted) AND attribute_not_exists(#h)",
            )
            .expression_attribute_names("#h", "hold")
            .expression_attribute_names("#n", "number")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await;
        match update.map_err(conditional) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl NonceStore for DynamoRooms {
    async fn remember(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        remember_nonce(&self.client, &self.tables.nonces, key, expires_at, now).await
    }
}

#[async_trait]
impl cinder_server::store::RateLimitStore for DynamoRooms {
    async fn take(
        &self,
        key: &str,
        rate: cinder_server::limits::Rate,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.limits.take(key, rate, now_ms).await
    }
}

//! Live subscriptions on DynamoDB (the live table, [`crate::schema::LIVE`]).
//!
//! A subscription is one item: partition `room/channel`, sort the connection id, the
//! capability key it was proved with, and `expires_at` (the table's TTL). So a channel's
//! subscribers are one consistent query. Each connection also has an item of its own,
//! partition `conn/{id}`, sort `-`, holding the set of channels it follows, so that closing
//! it finds its subscriptions without an index. Both expire; DynamoDB's TTL removes dead
//! connections' items, and every read filters on `expires_at` meanwhile.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, WriteRequest};
use cinder_proto::{Timestamp, VerifyKey};
use cinder_server::store::{ChannelRef, LiveStore, StoreError, Subscription};

use crate::{ConfigError, backend, n, s};

/// The sort key of a connection's own item.
const CONNECTION_ITEM: &str = "-";

/// Live subscriptions on one table.
#[derive(Debug, Clone)]
pub struct DynamoLive {
    client: Client,
    table: String,
}

impl DynamoLive {
    /// A store over an existing client and table.
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// A connection's own item: the channels it follows (as stored) and when it lapses;
    /// nothing and `None` if it has none.
    async fn connection_item(
        &self,
        connection: &str,
    ) -> Result<(Vec<String>, Option<u64>), StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("channel", s(connection_key(connection)))
            .key("connection", s(CONNECTION_ITEM))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        let Some(item) = out.item else {
            return Ok((Vec::new(), None));
        };
        let channels = match item.get("channels") {
            Some(AttributeValue::Ss(set)) => set.clone(),
            _ => Vec::new(),
        };
        Ok((channels, number_of(&item, "expires_at")))
    }

    /// Reads `LIVE_TABLE`.
    pub fn table_from_env() -> Result<String, ConfigError> {
        std::env::var("LIVE_TABLE").map_err(|_| ConfigError::Missing("LIVE_TABLE"))
    }
}

fn connection_key(connection: &str) -> String {
    format!("conn/{connection}")
}

fn parse_channel(text: &str) -> Option<ChannelRef> {
    let (room, channel) = text.split_once('/')?;
    Some(ChannelRef {
        room: room.parse().ok()?,
        channel: channel.parse().ok()?,
    })
}

fn number_of(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> Option<u64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

#[async_trait]
impl LiveStore for DynamoLive {
    async fn subscribe(&self, sub: &Subscription) -> Result<(), StoreError> {
        let channel = sub.channel.to_string();
        self.client
            .put_item()
            .table_name(&self.table)
            .item("channel", s(&channel))
            .item("connection", s(&sub.connection))
            .item("key", AttributeValue::B(sub.key.as_bytes().to_vec().into()))
            .item("expires_at", n(sub.expires_at.0))
            .send()
            .await
            .map_err(backend)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("channel", s(connection_key(&sub.connection)))
            .key("connection", s(CONNECTION_ITEM))
            .update_expression("ADD channels :c SET expires_at = :e")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![channel]))
            .expression_attribute_values(":e", n(sub.expires_at.0))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn unsubscribe(
        &self,
        connection: &str,
        channel: &ChannelRef,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("channel", s(channel))
            .key("connection", s(connection))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend)?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key("channel", s(connection_key(connection)))
            .key("connection", s(CONNECTION_ITEM))
            .update_expression("DELETE channels :c")
            .condition_expression("attribute_exists(channels)")
            .expression_attribute_values(":c", AttributeValue::Ss(vec![channel.to_string()]))
            .send()
            .await
            .map_or_else(
                |e| match crate::conditional(e) {
                    StoreError::Conflict => Ok(()),
                    other => Err(other),
                },
                |_| Ok(()),
            )?;
        Ok(out.attributes.is_some())
    }

    async fn subscriptions_of(
        &self,
        connection: &str,
        now: Timestamp,
    ) -> Result<Vec<ChannelRef>, StoreError> {
        let (channels, expires_at) = self.connection_item(connection).await?;
        if expires_at.is_none_or(|e| e <= now.0) {
            return Ok(Vec::new());
        }
        Ok(channels.iter().filter_map(|c| parse_channel(c)).collect())
    }

    async fn subscribers(
        &self,
        channel: &ChannelRef,
        now: Timestamp,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("channel = :c")
                .filter_expression("expires_at > :now")
                .expression_attribute_values(":c", s(channel))
                .expression_attribute_values(":now", n(now.0))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            for item in page.items.unwrap_or_default() {
                let connection = item
                    .get("connection")
                    .and_then(|v| v.as_s().ok())
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt("live item without connection".into()))?;
                let key = item
                    .get("key")
                    .and_then(|v| v.as_b().ok())
                    .and_then(|b| <[u8; 32]>::try_from(b.as_ref()).ok())
                    .and_then(|b| VerifyKey::from_bytes(&b).ok())
                    .ok_or_else(|| StoreError::Corrupt("live item without a key".into()))?;
                let expires_at = number_of(&item, "expires_at")
                    .map(Timestamp)
                    .ok_or_else(|| StoreError::Corrupt("live item without expiry".into()))?;
                out.push(Subscription {
                    connection,
                    channel: *channel,
                    key,
                    expires_at,
                });
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn disconnect(&self, connection: &str) -> Result<(), StoreError> {
        let (channels, _) = self.connection_item(connection).await?;
        let mut keys: Vec<(String, String)> = channels
            .into_iter()
            .map(|c| (c, connection.to_owned()))
            .collect();
        keys.push((connection_key(connection), CONNECTION_ITEM.to_owned()));
        // BatchWriteItem takes 25 requests at a time; what it leaves unprocessed is sent again.
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|(channel, connection)| {
                    DeleteRequest::builder()
                        .key("channel", s(channel))
                        .key("connection", s(connection))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(|e| StoreError::Backend(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            for _ in 0..5 {
                if requests.is_empty() {
                    break;
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(backend)?;
                requests = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
            }
            if !requests.is_empty() {
                return Err(StoreError::Backend(
                    "the live table kept refusing deletes".into(),
                ));
            }
        }
        Ok(())
    }
}

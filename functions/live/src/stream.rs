//! The shards table's stream, as notices: a new message (a post's `INSERT`, or the
//! `MODIFY` that turns a hold into a message) is [`posted`]; a deletion (the `MODIFY` to a
//! tombstone) is [`deleted`]; nothing else is news (the counter item, holds, burns).
//!
//! [`notice`] is the rule, a pure function of one record. [`fan_out`] applies it to a batch,
//! asks `cinder_server::live::deliveries` who to tell (one read of each room and of each
//! channel's subscribers) and posts every notice, each connection's in record order. A connection that answers 410 Gone loses
//! its subscriptions; other post failures are logged and never fail the batch (a notice is
//! a hint: the client reads the channel itself). Only a failed store read reports records
//! back (`batchItemFailures`), those of its room, so Lambda retries from there.

use std::collections::{BTreeMap, BTreeSet};

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use cinder_proto::live::ServerFrame;
use cinder_proto::{RoomId, Timestamp};
use cinder_server::live::{deleted, deliveries, posted};
use cinder_server::store::ChannelRef;
use futures::StreamExt;
use serde::Deserialize;
use serde_dynamo::{AttributeValue, Item};
use serde_json::Value;

use crate::Live;
use crate::post::Posted;

/// How many posts run at once.
const CONCURRENCY: usize = 16;

/// A notice for a channel.
type Notice = (ChannelRef, ServerFrame);

/// The item's key: its channel (`room/channel`) and a message number (never 0, the
/// channel's counter).
fn place(item: &Item) -> Option<(ChannelRef, u64)> {
    let Some(AttributeValue::S(channel)) = item.get("channel") else {
        return None;
    };
    let Some(AttributeValue::N(number)) = item.get("number") else {
        return None;
    };
    let (room, channel) = channel.split_once('/')?;
    let channel = ChannelRef {
        room: room.parse().ok()?,
        channel: channel.parse().ok()?,
    };
    let number: u64 = number.parse().ok()?;
    (number > 0).then_some((channel, number))
}

/// A readable message: ciphertext, and neither a hold nor a tombstone.
fn is_message(item: &Item) -> bool {
    item.contains_key("ciphertext") && !item.contains_key("hold") && !item.contains_key("deleted")
}

/// The notice a change is, if any: a post (`INSERT` of a message, or `MODIFY` of a hold into
/// one) or a deletion (`MODIFY` to a tombstone).
pub fn notice(event_name: &str, old: &Item, new: &Item) -> Option<Notice> {
    let news: fn(ChannelRef, u64) -> ServerFrame = match event_name {
        "INSERT" if is_message(new) => posted,
        "MODIFY" if is_message(new) && old.contains_key("hold") => posted,
        "MODIFY" if new.contains_key("deleted") && !old.contains_key("deleted") => deleted,
        _ => return None,
    };
    let (channel, number) = place(new)?;
    Some((channel, news(channel, number)))
}

/// One batch: every notice to every current subscriber of its channel.
pub async fn fan_out(live: &Live, event: &Value) -> DynamoDbEventResponse {
    let records = event["Records"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    // Notices by room, each with the sequence number of its record.
    let mut by_room: BTreeMap<RoomId, Vec<(Option<String>, Notice)>> = BTreeMap::new();
    let mut unreadable = 0;
    for raw in records {
        let Ok(record) = EventRecord::deserialize(raw) else {
            // Never news; retrying would not make it readable.
            unreadable += 1;
            continue;
        };
        if let Some(n) = notice(
            &record.event_name,
            &record.change.old_image,
            &record.change.new_image,
        ) {
            let sequence = record.change.sequence_number.filter(|s| !s.is_empty());
            by_room.entry(n.0.room).or_default().push((sequence, n));
        }
    }
    if unreadable > 0 {
        tracing::warn!(
            unreadable,
            "stream records that are not DynamoDB records; skipped"
        );
    }

    let now = Timestamp::now();
    let mut response = DynamoDbEventResponse::default();
    let mut out = Vec::new();
    let mut notices = 0;
    for found in by_room.values() {
        let batch: Vec<Notice> = found.iter().map(|(_, n)| n.clone()).collect();
        notices += batch.len();
        match deliveries(live.state.live.as_ref(), live.rooms.as_ref(), &batch, now).await {
            Ok(to) => out.extend(to),
            Err(error) => {
                tracing::error!(%error, "reading a room or its subscribers failed; reported for retry");
                for sequence in found.iter().filter_map(|(s, _)| s.clone()) {
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = Some(sequence);
                    response.batch_item_failures.push(failure);
                }
            }
        }
    }

    // Each connection's notices in record order, one post after another; connections
    // side by side. A connection that is gone is posted nothing more.
    let mut by_connection: BTreeMap<&str, Vec<&ServerFrame>> = BTreeMap::new();
    for (connection, frame) in &out {
        by_connection.entry(connection).or_default().push(frame);
    }
    let outcomes: Vec<(&str, Posted, usize)> = futures::stream::iter(by_connection)
        .map(|(connection, frames)| async move {
            let (mut posts, mut last) = (0, Posted::Sent);
            for frame in frames {
                posts += 1;
                match live.poster.post(connection, frame).await {
                    Posted::Gone => return (connection, Posted::Gone, posts),
                    Posted::Failed => last = Posted::Failed,
                    Posted::Sent => {}
                }
            }
            (connection, last, posts)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let gone: BTreeSet<&str> = outcomes
        .iter()
        .filter(|(_, p, _)| *p == Posted::Gone)
        .map(|(c, _, _)| *c)
        .collect();
    let failed = outcomes
        .iter()
        .filter(|(_, p, _)| *p == Posted::Failed)
        .count();
    let posts: usize = outcomes.iter().map(|(_, _, n)| n).sum();
    for connection in &gone {
        if let Err(error) = live.state.live.disconnect(connection).await {
            // Its items expire on their own (the table's TTL).
            tracing::error!(%error, "forgetting a gone connection failed");
        }
    }
    tracing::info!(
        records = records.len(),
        notices,
        posts,
        gone = gone.len(),
        failed_connections = failed,
        "batch fanned out"
    );
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const CHANNEL: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e/c0ffee00c0ffee00c0ffee00c0ffee00";

    fn item(number: u64, extra: &[&str]) -> Item {
        let mut map = std::collections::HashMap::new();
        map.insert("channel".to_owned(), AttributeValue::S(CHANNEL.into()));
        map.insert("number".to_owned(), AttributeValue::N(number.to_string()));
        map.insert("burn_at".to_owned(), AttributeValue::N("1800003600".into()));
        for name in extra {
            map.insert((*name).to_owned(), AttributeValue::S("x".into()));
        }
        Item::from(map)
    }

    fn kind(frame: Option<(ChannelRef, ServerFrame)>) -> Option<(&'static str, u64)> {
        frame.map(|(_, f)| match f {
            ServerFrame::Message { number, .. } => ("message", number),
            ServerFrame::Deleted { number, .. } => ("deleted", number),
            _ => ("other", 0),
        })
    }

    #[test]
    fn only_new_and_deleted_messages_are_news() {
        let none = Item::from(std::collections::HashMap::<String, AttributeValue>::new());
        let message = item(4, &["ciphertext", "posted_at"]);
        let hold = item(4, &["hold"]);
        let tombstone = item(4, &["deleted"]);
        let counter = item(0, &["next_number"]);
        assert_eq!(
            kind(notice("INSERT", &none, &message)),
            Some(("message", 4))
        );
        assert_eq!(
            kind(notice("MODIFY", &hold, &message)),
            Some(("message", 4))
        );
        assert_eq!(
            kind(notice("MODIFY", &message, &tombstone)),
            Some(("deleted", 4))
        );
        // A hold taken, a counter moved, a burn, a tombstone burnt, a second delete.
        assert_eq!(kind(notice("INSERT", &none, &hold)), None);
        assert_eq!(kind(notice("INSERT", &none, &counter)), None);
        assert_eq!(kind(notice("MODIFY", &counter, &counter)), None);
        assert_eq!(kind(notice("REMOVE", &message, &none)), None);
        assert_eq!(kind(notice("REMOVE", &tombstone, &none)), None);
        assert_eq!(kind(notice("MODIFY", &tombstone, &tombstone)), None);
        // A message at number 0, or with a key that is not a channel's, is nobody's news.
        assert_eq!(
            kind(notice("INSERT", &none, &item(0, &["ciphertext"]))),
            None
        );
        let mut odd = message.clone();
        odd.insert("channel".into(), AttributeValue::S("nope".into()));
        assert_eq!(kind(notice("INSERT", &none, &odd)), None);
    }
}

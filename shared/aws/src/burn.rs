//! Media burns with its message. The shards table's stream carries every change to a
//! message with its old and new images; the burn function reads it and deletes the
//! attachments of every message that went: burnt by TTL (or removed any other way), or
//! deleted (the tombstone update, whose new image has `deleted`).
//!
//! [`doomed`] is the rule, a pure function of one record. [`burn`] applies it to a batch and
//! reports each record that failed by its sequence number, so Lambda retries only from
//! there and one bad record never holds back the rest of the batch.

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use cinder_proto::media::ObjectKey;
use cinder_proto::{ChannelId, MediaId, RoomId};
use cinder_server::store::{ObjectStore, StoreError};
use futures::StreamExt;
use serde::{Deserialize, Deserializer};
use serde_dynamo::{AttributeValue, Item};
use serde_json::Value;

/// How many records' deletes run at once.
const CONCURRENCY: usize = 8;

/// Why a record's objects could not be named. The messages never quote the record: its
/// attributes name rooms and channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadRecord {
    /// The record is not a DynamoDB stream record.
    #[error("not a DynamoDB stream record")]
    NotARecord,
    /// The old image links media, but its `channel`, `number` or `media` is not a message's.
    #[error("the old image links media but is not a message")]
    NotAMessage,
}

/// The event is not a batch of stream records at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the event has no Records list")]
pub struct NotABatch;

/// The old image's fields that name its objects.
#[derive(Deserialize)]
struct Message {
    #[serde(deserialize_with = "channel")]
    channel: (RoomId, ChannelId),
    number: u64,
    media: Vec<MediaId>,
}

/// The partition key, `{room}/{channel}`.
fn channel<'de, D: Deserializer<'de>>(d: D) -> Result<(RoomId, ChannelId), D::Error> {
    let text = String::deserialize(d)?;
    let bad = || serde::de::Error::custom("channel is not room/channel");
    let (room, channel) = text.split_once('/').ok_or_else(bad)?;
    Ok((
        room.parse().map_err(|_| bad())?,
        channel.parse().map_err(|_| bad())?,
    ))
}

/// The objects a change dooms: the old image's `media`, when the change is a `REMOVE` or
/// a `MODIFY` whose new image is a tombstone (`deleted`). Anything else (a post, a number
/// reserved on the counter item, an item without media) dooms nothing, and is not looked
/// at further.
pub fn doomed(event_name: &str, old: &Item, new: &Item) -> Result<Vec<ObjectKey>, BadRecord> {
    let went = match event_name {
        "REMOVE" => true,
        "MODIFY" => new.contains_key("deleted"),
        _ => false,
    };
    if !went {
        return Ok(Vec::new());
    }
    match old.get("media") {
        None => return Ok(Vec::new()),
        Some(AttributeValue::L(list)) if list.is_empty() => return Ok(Vec::new()),
        Some(AttributeValue::L(_)) => {}
        Some(_) => return Err(BadRecord::NotAMessage),
    }
    let message: Message =
        serde_dynamo::from_item(old.clone()).map_err(|_| BadRecord::NotAMessage)?;
    // Number 0 is the channel's counter, never a message.
    if message.number == 0 {
        return Err(BadRecord::NotAMessage);
    }
    let (room, channel) = message.channel;
    Ok(message
        .media
        .into_iter()
        .map(|media| ObjectKey::Attachment {
            room,
            channel,
            number: message.number,
            media,
        })
        .collect())
}

/// Why one record was not done.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Bad(#[from] BadRecord),
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Deletes one record's doomed objects; how many it named.
async fn one(raw: &Value, objects: &dyn ObjectStore) -> Result<usize, Failure> {
    let record = EventRecord::deserialize(raw).map_err(|_| BadRecord::NotARecord)?;
    let keys = doomed(
        &record.event_name,
        &record.change.old_image,
        &record.change.new_image,
    )?;
    if !keys.is_empty() {
        objects.delete(&keys).await?;
    }
    Ok(keys.len())
}

/// Handles one batch of the shards table's stream: deletes what each record dooms, and
/// answers with the sequence numbers of the records that failed (`batchItemFailures`).
/// A record without a sequence number cannot be reported (an empty identifier would fail
/// the whole batch), so it is logged and left: real stream records always have one.
/// Logs counts and failure kinds, never a record's contents.
pub async fn burn(
    event: &Value,
    objects: &dyn ObjectStore,
) -> Result<DynamoDbEventResponse, NotABatch> {
    let records = event["Records"].as_array().ok_or(NotABatch)?;
    let outcomes: Vec<(Option<&str>, Result<usize, Failure>)> = futures::stream::iter(records)
        .map(|raw| async move {
            let sequence = raw["dynamodb"]["SequenceNumber"]
                .as_str()
                .filter(|s| !s.is_empty());
            (sequence, one(raw, objects).await)
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut response = DynamoDbEventResponse::default();
    let mut deleted = 0;
    for (sequence, outcome) in outcomes {
        match (outcome, sequence) {
            (Ok(n), _) => deleted += n,
            (Err(error), Some(sequence)) => {
                tracing::warn!(%error, "record failed; reported for retry");
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence.to_owned());
                response.batch_item_failures.push(failure);
            }
            (Err(error), None) => {
                tracing::error!(%error, "record failed and has no sequence number; dropped");
            }
        }
    }
    tracing::info!(
        records = records.len(),
        objects = deleted,
        failed = response.batch_item_failures.len(),
        "stream batch burnt"
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use serde_json::json;

    use super::*;

    const ROOM: RoomId = RoomId([1; 16]);
    const CHANNEL: ChannelId = ChannelId([2; 16]);

    fn item(value: Value) -> Item {
        serde_json::from_value(value).unwrap()
    }

    /// A message item as the shards table stores it.
    fn message(number: u64, media: &[MediaId]) -> Value {
        let mut image = json!({
            "channel": {"S": format!("{ROOM}/{CHANNEL}")},
            "number": {"N": number.to_string()},
            "ciphertext": {"S": "c2VhbGVk"},
            "burn_at": {"N": "1800003600"},
            "posted_at": {"N": "1800000000"},
        });
        if !media.is_empty() {
            let list: Vec<Value> = media.iter().map(|m| json!({"S": m.to_string()})).collect();
            image["media"] = json!({"L": list});
        }
        image
    }

    fn tombstone(number: u64) -> Value {
        json!({
            "channel": {"S": format!("{ROOM}/{CHANNEL}")},
            "number": {"N": number.to_string()},
            "burn_at": {"N": "1800003600"},
            "deleted": {"BOOL": true},
        })
    }

    fn keys(number: u64, media: &[MediaId]) -> Vec<ObjectKey> {
        media
            .iter()
            .map(|&media| ObjectKey::Attachment {
                room: ROOM,
                channel: CHANNEL,
                number,
                media,
            })
            .collect()
    }

    const A: MediaId = MediaId([0xa; 16]);
    const B: MediaId = MediaId([0xb; 16]);

    #[test]
    fn a_burn_or_a_delete_dooms_the_old_images_media() {
        let old = item(message(7, &[A, B]));
        let none = Item::from(std::collections::HashMap::<String, AttributeValue>::new());
        assert_eq!(doomed("REMOVE", &old, &none), Ok(keys(7, &[A, B])));
        let new = item(tombstone(7));
        assert_eq!(doomed("MODIFY", &old, &new), Ok(keys(7, &[A, B])));
        // A tombstone that burns later still had its media listed (before deletes removed
        // the list): they go then.
        let mut old_tombstone = tombstone(7);
        old_tombstone["media"] = json!({"L": [{"S": A.to_string()}]});
        assert_eq!(
            doomed("REMOVE", &item(old_tombstone), &none),
            Ok(keys(7, &[A]))
        );
    }

    #[test]
    fn other_changes_doom_nothing() {
        let none = Item::from(std::collections::HashMap::<String, AttributeValue>::new());
        let with_media = item(message(7, &[A]));
        // A post.
        assert_eq!(doomed("INSERT", &none, &with_media), Ok(vec![]));
        // A MODIFY that is not a delete (no such write today, but it must keep the media).
        assert_eq!(doomed("MODIFY", &with_media, &with_media), Ok(vec![]));
        // A message without media, burnt or deleted.
        let plain = item(message(8, &[]));
        assert_eq!(doomed("REMOVE", &plain, &none), Ok(vec![]));
        assert_eq!(doomed("MODIFY", &plain, &item(tombstone(8))), Ok(vec![]));
        let empty = item(json!({"channel": {"S": "x"}, "number": {"N": "8"}, "media": {"L": []}}));
        assert_eq!(doomed("REMOVE", &empty, &none), Ok(vec![]));
        // The counter item: a reserve (MODIFY) and its removal.
        let counter = item(json!({
            "channel": {"S": format!("{ROOM}/{CHANNEL}")},
            "number": {"N": "0"},
            "next_number": {"N": "9"},
        }));
        assert_eq!(doomed("MODIFY", &counter, &counter), Ok(vec![]));
        assert_eq!(doomed("REMOVE", &counter, &none), Ok(vec![]));
        // A held number: filled by a message with media, or lapsing unfilled.
        let hold = item(json!({
            "channel": {"S": format!("{ROOM}/{CHANNEL}")},
            "number": {"N": "7"},
            "hold": {"B": "AAAAAAAAAAAAAAAAAAAAAA=="},
            "burn_at": {"N": "1800003600"},
        }));
        assert_eq!(doomed("MODIFY", &hold, &with_media), Ok(vec![]));
        assert_eq!(doomed("REMOVE", &hold, &none), Ok(vec![]));
        // Unknown events, and a malformed image that links nothing: not looked at.
        assert_eq!(doomed("TRUNCATE", &with_media, &none), Ok(vec![]));
        let junk = item(json!({"channel": {"N": "1"}}));
        assert_eq!(doomed("REMOVE", &junk, &none), Ok(vec![]));
    }

    #[test]
    fn a_malformed_message_with_media_is_refused() {
        let none = Item::from(std::collections::HashMap::<String, AttributeValue>::new());
        let mut cases = Vec::new();
        for (field, value) in [
            ("channel", json!({"S": "not-a-channel"})),
            ("channel", json!({"S": format!("{ROOM}")})),
            ("channel", json!({"S": format!("{ROOM}/{CHANNEL}/x")})),
            ("channel", json!({"N": "1"})),
            ("number", json!({"S": "seven"})),
            ("number", json!({"N": "-1"})),
            ("number", json!({"N": "0"})),
            ("media", json!({"L": [{"S": "not-an-id"}]})),
            ("media", json!({"S": A.to_string()})),
        ] {
            let mut image = message(7, &[A]);
            image[field] = value;
            cases.push(image);
        }
        let mut no_number = message(7, &[A]);
        no_number.as_object_mut().unwrap().remove("number");
        cases.push(no_number);
        for case in cases {
            assert_eq!(
                doomed("REMOVE", &item(case.clone()), &none),
                Err(BadRecord::NotAMessage),
                "{case}"
            );
        }
    }

    /// Records deletes; fails for objects of message `fail_number`.
    struct Objects {
        deleted: Mutex<Vec<ObjectKey>>,
        fail_number: u64,
    }

    #[async_trait]
    impl ObjectStore for Objects {
        async fn delete(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
            if keys
                .iter()
                .any(|k| matches!(k, ObjectKey::Attachment { number, .. } if *number == self.fail_number))
            {
                return Err(StoreError::Backend("injected".into()));
            }
            self.deleted.lock().unwrap().extend_from_slice(keys);
            Ok(())
        }
    }

    fn record(sequence: Option<&str>, name: &str, old: Value, new: Value) -> Value {
        let mut change = json!({"SizeBytes": 100, "StreamViewType": "NEW_AND_OLD_IMAGES"});
        if let Some(sequence) = sequence {
            change["SequenceNumber"] = json!(sequence);
        }
        if !old.is_null() {
            change["OldImage"] = old;
        }
        if !new.is_null() {
            change["NewImage"] = new;
        }
        json!({
            "eventID": "1", "eventName": name, "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "dynamodb": change,
        })
    }

    #[tokio::test]
    async fn failures_are_reported_per_record_and_the_rest_still_burn() {
        let objects = Objects {
            deleted: Mutex::default(),
            fail_number: 3,
        };
        let mut bad_channel = message(5, &[B]);
        bad_channel["channel"] = json!({"S": "nope"});
        let event = json!({"Records": [
            record(Some("100"), "REMOVE", message(1, &[A]), Value::Null),
            record(Some("200"), "MODIFY", message(2, &[A, B]), tombstone(2)),
            // The store fails for this one.
            record(Some("300"), "REMOVE", message(3, &[A]), Value::Null),
            record(Some("400"), "INSERT", Value::Null, message(4, &[A])),
            record(Some("500"), "REMOVE", bad_channel.clone(), Value::Null),
            // Not a stream record (no eventName), but it has a sequence number.
            json!({"dynamodb": {"SequenceNumber": "600"}}),
            // Broken, and nothing to report it by: dropped, the batch goes on.
            record(None, "REMOVE", bad_channel, Value::Null),
            record(Some("800"), "MODIFY", message(8, &[B]), tombstone(8)),
        ]});
        let response = burn(&event, &objects).await.unwrap();
        let mut failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone().unwrap())
            .collect();
        failed.sort();
        assert_eq!(failed, ["300", "500", "600"]);
        let mut deleted = objects.deleted.into_inner().unwrap();
        deleted.sort();
        let mut expected = [keys(1, &[A]), keys(2, &[A, B]), keys(8, &[B])].concat();
        expected.sort();
        assert_eq!(deleted, expected);
        // The answer is the partial-batch response Lambda reads.
        let answer = serde_json::to_value(&response).unwrap();
        assert!(answer["batchItemFailures"][0]["itemIdentifier"].is_string());

        assert_eq!(burn(&json!({}), &objects_none()).await, Err(NotABatch));
        let empty = burn(&json!({"Records": []}), &objects_none())
            .await
            .unwrap();
        assert!(empty.batch_item_failures.is_empty());
    }

    fn objects_none() -> Objects {
        Objects {
            deleted: Mutex::default(),
            fail_number: 0,
        }
    }
}

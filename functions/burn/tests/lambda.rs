//! The shipped `cinder-burn` binary on DynamoDB stream events, against moto's S3 with real
//! objects put first. The fixtures in `tests/events/` are the stream events Lambda delivers
//! for a TTL burn, a message delete, changes that doom nothing, and a batch with malformed
//! records; a second test feeds the binary the records moto's own stream wrote for a real
//! post and delete through the DynamoDB store.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cinder_aws::media::S3Objects;
use cinder_proto::media::{ObjectKey, limits};
use cinder_proto::rooms::Shard;
use cinder_proto::{Blob, ChannelId, MediaId, RoomId, Timestamp};
use cinder_server::store::{ChannelRef, MediaUrls, ShardStore};
use cinder_tests::lambda::{RuntimeApi, rooms_env};
use cinder_tests::moto;
use serde_json::{Value, json};

/// The fixtures' room and channel.
const ROOM: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
const CHANNEL: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn attachment(room: RoomId, channel: ChannelId, number: u64, media: &str) -> ObjectKey {
    ObjectKey::Attachment {
        room,
        channel,
        number,
        media: media.parse().unwrap(),
    }
}

/// Puts a few bytes at `key` through a presigned URL, as a client would.
async fn put(objects: &S3Objects, key: &ObjectKey) {
    let grant = objects
        .upload_url(key, 5, Timestamp::now(), limits::URL_TTL_SECS)
        .await
        .unwrap();
    let mut put = reqwest::Client::new().put(&grant.url).body(&b"bytes"[..]);
    for (name, value) in &grant.headers {
        put = put.header(name, value);
    }
    assert!(put.send().await.unwrap().status().is_success());
}

/// Whether `key` is still in the bucket.
async fn exists(objects: &S3Objects, key: &ObjectKey) -> bool {
    let grant = objects
        .download_url(key, Timestamp::now(), limits::URL_TTL_SECS)
        .await
        .unwrap();
    match reqwest::get(&grant.url).await.unwrap().status().as_u16() {
        200 => true,
        404 => false,
        other => panic!("GET {key}: {other}"),
    }
}

/// The sequence numbers a partial-batch response reports, sorted.
fn failures(response: &Value) -> Vec<String> {
    let mut out: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burn_lambda_deletes_exactly_the_media_of_messages_that_went() {
    let (_, tables) = moto::fresh_rooms_store().await;
    let objects = moto::media_objects(&tables);
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(
        env!("CARGO_BIN_EXE_cinder-burn").as_ref(),
        &rooms_env(&tables),
    );
    let (room, channel) = (ROOM.parse().unwrap(), CHANNEL.parse().unwrap());
    // Media ids in the fixtures: a two-character pattern, repeated.
    let key = |number, pattern: &str| attachment(room, channel, number, &pattern.repeat(16));
    let gone = [key(3, "a1"), key(3, "b2"), key(4, "c3"), key(9, "e5")];
    let stay = [
        // Linked by a post (INSERT): the message lives.
        key(5, "d4"),
        // Its record is broken: nothing can be known about it.
        key(8, "e5"),
        // Uploaded for message 3 but never linked by it: the lifecycle rule's business.
        key(3, "f6"),
        ObjectKey::Avatar {
            room,
            media: MediaId([0xa7; 16]),
        },
    ];
    for key in gone.iter().chain(&stay) {
        put(&objects, key).await;
    }

    for name in ["remove-ttl.json", "modify-deleted.json", "untouched.json"] {
        let response = api.invoke(fixture(name)).await.unwrap();
        assert_eq!(failures(&response), Vec::<String>::new(), "{name}");
    }
    // The malformed records are reported by sequence number; the good one still burns.
    let response = api.invoke(fixture("malformed.json")).await.unwrap();
    assert_eq!(
        failures(&response),
        ["100000000000000000006", "100000000000000000007"]
    );

    for key in &gone {
        assert!(!exists(&objects, key).await, "{key} should be gone");
    }
    for key in &stay {
        assert!(exists(&objects, key).await, "{key} should stay");
    }
    // Replayed (Lambda retries from a failed record), a batch changes nothing more.
    let response = api.invoke(fixture("remove-ttl.json")).await.unwrap();
    assert_eq!(failures(&response), Vec::<String>::new());
}

/// A delete through the DynamoDB store leaves the media in the stream record's old image
/// only, and the binary, given the records moto's stream holds, deletes that message's
/// objects and no other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_delete_on_the_stream_burns_its_media() {
    let (store, tables) = moto::fresh_rooms_store().await;
    let objects: Arc<S3Objects> = moto::media_objects(&tables);
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(
        env!("CARGO_BIN_EXE_cinder-burn").as_ref(),
        &rooms_env(&tables),
    );
    let channel = ChannelRef {
        room: RoomId([0x31; 16]),
        channel: ChannelId([0x32; 16]),
    };
    let key = |number, media: u8| ObjectKey::Attachment {
        room: channel.room,
        channel: channel.channel,
        number,
        media: MediaId([media; 16]),
    };
    let now = Timestamp::now();
    for (media, number) in [(vec![1, 2], 1), (vec![3], 2)] {
        let hold = [number as u8; 16];
        assert_eq!(
            store
                .reserve(&channel, &hold, now.plus(3600))
                .await
                .unwrap(),
            number
        );
        for &m in &media {
            put(&objects, &key(number, m)).await;
        }
        let shard = Shard {
            number,
            ciphertext: Blob(b"sealed".to_vec()),
            burn_at: now.plus(3600),
            posted_at: now,
            delete_hash: None,
            media: media.into_iter().map(|m| MediaId([m; 16])).collect(),
        };
        store.fill_hold(&channel, &shard, &hold, now).await.unwrap();
    }
    assert!(store.delete_shard(&channel, 1).await.unwrap());

    let records = moto::stream_records(&tables.shards).await;
    let delete = records
        .iter()
        .rfind(|r| r["eventName"] == "MODIFY")
        .expect("the delete is on the stream");
    let (old, new) = (
        &delete["dynamodb"]["OldImage"],
        &delete["dynamodb"]["NewImage"],
    );
    assert_eq!(
        old["media"]["L"].as_array().map(Vec::len),
        Some(2),
        "{delete}"
    );
    assert!(
        new["media"].is_null() && new["ciphertext"].is_null(),
        "{delete}"
    );
    assert_eq!(new["deleted"], json!({"BOOL": true}));

    let response = api.invoke(json!({ "Records": records })).await.unwrap();
    assert_eq!(failures(&response), Vec::<String>::new());
    assert!(!exists(&objects, &key(1, 1)).await);
    assert!(!exists(&objects, &key(1, 2)).await);
    assert!(
        exists(&objects, &key(2, 3)).await,
        "a live message's media stays"
    );
}

//! The operation meter (`cinder_tests::meter`) against figures known by hand: item sizes
//! and capacity units as DynamoDB's billing rules give them for items of chosen sizes, the
//! calls of one key-bundle GET through the gateway, and S3 calls told apart by who makes
//! them. `make bench`'s operations table is only as right as these.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::types::{AttributeValue, Put, Select, TransactWriteItem, Update};
use cinder_server::Clock;
use cinder_server::store::{MediaUrls, ObjectStore};
use cinder_tests::lambda::{Gateway, Target};
use cinder_tests::meter::{
    self, AwsCall, Event, Kind, Meter, Service, Tally, item_size, number_size, read_units,
    write_units,
};
use cinder_tests::moto;
use serde_json::json;

fn client_through(meter: &Meter) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&meter.url)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .build();
    Client::from_conf(config)
}

/// The AWS calls among `events`.
fn calls(events: &[Event]) -> Vec<AwsCall> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Aws(c) => Some(c.clone()),
            Event::Request { .. } => None,
        })
        .collect()
}

/// The one AWS call since `mark`.
fn only_call(meter: &Meter, mark: usize) -> AwsCall {
    let calls = calls(&meter.since(mark));
    assert_eq!(calls.len(), 1, "{calls:#?}");
    calls.into_iter().next().unwrap()
}

#[test]
fn sizes_follow_dynamodb_rules() {
    // Numbers: one byte per two significant digits, plus one; zeros at either end trimmed.
    assert_eq!(number_size("1"), 2);
    assert_eq!(number_size("12"), 2);
    assert_eq!(number_size("123"), 3);
    assert_eq!(number_size("1000000"), 2);
    assert_eq!(number_size("-0012.500"), 3);
    assert_eq!(number_size("1795629600"), 5);
    // Names count; strings and binary by their bytes; lists and maps 3 bytes plus 1 per
    // element.
    let item = json!({
        "id": {"S": "héllo"},                       // 2 + 6
        "n": {"N": "12345"},                        // 1 + 4
        "b": {"B": "AAECAw=="},                     // 1 + 4
        "ok": {"BOOL": true},                       // 2 + 1
        "l": {"L": [{"S": "ab"}, {"N": "7"}]},      // 1 + 3 + (1 + 2) + (1 + 2)
        "m": {"M": {"k": {"S": "v"}}},              // 1 + 3 + (1 + 1 + 1)
        "ss": {"SS": ["a", "bc"]}                   // 2 + 3
    });
    assert_eq!(
        item_size(item.as_object().unwrap()),
        8 + 5 + 5 + 3 + 10 + 7 + 5
    );
    // Units: reads per 4 KB, writes per 1 KB, each at least one.
    assert_eq!(read_units(0, true), 1.0);
    assert_eq!(read_units(4096, true), 1.0);
    assert_eq!(read_units(4097, true), 2.0);
    assert_eq!(read_units(4097, false), 1.0);
    assert_eq!(write_units(0), 1.0);
    assert_eq!(write_units(1024), 1.0);
    assert_eq!(write_units(1025), 2.0);
    // Routes as docs/API.md names them.
    let id = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        meter::route("PUT", &format!("/messages/{id}/{id}/17")),
        "PUT /messages/{room}/{channel}/{number}"
    );
    assert_eq!(
        meter::route("GET", &format!("/rooms/{id}/spines?after=3")),
        "GET /rooms/{room_id}/spines"
    );
    assert_eq!(
        meter::route("GET", &format!("/media/{id}/avatars/{id}")),
        "GET /media/{room}/avatars/{media_id}"
    );
    assert_eq!(
        meter::route("POST", "/accounts/login/start"),
        "POST /accounts/login/start"
    );
    assert_eq!(meter::unprefixed("t0123456789ab-shards"), "shards");
}

/// An item of the key directory's shape whose size is `7 + 1 + 7 + 2 + 4 + blob` bytes
/// (`user_id` "u", a one-digit `version`, `blob`).
fn item(version: u64, blob: usize) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("user_id".to_owned(), AttributeValue::S("u".into())),
        ("version".to_owned(), AttributeValue::N(version.to_string())),
        ("blob".to_owned(), AttributeValue::B(vec![7u8; blob].into())),
    ]
    .into_iter()
    .collect()
}

fn key(version: u64) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("user_id".to_owned(), AttributeValue::S("u".into())),
        ("version".to_owned(), AttributeValue::N(version.to_string())),
    ]
    .into_iter()
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_units_of_items_of_known_size() {
    // GIVEN a table on moto reached through the meter
    let meter = Meter::on_moto().await;
    let table = format!("{}units", moto::unique_prefix());
    cinder_aws::schema::create(&moto::client(), &table, cinder_aws::schema::KEYS)
        .await
        .unwrap();
    let db = client_through(&meter);
    const OVERHEAD: u64 = 7 + 1 + 7 + 2 + 4;

    // WHEN items of 2,021 and 5,021 bytes are put, THEN 2 and 5 WRU
    let mark = meter.mark();
    db.put_item()
        .table_name(&table)
        .set_item(Some(item(1, 2000)))
        .send()
        .await
        .unwrap();
    let put = only_call(&meter, mark);
    assert_eq!(
        (put.operation.as_str(), put.kind, put.wru, put.rru),
        ("PutItem", Kind::Write, 2.0, 0.0)
    );
    assert_eq!(put.item_bytes, vec![OVERHEAD + 2000]);
    assert_eq!(put.tables, vec!["units".to_owned()]);
    let mark = meter.mark();
    db.put_item()
        .table_name(&table)
        .set_item(Some(item(2, 5000)))
        .send()
        .await
        .unwrap();
    assert_eq!(only_call(&meter, mark).wru, 5.0);

    // Strongly consistent reads: 1 RRU per 4 KB; projections do not make a read cheaper;
    // eventually consistent reads cost half; an absent item still costs the minimum.
    for (version, consistent, projection, rru) in [
        (1, true, None, 1.0),
        (2, true, None, 2.0),
        (2, true, Some("version"), 2.0),
        (2, false, None, 1.0),
        (9, true, None, 1.0),
    ] {
        let mark = meter.mark();
        db.get_item()
            .table_name(&table)
            .set_key(Some(key(version)))
            .consistent_read(consistent)
            .set_projection_expression(projection.map(str::to_owned))
            .send()
            .await
            .unwrap();
        let get = only_call(&meter, mark);
        assert_eq!(
            (get.kind, get.rru),
            (Kind::Read, rru),
            "GetItem of version {version}"
        );
    }

    // A query sums the items it reaches (2,021 + 5,021 bytes: 2 RRU), before any filter
    // and whatever it returns; Limit bounds what it reaches; COUNT reads all the same.
    let query = || {
        db.query()
            .table_name(&table)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", AttributeValue::S("u".into()))
            .consistent_read(true)
    };
    let mark = meter.mark();
    query().send().await.unwrap();
    let q = only_call(&meter, mark);
    assert_eq!(q.item_bytes, vec![OVERHEAD + 2000, OVERHEAD + 5000]);
    assert_eq!(q.rru, 2.0);
    let mark = meter.mark();
    let none = query()
        .filter_expression("attribute_exists(#x)")
        .expression_attribute_names("#x", "nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(none.count, 0);
    assert_eq!(only_call(&meter, mark).rru, 2.0);
    let mark = meter.mark();
    query().limit(1).send().await.unwrap();
    assert_eq!(only_call(&meter, mark).rru, 1.0);
    let mark = meter.mark();
    query()
        .consistent_read(false)
        .select(Select::Count)
        .send()
        .await
        .unwrap();
    assert_eq!(only_call(&meter, mark).rru, 1.0);

    // An update costs the larger of before and after (2,021 → 3,021 bytes: 3 WRU).
    let mark = meter.mark();
    db.update_item()
        .table_name(&table)
        .set_key(Some(key(1)))
        .update_expression("SET #b = :b")
        .expression_attribute_names("#b", "blob")
        .expression_attribute_values(":b", AttributeValue::B(vec![1u8; 3000].into()))
        .send()
        .await
        .unwrap();
    let update = only_call(&meter, mark);
    assert_eq!(
        (update.wru, update.item_bytes.clone()),
        (3.0, vec![OVERHEAD + 3000])
    );

    // A failed conditional put costs the item that is there (5,021 bytes: 5 WRU).
    let mark = meter.mark();
    let refused = db
        .put_item()
        .table_name(&table)
        .set_item(Some(item(2, 10)))
        .condition_expression("attribute_not_exists(user_id)")
        .send()
        .await;
    assert!(refused.is_err());
    let failed = only_call(&meter, mark);
    assert_eq!((failed.wru, failed.status), (5.0, 400));

    // A transaction costs double: a 121-byte put (2 × 1) and an update shrinking 3,021
    // bytes to 31 (2 × 3).
    let mark = meter.mark();
    db.transact_write_items()
        .transact_items(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&table)
                        .set_item(Some(item(3, 100)))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .transact_items(
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&table)
                        .set_key(Some(key(1)))
                        .update_expression("SET #b = :b")
                        .expression_attribute_names("#b", "blob")
                        .expression_attribute_values(":b", AttributeValue::B(vec![1u8; 10].into()))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let tx = only_call(&meter, mark);
    assert_eq!(tx.wru, 8.0);
    assert_eq!(tx.tables, vec!["units".to_owned(), "units".to_owned()]);

    // A delete costs the item deleted (5,021 bytes: 5 WRU).
    let mark = meter.mark();
    db.delete_item()
        .table_name(&table)
        .set_key(Some(key(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(only_call(&meter, mark).wru, 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_bundle_get_is_one_request_and_one_query() {
    // GIVEN the keys routes on DynamoDB through the meter, behind the observed gateway
    let meter = Meter::on_moto().await;
    let (_, tables) = moto::fresh_store().await;
    let store = Arc::new(cinder_aws::DynamoStore::new(client_through(&meter), tables));
    let keys =
        cinder_server::keys::routes(cinder_server::keys::KeysState::new(store, Clock::system()));
    let gateway = Gateway::start_observed(
        vec![("/keys", Target::Router(keys))],
        Some(meter.observer()),
    )
    .await;
    let client = cinder_client::Client::new(&gateway.url);
    let me = cinder_client::Identity::generate(cinder_proto::Timestamp::now()).unwrap();

    // WHEN a bundle is published, THEN one request: the address's rate-limit bucket spent
    // (one conditional update), and one conditional put of under 1 KB
    let mark = meter.mark();
    client.publish(&me.bundle).await.unwrap();
    let published = meter::by_request(&meter.since(mark));
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].route, "POST /keys");
    assert_eq!(
        published[0].describe(),
        "UpdateItem rate-limits 1 WRU; PutItem keys 1 WRU"
    );

    // WHEN it is fetched, THEN one request and one strongly consistent Query of 1 RRU
    let mark = meter.mark();
    client.key(me.user_id()).await.unwrap();
    let events = meter.since(mark);
    let fetched = meter::by_request(&events);
    assert_eq!(fetched.len(), 1);
    assert_eq!(fetched[0].route, "GET /keys/{user_id}");
    assert_eq!(fetched[0].describe(), "Query keys 1 RRU");
    assert!(fetched[0].calls[0].item_bytes[0] < 4096);
    assert_eq!(
        Tally::of(&events),
        Tally {
            api_requests: 1,
            ddb_reads: 1,
            rru: 1.0,
            ..Tally::default()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_calls_are_named_and_told_apart_by_who_makes_them() {
    // GIVEN a bucket on moto and an object store whose endpoint is the meter
    let meter = Meter::on_moto().await;
    let bucket = format!("{}media", moto::unique_prefix());
    moto::create_bucket(&bucket).await;
    let objects = cinder_aws::media::S3Objects::on_endpoint(&meter.url, bucket).unwrap();
    let key = cinder_proto::media::ObjectKey::Avatar {
        room: cinder_proto::RoomId([1; 16]),
        media: cinder_proto::MediaId([2; 16]),
    };
    let now = cinder_proto::Timestamp::now();
    let http = reqwest::Client::new();

    // WHEN the client uploads and downloads through presigned URLs, and the function deletes
    let up = objects.upload_url(&key, 5, now, 300).await.unwrap();
    let mut put = http.put(&up.url).body(b"hello".to_vec());
    for (name, value) in &up.headers {
        put = put.header(name, value);
    }
    assert!(put.send().await.unwrap().status().is_success());
    let down = objects.download_url(&key, now, 300).await.unwrap();
    let got = http.get(&down.url).send().await.unwrap();
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"hello");
    objects.delete(std::slice::from_ref(&key)).await.unwrap();

    // THEN presigning made no request; the client's transfers and the delete are named
    let seen: Vec<(String, Kind, bool)> = calls(&meter.since(0))
        .into_iter()
        .map(|c| {
            assert_eq!(c.service, Service::S3);
            assert_eq!(c.tables, vec!["media".to_owned()]);
            (c.operation, c.kind, c.presigned)
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("PutObject".to_owned(), Kind::Write, true),
            ("GetObject".to_owned(), Kind::Read, true),
            ("DeleteObjects".to_owned(), Kind::Write, false),
        ]
    );
}

#[tokio::test]
async fn a_bucket_in_use_is_spent_with_one_write_and_a_stale_guess_with_two() {
    use cinder_aws::limits::DynamoLimits;
    use cinder_server::limits::Rate;
    use cinder_server::store::RateLimitStore;

    // GIVEN a rate-limits table on moto reached through the meter, and a bucket of 3
    let meter = Meter::on_moto().await;
    let table = format!("{}buckets", moto::unique_prefix());
    cinder_aws::schema::create(&moto::client(), &table, cinder_aws::schema::RATE_LIMITS)
        .await
        .unwrap();
    let limits = DynamoLimits::new(client_through(&meter), table.clone());
    let rate = Rate::per(3, std::time::Duration::from_secs(3600));
    let now = 1_000_000_000;
    let writes = |mark| -> Vec<u16> {
        calls(&meter.since(mark))
            .iter()
            .filter(|c| c.operation == "UpdateItem")
            .map(|c| c.status)
            .collect()
    };

    // WHEN one instance spends the bucket three times and a fourth is refused
    let mark = meter.mark();
    for _ in 0..3 {
        assert_eq!(limits.take("b", rate, now).await.unwrap(), None);
    }
    let refused = limits.take("b", rate, now).await.unwrap();

    // THEN each spend was one write that succeeded, and the refusal one failed condition
    assert!(refused.is_some());
    assert_eq!(writes(mark), [200, 200, 200, 400]);

    // AND an instance that has not seen the bucket in use guesses "at rest" once, and
    // learns from the lost condition (two writes, then one)
    let later = now + 1_200_000 * 2; // two tokens back
    let other = DynamoLimits::new(client_through(&meter), table);
    let mark = meter.mark();
    assert_eq!(other.take("b", rate, later).await.unwrap(), None);
    assert_eq!(other.take("b", rate, later).await.unwrap(), None);
    assert_eq!(writes(mark), [400, 200, 200]);
}

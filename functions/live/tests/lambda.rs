//! The shipped `cinder-live` binary under the Runtime API emulator, with its tables on moto
//! and its management API (`POST /@connections/{id}`) served by [`Connections`], a small
//! HTTP server here that records every frame posted and answers 410 Gone for connections a
//! test closes (moto's own management API can neither be read back nor answer 410).
//!
//! WebSocket events and stream batches come from `tests/events/` (a subscribe event's body
//! is signed afresh by each test, since proofs are checked against the clock). The stream
//! fixtures name room `5ca1ab1e…`, channel `c0ffee00…`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use cinder_aws::live::DynamoLive;
use cinder_aws::rooms::DynamoRooms;
use cinder_proto::live::{ClientFrame, Place, Proof, ServerFrame};
use cinder_proto::rooms::Room;
use cinder_proto::{Blob, ChannelId, ErrorCode, RoomId, Timestamp, VerifyKey};
use cinder_server::store::{ChannelRef, LiveStore, RoomStore, Subscription};
use cinder_tests::fixtures::random_nonce;
use cinder_tests::lambda::{RuntimeApi, rooms_env};
use cinder_tests::meter::{Meter, Tally, units};
use cinder_tests::moto;
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

/// The stream fixtures' room and channel.
const ROOM: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
const CHANNEL: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";
/// Another channel of the same room.
const OTHER: ChannelId = ChannelId([0x0b; 16]);

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn room_id() -> RoomId {
    ROOM.parse().unwrap()
}

fn channel_id() -> ChannelId {
    CHANNEL.parse().unwrap()
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn verify_key(k: &SigningKey) -> VerifyKey {
    VerifyKey::from(k.verifying_key())
}

fn room(version: u64, channels: &[(ChannelId, &SigningKey)]) -> Room {
    Room {
        room_id: room_id(),
        version,
        spine: Blob(vec![1; 8]),
        admin_key: verify_key(&key(1)),
        member_key: verify_key(&key(2)),
        channels: channels
            .iter()
            .map(|(c, k)| (*c, verify_key(k)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn place(channel: ChannelId) -> Place {
    Place {
        room: room_id(),
        channel,
    }
}

fn proof(k: &SigningKey, channel: ChannelId, at: Timestamp) -> Proof {
    Proof::sign(k, place(channel), at, random_nonce())
}

fn frame(f: &ServerFrame) -> Value {
    serde_json::to_value(f).unwrap()
}

fn subscribed(channel: ChannelId) -> Value {
    frame(&ServerFrame::Subscribed {
        room: room_id(),
        channel,
    })
}

fn refused(channel: ChannelId, code: ErrorCode) -> Value {
    frame(&ServerFrame::Refused {
        room: room_id(),
        channel,
        code,
    })
}

fn message(number: u64) -> Value {
    frame(&ServerFrame::Message {
        room: room_id(),
        channel: channel_id(),
        number,
    })
}

fn deleted(number: u64) -> Value {
    frame(&ServerFrame::Deleted {
        room: room_id(),
        channel: channel_id(),
        number,
    })
}

/// A WebSocket event from a fixture, for `connection`.
fn ws(name: &str, connection: &str) -> Value {
    let mut event = fixture(name);
    event["requestContext"]["connectionId"] = json!(connection);
    event
}

/// A `subscribe` frame from `connection` with these proofs, as API Gateway delivers it.
fn subscribe_event(connection: &str, proofs: Vec<Proof>) -> Value {
    let mut event = ws("subscribe.json", connection);
    let body = serde_json::to_string(&ClientFrame::Subscribe { channels: proofs }).unwrap();
    event["body"] = json!(body);
    event
}

fn unsubscribe_event(connection: &str, channels: Vec<Place>) -> Value {
    let mut event = ws("subscribe.json", connection);
    event["requestContext"]["routeKey"] = json!("unsubscribe");
    let body = serde_json::to_string(&ClientFrame::Unsubscribe { channels }).unwrap();
    event["body"] = json!(body);
    event
}

/// A connection id as API Gateway makes them (base64 with `=`, which the SDK
/// percent-encodes in the path).
fn conn(n: usize) -> String {
    format!("Conn{n:08}Ab=")
}

/// The management API stand-in: `POST {stage}/@connections/{id}`.
#[derive(Clone, Default)]
struct Connections {
    /// Every frame posted, by connection, in order.
    posted: Arc<Mutex<BTreeMap<String, Vec<Value>>>>,
    /// Connections answered with 410 Gone.
    gone: Arc<Mutex<BTreeSet<String>>>,
    /// How many posts arrived (to closed connections too).
    calls: Arc<Mutex<u64>>,
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

impl Connections {
    /// Serves on a free port; returns the stage URL (`http://127.0.0.1:port/live`).
    async fn start(&self) -> String {
        use axum::http::StatusCode;
        use axum::response::IntoResponse;
        let me = self.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let me = me.clone();
            async move {
                let path = request.uri().path().to_owned();
                let method = request.method().clone();
                let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let Some(id) = path.strip_prefix("/live/@connections/") else {
                    return (StatusCode::NOT_FOUND, "no such route").into_response();
                };
                assert_eq!(method, axum::http::Method::POST, "{path}");
                let id = percent_decode(id);
                *me.calls.lock().unwrap() += 1;
                if me.gone.lock().unwrap().contains(&id) {
                    return (
                        StatusCode::GONE,
                        [("x-amzn-errortype", "GoneException")],
                        r#"{"message":"Gone"}"#,
                    )
                        .into_response();
                }
                let frame: Value = serde_json::from_slice(&body).unwrap();
                me.posted.lock().unwrap().entry(id).or_default().push(frame);
                StatusCode::OK.into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/live", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    /// Everything posted since the last take, by connection.
    fn take(&self) -> BTreeMap<String, Vec<Value>> {
        std::mem::take(&mut *self.posted.lock().unwrap())
    }

    fn close(&self, connection: &str) {
        self.gone.lock().unwrap().insert(connection.to_owned());
    }

    fn calls(&self) -> u64 {
        *self.calls.lock().unwrap()
    }
}

/// One deployment of the live function on fresh tables: the store handles the test uses
/// directly (moto itself, not through the meter), the emulator, the connections.
struct World {
    rooms: Arc<DynamoRooms>,
    live: Arc<DynamoLive>,
    api: RuntimeApi,
    connections: Connections,
    _function: tokio::process::Child,
}

impl World {
    /// `aws`: where the function's SDK calls go (moto, or a meter in front of it).
    async fn start(aws: Option<&Meter>) -> Self {
        let (rooms, tables) = moto::fresh_rooms_store().await;
        let (live, table) = moto::fresh_live_store().await;
        let connections = Connections::default();
        let endpoint = connections.start().await;
        let mut env = rooms_env(&tables);
        env.retain(|(k, _)| *k != "MEDIA_BUCKET");
        if let Some(meter) = aws {
            env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
            env.push(("AWS_ENDPOINT_URL", meter.url.clone()));
        }
        env.push(("LIVE_TABLE", table));
        env.push(("LIVE_ENDPOINT", endpoint));
        let api = RuntimeApi::start().await;
        let function = api.spawn_function(env!("CARGO_BIN_EXE_cinder-live").as_ref(), &env);
        Self {
            rooms,
            live,
            api,
            connections,
            _function: function,
        }
    }

    /// A WebSocket event: the status code the function answered.
    async fn socket(&self, event: Value) -> u64 {
        let answer = self.api.invoke(event).await.unwrap();
        answer["statusCode"].as_u64().unwrap()
    }

    /// A stream batch: the sequence numbers reported as failed.
    async fn stream(&self, event: Value) -> Vec<String> {
        let answer = self.api.invoke(event).await.unwrap();
        answer["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("not a batch response: {answer}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn subscribers(&self, channel: ChannelId) -> Vec<String> {
        let c = ChannelRef {
            room: room_id(),
            channel,
        };
        let mut out: Vec<String> = self
            .live
            .subscribers(&c, Timestamp::now())
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.connection)
            .collect();
        out.sort();
        out
    }
}

fn one(connection: &str, frames: Vec<Value>) -> BTreeMap<String, Vec<Value>> {
    [(connection.to_owned(), frames)].into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proved_subscriptions_hear_of_new_and_deleted_messages_and_nobody_else_does() {
    let w = World::start(None).await;
    let (ka, kb) = (key(10), key(11));
    let a = channel_id();
    w.rooms
        .create_room(&room(1, &[(a, &ka), (OTHER, &kb)]))
        .await
        .unwrap();
    let (reader, other, stranger) = (conn(1), conn(2), conn(3));

    // A connection is let in, and told nothing.
    assert_eq!(w.socket(ws("connect.json", &reader)).await, 200);
    assert_eq!(w.connections.take(), BTreeMap::new());

    // A good proof subscribes; the answer is posted back on the connection.
    let now = Timestamp::now();
    let good = proof(&ka, a, now);
    assert_eq!(
        w.socket(subscribe_event(&reader, vec![good.clone()])).await,
        200
    );
    assert_eq!(w.connections.take(), one(&reader, vec![subscribed(a)]));
    assert_eq!(
        w.socket(subscribe_event(&other, vec![proof(&kb, OTHER, now)]))
            .await,
        200
    );
    assert_eq!(w.connections.take(), one(&other, vec![subscribed(OTHER)]));

    // Forged (another channel's key; a stranger's key), replayed and stale proofs are
    // refused, each on its own.
    let mut relabelled = proof(&kb, OTHER, now);
    relabelled.channel = a;
    let frames = vec![
        proof(&kb, a, now),
        proof(&key(99), a, now),
        relabelled,
        good,
        proof(&ka, a, Timestamp(now.0 - 600)),
    ];
    assert_eq!(w.socket(subscribe_event(&stranger, frames)).await, 200);
    assert_eq!(
        w.connections.take(),
        one(
            &stranger,
            vec![
                refused(a, ErrorCode::Unauthenticated),
                refused(a, ErrorCode::Unauthenticated),
                refused(a, ErrorCode::Unauthenticated),
                refused(a, ErrorCode::ReplayedRequest),
                refused(a, ErrorCode::StaleRequest),
            ]
        )
    );
    // Not a frame at all: one error frame.
    let mut junk = ws("subscribe.json", &stranger);
    junk["body"] = json!("{not json");
    assert_eq!(w.socket(junk).await, 200);
    let posted = w.connections.take();
    assert_eq!(posted[&stranger][0]["type"], "error", "{posted:?}");
    assert_eq!(posted[&stranger][0]["code"], "malformed_json", "{posted:?}");
    assert_eq!(w.subscribers(a).await, std::slice::from_ref(&reader));

    // A post (the counter's MODIFY and the message's INSERT) reaches the reader only.
    assert_eq!(
        w.stream(fixture("insert-message.json")).await,
        Vec::<String>::new()
    );
    assert_eq!(w.connections.take(), one(&reader, vec![message(4)]));
    // A reserved number filled: the hold's MODIFY into a message.
    assert_eq!(
        w.stream(fixture("modify-hold-to-message.json")).await,
        Vec::<String>::new()
    );
    assert_eq!(w.connections.take(), one(&reader, vec![message(5)]));
    // Counter items, holds and burns are nobody's news.
    assert_eq!(
        w.stream(fixture("untouched.json")).await,
        Vec::<String>::new()
    );
    assert_eq!(w.connections.take(), BTreeMap::new());
    // A deletion.
    assert_eq!(
        w.stream(fixture("modify-deleted.json")).await,
        Vec::<String>::new()
    );
    assert_eq!(w.connections.take(), one(&reader, vec![deleted(4)]));

    // Unsubscribing stops the notices, and answers nothing.
    assert_eq!(
        w.socket(unsubscribe_event(&other, vec![place(OTHER)]))
            .await,
        200
    );
    assert_eq!(w.subscribers(OTHER).await, Vec::<String>::new());
    // $disconnect forgets the reader's subscriptions.
    assert_eq!(w.socket(ws("disconnect.json", &reader)).await, 200);
    assert_eq!(w.subscribers(a).await, Vec::<String>::new());
    assert_eq!(
        w.stream(fixture("insert-message.json")).await,
        Vec::<String>::new()
    );
    assert_eq!(w.connections.take(), BTreeMap::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_connections_and_replaced_keys_lose_their_subscriptions() {
    let w = World::start(None).await;
    let (old, new) = (key(10), key(12));
    let a = channel_id();
    w.rooms.create_room(&room(1, &[(a, &old)])).await.unwrap();
    let (closed, open) = (conn(1), conn(2));
    for c in [&closed, &open] {
        assert_eq!(
            w.socket(subscribe_event(c, vec![proof(&old, a, Timestamp::now())]))
                .await,
            200
        );
    }
    w.connections.take();
    assert_eq!(w.subscribers(a).await, [closed.clone(), open.clone()]);

    // The closed connection answers 410: the batch still succeeds, the open one hears,
    // and the closed one's subscriptions are gone.
    w.connections.close(&closed);
    let calls = w.connections.calls();
    assert_eq!(
        w.stream(fixture("insert-message.json")).await,
        Vec::<String>::new()
    );
    assert_eq!(w.connections.calls() - calls, 2);
    assert_eq!(w.connections.take(), one(&open, vec![message(4)]));
    assert_eq!(w.subscribers(a).await, std::slice::from_ref(&open));

    // The admin removes a member: channel A gets a new capability key. A subscription
    // proved with the old key hears nothing more, and is dropped.
    w.rooms.update_room(&room(2, &[(a, &new)])).await.unwrap();
    assert_eq!(
        w.stream(fixture("modify-hold-to-message.json")).await,
        Vec::<String>::new()
    );
    assert_eq!(w.connections.take(), BTreeMap::new());
    assert_eq!(w.subscribers(a).await, Vec::<String>::new());
    // The old key cannot subscribe again; the new one can, and hears.
    assert_eq!(
        w.socket(subscribe_event(
            &open,
            vec![proof(&old, a, Timestamp::now())]
        ))
        .await,
        200
    );
    assert_eq!(
        w.connections.take(),
        one(&open, vec![refused(a, ErrorCode::Unauthenticated)])
    );
    w.socket(subscribe_event(
        &open,
        vec![proof(&new, a, Timestamp::now())],
    ))
    .await;
    w.connections.take();
    w.stream(fixture("modify-deleted.json")).await;
    assert_eq!(w.connections.take(), one(&open, vec![deleted(4)]));
}

/// What one notice costs the fan-out: DynamoDB calls (through the meter) and posts.
struct Cost {
    subscribers: usize,
    tally: Tally,
    posts: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_all_hear_and_what_a_notice_costs() {
    let meter = Meter::on_moto().await;
    let w = World::start(Some(&meter)).await;
    let ka = key(10);
    let a = channel_id();
    let kb = key(11);
    w.rooms
        .create_room(&room(1, &[(a, &ka), (OTHER, &kb)]))
        .await
        .unwrap();
    let c = ChannelRef {
        room: room_id(),
        channel: a,
    };
    // Warm: the first invocation is not measured.
    w.stream(fixture("untouched.json")).await;

    // What subscribing costs: one frame with one proof (on the other channel).
    let (mark, calls) = (meter.mark(), w.connections.calls());
    let event = subscribe_event(&conn(999), vec![proof(&kb, OTHER, Timestamp::now())]);
    assert_eq!(w.socket(event).await, 200);
    let subscribing = Tally::of(&meter.since(mark));
    let subscribing_posts = w.connections.calls() - calls;
    assert_eq!(
        w.connections.take(),
        one(&conn(999), vec![subscribed(OTHER)])
    );

    let mut costs = Vec::new();
    let mut subscribed = 0;
    for target in [1, 100] {
        while subscribed < target {
            w.live
                .subscribe(&Subscription {
                    connection: conn(subscribed),
                    channel: c,
                    key: verify_key(&ka),
                    expires_at: Timestamp::now().plus(3600),
                })
                .await
                .unwrap();
            subscribed += 1;
        }
        let (mark, calls) = (meter.mark(), w.connections.calls());
        assert_eq!(
            w.stream(fixture("modify-hold-to-message.json")).await,
            Vec::<String>::new()
        );
        let tally = Tally::of(&meter.since(mark));
        let posted = w.connections.take();
        assert_eq!(posted.len(), target, "every subscriber hears");
        assert!(posted.values().all(|f| *f == vec![message(5)]));
        costs.push(Cost {
            subscribers: target,
            tally,
            posts: w.connections.calls() - calls,
        });
    }

    println!("\nlive fan-out, per notice (one stream record, warm function):");
    println!(
        "{:>11}  {:>22}  {:>14}  {:>16}",
        "subscribers", "DynamoDB reads", "writes", "PostToConnection"
    );
    println!(
        "{:>11}  {:>22}  {:>14}  {:>16}",
        "(subscribe)",
        format!("{} ({} RRU)", subscribing.ddb_reads, units(subscribing.rru)),
        format!(
            "{} ({} WRU)",
            subscribing.ddb_writes,
            units(subscribing.wru)
        ),
        subscribing_posts
    );
    for c in &costs {
        println!(
            "{:>11}  {:>22}  {:>14}  {:>16}",
            c.subscribers,
            format!("{} ({} RRU)", c.tally.ddb_reads, units(c.tally.rru)),
            format!("{} ({} WRU)", c.tally.ddb_writes, units(c.tally.wru)),
            c.posts
        );
        // One room read and one subscriber query, whatever the count; no writes.
        assert_eq!(c.tally.ddb_reads, 2, "{}", c.subscribers);
        assert_eq!(c.tally.ddb_writes, 0, "{}", c.subscribers);
        assert_eq!(c.posts, c.subscribers as u64);
    }
}

/// The records DynamoDB itself writes (as moto's stream has them) for a one-request post, a
/// number held and then filled, and a delete: three notices, in order, and nothing for the
/// counter's changes or the hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_own_stream_records_make_the_same_notices() {
    use cinder_proto::rooms::Shard;
    use cinder_server::store::ShardStore;
    let (rooms, tables) = moto::fresh_rooms_store().await;
    let (_, table) = moto::fresh_live_store().await;
    let connections = Connections::default();
    let endpoint = connections.start().await;
    let mut env = rooms_env(&tables);
    env.push(("LIVE_TABLE", table));
    env.push(("LIVE_ENDPOINT", endpoint));
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(env!("CARGO_BIN_EXE_cinder-live").as_ref(), &env);
    let ka = key(10);
    let a = channel_id();
    rooms.create_room(&room(1, &[(a, &ka)])).await.unwrap();
    let reader = conn(1);
    let answer = api
        .invoke(subscribe_event(
            &reader,
            vec![proof(&ka, a, Timestamp::now())],
        ))
        .await
        .unwrap();
    assert_eq!(answer["statusCode"], 200);
    assert_eq!(connections.take(), one(&reader, vec![subscribed(a)]));

    let c = ChannelRef {
        room: room_id(),
        channel: a,
    };
    let now = Timestamp::now();
    let shard = |number| Shard {
        number,
        ciphertext: Blob(b"sealed".to_vec()),
        burn_at: now.plus(3600),
        posted_at: now,
        delete_hash: None,
        media: Vec::new(),
    };
    rooms.post_next(&c, &shard(1)).await.unwrap();
    let hold = [7; 16];
    assert_eq!(rooms.reserve(&c, &hold, now.plus(3600)).await.unwrap(), 2);
    rooms.fill_hold(&c, &shard(2), &hold, now).await.unwrap();
    assert!(rooms.delete_shard(&c, 1).await.unwrap());

    let records = moto::stream_records(&tables.shards).await;
    let answer = api.invoke(json!({ "Records": records })).await.unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
    assert_eq!(
        connections.take(),
        one(&reader, vec![message(1), message(2), deleted(1)])
    );
}

/// A store read that fails reports the records of its room back for a retry (and only
/// those: not the counter's record beside it, nor a record that is not a record at all);
/// a malformed record is skipped, never retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_read_reports_its_records_for_retry_and_nothing_else() {
    let (rooms, tables) = moto::fresh_rooms_store().await;
    let connections = Connections::default();
    let endpoint = connections.start().await;
    let mut env = rooms_env(&tables);
    // No such table: every subscriber query fails.
    env.push(("LIVE_TABLE", format!("{}missing", moto::unique_prefix())));
    env.push(("LIVE_ENDPOINT", endpoint));
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(env!("CARGO_BIN_EXE_cinder-live").as_ref(), &env);
    rooms
        .create_room(&room(1, &[(channel_id(), &key(10))]))
        .await
        .unwrap();
    let mut event = fixture("insert-message.json");
    let records = event["Records"].as_array_mut().unwrap();
    records.push(json!({"eventName": 5, "dynamodb": {"SequenceNumber": "100000000000000000999"}}));
    let answer = api.invoke(event).await.unwrap();
    assert_eq!(
        answer["batchItemFailures"],
        json!([{"itemIdentifier": "100000000000000000102"}]),
        "{answer}"
    );
    assert_eq!(connections.calls(), 0);
    // Nothing to read, nothing to fail.
    let answer = api.invoke(fixture("untouched.json")).await.unwrap();
    assert_eq!(answer["batchItemFailures"], json!([]));
    // Neither a batch nor a WebSocket event: an invocation error.
    assert!(api.invoke(json!({"hello": "world"})).await.is_err());
}

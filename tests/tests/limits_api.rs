//! Per-action rate limits on both stores (SQLite; DynamoDB on moto, where every instance
//! spends from one table): past its bucket, each limited action answers `429 rate_limited`
//! with `Retry-After`, spends nothing of anyone else's bucket, and goes through again once
//! a token has come back.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use cinder_proto::ChannelId;
use cinder_proto::encoding::encode;
use cinder_server::Clock;
use cinder_server::keys::{KeysState, router};
use cinder_server::limits::Limits;
use cinder_sqlite::SqliteStore;
use cinder_tests::fixtures::User;
use cinder_tests::rooms::{Backend, RoomCaps, T0, backends_with_limits};
use cinder_tests::router::{Answer, send, send_from};
use serde_json::json;

const HORIZON: u64 = 24 * 3600;

/// `(status, code, retry-after)` of an answer.
fn refusal(a: &Answer) -> (u16, String, Option<u64>) {
    (
        a.status.as_u16(),
        a.code().to_owned(),
        a.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    )
}

fn limited(retry_after: u64) -> (u16, String, Option<u64>) {
    (429, "rate_limited".to_owned(), Some(retry_after))
}

/// `POST /rooms` for `caps`, signed by its admin, from `from`.
async fn create_room_from(b: &Backend, caps: &RoomCaps, from: Option<IpAddr>) -> Answer {
    let bytes = serde_json::to_vec(&caps.create_body(b"sealed spine")).unwrap();
    let headers = caps.admin.sign("POST", "/rooms", &bytes, b.now());
    send_from(&b.app, from, "POST", "/rooms", &headers, bytes).await
}

fn room(tag: u8) -> RoomCaps {
    RoomCaps::new(tag, &[ChannelId([tag; 16]), ChannelId([tag + 1; 16])])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_numbers_posts_and_turn_credentials_are_limited_per_capability() {
    let limits = Limits::parse(
        "room_create_per_address=2/1h,reserve_per_capability=2/1m,\
         post_per_capability=2/1m,turn_per_capability=2/1m",
    )
    .unwrap();
    for b in backends_with_limits(HORIZON, &limits).await {
        // Rooms: two from one address, the third waits half an hour; another address's own.
        let here: IpAddr = "198.51.100.1".parse().unwrap();
        let there: IpAddr = "198.51.100.2".parse().unwrap();
        let caps = room(10);
        for (i, caps) in [&caps, &room(20)].into_iter().enumerate() {
            let created = create_room_from(&b, caps, Some(here)).await;
            assert_eq!(
                created.status, 201,
                "{}: room {i}: {:?}",
                b.name, created.json
            );
        }
        let third = create_room_from(&b, &room(30), Some(here)).await;
        assert_eq!(refusal(&third), limited(1800), "{}", b.name);
        assert_eq!(
            create_room_from(&b, &room(30), Some(there)).await.status,
            201
        );

        // Numbers: two per channel capability; the other channel's capability has its own.
        let (_, first) = caps.channel(0);
        let (_, second) = caps.channel(1);
        let numbers = format!("{}/numbers", caps.messages(0));
        for _ in 0..2 {
            assert_eq!(b.call(first, "POST", &numbers, None).await.status, 201);
        }
        let held = b.call(first, "POST", &numbers, None).await;
        assert_eq!(refusal(&held), limited(30), "{}", b.name);
        let other = format!("{}/numbers", caps.messages(1));
        assert_eq!(b.call(second, "POST", &other, None).await.status, 201);

        // Posts: two, then the third waits; a refused post stores nothing.
        let body = |text: &[u8]| json!({"ciphertext": encode(text), "burn_at": b.now().0 + 600});
        for n in 3..=4 {
            let path = format!("{}/{n}", caps.messages(0));
            let posted = b.call(first, "PUT", &path, Some(body(b"hello"))).await;
            assert_eq!(posted.status, 201, "{}: {:?}", b.name, posted.json);
        }
        let path = format!("{}/5", caps.messages(0));
        let refused = b
            .call(first, "PUT", &path, Some(body(b"one too many")))
            .await;
        assert_eq!(refusal(&refused), limited(30), "{}", b.name);
        let listed = b.call(first, "GET", &caps.messages(0), None).await;
        assert_eq!(
            listed.json["shards"].as_array().unwrap().len(),
            2,
            "{}",
            b.name
        );

        // TURN credentials: two, then the third waits.
        let turn = format!("/calls/{}/{}/turn", caps.room, caps.channels[0].0);
        for _ in 0..2 {
            assert_eq!(b.call(first, "POST", &turn, None).await.status, 200);
        }
        let refused = b.call(first, "POST", &turn, None).await;
        assert_eq!(refusal(&refused), limited(30), "{}", b.name);

        // A token comes back after a bucket's interval (60 s / 2), one at a time.
        b.set(T0.plus(30));
        assert_eq!(b.call(first, "POST", &turn, None).await.status, 200);
        assert_eq!(b.call(first, "POST", &turn, None).await.status, 429);
        let path = format!("{}/5", caps.messages(0));
        assert_eq!(
            b.call(first, "PUT", &path, Some(body(b"later")))
                .await
                .status,
            201,
            "{}",
            b.name
        );
    }
}

async fn key_backends(
    limits: &Limits,
) -> Vec<(&'static str, Router, cinder_server::clock::ManualTime)> {
    let (clock, time) = Clock::manual(T0);
    let sqlite = router(
        KeysState::new(Arc::new(SqliteStore::in_memory().unwrap()), clock)
            .with_limits(limits.clone()),
    );
    let (clock, dynamo_time) = Clock::manual(T0);
    let dynamo = router(
        KeysState::new(cinder_tests::moto::fresh_store().await.0, clock)
            .with_limits(limits.clone()),
    );
    vec![("sqlite", sqlite, time), ("dynamodb", dynamo, dynamo_time)]
}

async fn publish_from(app: &Router, user: &User, from: IpAddr) -> Answer {
    let body = serde_json::to_vec(&user.bundle).unwrap();
    send_from(app, Some(from), "POST", "/keys", &[], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_publishes_rotations_and_drops_are_limited_per_address_user_and_sender() {
    let limits = Limits::parse(
        "key_publish_per_address=2/1h,key_rotate_per_user=1/1h,inbox_drop_per_sender=2/1h",
    )
    .unwrap();
    for (name, app, time) in key_backends(&limits).await {
        let here: IpAddr = "203.0.113.9".parse().unwrap();
        let there: IpAddr = "2001:db8:9::1".parse().unwrap();
        let (alice, bob, carol) = (User::new(1, T0), User::new(2, T0), User::new(3, T0));
        // Publishes: two new users from one address; the third waits; another address's own.
        assert_eq!(publish_from(&app, &alice, here).await.status, 201);
        assert_eq!(publish_from(&app, &bob, here).await.status, 201);
        let refused = publish_from(&app, &carol, here).await;
        assert_eq!(refusal(&refused), limited(1800), "{name}");
        assert_eq!(publish_from(&app, &carol, there).await.status, 201);
        // The refusal stored nothing: carol was published once, from the other address.
        let again = publish_from(&app, &carol, there).await;
        assert_eq!(again.code(), "already_exists", "{name}");

        // Rotations: one per user per hour; a forged rotation of alice's spends nothing.
        let forged = {
            let mut b = User::new(9, T0).rotated(19, T0.plus(5)).bundle;
            b.user_id = alice.id();
            b
        };
        let path = format!("/keys/{}", alice.id());
        let bytes = serde_json::to_vec(&forged).unwrap();
        assert_eq!(
            send(&app, "PUT", &path, &[], bytes).await.code(),
            "invalid_rotation"
        );
        let alice2 = alice.rotated(11, T0.plus(10));
        let bytes = serde_json::to_vec(&alice2.bundle).unwrap();
        assert_eq!(
            send(&app, "PUT", &path, &[], bytes).await.status,
            200,
            "{name}"
        );
        let alice3 = alice2.rotated(12, T0.plus(20));
        let bytes = serde_json::to_vec(&alice3.bundle).unwrap();
        let refused = send(&app, "PUT", &path, &[], bytes).await;
        assert_eq!(refusal(&refused), limited(3600), "{name}");
        let bob2 = bob.rotated(21, T0.plus(10));
        let bytes = serde_json::to_vec(&bob2.bundle).unwrap();
        let bob_path = format!("/keys/{}", bob.id());
        assert_eq!(
            send(&app, "PUT", &bob_path, &[], bytes).await.status,
            200,
            "{name}"
        );

        // Drops: two per sender; the recipient can still get carol's.
        let drop = |from: &User, to: &User| {
            let path = format!("/inbox/{}", to.id());
            let bytes = serde_json::to_vec(&json!({ "sealed": encode(b"an invite") })).unwrap();
            let headers = from.sign("POST", &path, &bytes, T0);
            let app = app.clone();
            async move { send(&app, "POST", &path, &headers, bytes).await }
        };
        assert_eq!(drop(&bob2, &alice).await.status, 201, "{name}");
        assert_eq!(drop(&bob2, &carol).await.status, 201, "{name}");
        assert_eq!(refusal(&drop(&bob2, &alice).await), limited(1800), "{name}");
        assert_eq!(drop(&carol, &alice).await.status, 201, "{name}");
        // Half an hour on, bob may drop one more.
        time.advance(1800);
        let path = format!("/inbox/{}", alice.id());
        let bytes = serde_json::to_vec(&json!({ "sealed": encode(b"later") })).unwrap();
        let headers = bob2.sign("POST", &path, &bytes, T0.plus(1800));
        assert_eq!(
            send(&app, "POST", &path, &headers, bytes).await.status,
            201,
            "{name}"
        );
    }
}

//! The spine and shards functions' HTTP behaviour on both stores: capabilities, versions,
//! numbering under concurrency, the burn horizon, and burnt messages never served.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use cinder_proto::encoding::encode;
use cinder_proto::{ChannelId, RoomId, Signer, Timestamp};
use cinder_server::Clock;
use cinder_server::clock::ManualTime;
use cinder_server::shards::{ShardsState, delete_hash_of};
use cinder_server::spine::SpineState;
use cinder_sqlite::SqliteStore;
use cinder_tests::fixtures::Capability;
use cinder_tests::router::{Answer, send};
use serde_json::{Value, json};

const T0: Timestamp = Timestamp(1_800_000_000);
const HORIZON: u64 = 3600;

struct Backend {
    name: &'static str,
    app: Router,
    time: ManualTime,
    /// The manual clock's current value, which signatures are dated with.
    now: std::sync::atomic::AtomicU64,
}

fn app<S>(store: Arc<S>, clock: Clock) -> Router
where
    S: cinder_server::store::RoomStore
        + cinder_server::store::ShardStore
        + cinder_server::store::NonceStore
        + cinder_server::store::RateLimitStore
        + 'static,
{
    cinder_server::routing::finish(
        Router::new()
            .merge(cinder_server::spine::routes(SpineState::new(
                store.clone(),
                clock.clone(),
            )))
            .merge(cinder_server::shards::routes(ShardsState::new(
                store, clock, HORIZON,
            ))),
    )
}

async fn backends() -> Vec<Backend> {
    let (clock, time) = Clock::manual(T0);
    let sqlite = Backend {
        name: "sqlite",
        app: app(Arc::new(SqliteStore::in_memory().unwrap()), clock),
        time,
        now: T0.0.into(),
    };
    let (clock, time) = Clock::manual(T0);
    let dynamo = Backend {
        name: "dynamodb",
        app: app(cinder_tests::moto::fresh_rooms_store().await.0, clock),
        time,
        now: T0.0.into(),
    };
    vec![sqlite, dynamo]
}

/// A room's capabilities, as its admin's client holds them.
struct Caps {
    room: RoomId,
    channel: ChannelId,
    admin: Capability,
    member: Capability,
    chan: Capability,
}

fn caps(tag: u8) -> Caps {
    let room = RoomId([tag; 16]);
    let channel = ChannelId([tag.wrapping_add(1); 16]);
    Caps {
        room,
        channel,
        admin: Capability::new(tag, Signer::Admin(room)),
        member: Capability::new(tag.wrapping_add(50), Signer::Member(room)),
        chan: Capability::new(tag.wrapping_add(100), Signer::Channel(room, channel)),
    }
}

async fn call(
    b: &Backend,
    who: &Capability,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let bytes = body
        .map(|j| serde_json::to_vec(&j).unwrap())
        .unwrap_or_default();
    let headers = who.sign(method, path, &bytes, b.now());
    send(&b.app, method, path, &headers, bytes).await
}

impl Backend {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn set(&self, t: Timestamp) {
        self.time.set(t);
        self.now.store(t.0, std::sync::atomic::Ordering::SeqCst);
    }
}

async fn create(b: &Backend, c: &Caps) -> Answer {
    let body = json!({
        "room_id": c.room,
        "spine": encode(b"sealed spine v1"),
        "admin_key": c.admin.verify_key(),
        "member_key": c.member.verify_key(),
        "channels": { c.channel.to_string(): c.chan.verify_key() },
    });
    call(b, &c.admin, "POST", "/rooms", Some(body)).await
}

fn messages(c: &Caps) -> String {
    format!("/messages/{}/{}", c.room, c.channel)
}

/// Posts as the reference client does: proposes number 1, and if that is taken, posts once
/// more under the number the server holds for it.
async fn post(b: &Backend, c: &Caps, text: &[u8], burn_in: u64) -> Answer {
    let body = json!({"ciphertext": encode(text), "burn_at": b.now().0 + burn_in});
    let first = call(
        b,
        &c.chan,
        "PUT",
        &format!("{}/1", messages(c)),
        Some(body.clone()),
    )
    .await;
    if first.status != 409 {
        return first;
    }
    assert_eq!(first.code(), "number_taken", "{}: {:?}", b.name, first.json);
    let reserved = &first.json["reserved"];
    let n = reserved["number"].as_u64().unwrap();
    let mut body = body;
    body["hold"] = reserved["hold"].clone();
    call(
        b,
        &c.chan,
        "PUT",
        &format!("{}/{n}", messages(c)),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "current_thread")]
async fn rooms_are_created_read_updated_and_deleted_by_capability() {
    for b in backends().await {
        b.set(T0);
        let c = caps(1);
        let created = create(&b, &c).await;
        assert_eq!(
            (created.status.as_u16(), &created.json["version"]),
            (201, &json!(1)),
            "{}: {:?}",
            b.name,
            created.json
        );
        assert_eq!(create(&b, &c).await.code(), "already_exists");

        let path = format!("/rooms/{}", c.room);
        for who in [&c.member, &c.admin] {
            let got = call(&b, who, "GET", &path, None).await;
            assert_eq!(got.status, 200, "{}", b.name);
            assert_eq!(got.json["spine"], encode(b"sealed spine v1"));
        }
        // A channel key is not a member key; another room's admin is nobody here.
        assert_eq!(
            call(&b, &c.chan, "GET", &path, None).await.code(),
            "forbidden"
        );
        let other = caps(2);
        create(&b, &other).await;
        let cross = Capability::new(2, Signer::Admin(other.room));
        assert_eq!(
            call(&b, &cross, "GET", &path, None).await.code(),
            "forbidden"
        );

        // Updates need the admin and the version; a member cannot.
        let update = |v: u64, spine: &[u8]| {
            json!({
                "expected_version": v, "spine": encode(spine),
                "admin_key": c.admin.verify_key(), "member_key": c.member.verify_key(),
                "channels": { c.channel.to_string(): c.chan.verify_key() },
            })
        };
        assert_eq!(
            call(&b, &c.member, "PUT", &path, Some(update(1, b"x")))
                .await
                .code(),
            "forbidden"
        );
        let ok = call(
            &b,
            &c.admin,
            "PUT",
            &path,
            Some(update(1, b"sealed spine v2")),
        )
        .await;
        assert_eq!(
            (ok.status.as_u16(), &ok.json["version"]),
            (200, &json!(2)),
            "{}",
            b.name
        );
        let stale = call(&b, &c.admin, "PUT", &path, Some(update(1, b"lost update"))).await;
        assert_eq!(
            (stale.status.as_u16(), stale.code()),
            (409, "version_conflict")
        );
        assert_eq!(
            call(&b, &c.member, "GET", &path, None).await.json["spine"],
            encode(b"sealed spine v2")
        );

        assert_eq!(
            call(&b, &c.member, "DELETE", &path, None).await.code(),
            "forbidden"
        );
        assert_eq!(call(&b, &c.admin, "DELETE", &path, None).await.status, 204);
        // Once deleted, no capability of the room verifies.
        assert_eq!(
            call(&b, &c.member, "GET", &path, None).await.code(),
            "unauthenticated"
        );
    }
}

/// The body of an admin's update of `c` from version `v` to a spine of `spine`.
fn update_body(c: &Caps, v: u64, spine: &[u8]) -> Value {
    json!({
        "expected_version": v, "spine": encode(spine),
        "admin_key": c.admin.verify_key(), "member_key": c.member.verify_key(),
        "channels": { c.channel.to_string(): c.chan.verify_key() },
    })
}

#[tokio::test(flavor = "current_thread")]
async fn the_spine_log_serves_every_version_to_members_and_admins_in_pages() {
    use cinder_proto::rooms::limits::MAX_SPINE_PAGE;
    for b in backends().await {
        b.set(T0);
        let c = caps(6);
        create(&b, &c).await;
        let path = format!("/rooms/{}", c.room);
        // Two versions more than a page holds.
        let last = MAX_SPINE_PAGE as u64 + 2;
        for v in 1..last {
            let body = update_body(&c, v, format!("sealed spine v{}", v + 1).as_bytes());
            let ok = call(&b, &c.admin, "PUT", &path, Some(body)).await;
            assert_eq!(ok.status, 200, "{}: {:?}", b.name, ok.json);
        }
        // `create` sealed "sealed spine v1"; the updates follow the same pattern.
        let spine = |v: u64| encode(format!("sealed spine v{v}").as_bytes());
        let log = format!("{path}/spines");

        // A full page, oldest first, with the cursor of the next one.
        let first = call(&b, &c.member, "GET", &format!("{log}?after=0"), None).await;
        assert_eq!(first.status, 200, "{}: {:?}", b.name, first.json);
        let entries = first.json["entries"].as_array().unwrap();
        assert_eq!(entries.len(), MAX_SPINE_PAGE, "{}", b.name);
        for (i, e) in entries.iter().enumerate() {
            let v = i as u64 + 1;
            assert_eq!((&e["version"], &e["spine"]), (&json!(v), &json!(spine(v))));
        }
        assert_eq!(first.json["next"], json!(MAX_SPINE_PAGE), "{}", b.name);
        // The rest, for the admin too; a short page has no `next`.
        let rest = call(
            &b,
            &c.admin,
            "GET",
            &format!("{log}?after={MAX_SPINE_PAGE}"),
            None,
        )
        .await;
        assert_eq!(rest.status, 200, "{}: {:?}", b.name, rest.json);
        assert_eq!(
            rest.json,
            json!({"entries": [
                {"version": last - 1, "spine": spine(last - 1)},
                {"version": last, "spine": spine(last)},
            ]}),
            "{}",
            b.name
        );
        // Without `after`, from the start; past the end, nothing.
        let whole = call(&b, &c.member, "GET", &log, None).await;
        assert_eq!(whole.json["entries"], first.json["entries"]);
        let past = call(&b, &c.member, "GET", &format!("{log}?after={last}"), None).await;
        assert_eq!(
            (past.status.as_u16(), &past.json),
            (200, &json!({"entries": []}))
        );
        // The room's current record is the log's last entry.
        let room = call(&b, &c.member, "GET", &path, None).await;
        assert_eq!(
            (&room.json["version"], &room.json["spine"]),
            (&json!(last), &json!(spine(last)))
        );

        // The same capabilities as reading the room: a channel key is not a member key,
        // and another room's admin is nobody here.
        assert_eq!(
            call(&b, &c.chan, "GET", &log, None).await.code(),
            "forbidden"
        );
        let other = caps(7);
        create(&b, &other).await;
        let cross = Capability::new(7, Signer::Admin(other.room));
        let refused = call(&b, &cross, "GET", &log, None).await;
        assert_eq!(
            (refused.status.as_u16(), refused.code()),
            (403, "forbidden"),
            "{}",
            b.name
        );

        // `after` is a version: a u64 that fits the stores' signed 64-bit integers.
        for bad in [
            "after=-1",
            "after=x",
            "after=1.5",
            "after=",
            "after=18446744073709551616",
            "after=9223372036854775808",
        ] {
            let refused = call(&b, &c.member, "GET", &format!("{log}?{bad}"), None).await;
            assert_eq!(
                (refused.status.as_u16(), refused.code()),
                (400, "invalid_parameter"),
                "{}: {bad}",
                b.name
            );
        }

        // Once the room is deleted, no capability of it verifies.
        assert_eq!(call(&b, &c.admin, "DELETE", &path, None).await.status, 204);
        assert_eq!(
            call(&b, &c.member, "GET", &log, None).await.code(),
            "unauthenticated"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn messages_are_numbered_listed_and_burnt_by_channel_capability() {
    for b in backends().await {
        b.set(T0);
        let c = caps(3);
        create(&b, &c).await;
        let short = post(&b, &c, b"burns in 60 s", 60).await;
        assert_eq!(short.status, 201, "{}: {:?}", b.name, short.json);
        for i in 0..3u8 {
            assert_eq!(post(&b, &c, &[i; 20], 3000).await.status, 201);
        }
        let page = call(
            &b,
            &c.chan,
            "GET",
            &format!("{}?after=0&limit=2", messages(&c)),
            None,
        )
        .await;
        let numbers: Vec<_> = page.json["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["number"].clone())
            .collect();
        assert_eq!(numbers, vec![json!(1), json!(2)], "{}", b.name);
        assert_eq!(page.json["next"], json!(2));

        // Served before its burn time, never after: listed or fetched.
        let one = format!("{}/1", messages(&c));
        assert_eq!(call(&b, &c.chan, "GET", &one, None).await.status, 200);
        b.set(T0.plus(60));
        assert_eq!(
            call(&b, &c.chan, "GET", &one, None).await.code(),
            "not_found",
            "{}",
            b.name
        );
        let all = call(&b, &c.chan, "GET", &messages(&c), None).await;
        let numbers: Vec<_> = all.json["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["number"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, vec![2, 3, 4], "{}", b.name);

        // Without the channel capability, nothing: a member key is the wrong capability, and
        // a key the room never registered does not verify.
        assert_eq!(
            call(&b, &c.member, "GET", &messages(&c), None).await.code(),
            "forbidden"
        );
        let stranger = Capability::new(99, Signer::Channel(c.room, c.channel));
        assert_eq!(
            call(&b, &stranger, "GET", &messages(&c), None).await.code(),
            "unauthenticated"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn posting_enforces_size_and_the_burn_horizon_before_taking_a_number() {
    for b in backends().await {
        b.set(T0);
        let c = caps(4);
        create(&b, &c).await;
        let at = |n: u64| format!("{}/{n}", messages(&c));
        let body =
            |len: usize, burn: u64| json!({"ciphertext": encode(&vec![1u8; len]), "burn_at": burn});
        let zero = call(&b, &c.chan, "PUT", &at(0), Some(body(10, T0.0 + 60))).await;
        assert_eq!(
            (zero.status.as_u16(), zero.code()),
            (400, "invalid_parameter"),
            "{}",
            b.name
        );
        let mut short_hold = body(10, T0.0 + 60);
        short_hold["hold"] = json!(encode(&[1u8; 8]));
        for (what, req, field) in [
            ("burnt already", body(10, T0.0), "burn_at"),
            (
                "beyond the horizon",
                body(10, T0.0 + HORIZON + 1),
                "burn_at",
            ),
            ("empty", body(0, T0.0 + 60), "ciphertext"),
            ("too big", body(64 * 1024 + 1, T0.0 + 60), "ciphertext"),
            ("a hold of the wrong size", short_hold, "hold"),
        ] {
            let refused = call(&b, &c.chan, "PUT", &at(1), Some(req)).await;
            assert_eq!(
                (refused.status.as_u16(), refused.code()),
                (422, "limit_exceeded"),
                "{}: {what}",
                b.name
            );
            assert_eq!(refused.json["field"], field);
        }
        // Refused posts took no number: the first good one is number 1.
        assert_eq!(
            call(&b, &c.chan, "PUT", &at(1), Some(body(10, T0.0 + HORIZON)))
                .await
                .status,
            201,
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_post_takes_the_next_number_or_one_held_for_it() {
    for b in backends().await {
        b.set(T0);
        let c = caps(14);
        create(&b, &c).await;
        let at = |n: u64| format!("{}/{n}", messages(&c));
        let body = |text: &[u8]| json!({"ciphertext": encode(text), "burn_at": b.now().0 + 600});
        let with_hold = |text: &[u8], hold: &Value| {
            let mut v = body(text);
            v["hold"] = hold.clone();
            v
        };
        let taken = |a: &Answer, number: u64| {
            assert_eq!(
                (a.status.as_u16(), a.code()),
                (409, "number_taken"),
                "{}: {:?}",
                b.name,
                a.json
            );
            let reserved = a.json["reserved"].clone();
            assert_eq!(reserved["number"], json!(number), "{}", b.name);
            assert_eq!(reserved["expires_at"], json!(T0.0 + 3600), "{}", b.name);
            reserved["hold"].clone()
        };
        // The quiet case: the next number, one request.
        assert_eq!(
            call(&b, &c.chan, "PUT", &at(1), Some(body(b"one")))
                .await
                .status,
            201
        );
        // A number already taken, or one past the next: another is held for the poster,
        // and the message stored under number 1 is unchanged.
        let hold2 = taken(
            &call(&b, &c.chan, "PUT", &at(1), Some(body(b"late"))).await,
            2,
        );
        let hold3 = taken(
            &call(&b, &c.chan, "PUT", &at(9), Some(body(b"ahead"))).await,
            3,
        );
        let one = call(&b, &c.chan, "GET", &at(1), None).await;
        assert_eq!(one.json["ciphertext"], encode(b"one"), "{}", b.name);
        // A held number is not the next: a proposal goes after the holds.
        taken(
            &call(&b, &c.chan, "PUT", &at(2), Some(body(b"thief"))).await,
            4,
        );
        assert_eq!(
            call(&b, &c.chan, "PUT", &at(5), Some(body(b"five")))
                .await
                .status,
            201,
            "{}",
            b.name
        );
        // Only the hold's own proof fills it, once.
        taken(
            &call(&b, &c.chan, "PUT", &at(2), Some(with_hold(b"two", &hold3))).await,
            6,
        );
        assert_eq!(
            call(&b, &c.chan, "PUT", &at(2), Some(with_hold(b"two", &hold2)))
                .await
                .status,
            201,
            "{}",
            b.name
        );
        taken(
            &call(
                &b,
                &c.chan,
                "PUT",
                &at(2),
                Some(with_hold(b"again", &hold2)),
            )
            .await,
            7,
        );
        // Holds are not messages: the page has what was posted, in order.
        let page = call(&b, &c.chan, "GET", &messages(&c), None).await;
        let shards: Vec<_> = page.json["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["number"].clone(), s["ciphertext"].clone()))
            .collect();
        assert_eq!(
            shards,
            vec![
                (json!(1), json!(encode(b"one"))),
                (json!(2), json!(encode(b"two"))),
                (json!(5), json!(encode(b"five"))),
            ],
            "{}",
            b.name
        );
        assert_eq!(
            call(&b, &c.chan, "GET", &at(3), None).await.code(),
            "not_found",
            "a held number is no message"
        );
        // A hold lapses after an hour; then nothing is posted under it.
        b.set(T0.plus(3600));
        let lapsed = call(&b, &c.chan, "PUT", &at(3), Some(with_hold(b"slow", &hold3))).await;
        assert_eq!(
            (lapsed.status.as_u16(), lapsed.code()),
            (409, "number_taken"),
            "{}",
            b.name
        );
        assert_eq!(lapsed.json["reserved"]["number"], json!(8));
        // An admin may hold a number (a cut-off), not post.
        let cut = call(
            &b,
            &c.admin,
            "POST",
            &format!("{}/numbers", messages(&c)),
            None,
        )
        .await;
        assert_eq!(cut.json["number"], json!(9), "{}: {:?}", b.name, cut.json);
        let admin_post = with_hold(b"admin", &cut.json["hold"]);
        assert_eq!(
            call(&b, &c.admin, "PUT", &at(9), Some(admin_post))
                .await
                .code(),
            "forbidden"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn only_the_sender_or_an_admin_deletes_a_message() {
    for b in backends().await {
        b.set(T0);
        let c = caps(5);
        create(&b, &c).await;
        let secret = b"only the sender can derive this";
        let body = json!({"ciphertext": encode(b"hi"), "burn_at": T0.0 + 600, "delete_hash": delete_hash_of(secret)});
        assert_eq!(
            call(
                &b,
                &c.chan,
                "PUT",
                &format!("{}/1", messages(&c)),
                Some(body)
            )
            .await
            .status,
            201
        );
        post(&b, &c, b"second", 600).await;

        let one = format!("{}/1", messages(&c));
        let wrong = call(
            &b,
            &c.chan,
            "DELETE",
            &one,
            Some(json!({"delete_secret": encode(b"guess")})),
        )
        .await;
        assert_eq!(wrong.code(), "forbidden", "{}", b.name);
        assert_eq!(
            call(&b, &c.chan, "DELETE", &one, None).await.code(),
            "forbidden"
        );
        let right = call(
            &b,
            &c.chan,
            "DELETE",
            &one,
            Some(json!({"delete_secret": encode(secret)})),
        )
        .await;
        assert_eq!(right.status, 204, "{}: {:?}", b.name, right.json);
        // The admin may delete any message, with no secret.
        assert_eq!(
            call(&b, &c.admin, "DELETE", &format!("{}/2", messages(&c)), None)
                .await
                .status,
            204
        );
        assert_eq!(
            call(&b, &c.chan, "GET", &messages(&c), None).await.json["shards"],
            json!([])
        );
        // Out-of-range numbers are the caller's mistake on every store.
        let huge = format!("{}/{}", messages(&c), u64::MAX);
        assert_eq!(
            call(&b, &c.chan, "GET", &huge, None).await.code(),
            "invalid_parameter",
            "{}",
            b.name
        );
        let after = format!("{}?after={}", messages(&c), u64::MAX);
        assert_eq!(
            call(&b, &c.chan, "GET", &after, None).await.code(),
            "invalid_parameter"
        );
        // A burnt message cannot be deleted either: it no longer exists for anyone.
        post(&b, &c, b"short", 10).await;
        b.set(T0.plus(11));
        let burnt = format!("{}/3", messages(&c));
        assert_eq!(
            call(&b, &c.admin, "DELETE", &burnt, None).await.code(),
            "not_found",
            "{}",
            b.name
        );
    }
}

//! The key directory's HTTP behaviour, through the router, on both stores: the happy paths,
//! request authentication, and the bad-input table (each case its specific 4xx and code,
//! and nothing stored changes).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use cinder_proto::encoding::encode;
use cinder_proto::{Timestamp, UserId};
use cinder_server::Clock;
use cinder_server::clock::ManualTime;
use cinder_server::keys::{KeysState, router};
use cinder_sqlite::SqliteStore;
use cinder_tests::fixtures::User;
use cinder_tests::router::{Answer, send};
use serde_json::{Value, json};

const T0: Timestamp = Timestamp(1_800_000_000);

struct Backend {
    name: &'static str,
    app: Router,
    time: ManualTime,
}

async fn backends() -> Vec<Backend> {
    let (clock, time) = Clock::manual(T0);
    let sqlite = Backend {
        name: "sqlite",
        app: router(KeysState::new(
            Arc::new(SqliteStore::in_memory().unwrap()),
            clock,
        )),
        time,
    };
    let (clock, time) = Clock::manual(T0);
    let dynamo = Backend {
        name: "dynamodb",
        app: router(KeysState::new(
            cinder_tests::moto::fresh_store().await.0,
            clock,
        )),
        time,
    };
    vec![sqlite, dynamo]
}

fn body(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn publish(app: &Router, user: &User) -> Answer {
    send(app, "POST", "/keys", &[], body(&user.bundle)).await
}

/// A signed request by `user` at `at`.
async fn signed(
    app: &Router,
    user: &User,
    method: &str,
    path: &str,
    json: Option<Value>,
    at: Timestamp,
) -> Answer {
    let bytes = json.map(|j| body(&j)).unwrap_or_default();
    let headers = user.sign(method, path, &bytes, at);
    send(app, method, path, &headers, bytes).await
}

fn drop_body(len: usize) -> Value {
    json!({ "sealed": encode(&vec![7u8; len]) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_get_lookup_and_duplicate_publish() {
    for b in backends().await {
        let (alice, bob) = (User::new(1, T0), User::new(2, T0));
        let created = publish(&b.app, &alice).await;
        assert_eq!(created.status, 201, "{}", b.name);
        assert_eq!(created.json, serde_json::to_value(&alice.bundle).unwrap());
        assert_eq!(publish(&b.app, &bob).await.status, 201);

        let got = send(&b.app, "GET", &format!("/keys/{}", alice.id()), &[], vec![]).await;
        assert_eq!(
            (got.status.as_u16(), &got.json),
            (200, &created.json),
            "{}",
            b.name
        );

        let nobody = UserId([0; 16]);
        let lookup = json!({ "user_ids": [bob.id(), nobody, alice.id(), bob.id()] });
        let found = send(&b.app, "POST", "/keys/lookup", &[], body(&lookup)).await;
        assert_eq!(found.status, 200, "{}", b.name);
        let ids: Vec<_> = found.json["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["user_id"].clone())
            .collect();
        assert_eq!(
            ids,
            vec![json!(bob.id()), json!(alice.id())],
            "request order, duplicates dropped"
        );
        assert_eq!(found.json["missing"], json!([nobody]));

        let again = publish(&b.app, &alice).await;
        assert_eq!(
            (again.status.as_u16(), again.code()),
            (409, "already_exists"),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_extends_the_chain_and_only_the_current_key_may_sign_it() {
    for b in backends().await {
        let v1 = User::new(1, T0);
        publish(&b.app, &v1).await;
        let v2 = v1.rotated(2, T0.plus(10));
        let path = format!("/keys/{}", v1.id());

        let forged = User::new(9, T0).rotated(3, T0.plus(10));
        let mut forged_bundle = forged.bundle.clone();
        forged_bundle.user_id = v1.id();
        let refused = send(&b.app, "PUT", &path, &[], body(&forged_bundle)).await;
        assert_eq!(
            (refused.status.as_u16(), refused.code()),
            (403, "invalid_rotation"),
            "{}",
            b.name
        );

        let ok = send(&b.app, "PUT", &path, &[], body(&v2.bundle)).await;
        assert_eq!(ok.status, 200, "{}: {:?}", b.name, ok.json);

        // The same rotation again, or another writer's rotation from version 1, is stale now.
        let rival = v1.rotated(4, T0.plus(11));
        let stale = send(&b.app, "PUT", &path, &[], body(&rival.bundle)).await;
        assert_eq!(
            (stale.status.as_u16(), stale.code()),
            (409, "version_conflict"),
            "{}",
            b.name
        );

        let chain = send(&b.app, "GET", &format!("{path}/chain?after=0"), &[], vec![]).await;
        assert_eq!(
            chain.json["bundles"],
            json!([v1.bundle, v2.bundle]),
            "{}",
            b.name
        );
        assert_eq!(chain.json["more"], json!(false));
        let page = send(
            &b.app,
            "GET",
            &format!("{path}/chain?after=0&limit=1"),
            &[],
            vec![],
        )
        .await;
        assert_eq!(page.json["bundles"], json!([v1.bundle]));
        assert_eq!(page.json["more"], json!(true));

        // Requests are now verified against the new key only.
        let old_key = signed(&b.app, &v1, "GET", &format!("/inbox/{}", v1.id()), None, T0).await;
        assert_eq!(old_key.code(), "unauthenticated", "{}", b.name);
        let new_key = signed(&b.app, &v2, "GET", &format!("/inbox/{}", v1.id()), None, T0).await;
        assert_eq!(new_key.status, 200, "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_takes_drops_from_anyone_and_shows_them_only_to_the_owner() {
    for b in backends().await {
        let (alice, bob) = (User::new(1, T0), User::new(2, T0));
        publish(&b.app, &alice).await;
        publish(&b.app, &bob).await;
        let inbox = format!("/inbox/{}", alice.id());

        let dropped = signed(&b.app, &bob, "POST", &inbox, Some(drop_body(100)), T0).await;
        assert_eq!(dropped.status, 201, "{}: {:?}", b.name, dropped.json);
        assert_eq!(dropped.json["sender"], json!(bob.id()));
        assert_eq!(dropped.json["expires_at"], json!(T0.0 + 7 * 24 * 3600));
        let id = dropped.json["id"].as_str().unwrap().to_owned();

        let snooped = signed(&b.app, &bob, "GET", &inbox, None, T0).await;
        assert_eq!(
            (snooped.status.as_u16(), snooped.code()),
            (403, "forbidden"),
            "{}",
            b.name
        );

        let listed = signed(&b.app, &alice, "GET", &inbox, None, T0).await;
        assert_eq!(listed.status, 200, "{}", b.name);
        assert_eq!(listed.json["envelopes"], json!([dropped.json]));

        let by_bob = signed(&b.app, &bob, "DELETE", &format!("{inbox}/{id}"), None, T0).await;
        assert_eq!(by_bob.status, 403, "{}", b.name);
        let deleted = signed(&b.app, &alice, "DELETE", &format!("{inbox}/{id}"), None, T0).await;
        assert_eq!(deleted.status, 204, "{}", b.name);
        let twice = signed(&b.app, &alice, "DELETE", &format!("{inbox}/{id}"), None, T0).await;
        assert_eq!(
            (twice.status.as_u16(), twice.code()),
            (404, "not_found"),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_envelopes_are_never_served() {
    for b in backends().await {
        let (alice, bob) = (User::new(1, T0), User::new(2, T0));
        publish(&b.app, &alice).await;
        publish(&b.app, &bob).await;
        let inbox = format!("/inbox/{}", alice.id());
        let short = json!({ "sealed": encode(b"short-lived"), "ttl": 60 });
        assert_eq!(
            signed(&b.app, &bob, "POST", &inbox, Some(short), T0)
                .await
                .status,
            201
        );

        b.time.set(T0.plus(59));
        let before = signed(&b.app, &alice, "GET", &inbox, None, T0.plus(59)).await;
        assert_eq!(
            before.json["envelopes"].as_array().unwrap().len(),
            1,
            "{}",
            b.name
        );

        b.time.set(T0.plus(60));
        let after = signed(&b.app, &alice, "GET", &inbox, None, T0.plus(60)).await;
        assert_eq!(after.json["envelopes"], json!([]), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_signatures_are_checked_for_time_replay_and_key() {
    for b in backends().await {
        let (alice, bob, stranger) = (User::new(1, T0), User::new(2, T0), User::new(3, T0));
        publish(&b.app, &alice).await;
        publish(&b.app, &bob).await;
        let inbox = format!("/inbox/{}", alice.id());
        let bytes = body(&drop_body(10));

        // Within the window either way: accepted.
        for at in [T0.plus(120), Timestamp(T0.0 - 120)] {
            let ok = signed(&b.app, &bob, "POST", &inbox, Some(drop_body(10)), at).await;
            assert_eq!(ok.status, 201, "{} at {at}", b.name);
        }
        // Outside it: refused, with the server's time for the client to correct.
        let stale = signed(
            &b.app,
            &bob,
            "POST",
            &inbox,
            Some(drop_body(10)),
            T0.plus(121),
        )
        .await;
        assert_eq!(
            (stale.status.as_u16(), stale.code()),
            (401, "stale_request"),
            "{}",
            b.name
        );
        assert_eq!(
            stale.headers["x-cinder-server-time"],
            T0.0.to_string().as_str()
        );

        // The very same request twice: the second is a replay.
        let headers = bob.sign("POST", &inbox, &bytes, T0);
        assert_eq!(
            send(&b.app, "POST", &inbox, &headers, bytes.clone())
                .await
                .status,
            201
        );
        let replay = send(&b.app, "POST", &inbox, &headers, bytes.clone()).await;
        assert_eq!(
            (replay.status.as_u16(), replay.code()),
            (401, "replayed_request"),
            "{}",
            b.name
        );
        // A read spends no nonce: the same signed GET is answered again, with what its
        // signer may see, and nothing else (docs/SECURITY.md, "Reads are not replay-checked").
        let headers = alice.sign("GET", &inbox, &[], T0);
        let first = send(&b.app, "GET", &inbox, &headers, Vec::new()).await;
        let again = send(&b.app, "GET", &inbox, &headers, Vec::new()).await;
        assert_eq!(
            (first.status.as_u16(), again.status.as_u16()),
            (200, 200),
            "{}",
            b.name
        );
        assert_eq!(first.json, again.json, "{}", b.name);
        // Nor can its signature be moved to a write: the method is signed.
        let moved = send(&b.app, "POST", &inbox, &headers, Vec::new()).await;
        assert_eq!(moved.code(), "unauthenticated", "{}", b.name);

        // Signed for another body, path or by an unpublished user: one indistinct answer.
        let other_body = bob.sign("POST", &inbox, b"{}", T0);
        let other_path = bob.sign("POST", &format!("/inbox/{}", bob.id()), &bytes, T0);
        let unknown = stranger.sign("POST", &inbox, &bytes, T0);
        for (what, headers) in [
            ("body", other_body),
            ("path", other_path),
            ("signer", unknown),
        ] {
            let refused = send(&b.app, "POST", &inbox, &headers, bytes.clone()).await;
            assert_eq!(
                (refused.status.as_u16(), refused.code()),
                (401, "unauthenticated"),
                "{}: {what}",
                b.name
            );
            assert_eq!(
                refused.json["message"],
                "not authenticated: the signature or session is missing, invalid or expired"
            );
        }
        let unsigned = send(&b.app, "POST", &inbox, &[], bytes.clone()).await;
        assert_eq!(unsigned.code(), "unauthenticated");
        assert_eq!(unsigned.headers["www-authenticate"], "Cinder-Ed25519");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_remembered_for_as_long_as_its_request_could_pass() {
    for b in backends().await {
        let (alice, bob) = (User::new(1, T0), User::new(2, T0));
        publish(&b.app, &alice).await;
        publish(&b.app, &bob).await;
        let inbox = format!("/inbox/{}", alice.id());
        let bytes = body(&drop_body(10));
        // Each case: when the request is dated, when the server first sees it, and the
        // server times of the replays, all within the window of the request's date.
        for (dated, first, replays) in [
            // Dated now, replayed at the end of the window.
            (T0, T0, vec![T0.plus(119), T0.plus(120)]),
            // Dated by a clock 120 s fast: the window ends 240 s after its first use.
            (
                T0.plus(120),
                T0,
                vec![T0.plus(119), T0.plus(239), T0.plus(240)],
            ),
        ] {
            b.time.set(first);
            let headers = bob.sign("POST", &inbox, &bytes, dated);
            let ok = send(&b.app, "POST", &inbox, &headers, bytes.clone()).await;
            assert_eq!(ok.status, 201, "{}: {:?}", b.name, ok.json);
            for at in replays {
                b.time.set(at);
                let replay = send(&b.app, "POST", &inbox, &headers, bytes.clone()).await;
                assert_eq!(
                    (replay.status.as_u16(), replay.code()),
                    (401, "replayed_request"),
                    "{}: dated {dated}, first seen at {first}, replayed at {at}",
                    b.name
                );
            }
            // One second later the window has closed: stale, whatever the nonce store holds.
            b.time.set(dated.plus(121));
            let late = send(&b.app, "POST", &inbox, &headers, bytes.clone()).await;
            assert_eq!(late.code(), "stale_request", "{}", b.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_inbox_refuses_more_drops_until_emptied() {
    let b = backends().await.remove(0);
    let (alice, bob) = (User::new(1, T0), User::new(2, T0));
    publish(&b.app, &alice).await;
    publish(&b.app, &bob).await;
    let inbox = format!("/inbox/{}", alice.id());
    for _ in 0..cinder_proto::api::limits::MAX_INBOX {
        assert_eq!(
            signed(&b.app, &bob, "POST", &inbox, Some(drop_body(1)), T0)
                .await
                .status,
            201
        );
    }
    let full = signed(&b.app, &bob, "POST", &inbox, Some(drop_body(1)), T0).await;
    assert_eq!((full.status.as_u16(), full.code()), (422, "limit_exceeded"));
    assert_eq!(full.json["field"], "recipient");
}

/// Everything the bad-input table must leave untouched.
async fn snapshot(app: &Router, alice: &User) -> Vec<Value> {
    let keys = send(app, "GET", &format!("/keys/{}", alice.id()), &[], vec![]).await;
    let chain = send(
        app,
        "GET",
        &format!("/keys/{}/chain", alice.id()),
        &[],
        vec![],
    )
    .await;
    let inbox = signed(
        app,
        alice,
        "GET",
        &format!("/inbox/{}", alice.id()),
        None,
        T0,
    )
    .await;
    vec![keys.json, chain.json, inbox.json["envelopes"].clone()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_specific_4xx_and_changes_nothing() {
    for b in backends().await {
        let (alice, bob) = (User::new(1, T0), User::new(2, T0));
        publish(&b.app, &alice).await;
        publish(&b.app, &bob).await;
        let inbox = format!("/inbox/{}", alice.id());
        assert_eq!(
            signed(&b.app, &bob, "POST", &inbox, Some(drop_body(5)), T0)
                .await
                .status,
            201
        );

        let bundle = serde_json::to_value(&alice.bundle).unwrap();
        let with = |field: &str, value: Value| {
            let mut v = bundle.clone();
            v[field] = value;
            body(&v)
        };
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        let fresh = User::new(5, T0);
        let mut not_derived = serde_json::to_value(&fresh.bundle).unwrap();
        not_derived["user_id"] = json!(UserId([5; 16]));
        let rotated = alice.rotated(6, T0);
        let mut unsigned_rotation = serde_json::to_value(&rotated.bundle).unwrap();
        unsigned_rotation
            .as_object_mut()
            .unwrap()
            .remove("prev_sig");
        let mut wrong_prev = rotated.bundle.clone();
        wrong_prev.prev_sig = Some(rotated.bundle.self_sig);
        let too_many =
            json!({ "user_ids": (0..101u8).map(|i| UserId([i; 16])).collect::<Vec<_>>() });
        let big = vec![b' '; 70 * 1024];
        let keys_path = format!("/keys/{}", alice.id());
        let drop_ok = body(&drop_body(5));
        let stale = bob.sign("POST", &inbox, &drop_ok, T0.plus(500));
        let mut bad_sig = bob.sign("POST", &inbox, &drop_ok, T0);
        bad_sig[3].1 = encode(&[0u8; 64]);
        let replayed = bob.sign("POST", &inbox, &drop_ok, T0);
        assert_eq!(
            send(&b.app, "POST", &inbox, &replayed, drop_ok.clone())
                .await
                .status,
            201
        );
        let before = snapshot(&b.app, &alice).await;

        type Case<'a> = (
            &'a str,
            &'a str,
            String,
            Vec<(&'static str, String)>,
            Vec<u8>,
            u16,
            &'a str,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "malformed json",
                "POST",
                "/keys".into(),
                vec![],
                b"{\"user_id\": ".to_vec(),
                400,
                "malformed_json",
                None,
            ),
            (
                "trailing garbage",
                "POST",
                "/keys/lookup".into(),
                vec![],
                b"{\"user_ids\": []} garbage".to_vec(),
                400,
                "malformed_json",
                None,
            ),
            (
                "not json at all",
                "POST",
                "/keys".into(),
                vec![],
                b"hello".to_vec(),
                400,
                "malformed_json",
                None,
            ),
            (
                "wrong type",
                "POST",
                "/keys".into(),
                vec![],
                with("version", json!("one")),
                422,
                "invalid_body",
                Some("version"),
            ),
            (
                "missing field",
                "POST",
                "/keys".into(),
                vec![],
                with("sign_key", Value::Null),
                422,
                "invalid_body",
                Some("sign_key"),
            ),
            (
                "unknown field",
                "POST",
                "/keys".into(),
                vec![],
                with("admin", json!(true)),
                422,
                "invalid_body",
                Some("admin"),
            ),
            (
                "bad base64",
                "POST",
                "/keys".into(),
                vec![],
                with("hpke_key", json!("!!not base64!!")),
                422,
                "invalid_body",
                Some("hpke_key"),
            ),
            (
                "short key",
                "POST",
                "/keys".into(),
                vec![],
                with("hpke_key", json!(encode(&[1; 31]))),
                422,
                "invalid_body",
                Some("hpke_key"),
            ),
            (
                "long signature",
                "POST",
                "/keys".into(),
                vec![],
                with("self_sig", json!(encode(&[1; 65]))),
                422,
                "invalid_body",
                Some("self_sig"),
            ),
            (
                "key off the curve",
                "POST",
                "/keys".into(),
                vec![],
                with("sign_key", json!(encode(&off_curve))),
                422,
                "invalid_body",
                Some("sign_key"),
            ),
            (
                "oversized body",
                "POST",
                "/keys".into(),
                vec![],
                big.clone(),
                413,
                "body_too_large",
                None,
            ),
            (
                "oversized declared",
                "POST",
                "/keys".into(),
                vec![("content-length", big.len().to_string())],
                big,
                413,
                "body_too_large",
                None,
            ),
            (
                "duplicate publish",
                "POST",
                "/keys".into(),
                vec![],
                body(&alice.bundle),
                409,
                "already_exists",
                None,
            ),
            (
                "id not derived from key",
                "POST",
                "/keys".into(),
                vec![],
                body(&not_derived),
                422,
                "invalid_bundle",
                None,
            ),
            (
                "publish a rotation",
                "POST",
                "/keys".into(),
                vec![],
                body(&rotated.bundle),
                422,
                "invalid_bundle",
                None,
            ),
            (
                "rotation without prev_sig",
                "PUT",
                keys_path.clone(),
                vec![],
                body(&unsigned_rotation),
                403,
                "invalid_rotation",
                None,
            ),
            (
                "rotation with a bad prev_sig",
                "PUT",
                keys_path.clone(),
                vec![],
                body(&wrong_prev),
                403,
                "invalid_rotation",
                None,
            ),
            (
                "rotation for another path",
                "PUT",
                format!("/keys/{}", bob.id()),
                vec![],
                body(&rotated.bundle),
                422,
                "invalid_bundle",
                None,
            ),
            (
                "unknown user",
                "GET",
                format!("/keys/{}", UserId([0; 16])),
                vec![],
                vec![],
                404,
                "unknown_user",
                None,
            ),
            (
                "malformed user id",
                "GET",
                "/keys/ALICE".into(),
                vec![],
                vec![],
                400,
                "invalid_parameter",
                None,
            ),
            (
                "bad chain cursor",
                "GET",
                format!("{keys_path}/chain?after=x"),
                vec![],
                vec![],
                400,
                "invalid_parameter",
                None,
            ),
            (
                "chain cursor past 2^63 - 1",
                "GET",
                format!("{keys_path}/chain?after=9223372036854775808"),
                vec![],
                vec![],
                400,
                "invalid_parameter",
                None,
            ),
            (
                "zero page",
                "GET",
                format!("{keys_path}/chain?limit=0"),
                vec![],
                vec![],
                422,
                "limit_exceeded",
                Some("limit"),
            ),
            (
                "lookup too many",
                "POST",
                "/keys/lookup".into(),
                vec![],
                body(&too_many),
                422,
                "limit_exceeded",
                Some("user_ids"),
            ),
            (
                "bad signature",
                "POST",
                inbox.clone(),
                bad_sig.to_vec(),
                drop_ok.clone(),
                401,
                "unauthenticated",
                None,
            ),
            (
                "stale timestamp",
                "POST",
                inbox.clone(),
                stale.to_vec(),
                drop_ok.clone(),
                401,
                "stale_request",
                None,
            ),
            (
                "replayed nonce",
                "POST",
                inbox.clone(),
                replayed.to_vec(),
                drop_ok.clone(),
                401,
                "replayed_request",
                None,
            ),
            (
                "no route",
                "GET",
                "/nowhere".into(),
                vec![],
                vec![],
                404,
                "no_route",
                None,
            ),
            (
                "wrong method",
                "PATCH",
                "/keys".into(),
                vec![],
                vec![],
                405,
                "method_not_allowed",
                None,
            ),
        ];
        for (name, method, path, headers, bytes, status, code, field) in cases {
            let answer = send(&b.app, method, &path, &headers, bytes).await;
            assert_eq!(
                (answer.status.as_u16(), answer.code()),
                (status, code),
                "{}: {name}: {:?}",
                b.name,
                answer.json
            );
            assert!(
                answer.json["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{name}: message"
            );
            if let Some(field) = field {
                assert_eq!(answer.json["field"], field, "{}: {name}", b.name);
            }
        }
        // Signed cases that need a body built per signer.
        type SignedCase<'a> = (
            &'a str,
            &'a User,
            &'a str,
            String,
            Option<Value>,
            u16,
            &'a str,
            Option<&'a str>,
        );
        let signed_cases: Vec<SignedCase> = vec![
            (
                "sealed too big",
                &bob,
                "POST",
                inbox.clone(),
                Some(drop_body(16 * 1024 + 1)),
                422,
                "limit_exceeded",
                Some("sealed"),
            ),
            (
                "sealed empty",
                &bob,
                "POST",
                inbox.clone(),
                Some(drop_body(0)),
                422,
                "limit_exceeded",
                Some("sealed"),
            ),
            (
                "ttl too long",
                &bob,
                "POST",
                inbox.clone(),
                Some(json!({"sealed": "AAAA", "ttl": 15 * 24 * 3600})),
                422,
                "limit_exceeded",
                Some("ttl"),
            ),
            (
                "drop to unknown user",
                &bob,
                "POST",
                format!("/inbox/{}", UserId([0; 16])),
                Some(drop_body(5)),
                404,
                "unknown_user",
                None,
            ),
            (
                "drop with wrong type",
                &bob,
                "POST",
                inbox.clone(),
                Some(json!({"sealed": 5})),
                422,
                "invalid_body",
                Some("sealed"),
            ),
            (
                "list another's inbox",
                &bob,
                "GET",
                inbox.clone(),
                None,
                403,
                "forbidden",
                None,
            ),
            (
                "delete unknown envelope",
                &alice,
                "DELETE",
                format!("{inbox}/{}", "0".repeat(32)),
                None,
                404,
                "not_found",
                None,
            ),
            (
                "bad envelope id",
                &alice,
                "DELETE",
                format!("{inbox}/xyz"),
                None,
                400,
                "invalid_parameter",
                None,
            ),
            (
                "page too large",
                &alice,
                "GET",
                format!("{inbox}?limit=101"),
                None,
                422,
                "limit_exceeded",
                Some("limit"),
            ),
        ];
        for (name, user, method, path, json, status, code, field) in signed_cases {
            let answer = signed(&b.app, user, method, &path, json, T0).await;
            assert_eq!(
                (answer.status.as_u16(), answer.code()),
                (status, code),
                "{}: {name}: {:?}",
                b.name,
                answer.json
            );
            if let Some(field) = field {
                assert_eq!(answer.json["field"], field, "{}: {name}", b.name);
            }
        }
        assert_eq!(
            snapshot(&b.app, &alice).await,
            before,
            "{}: stored data changed",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failures_are_a_generic_500() {
    // A DynamoDB store whose tables do not exist: every call fails inside the backend.
    let client = cinder_tests::moto::client();
    let store = cinder_aws::DynamoStore::new(client, cinder_aws::Tables::prefixed("missing-"));
    let app = router(KeysState::new(Arc::new(store), Clock::manual(T0).0));
    let answer = send(
        &app,
        "GET",
        &format!("/keys/{}", UserId([1; 16])),
        &[],
        vec![],
    )
    .await;
    assert_eq!((answer.status.as_u16(), answer.code()), (500, "internal"));
    assert_eq!(
        answer.json["message"],
        "the server failed to handle this request"
    );
    assert!(
        !answer.json.to_string().contains("missing-"),
        "no backend detail leaks"
    );
}

/// Every bound is inclusive: exactly the limit is served (and `more`/`next` say "full" only
/// when the page is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_limit_admits_exactly_its_bound_and_pages_say_full_only_when_full() {
    use cinder_proto::api::limits;
    for b in backends().await {
        let (alice, bob) = (User::new(1, T0), User::new(2, T0));
        publish(&b.app, &alice).await;
        publish(&b.app, &bob).await;

        // A lookup of exactly MAX_LOOKUP users.
        let ids: Vec<UserId> = (0..limits::MAX_LOOKUP)
            .map(|i| UserId([i as u8; 16]))
            .collect();
        let found = send(
            &b.app,
            "POST",
            "/keys/lookup",
            &[],
            body(&json!({ "user_ids": ids })),
        )
        .await;
        assert_eq!(found.status, 200, "{}: {:?}", b.name, found.json);

        // A chain page of exactly its limit is not "more"; the last cursor a store can
        // hold gives an empty page of a known user, not an unknown user.
        let chain = format!("/keys/{}/chain", alice.id());
        let one = send(
            &b.app,
            "GET",
            &format!("{chain}?after=0&limit=1"),
            &[],
            vec![],
        )
        .await;
        assert_eq!(one.status, 200, "{}", b.name);
        assert_eq!(one.json["bundles"].as_array().unwrap().len(), 1);
        assert_eq!(one.json["more"], json!(false), "{}", b.name);
        let last = format!("{chain}?after={}", i64::MAX);
        let past = send(&b.app, "GET", &last, &[], vec![]).await;
        assert_eq!(
            (past.status.as_u16(), &past.json),
            (200, &json!({ "bundles": [], "more": false })),
            "{}",
            b.name
        );

        // An envelope of exactly MAX_ENVELOPE_BYTES, kept exactly MAX_ENVELOPE_TTL.
        let inbox = format!("/inbox/{}", alice.id());
        let mut full = drop_body(limits::MAX_ENVELOPE_BYTES);
        full["ttl"] = json!(limits::MAX_ENVELOPE_TTL);
        let dropped = signed(&b.app, &bob, "POST", &inbox, Some(full), T0).await;
        assert_eq!(dropped.status, 201, "{}: {:?}", b.name, dropped.json);
        assert_eq!(
            dropped.json["expires_at"],
            json!(T0.0 + limits::MAX_ENVELOPE_TTL)
        );

        // An inbox page names a next cursor only when it is full.
        let page = |limit| format!("{inbox}?limit={limit}");
        let filled = signed(&b.app, &alice, "GET", &page(1), None, T0).await;
        assert_eq!(filled.json["next"], dropped.json["id"], "{}", b.name);
        let roomy = signed(&b.app, &alice, "GET", &page(2), None, T0).await;
        assert_eq!(roomy.json["next"], Value::Null, "{}", b.name);
    }
}

//! The `cinder-keys` binary, exactly as it ships to Lambda, run against a Runtime API
//! emulator on API Gateway HTTP API (payload v2) events from `tests/events/`, with its
//! tables on moto. This proves the whole chain a deployed request takes: event decoding,
//! routing, DynamoDB, and the response the API Gateway expects.
//!
//! Events that need a request signature carry placeholder `x-cinder-*` headers; the test
//! signs them at run time, since a signature is only good for two minutes.
//! `cargo test -p cinder-keys --test lambda -- --ignored regenerate` rewrites the files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use base64::Engine as _;
use cinder_proto::Timestamp;
use cinder_tests::fixtures::User;
use cinder_tests::lambda::RuntimeApi;
use serde_json::{Value, json};

/// When the fixture users made their keys.
const MADE_AT: Timestamp = Timestamp(1_795_629_600);

fn alice() -> User {
    User::new(1, MADE_AT)
}

fn bob() -> User {
    User::new(2, MADE_AT)
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/events")
}

fn load(name: &str) -> Value {
    let path = dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Fills the signature headers of a fixture for `user`, now.
fn sign(mut event: Value, user: &User) -> Value {
    let method = event["requestContext"]["http"]["method"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut path = event["rawPath"].as_str().unwrap().to_owned();
    if let Some(q) = event["rawQueryString"].as_str().filter(|q| !q.is_empty()) {
        path = format!("{path}?{q}");
    }
    let body = event["body"].as_str().unwrap_or("").as_bytes().to_vec();
    for (name, value) in user.sign(&method, &path, &body, Timestamp::now()) {
        event["headers"][name] = json!(value);
    }
    event
}

/// The function's environment on `tables` (on moto), with `CINDER_LIMITS` if given.
fn env(tables: &cinder_aws::Tables, limits: Option<&str>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KEYS_TABLE", tables.keys.clone()),
        ("INBOX_TABLE", tables.inbox.clone()),
        ("NONCES_TABLE", tables.nonces.clone()),
        ("RATE_LIMITS_TABLE", tables.rate_limits.clone()),
        (
            "AWS_ENDPOINT_URL",
            cinder_tests::moto::endpoint().to_owned(),
        ),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ];
    if let Some(limits) = limits {
        env.push(("CINDER_LIMITS", limits.to_owned()));
    }
    env
}

/// Status and decoded JSON body of a Lambda proxy response.
fn answer(response: &Value) -> (u64, Value) {
    let status = response["statusCode"].as_u64().expect("statusCode");
    let body = response["body"].as_str().unwrap_or("");
    let body = if response["isBase64Encoded"] == json!(true) {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
        )
        .unwrap()
    } else {
        body.to_owned()
    };
    (
        status,
        if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&body).unwrap()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_binary_serves_api_gateway_events_on_dynamodb() {
    // GIVEN the shipped binary, polling an emulated Runtime API, with its tables on moto
    let (_, tables) = cinder_tests::moto::fresh_store().await;
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(
        env!("CARGO_BIN_EXE_cinder-keys").as_ref(),
        &env(&tables, None),
    );
    let (alice, bob) = (alice(), bob());

    // WHEN the events of a short session arrive, THEN each gets the documented answer
    type Check<'a> = Box<dyn Fn(&Value) + 'a>;
    let steps: Vec<(&str, Option<&User>, u64, Check)> = vec![
        (
            "publish-alice.json",
            None,
            201,
            Box::new(|b| assert_eq!(b["user_id"], json!(alice.id()))),
        ),
        (
            "publish-bob-base64.json",
            None,
            201,
            Box::new(|b| assert_eq!(b["user_id"], json!(bob.id()))),
        ),
        (
            "publish-alice.json",
            None,
            409,
            Box::new(|b| assert_eq!(b["code"], "already_exists")),
        ),
        (
            "get-alice.json",
            None,
            200,
            Box::new(|b| assert_eq!(b, &serde_json::to_value(&alice.bundle).unwrap())),
        ),
        (
            "get-unknown.json",
            None,
            404,
            Box::new(|b| assert_eq!(b["code"], "unknown_user")),
        ),
        (
            "lookup.json",
            None,
            200,
            Box::new(|b| assert_eq!(b["bundles"].as_array().unwrap().len(), 2)),
        ),
        (
            "chain-alice.json",
            None,
            200,
            Box::new(|b| assert_eq!(b["bundles"][0]["version"], 1)),
        ),
        (
            "drop-to-alice.json",
            Some(&bob),
            201,
            Box::new(|b| assert_eq!(b["sender"], json!(bob.id()))),
        ),
        (
            "list-alice-inbox.json",
            Some(&alice),
            200,
            Box::new(|b| assert_eq!(b["envelopes"].as_array().unwrap().len(), 1)),
        ),
        (
            "list-alice-inbox.json",
            Some(&bob),
            403,
            Box::new(|b| assert_eq!(b["code"], "forbidden")),
        ),
        (
            "drop-to-alice.json",
            None,
            401,
            Box::new(|b| assert_eq!(b["code"], "unauthenticated")),
        ),
        (
            "malformed.json",
            None,
            400,
            Box::new(|b| assert_eq!(b["code"], "malformed_json")),
        ),
    ];
    for (file, signer, status, check) in steps {
        let event = load(file);
        let event = match signer {
            Some(user) => sign(event, user),
            None => event,
        };
        let response = api
            .invoke(event)
            .await
            .unwrap_or_else(|e| panic!("{file}: invocation error {e}"));
        let (got, body) = answer(&response);
        assert_eq!(got, status, "{file}: {body}");
        assert_eq!(
            response["headers"]["content-type"], "application/json",
            "{file}"
        );
        check(&body);
    }
}

/// One API Gateway HTTP API payload v2 event, as the fixtures hold them.
fn event(
    route_key: &str,
    method: &str,
    raw_path: &str,
    query: &str,
    body: Option<String>,
    base64: bool,
) -> Value {
    let mut event = cinder_tests::lambda::apigw_event(method, route_key, raw_path, query);
    event["headers"]["accept"] = json!("application/json");
    event["headers"]["user-agent"] = json!("cinder/0.1.0");
    event["isBase64Encoded"] = json!(base64);
    if let Some(body) = body {
        event["headers"]["content-type"] = json!("application/json");
        event["headers"]["content-length"] = json!(body.len().to_string());
        event["body"] = json!(if base64 {
            base64::engine::general_purpose::STANDARD.encode(&body)
        } else {
            body
        });
    }
    event
}

#[test]
#[ignore = "rewrites the fixture files; run by hand after changing the API"]
fn regenerate() {
    let (alice, bob) = (alice(), bob());
    let a = alice.id();
    let placeholder = |mut e: Value| {
        for name in [
            "x-cinder-signer",
            "x-cinder-timestamp",
            "x-cinder-nonce",
            "x-cinder-signature",
        ] {
            e["headers"][name] = json!("(signed by the test)");
        }
        e
    };
    let files = [
        (
            "publish-alice.json",
            event(
                "ANY /keys",
                "POST",
                "/keys",
                "",
                Some(serde_json::to_string(&alice.bundle).unwrap()),
                false,
            ),
        ),
        (
            "publish-bob-base64.json",
            event(
                "ANY /keys",
                "POST",
                "/keys",
                "",
                Some(serde_json::to_string(&bob.bundle).unwrap()),
                true,
            ),
        ),
        (
            "get-alice.json",
            event(
                "ANY /keys/{proxy+}",
                "GET",
                &format!("/keys/{a}"),
                "",
                None,
                false,
            ),
        ),
        (
            "get-unknown.json",
            event(
                "ANY /keys/{proxy+}",
                "GET",
                &format!("/keys/{}", "0".repeat(32)),
                "",
                None,
                false,
            ),
        ),
        (
            "lookup.json",
            event(
                "ANY /keys/{proxy+}",
                "POST",
                "/keys/lookup",
                "",
                Some(json!({"user_ids": [a, bob.id()]}).to_string()),
                false,
            ),
        ),
        (
            "chain-alice.json",
            event(
                "ANY /keys/{proxy+}",
                "GET",
                &format!("/keys/{a}/chain"),
                "after=0&limit=10",
                None,
                false,
            ),
        ),
        (
            "drop-to-alice.json",
            placeholder(event(
                "ANY /inbox/{proxy+}",
                "POST",
                &format!("/inbox/{a}"),
                "",
                Some(json!({"sealed": "c2VhbGVkIGludml0YXRpb24", "ttl": 3600}).to_string()),
                false,
            )),
        ),
        (
            "list-alice-inbox.json",
            placeholder(event(
                "ANY /inbox/{proxy+}",
                "GET",
                &format!("/inbox/{a}"),
                "limit=10",
                None,
                false,
            )),
        ),
        (
            "malformed.json",
            event(
                "ANY /keys",
                "POST",
                "/keys",
                "",
                Some("{\"user_id\": ".into()),
                false,
            ),
        ),
    ];
    std::fs::create_dir_all(dir()).unwrap();
    for (name, value) in files {
        std::fs::write(
            dir().join(name),
            serde_json::to_string_pretty(&value).unwrap() + "\n",
        )
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_limited_per_source_address_from_the_request_context() {
    // GIVEN the shipped binary configured for one first bundle per address an hour
    let (_, tables) = cinder_tests::moto::fresh_store().await;
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(
        env!("CARGO_BIN_EXE_cinder-keys").as_ref(),
        &env(&tables, Some("key_publish_per_address=1/1h")),
    );
    // WHEN two users publish from the fixtures' address (requestContext.http.sourceIp)
    let first = api.invoke(load("publish-alice.json")).await.unwrap();
    assert_eq!(answer(&first).0, 201);
    let second = api.invoke(load("publish-bob-base64.json")).await.unwrap();
    // THEN the second waits, with the time to wait
    let (status, body) = answer(&second);
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    assert_eq!(second["headers"]["retry-after"], "3600");
    // AND the same request from another address goes through: the bucket is the address's,
    // as API Gateway saw it, not one every caller shares
    let mut elsewhere = load("publish-bob-base64.json");
    elsewhere["requestContext"]["http"]["sourceIp"] = json!("198.51.100.4");
    let third = api.invoke(elsewhere).await.unwrap();
    assert_eq!(answer(&third).0, 201, "{third}");
}

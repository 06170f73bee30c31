//! The shipped `cinder-spine` binary (two instances taking turns) behind the API Gateway
//! stand-in, on DynamoDB (moto), running the three-user rooms scenario through the
//! reference client; the other functions run in-process on the same tables; a member
//! leaving and two admins changing the room at once, through the same binary. Then the same
//! binary on API Gateway events that write and read the spine log.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_proto::encoding::encode;
use cinder_proto::{ChannelId, RoomId, Signer, Timestamp};
use cinder_tests::fixtures::Capability;
use cinder_tests::lambda::{
    RuntimeApi, Under, apigw_event, proxy_answer, rooms_deployment, rooms_env,
};
use cinder_tests::leaving::{concurrent_admins, leaving};
use cinder_tests::scenarios::{PassTime, three_users};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_user_scenario_through_the_spine_lambda() {
    let (gateway, _functions) =
        rooms_deployment(env!("CARGO_BIN_EXE_cinder-spine").as_ref(), Under::Spine).await;
    // The binary reads the real clock, so time passes for real.
    let pass: PassTime =
        Box::new(|secs| Box::pin(tokio::time::sleep(std::time::Duration::from_secs(secs))));
    three_users(
        &cinder_client::Client::new(&gateway.url),
        "spine lambda",
        &pass,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_concurrent_admins_through_the_spine_lambda() {
    // Every room change goes through the shipped binary (two instances taking turns), so
    // its version checks are what keep two admins from overwriting each other.
    let (gateway, _functions) =
        rooms_deployment(env!("CARGO_BIN_EXE_cinder-spine").as_ref(), Under::Spine).await;
    let client = cinder_client::Client::new(&gateway.url);
    leaving(&client, "spine lambda").await;
    concurrent_admins(&client, "spine lambda", 3).await;
}

/// Sends one request, signed by `who` now (the binary reads the real clock), to the
/// function as an API Gateway event, and returns the answer's status and JSON.
async fn send(
    api: &RuntimeApi,
    who: &Capability,
    method: &str,
    target: &str,
    body: Option<Value>,
) -> (u64, Value) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let route = if path == "/rooms" {
        "ANY /rooms"
    } else {
        "ANY /rooms/{proxy+}"
    };
    let mut event = apigw_event(method, route, path, query);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    for (name, value) in who.sign(method, target, body.as_bytes(), Timestamp::now()) {
        event["headers"][name] = json!(value);
    }
    if !body.is_empty() {
        event["headers"]["content-type"] = json!("application/json");
        event["body"] = json!(body);
    }
    let response = api
        .invoke(event)
        .await
        .unwrap_or_else(|e| panic!("{method} {target}: invocation error {e}"));
    proxy_answer(&response)
}

/// The shipped binary keeps every spine version in its DynamoDB table and serves the log:
/// room writes are transactions the log table takes part in, and the log reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spine_lambda_serves_the_spine_log_on_dynamodb() {
    let (_, tables) = cinder_tests::moto::fresh_rooms_store().await;
    let api = RuntimeApi::start().await;
    let _function = api.spawn_function(
        env!("CARGO_BIN_EXE_cinder-spine").as_ref(),
        &rooms_env(&tables),
    );
    let room = RoomId([42; 16]);
    let channel = ChannelId([43; 16]);
    let admin = Capability::new(1, Signer::Admin(room));
    let member = Capability::new(2, Signer::Member(room));
    let chan = Capability::new(3, Signer::Channel(room, channel));
    let keys = json!({
        "admin_key": admin.verify_key(), "member_key": member.verify_key(),
        "channels": { channel.to_string(): chan.verify_key() },
    });
    let body = |fields: Value| {
        let mut body = keys.clone();
        body.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        Some(body)
    };
    let path = format!("/rooms/{room}");
    let log = format!("{path}/spines");

    let created = body(json!({"room_id": room, "spine": encode(b"v1")}));
    assert_eq!(send(&api, &admin, "POST", "/rooms", created).await.0, 201);
    let update = body(json!({"expected_version": 1, "spine": encode(b"v2")}));
    assert_eq!(send(&api, &admin, "PUT", &path, update).await.0, 200);
    let stale = body(json!({"expected_version": 1, "spine": encode(b"lost")}));
    let (status, answer) = send(&api, &admin, "PUT", &path, stale).await;
    assert_eq!((status, &answer["code"]), (409, &json!("version_conflict")));

    let (status, answer) = send(&api, &member, "GET", &format!("{log}?after=0"), None).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer,
        json!({"entries": [
            {"version": 1, "spine": encode(b"v1")},
            {"version": 2, "spine": encode(b"v2")},
        ]})
    );
    let (status, answer) = send(&api, &admin, "GET", &format!("{log}?after=1"), None).await;
    assert_eq!((status, &answer["entries"][0]["version"]), (200, &json!(2)));
    let (status, answer) = send(&api, &member, "GET", &format!("{log}?after=x"), None).await;
    assert_eq!(
        (status, &answer["code"]),
        (400, &json!("invalid_parameter"))
    );
    let (status, answer) = send(&api, &chan, "GET", &log, None).await;
    assert_eq!((status, &answer["code"]), (403, &json!("forbidden")));
}

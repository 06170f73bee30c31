//! The shipped `cinder-calls` binary (two instances taking turns) behind the API Gateway
//! stand-in, on DynamoDB (moto); the spine function runs in-process on the same tables to
//! create the room. A relay announces itself under the shared secret the function reads
//! from its environment (`TURN_SECRET`), a channel's capability gets credentials naming it, and
//! every refusal holds through the binary: another capability, a forged announcement.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cinder_proto::calls::{RELAY_HEADER, TurnCredentials, relay_mac, turn_expiry, turn_password};
use cinder_proto::{ChannelId, Timestamp};
use cinder_server::Clock;
use cinder_tests::lambda::{Gateway, RuntimeApi, Target, http_answer, rooms_env, signed_http};
use cinder_tests::moto;
use cinder_tests::rooms::RoomCaps;
use serde_json::{Value, json};

const SECRET: &str = "k3Jd8sLq0vNw2xYz5aBc7eFg9hIj1mOp";

async fn announce(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    body: &Value,
    secret: &[u8],
) -> (u16, Value) {
    let bytes = body.to_string();
    let request = http
        .put(format!("{base}/calls/relays/{id}"))
        .header(RELAY_HEADER, relay_mac(secret, id, bytes.as_bytes()))
        .header("content-type", "application/json")
        .body(bytes);
    http_answer(request.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_binary_hands_out_credentials_for_announced_relays() {
    // GIVEN two calls processes on moto's tables with one TURN secret, and the spine routes in-process
    let (rooms_store, tables) = moto::fresh_rooms_store().await;
    let (_, relays_table) = moto::fresh_relays_store().await;
    let mut env = rooms_env(&tables);
    env.push(("RELAYS_TABLE", relays_table));
    env.push(("TURN_SECRET", SECRET.into()));
    env.push(("TURN_CREDENTIAL_SECS", "600".into()));
    let binary = env!("CARGO_BIN_EXE_cinder-calls");
    let (a, b) = (
        Arc::new(RuntimeApi::start().await),
        Arc::new(RuntimeApi::start().await),
    );
    let _fa = a.spawn_function(binary.as_ref(), &env);
    let _fb = b.spawn_function(binary.as_ref(), &env);
    let spine = cinder_server::spine::routes(cinder_server::spine::SpineState::new(
        rooms_store,
        Clock::system(),
    ));
    let gateway = Gateway::start(vec![
        ("/calls", Target::functions(vec![a.clone(), b.clone()])),
        ("/rooms", Target::Router(spine)),
    ])
    .await;
    let base = gateway.url.as_str();
    let http = reqwest::Client::new();
    let caps = RoomCaps::new(71, &[ChannelId([72; 16]), ChannelId([73; 16])]);
    let (status, created) = signed_http(
        &http,
        base,
        &caps.admin,
        "POST",
        "/rooms",
        Some(caps.create_body(b"spine")),
    )
    .await;
    assert_eq!(status, 201, "{created}");

    // WHEN a relay announces itself under the functions' secret
    let url = "turn:203.0.113.7:3478?transport=udp";
    let expires = Timestamp::now().plus(180);
    let body = json!({ "urls": [url], "expires_at": expires });
    let (status, answer) = announce(&http, base, "relay-1", &body, SECRET.as_bytes()).await;
    assert_eq!(status, 204, "{answer}");

    // THEN the channel's capability gets credentials the relay will accept, naming it, on
    // either instance
    let path = format!("/calls/{}/{}/turn", caps.room, caps.channels[0].0);
    for _ in 0..2 {
        let (status, answer) =
            signed_http(&http, base, caps.channel(0).1, "POST", &path, None).await;
        assert_eq!(status, 200, "{answer}");
        let creds: TurnCredentials = serde_json::from_value(answer).unwrap();
        assert_eq!(creds.urls, vec![url.to_owned()]);
        assert_eq!(
            creds.credential,
            turn_password(SECRET.as_bytes(), &creds.username)
        );
        let expiry = turn_expiry(&creds.username).unwrap();
        assert_eq!(expiry, creds.expires_at);
        // TURN_CREDENTIAL_SECS=600 is honoured.
        assert!(expiry.0 <= Timestamp::now().0 + 600 && expiry.0 + 30 >= Timestamp::now().0 + 600);
    }
    assert!(a.invocations() >= 1 && b.invocations() >= 1);

    // AND another channel's capability and the member capability are refused
    for who in [caps.channel(1).1, &caps.member] {
        let (status, answer) = signed_http(&http, base, who, "POST", &path, None).await;
        assert_eq!(status, 403, "{answer}");
        assert_eq!(answer["code"], "forbidden");
    }
    // AND an announcement under another secret changes nothing
    let rogue =
        json!({ "urls": ["turn:198.51.100.9:3478?transport=udp"], "expires_at": expires.plus(60) });
    let (status, answer) = announce(
        &http,
        base,
        "relay-1",
        &rogue,
        b"a guess at the secret, 32 bytes",
    )
    .await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["code"], "unauthenticated");
    let (_, answer) = signed_http(&http, base, caps.channel(0).1, "POST", &path, None).await;
    assert_eq!(answer["urls"], json!([url]));
}

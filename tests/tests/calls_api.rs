//! The calls routes on both stores (rooms on SQLite with relays in memory, as the dev server
//! runs them; rooms and relays on DynamoDB, as the calls function does), with a manual
//! clock: credentials go only to a channel's capability, in the TURN REST format, for at
//! most an hour, naming the relays announced and not lapsed; an announcement counts only
//! under the shared secret's MAC, within bounds, and never rolls a relay back.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_proto::calls::{RELAY_HEADER, TurnCredentials, relay_mac, turn_expiry, turn_password};
use cinder_proto::{ChannelId, Timestamp};
use cinder_tests::rooms::{Backend, RoomCaps, T0, TURN_SECRET, backends};
use cinder_tests::router::{Answer, send};
use serde_json::{Value, json};

const HORIZON: u64 = 24 * 3600;

fn turn_path(caps: &RoomCaps, i: usize) -> String {
    format!("/calls/{}/{}/turn", caps.room, caps.channels[i].0)
}

/// A relay's announcement, MAC'd with `secret` over the exact bytes sent.
async fn announce(b: &Backend, id: &str, body: &Value, secret: &[u8]) -> Answer {
    let bytes = serde_json::to_vec(body).unwrap();
    let mac = relay_mac(secret, id, &bytes);
    send(
        &b.app,
        "PUT",
        &format!("/calls/relays/{id}"),
        &[(RELAY_HEADER, mac)],
        bytes,
    )
    .await
}

fn announcement(urls: &[&str], expires_at: Timestamp) -> Value {
    json!({ "urls": urls, "expires_at": expires_at })
}

async fn room(b: &Backend, tag: u8) -> RoomCaps {
    let caps = RoomCaps::new(tag, &[ChannelId([tag; 16]), ChannelId([tag + 1; 16])]);
    let created = caps.create(b, b"sealed spine").await;
    assert_eq!(created.status, 201, "{}: {:?}", b.name, created.json);
    caps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_capability_gets_turn_rest_credentials_naming_live_relays() {
    for b in backends(HORIZON).await {
        let caps = room(&b, 11).await;
        let (_, voice) = caps.channel(0);

        // GIVEN two relays announced, one lapsing sooner
        let url_a = "turn:203.0.113.1:3478?transport=udp";
        let url_b = "turns:203.0.113.2:443?transport=tcp";
        for (id, url, secs) in [("relay-a", url_a, 100), ("relay-b", url_b, 200)] {
            let answer = announce(&b, id, &announcement(&[url], T0.plus(secs)), TURN_SECRET).await;
            assert_eq!(answer.status, 204, "{}: {:?}", b.name, answer.json);
        }

        // WHEN the channel's capability asks for credentials
        let answer = b.call(voice, "POST", &turn_path(&caps, 0), None).await;
        assert_eq!(answer.status, 200, "{}: {:?}", b.name, answer.json);
        let creds: TurnCredentials = serde_json::from_value(answer.json).unwrap();

        // THEN they are in the TURN REST format under the shared secret, for an hour,
        // naming both relays, the freshest first
        assert_eq!(creds.expires_at, T0.plus(3600), "{}", b.name);
        assert_eq!(turn_expiry(&creds.username), Some(creds.expires_at));
        assert_eq!(
            creds.credential,
            turn_password(TURN_SECRET, &creds.username)
        );
        assert_eq!(
            creds.urls,
            vec![url_b.to_owned(), url_a.to_owned()],
            "{}",
            b.name
        );

        // Each answer is a fresh user name.
        let again = b.call(voice, "POST", &turn_path(&caps, 0), None).await;
        assert_ne!(again.json["username"], json!(creds.username), "{}", b.name);

        // A relay whose announcement lapsed is no longer named.
        b.set(T0.plus(150));
        let later = b.call(voice, "POST", &turn_path(&caps, 0), None).await;
        assert_eq!(later.status, 200);
        assert_eq!(later.json["urls"], json!([url_b]), "{}", b.name);
        b.set(T0.plus(250));
        let none = b.call(voice, "POST", &turn_path(&caps, 0), None).await;
        assert_eq!(none.json["urls"], json!([]), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_but_the_channels_capability_gets_credentials() {
    for b in backends(HORIZON).await {
        let caps = room(&b, 21).await;
        let other = room(&b, 31).await;
        let (_, first) = caps.channel(0);
        let (_, second) = caps.channel(1);

        // Another channel's capability, the room's member and admin capabilities, and
        // another room's channel capability: 403.
        for (who, label) in [
            (second, "another channel"),
            (&caps.member, "member"),
            (&caps.admin, "admin"),
            (other.channel(0).1, "another room's channel"),
        ] {
            let answer = b.call(who, "POST", &turn_path(&caps, 0), None).await;
            assert_eq!(answer.status, 403, "{}: {label}: {:?}", b.name, answer.json);
            assert_eq!(answer.code(), "forbidden", "{}: {label}", b.name);
        }

        // Unsigned: 401, and no credentials in the answer.
        let unsigned = send(&b.app, "POST", &turn_path(&caps, 0), &[], Vec::new()).await;
        assert_eq!(unsigned.status, 401, "{}", b.name);
        assert_eq!(unsigned.code(), "unauthenticated");
        assert!(unsigned.json.get("credential").is_none());

        // A replayed request: refused like every signed request's replay.
        let path = turn_path(&caps, 0);
        let headers = first.sign("POST", &path, b"", b.now());
        let once = send(&b.app, "POST", &path, &headers, Vec::new()).await;
        assert_eq!(once.status, 200, "{}: {:?}", b.name, once.json);
        let twice = send(&b.app, "POST", &path, &headers, Vec::new()).await;
        assert_eq!(twice.status, 401, "{}", b.name);
        assert_eq!(twice.code(), "replayed_request", "{}", b.name);

        // An unknown room: the signature cannot be checked, 401.
        let ghost = RoomCaps::new(41, &[ChannelId([41; 16])]);
        let answer = b
            .call(ghost.channel(0).1, "POST", &turn_path(&ghost, 0), None)
            .await;
        assert_eq!(answer.status, 401, "{}: {:?}", b.name, answer.json);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_counts_only_under_the_secret_and_within_bounds() {
    for b in backends(HORIZON).await {
        let caps = room(&b, 51).await;
        let (_, voice) = caps.channel(0);
        let good = announcement(&["turn:203.0.113.5:3478?transport=udp"], T0.plus(180));

        // A MAC under another secret, a MAC for another relay id, a body changed after
        // the MAC, and no MAC at all: 401, and nothing is listed.
        let wrong = announce(&b, "relay-x", &good, b"not the shared secret at all!!").await;
        assert_eq!(wrong.status, 401, "{}: {:?}", b.name, wrong.json);
        assert_eq!(wrong.code(), "unauthenticated");
        let bytes = serde_json::to_vec(&good).unwrap();
        let mac_for_other_id = relay_mac(TURN_SECRET, "relay-y", &bytes);
        let moved = send(
            &b.app,
            "PUT",
            "/calls/relays/relay-x",
            &[(RELAY_HEADER, mac_for_other_id)],
            bytes.clone(),
        )
        .await;
        assert_eq!(moved.status, 401, "{}", b.name);
        let tampered = serde_json::to_vec(&announcement(
            &["turn:198.51.100.66:3478?transport=udp"],
            T0.plus(180),
        ))
        .unwrap();
        let forged = send(
            &b.app,
            "PUT",
            "/calls/relays/relay-x",
            &[(RELAY_HEADER, relay_mac(TURN_SECRET, "relay-x", &bytes))],
            tampered,
        )
        .await;
        assert_eq!(forged.status, 401, "{}", b.name);
        let bare = send(&b.app, "PUT", "/calls/relays/relay-x", &[], bytes).await;
        assert_eq!(bare.status, 401, "{}", b.name);
        let creds = b.call(voice, "POST", &turn_path(&caps, 0), None).await;
        assert_eq!(creds.json["urls"], json!([]), "{}", b.name);

        // Under the secret but out of bounds: 400 invalid_parameter.
        for (body, label) in [
            (
                announcement(&["https://203.0.113.5/"], T0.plus(180)),
                "not a turn URL",
            ),
            (announcement(&[], T0.plus(180)), "no URL"),
            (
                announcement(&["turn:203.0.113.5:3478"; 9], T0.plus(180)),
                "too many URLs",
            ),
            (
                announcement(&["turn:203.0.113.5:3478"], T0.plus(301)),
                "too far ahead",
            ),
            (
                announcement(&["turn:203.0.113.5:3478"], T0),
                "already lapsed",
            ),
        ] {
            let answer = announce(&b, "relay-x", &body, TURN_SECRET).await;
            assert_eq!(answer.status, 400, "{}: {label}: {:?}", b.name, answer.json);
            assert_eq!(answer.code(), "invalid_parameter", "{}: {label}", b.name);
        }
        let bad_id = announce(&b, "relay.x", &good, TURN_SECRET).await;
        assert_eq!(bad_id.status, 400, "{}", b.name);
        let not_json = {
            let bytes = b"{not json".to_vec();
            let mac = relay_mac(TURN_SECRET, "relay-x", &bytes);
            send(
                &b.app,
                "PUT",
                "/calls/relays/relay-x",
                &[(RELAY_HEADER, mac)],
                bytes,
            )
            .await
        };
        assert_eq!(not_json.status, 400, "{}: {:?}", b.name, not_json.json);

        // A replayed older announcement never rolls a newer one back: 409.
        let newer = announcement(&["turn:203.0.113.5:3478?transport=udp"], T0.plus(240));
        assert_eq!(
            announce(&b, "relay-x", &newer, TURN_SECRET).await.status,
            204
        );
        let replay = announce(&b, "relay-x", &good, TURN_SECRET).await;
        assert_eq!(replay.status, 409, "{}: {:?}", b.name, replay.json);
        assert_eq!(replay.code(), "version_conflict");
        let listed = b.relays.relays(T0).await.unwrap();
        assert_eq!(listed.len(), 1, "{}", b.name);
        assert_eq!(listed[0].expires_at, T0.plus(240), "{}", b.name);
    }
}

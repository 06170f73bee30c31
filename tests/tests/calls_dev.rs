//! Calls on the dev server, end to end: the credentials its calls routes hand a channel's
//! capability are accepted by the TURN relay it runs in process (our `cinder-turn`), which
//! coturn's own client, `turnutils_uclient`, then relays through with no loss; credentials
//! the relay did not get from the API (wrong password, lapsed) are refused.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use cinder_proto::calls::{TurnCredentials, turn_password, turn_username};
use cinder_proto::{ChannelId, Timestamp};
use cinder_server::Clock;
use cinder_tests::rooms::RoomCaps;
use cinder_tests::router::send;

/// Runs uclient (4 clients, 20 messages each, over UDP channels) as `user`/`password`
/// against the relay on `port`, relaying to a `turnutils_peer` on loopback; returns whether
/// it finished and what it printed.
fn uclient(port: u16, user: &str, password: &str) -> (bool, String) {
    let peer_port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let mut peer = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnutils_peer runs (install the coturn package)");
    std::thread::sleep(Duration::from_millis(100));
    let out = Command::new("timeout")
        .args(["20", "turnutils_uclient"])
        .args(["-e", "127.0.0.1", "-r", &peer_port.to_string()])
        .args(["-p", &port.to_string(), "-u", user, "-w", password])
        .args(["-n", "20", "-m", "4", "-l", "170", "-z", "5"])
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("turnutils_uclient runs (install the coturn package)");
    let _ = peer.kill();
    let _ = peer.wait();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let relayed = text.contains("tot_send_msgs=80, tot_recv_msgs=80")
        && text.contains("Total lost packets 0 ");
    (relayed, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dev_servers_credentials_open_its_own_relay_and_nothing_else_does() {
    // GIVEN the dev server's routes and its in-process relay, and a room with a channel
    let dir = tempfile::tempdir().unwrap();
    let store = cinder_dev::open_store(dir.path()).unwrap();
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
    let clock = Clock::system();
    let objects = cinder_dev::media_store(dir.path(), "http://127.0.0.1:1", clock.clone()).unwrap();
    let calls = cinder_dev::calls::Calls::unrelayed();
    let relay =
        cinder_dev::calls::start_relay(&calls, "127.0.0.1:0".parse().unwrap(), clock.clone())
            .await
            .unwrap();
    let port = relay.local_addrs().udp.unwrap().port();
    let app = cinder_dev::app_with_calls(store, secrets, clock, objects, calls.clone());
    let caps = RoomCaps::new(91, &[ChannelId([92; 16])]);
    let body = serde_json::to_vec(&caps.create_body(b"spine")).unwrap();
    let headers = caps.admin.sign("POST", "/rooms", &body, Timestamp::now());
    assert_eq!(
        send(&app, "POST", "/rooms", &headers, body).await.status,
        201
    );

    // WHEN the channel's capability asks for credentials
    let path = format!("/calls/{}/{}/turn", caps.room, caps.channels[0].0);
    let headers = caps.channel(0).1.sign("POST", &path, b"", Timestamp::now());
    let answer = send(&app, "POST", &path, &headers, Vec::new()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    let creds: TurnCredentials = serde_json::from_value(answer.json).unwrap();

    // THEN they name the relay, and coturn's client relays through it with them, losing nothing
    assert!(
        creds
            .urls
            .contains(&format!("turn:127.0.0.1:{port}?transport=udp")),
        "{:?}",
        creds.urls
    );
    let (user, password) = (creds.username.clone(), creds.credential.clone());
    let (relayed, output) = tokio::task::spawn_blocking(move || uclient(port, &user, &password))
        .await
        .unwrap();
    assert!(relayed, "uclient said:\n{output}");
    assert!(
        relay.counters().allocations_total >= 4,
        "{:?}",
        relay.counters()
    );

    // AND a wrong password, and a well-made credential that has lapsed, get nothing relayed
    let user = creds.username.clone();
    let (relayed, output) =
        tokio::task::spawn_blocking(move || uclient(port, &user, "bm90IHRoZSBwYXNzd29yZA=="))
            .await
            .unwrap();
    assert!(!relayed, "a wrong password relayed:\n{output}");
    let refused = relay.counters().auth_failures;
    assert!(refused >= 1, "{:?}", relay.counters());
    let lapsed = turn_username(Timestamp(Timestamp::now().0 - 60), "x");
    let password = turn_password(calls.secret.expose(), &lapsed);
    let (relayed, output) = tokio::task::spawn_blocking(move || uclient(port, &lapsed, &password))
        .await
        .unwrap();
    assert!(!relayed, "a lapsed credential relayed:\n{output}");
    assert!(
        relay.counters().auth_failures > refused,
        "{:?}",
        relay.counters()
    );
    relay.shutdown().await;
}

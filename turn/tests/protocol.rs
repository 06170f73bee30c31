//! The server's answers, code by code, to a client built on the `stun` crate: credentials,
//! nonces, the peer address policy, quotas, the bandwidth cap, lifetimes, and relaying.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use cinder_turn::PeerPolicy;
use common::{Client, REALM, SECRET, config, credentials, now, start, until};
use stun::attributes::*;
use stun::message::*;
use tokio::net::UdpSocket;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn udp(server: &cinder_turn::Server) -> SocketAddr {
    server.local_addrs().udp.expect("UDP listener")
}

/// A config whose peer policy is the production one (loopback refused).
fn strict() -> cinder_turn::Config {
    let mut c = config();
    c.peers = PeerPolicy::default();
    c
}

#[tokio::test]
async fn a_request_without_credentials_gets_401_with_realm_and_nonce() {
    let server = start(config()).await;
    let client = Client::valid(udp(&server), "alice").await;
    let mut m = Client::message(METHOD_ALLOCATE, CLASS_REQUEST);
    m.add(ATTR_REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let a = client.exchange(&m).await;
    assert_eq!(a.code(), 401);
    assert_eq!(a.text(ATTR_REALM).as_deref(), Some(REALM));
    assert!(a.text(ATTR_NONCE).is_some_and(|n| !n.is_empty()));
    // Asking is not failing: no credential was offered.
    assert_eq!(server.counters().auth_failures, 0);
}

#[tokio::test]
async fn a_wrong_password_gets_401_not_400_and_a_fresh_nonce() {
    let server = start(config()).await;
    let (username, _) = credentials("alice");
    let wrong = cinder_turn::auth::rest_password(b"another secret", &username);
    let mut client = Client::new(udp(&server), username, wrong).await;
    let a = client.allocate().await;
    assert_eq!(a.code(), 401);
    assert!(a.text(ATTR_NONCE).is_some(), "a 401 lets the client retry");
    assert_eq!(server.counters().auth_failures, 1);
    assert_eq!(server.counters().allocations_total, 0);
}

#[tokio::test]
async fn an_expired_username_gets_401_though_its_password_matches() {
    let server = start(config()).await;
    let username = format!("{}:alice", now() - 10);
    let password = cinder_turn::auth::rest_password(SECRET, &username);
    let mut client = Client::new(udp(&server), username, password).await;
    assert_eq!(client.allocate().await.code(), 401);
    assert_eq!(server.counters().auth_failures, 1);
}

#[tokio::test]
async fn a_username_without_an_expiry_gets_401() {
    let server = start(config()).await;
    let password = cinder_turn::auth::rest_password(SECRET, "alice");
    let mut client = Client::new(udp(&server), "alice".into(), password).await;
    assert_eq!(client.allocate().await.code(), 401);
}

#[tokio::test]
async fn valid_rest_credentials_allocate() {
    let server = start(config()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    let a = client.allocate().await;
    assert!(a.is_success(), "{}", a.code());
    let relayed = a.xor(ATTR_XOR_RELAYED_ADDRESS).expect("relayed address");
    assert_eq!(relayed.ip(), addr("127.0.0.1:0").ip());
    assert_eq!(
        a.xor(ATTR_XORMAPPED_ADDRESS),
        Some(client.socket.local_addr().expect("addr"))
    );
    assert!(a.message.contains(ATTR_MESSAGE_INTEGRITY));
    assert_eq!(server.counters().allocations_current, 1);
}

#[tokio::test]
async fn a_nonce_not_issued_to_this_client_gets_438() {
    let server = start(config()).await;
    // A nonce issued to another client's address is stale for this one.
    let mut other = Client::valid(udp(&server), "bob").await;
    assert_eq!(other.allocate().await.code(), 0);
    let mut client = Client::valid(udp(&server), "alice").await;
    client.realm = other.realm.clone();
    client.nonce = other.nonce.clone();
    client.retry_stale = false;
    let a = client.allocate().await;
    assert_eq!(a.code(), 438);
    let fresh = a.text(ATTR_NONCE).expect("438 carries a fresh nonce");
    assert_ne!(fresh, other.nonce);
    // With the fresh nonce, the same credentials work.
    client.retry_stale = true;
    assert!(client.allocate().await.is_success());
    // A made-up nonce is stale too.
    let mut forger = Client::valid(udp(&server), "carol").await;
    forger.realm = REALM.into();
    forger.nonce = "0".repeat(32);
    forger.retry_stale = false;
    assert_eq!(forger.allocate().await.code(), 438);
}

#[tokio::test]
async fn every_refused_peer_class_gets_403_at_create_permission_and_channel_bind() {
    let server = start(strict()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    client.relayed().await;
    let refused = [
        "127.0.0.1:9",
        "127.1.2.3:9",
        "10.0.0.1:9",
        "172.16.0.1:9",
        "172.31.255.1:9",
        "192.168.1.1:9",
        "169.254.169.254:80",
        "169.254.1.1:9",
        "0.0.0.0:9",
        "0.1.2.3:9",
        "100.64.0.1:9",
        "224.0.0.1:9",
        "255.255.255.255:9",
        "240.0.0.1:9",
        "[::]:9",
        "[::1]:9",
        "[::ffff:127.0.0.1]:9",
        "[::ffff:10.0.0.1]:9",
        "[::ffff:169.254.169.254]:80",
        "[fe80::1]:9",
        "[fc00::1]:9",
        "[fd00:ec2::254]:80",
        "[ff02::1]:9",
        "[64:ff9b::7f00:1]:9",
    ];
    for (i, peer) in refused.iter().enumerate() {
        let peer = addr(peer);
        assert_eq!(client.create_permission(peer).await.code(), 403, "{peer}");
        let channel = 0x4000 + i as u16;
        assert_eq!(
            client.channel_bind(channel, peer).await.code(),
            403,
            "{peer}"
        );
    }
    let c = server.counters();
    assert_eq!(c.refused_peer, 2 * refused.len() as u64);
    assert_eq!(c.permissions_current, 0);
    assert_eq!(c.channels_current, 0);
    // A public address is fine (no packet is sent to it here).
    assert!(
        client
            .create_permission(addr("203.0.113.1:9"))
            .await
            .is_success()
    );
    assert_eq!(server.counters().permissions_current, 1);
}

#[tokio::test]
async fn one_refused_peer_refuses_the_whole_create_permission() {
    let server = start(strict()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    client.relayed().await;
    let a = client
        .request_with_peers(
            METHOD_CREATE_PERMISSION,
            &[],
            &[addr("203.0.113.1:9"), addr("10.0.0.1:9")],
        )
        .await;
    assert_eq!(a.code(), 403);
    assert_eq!(server.counters().permissions_current, 0);
}

#[tokio::test]
async fn loopback_peers_are_refused_unless_allowed() {
    let strict = start(strict()).await;
    let mut client = Client::valid(udp(&strict), "alice").await;
    client.relayed().await;
    assert_eq!(
        client.create_permission(addr("127.0.0.1:9")).await.code(),
        403
    );

    let open = start(config()).await;
    let mut client = Client::valid(udp(&open), "alice").await;
    client.relayed().await;
    assert!(
        client
            .create_permission(addr("127.0.0.1:9"))
            .await
            .is_success()
    );
    // Allowing loopback opens nothing else.
    assert_eq!(
        client.create_permission(addr("0.0.0.0:9")).await.code(),
        403
    );
    assert_eq!(
        client.create_permission(addr("10.0.0.1:9")).await.code(),
        403
    );
}

#[tokio::test]
async fn send_indications_to_refused_peers_are_dropped() {
    let server = start(strict()).await;
    let target = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut client = Client::valid(udp(&server), "alice").await;
    client.relayed().await;
    let port = target.local_addr().expect("addr").port();
    for peer in ["127.0.0.1", "0.0.0.0", "[::ffff:127.0.0.1]"] {
        client
            .send_indication(addr(&format!("{peer}:{port}")), b"knock knock")
            .await;
    }
    until(&server, "three dropped", |c| c.dropped_filter == 3).await;
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_millis(200), target.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a refused peer received a packet");
    assert_eq!(server.counters().packets_to_peer, 0);
}

#[tokio::test]
async fn the_per_user_quota_gets_486() {
    let mut c = config();
    c.user_quota = 2;
    let server = start(c).await;
    let (username, password) = credentials("alice");
    for _ in 0..2 {
        let mut client = Client::new(udp(&server), username.clone(), password.clone()).await;
        assert!(client.allocate().await.is_success());
    }
    let mut third = Client::new(udp(&server), username, password).await;
    assert_eq!(third.allocate().await.code(), 486);
    // Another user is not held back by alice's quota.
    let mut bob = Client::valid(udp(&server), "bob").await;
    assert!(bob.allocate().await.is_success());
    assert_eq!(server.counters().refused_quota, 1);
}

#[tokio::test]
async fn server_capacity_gets_508() {
    let mut c = config();
    c.max_allocations = 1;
    let server = start(c).await;
    let mut a = Client::valid(udp(&server), "alice").await;
    assert!(a.allocate().await.is_success());
    let mut b = Client::valid(udp(&server), "bob").await;
    assert_eq!(b.allocate().await.code(), 508);
}

#[tokio::test]
async fn only_udp_relaying_is_offered_442() {
    let server = start(config()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    let a = client
        .request(
            METHOD_ALLOCATE,
            &[(ATTR_REQUESTED_TRANSPORT, vec![6, 0, 0, 0])],
        )
        .await;
    assert_eq!(a.code(), 442);
    let a = client.request(METHOD_ALLOCATE, &[]).await;
    assert_eq!(a.code(), 400, "REQUESTED-TRANSPORT is mandatory");
}

#[tokio::test]
async fn dont_fragment_is_accepted_while_unknown_attributes_get_420() {
    let server = start(config()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    let a = client
        .request(
            METHOD_ALLOCATE,
            &[
                (ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0]),
                (ATTR_DONT_FRAGMENT, vec![]),
            ],
        )
        .await;
    assert!(a.is_success(), "DONT-FRAGMENT answered {}", a.code());
    let mut other = Client::valid(udp(&server), "bob").await;
    let a = other
        .request(
            METHOD_ALLOCATE,
            &[
                (ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0]),
                (AttrType(0x0031), vec![1, 2, 3, 4]),
            ],
        )
        .await;
    assert_eq!(a.code(), 420);
}

#[tokio::test]
async fn a_second_allocate_gets_437_and_a_retransmission_the_same_answer() {
    let server = start(config()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    let first = client.allocate().await;
    assert!(first.is_success());
    // The same request again, byte for byte (a lost answer): the same answer.
    let sent = client.last.clone().expect("a request was sent");
    let again = client.exchange(&sent).await;
    assert!(again.is_success());
    assert_eq!(again.message.raw, first.message.raw);
    // A new Allocate on the same five-tuple: 437.
    assert_eq!(client.allocate().await.code(), 437);
    assert_eq!(server.counters().allocations_total, 1);
}

#[tokio::test]
async fn refresh_extends_and_lifetime_zero_deletes() {
    let server = start(config()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    assert_eq!(
        client.refresh(600).await.code(),
        437,
        "nothing to refresh yet"
    );
    client.relayed().await;
    let a = client.refresh(7200).await;
    assert!(a.is_success());
    assert_eq!(
        a.message.get(ATTR_LIFETIME).expect("LIFETIME"),
        3600u32.to_be_bytes().to_vec(),
        "capped at the maximum"
    );
    let a = client.refresh(0).await;
    assert!(a.is_success());
    until(&server, "allocation deleted", |c| {
        c.allocations_current == 0
    })
    .await;
    assert!(
        client.allocate().await.is_success(),
        "the five-tuple is free again"
    );
}

#[tokio::test]
async fn allocations_expire_at_their_lifetime() {
    let mut c = config();
    c.default_lifetime = Duration::from_millis(300);
    c.max_lifetime = Duration::from_millis(300);
    let server = start(c).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    client.relayed().await;
    assert_eq!(server.counters().allocations_current, 1);
    until(&server, "allocation expired", |c| {
        c.allocations_current == 0
    })
    .await;
}

/// An allocation with a loopback peer bound on `channel`, and the peer's socket.
async fn relay_pair(server: &cinder_turn::Server, channel: u16) -> (Client, UdpSocket, SocketAddr) {
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let mut client = Client::valid(udp(server), "alice").await;
    let relayed = client.relayed().await;
    let a = client
        .channel_bind(channel, peer.local_addr().expect("addr"))
        .await;
    assert!(a.is_success(), "channel bind: {}", a.code());
    (client, peer, relayed)
}

#[tokio::test]
async fn channel_data_and_indications_relay_both_ways() {
    let server = start(config()).await;
    let (client, peer, relayed) = relay_pair(&server, 0x4001).await;
    let peer_addr = peer.local_addr().expect("addr");
    let mut buf = vec![0u8; 2048];

    client.channel_data(0x4001, b"over the channel").await;
    let (n, from) = peer.recv_from(&mut buf).await.expect("recv");
    assert_eq!((&buf[..n], from), (&b"over the channel"[..], relayed));

    client.send_indication(peer_addr, b"by indication").await;
    let (n, _) = peer.recv_from(&mut buf).await.expect("recv");
    assert_eq!(&buf[..n], b"by indication");

    peer.send_to(b"back on the channel", relayed)
        .await
        .expect("send");
    let (n, _) = client.socket.recv_from(&mut buf).await.expect("recv");
    assert_eq!(&buf[..4], &[0x40, 0x01, 0x00, 19]);
    assert_eq!(&buf[4..n], b"back on the channel");

    let c = server.counters();
    assert_eq!((c.packets_to_peer, c.packets_to_client), (2, 1));
    assert_eq!(c.bytes_to_peer, 16 + 13);
}

#[tokio::test]
async fn peers_without_a_permission_are_not_relayed() {
    let server = start(config()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    let relayed = client.relayed().await;
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    stranger.send_to(b"let me in", relayed).await.expect("send");
    until(&server, "dropped", |c| c.dropped_permission == 1).await;
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(
        Duration::from_millis(200),
        client.socket.recv_from(&mut buf),
    )
    .await;
    assert!(got.is_err(), "a peer without a permission got through");
    // With a permission, a Data indication comes through.
    let a = client
        .create_permission(stranger.local_addr().expect("addr"))
        .await;
    assert!(a.is_success());
    stranger.send_to(b"let me in", relayed).await.expect("send");
    let (n, _) = client.socket.recv_from(&mut buf).await.expect("recv");
    let mut m = Message::new();
    m.unmarshal_binary(&buf[..n]).expect("a Data indication");
    assert_eq!(m.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
    assert_eq!(m.get(ATTR_DATA).expect("DATA"), b"let me in".to_vec());
}

#[tokio::test]
async fn the_bandwidth_cap_drops_what_is_over_it() {
    let mut c = config();
    c.bandwidth = Some(10_000);
    let server = start(c).await;
    let (client, peer, _) = relay_pair(&server, 0x4000).await;
    let payload = [7u8; 1000];
    for _ in 0..100 {
        client.channel_data(0x4000, &payload).await;
    }
    until(&server, "all handled", |c| {
        c.packets_to_peer + c.dropped_cap == 100
    })
    .await;
    let c = server.counters();
    // One second's worth passes (plus what refills while sending), the rest is dropped.
    assert!(c.packets_to_peer >= 10 && c.packets_to_peer <= 20, "{c:?}");
    assert!(c.dropped_cap >= 80, "{c:?}");
    let mut received = 0;
    let mut buf = [0u8; 2048];
    while tokio::time::timeout(Duration::from_millis(100), peer.recv_from(&mut buf))
        .await
        .is_ok()
    {
        received += 1;
    }
    assert_eq!(received, c.packets_to_peer);
}

#[tokio::test]
async fn announcements_put_the_urls_under_a_valid_mac() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut c = config();
    c.announce = Some(cinder_turn::Announce {
        url: format!("http://{}/calls/relays/", api.local_addr().expect("addr")),
        interval: Duration::from_secs(60),
        ttl: Duration::from_secs(180),
    });
    let server = start(c).await;
    let (mut conn, _) = tokio::time::timeout(Duration::from_secs(5), api.accept())
        .await
        .expect("announced at start")
        .expect("accept");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, body) = loop {
        let n = conn.read(&mut buf).await.expect("read");
        assert!(n > 0, "request cut short");
        raw.extend(&buf[..n]);
        let text = String::from_utf8_lossy(&raw).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .expect("content-length")
                .parse()
                .expect("length");
            if body.len() >= len {
                break (head.to_string(), body[..len].to_string());
            }
        }
    };
    conn.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
        .await
        .expect("answer");
    let relay_id = server.relay_id();
    assert!(
        head.starts_with(&format!("PUT /calls/relays/{relay_id} HTTP/1.1")),
        "{head}"
    );
    let mac = head
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}: ", cinder_proto::calls::RELAY_HEADER)))
        .expect("MAC header");
    assert!(cinder_proto::calls::relay_mac_valid(
        SECRET,
        relay_id,
        body.as_bytes(),
        mac
    ));
    let a: cinder_proto::calls::RelayAnnouncement =
        serde_json::from_str(&body).expect("an announcement");
    assert_eq!(a.urls, server.urls());
    assert!(a.urls_valid());
    assert!(a.expires_at.0.abs_diff(now() + 180) <= 5);
    assert!(a.urls[0].starts_with("turn:127.0.0.1:"));
}

#[tokio::test]
async fn even_port_with_its_r_bit_holds_the_next_port_for_a_reservation_token() {
    let server = start(config()).await;
    let transport = (ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0]);
    let mut rtp = Client::valid(udp(&server), "alice").await;
    let a = rtp
        .request(
            METHOD_ALLOCATE,
            &[transport.clone(), (ATTR_EVEN_PORT, vec![0x80])],
        )
        .await;
    assert!(a.is_success(), "{}", a.code());
    let port = a.xor(ATTR_XOR_RELAYED_ADDRESS).expect("relayed").port();
    assert_eq!(port % 2, 0, "EVEN-PORT gives an even port");
    let token = a
        .message
        .get(ATTR_RESERVATION_TOKEN)
        .expect("a token for the R bit");
    assert_eq!(token.len(), 8);

    let mut rtcp = Client::valid(udp(&server), "alice").await;
    let b = rtcp
        .request(
            METHOD_ALLOCATE,
            &[transport.clone(), (ATTR_RESERVATION_TOKEN, token.clone())],
        )
        .await;
    assert!(b.is_success(), "{}", b.code());
    assert_eq!(
        b.xor(ATTR_XOR_RELAYED_ADDRESS).expect("relayed").port(),
        port + 1,
        "the held port"
    );

    let mut late = Client::valid(udp(&server), "alice").await;
    let c = late
        .request(
            METHOD_ALLOCATE,
            &[transport, (ATTR_RESERVATION_TOKEN, token)],
        )
        .await;
    assert_eq!(c.code(), 508, "a token is spent once");
}

#[tokio::test]
async fn an_allocation_holds_at_most_256_permissions() {
    let server = start(strict()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    client.relayed().await;
    let peers: Vec<SocketAddr> = (0..256u32)
        .map(|i| SocketAddr::from((std::net::Ipv4Addr::from(0xCB00_7100 + i), 9)))
        .collect();
    // 203.0.113.0/24 in one request (documentation addresses: public, never sent to).
    let a = client
        .request_with_peers(METHOD_CREATE_PERMISSION, &[], &peers)
        .await;
    assert!(a.is_success(), "{}", a.code());
    assert_eq!(server.counters().permissions_current, 256);
    // Refreshing them is fine; one more is not.
    assert!(client.create_permission(peers[7]).await.is_success());
    assert_eq!(
        client
            .create_permission(addr("198.51.100.1:9"))
            .await
            .code(),
        508
    );
    assert_eq!(
        client
            .channel_bind(0x4000, addr("198.51.100.1:9"))
            .await
            .code(),
        508
    );
    assert_eq!(server.counters().permissions_current, 256);
}

#[tokio::test]
async fn another_user_on_the_same_five_tuple_gets_441() {
    let server = start(config()).await;
    let mut client = Client::valid(udp(&server), "alice").await;
    client.relayed().await;
    // Same socket, someone else's (valid) credentials.
    let (username, password) = credentials("mallory");
    client.username = username;
    client.password = password;
    assert_eq!(client.refresh(600).await.code(), 441);
    assert_eq!(
        client.create_permission(addr("203.0.113.1:9")).await.code(),
        441
    );
    assert_eq!(server.counters().permissions_current, 0);
}

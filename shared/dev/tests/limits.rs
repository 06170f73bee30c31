//! The dev server's listener bounds, on real sockets: a connection that never finishes its
//! headers is closed, connections past the cap are closed at once while the ones open keep
//! working, and a request whose body stalls gets `408 request_timeout`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cinder_dev::serve::{Limits, Refusals, serve_with_limits};
use cinder_server::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The dev server's whole app on a fresh data folder, served within `limits`.
async fn server(limits: Limits) -> (std::net::SocketAddr, Arc<Refusals>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = cinder_dev::open_store(dir.path()).unwrap();
    let secrets = Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let objects =
        cinder_dev::media_store(dir.path(), &format!("http://{addr}"), Clock::system()).unwrap();
    let app = cinder_dev::app(store, secrets, Clock::system(), objects);
    let refusals = Arc::new(Refusals::default());
    let counted = refusals.clone();
    tokio::spawn(async move {
        serve_with_limits(listener, app, limits, counted, std::future::pending())
            .await
            .unwrap()
    });
    (addr, refusals, dir)
}

/// Reads until the peer closes or `within` passes; the bytes, and whether it closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

async fn get_status(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let (addr, _, _dir) = server(Limits {
        header_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    // Half a request, and nothing at all: both are closed once the header time is up.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    partial
        .write_all(b"GET /keys/00 HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut partial, Duration::from_secs(5)).await;
    assert!(closed, "a half-sent request kept its connection");
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "a silent connection was kept");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // Real clients are served meanwhile and after.
    assert!(get_status(addr, "/keys/00").await.starts_with("HTTP/1.1 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_and_the_open_ones_keep_working() {
    let (addr, refusals, _dir) = server(Limits {
        max_connections: 8,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The ninth is accepted and closed at once, without waiting for any timeout.
    let mut ninth = TcpStream::connect(addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut ninth, Duration::from_secs(2)).await;
    assert!(closed, "a connection past the cap was kept");
    assert_eq!(refusals.over_capacity.load(Ordering::Relaxed), 1);
    // One of the eight held sockets is a client: it is served.
    let mut first = held.remove(0);
    first
        .write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (got, _) = read_until_closed(&mut first, Duration::from_secs(5)).await;
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Once sockets close, their slots are free again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get_status(addr, "/keys/00").await.starts_with("HTTP/1.1 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_body_stalls_gets_408() {
    let (addr, _, _dir) = server(Limits {
        request_timeout: Duration::from_secs(1),
        ..Limits::default()
    })
    .await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"POST /keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"user_id\"",
    )
    .await
    .unwrap();
    let (got, _) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
}

/// The status of one `POST /accounts/login/start` sent from the local address `from`.
async fn login_start_from(from: &str, server: std::net::SocketAddr) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    // A well-formed body whose OPAQUE request is not one: the limit is spent before the
    // request is checked, so each of these counts (and then gets 422).
    let body = r#"{"login":"carol","request":"AAAA"}"#;
    let request = format!(
        "POST /accounts/login/start HTTP/1.1\r\nhost: {server}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_count_per_peer_address() {
    let dir = tempfile::tempdir().unwrap();
    let store = cinder_dev::open_store(dir.path()).unwrap();
    let secrets = Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let objects =
        cinder_dev::media_store(dir.path(), &format!("http://{addr}"), Clock::system()).unwrap();
    let limits = cinder_server::limits::Limits::parse("login_per_address=2/1h").unwrap();
    let app = cinder_dev::app_with_limits(
        store,
        secrets,
        Clock::system(),
        objects,
        cinder_dev::calls::Calls::unrelayed(),
        limits,
    );
    tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
    // GIVEN one peer address's two starts
    assert_eq!(login_start_from("127.0.0.1", addr).await, 422);
    assert_eq!(login_start_from("127.0.0.1", addr).await, 422);
    // THEN its third is limited
    assert_eq!(login_start_from("127.0.0.1", addr).await, 429);
    // AND another peer (the whole of 127/8 is loopback) has its own bucket
    assert_eq!(login_start_from("127.0.0.2", addr).await, 422);
}

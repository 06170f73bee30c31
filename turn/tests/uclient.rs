//! coturn's own test client, `turnutils_uclient`, against this server over UDP, TCP and TLS
//! with REST credentials (`-W`), with and without DONT-FRAGMENT (`-g`), through channels and
//! Send indications (`-s`), relaying to coturn's `turnutils_peer` on loopback: every
//! message sent comes back, none lost. Needs the `coturn` package (Debian: `coturn`).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cinder_turn::{TlsListener, TlsSource};
use common::{SECRET, config, start};

/// Messages per client, clients, and the interval between a client's messages (ms).
const MESSAGES: u32 = 100;
const CLIENTS: u32 = 4;
const INTERVAL_MS: u32 = 5;

/// `turnutils_peer` on a free loopback port, killed when dropped.
struct Peer {
    child: Child,
    port: u16,
}

impl Peer {
    fn start() -> Peer {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnutils_peer runs (install the coturn package)");
        std::thread::sleep(Duration::from_millis(100));
        Peer { child, port }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one uclient run reported.
#[derive(Debug, PartialEq, Eq)]
struct Report {
    sent: u64,
    received: u64,
    lost: u64,
}

/// Reads uclient's closing lines: `tot_send_msgs=N, tot_recv_msgs=M` and
/// `Total lost packets L (…)`.
fn report(output: &str) -> Option<Report> {
    let last_counts = output
        .lines()
        .rev()
        .find(|l| l.contains("start_mclient: tot_send_msgs="))?;
    let number_after = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let lost_line = output.lines().find(|l| l.contains("Total lost packets"))?;
    Some(Report {
        sent: number_after(last_counts, "tot_send_msgs=")?,
        received: number_after(last_counts, "tot_recv_msgs=")?,
        lost: number_after(lost_line, "Total lost packets ")?,
    })
}

/// Runs uclient with `flags` against `server_port`, relaying to a fresh peer.
fn uclient(flags: &[&str], server_port: u16, secret: &str) -> (Option<Report>, String) {
    let peer = Peer::start();
    let out = Command::new("turnutils_uclient")
        .args(flags)
        .args(["-e", "127.0.0.1", "-r", &peer.port.to_string()])
        .args(["-p", &server_port.to_string()])
        .args(["-W", secret, "-u", "alice"])
        .args(["-n", &MESSAGES.to_string(), "-m", &CLIENTS.to_string()])
        .args(["-l", "170", "-z", &INTERVAL_MS.to_string()])
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .output()
        .expect("turnutils_uclient runs (install the coturn package)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(peer);
    (report(&text), text)
}

fn secret() -> &'static str {
    std::str::from_utf8(SECRET).expect("ASCII secret")
}

/// A server with UDP, TCP and TLS listeners (a self-signed certificate made now).
async fn server(dir: &tempfile::TempDir) -> cinder_turn::Server {
    let key = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let cert = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&cert, key.cert.pem()).expect("write cert");
    std::fs::write(&key_file, key.signing_key.serialize_pem()).expect("write key");
    let mut c = config();
    c.tls = Some(TlsListener {
        addr: "127.0.0.1:0".parse::<SocketAddr>().expect("addr"),
        source: TlsSource::Files {
            cert,
            key: key_file,
        },
    });
    start(c).await
}

async fn relays_everything(transport: &str, flags: &[&'static str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(&dir).await;
    let local = server.local_addrs();
    let port = match transport {
        "udp" => local.udp,
        "tcp" => local.tcp,
        _ => local.tls,
    }
    .expect("listener")
    .port();
    let flags = flags.to_vec();
    let (report, output) = tokio::task::spawn_blocking(move || uclient(&flags, port, secret()))
        .await
        .expect("uclient thread");
    let expected = u64::from(MESSAGES * CLIENTS);
    let c = server.counters();
    assert_eq!(
        report,
        Some(Report {
            sent: expected,
            received: expected,
            lost: 0
        }),
        "server counters {c:?}; uclient said:\n{output}"
    );
    assert!(
        c.packets_to_peer >= expected && c.packets_to_client >= expected,
        "{c:?}"
    );
    assert_eq!(c.dropped(), 0, "{c:?}");
    if transport != "udp" {
        // uclient has closed its connections, and their allocations went with them.
        common::until(&server, "stream allocations closed", |c| {
            c.allocations_current == 0
        })
        .await;
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_udp_relays_every_message_through_channels() {
    relays_everything("udp", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_udp_with_dont_fragment_relays_every_message() {
    relays_everything("udp", &["-g"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_udp_relays_every_message_through_send_indications() {
    relays_everything("udp", &["-s", "-g"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_tcp_relays_every_message() {
    relays_everything("tcp", &["-t"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_tcp_with_dont_fragment_relays_every_message() {
    relays_everything("tcp", &["-t", "-g"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_tls_relays_every_message() {
    relays_everything("tls", &["-t", "-S"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_over_tls_with_dont_fragment_relays_every_message() {
    relays_everything("tls", &["-t", "-S", "-g"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uclient_with_the_wrong_secret_cannot_allocate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = server(&dir).await;
    let port = server.local_addrs().udp.expect("udp").port();
    let (report, output) =
        tokio::task::spawn_blocking(move || uclient(&[], port, "not the secret"))
            .await
            .expect("uclient thread");
    assert!(
        report.is_none_or(|r| r.received == 0),
        "uclient said:\n{output}"
    );
    assert!(output.contains("Cannot complete Allocation"), "{output}");
    let c = server.counters();
    assert_eq!(c.allocations_total, 0);
    assert!(c.auth_failures > 0, "{c:?}");
}

#[test]
fn uclient_reports_parse() {
    let out = "6: : start_mclient: msz=2, tot_send_msgs=71, tot_recv_msgs=71\n\
               6: : start_mclient: tot_send_msgs=100, tot_recv_msgs=99\n\
               6: : Total lost packets 1 (1.000000%), total send dropped 0 (0.000000%)\n";
    assert_eq!(
        report(out),
        Some(Report {
            sent: 100,
            received: 99,
            lost: 1
        })
    );
    assert_eq!(report("ERROR: Cannot complete Allocation"), None);
}

//! The shipped `cinder-turn` binary: configured by flags and environment, it serves, and
//! SIGTERM stops it gracefully (allocations closed, exit 0).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Client, SECRET};

const BIN: &str = env!("CARGO_BIN_EXE_cinder-turn");

/// The port in a JSON log field like `"udp":"Some(127.0.0.1:40001)"`.
fn port_in(line: &str, field: &str) -> Option<u16> {
    let rest = &line[line.find(&format!("\"{field}\":\"Some("))? + field.len() + 9..];
    let addr: SocketAddr = rest[..rest.find(')')?].parse().ok()?;
    Some(addr.port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_allocations_and_exits_zero() {
    let mut child = Command::new(BIN)
        .args(["--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .args(["--relay-ip", "127.0.0.1", "--ports", "42000-42999"])
        .args(["--realm", common::REALM, "--allow-loopback"])
        .args(["--log-format", "json", "--stats-interval", "0"])
        .env(
            "CINDER_TURN_SECRET",
            std::str::from_utf8(SECRET).expect("ASCII"),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let next = |what: &str| -> String {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("no {what:?} log line"));
            if line.contains(what) {
                return line;
            }
        }
    };
    let listening = next("TURN server listening");
    let port = port_in(&listening, "udp").expect("UDP port in the log");
    assert!(port_in(&listening, "tcp").is_some(), "{listening}");

    let mut client = Client::valid(SocketAddr::from(([127, 0, 0, 1], port)), "alice").await;
    let relayed = client.relayed().await;
    assert!((42000..=42999).contains(&relayed.port()));
    next("allocation made");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let ended = next("allocation ended");
    assert!(ended.contains("server stopping"), "{ended}");
    next("TURN server stopped");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("wait thread")
        .expect("exit status");
    assert_eq!(status.code(), Some(0));
    // The secret never reaches the logs.
    while let Ok(line) = rx.try_recv() {
        assert!(!line.contains("test secret"), "{line}");
    }
}

#[test]
fn no_secret_no_start() {
    let out = Command::new(BIN)
        .args([
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "off",
            "--relay-ip",
            "127.0.0.1",
        ])
        .env_remove("CINDER_TURN_SECRET")
        .env_remove("CINDER_TURN_SECRET_FILE")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("CINDER_TURN_SECRET"), "{text}");
}

#[test]
fn the_secret_is_not_a_flag() {
    let out = Command::new(BIN)
        .args(["--secret", "visible-in-ps"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "clap refuses an unknown flag");
}

/// What the binary prints on its way out, given `env` (with the shared secret set).
fn run_briefly(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let child = Command::new(BIN)
        .args([
            "--udp",
            "127.0.0.1:0",
            "--tcp",
            "off",
            "--relay-ip",
            "127.0.0.1",
        ])
        .args(["--log-format", "json", "--stats-interval", "0"])
        .args(args)
        .env(
            "CINDER_TURN_SECRET",
            std::str::from_utf8(SECRET).expect("ASCII"),
        )
        .envs(env.iter().copied())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    std::thread::sleep(Duration::from_millis(700));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("exit");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn the_tls_certificate_and_key_can_come_from_the_environment() {
    // As ECS hands a container a Secrets Manager secret: PEM text in two variables.
    let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    let (code, text) = run_briefly(
        &["--tls", "127.0.0.1:0"],
        &[
            ("CINDER_TURN_TLS_CERT_PEM", cert.as_str()),
            ("CINDER_TURN_TLS_KEY_PEM", key.as_str()),
        ],
    );
    let listening = text
        .lines()
        .find(|l| l.contains("TURN server listening"))
        .unwrap_or_else(|| panic!("no listening line:\n{text}"));
    assert!(port_in(listening, "tls").is_some(), "{listening}");
    assert_eq!(code, Some(0), "{text}");
    // The key never reaches the logs.
    assert!(!text.contains("PRIVATE KEY"), "{text}");

    // A key that is not PEM, or none at all, stops the start with a reason.
    let (code, text) = run_briefly(
        &["--tls", "127.0.0.1:0"],
        &[
            ("CINDER_TURN_TLS_CERT_PEM", cert.as_str()),
            ("CINDER_TURN_TLS_KEY_PEM", "not a key"),
        ],
    );
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("CINDER_TURN_TLS_KEY_PEM"), "{text}");
    let (code, text) = run_briefly(&["--tls", "127.0.0.1:0"], &[]);
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("--tls-cert"), "{text}");
}

//! `make dev`'s binary: it prints where it listens, and its data survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use cinder_client::{Client, Identity};
use cinder_proto::Timestamp;

/// Starts `cinder-dev` on a free port and returns it with the URL it printed.
fn start(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cinder-dev"))
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

#[tokio::test]
async fn published_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let me = Identity::generate(Timestamp::now()).unwrap();

    let (mut first, url) = start(dir.path());
    Client::new(&url).publish(&me.bundle).await.unwrap();
    first.kill().unwrap();
    first.wait().unwrap();

    let (mut second, url) = start(dir.path());
    let got = Client::new(&url).key(me.user_id()).await;
    second.kill().unwrap();
    assert_eq!(got.unwrap(), me.bundle);
}

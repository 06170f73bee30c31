//! A file of a few hundred MB between two members, on the embedded store (the dev server's
//! app, files on disk) and on DynamoDB with S3 (moto), with the process's memory bounded:
//! the client seals, uploads, downloads and opens it as a stream, one 64 KiB segment at a
//! time. Its own test binary, and the two cases take turns, so the peak memory each measures
//! is its own.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Write;

use cinder_client::media::FileToSend;
use cinder_client::{Client, Identity};
use cinder_proto::Timestamp;
use cinder_server::Clock;

/// The size of the file: large enough that holding it once would show in peak memory.
const SIZE: u64 = 256 * 1024 * 1024 + 12_345;
/// The most the peak may grow while it travels both ways.
const BOUND: u64 = 64 * 1024 * 1024;

/// The process's peak resident memory (Linux's VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// One case at a time: peak memory is the process's.
static TURNS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_travels_between_members_in_bounded_memory_on_the_embedded_store() {
    let _turn = TURNS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = cinder_dev::open_store(&data).unwrap();
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(&data).unwrap());
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let objects =
        cinder_dev::media_store_with_max(&data, &url, Clock::system(), 1024 * 1024 * 1024).unwrap();
    let app = cinder_dev::app(store, secrets, Clock::system(), objects);
    tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
    travels(Client::new(&url), dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_travels_between_members_in_bounded_memory_on_dynamodb_and_s3() {
    let _turn = TURNS.lock().await;
    let s = cinder_tests::server::start_with_max_media(
        cinder_tests::server::Backend::Dynamo,
        b"large media test master secret, thirty-two bytes+",
        1024 * 1024 * 1024,
    )
    .await;
    travels(s.client(), tempfile::tempdir().unwrap()).await;
}

async fn travels(client: Client, dir: tempfile::TempDir) {
    // GIVEN Alice's room with Bob in it, and a large file on Alice's disk
    let (alice, bob) = (
        Identity::generate(Timestamp::now()).unwrap(),
        Identity::generate(Timestamp::now()).unwrap(),
    );
    client.publish(&alice.bundle).await.unwrap();
    client.publish(&bob.bundle).await.unwrap();
    let (mut m, spine) = client
        .create_room(&alice, "alice", "Big", &[("files".into(), false, 3600)])
        .await
        .unwrap();
    let channel = spine.channels[0].id;
    let mut pins = BTreeMap::new();
    client
        .invite(&alice, &mut m, &bob.bundle, "bob", &mut pins)
        .await
        .unwrap();
    let mut bob_rooms = BTreeMap::new();
    client
        .accept_invites(&bob, &mut bob_rooms, &mut BTreeMap::new())
        .await
        .unwrap();
    let path = dir.path().join("big.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let block: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
        let mut left = SIZE;
        let mut n = 0u8;
        while left > 0 {
            let take = left.min(block.len() as u64) as usize;
            let mut chunk = block[..take].to_vec();
            chunk[0] = n; // every MiB differs, so a swapped segment would show
            n = n.wrapping_add(1);
            f.write_all(&chunk).unwrap();
            left -= take as u64;
        }
    }
    let before = peak_rss();

    // WHEN Alice sends it and Bob downloads it to his disk
    let number = client
        .send_files(
            &alice,
            &mut m,
            channel,
            ("", &[FileToSend::new(&path)]),
            3600,
            None,
        )
        .await
        .unwrap();
    let bob_m = bob_rooms[&m.room].clone();
    let message = client
        .message(&bob_m, channel, number, &mut BTreeMap::new())
        .await
        .unwrap();
    let out_path = dir.path().join("received.bin");
    let mut out = tokio::fs::File::create(&out_path).await.unwrap();
    let written = client
        .download(
            &bob_m,
            channel,
            number,
            &message.attachments()[0],
            &mut out,
            None,
        )
        .await
        .unwrap();
    drop(out);

    // THEN he has the very bytes, and memory never held the file
    assert_eq!(written, SIZE);
    let grew = peak_rss().saturating_sub(before);
    assert!(
        grew < BOUND,
        "peak memory grew by {} MiB",
        grew / (1024 * 1024)
    );
    let (a, b) = (
        std::fs::File::open(&path).unwrap(),
        std::fs::File::open(&out_path).unwrap(),
    );
    assert!(same_contents(a, b), "the received file differs");
}

fn same_contents(a: std::fs::File, b: std::fs::File) -> bool {
    use std::io::Read;
    let (mut a, mut b) = (std::io::BufReader::new(a), std::io::BufReader::new(b));
    let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = a.read(&mut x).unwrap();
        let mut filled = 0;
        while filled < n {
            let k = b.read(&mut y[filled..n]).unwrap();
            if k == 0 {
                return false;
            }
            filled += k;
        }
        if n == 0 {
            return b.read(&mut y).unwrap() == 0;
        }
        if x[..n] != y[..n] {
            return false;
        }
    }
}

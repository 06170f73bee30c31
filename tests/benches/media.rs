//! `make bench`: media. The client's seal and open throughput for 1 GiB streamed through
//! the STREAM construction (and how much the process's peak memory grows meanwhile), and
//! upload and download throughput of a 256 MiB file through the dev server (real HTTP, files
//! on disk, the reference client end to end).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Instant;

use cinder_client::media::{FileToSend, Opener, SEGMENT, Sealer};
use cinder_client::rooms::Secret32;
use cinder_client::{Client, Identity};
use cinder_proto::{MediaId, Timestamp};
use cinder_server::Clock;

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

fn main() {
    const GIB: u64 = 1024 * 1024 * 1024;
    let key = Secret32::random().unwrap();
    let media = MediaId([9; 16]);
    let segment: Vec<u8> = (0..SEGMENT).map(|i| (i % 251) as u8).collect();
    let before = peak_rss();

    // Seal 1 GiB, keeping only the last segment (as an upload does).
    let started = Instant::now();
    let mut sealer = Sealer::new(&key, media, GIB);
    let mut sealed_segments = Vec::new();
    for i in 0..GIB / SEGMENT as u64 {
        let sealed = sealer.seal(segment.clone()).unwrap();
        if i < 4 {
            sealed_segments.push(sealed);
        }
    }
    let seal_secs = started.elapsed().as_secs_f64();
    let attachment = sealer.attachment(key.clone(), "bench").unwrap();

    // Open 1 GiB: the same four segments cannot be replayed (indices), so re-seal a stream
    // on the fly and open it as it comes, as a download does.
    let started = Instant::now();
    let mut resealer = Sealer::new(&key, media, GIB);
    let mut opener = Opener::new(&attachment);
    let mut opened = 0u64;
    for _ in 0..GIB / SEGMENT as u64 {
        let sealed = resealer.seal(segment.clone()).unwrap();
        opened += opener.feed(&sealed).unwrap().len() as u64;
    }
    opened += opener.finish(&attachment.sha256).unwrap().len() as u64;
    let both_secs = started.elapsed().as_secs_f64();
    assert_eq!(opened, GIB);
    let grew = peak_rss().saturating_sub(before);

    println!("media, client side (1 GiB, 64 KiB segments, AES-256-GCM + SHA-256):");
    println!(
        "  seal                      {:>8.0} MiB/s",
        mib_per_s(GIB, seal_secs)
    );
    println!(
        "  open (after a re-seal)    {:>8.0} MiB/s",
        mib_per_s(GIB, (both_secs - seal_secs).max(f64::EPSILON))
    );
    println!(
        "  peak memory growth        {:>8.1} MiB for 1 GiB sealed and opened",
        grew as f64 / (1024.0 * 1024.0)
    );
    drop(sealed_segments);

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(through_the_dev_server());
}

async fn through_the_dev_server() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = cinder_dev::open_store(&data).unwrap();
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(&data).unwrap());
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let objects = cinder_dev::media_store_with_max(&data, &url, Clock::system(), 2 * SIZE).unwrap();
    tokio::spawn(cinder_dev::serve(
        listener,
        cinder_dev::app_with_limits(
            store,
            secrets,
            Clock::system(),
            objects,
            cinder_dev::calls::Calls::unrelayed(),
            // Figures of the server's own work, without the rate limits a bench outruns.
            cinder_server::limits::Limits::off(),
        ),
        std::future::pending(),
    ));
    let client = Client::new(&url);
    let me = Identity::generate(Timestamp::now()).unwrap();
    client.publish(&me.bundle).await.unwrap();
    let (mut m, spine) = client
        .create_room(&me, "bench", "Bench", &[("files".into(), false, 3600)])
        .await
        .unwrap();
    let channel = spine.channels[0].id;
    let path = dir.path().join("big.bin");
    std::fs::write(&path, vec![7u8; SIZE as usize]).unwrap();

    let started = Instant::now();
    let number = client
        .send_files(
            &me,
            &mut m,
            channel,
            ("", &[FileToSend::new(&path)]),
            3600,
            None,
        )
        .await
        .unwrap();
    let up = started.elapsed().as_secs_f64();
    let message = client
        .message(&m, channel, number, &mut BTreeMap::new())
        .await
        .unwrap();
    let mut out = tokio::fs::File::create(dir.path().join("back.bin"))
        .await
        .unwrap();
    let started = Instant::now();
    client
        .download(
            &m,
            channel,
            number,
            &message.attachments()[0],
            &mut out,
            None,
        )
        .await
        .unwrap();
    let down = started.elapsed().as_secs_f64();
    println!("media through the dev server (256 MiB, HTTP on loopback, files on disk):");
    println!(
        "  upload (read, seal, PUT)  {:>8.0} MiB/s",
        mib_per_s(SIZE, up)
    );
    println!(
        "  download (GET, open, write) {:>6.0} MiB/s",
        mib_per_s(SIZE, down)
    );
}

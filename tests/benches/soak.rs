//! `make bench`: load and soak. The dev server's release binary (`cinder-dev`, which `make
//! bench` builds first), on SQLite on disk, under 32 concurrent clients for at least 60
//! seconds (`SOAK_SECS`), each posting to one shared channel and reading it on from where it
//! left off, with every check the reference client makes.
//!
//! Printed, each next to its goal: errors (goal 0); messages lost or shown twice, from a
//! final read of the whole channel against what every client was told it posted (goal 0);
//! the server's resident memory at the start, the end and its peak, sampled each second
//! (goal: flat, the end within 25% of the start once warm); throughput; post and read
//! p50/p99. The process exits non-zero if a goal of zero is missed.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cinder_client::{Client, Identity};
use cinder_proto::Timestamp;
use cinder_tests::bench::report;

const CLIENTS: usize = 32;

/// The release `cinder-dev` next to this bench's target directory.
fn dev_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join("release/cinder-dev");
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --release -p cinder-dev` (make bench does)",
        binary.display()
    );
    binary
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What one client did.
#[derive(Default)]
struct Tally {
    posted: Vec<(u64, String)>,
    post_times: Vec<Duration>,
    read_times: Vec<Duration>,
    errors: Vec<String>,
}

fn main() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(dev_binary())
        .args(["--addr", "127.0.0.1:0", "--no-turn", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        // 32 clients on one address outrun the rate limits by design: the soak measures
        // the server's own work, so every limit is off (docs/PERFORMANCE.md says so).
        .env(
            "CINDER_LIMITS",
            cinder_server::limits::TABLE
                .iter()
                .map(|(name, _, _)| format!("{name}=off"))
                .collect::<Vec<_>>()
                .join(","),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("cinder-dev starts");
    let pid = server.id();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("cinder-dev prints its address")
            .unwrap();
        if let Some(rest) = line.strip_prefix("cinder-dev: serving ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    // Keep draining its output so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (me, m, channel) = rt.block_on(async {
        let client = Client::new(&url);
        let me = Identity::generate(Timestamp::now()).unwrap();
        client.publish(&me.bundle).await.unwrap();
        let (m, spine) = client
            .create_room(&me, "soak", "Soak", &[("general".into(), false, 3600)])
            .await
            .unwrap();
        (me, m, spine.channels[0].id)
    });

    // Memory, each second, from the end of a short warm-up.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                    samples.push(kib);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            samples
        })
    };

    println!(
        "load and soak: {CLIENTS} clients posting to and reading one channel of the dev server \
         (release, SQLite on disk) for {secs} s:"
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let tallies: Vec<Tally> = rt.block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|task| {
                let (url, me, mut m) = (url.clone(), me.clone(), m.clone());
                tokio::spawn(async move {
                    let client = Client::new(&url);
                    let mut pins = BTreeMap::new();
                    let (mut tally, mut after, mut i) = (Tally::default(), 0u64, 0u64);
                    while Instant::now() < deadline {
                        i += 1;
                        let text = format!("client {task} message {i}");
                        let t = Instant::now();
                        match client.send_message(&me, &mut m, channel, &text, 3600).await {
                            Ok(number) => {
                                tally.post_times.push(t.elapsed());
                                tally.posted.push((number, text));
                            }
                            Err(e) => tally.errors.push(format!("post: {e}")),
                        }
                        let t = Instant::now();
                        match client.read(&m, channel, after, &mut pins).await {
                            Ok(page) => {
                                tally.read_times.push(t.elapsed());
                                if !page.refused.is_empty() {
                                    tally.errors.push(format!("refused: {:?}", page.refused));
                                }
                                after = page.last.unwrap_or(after);
                            }
                            Err(e) => tally.errors.push(format!("read: {e}")),
                        }
                    }
                    tally
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.unwrap());
        }
        all
    });
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let memory = sampler.join().unwrap();

    // What the channel holds, read once more from the start, against what was posted.
    let held: Vec<(u64, String)> = rt.block_on(async {
        let client = Client::new(&url);
        let mut pins = BTreeMap::new();
        let (mut all, mut after) = (Vec::new(), 0);
        loop {
            let page = client.read(&m, channel, after, &mut pins).await.unwrap();
            assert!(page.refused.is_empty(), "{:?}", page.refused);
            all.extend(
                page.messages
                    .iter()
                    .map(|r| (r.number, r.text().unwrap_or_default().to_owned())),
            );
            match page.last {
                Some(last) if page.more => after = last,
                _ => return all,
            }
        }
    });
    let _ = server.kill();
    let _ = server.wait();

    let errors: Vec<&String> = tallies.iter().flat_map(|t| &t.errors).collect();
    let posted: BTreeMap<u64, &String> = tallies
        .iter()
        .flat_map(|t| t.posted.iter().map(|(n, s)| (*n, s)))
        .collect();
    let posted_count: usize = tallies.iter().map(|t| t.posted.len()).sum();
    let by_number: BTreeMap<u64, &String> = held.iter().map(|(n, t)| (*n, t)).collect();
    let texts: BTreeSet<&String> = held.iter().map(|(_, t)| t).collect();
    let duplicated =
        (held.len() - by_number.len()) + (held.len() - texts.len()) + (posted_count - posted.len());
    let lost = posted
        .iter()
        .filter(|(n, text)| by_number.get(*n) != Some(*text))
        .count();
    let reads: usize = tallies.iter().map(|t| t.read_times.len()).sum();
    println!(
        "  posts {posted_count} ({:.0}/s), reads {reads} ({:.0}/s) in {:.1} s",
        posted_count as f64 / elapsed.as_secs_f64(),
        reads as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!("  errors {:<10} goal 0", errors.len());
    for e in errors.iter().take(5) {
        println!("    {e}");
    }
    println!("  lost {lost:<12} goal 0 (every post the server accepted is in the channel)");
    println!("  duplicated {duplicated:<6} goal 0 (no number twice, no message twice)");
    let warm = memory.get(5).or(memory.first()).copied().unwrap_or(0);
    let end = memory.last().copied().unwrap_or(0);
    println!(
        "  server memory: {:.1} MiB after warm-up, {:.1} MiB at the end, peak {:.1} MiB  \
         goal: flat (end within 25% of warm: {})",
        warm as f64 / 1024.0,
        end as f64 / 1024.0,
        peak.load(Ordering::Relaxed) as f64 / 1024.0,
        if end as f64 <= warm as f64 * 1.25 {
            "yes"
        } else {
            "NO"
        }
    );
    let (post_times, read_times): (Vec<Duration>, Vec<Duration>) = (
        tallies.iter().flat_map(|t| t.post_times.clone()).collect(),
        tallies.iter().flat_map(|t| t.read_times.clone()).collect(),
    );
    report(
        "  post (send_message end to end), 32 clients",
        "",
        post_times,
    );
    report(
        "  read on (list + open + verify), 32 clients",
        "",
        read_times,
    );
    if !errors.is_empty() || lost > 0 || duplicated > 0 {
        eprintln!("soak: a goal of zero was missed");
        std::process::exit(1);
    }
}

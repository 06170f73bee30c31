//! `make bench`: messages. Post and read latency through the dev server (real HTTP,
//! SQLite on disk, the reference client end to end) at concurrency 1 and 32, and the
//! client's cost to seal one message and to open and verify a page of 1,000.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use cinder_client::rooms::{open_message, seal_message};
use cinder_client::{Client, Identity};
use cinder_proto::Timestamp;
use cinder_proto::rooms::Shard;
use cinder_server::Clock;
use criterion::Criterion;

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "{name:<52} n={:<5} p50={:>9.1?} p99={:>9.1?}",
        samples.len(),
        pct(0.5),
        pct(0.99)
    );
}

async fn run<F, Fut>(concurrency: usize, per_task: usize, f: F) -> Vec<Duration>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let f = f.clone();
            tokio::spawn(async move {
                let mut samples = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let started = Instant::now();
                    f().await;
                    samples.push(started.elapsed());
                }
                samples
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, me, m, channel) = rt.block_on(async {
        let store = cinder_dev::open_store(dir.path()).unwrap();
        let secrets = Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
        let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let objects = cinder_dev::media_store(dir.path(), &url, Clock::system()).unwrap();
        tokio::spawn(cinder_dev::serve(
            listener,
            cinder_dev::app(store, secrets, Clock::system(), objects),
            std::future::pending(),
        ));
        let client = Client::new(&url);
        let me = Identity::generate(Timestamp::now()).unwrap();
        client.publish(&me.bundle).await.unwrap();
        let (m, spine) = client
            .create_room(&me, "bench", "Bench", &[("general".into(), false, 3600)])
            .await
            .unwrap();
        let channel = spine.channels[0].id;
        (url, me, m, channel)
    });

    println!("messages through the dev server (HTTP, SQLite on disk, client end to end):");
    for concurrency in [1, 32] {
        let (url, me, m) = (url.clone(), me.clone(), m.clone());
        let samples = rt.block_on(run(concurrency, 640 / concurrency, move || {
            let (url, me, mut m) = (url.clone(), me.clone(), m.clone());
            async move {
                Client::new(&url)
                    .send_message(
                        &me,
                        &mut m,
                        channel,
                        "a benchmark message of ordinary length",
                        3600,
                    )
                    .await
                    .unwrap();
            }
        }));
        report(
            &format!("post (reserve + seal + put), concurrency {concurrency}"),
            samples,
        );
    }
    for concurrency in [1, 32] {
        let (url, m) = (url.clone(), m.clone());
        let samples = rt.block_on(run(concurrency, 320 / concurrency, move || {
            let (url, m) = (url.clone(), m.clone());
            async move {
                let mut pins = Default::default();
                let page = Client::new(&url)
                    .read(&m, channel, 0, &mut pins)
                    .await
                    .unwrap();
                assert_eq!((page.messages.len(), page.refused.len()), (50, 0));
            }
        }));
        report(
            &format!("read a page of 50 (list + open + verify), concurrency {concurrency}"),
            samples,
        );
    }

    let now = Timestamp::now();
    let mut sealing = m.clone();
    let page: Vec<Shard> = (1..=1000u64)
        .map(|n| {
            let post = seal_message(
                &me,
                &mut sealing,
                channel,
                n,
                "a benchmark message of ordinary length",
                now,
                now.plus(3600),
            )
            .unwrap();
            Shard {
                number: n,
                ciphertext: post.ciphertext,
                burn_at: post.burn_at,
                posted_at: now,
                delete_hash: post.delete_hash,
                media: post.media,
            }
        })
        .collect();
    let mut samples = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        for shard in &page {
            let opened = open_message(&m, channel, shard).ok().unwrap();
            assert!(opened.verify(&me.bundle.sign_key));
        }
        samples.push(started.elapsed());
    }
    report("client: open and verify a page of 1,000", samples);

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("client: seal and sign one message", |b| {
        b.iter(|| {
            seal_message(
                &me,
                &mut sealing,
                channel,
                7,
                "a benchmark message of ordinary length",
                now,
                now.plus(3600),
            )
            .unwrap()
        })
    });
    c.final_summary();
}

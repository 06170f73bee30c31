//! `make bench`: messages. Post and read latency through the dev server (real HTTP,
//! SQLite on disk, the reference client end to end) at concurrency 1 and 32, and the
//! client's cost to seal one message and to open and verify a page of 1,000.
//!
//! One [`Client`] (one connection pool) serves every sample, as in an app, and each reader
//! keeps its pinned keys from one page to the next. Percentiles are nearest-rank, and a
//! p99 is printed only from 100 samples or more.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_tests::bench::report;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinder_client::directory::SignerKey;
use cinder_client::rooms::messages::open_page;
use cinder_client::rooms::seal_message;
use cinder_client::{Client, Identity};
use cinder_proto::Timestamp;
use cinder_proto::rooms::Shard;
use cinder_server::Clock;

const TEXT: &str = "a benchmark message of ordinary length";

/// `concurrency` tasks, each running `f` `warmup` times untimed and then `per_task` times
/// timed, threading its own state (a membership, pinned keys) from one call to the next.
async fn run<S, F, Fut>(
    concurrency: usize,
    warmup: usize,
    per_task: usize,
    state: impl Fn() -> S,
    f: F,
) -> Vec<Duration>
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = S> + Send,
{
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (f, mut s) = (f.clone(), state());
            tokio::spawn(async move {
                for _ in 0..warmup {
                    s = f(s).await;
                }
                let mut samples = Vec::with_capacity(per_task);
                for _ in 0..per_task {
                    let started = Instant::now();
                    s = f(s).await;
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
    let (client, me, m, channel) = rt.block_on(async {
        let store = cinder_dev::open_store(dir.path()).unwrap();
        let secrets = Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
        let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let objects = cinder_dev::media_store(dir.path(), &url, Clock::system()).unwrap();
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
        let client = Arc::new(Client::new(&url));
        let me = Identity::generate(Timestamp::now()).unwrap();
        client.publish(&me.bundle).await.unwrap();
        let (m, spine) = client
            .create_room(&me, "bench", "Bench", &[("general".into(), false, 3600)])
            .await
            .unwrap();
        let channel = spine.channels[0].id;
        (client, me, m, channel)
    });

    println!("messages through the dev server (HTTP, SQLite on disk, client end to end):");
    for (concurrency, per_task) in [(1, 500), (32, 25)] {
        let (client, me) = (client.clone(), me.clone());
        let m = m.clone();
        let samples = rt.block_on(run(
            concurrency,
            4,
            per_task,
            move || m.clone(),
            move |mut m| {
                let (client, me) = (client.clone(), me.clone());
                async move {
                    client
                        .send_message(&me, &mut m, channel, TEXT, 3600)
                        .await
                        .unwrap();
                    m
                }
            },
        ));
        report(
            &format!("post (send_message end to end), concurrency {concurrency}"),
            "",
            samples,
        );
    }
    for (concurrency, per_task) in [(1, 500), (32, 20)] {
        let (client, m) = (client.clone(), Arc::new(m.clone()));
        let samples = rt.block_on(run(
            concurrency,
            2,
            per_task,
            BTreeMap::new,
            move |mut pins| {
                let (client, m) = (client.clone(), m.clone());
                async move {
                    let page = client.read(&m, channel, 0, &mut pins).await.unwrap();
                    assert_eq!((page.messages.len(), page.refused.len()), (50, 0));
                    pins
                }
            },
        ));
        report(
            &format!("read a page of 50 (list + open + verify), concurrency {concurrency}"),
            "",
            samples,
        );
    }

    println!("the client's own work, one core:");
    let now = Timestamp::now();
    let mut sealing = m.clone();
    let page: Vec<Shard> = (1..=1000u64)
        .map(|n| {
            let post =
                seal_message(&me, &mut sealing, channel, n, TEXT, now, now.plus(3600)).unwrap();
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
    // What `Client::read` does with a page once it has it and the senders' verified keys:
    // open and check every message, then verify the signatures in one batch.
    let keys: BTreeMap<_, _> = [(
        (me.user_id(), me.bundle.version),
        SignerKey {
            key: me.bundle.sign_key,
            superseded_at: None,
        },
    )]
    .into_iter()
    .collect();
    let take = || {
        let page = open_page(&m, channel, 0, &page, Timestamp::now())
            .verify(|sender, version| keys.get(&(sender, version)).copied());
        assert_eq!((page.messages.len(), page.refused.len()), (1000, 0));
        page
    };
    for _ in 0..3 {
        take();
    }
    let mut samples = Vec::new();
    for _ in 0..100 {
        let started = Instant::now();
        let page = take();
        samples.push(started.elapsed());
        drop(page);
    }
    report(
        "client: open and verify a page of 1,000",
        "goal <= 40 ms",
        samples,
    );

    let mut samples = Vec::new();
    for i in 0..2_000 {
        let started = Instant::now();
        let post = seal_message(&me, &mut sealing, channel, 7, TEXT, now, now.plus(3600));
        samples.push(started.elapsed());
        assert!(post.is_ok(), "seal {i}");
    }
    report(
        "client: seal and sign one message",
        "goal < 100 us",
        samples,
    );
}

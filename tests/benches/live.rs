//! `make bench`: the live socket. Post-to-notice latency through the dev server (real HTTP,
//! SQLite on disk, real WebSockets, the reference client): from the moment a member starts
//! posting to the moment a subscriber's socket has the notice, with 1 subscriber and with
//! 100 on the channel (where a sample is the time until the last of the 100 has it).
//!
//! Percentiles are nearest-rank, and a p99 is printed only from 100 samples or more.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_tests::bench::report;
use std::time::{Duration, Instant};

use cinder_client::Client;
use cinder_client::live::LiveSocket;
use cinder_proto::live::ServerFrame;
use cinder_server::Clock;
use cinder_tests::scenarios::register;

/// Posts per figure (untimed warm-up first).
const SAMPLES: usize = 200;
const WARMUP: usize = 10;

/// When `socket` has the notice of message `number`.
async fn heard(socket: &mut LiveSocket, number: u64) -> Instant {
    loop {
        match socket.next().await.unwrap() {
            Some(ServerFrame::Message { number: n, .. }) if n == number => return Instant::now(),
            Some(_) => continue,
            None => panic!("the socket closed"),
        }
    }
}

async fn figure(url: &str, subscribers: usize) -> Vec<Duration> {
    let client = Client::new(url);
    let name = format!("live{subscribers}");
    let alice = register(&client, &name).await;
    let me = alice.me.contents.identity.clone();
    let channels = [("busy".to_owned(), false, 3600)];
    let (mut m, spine) = client
        .create_room(&me, &name, "Live", &channels)
        .await
        .unwrap();
    let channel = spine.channels[0].id;
    let mut sockets = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let mut socket = client.live().await.unwrap();
        socket.follow(&client, &m, channel).await.unwrap();
        sockets.push(socket);
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP + SAMPLES {
        // Every subscriber hears the number the post is about to get: the next one.
        let number = i as u64 + 1;
        let started = Instant::now();
        let post = client.send_message(&me, &mut m, channel, "a benchmark message", 3600);
        let all = futures::future::join_all(sockets.iter_mut().map(|s| heard(s, number)));
        let (posted, times) = tokio::join!(post, all);
        assert_eq!(posted.unwrap(), number);
        let last = times.into_iter().max().unwrap();
        if i >= WARMUP {
            samples.push(last - started);
        }
    }
    samples
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = cinder_dev::open_store(dir.path()).unwrap();
        let secrets = std::sync::Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
        let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let objects = cinder_dev::media_store(dir.path(), &url, Clock::system()).unwrap();
        let app = cinder_dev::app_with_limits(
            store,
            secrets,
            Clock::system(),
            objects,
            cinder_dev::calls::Calls::unrelayed(),
            // Figures of the server's own work, without the rate limits a bench outruns.
            cinder_server::limits::Limits::off(),
        );
        tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));

        println!("live socket on the dev server: post to notice");
        report(
            "post -> notice, 1 subscriber",
            "goal p99 <= 50 ms",
            figure(&url, 1).await,
        );
        report(
            "post -> notice, 100 subscribers (last to hear)",
            "goal p99 <= 100 ms",
            figure(&url, 100).await,
        );
    });
}

//! Reads while writes are in flight, through the dev server (HTTP, SQLite on disk, the
//! reference client end to end), with and without the store's read connections:
//!
//! ```sh
//! cargo run --release -p cinder-dev --example mixed_load
//! ```
//!
//! `make bench` times posts and reads apart; this times them together, which is when reads
//! queued behind writes on one connection: first end to end, then on the store alone (no
//! HTTP, no crypto), where only SQLite's own work is left. Each configuration runs twice,
//! alternately, on a fresh data folder. Figures, never assertions: they move with the
//! machine's load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cinder_client::rooms::Membership;
use cinder_client::{Client, Identity};
use cinder_proto::rooms::Room;
use cinder_proto::{Blob, ChannelId, RoomId, Timestamp};
use cinder_server::Clock;
use cinder_server::store::{KeyStore, RoomStore};
use cinder_sqlite::SqliteStore;

const TEXT: &str = "a benchmark message of ordinary length";
/// Tasks posting without pause while the readers run.
const POSTERS: usize = 16;
/// Tasks reading, and how many reads each times.
const READERS: usize = 16;
const READS: usize = 25;

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {name:<44} n={:<5} p50={:>9.1?} p99={:>9.1?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
}

struct World {
    client: Arc<Client>,
    me: Arc<Identity>,
    m: Membership,
    channel: ChannelId,
    _dir: tempfile::TempDir,
}

async fn world(readers: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = cinder_dev::open_store_with_readers(dir.path(), readers).unwrap();
    let secrets = Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let objects = cinder_dev::media_store(dir.path(), &url, Clock::system()).unwrap();
    tokio::spawn(cinder_dev::serve(
        listener,
        cinder_dev::app(store, secrets, Clock::system(), objects),
        std::future::pending(),
    ));
    let client = Arc::new(Client::new(&url));
    let me = Identity::generate(Timestamp::now()).unwrap();
    client.publish(&me.bundle).await.unwrap();
    let (mut m, spine) = client
        .create_room(&me, "load", "Load", &[("general".into(), false, 3600)])
        .await
        .unwrap();
    let channel = spine.channels[0].id;
    for _ in 0..50 {
        client
            .send_message(&me, &mut m, channel, TEXT, 3600)
            .await
            .unwrap();
    }
    World {
        client,
        me: Arc::new(me),
        m,
        channel,
        _dir: dir,
    }
}

/// Page reads and key lookups by [`READERS`] tasks while [`POSTERS`] tasks post.
async fn mixed(w: &World) {
    let stop = Arc::new(AtomicBool::new(false));
    let posters: Vec<_> = (0..POSTERS)
        .map(|_| {
            let (client, me, mut m, stop) =
                (w.client.clone(), w.me.clone(), w.m.clone(), stop.clone());
            let channel = w.channel;
            tokio::spawn(async move {
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    client
                        .send_message(&me, &mut m, channel, TEXT, 3600)
                        .await
                        .unwrap();
                    samples.push(started.elapsed());
                }
                samples
            })
        })
        .collect();
    // Let the posters get going before timing reads.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (client, me, m) = (w.client.clone(), w.me.clone(), Arc::new(w.m.clone()));
            let channel = w.channel;
            tokio::spawn(async move {
                let (mut pages, mut keys) = (Vec::new(), Vec::new());
                let mut pins = BTreeMap::new();
                for _ in 0..READS {
                    let started = Instant::now();
                    let page = client.read(&m, channel, 0, &mut pins).await.unwrap();
                    assert_eq!((page.messages.len(), page.refused.len()), (50, 0));
                    pages.push(started.elapsed());
                    let started = Instant::now();
                    client.key(me.user_id()).await.unwrap();
                    keys.push(started.elapsed());
                }
                (pages, keys)
            })
        })
        .collect();
    let (mut pages, mut keys) = (Vec::new(), Vec::new());
    for r in readers {
        let (p, k) = r.await.unwrap();
        pages.extend(p);
        keys.extend(k);
    }
    stop.store(true, Ordering::Relaxed);
    let mut posts = Vec::new();
    for p in posters {
        posts.extend(p.await.unwrap());
    }
    report("read a page of 50, during posts", pages);
    report("look up a key bundle, during posts", keys);
    report("post, during reads", posts);
}

/// Key and room lookups by [`READERS`] tasks on the store while [`POSTERS`] tasks each
/// write new versions of a room with a 64 KiB spine (spines go up to 128 KiB).
async fn store_only(readers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(SqliteStore::open_with_readers(&dir.path().join("db.sqlite3"), readers).unwrap());
    let me = Identity::generate(Timestamp::now()).unwrap();
    store.insert(&me.bundle).await.unwrap();
    let key = me.bundle.sign_key;
    let room = move |n: usize, version: u64| Room {
        room_id: RoomId([u8::try_from(n).unwrap(); 16]),
        version,
        spine: Blob(vec![u8::try_from(version % 251).unwrap(); 64 * 1024]),
        admin_key: key,
        member_key: key,
        channels: Default::default(),
    };
    for n in 0..POSTERS {
        store.create_room(&room(n, 1)).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..POSTERS)
        .map(|n| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut version = 1;
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    let next = room(n, version);
                    let started = Instant::now();
                    store.update_room(&next).await.unwrap();
                    samples.push(started.elapsed());
                }
                samples
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let user = me.user_id();
    let lookups: Vec<_> = (0..READERS)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                let (mut keys, mut rooms) = (Vec::new(), Vec::new());
                for _ in 0..20 * READS {
                    let started = Instant::now();
                    store.current(&user).await.unwrap().unwrap();
                    keys.push(started.elapsed());
                    let started = Instant::now();
                    let id = RoomId([u8::try_from(n % POSTERS).unwrap(); 16]);
                    store.room(&id).await.unwrap().unwrap();
                    rooms.push(started.elapsed());
                }
                (keys, rooms)
            })
        })
        .collect();
    let (mut keys, mut rooms) = (Vec::new(), Vec::new());
    for l in lookups {
        let (k, r) = l.await.unwrap();
        keys.extend(k);
        rooms.extend(r);
    }
    stop.store(true, Ordering::Relaxed);
    let mut writes = Vec::new();
    for w in writers {
        writes.extend(w.await.unwrap());
    }
    report("store: key lookup, during room writes", keys);
    report("store: room lookup (64 KiB), during writes", rooms);
    report("store: room write (64 KiB spine)", writes);
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{READERS} tasks reading while {POSTERS} post, through the dev server (HTTP, SQLite on disk):"
    );
    for round in 1..=2 {
        for readers in [0, cinder_sqlite::DEFAULT_READERS] {
            println!("round {round}, {readers} read connections:");
            rt.block_on(async {
                let w = world(readers).await;
                mixed(&w).await;
            });
        }
    }
    println!("the same on the store alone ({READERS} tasks reading while {POSTERS} write):");
    for round in 1..=2 {
        for readers in [0, cinder_sqlite::DEFAULT_READERS] {
            println!("round {round}, {readers} read connections:");
            rt.block_on(store_only(readers));
        }
    }
}

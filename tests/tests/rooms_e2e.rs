//! Rooms end to end with the reference client library over real HTTP, on both stores: the
//! three-user scenario (`cinder_tests::scenarios`) and 100 concurrent posts.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use cinder_tests::scenarios::{PassTime, register, three_users};
use cinder_tests::server::{Backend, TestServer, start};

const MASTER: &[u8] = b"rooms test master secret, thirty-two bytes or more";

async fn scenario(s: TestServer) {
    // The server's clock runs ahead on demand; burn needs no real waiting.
    let time = s.time.clone();
    let pass: PassTime = Box::new(move |secs| {
        time.advance(secs);
        Box::pin(async {})
    });
    three_users(&s.client(), &format!("{:?}", s.backend), &pass).await;
}

/// The same scenario against `make dev`'s own app (`cinder_dev::app`), on a clock that is
/// real time plus jumps, so burning needs no real waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_users_through_the_dev_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = cinder_dev::open_store(dir.path()).unwrap();
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (clock, time) = cinder_server::Clock::skewed();
    let objects = cinder_dev::media_store(dir.path(), &url, clock.clone()).unwrap();
    let app = cinder_dev::app(store, secrets, clock, objects);
    tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
    let pass: PassTime = Box::new(move |secs| {
        time.advance(secs);
        Box::pin(async {})
    });
    three_users(&cinder_client::Client::new(&url), "dev server", &pass).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_users_chat_burn_and_remove_on_sqlite() {
    scenario(start(Backend::Sqlite, MASTER).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_users_chat_burn_and_remove_on_dynamodb() {
    scenario(start(Backend::Dynamo, MASTER).await).await;
}

async fn concurrent_posts(s: TestServer) {
    let client = s.client();
    let alice = register(&client, "poster").await;
    let channels = [("busy".to_owned(), false, 3600)];
    let (m, spine) = client
        .create_room(&alice.me.contents.identity, "poster", "Busy", &channels)
        .await
        .unwrap();
    let channel = spine.channels[0].id;
    let before = s.requests.load(Ordering::SeqCst);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (client, me, mut m) = (s.client(), alice.me.contents.identity.clone(), m.clone());
            tokio::spawn(async move {
                client
                    .send_message(&me, &mut m, channel, &format!("message {i}"), 3600)
                    .await
            })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap().unwrap());
    }
    let requests = s.requests.load(Ordering::SeqCst) - before;
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(
        numbers,
        (1..=100).collect::<Vec<u64>>(),
        "{:?}: 100 distinct numbers",
        s.backend
    );
    // Every poster proposed number 1: one won, each other got a number held for it and
    // posted once more. Two requests at worst, never a retry storm.
    assert!(
        (101..=200).contains(&requests),
        "{:?}: {requests} requests for 100 posts",
        s.backend
    );
    let mut pins = BTreeMap::new();
    let (mut all, mut after) = (Vec::new(), 0);
    loop {
        let page = client.read(&m, channel, after, &mut pins).await.unwrap();
        assert_eq!(page.refused, vec![]);
        all.extend(page.messages);
        match page.last {
            Some(n) if page.more => after = n,
            _ => break,
        }
    }
    assert_eq!(all.len(), 100, "{:?}: all 100 readable", s.backend);
    assert!(all.windows(2).all(|w| w[0].number < w[1].number));
}

/// One request per message while the channel is quiet, two after someone else posted.
async fn requests_per_message(s: TestServer) {
    let client = s.client();
    let alice = register(&client, "quiet").await;
    let channels = [("quiet".to_owned(), false, 3600)];
    let me = alice.me.contents.identity.clone();
    let (mut m, spine) = client
        .create_room(&me, "quiet", "Quiet", &channels)
        .await
        .unwrap();
    let channel = spine.channels[0].id;
    let count = || s.requests.load(Ordering::SeqCst);
    for expected in 1..=3 {
        let before = count();
        let n = client
            .send_message(&me, &mut m, channel, "hello", 600)
            .await
            .unwrap();
        assert_eq!((n, count() - before), (expected, 1), "{:?}", s.backend);
    }
    // Another device of the same member posts (another client, same membership state):
    // this client's next proposal is taken, and the one retry lands right after it.
    let other = s.client();
    let mut elsewhere = m.clone();
    other
        .send_message(&me, &mut elsewhere, channel, "from elsewhere", 600)
        .await
        .unwrap();
    let before = count();
    let n = client
        .send_message(&me, &mut m, channel, "after that", 600)
        .await
        .unwrap();
    assert_eq!((n, count() - before), (5, 2), "{:?}", s.backend);
    // And after reading the channel, the proposal is right the first time again.
    other
        .send_message(&me, &mut elsewhere, channel, "and again", 600)
        .await
        .unwrap();
    let mut pins = BTreeMap::new();
    client.read(&m, channel, 0, &mut pins).await.unwrap();
    let before = count();
    let n = client
        .send_message(&me, &mut m, channel, "caught up", 600)
        .await
        .unwrap();
    assert_eq!((n, count() - before), (7, 1), "{:?}", s.backend);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_message_when_quiet_on_sqlite() {
    requests_per_message(start(Backend::Sqlite, MASTER).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_message_when_quiet_on_dynamodb() {
    requests_per_message(start(Backend::Dynamo, MASTER).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_posts_get_distinct_numbers_on_sqlite() {
    concurrent_posts(start(Backend::Sqlite, MASTER).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_posts_get_distinct_numbers_on_dynamodb() {
    concurrent_posts(start(Backend::Dynamo, MASTER).await).await;
}

/// A file between two members through the server's media routes and its object store (files
/// on SQLite, moto's S3 on DynamoDB): downloaded and decrypted by the other member, and no
/// longer served once its message burns.
async fn a_file_between_members(s: TestServer) {
    let client = s.client();
    let alice = register(&client, "sender").await;
    let bob = register(&client, "receiver").await;
    let me = alice.me.contents.identity.clone();
    let (mut m, spine) = client
        .create_room(&me, "sender", "Files", &[("files".to_owned(), false, 3600)])
        .await
        .unwrap();
    let channel = spine.channels[0].id;
    let mut pins = BTreeMap::new();
    client
        .invite(
            &me,
            &mut m,
            &bob.me.contents.identity.bundle,
            "receiver",
            &mut pins,
        )
        .await
        .unwrap();
    let mut bob_rooms = BTreeMap::new();
    client
        .accept_invites(&bob.me.contents.identity, &mut bob_rooms, &mut pins)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.jpg");
    let bytes: Vec<u8> = (0..5_000_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&path, &bytes).unwrap();
    let files = [cinder_client::media::FileToSend::new(&path)];
    let number = client
        .send_files(&me, &mut m, channel, ("look", &files), 600, None)
        .await
        .unwrap();

    let bob_m = bob_rooms[&m.room].clone();
    let message = client
        .message(&bob_m, channel, number, &mut BTreeMap::new())
        .await
        .unwrap();
    assert_eq!(message.attachments()[0].name, "photo.jpg");
    let mut got = Vec::new();
    client
        .download(
            &bob_m,
            channel,
            number,
            &message.attachments()[0],
            &mut got,
            None,
        )
        .await
        .unwrap();
    assert_eq!(got, bytes, "{:?}", s.backend);

    // Once the message burns, no URL is issued.
    s.time.advance(601);
    let refused = client
        .download(
            &bob_m,
            channel,
            number,
            &message.attachments()[0],
            &mut Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(cinder_proto::ErrorCode::NotFound),
        "{:?}",
        s.backend
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_between_members_on_sqlite() {
    a_file_between_members(start(Backend::Sqlite, MASTER).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_between_members_on_dynamodb_and_s3() {
    a_file_between_members(start(Backend::Dynamo, MASTER).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_is_shut_out_by_the_rotation_on_sqlite() {
    let s = start(Backend::Sqlite, MASTER).await;
    cinder_tests::leaving::leaving(&s.client(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_is_shut_out_by_the_rotation_on_dynamodb() {
    let s = start(Backend::Dynamo, MASTER).await;
    cinder_tests::leaving::leaving(&s.client(), "dynamodb").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admins_never_overwrite_each_other_on_sqlite() {
    let s = start(Backend::Sqlite, MASTER).await;
    cinder_tests::leaving::concurrent_admins(&s.client(), "sqlite", 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admins_never_overwrite_each_other_on_dynamodb() {
    let s = start(Backend::Dynamo, MASTER).await;
    cinder_tests::leaving::concurrent_admins(&s.client(), "dynamodb", 6).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_renames_deletions_and_burn_changes_show_for_every_member_on_sqlite() {
    let s = start(Backend::Sqlite, MASTER).await;
    cinder_tests::leaving::channels(&s.client(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_renames_deletions_and_burn_changes_show_for_every_member_on_dynamodb() {
    let s = start(Backend::Dynamo, MASTER).await;
    cinder_tests::leaving::channels(&s.client(), "dynamodb").await;
}

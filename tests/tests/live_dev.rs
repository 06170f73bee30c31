//! The live socket through `make dev`'s own app (`cinder_dev::app`) over real HTTP and real
//! WebSockets, with the reference client: a notice reaches every subscriber of a channel and
//! nobody else; forged and replayed proofs are refused over the wire; a dropped socket
//! loses nothing once the client catches up; a removed member hears nothing new; a hundred
//! subscribers all hear.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use cinder_client::Client;
use cinder_client::live::LiveSocket;
use cinder_client::rooms::Membership;
use cinder_proto::live::{Place, Proof, ServerFrame};
use cinder_proto::{ChannelId, ErrorCode, Nonce, RoomId, Timestamp};
use cinder_server::Clock;
use cinder_tests::scenarios::{Device, register};

/// `make dev`'s app on a free port; its base URL and live hub.
async fn dev_server_and_hub(dir: &std::path::Path) -> (String, cinder_dev::live::Hub) {
    let store = cinder_dev::open_store(dir).unwrap();
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(dir).unwrap());
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let objects = cinder_dev::media_store(dir, &url, Clock::system()).unwrap();
    let (app, hub) = cinder_dev::app_with_hub(store, secrets, Clock::system(), objects);
    tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
    (url, hub)
}

/// `make dev`'s app on a free port; its base URL.
async fn dev_server(dir: &std::path::Path) -> String {
    dev_server_and_hub(dir).await.0
}

/// Alice's room with two text channels, and bob and carol in it.
struct World {
    client: Client,
    alice: Device,
    bob: Device,
    carol: Device,
    room: RoomId,
    general: ChannelId,
    other: ChannelId,
}

impl World {
    async fn new(url: &str) -> Self {
        let client = Client::new(url);
        let mut alice = register(&client, "alice").await;
        let mut bob = register(&client, "bob").await;
        let mut carol = register(&client, "carol").await;
        let channels = [
            ("general".to_owned(), false, 3600),
            ("other".to_owned(), false, 3600),
        ];
        let (mut m, spine) = client
            .create_room(&alice.me.contents.identity, "alice", "Team", &channels)
            .await
            .unwrap();
        let room = m.room;
        for (who, name) in [(&mut bob, "bob"), (&mut carol, "carol")] {
            let id = who.me.contents.identity.user_id();
            let keys = client.verified_keys(id, None).await.unwrap();
            client
                .invite(
                    &alice.me.contents.identity,
                    &mut m,
                    &keys,
                    name,
                    &mut alice.pins,
                )
                .await
                .unwrap();
            let joined = client
                .accept_invites(&who.me.contents.identity, &mut who.rooms, &mut who.pins)
                .await
                .unwrap();
            assert_eq!(joined, vec![room]);
        }
        alice.rooms.insert(room, m);
        Self {
            client,
            alice,
            bob,
            carol,
            room,
            general: spine.channels[0].id,
            other: spine.channels[1].id,
        }
    }

    fn m<'a>(&self, who: &'a Device) -> &'a Membership {
        &who.rooms[&self.room]
    }

    async fn socket(&self, who: &Device, channel: ChannelId) -> LiveSocket {
        let mut socket = self.client.live().await.unwrap();
        socket
            .follow(&self.client, self.m(who), channel)
            .await
            .unwrap();
        socket
    }

    async fn read_bob(&mut self, after: u64) -> cinder_client::rooms::Page {
        let m = self.bob.rooms[&self.room].clone();
        self.client
            .read(&m, self.general, after, &mut self.bob.pins)
            .await
            .unwrap()
    }

    async fn post(&mut self, channel: ChannelId, text: &str) -> u64 {
        self.client
            .send_message(
                &self.alice.me.contents.identity,
                self.alice.rooms.get_mut(&self.room).unwrap(),
                channel,
                text,
                3600,
            )
            .await
            .unwrap()
    }
}

/// The next frame within a few seconds.
async fn next(socket: &mut LiveSocket) -> ServerFrame {
    tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("a frame in time")
        .unwrap()
        .expect("the socket is open")
}

/// Nothing arrives for a while.
async fn quiet(socket: &mut LiveSocket) {
    if let Ok(frame) = tokio::time::timeout(Duration::from_millis(500), socket.next()).await {
        panic!("expected nothing, got {frame:?}");
    }
}

fn notice(room: RoomId, channel: ChannelId, number: u64) -> ServerFrame {
    ServerFrame::Message {
        room,
        channel,
        number,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notice_reaches_every_subscriber_of_its_channel_and_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new(&dev_server(dir.path()).await).await;
    let mut alice = w.socket(&w.alice, w.general).await;
    let mut bob = w.socket(&w.bob, w.general).await;
    let mut carol_elsewhere = w.socket(&w.carol, w.other).await;

    let n = w.post(w.general, "hello").await;

    assert_eq!(next(&mut alice).await, notice(w.room, w.general, n));
    assert_eq!(next(&mut bob).await, notice(w.room, w.general, n));
    quiet(&mut carol_elsewhere).await;

    // A notice is a hint only: bob reads the message itself, with every check.
    let page = w.read_bob(n - 1).await;
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].text().unwrap(), "hello");

    // And the other channel's subscriber hears of its own channel.
    let m = w.post(w.other, "elsewhere").await;
    assert_eq!(next(&mut carol_elsewhere).await, notice(w.room, w.other, m));
    quiet(&mut bob).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_subscriptions_are_refused_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new(&dev_server(dir.path()).await).await;
    let place = Place {
        room: w.room,
        channel: w.general,
    };
    let mut socket = w.client.live().await.unwrap();

    // Signed by a key that is not the channel's capability.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let now = Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let forged = Proof::sign(&stranger, place, now, Nonce([9; 16]));
    socket.subscribe(vec![forged]).await.unwrap();
    assert!(
        matches!(next(&mut socket).await, ServerFrame::Refused { code, .. } if code == ErrorCode::Unauthenticated)
    );

    // A good proof for another channel, relabelled as this one.
    let mut relabelled = w.client.live_proof(w.m(&w.bob), w.other).unwrap();
    relabelled.channel = w.general;
    socket.subscribe(vec![relabelled]).await.unwrap();
    assert!(matches!(
        next(&mut socket).await,
        ServerFrame::Refused { .. }
    ));

    // A good proof works once; replayed (on another socket too), it is refused.
    let proof = w.client.live_proof(w.m(&w.bob), w.general).unwrap();
    socket.subscribe(vec![proof.clone()]).await.unwrap();
    assert_eq!(
        next(&mut socket).await,
        ServerFrame::Subscribed {
            room: w.room,
            channel: w.general
        }
    );
    let mut thief = w.client.live().await.unwrap();
    thief.subscribe(vec![proof]).await.unwrap();
    assert!(matches!(
        next(&mut thief).await,
        ServerFrame::Refused { .. }
    ));

    // Only the socket that proved it hears.
    let n = w.post(w.general, "for members").await;
    assert_eq!(next(&mut socket).await, notice(w.room, w.general, n));
    quiet(&mut thief).await;

    // Not-a-frame is answered with an error, and the socket stays usable.
    let mut raw = tokio_tungstenite::connect_async(w.client.live_url())
        .await
        .unwrap()
        .0;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    for bad in [
        Message::Text("not json".into()),
        Message::Binary(vec![1, 2, 3].into()),
        Message::Text("x".repeat(40 * 1024).into()),
    ] {
        raw.send(bad).await.unwrap();
        let answer = loop {
            match tokio::time::timeout(Duration::from_secs(10), raw.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
            {
                Message::Text(t) => break t,
                _ => continue,
            }
        };
        let frame: ServerFrame = serde_json::from_str(answer.as_str()).unwrap();
        assert!(matches!(frame, ServerFrame::Error { .. }), "{frame:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_socket_loses_nothing_once_the_client_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let (url, hub) = dev_server_and_hub(dir.path()).await;
    let mut w = World::new(&url).await;
    let mut bob = w.socket(&w.bob, w.general).await;
    assert_eq!(hub.connections(), 1);
    let first = w.post(w.general, "one").await;
    assert_eq!(next(&mut bob).await, notice(w.room, w.general, first));
    let mut shown: Vec<String> = Vec::new();
    let mut last = 0;
    let mut read_on = |page: cinder_client::rooms::Page, last: &mut u64| {
        shown.extend(
            page.messages
                .iter()
                .map(|r| r.text().unwrap_or_default().to_owned()),
        );
        *last = page.last.unwrap_or(*last);
    };
    let page = w.read_bob(last).await;
    read_on(page, &mut last);

    // WHEN bob's socket drops and two messages are posted meanwhile
    bob.close().await;
    // The server forgets the socket and its subscriptions.
    for _ in 0..100 {
        if hub.connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hub.connections(), 0);
    w.post(w.general, "two").await;
    w.post(w.general, "three").await;

    // THEN on reconnecting he subscribes, catches up from the last number shown, and
    // follows notices again
    let mut bob = w.socket(&w.bob, w.general).await;
    let page = w.read_bob(last).await;
    read_on(page, &mut last);
    let four = w.post(w.general, "four").await;
    assert_eq!(next(&mut bob).await, notice(w.room, w.general, four));
    let page = w.read_bob(last).await;
    read_on(page, &mut last);
    assert_eq!(shown, ["one", "two", "three", "four"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_hears_nothing_after_the_removal() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new(&dev_server(dir.path()).await).await;
    let mut carol = w.socket(&w.carol, w.general).await;
    let before = w.post(w.general, "before").await;
    assert_eq!(next(&mut carol).await, notice(w.room, w.general, before));

    // WHEN alice removes carol (the channel keys are replaced) and bob takes the new keys
    let carol_id = w.carol.me.contents.identity.user_id();
    w.client
        .kick(
            &w.alice.me.contents.identity,
            w.alice.rooms.get_mut(&w.room).unwrap(),
            carol_id,
            &mut w.alice.pins,
        )
        .await
        .unwrap();
    w.client
        .accept_invites(
            &w.bob.me.contents.identity,
            &mut w.bob.rooms,
            &mut w.bob.pins,
        )
        .await
        .unwrap();
    let mut bob = w.socket(&w.bob, w.general).await;
    let after = w.post(w.general, "after").await;

    // THEN bob hears of the new message and carol does not, on her old subscription or on
    // a new one proved with her old keys
    assert_eq!(next(&mut bob).await, notice(w.room, w.general, after));
    quiet(&mut carol).await;
    let mut again = w.client.live().await.unwrap();
    let refused = again
        .follow(&w.client, w.m(&w.carol), w.general)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Some(ErrorCode::Unauthenticated));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_subscribers_all_hear() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new(&dev_server(dir.path()).await).await;
    let mut sockets = Vec::new();
    for i in 0..100 {
        let who = [&w.alice, &w.bob, &w.carol][i % 3];
        sockets.push(w.socket(who, w.general).await);
    }
    let n = w.post(w.general, "to everyone").await;
    let heard = futures::future::join_all(sockets.iter_mut().map(next)).await;
    assert_eq!(heard.len(), 100);
    assert!(heard.iter().all(|f| *f == notice(w.room, w.general, n)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_never_reads_holds_up_no_post_and_no_one_else() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let dir = tempfile::tempdir().unwrap();
    let mut w = World::new(&dev_server(dir.path()).await).await;
    // A socket that subscribes and then never reads a frame.
    let mut stuck = tokio_tungstenite::connect_async(w.client.live_url())
        .await
        .unwrap()
        .0;
    let proof = w.client.live_proof(w.m(&w.carol), w.general).unwrap();
    let frame = cinder_proto::live::ClientFrame::Subscribe {
        channels: vec![proof],
    };
    stuck
        .send(Message::Text(serde_json::to_string(&frame).unwrap().into()))
        .await
        .unwrap();
    let mut bob = w.socket(&w.bob, w.general).await;
    let started = std::time::Instant::now();
    let mut last = 0;
    for i in 0..50 {
        last = w.post(w.general, &format!("message {i}")).await;
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    let mut heard = Vec::new();
    // (Each notice goes out from its own task: they may come in any order.)
    while heard.len() < last as usize {
        if let ServerFrame::Message { number, .. } = next(&mut bob).await {
            heard.push(number);
        }
    }
    heard.sort_unstable();
    assert_eq!(heard, (1..=last).collect::<Vec<_>>());
    drop(stuck);
}

//! The live socket against a lying server: notices are hints, so a server that forges,
//! replays or relabels them, or smuggles content into them, can make a follower read early
//! or late, never show what the room did not send, show a message twice, or hide one.
//!
//! The live server here is the test's own WebSocket server, saying exactly what the test
//! queues; the HTTP API is the dev server's, behind a layer that can replay old messages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cinder_proto::ErrorCode;
use cinder_proto::live::ServerFrame;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::live::LiveSocket;

/// A live server that sends, on whichever socket is open, each text the test queues (raw
/// JSON, so it can send what no honest server would), and ignores what it is sent.
struct LyingLive {
    url: String,
    say: mpsc::UnboundedSender<String>,
}

impl LyingLive {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/live", listener.local_addr().unwrap());
        let (say, mut said) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            // One socket at a time: the next is taken once the client closes the last.
            while let Ok((stream, _)) = listener.accept().await {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                loop {
                    tokio::select! {
                        text = said.recv() => match text {
                            Some(text) => ws.send(Message::Text(text.into())).await.unwrap(),
                            None => return,
                        },
                        heard = ws.next() => match heard {
                            Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                            Some(Ok(_)) => {}
                        },
                    }
                }
            }
        });
        Self { url, say }
    }

    fn say(&self, frame: &ServerFrame) {
        self.say_raw(serde_json::to_string(frame).unwrap());
    }

    fn say_raw(&self, text: String) {
        self.say.send(text).unwrap();
    }
}

/// Shards the HTTP layer puts in front of every page it serves, as a server replaying
/// messages a reader has already been shown.
#[derive(Clone, Default)]
struct Replay(Arc<Mutex<Vec<serde_json::Value>>>);

async fn replay_pages(State(replay): State<Replay>, request: Request, next: Next) -> Response {
    // A page: `GET /messages/{room}/{channel}?after=…` (a single message has no query).
    let page = request.method() == axum::http::Method::GET
        && request.uri().path().starts_with("/messages/")
        && request.uri().query().is_some();
    let response = next.run(request).await;
    let old = replay.0.lock().unwrap().clone();
    if !page || old.is_empty() || !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let shards = json["shards"].as_array_mut().unwrap();
    shards.splice(0..0, old);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(serde_json::to_vec(&json).unwrap()))
}

/// A follower as an app writes one on the library: at every notice for its channel (a new
/// message or a deletion alike: either is only a reason to look) it reads on from the last
/// number it has seen, and shows what the page shows. It never removes what it has shown.
struct Follower {
    socket: LiveSocket,
    after: u64,
    shown: Vec<(u64, String)>,
    refused: Vec<(u64, Refusal)>,
}

impl Follower {
    async fn catch_up(&mut self, w: &World, bob: &mut User, room: RoomId, channel: ChannelId) {
        let page = bob.read_after(w, room, channel, self.after).await;
        for r in page.messages {
            self.shown
                .push((r.number, r.text().unwrap_or_default().to_owned()));
        }
        self.refused.extend(page.refused);
        self.after = self.after.max(page.last.unwrap_or(0));
    }

    /// Takes the next frame; reads if it is a notice for this channel.
    async fn hear(
        &mut self,
        w: &World,
        bob: &mut User,
        room: RoomId,
        channel: ChannelId,
    ) -> Result<ServerFrame, ClientError> {
        let frame = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
            .await
            .expect("the lying server said nothing")?
            .expect("the socket closed");
        if let ServerFrame::Message {
            room: r,
            channel: c,
            ..
        }
        | ServerFrame::Deleted {
            room: r,
            channel: c,
            ..
        } = frame
            && (r, c) == (room, channel)
        {
            self.catch_up(w, bob, room, channel).await;
        }
        Ok(frame)
    }
}

async fn post(w: &World, u: &mut User, room: RoomId, channel: ChannelId, text: &str) -> u64 {
    let m = u.rooms.get_mut(&room).unwrap();
    w.client
        .send_message(&u.me, m, channel, text, 600)
        .await
        .unwrap()
}

impl User {
    async fn read_after(
        &mut self,
        w: &World,
        room: RoomId,
        channel: ChannelId,
        after: u64,
    ) -> messages::Page {
        let m = self.rooms[&room].clone();
        w.client
            .read(&m, channel, after, &mut self.pins)
            .await
            .unwrap()
    }
}

/// Defences: a subscription counts only when answered for its own channel
/// (`LiveSocket::follow` matches the place); a frame is exactly a notice, nothing more
/// (`ServerFrame` parses with `deny_unknown_fields`, so content smuggled into one is an
/// error, not something to show); a read after a notice takes only numbers past the
/// cursor (`open_page`: a replayed message is `OutOfOrder`) and every other check a page
/// gets (a forged message is refused). A forged deletion hides nothing because the library
/// acts on no notice: a deletion is, at most, a reason to read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_replayed_live_notices_show_nothing_twice_and_hide_nothing() {
    let replay = Replay::default();
    let layer = axum::middleware::from_fn_with_state(replay.clone(), replay_pages);
    let w = world_behind(Clock::system(), |app| app.layer(layer)).await;
    let (mut alice, mut bob, carol, room, general) = team(&w).await;
    let live = LyingLive::start().await;
    let other = ChannelId([9; 16]);
    let notice = |channel, number| ServerFrame::Message {
        room,
        channel,
        number,
    };
    assert_eq!(post(&w, &mut alice, room, general, "one").await, 1);

    // A subscription answered for another channel does not count: the refusal of Bob's
    // own, which follows, does.
    let mut socket = LiveSocket::connect(&live.url).await.unwrap();
    live.say(&ServerFrame::Subscribed {
        room,
        channel: other,
    });
    live.say(&ServerFrame::Refused {
        room,
        channel: general,
        code: ErrorCode::Unauthenticated,
    });
    let refused = socket
        .follow(&w.client, &bob.rooms[&room], general)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::Unauthenticated),
        "{refused}"
    );
    socket.close().await;

    // GIVEN Bob following the channel, caught up on message 1
    let mut socket = LiveSocket::connect(&live.url).await.unwrap();
    live.say(&ServerFrame::Subscribed {
        room,
        channel: general,
    });
    socket
        .follow(&w.client, &bob.rooms[&room], general)
        .await
        .unwrap();
    let mut f = Follower {
        socket,
        after: 0,
        shown: Vec::new(),
        refused: Vec::new(),
    };
    f.catch_up(&w, &mut bob, room, general).await;
    assert_eq!(f.shown, vec![(1, "one".to_owned())]);

    // WHEN the server replays message 1's notice, and serves message 1 again with the page
    let stored = w
        .store
        .shards(
            &ChannelRef {
                room,
                channel: general,
            },
            0,
            10,
            Timestamp::now(),
        )
        .await
        .unwrap();
    *replay.0.lock().unwrap() = vec![serde_json::to_value(&stored[0]).unwrap()];
    live.say(&notice(general, 1));
    f.hear(&w, &mut bob, room, general).await.unwrap();
    // AND sends notices for a number that does not exist, and for another channel
    live.say(&notice(general, 99));
    f.hear(&w, &mut bob, room, general).await.unwrap();
    live.say(&notice(other, 2));
    f.hear(&w, &mut bob, room, general).await.unwrap();
    *replay.0.lock().unwrap() = Vec::new();
    // AND says message 2 was deleted, the moment Alice posts it
    assert_eq!(post(&w, &mut alice, room, general, "two").await, 2);
    live.say(&ServerFrame::Deleted {
        room,
        channel: general,
        number: 2,
    });
    f.hear(&w, &mut bob, room, general).await.unwrap();
    // AND announces message 3, which Carol (with the server) wrote in Alice's name
    let impostor = Identity {
        bundle: alice.me.bundle.clone(),
        seeds: carol.me.seeds.clone(),
    };
    let mut carol_keys = carol.rooms[&room].clone();
    w.client
        .send_message(
            &impostor,
            &mut carol_keys,
            general,
            "from alice, honest",
            600,
        )
        .await
        .unwrap();
    live.say(&notice(general, 3));
    f.hear(&w, &mut bob, room, general).await.unwrap();
    // AND puts text of its own into a notice
    let mut smuggled = serde_json::to_value(notice(general, 4)).unwrap();
    smuggled["text"] = "pay mallory".into();
    live.say_raw(smuggled.to_string());
    let bad = f.hear(&w, &mut bob, room, general).await.unwrap_err();

    // THEN the smuggled frame is an error, not something to show
    assert!(
        matches!(&bad, ClientError::Verification(why) if why.contains("live frame")),
        "{bad}"
    );
    // AND Bob was shown each real message once, message 2 although "deleted", and nothing
    // else: message 1, served again on both reads the replay was on, and the forgery were
    // refused (the notice for another channel read nothing)
    assert_eq!(f.shown, vec![(1, "one".to_owned()), (2, "two".to_owned())]);
    assert_eq!(
        f.refused,
        vec![
            (1, Refusal::OutOfOrder),
            (1, Refusal::OutOfOrder),
            (3, Refusal::BadSignature)
        ]
    );
    // AND message 2 is still there for anyone who reads
    let page = bob.read(&w, room, general).await;
    let numbers: Vec<u64> = page.messages.iter().map(|r| r.number).collect();
    assert_eq!(numbers, vec![1, 2]);
}

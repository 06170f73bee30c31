//! The live socket under `make dev`: `GET /live` is a WebSocket on which a client
//! subscribes to channels by proving their capabilities ([`cinder_server::live::handle_frame`])
//! and then hears, at once, of every new and deleted message in them.
//!
//! - Each socket has a fresh random connection id; its subscriptions live in a
//!   [`MemoryLive`] and go when it closes.
//! - [`Hub`] is the shards routes' [`Notify`]: after a post or delete it spawns a task that
//!   works out who to tell ([`cinder_server::live::deliveries`]) and queues each notice on
//!   its socket.
//! - Each socket's outgoing queue is bounded ([`QUEUE_FRAMES`]) and never waited on: a post
//!   only ever `try_send`s. A socket whose queue is full (a slow or dead reader) is closed
//!   instead (close code 1013, "try again later"), so its client reconnects and catches up
//!   by listing, as it must after any drop; notices are never silently lost on an open
//!   socket.
//! - Frames are JSON text of at most [`limits::MAX_FRAME_BYTES`]: a larger one, or a binary
//!   one, is answered with an error frame; one past twice the bound closes the socket.
//!   Pings are answered with pongs by the WebSocket layer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use axum::routing::get;
use cinder_proto::ErrorCode;
use cinder_proto::live::{ServerFrame, limits};
use cinder_server::live::{LiveState, MemoryLive, Notify, deliveries, handle_frame};
use cinder_server::store::{ChannelRef, LiveStore, RoomStore};
use cinder_server::{Auth, Clock};
use cinder_sqlite::SqliteStore;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

/// Most frames queued for one socket before it is deemed too slow and closed.
pub const QUEUE_FRAMES: usize = 1024;

/// The route.
pub const LIVE_PATH: &str = "/live";

/// The live sockets of this process and their subscriptions.
#[derive(Clone)]
pub struct Hub {
    state: LiveState,
    memory: Arc<MemoryLive>,
    rooms: Arc<dyn RoomStore>,
    clock: Clock,
    /// The only strong sender of each socket's queue: dropping it closes the socket.
    sockets: Arc<Mutex<HashMap<String, mpsc::Sender<Message>>>>,
}

impl Hub {
    /// A hub over `store`'s rooms and nonces, with subscriptions in memory.
    pub fn new(store: Arc<SqliteStore>, clock: Clock) -> Self {
        let memory = Arc::new(MemoryLive::default());
        Self {
            state: LiveState {
                auth: Auth::for_rooms(store.clone(), store.clone(), clock.clone()),
                live: memory.clone(),
            },
            memory,
            rooms: store,
            clock,
            sockets: Arc::default(),
        }
    }

    /// `GET /live`.
    pub fn routes(&self) -> Router {
        Router::new()
            .route(LIVE_PATH, get(upgrade))
            .with_state(self.clone())
    }

    /// How many sockets are open.
    pub fn connections(&self) -> usize {
        self.with_sockets(|s| s.len())
    }

    fn with_sockets<T>(
        &self,
        f: impl FnOnce(&mut HashMap<String, mpsc::Sender<Message>>) -> T,
    ) -> T {
        // Entries are whole even after a panic elsewhere.
        let mut guard = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Queues `frame` for `connection` without waiting; a full queue closes the socket.
    fn push(&self, connection: &str, frame: &ServerFrame) {
        let Ok(json) = serde_json::to_string(frame) else {
            return;
        };
        self.with_sockets(|sockets| {
            let Some(tx) = sockets.get(connection) else {
                return;
            };
            match tx.try_send(Message::Text(json.into())) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("live: a socket's queue is full; closing it");
                    sockets.remove(connection);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    sockets.remove(connection);
                }
            }
        });
    }

    async fn run(self, socket: WebSocket) {
        let id = connection_id();
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE_FRAMES);
        self.with_sockets(|s| s.insert(id.clone(), tx));
        let (mut sink, mut stream) = socket.split();
        let mut writer = tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            // The hub dropped the queue: too slow.
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: close_code::AGAIN,
                    reason: Utf8Bytes::from_static("too slow: reconnect and catch up"),
                })))
                .await;
        });
        loop {
            let message = tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(message)) => message,
                    _ => break,
                },
                // The queue was closed (too slow) and the close frame sent or not.
                _ = &mut writer => break,
            };
            let answers = match message {
                Message::Text(text) => {
                    handle_frame(&self.state, &id, text.as_bytes(), self.clock.now()).await
                }
                Message::Binary(_) => vec![ServerFrame::Error {
                    code: ErrorCode::InvalidParameter,
                    message: "frames are JSON text".into(),
                }],
                Message::Ping(_) | Message::Pong(_) => continue,
                Message::Close(_) => break,
            };
            for answer in &answers {
                self.push(&id, answer);
            }
            if !self.with_sockets(|s| s.contains_key(&id)) {
                break;
            }
        }
        self.with_sockets(|s| s.remove(&id));
        let _ = self.memory.disconnect(&id).await;
        // The peer closed or broke the socket: nothing queued can reach it any more.
        writer.abort();
    }
}

impl Notify for Hub {
    fn notify(&self, channel: ChannelRef, frame: ServerFrame) {
        let hub = self.clone();
        tokio::spawn(async move {
            let now = hub.clock.now();
            match deliveries(&*hub.memory, &*hub.rooms, &[(channel, frame)], now).await {
                Ok(out) => {
                    for (connection, frame) in out {
                        hub.push(&connection, &frame);
                    }
                }
                Err(e) => tracing::warn!("live: cannot work out deliveries: {e}"),
            }
        });
    }
}

async fn upgrade(State(hub): State<Hub>, ws: WebSocketUpgrade) -> Response {
    // Frames up to twice the bound are read and answered with an error frame (so a client
    // learns why); past that the socket closes.
    ws.max_message_size(2 * limits::MAX_FRAME_BYTES)
        .max_frame_size(2 * limits::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| hub.run(socket))
}

/// 16 random bytes in hex (a valid connection id); the time and a counter if the system
/// cannot give randomness, which only a dev server would shrug off.
fn connection_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&n.to_le_bytes());
        bytes[8..].copy_from_slice(&t.to_le_bytes());
    }
    hex::encode(bytes)
}

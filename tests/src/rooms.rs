//! The spine and shards functions through the router, on both stores, with a manual clock,
//! and a room's capabilities as its admin's client holds them: for tests that sign
//! requests as capabilities and need the answers to the second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use cinder_proto::encoding::encode;
use cinder_proto::{ChannelId, RoomId, Signer, Timestamp};
use cinder_server::Clock;
use cinder_server::calls::{CallsState, MemoryRelays, TurnSecret};
use cinder_server::clock::ManualTime;
use cinder_server::shards::ShardsState;
use cinder_server::spine::SpineState;
use cinder_server::store::RelayStore;
use cinder_sqlite::SqliteStore;
use serde_json::{Value, json};

use crate::fixtures::Capability;
use crate::router::{Answer, send};

/// The secret every backend's calls routes share with their (imagined) relays.
pub const TURN_SECRET: &[u8] = b"test turn secret, 32 bytes long!";

/// Where every backend's clock starts.
pub const T0: Timestamp = Timestamp(1_800_000_000);

/// The spine and shards functions on one store.
pub struct Backend {
    pub name: &'static str,
    pub app: Router,
    /// Where the calls routes find relays.
    pub relays: Arc<dyn RelayStore>,
    /// The secret the calls routes make TURN credentials under ([`TURN_SECRET`]).
    pub turn_secret: Arc<TurnSecret>,
    time: ManualTime,
    /// The manual clock's current value, which signatures are dated with.
    now: AtomicU64,
}

impl Backend {
    /// The server's time, which requests are signed at.
    pub fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }

    /// Sets the server's clock (and the signing time with it).
    pub fn set(&self, t: Timestamp) {
        self.time.set(t);
        self.now.store(t.0, Ordering::SeqCst);
    }

    /// A request signed by `who` now, with an optional JSON body.
    pub async fn call(
        &self,
        who: &Capability,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        let bytes = body
            .map(|j| serde_json::to_vec(&j).unwrap())
            .unwrap_or_default();
        let headers = who.sign(method, path, &bytes, self.now());
        send(&self.app, method, path, &headers, bytes).await
    }
}

fn app<S>(
    store: Arc<S>,
    clock: Clock,
    horizon: u64,
    (relays, secret): (Arc<dyn RelayStore>, Arc<TurnSecret>),
    limits: &cinder_server::limits::Limits,
) -> Router
where
    S: cinder_server::store::RoomStore
        + cinder_server::store::ShardStore
        + cinder_server::store::NonceStore
        + cinder_server::store::RateLimitStore
        + 'static,
{
    cinder_server::routing::finish(
        Router::new()
            .merge(cinder_server::spine::routes(
                SpineState::new(store.clone(), clock.clone()).with_limits(limits.clone()),
            ))
            .merge(cinder_server::calls::routes(
                CallsState::new(store.clone(), relays, secret, clock.clone())
                    .with_limits(limits.clone()),
            ))
            .merge(cinder_server::shards::routes(
                ShardsState::new(store, clock, horizon).with_limits(limits.clone()),
            )),
    )
}

/// SQLite in memory and DynamoDB on moto, each on its own manual clock at [`T0`], with
/// burn times allowed up to `horizon` seconds ahead.
pub async fn backends(horizon: u64) -> Vec<Backend> {
    backends_with_limits(horizon, &cinder_server::limits::Limits::default()).await
}

/// [`backends`] at other rate limits.
pub async fn backends_with_limits(
    horizon: u64,
    limits: &cinder_server::limits::Limits,
) -> Vec<Backend> {
    let turn_secret = Arc::new(TurnSecret::new(TURN_SECRET.to_vec()).unwrap());
    let (clock, time) = Clock::manual(T0);
    let relays: Arc<dyn RelayStore> = Arc::new(MemoryRelays::default());
    let sqlite = Backend {
        name: "sqlite",
        app: app(
            Arc::new(SqliteStore::in_memory().unwrap()),
            clock,
            horizon,
            (relays.clone(), turn_secret.clone()),
            limits,
        ),
        relays,
        turn_secret: turn_secret.clone(),
        time,
        now: T0.0.into(),
    };
    let (clock, time) = Clock::manual(T0);
    let relays: Arc<dyn RelayStore> = crate::moto::fresh_relays_store().await.0;
    let dynamo = Backend {
        name: "dynamodb",
        app: app(
            crate::moto::fresh_rooms_store().await.0,
            clock,
            horizon,
            (relays.clone(), turn_secret.clone()),
            limits,
        ),
        relays,
        turn_secret,
        time,
        now: T0.0.into(),
    };
    vec![sqlite, dynamo]
}

/// A room's capabilities, as its admin's client holds them, with its channels in order.
pub struct RoomCaps {
    pub room: RoomId,
    pub admin: Capability,
    pub member: Capability,
    pub channels: Vec<(ChannelId, Capability)>,
}

impl RoomCaps {
    /// Room `[tag; 16]` with the given channel ids; keys are seeded from `tag`, so rooms
    /// with different tags have different keys even where they share a channel id.
    pub fn new(tag: u8, channels: &[ChannelId]) -> Self {
        let room = RoomId([tag; 16]);
        let channels = channels
            .iter()
            .zip(0u8..)
            .map(|(&ch, i)| {
                let seed = tag.wrapping_add(100).wrapping_add(i);
                (ch, Capability::new(seed, Signer::Channel(room, ch)))
            })
            .collect();
        Self {
            room,
            admin: Capability::new(tag, Signer::Admin(room)),
            member: Capability::new(tag.wrapping_add(50), Signer::Member(room)),
            channels,
        }
    }

    /// The `i`th channel's id and capability.
    pub fn channel(&self, i: usize) -> (ChannelId, &Capability) {
        let (id, cap) = &self.channels[i];
        (*id, cap)
    }

    /// `/rooms/{room}`.
    pub fn path(&self) -> String {
        format!("/rooms/{}", self.room)
    }

    /// `/messages/{room}/{channel}` of the `i`th channel.
    pub fn messages(&self, i: usize) -> String {
        format!("/messages/{}/{}", self.room, self.channels[i].0)
    }

    /// The room's capabilities as `POST /rooms` and `PUT /rooms/{room}` carry them.
    fn keys(&self) -> Value {
        let channels: serde_json::Map<String, Value> = self
            .channels
            .iter()
            .map(|(id, cap)| (id.to_string(), json!(cap.verify_key())))
            .collect();
        json!({
            "admin_key": self.admin.verify_key(),
            "member_key": self.member.verify_key(),
            "channels": channels,
        })
    }

    /// `POST /rooms` for this room, signed by its admin, with `spine` as the sealed spine.
    pub async fn create(&self, b: &Backend, spine: &[u8]) -> Answer {
        b.call(&self.admin, "POST", "/rooms", Some(self.create_body(spine)))
            .await
    }

    /// The body of a `POST /rooms` for this room with `spine` as the sealed spine.
    pub fn create_body(&self, spine: &[u8]) -> Value {
        let mut body = self.keys();
        body["room_id"] = json!(self.room);
        body["spine"] = json!(encode(spine));
        body
    }

    /// The body of a `PUT /rooms/{room}` from version `expected` to `spine`, keeping the keys.
    pub fn update_body(&self, expected: u64, spine: &[u8]) -> Value {
        let mut body = self.keys();
        body["expected_version"] = json!(expected);
        body["spine"] = json!(encode(spine));
        body
    }
}

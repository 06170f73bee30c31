//! Whole servers for end-to-end tests: every function's routes on one store (SQLite, or
//! DynamoDB on moto), served over real HTTP on a free 127.0.0.1 port, with a manual clock.

use std::sync::Arc;

use axum::Router;
use cinder_server::Clock;
use cinder_server::accounts::{self, AccountsState, ServerSecrets};
use cinder_server::calls::{self, CallsState, MemoryRelays, TurnSecret};
use cinder_server::clock::SkewedTime;
use cinder_server::keys::{self, KeysState};
use cinder_server::limits::Limits;
use cinder_server::media::{self, MediaState};
use cinder_server::shards::{self, ShardsState};
use cinder_server::spine::{self, SpineState};
use cinder_server::store::{AccountStore, ObjectStore, RelayStore};
use cinder_sqlite::SqliteStore;

/// The burn horizon of test servers: one day.
pub const MAX_BURN: u64 = 24 * 3600;

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Dynamo,
}

/// A running server.
pub struct TestServer {
    pub backend: Backend,
    pub url: String,
    /// Moves the server's clock ahead of real time (it otherwise runs as usual).
    pub time: SkewedTime,
    /// The same app the HTTP server serves, for raw in-process requests.
    pub app: Router,
    /// The accounts store, for tests that play a hostile server.
    pub accounts: Arc<dyn AccountStore>,
    /// The SQLite file, when the backend is SQLite.
    pub sqlite_file: Option<std::path::PathBuf>,
    /// Where media objects are: files (SQLite) or moto's S3 (DynamoDB).
    pub objects: Arc<dyn ObjectStore>,
    /// HTTP requests the server has answered so far.
    pub requests: Arc<std::sync::atomic::AtomicU64>,
    /// The secret the calls routes make TURN credentials under.
    pub turn_secret: Arc<TurnSecret>,
    /// Where the calls routes find relays (in memory, or the relays table on moto).
    pub relays: Arc<dyn RelayStore>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub fn client(&self) -> cinder_client::Client {
        cinder_client::Client::new(&self.url)
    }
}

/// Starts every function on `backend` with the master secret `master`.
pub async fn start(backend: Backend, master: &[u8]) -> TestServer {
    start_with_max_media(
        backend,
        master,
        cinder_proto::media::limits::DEFAULT_MAX_MEDIA_BYTES,
    )
    .await
}

/// [`start`] with another bound on media objects.
pub async fn start_with_max_media(backend: Backend, master: &[u8], max_media: u64) -> TestServer {
    start_inner(backend, master, max_media, None, Limits::default()).await
}

/// [`start`] at other rate limits (the defaults are generous for a test's few users).
pub async fn start_with_limits(backend: Backend, master: &[u8], limits: Limits) -> TestServer {
    start_inner(
        backend,
        master,
        cinder_proto::media::limits::DEFAULT_MAX_MEDIA_BYTES,
        None,
        limits,
    )
    .await
}

/// Every function on SQLite, with the key directory, inboxes, rooms, messages and nonces
/// behind a [`Faulty`](crate::faults::Faulty) store that fails as `faults` say.
pub async fn start_faulty(master: &[u8], faults: Arc<crate::faults::Faults>) -> TestServer {
    start_inner(
        Backend::Sqlite,
        master,
        cinder_proto::media::limits::DEFAULT_MAX_MEDIA_BYTES,
        Some(faults),
        Limits::default(),
    )
    .await
}

async fn start_inner(
    backend: Backend,
    master: &[u8],
    max_media: u64,
    faults: Option<Arc<crate::faults::Faults>>,
    limits: Limits,
) -> TestServer {
    let (clock, time) = Clock::skewed();
    let secrets = Arc::new(ServerSecrets::from_master(master).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let turn_secret = Arc::new(TurnSecret::random().unwrap());
    let relays: Arc<dyn RelayStore> = match backend {
        Backend::Sqlite => Arc::new(MemoryRelays::default()),
        Backend::Dynamo => crate::moto::fresh_relays_store().await.0,
    };
    let (routes, accounts, sqlite_file, objects): (
        Router,
        Arc<dyn AccountStore>,
        _,
        Arc<dyn ObjectStore>,
    ) = match backend {
        Backend::Sqlite => {
            let file = dir.path().join("cinder.sqlite3");
            let store = Arc::new(SqliteStore::open(&file).unwrap());
            let files = cinder_dev::media_store(dir.path(), &url, clock.clone()).unwrap();
            let (keys_state, spine_state, shards_state) = match &faults {
                None => (
                    KeysState::new(store.clone(), clock.clone()),
                    SpineState::new(store.clone(), clock.clone()),
                    ShardsState::new(store.clone(), clock.clone(), MAX_BURN),
                ),
                Some(faults) => {
                    let faulty = crate::faults::Faulty::new(store.clone(), faults.clone());
                    (
                        KeysState::new(faulty.clone(), clock.clone()),
                        SpineState::new(faulty.clone(), clock.clone()),
                        ShardsState::new(faulty, clock.clone(), MAX_BURN),
                    )
                }
            };
            let keys_state = keys_state.with_limits(limits.clone());
            let spine_state = spine_state.with_limits(limits.clone());
            let shards_state = shards_state.with_limits(limits.clone());
            let routes = Router::new()
                .merge(keys::routes(keys_state))
                .merge(accounts::routes(
                    AccountsState::new(store.clone(), secrets, clock.clone())
                        .with_limits(limits.clone()),
                ))
                .merge(spine::routes(spine_state))
                .merge(media::routes(
                    MediaState::new(store.clone(), files.clone(), clock.clone(), max_media)
                        .with_limits(limits.clone()),
                ))
                .merge(cinder_dev::media::routes(files.clone()))
                .merge(calls::routes(
                    CallsState::new(
                        store.clone(),
                        relays.clone(),
                        turn_secret.clone(),
                        clock.clone(),
                    )
                    .with_limits(limits.clone()),
                ))
                .merge(shards::routes(shards_state));
            (routes, store, Some(file), files)
        }
        Backend::Dynamo => {
            let (keys_store, _) = crate::moto::fresh_store().await;
            let (account_store, _) = crate::moto::fresh_accounts_store().await;
            let (rooms_store, tables) = crate::moto::fresh_rooms_store().await;
            let s3 = crate::moto::media_objects(&tables);
            let routes = Router::new()
                .merge(keys::routes(
                    KeysState::new(keys_store, clock.clone()).with_limits(limits.clone()),
                ))
                .merge(accounts::routes(
                    AccountsState::new(account_store.clone(), secrets, clock.clone())
                        .with_limits(limits.clone()),
                ))
                .merge(spine::routes(
                    SpineState::new(rooms_store.clone(), clock.clone()).with_limits(limits.clone()),
                ))
                .merge(media::routes(
                    MediaState::new(rooms_store.clone(), s3.clone(), clock.clone(), max_media)
                        .with_limits(limits.clone()),
                ))
                .merge(calls::routes(
                    CallsState::new(
                        rooms_store.clone(),
                        relays.clone(),
                        turn_secret.clone(),
                        clock.clone(),
                    )
                    .with_limits(limits.clone()),
                ))
                .merge(shards::routes(
                    ShardsState::new(rooms_store, clock, MAX_BURN).with_limits(limits.clone()),
                ));
            (routes, account_store as Arc<dyn AccountStore>, None, s3)
        }
    };
    let app = cinder_server::routing::finish(routes);
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = requests.clone();
    let served = app.clone().layer(axum::middleware::map_request(
        move |request: axum::extract::Request| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::ready(request)
        },
    ));
    tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
    TestServer {
        backend,
        url,
        time,
        app,
        accounts,
        sqlite_file,
        objects,
        requests,
        turn_secret,
        relays,
        _dir: dir,
    }
}

//! The local dev server: every function's routes, merged into one router over the embedded
//! store, served on one port. What runs on Lambda runs here, minus API Gateway.
//!
//! # Layout
//! - [`open_store`]: the SQLite store in the data folder (created on first run).
//! - [`master_secret`]: the enclave function's master secret, generated once into the data
//!   folder (mode 0600), as Secrets Manager holds it in AWS.
//! - [`media`]: media files in the data folder behind signed URLs, and their sweeper.
//! - [`live`]: the live socket (`GET /live`), told of posts by the shards routes.
//! - [`calls`]: the calls routes' secret and relays, and the TURN relay run in process.
//! - [`app`]: all routers on one store.
//! - [`serve()`]: the HTTP server, until shutdown, within [`serve::Limits`]: header and
//!   request timeouts and a connection cap.

pub mod calls;
pub mod live;
pub mod media;
pub mod serve;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use cinder_proto::media::limits::DEFAULT_MAX_MEDIA_BYTES;
use cinder_server::Clock;
use cinder_server::accounts::{self, AccountsState, ServerSecrets};
use cinder_server::calls::CallsState;
use cinder_server::keys::{self, KeysState};
use cinder_server::limits::Limits;
use cinder_server::media::MediaState;
use cinder_server::shards::{self, DEFAULT_MAX_BURN_SECS, ShardsState};
use cinder_server::spine::{self, SpineState};
use cinder_sqlite::SqliteStore;
use tokio::net::TcpListener;

/// File name of the database inside the data folder.
pub const DB_FILE: &str = "cinder.sqlite3";
/// File name of the master secret inside the data folder.
pub const SECRET_FILE: &str = "master.secret";
/// File name of the key that signs media URLs inside the data folder.
pub const MEDIA_KEY_FILE: &str = "media.key";

/// Why the dev server could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    /// The data folder could not be created.
    #[error("cannot create the data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The master secret could not be read or made.
    #[error("cannot read or create the master secret {path}: {reason}")]
    Secret {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] cinder_sqlite::OpenError),
    /// The port could not be bound or served.
    #[error("cannot serve on {addr}: {source}")]
    Serve {
        /// Where.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the embedded store in `data_dir`, creating the folder (owner-only) if needed,
/// with [`cinder_sqlite::DEFAULT_READERS`] read connections beside the writer.
pub fn open_store(data_dir: &Path) -> Result<Arc<SqliteStore>, DevError> {
    open_store_with_readers(data_dir, cinder_sqlite::DEFAULT_READERS)
}

/// [`open_store`] with `readers` read connections (0: reads queue on the writer too).
pub fn open_store_with_readers(
    data_dir: &Path,
    readers: usize,
) -> Result<Arc<SqliteStore>, DevError> {
    let fail = |source| DevError::DataDir {
        path: data_dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(Arc::new(SqliteStore::open_with_readers(
        &data_dir.join(DB_FILE),
        readers,
    )?))
}

/// Reads the master secret from `data_dir`, generating 32 random bytes on first run.
pub fn master_secret(data_dir: &Path) -> Result<ServerSecrets, DevError> {
    let path = data_dir.join(SECRET_FILE);
    let bytes = secret_file(&path)?;
    ServerSecrets::from_master(&bytes).map_err(|e| DevError::Secret {
        path,
        reason: e.to_string(),
    })
}

/// The media file store in `data_dir`, its URLs starting with `base_url` (the dev server's
/// own address) and signed with a key generated once into the data folder; objects of up
/// to [`DEFAULT_MAX_MEDIA_BYTES`] (see [`media_store_with_max`]).
pub fn media_store(
    data_dir: &Path,
    base_url: &str,
    clock: Clock,
) -> Result<Arc<media::FileObjects>, DevError> {
    media_store_with_max(data_dir, base_url, clock, DEFAULT_MAX_MEDIA_BYTES)
}

/// [`media_store`] with another size bound.
pub fn media_store_with_max(
    data_dir: &Path,
    base_url: &str,
    clock: Clock,
    max_bytes: u64,
) -> Result<Arc<media::FileObjects>, DevError> {
    let path = data_dir.join(MEDIA_KEY_FILE);
    let bytes = secret_file(&path)?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| DevError::Secret {
        path,
        reason: "not 32 bytes".into(),
    })?;
    Ok(Arc::new(media::FileObjects::new(
        data_dir, key, base_url, clock, max_bytes,
    )))
}

/// Reads a 32-byte secret file, generating it (mode 0600) on first run.
fn secret_file(path: &Path) -> Result<Vec<u8>, DevError> {
    let fail = |reason: String| DevError::Secret {
        path: path.to_owned(),
        reason,
    };
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| fail(e.to_string()))?;
            let mut options = std::fs::OpenOptions::new();
            // create_new: two servers starting at once must not write two different secrets.
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            match options.open(path) {
                Ok(mut file) => {
                    std::io::Write::write_all(&mut file, &secret)
                        .map_err(|e| fail(e.to_string()))?;
                    file.sync_all().map_err(|e| fail(e.to_string()))?;
                    Ok(secret.to_vec())
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read(path).map_err(|e| fail(e.to_string()))
                }
                Err(e) => Err(fail(e.to_string())),
            }
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Every function's routes on one store, with the shared fallbacks and access log; media
/// in `objects` (see [`media_store`]), with its size bound; the live socket on `/live`; calls
/// on a secret of their own with no relay (see [`app_with_calls`] for one).
pub fn app(
    store: Arc<SqliteStore>,
    secrets: Arc<ServerSecrets>,
    clock: Clock,
    objects: Arc<media::FileObjects>,
) -> Router {
    app_with_hub(store, secrets, clock, objects).0
}

/// [`app`], and its live hub (to count its sockets).
pub fn app_with_hub(
    store: Arc<SqliteStore>,
    secrets: Arc<ServerSecrets>,
    clock: Clock,
    objects: Arc<media::FileObjects>,
) -> (Router, live::Hub) {
    build(
        store,
        secrets,
        clock,
        objects,
        calls::Calls::unrelayed(),
        Limits::default(),
    )
}

/// [`app`] whose calls routes hand out credentials for `calls`' relays (the in-process TURN
/// server's, see [`calls::start_relay`]).
pub fn app_with_calls(
    store: Arc<SqliteStore>,
    secrets: Arc<ServerSecrets>,
    clock: Clock,
    objects: Arc<media::FileObjects>,
    calls: calls::Calls,
) -> Router {
    build(store, secrets, clock, objects, calls, Limits::default()).0
}

/// [`app_with_calls`] at `limits` (as `CINDER_LIMITS` configures them, say) instead of
/// the defaults.
pub fn app_with_limits(
    store: Arc<SqliteStore>,
    secrets: Arc<ServerSecrets>,
    clock: Clock,
    objects: Arc<media::FileObjects>,
    calls: calls::Calls,
    limits: Limits,
) -> Router {
    build(store, secrets, clock, objects, calls, limits).0
}

fn build(
    store: Arc<SqliteStore>,
    secrets: Arc<ServerSecrets>,
    clock: Clock,
    objects: Arc<media::FileObjects>,
    calls: calls::Calls,
    limits: Limits,
) -> (Router, live::Hub) {
    let hub = live::Hub::new(store.clone(), clock.clone());
    let routes = Router::new()
        .merge(hub.routes())
        .merge(cinder_server::calls::routes(
            CallsState::new(store.clone(), calls.relays, calls.secret, clock.clone())
                .with_limits(limits.clone()),
        ))
        .merge(cinder_server::media::routes(
            MediaState::new(
                store.clone(),
                objects.clone(),
                clock.clone(),
                objects.max_bytes(),
            )
            .with_limits(limits.clone()),
        ))
        .merge(media::routes(objects))
        .merge(keys::routes(
            KeysState::new(store.clone(), clock.clone()).with_limits(limits.clone()),
        ))
        .merge(accounts::routes(
            AccountsState::new(store.clone(), secrets, clock.clone()).with_limits(limits.clone()),
        ))
        .merge(spine::routes(
            SpineState::new(store.clone(), clock.clone()).with_limits(limits.clone()),
        ))
        .merge(shards::routes(
            ShardsState::new(store, clock, DEFAULT_MAX_BURN_SECS)
                .with_limits(limits)
                .with_notify(Arc::new(hub.clone())),
        ));
    (cinder_server::routing::finish(routes), hub)
}

/// Binds `addr` (port 0 picks a free one).
pub async fn bind(addr: &str) -> Result<TcpListener, DevError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| DevError::Serve {
            addr: addr.to_owned(),
            source,
        })
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DevError> {
    serve_within(listener, app, serve::Limits::default(), shutdown).await
}

/// [`serve()`] within other bounds.
pub async fn serve_within(
    listener: TcpListener,
    app: Router,
    limits: serve::Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DevError> {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a: SocketAddr| a.to_string());
    serve::serve_with_limits(listener, app, limits, Arc::default(), shutdown)
        .await
        .map_err(|source| DevError::Serve { addr, source })
}

//! The local dev server: every function's routes, merged into one router over the embedded
//! store, served on one port. What runs on Lambda runs here, minus API Gateway.
//!
//! # Layout
//! - [`open_store`]: the SQLite store in the data folder (created on first run).
//! - [`app`]: all routers on one store.
//! - [`serve`]: the HTTP server, until shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use cinder_server::Clock;
use cinder_server::keys::{self, KeysState};
use cinder_sqlite::SqliteStore;
use tokio::net::TcpListener;

/// File name of the database inside the data folder.
pub const DB_FILE: &str = "cinder.sqlite3";

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

/// Opens the embedded store in `data_dir`, creating the folder if needed.
pub fn open_store(data_dir: &Path) -> Result<Arc<SqliteStore>, DevError> {
    std::fs::create_dir_all(data_dir).map_err(|source| DevError::DataDir {
        path: data_dir.to_owned(),
        source,
    })?;
    Ok(Arc::new(SqliteStore::open(&data_dir.join(DB_FILE))?))
}

/// Every function's routes on one store, with the shared fallbacks and access log.
pub fn app(store: Arc<SqliteStore>, clock: Clock) -> Router {
    let routes = Router::new().merge(keys::routes(KeysState::new(store, clock)));
    cinder_server::routing::finish(routes)
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
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a: SocketAddr| a.to_string());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| DevError::Serve { addr, source })
}

//! The dev server's HTTP listener: the router on hyper's HTTP/1 connections, with the bounds
//! `axum::serve` does not set. Without them, a socket that opens and never finishes its
//! headers is held forever, and enough of them exhaust the process's file descriptors, so
//! real clients are refused (a slowloris). So:
//!
//! - a connection must finish each request's headers within [`Limits::header_timeout`] of
//!   starting to wait for them (from accept, and after each answer on a kept-alive
//!   connection), or it is closed;
//! - at most [`Limits::max_connections`] are open at once; past that a new one is closed
//!   at once, so the ones already served keep their sockets;
//! - a request gets [`Limits::request_timeout`] for its body and answer, then `408
//!   request_timeout` (a WebSocket upgrade's clock stops when it is upgraded).
//!
//! On shutdown it stops accepting, lets each connection finish the request it is on, and
//! waits for them at most [`Limits::drain`].

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use cinder_server::limits::ClientAddr;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

/// The listener's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections open at once (each holds a file descriptor).
    pub max_connections: usize,
    /// Longest wait for a request's headers.
    pub header_timeout: Duration,
    /// Longest a request may take, body and answer included.
    pub request_timeout: Duration,
    /// Longest wait for open connections at shutdown.
    pub drain: Duration,
}

impl Default for Limits {
    /// 512 connections (under the common soft limit of 1,024 descriptors, with room for
    /// the database and media files), 10 s for headers, 300 s per request (a 100 MiB
    /// upload at 3 Mbit/s), 10 s to drain.
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            drain: Duration::from_secs(10),
        }
    }
}

/// What the listener has turned away, for tests and logs.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Connections closed at once because `max_connections` were open.
    pub over_capacity: AtomicU64,
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves.
pub async fn serve_with_limits(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    refusals: Arc<Refusals>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let request_timeout = limits.request_timeout;
    let app = app.layer(middleware::from_fn(move |request: Request, next: Next| {
        time_limited(request, next, request_timeout)
    }));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before accept:
                    // wait a moment instead of spinning, then go on serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refusals.over_capacity.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        // The peer's address, for the per-address limits: the socket's, never a header's.
        let addr = ClientAddr(peer.ip());
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(addr);
                request
            },
        ));
        let mut stopping = stopping.clone();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stopping.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
    }
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open at shutdown were dropped");
    }
    Ok(())
}

/// Runs the request within `limit`, else answers `408 request_timeout`.
async fn time_limited(request: Request, next: Next, limit: Duration) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => cinder_server::Error::RequestTimeout.into_response(),
    }
}

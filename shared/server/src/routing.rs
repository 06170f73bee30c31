//! What every router gets once, after its routes are merged: house-format answers for
//! unknown paths and methods, and one access-log line per request (route template, status,
//! latency; never a body, a path parameter or a header value).

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::Error;

/// Adds the fallbacks and the access log to a finished set of routes.
pub fn finish(routes: Router) -> Router {
    routes
        .fallback(|| async { Error::NoRoute })
        .method_not_allowed_fallback(|| async { Error::MethodNotAllowed })
        .layer(middleware::from_fn(access_log))
}

async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    // The template (`/keys/{user_id}`), not the path: ids stay out of the logs.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}

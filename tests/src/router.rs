//! Driving a router in-process: build a request, `oneshot` it, read status and JSON.

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// One answer: status, selected headers and the JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub json: Value,
}

impl Answer {
    /// The stable error code of an error answer.
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("<no code>")
    }
}

/// Sends one request with optional extra headers and a raw body.
pub async fn send(
    app: &Router,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Answer {
    send_from(app, None, method, path, headers, body).await
}

/// [`send`] from the address `from`, as the entry point would put it in the request (API
/// Gateway's `sourceIp`, the dev server's peer).
pub async fn send_from(
    app: &Router,
    from: Option<std::net::IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ip) = from {
        req = req.extension(cinder_server::limits::ClientAddr(ip));
    }
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let response = app
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let json = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("non-JSON answer: {bytes:?}"))
    };
    Answer {
        status,
        headers,
        json,
    }
}

//! A Lambda Runtime API emulator, so a real function binary, built exactly as it ships, can
//! be run on API Gateway events in a test: the binary polls `/invocation/next` as it would
//! on AWS, and posts its answer back. This is what `cargo lambda watch` does locally.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc, oneshot};

type Waiters = Arc<std::sync::Mutex<HashMap<String, oneshot::Sender<Result<Value, Value>>>>>;

#[derive(Clone)]
struct Shared {
    queue: Arc<Mutex<mpsc::UnboundedReceiver<(String, Value)>>>,
    waiters: Waiters,
}

/// The emulator: serves the Runtime API on a free 127.0.0.1 port.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    send: mpsc::UnboundedSender<(String, Value)>,
    waiters: Waiters,
    counter: std::sync::atomic::AtomicU64,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (send, recv) = mpsc::unbounded_channel();
        let waiters: Waiters = Arc::default();
        let shared = Shared {
            queue: Arc::new(Mutex::new(recv)),
            waiters: waiters.clone(),
        };
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(respond),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            send,
            waiters,
            counter: Default::default(),
        }
    }

    /// Starts a function binary against this emulator. It is killed when the handle drops.
    pub fn spawn_function(&self, binary: &Path, env: &[(&str, String)]) -> tokio::process::Child {
        let mut cmd = tokio::process::Command::new(binary);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", self.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "cinder-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "test")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
    }

    /// Delivers one event and waits for the function's answer (`Err` for an invocation error).
    pub async fn invoke(&self, event: Value) -> Result<Value, Value> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = format!("req-{n}");
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(id.clone(), tx);
        self.send.send((id, event)).unwrap();
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the function did not answer within 60 s")
            .expect("the emulator dropped the invocation")
    }
}

async fn next(State(s): State<Shared>) -> (HeaderMap, String) {
    let (id, event) = s.queue.lock().await.recv().await.expect("emulator closed");
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 30_000;
    let mut headers = HeaderMap::new();
    headers.insert(
        "lambda-runtime-aws-request-id",
        HeaderValue::from_str(&id).unwrap(),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        HeaderValue::from_str(&deadline.to_string()).unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_static("arn:aws:lambda:us-east-1:000000000000:function:cinder-test"),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (headers, event.to_string())
}

async fn respond(
    State(s): State<Shared>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    deliver(
        &s,
        &id,
        Ok(serde_json::from_str(&body).unwrap_or(Value::String(body))),
    )
}

async fn fail(State(s): State<Shared>, UrlPath(id): UrlPath<String>, body: String) -> StatusCode {
    deliver(
        &s,
        &id,
        Err(serde_json::from_str(&body).unwrap_or(Value::String(body))),
    )
}

async fn init_error(body: String) -> StatusCode {
    panic!("the function failed to initialise: {body}");
}

fn deliver(s: &Shared, id: &str, outcome: Result<Value, Value>) -> StatusCode {
    if let Some(tx) = s.waiters.lock().unwrap().remove(id) {
        let _ = tx.send(outcome);
    }
    StatusCode::ACCEPTED
}

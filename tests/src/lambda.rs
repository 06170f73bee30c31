//! A Lambda Runtime API emulator, so a real function binary, built exactly as it ships, can
//! be run on API Gateway events in a test: the binary polls `/invocation/next` as it would
//! on AWS, and posts its answer back. This is what `cargo lambda watch` does locally.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

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
    marks: Arc<Marks>,
}

/// When the function first reached the emulator, for the cold-start bench.
#[derive(Default)]
struct Marks {
    /// The first `GET /invocation/next` arrived (the function's init is over).
    first_next: OnceLock<Instant>,
    /// The first invocation response or error arrived.
    first_answer: OnceLock<Instant>,
}

/// The emulator: serves the Runtime API on a free 127.0.0.1 port.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    send: mpsc::UnboundedSender<(String, Value)>,
    waiters: Waiters,
    counter: std::sync::atomic::AtomicU64,
    marks: Arc<Marks>,
}

impl RuntimeApi {
    pub async fn start() -> Self {
        let (send, recv) = mpsc::unbounded_channel();
        let waiters: Waiters = Arc::default();
        let marks = Arc::new(Marks::default());
        let shared = Shared {
            queue: Arc::new(Mutex::new(recv)),
            waiters: waiters.clone(),
            marks: marks.clone(),
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
            marks,
        }
    }

    /// When the first `GET /2018-06-01/runtime/invocation/next` reached this emulator (the
    /// moment a function's init ends and it asks for work), if one has.
    pub fn first_next(&self) -> Option<Instant> {
        self.marks.first_next.get().copied()
    }

    /// When the first invocation response (or invocation error) was posted to this
    /// emulator, if one has been.
    pub fn first_answer(&self) -> Option<Instant> {
        self.marks.first_answer.get().copied()
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

    /// How many invocations this emulator has delivered so far.
    pub fn invocations(&self) -> u64 {
        self.counter.load(std::sync::atomic::Ordering::SeqCst)
    }
}

async fn next(State(s): State<Shared>) -> (HeaderMap, String) {
    let _ = s.marks.first_next.set(Instant::now());
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
    let _ = s.marks.first_answer.set(Instant::now());
    if let Some(tx) = s.waiters.lock().unwrap().remove(id) {
        let _ = tx.send(outcome);
    }
    StatusCode::ACCEPTED
}

/// Where a gateway route leads: a function binary behind the emulator, or a router
/// in-process (for the other functions a test is not about).
/// Several function processes take turns, one invocation each, the way Lambda spreads
/// requests over instances: a test passes only if no state lives in one process.
#[derive(Clone)]
pub enum Target {
    Functions {
        pool: Arc<Vec<Arc<RuntimeApi>>>,
        next: Arc<std::sync::atomic::AtomicUsize>,
    },
    Router(Router),
}

impl Target {
    /// Invocations go to each emulator (each with its own function process) in turn.
    pub fn functions(pool: Vec<Arc<RuntimeApi>>) -> Self {
        Self::Functions {
            pool: Arc::new(pool),
            next: Arc::default(),
        }
    }
}

/// An API Gateway stand-in: real HTTP in, payload v2 events to the functions, their proxy
/// responses back out. Routes are path prefixes, like the template's `ANY /prefix/{proxy+}`.
pub struct Gateway {
    pub url: String,
}

/// Told of every request the gateway receives (method, then path with query) before it is
/// forwarded: how the operation meter (`crate::meter`) counts client requests.
pub type Observer = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl Gateway {
    pub async fn start(routes: Vec<(&'static str, Target)>) -> Self {
        Self::start_observed(routes, None).await
    }

    /// [`Gateway::start`], telling `observer` of each request.
    pub async fn start_observed(
        routes: Vec<(&'static str, Target)>,
        observer: Option<Observer>,
    ) -> Self {
        let routes = Arc::new(routes);
        let app = Router::new().fallback(move |request: axum::extract::Request| {
            let routes = routes.clone();
            if let Some(observe) = &observer {
                let uri = request.uri();
                observe(
                    request.method().as_str(),
                    uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()),
                );
            }
            async move { forward(&routes, request).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url }
    }
}

async fn forward(
    routes: &[(&'static str, Target)],
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use base64::Engine as _;
    use tower::ServiceExt;

    let path = request.uri().path().to_owned();
    let Some((prefix, target)) = routes
        .iter()
        .find(|(prefix, _)| path == *prefix || path.starts_with(&format!("{prefix}/")))
    else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"message": "Not Found"})),
        )
            .into_response();
    };
    let api = match target {
        Target::Router(router) => {
            return router
                .clone()
                .oneshot(request)
                .await
                .unwrap()
                .into_response();
        }
        Target::Functions { pool, next } => {
            &pool[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % pool.len()]
        }
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 10 * 1024 * 1024).await.unwrap();
    let mut event = apigw_event(
        parts.method.as_str(),
        &format!("ANY {prefix}/{{proxy+}}"),
        &path,
        parts.uri.query().unwrap_or(""),
    );
    for (name, value) in &parts.headers {
        event["headers"][name.as_str()] = Value::String(value.to_str().unwrap_or("").to_owned());
    }
    if !bytes.is_empty() {
        match std::str::from_utf8(&bytes) {
            Ok(text) => event["body"] = Value::String(text.to_owned()),
            Err(_) => {
                event["body"] =
                    Value::String(base64::engine::general_purpose::STANDARD.encode(&bytes));
                event["isBase64Encoded"] = Value::Bool(true);
            }
        }
    }
    let answer = api
        .invoke(event)
        .await
        .unwrap_or_else(|e| panic!("invocation error: {e}"));
    let status = StatusCode::from_u16(answer["statusCode"].as_u64().unwrap_or(502) as u16).unwrap();
    let body = answer["body"].as_str().unwrap_or("");
    let body = if answer["isBase64Encoded"] == Value::Bool(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    } else {
        body.as_bytes().to_vec()
    };
    let mut response = (status, body).into_response();
    if let Some(headers) = answer["headers"].as_object() {
        for (name, value) in headers {
            if let (Ok(name), Some(Ok(value))) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// One API Gateway HTTP API payload v2 event, without body or extra headers.
pub fn apigw_event(method: &str, route_key: &str, raw_path: &str, query: &str) -> Value {
    let mut event = serde_json::json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {
            "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "x-amzn-trace-id": "Root=1-6745a8e0-3f1c2b9d7e6a5b4c3d2e1f0a",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "cinder/0.1.0"
            },
            "requestId": "Cw9KqgLpIAMEVxQ=",
            "routeKey": route_key,
            "stage": "$default",
            "time": "25/Nov/2026:18:00:00 +0000",
            "timeEpoch": 1_795_629_600_000u64
        },
        "isBase64Encoded": false
    });
    if let Some(proxy) = route_key
        .contains("{proxy+}")
        .then(|| raw_path.splitn(3, '/').nth(2).unwrap_or(""))
    {
        event["pathParameters"] = serde_json::json!({ "proxy": proxy });
    }
    if !query.is_empty() {
        let params: serde_json::Map<_, _> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
    }
    event
}

/// The environment of a rooms function (spine, shards or media) on `tables` and their media
/// bucket, on moto.
pub fn rooms_env(tables: &cinder_aws::rooms::RoomTables) -> Vec<(&'static str, String)> {
    vec![
        ("ROOMS_TABLE", tables.rooms.clone()),
        ("SPINES_TABLE", tables.spines.clone()),
        ("SHARDS_TABLE", tables.shards.clone()),
        ("NONCES_TABLE", tables.nonces.clone()),
        ("RATE_LIMITS_TABLE", tables.rate_limits.clone()),
        ("MEDIA_BUCKET", crate::moto::media_bucket(tables)),
        ("AWS_ENDPOINT_URL", crate::moto::endpoint().to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ]
}

/// Status and JSON body (`Null` when empty) of a Lambda proxy response.
pub fn proxy_answer(response: &Value) -> (u64, Value) {
    use base64::Engine as _;
    let status = response["statusCode"].as_u64().expect("statusCode");
    let body = response["body"].as_str().unwrap_or("");
    let body = if response["isBase64Encoded"] == Value::Bool(true) {
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap()
    } else {
        body.as_bytes().to_vec()
    };
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, json)
}

/// Which rooms function a [`rooms_deployment`] runs as its shipped binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Under {
    /// `cinder-spine` serves `/rooms`.
    Spine,
    /// `cinder-shards` serves `/messages`.
    Shards,
    /// `cinder-media` serves `/media`.
    Media,
}

/// A whole deployment on moto for the rooms scenarios: one function's shipped binary (two
/// instances taking turns) behind the gateway, the others' routers in-process on the same
/// tables and media bucket. Returns the gateway and the function processes (killed on drop).
pub async fn rooms_deployment(
    binary: &std::path::Path,
    under: Under,
) -> (Gateway, Vec<tokio::process::Child>) {
    use cinder_server::Clock;
    let (keys_store, _) = crate::moto::fresh_store().await;
    let (accounts_store, _) = crate::moto::fresh_accounts_store().await;
    let (rooms_store, tables) = crate::moto::fresh_rooms_store().await;
    let secrets = Arc::new(cinder_server::accounts::ServerSecrets::from_master(&[7; 32]).unwrap());
    let clock = Clock::system();
    let keys = cinder_server::keys::routes(cinder_server::keys::KeysState::new(
        keys_store,
        clock.clone(),
    ));
    let accounts = cinder_server::accounts::routes(cinder_server::accounts::AccountsState::new(
        accounts_store,
        secrets,
        clock.clone(),
    ));
    let spine = cinder_server::spine::routes(cinder_server::spine::SpineState::new(
        rooms_store.clone(),
        clock.clone(),
    ));
    let shards = cinder_server::shards::routes(cinder_server::shards::ShardsState::new(
        rooms_store.clone(),
        clock.clone(),
        cinder_server::shards::DEFAULT_MAX_BURN_SECS,
    ));
    let media = cinder_server::media::routes(cinder_server::media::MediaState::new(
        rooms_store,
        crate::moto::media_objects(&tables),
        clock,
        cinder_proto::media::limits::DEFAULT_MAX_MEDIA_BYTES,
    ));
    let env = rooms_env(&tables);
    let (a, b) = (
        Arc::new(RuntimeApi::start().await),
        Arc::new(RuntimeApi::start().await),
    );
    let children = vec![
        a.spawn_function(binary, &env),
        b.spawn_function(binary, &env),
    ];
    let function = Target::functions(vec![a, b]);
    let (spine, shards, media) = (
        Target::Router(spine),
        Target::Router(shards),
        Target::Router(media),
    );
    let (rooms, messages, media) = match under {
        Under::Spine => (function, shards, media),
        Under::Shards => (spine, function, media),
        Under::Media => (spine, shards, function),
    };
    let gateway = Gateway::start(vec![
        ("/rooms", rooms),
        ("/messages", messages),
        ("/media", media),
        ("/keys", Target::Router(keys.clone())),
        ("/inbox", Target::Router(keys)),
        ("/accounts", Target::Router(accounts)),
    ])
    .await;
    (gateway, children)
}

/// One request through the gateway at `base`, signed by `who` now (the function binaries
/// read the real clock), with an optional JSON body: the answer's status and JSON.
pub async fn signed_http(
    http: &reqwest::Client,
    base: &str,
    who: &crate::fixtures::Capability,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let mut request = http.request(method.parse().unwrap(), format!("{base}{path}"));
    for (name, value) in who.sign(
        method,
        path,
        bytes.as_bytes(),
        cinder_proto::Timestamp::now(),
    ) {
        request = request.header(name, value);
    }
    if !bytes.is_empty() {
        request = request
            .header("content-type", "application/json")
            .body(bytes);
    }
    http_answer(request.send().await.unwrap()).await
}

/// Status and JSON body (`Null` when empty) of an HTTP answer.
pub async fn http_answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"))
    };
    (status, json)
}

//! The operation meter: what one API operation costs in AWS requests and capacity units.
//!
//! [`Meter`] is an HTTP proxy in front of moto. Point a function's `AWS_ENDPOINT_URL` at
//! it and every call the function makes to DynamoDB, S3 or Secrets Manager passes through
//! it and is recorded; presigned S3 URLs the media function hands out point at it too, so
//! the client's own uploads and downloads are recorded as well (marked
//! [`AwsCall::presigned`]). A [`Gateway`] started with [`Meter::observer`] records each
//! client request in the same log, so every AWS call can be put down to the request that
//! caused it. [`Deployment`] is every shipped function binary wired up this way.
//!
//! moto reports constant `ConsumedCapacity`, so capacity units are computed here, the way
//! DynamoDB on-demand bills them:
//! - an item's size is the sum over its attributes of the name's UTF-8 bytes plus the
//!   value's bytes ([`item_size`]);
//! - `GetItem`: 1 RRU per 4 KB of the whole item (any projection notwithstanding), at least
//!   1, halved for an eventually consistent read; an absent item still costs the minimum;
//! - `Query` and `Scan`: the sizes of every item the key condition (and `Limit`) reaches,
//!   before any filter, summed and then rounded up to 4 KB; at least 1 unit; halved when
//!   eventually consistent. A `Select=COUNT` costs the same as reading the items;
//! - writes: 1 WRU per 1 KB of the larger of the item before and after the write (a put
//!   replacing an item, an update, a delete: the old item counts), at least 1, also when
//!   a condition fails;
//! - transactions: each item at twice those rates (a `ConditionCheck` as a write of the
//!   item it checks); a cancelled transaction is counted like a failed condition, on the
//!   items as they are.
//!
//! To know the item before and after a write, and the unfiltered items of a query, the
//! meter asks moto itself ("shadow" requests that are not recorded); requests run one at a
//! time in the scenarios this is for, so nothing changes in between.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use crate::lambda::{Gateway, Observer, RuntimeApi, Target};

/// One thing the meter saw, in the order it happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// A request from the client to the API gateway (path with its query).
    Request { method: String, path: String },
    /// A call to an AWS service.
    Aws(AwsCall),
}

/// Which AWS service a call went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    DynamoDb,
    S3,
    SecretsManager,
    Other,
}

/// What a call is billed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// DynamoDB: a read (RRU). S3: a GET-class request (`GetObject`, `HeadObject`, …).
    /// Secrets Manager: every API call.
    Read,
    /// DynamoDB: a write (WRU). S3: a PUT-class request (`PutObject`, `CopyObject`,
    /// `POST`s, `List*`).
    Write,
    /// Not billed per request: DynamoDB's control plane (`CreateTable`, `DescribeTable`,
    /// …), S3's `DELETE`s and bucket administration.
    Control,
}

/// One call to an AWS service, with what it costs.
#[derive(Debug, Clone, PartialEq)]
pub struct AwsCall {
    pub service: Service,
    /// The API operation: `GetItem`, `TransactWriteItems`, `PutObject`, `GetSecretValue`…
    pub operation: String,
    /// The DynamoDB tables (or the S3 bucket) it touched, without the test's unique
    /// prefix (`t0123456789ab-keys` is `keys`).
    pub tables: Vec<String>,
    pub kind: Kind,
    /// Read request units (DynamoDB).
    pub rru: f64,
    /// Write request units (DynamoDB).
    pub wru: f64,
    /// The item sizes the units were computed from, in bytes: each item read, or for a
    /// write the larger of each item before and after it.
    pub item_bytes: Vec<u64>,
    /// Made by the client through a presigned URL, not by a function.
    pub presigned: bool,
    /// The HTTP status moto answered.
    pub status: u16,
}

impl AwsCall {
    /// A short description: `Query keys 1 RRU`, `TransactWriteItems rooms+spines 4 WRU`,
    /// `S3 PutObject (client, presigned)`.
    pub fn describe(&self) -> String {
        let failed = if self.status >= 400 {
            format!(" [{}]", self.status)
        } else {
            String::new()
        };
        match self.service {
            Service::DynamoDb => {
                let units = match self.kind {
                    Kind::Read => format!(" {} RRU", units(self.rru)),
                    Kind::Write => format!(" {} WRU", units(self.wru)),
                    Kind::Control => String::new(),
                };
                format!(
                    "{} {}{units}{failed}",
                    self.operation,
                    self.tables.join("+")
                )
            }
            Service::S3 => format!(
                "S3 {}{}{failed}",
                self.operation,
                if self.presigned {
                    " (client, presigned)"
                } else {
                    ""
                }
            ),
            Service::SecretsManager => format!("SecretsManager {}{failed}", self.operation),
            Service::Other => format!("{}{failed}", self.operation),
        }
    }
}

/// A number of units as printed: whole numbers without decimals.
pub fn units(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The counting proxy. Clones share one log.
#[derive(Clone)]
pub struct Meter {
    /// Where the proxy listens: use it as `AWS_ENDPOINT_URL`.
    pub url: String,
    inner: Arc<Inner>,
}

struct Inner {
    upstream: String,
    http: reqwest::Client,
    log: Mutex<Vec<Event>>,
    /// Each table's key attribute names, from `DescribeTable`.
    schemas: Mutex<HashMap<String, Vec<String>>>,
}

impl Meter {
    /// Starts a proxy to `upstream` (moto's endpoint) on a free 127.0.0.1 port.
    pub async fn start(upstream: &str) -> Self {
        let inner = Arc::new(Inner {
            upstream: upstream.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            log: Mutex::default(),
            schemas: Mutex::default(),
        });
        let state = inner.clone();
        let app = Router::new().fallback(move |request: axum::extract::Request| {
            let inner = state.clone();
            async move { inner.handle(request).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { url, inner }
    }

    /// A proxy to this process's moto.
    pub async fn on_moto() -> Self {
        Self::start(crate::moto::endpoint()).await
    }

    /// The log's length now: pass it to [`Meter::since`] later.
    pub fn mark(&self) -> usize {
        self.inner.log.lock().unwrap().len()
    }

    /// Everything recorded since `mark`.
    pub fn since(&self, mark: usize) -> Vec<Event> {
        self.inner.log.lock().unwrap()[mark..].to_vec()
    }

    /// Records a client request (the gateway does, through [`Meter::observer`]).
    pub fn record_request(&self, method: &str, path: &str) {
        self.inner.log.lock().unwrap().push(Event::Request {
            method: method.to_owned(),
            path: path.to_owned(),
        });
    }

    /// A gateway observer that records each client request in this meter's log.
    pub fn observer(&self) -> Observer {
        let meter = self.clone();
        Arc::new(move |method: &str, path: &str| meter.record_request(method, path))
    }
}

/// Request headers not passed on as they are (the HTTP client sets its own).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "host" | "content-length" | "connection" | "transfer-encoding" | "expect" | "keep-alive"
    )
}

impl Inner {
    async fn handle(&self, request: axum::extract::Request) -> Response {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, 1 << 30).await else {
            return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
        };
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (answer, call) = match target.as_deref() {
            Some(t) if t.starts_with("DynamoDB_") => {
                let op = t.rsplit('.').next().unwrap_or(t).to_owned();
                self.dynamo(&op, &parts.method, &path_and_query, &parts.headers, body)
                    .await
            }
            Some(t) => {
                let (service, op) = t.split_once('.').unwrap_or((t, t));
                let service = if service.eq_ignore_ascii_case("secretsmanager") {
                    Service::SecretsManager
                } else {
                    Service::Other
                };
                let answer = self
                    .forward(&parts.method, &path_and_query, &parts.headers, body)
                    .await;
                let call = AwsCall {
                    service,
                    operation: op.to_owned(),
                    tables: Vec::new(),
                    kind: Kind::Read,
                    rru: 0.0,
                    wru: 0.0,
                    item_bytes: Vec::new(),
                    presigned: false,
                    status: answer.0.as_u16(),
                };
                (answer, call)
            }
            None => {
                let answer = self
                    .forward(&parts.method, &path_and_query, &parts.headers, body)
                    .await;
                let call = s3_call(&parts.method, &path_and_query, answer.0.as_u16());
                (answer, call)
            }
        };
        self.log.lock().unwrap().push(Event::Aws(call));
        let (status, headers, bytes) = answer;
        let mut response = (status, bytes).into_response();
        for name in headers.keys() {
            response.headers_mut().remove(name);
        }
        for (name, value) in &headers {
            if !hop_by_hop(name) {
                response.headers_mut().append(name.clone(), value.clone());
            }
        }
        response
    }

    /// Passes a request on to moto as it came.
    async fn forward(
        &self,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path_and_query}", self.upstream));
        for (name, value) in headers {
            if !hop_by_hop(name) {
                request = request.header(name, value);
            }
        }
        match request.body(body).send().await {
            Ok(answer) => {
                let status = answer.status();
                let headers = answer.headers().clone();
                let bytes = answer.bytes().await.unwrap_or_default();
                (status, headers, bytes)
            }
            Err(e) => (
                StatusCode::BAD_GATEWAY,
                HeaderMap::new(),
                Bytes::from(format!("meter: moto did not answer: {e}")),
            ),
        }
    }

    /// One DynamoDB call: forwarded, with its units computed.
    async fn dynamo(
        &self,
        op: &str,
        method: &Method,
        path_and_query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> ((StatusCode, HeaderMap, Bytes), AwsCall) {
        let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let auth = auth_headers(headers);
        let writes = self.written_keys(op, &req, &auth).await;
        let mut before = Vec::with_capacity(writes.len());
        for w in &writes {
            before.push(self.stored_size(&w.table, &w.key, &auth).await);
        }
        let answer = self.forward(method, path_and_query, headers, body).await;
        let status = answer.0.as_u16();
        let resp: Value = serde_json::from_slice(&answer.2).unwrap_or(Value::Null);
        let mut call = AwsCall {
            service: Service::DynamoDb,
            operation: op.to_owned(),
            tables: tables_of(op, &req),
            kind: Kind::Control,
            rru: 0.0,
            wru: 0.0,
            item_bytes: Vec::new(),
            presigned: false,
            status,
        };
        if !writes.is_empty() {
            call.kind = Kind::Write;
            for (w, before) in writes.iter().zip(before) {
                let after = self.stored_size(&w.table, &w.key, &auth).await;
                let size = before.max(after);
                call.item_bytes.push(size);
                call.wru += w.factor * write_units(size);
            }
            return (answer, call);
        }
        let consistent = req["ConsistentRead"] == Value::Bool(true);
        match op {
            "GetItem" => {
                call.kind = Kind::Read;
                let size = if req.get("ProjectionExpression").is_some()
                    || req.get("AttributesToGet").is_some()
                {
                    let table = req["TableName"].as_str().unwrap_or_default();
                    let key = req["Key"].as_object().cloned().unwrap_or_default();
                    self.stored_size(table, &key, &auth).await
                } else {
                    resp["Item"].as_object().map_or(0, item_size)
                };
                call.item_bytes.push(size);
                call.rru = read_units(size, consistent);
            }
            "Query" | "Scan" => {
                call.kind = Kind::Read;
                let items = match unfiltered(&req) {
                    Some(plain) => self
                        .shadow(op, &plain, &auth)
                        .await
                        .map(|r| r["Items"].clone())
                        .unwrap_or(Value::Null),
                    None => resp["Items"].clone(),
                };
                call.item_bytes = items
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|i| i.as_object().map_or(0, item_size))
                            .collect()
                    })
                    .unwrap_or_default();
                call.rru = read_units(call.item_bytes.iter().sum(), consistent);
            }
            "BatchGetItem" => {
                call.kind = Kind::Read;
                if let Some(tables) = resp["Responses"].as_object() {
                    for (table, items) in tables {
                        let consistent =
                            req["RequestItems"][table]["ConsistentRead"] == Value::Bool(true);
                        for item in items.as_array().into_iter().flatten() {
                            let size = item.as_object().map_or(0, item_size);
                            call.item_bytes.push(size);
                            call.rru += read_units(size, consistent);
                        }
                    }
                }
            }
            "TransactGetItems" => {
                call.kind = Kind::Read;
                for r in resp["Responses"].as_array().into_iter().flatten() {
                    let size = r["Item"].as_object().map_or(0, item_size);
                    call.item_bytes.push(size);
                    call.rru += 2.0 * read_units(size, true);
                }
            }
            _ => {}
        }
        (answer, call)
    }

    /// The items a write touches, with the factor its units are multiplied by.
    async fn written_keys(&self, op: &str, req: &Value, auth: &HeaderMap) -> Vec<Written> {
        let mut out = Vec::new();
        match op {
            "PutItem" | "UpdateItem" | "DeleteItem" => {
                let table = req["TableName"].as_str().unwrap_or_default().to_owned();
                let key = match op {
                    "PutItem" => self.key_of(&table, &req["Item"], auth).await,
                    _ => req["Key"].as_object().cloned().unwrap_or_default(),
                };
                out.push(Written {
                    table,
                    key,
                    factor: 1.0,
                });
            }
            "TransactWriteItems" => {
                for item in req["TransactItems"].as_array().into_iter().flatten() {
                    let Some((kind, spec)) = item.as_object().and_then(|o| o.iter().next()) else {
                        continue;
                    };
                    let table = spec["TableName"].as_str().unwrap_or_default().to_owned();
                    let key = if kind == "Put" {
                        self.key_of(&table, &spec["Item"], auth).await
                    } else {
                        spec["Key"].as_object().cloned().unwrap_or_default()
                    };
                    out.push(Written {
                        table,
                        key,
                        factor: 2.0,
                    });
                }
            }
            "BatchWriteItem" => {
                for (table, requests) in req["RequestItems"].as_object().into_iter().flatten() {
                    for r in requests.as_array().into_iter().flatten() {
                        let key = if r.get("PutRequest").is_some() {
                            self.key_of(table, &r["PutRequest"]["Item"], auth).await
                        } else {
                            r["DeleteRequest"]["Key"]
                                .as_object()
                                .cloned()
                                .unwrap_or_default()
                        };
                        out.push(Written {
                            table: table.clone(),
                            key,
                            factor: 1.0,
                        });
                    }
                }
            }
            _ => {}
        }
        out
    }

    /// The key attributes of `item` in `table`.
    async fn key_of(&self, table: &str, item: &Value, auth: &HeaderMap) -> Map<String, Value> {
        let known = self.schemas.lock().unwrap().get(table).cloned();
        let names = match known {
            Some(names) => names,
            None => {
                let described = self
                    .shadow("DescribeTable", &json!({ "TableName": table }), auth)
                    .await
                    .unwrap_or(Value::Null);
                let names: Vec<String> = described["Table"]["KeySchema"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k["AttributeName"].as_str().map(str::to_owned))
                    .collect();
                self.schemas
                    .lock()
                    .unwrap()
                    .insert(table.to_owned(), names.clone());
                names
            }
        };
        names
            .into_iter()
            .filter_map(|n| item.get(&n).map(|v| (n, v.clone())))
            .collect()
    }

    /// The size of the item stored under `key` now (0 if there is none).
    async fn stored_size(&self, table: &str, key: &Map<String, Value>, auth: &HeaderMap) -> u64 {
        if key.is_empty() {
            return 0;
        }
        let body = json!({ "TableName": table, "Key": key, "ConsistentRead": true });
        self.shadow("GetItem", &body, auth)
            .await
            .and_then(|r| r["Item"].as_object().map(item_size))
            .unwrap_or(0)
    }

    /// A DynamoDB request of the meter's own, not recorded. It carries the original
    /// request's credentials, which moto reads its account and region from.
    async fn shadow(&self, op: &str, body: &Value, auth: &HeaderMap) -> Option<Value> {
        let mut request = self
            .http
            .post(format!("{}/", self.upstream))
            .header("x-amz-target", format!("DynamoDB_20120810.{op}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(body.to_string());
        for (name, value) in auth {
            request = request.header(name, value);
        }
        let answer = request.send().await.ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.json().await.ok()
    }
}

/// One item a write touches.
struct Written {
    table: String,
    key: Map<String, Value>,
    /// 2 in a transaction.
    factor: f64,
}

fn auth_headers(headers: &HeaderMap) -> HeaderMap {
    headers
        .iter()
        .filter(|(n, _)| matches!(n.as_str(), "authorization" | "x-amz-date"))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// `Query` or `Scan` as DynamoDB reads it before filtering and projecting: the request
/// without its filter, projection and `Select`, or `None` if it has none of them.
fn unfiltered(req: &Value) -> Option<Value> {
    const AFTER_READING: [&str; 6] = [
        "FilterExpression",
        "ProjectionExpression",
        "Select",
        "AttributesToGet",
        "QueryFilter",
        "ScanFilter",
    ];
    let obj = req.as_object()?;
    if !AFTER_READING.iter().any(|k| obj.contains_key(*k)) {
        return None;
    }
    let mut plain = obj.clone();
    for k in AFTER_READING {
        plain.remove(k);
    }
    plain.remove("ConditionalOperator");
    // DynamoDB refuses names and values no expression uses: keep only those still used.
    let used: String = ["KeyConditionExpression", "FilterExpression"]
        .iter()
        .filter_map(|k| plain.get(*k).and_then(Value::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    for (map, sigil) in [
        ("ExpressionAttributeNames", '#'),
        ("ExpressionAttributeValues", ':'),
    ] {
        if let Some(Value::Object(m)) = plain.get_mut(map) {
            m.retain(|name, _| placeholders(&used, sigil).any(|p| p == name));
            if m.is_empty() {
                plain.remove(map);
            }
        }
    }
    Some(Value::Object(plain))
}

/// The `#name` or `:value` placeholders in an expression.
fn placeholders(expr: &str, sigil: char) -> impl Iterator<Item = &str> {
    expr.match_indices(sigil).map(move |(at, _)| {
        let rest = &expr[at..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(rest.len(), |e| e + 1);
        &rest[..end]
    })
}

/// The tables a DynamoDB request names, without the test's unique prefix.
fn tables_of(op: &str, req: &Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if let Some(t) = req["TableName"].as_str() {
        names.push(t.to_owned());
    }
    let list = match op {
        "TransactWriteItems" | "TransactGetItems" => req["TransactItems"].as_array().cloned(),
        _ => None,
    };
    for item in list.into_iter().flatten() {
        if let Some((_, spec)) = item.as_object().and_then(|o| o.iter().next())
            && let Some(t) = spec["TableName"].as_str()
        {
            names.push(t.to_owned());
        }
    }
    if let Some(m) = req["RequestItems"].as_object() {
        names.extend(m.keys().cloned());
    }
    names.iter().map(|n| unprefixed(n)).collect()
}

/// `t0123456789ab-keys` is `keys`: names made by [`crate::moto::unique_prefix`].
pub fn unprefixed(name: &str) -> String {
    match name.split_once('-') {
        Some((tag, rest))
            if tag.len() == 13
                && tag.starts_with('t')
                && tag[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            rest.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// An S3 request (path-style), named and classed as S3 bills it.
fn s3_call(method: &Method, path_and_query: &str, status: u16) -> AwsCall {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut segments = path.trim_start_matches('/').splitn(2, '/');
    let bucket = segments.next().unwrap_or_default();
    let has_key = segments.next().is_some_and(|k| !k.is_empty());
    let param = |p: &str| {
        query
            .split('&')
            .any(|kv| kv.split('=').next().is_some_and(|k| k == p))
    };
    let (operation, kind) = match (method.as_str(), has_key) {
        ("PUT", true) if param("partNumber") => ("UploadPart", Kind::Write),
        ("PUT", true) => ("PutObject", Kind::Write),
        ("PUT", false) => ("CreateBucket", Kind::Control),
        ("GET", true) => ("GetObject", Kind::Read),
        ("GET", false) => ("ListObjects", Kind::Write),
        ("HEAD", true) => ("HeadObject", Kind::Read),
        ("HEAD", false) => ("HeadBucket", Kind::Read),
        ("DELETE", true) => ("DeleteObject", Kind::Control),
        ("DELETE", false) => ("DeleteBucket", Kind::Control),
        ("POST", false) if param("delete") => ("DeleteObjects", Kind::Write),
        ("POST", true) if param("uploads") => ("CreateMultipartUpload", Kind::Write),
        ("POST", true) if param("uploadId") => ("CompleteMultipartUpload", Kind::Write),
        (m, _) => (m, Kind::Write),
    };
    let presigned = query.split('&').any(|kv| {
        kv.split('=')
            .next()
            .is_some_and(|k| k.eq_ignore_ascii_case("x-amz-signature"))
    });
    AwsCall {
        service: Service::S3,
        operation: operation.to_owned(),
        tables: vec![unprefixed(bucket)],
        kind,
        rru: 0.0,
        wru: 0.0,
        item_bytes: Vec::new(),
        presigned,
        status,
    }
}

/// Read request units for `bytes` read in one request: 1 per 4 KB, at least 1; half that
/// for an eventually consistent read.
pub fn read_units(bytes: u64, consistent: bool) -> f64 {
    let strong = bytes.div_ceil(4096).max(1) as f64;
    if consistent { strong } else { strong / 2.0 }
}

/// Write request units for an item of `bytes`: 1 per 1 KB, at least 1.
pub fn write_units(bytes: u64) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

/// An item's size as DynamoDB counts it: each attribute's name (UTF-8 bytes) plus its
/// value (`item` in DynamoDB's JSON form, `{"name": {"S": "…"}, …}`).
pub fn item_size(item: &Map<String, Value>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

/// A value's size: strings their UTF-8 bytes; binary its bytes; a number 1 byte per two
/// significant digits plus 1; booleans and null 1; sets the sum of their elements; lists
/// and maps 3 bytes plus, per element, 1 byte, the element and (maps) its name.
pub fn value_size(value: &Value) -> u64 {
    let Some((ty, v)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strs = || v.as_array().into_iter().flatten().filter_map(Value::as_str);
    match ty.as_str() {
        "S" => v.as_str().map_or(0, |s| s.len() as u64),
        "N" => v.as_str().map_or(0, number_size),
        "B" => v.as_str().map_or(0, binary_size),
        "BOOL" | "NULL" => 1,
        "SS" => strs().map(|s| s.len() as u64).sum(),
        "NS" => strs().map(number_size).sum(),
        "BS" => strs().map(binary_size).sum(),
        "L" => {
            3 + v
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| 1 + value_size(e))
                .sum::<u64>()
        }
        "M" => {
            3 + v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, e)| 1 + k.len() as u64 + value_size(e))
                .sum::<u64>()
        }
        _ => 0,
    }
}

/// A number's size: its significant digits (leading and trailing zeros trimmed), one byte
/// per two, plus one.
pub fn number_size(n: &str) -> u64 {
    let mantissa = n.split(['e', 'E']).next().unwrap_or(n);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.div_ceil(2) + 1
}

fn binary_size(b64: &str) -> u64 {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_or(0, |b| b.len() as u64)
}

/// Totals over some events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Client requests through the API gateway.
    pub api_requests: u64,
    /// Client requests straight to S3, through presigned URLs.
    pub s3_direct: u64,
    /// Lambda invocations (set by the caller, from the Runtime API emulators).
    pub invocations: u64,
    pub ddb_reads: u64,
    pub rru: f64,
    pub ddb_writes: u64,
    pub wru: f64,
    /// S3 PUT-class requests (by functions and clients).
    pub s3_put_class: u64,
    /// S3 GET-class requests (by functions and clients).
    pub s3_get_class: u64,
    /// S3 requests billed nothing (DELETE).
    pub s3_free: u64,
    /// Secrets Manager API calls.
    pub secrets: u64,
    /// Calls to anything else.
    pub other: u64,
}

impl Tally {
    /// Adds up `events` (invocations stay 0: the emulators count those).
    pub fn of(events: &[Event]) -> Self {
        let mut t = Self::default();
        for e in events {
            let call = match e {
                Event::Request { .. } => {
                    t.api_requests += 1;
                    continue;
                }
                Event::Aws(call) => call,
            };
            match (call.service, call.kind) {
                (Service::DynamoDb, Kind::Read) => {
                    t.ddb_reads += 1;
                    t.rru += call.rru;
                }
                (Service::DynamoDb, Kind::Write) => {
                    t.ddb_writes += 1;
                    t.wru += call.wru;
                }
                (Service::DynamoDb, Kind::Control) => t.other += 1,
                (Service::S3, kind) => {
                    if call.presigned {
                        t.s3_direct += 1;
                    }
                    match kind {
                        Kind::Write => t.s3_put_class += 1,
                        Kind::Read => t.s3_get_class += 1,
                        Kind::Control => t.s3_free += 1,
                    }
                }
                (Service::SecretsManager, _) => t.secrets += 1,
                (Service::Other, _) => t.other += 1,
            }
        }
        t
    }

    /// What these requests cost at `prices`, in dollars.
    pub fn cost(&self, p: &Prices) -> f64 {
        self.api_requests as f64 * p.api_request
            + self.invocations as f64 * (p.lambda_request + p.lambda_gb_s * p.lambda_gb_s_each)
            + self.rru * p.rru
            + self.wru * p.wru
            + self.s3_put_class as f64 * p.s3_put
            + self.s3_get_class as f64 * p.s3_get
            + self.secrets as f64 * p.secrets_call
    }
}

/// Prices per request or unit, in dollars (docs/COST.md lists where they come from).
#[derive(Debug, Clone, Copy)]
pub struct Prices {
    /// API Gateway HTTP API, per request.
    pub api_request: f64,
    /// Lambda, per request.
    pub lambda_request: f64,
    /// Lambda (arm64), per GB-second.
    pub lambda_gb_s: f64,
    /// GB-seconds per invocation (memory × duration).
    pub lambda_gb_s_each: f64,
    /// DynamoDB on-demand, per read request unit.
    pub rru: f64,
    /// DynamoDB on-demand, per write request unit.
    pub wru: f64,
    /// S3 Standard, per PUT, COPY, POST or LIST request.
    pub s3_put: f64,
    /// S3 Standard, per GET and other request.
    pub s3_get: f64,
    /// Secrets Manager, per API call.
    pub secrets_call: f64,
}

/// us-east-1 list prices as docs/COST.md gives them, and its Lambda assumption: 256 MB
/// running 20 ms per invocation.
pub const LIST_PRICES: Prices = Prices {
    api_request: 1.00e-6,
    lambda_request: 0.20e-6,
    lambda_gb_s: 0.000_013_333_4,
    lambda_gb_s_each: 0.25 * 0.020,
    rru: 0.125e-6,
    wru: 0.625e-6,
    s3_put: 0.005e-3,
    s3_get: 0.0004e-3,
    secrets_call: 0.05e-4,
};

/// One client request and the AWS calls it caused.
#[derive(Debug, Clone)]
pub struct RequestCalls {
    /// `GET /keys/{user_id}`, or `S3 PutObject (client, presigned)` for a direct transfer,
    /// or `(no request)` for calls made outside any (a function starting).
    pub route: String,
    pub calls: Vec<AwsCall>,
}

impl RequestCalls {
    /// The calls, described and joined, a run of equal ones counted:
    /// `PutItem nonces 1 WRU; Query keys 1 RRU × 10`.
    pub fn describe(&self) -> String {
        let mut runs: Vec<(String, usize)> = Vec::new();
        for call in &self.calls {
            if call.service == Service::S3 && call.presigned {
                continue;
            }
            let d = call.describe();
            match runs.last_mut() {
                Some((last, n)) if *last == d => *n += 1,
                _ => runs.push((d, 1)),
            }
        }
        if runs.is_empty() {
            return "-".into();
        }
        runs.iter()
            .map(|(d, n)| {
                if *n == 1 {
                    d.clone()
                } else {
                    format!("{d} × {n}")
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `events` split by client request: each gateway request with the function's calls that
/// followed it, and each presigned S3 transfer on its own.
pub fn by_request(events: &[Event]) -> Vec<RequestCalls> {
    let mut out: Vec<RequestCalls> = Vec::new();
    let mut current: Option<usize> = None;
    for e in events {
        match e {
            Event::Request { method, path } => {
                out.push(RequestCalls {
                    route: route(method, path),
                    calls: Vec::new(),
                });
                current = Some(out.len() - 1);
            }
            Event::Aws(call) if call.presigned => out.push(RequestCalls {
                route: call.describe(),
                calls: vec![call.clone()],
            }),
            Event::Aws(call) => match current {
                Some(i) => out[i].calls.push(call.clone()),
                None => {
                    out.push(RequestCalls {
                        route: "(no request)".into(),
                        calls: vec![call.clone()],
                    });
                    current = Some(out.len() - 1);
                }
            },
        }
    }
    out
}

/// A request's route as docs/API.md names it: `PUT /messages/{room}/{channel}/{number}`.
pub fn route(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let names: &[&str] = match segments.first().copied() {
        Some("keys") => &["user_id"],
        Some("inbox") => &["user_id", "envelope_id"],
        Some("rooms") => &["room_id"],
        Some("messages") => &["room", "channel", "number"],
        Some("media") if segments.get(2) == Some(&"avatars") => &["room", "media_id"],
        Some("media") => &["room", "channel", "number", "media_id"],
        _ => &[],
    };
    let mut names = names.iter();
    let named: Vec<String> = segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let variable = i > 0
                && !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && (s.len() == 32 || s.bytes().all(|b| b.is_ascii_digit()));
            match if variable { names.next() } else { None } {
                Some(name) => format!("{{{name}}}"),
                None => (*s).to_owned(),
            }
        })
        .collect();
    format!("{method} /{}", named.join("/"))
}

/// Where the shipped function binaries are: `CINDER_FUNCTIONS_DIR`, or the build profile
/// folder of the running executable (`target/release` for a bench: `make bench` builds
/// them there first).
pub fn functions_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CINDER_FUNCTIONS_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("the running executable's path");
    // target/<profile>/deps/<bench>: the binaries are in target/<profile>.
    exe.parent()
        .and_then(Path::parent)
        .expect("a build profile folder")
        .to_owned()
}

/// The function binaries a [`Deployment`] runs, and the routes each serves.
pub const FUNCTIONS: [(&str, &[&str]); 5] = [
    ("cinder-keys", &["/keys", "/inbox"]),
    ("cinder-enclave", &["/accounts"]),
    ("cinder-spine", &["/rooms"]),
    ("cinder-shards", &["/messages"]),
    ("cinder-media", &["/media"]),
];

/// Every API function's shipped binary (one instance each) under the Runtime API emulator,
/// behind the gateway stand-in, on fresh tables, bucket and secret on moto, with every AWS
/// call through a [`Meter`] and every client request recorded in its log.
pub struct Deployment {
    pub meter: Meter,
    pub gateway: Gateway,
    /// Each function's emulator, by binary name.
    pub functions: Vec<(&'static str, Arc<RuntimeApi>)>,
    /// What the functions did as they started, before any request.
    pub startup: Vec<Event>,
    _processes: Vec<tokio::process::Child>,
}

impl Deployment {
    /// Starts the binaries in `dir` (see [`functions_dir`]).
    pub async fn start(dir: &Path) -> Self {
        let meter = Meter::on_moto().await;
        let (_, keys) = crate::moto::fresh_store().await;
        let (_, accounts) = crate::moto::fresh_accounts_store().await;
        let (_, rooms) = crate::moto::fresh_rooms_store().await;
        let aws = |mut env: Vec<(&'static str, String)>| {
            env.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
            env.extend([
                ("AWS_ENDPOINT_URL", meter.url.clone()),
                ("AWS_REGION", "us-east-1".into()),
                ("AWS_ACCESS_KEY_ID", "test".into()),
                ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ]);
            env
        };
        let rooms_env = aws(crate::lambda::rooms_env(&rooms));
        let envs: BTreeMap<&str, Vec<(&'static str, String)>> = [
            (
                "cinder-keys",
                aws(vec![
                    ("KEYS_TABLE", keys.keys.clone()),
                    ("INBOX_TABLE", keys.inbox.clone()),
                    ("NONCES_TABLE", keys.nonces.clone()),
                    ("RATE_LIMITS_TABLE", keys.rate_limits.clone()),
                ]),
            ),
            (
                "cinder-enclave",
                aws(vec![
                    ("ACCOUNTS_TABLE", accounts.accounts.clone()),
                    ("RATE_LIMITS_TABLE", accounts.rate_limits.clone()),
                    ("NONCES_TABLE", accounts.nonces.clone()),
                    (
                        "MASTER_SECRET",
                        "x7Gq2v9LwP4sN8kR1tY6uB3mZ5cH0jDfA2eQ9oWsVxLpK4nR".into(),
                    ),
                ]),
            ),
            ("cinder-spine", rooms_env.clone()),
            ("cinder-shards", rooms_env.clone()),
            ("cinder-media", rooms_env),
        ]
        .into_iter()
        .collect();
        let mut functions = Vec::new();
        let mut processes = Vec::new();
        let mut routes = Vec::new();
        for (name, prefixes) in FUNCTIONS {
            let binary = dir.join(name);
            assert!(
                binary.exists(),
                "{} is missing: build the functions first (`cargo build --release {}`; \
                 `make bench` does), or set CINDER_FUNCTIONS_DIR",
                binary.display(),
                FUNCTIONS
                    .iter()
                    .map(|(n, _)| format!("--bin {n}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let api = Arc::new(RuntimeApi::start().await);
            processes.push(api.spawn_function(&binary, &envs[name]));
            for prefix in prefixes {
                routes.push((*prefix, Target::functions(vec![api.clone()])));
            }
            functions.push((name, api));
        }
        let gateway = Gateway::start_observed(routes, Some(meter.observer())).await;
        // Wait until every function has finished its start (asked for its first event),
        // so whatever AWS calls a start makes are counted as start-up, not put down to
        // the first request.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while functions.iter().any(|(_, api)| api.first_next().is_none()) {
            assert!(
                std::time::Instant::now() < deadline,
                "a function did not finish its start within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let startup = meter.since(0);
        Self {
            meter,
            gateway,
            functions,
            startup,
            _processes: processes,
        }
    }

    /// Invocations delivered so far, over every function.
    pub fn invocations(&self) -> u64 {
        self.functions
            .iter()
            .map(|(_, api)| api.invocations())
            .sum()
    }
}

//! moto's server as a real DynamoDB and S3 wire-protocol peer.
//!
//! One server per test process (`tests/moto_serial.py`: moto, one request at a time, for
//! DynamoDB's per-item atomicity), started on first use on a free port and stopped when the
//! process ends (a shell watchdog kills it once our pid is gone, since Rust statics are
//! never dropped). Set `CINDER_MOTO_ENDPOINT` to use a server that is already running.

use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use cinder_aws::media::S3Objects;
use cinder_aws::{DynamoStore, Tables};
use serde_json::{Value, json};

static ENDPOINT: OnceLock<String> = OnceLock::new();

/// The endpoint of this process's moto server, starting it if needed.
pub fn endpoint() -> &'static str {
    ENDPOINT.get_or_init(|| {
        if let Ok(url) = std::env::var("CINDER_MOTO_ENDPOINT") {
            return url;
        }
        let port = free_port();
        // See tests/moto_serial.py for why requests are served one at a time.
        let launcher = concat!(env!("CARGO_MANIFEST_DIR"), "/moto_serial.py");
        let script = r#"python3 "$3" 127.0.0.1 "$1" >/dev/null 2>&1 & m=$!
            while kill -0 "$2" 2>/dev/null && kill -0 "$m" 2>/dev/null; do sleep 1; done
            kill "$m" 2>/dev/null"#;
        // The watchdog outlives this call on purpose: it ends with the test process.
        let _watchdog = Command::new("sh")
            .args([
                "-c",
                script,
                "sh",
                &port.to_string(),
                &std::process::id().to_string(),
                launcher,
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot run sh to start moto_server");
        #[allow(clippy::zombie_processes)]
        drop(_watchdog);
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on {addr}; install it with `make test-deps` \
                 (pip install 'moto[server]')"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        format!("http://{addr}")
    })
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("no free port on 127.0.0.1");
    listener
        .local_addr()
        .expect("bound listener has an address")
        .port()
}

/// A DynamoDB client pointed at moto with dummy credentials.
pub fn client() -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .build();
    Client::from_conf(config)
}

/// A unique table-name prefix, so tests sharing one moto never see each other's items.
pub fn unique_prefix() -> String {
    let mut r = [0u8; 6];
    getrandom::fill(&mut r).expect("randomness");
    let tag: String = r.iter().map(|b| format!("{b:02x}")).collect();
    format!("t{tag}-")
}

/// A store on fresh tables, created with the same schema as `template.yaml`.
pub async fn fresh_store() -> (Arc<DynamoStore>, Tables) {
    let client = client();
    let tables = Tables::prefixed(&unique_prefix());
    cinder_aws::schema::create_tables(&client, &tables)
        .await
        .expect("creating tables on moto");
    (Arc::new(DynamoStore::new(client, tables.clone())), tables)
}

/// The enclave function's store on fresh tables.
pub async fn fresh_accounts_store() -> (
    Arc<cinder_aws::accounts::DynamoAccounts>,
    cinder_aws::accounts::AccountTables,
) {
    use cinder_aws::schema;
    let client = client();
    let tables = cinder_aws::accounts::AccountTables::prefixed(&unique_prefix());
    for (name, spec) in [
        (&tables.accounts, schema::ACCOUNTS),
        (&tables.rate_limits, schema::RATE_LIMITS),
        (&tables.nonces, schema::NONCES),
    ] {
        schema::create(&client, name, spec)
            .await
            .expect("creating tables on moto");
    }
    (
        Arc::new(cinder_aws::accounts::DynamoAccounts::new(
            client,
            tables.clone(),
        )),
        tables,
    )
}

/// The spine, shards and media functions' store on fresh tables, and a fresh media bucket
/// beside them ([`media_bucket`], [`media_objects`]).
pub async fn fresh_rooms_store() -> (
    Arc<cinder_aws::rooms::DynamoRooms>,
    cinder_aws::rooms::RoomTables,
) {
    use cinder_aws::schema;
    let client = client();
    let tables = cinder_aws::rooms::RoomTables::prefixed(&unique_prefix());
    for (name, spec) in [
        (&tables.rooms, schema::ROOMS),
        (&tables.spines, schema::SPINES),
        (&tables.shards, schema::SHARDS),
        (&tables.nonces, schema::NONCES),
        (&tables.rate_limits, schema::RATE_LIMITS),
    ] {
        schema::create(&client, name, spec)
            .await
            .expect("creating tables on moto");
    }
    create_bucket(&media_bucket(&tables)).await;
    (
        Arc::new(cinder_aws::rooms::DynamoRooms::new(client, tables.clone())),
        tables,
    )
}

/// The media bucket made with the tables of a [`fresh_rooms_store`] call: the same prefix,
/// then `media`.
pub fn media_bucket(tables: &cinder_aws::rooms::RoomTables) -> String {
    let prefix = tables
        .rooms
        .strip_suffix("rooms")
        .expect("tables named by RoomTables::prefixed");
    format!("{prefix}media")
}

/// The object store on the media bucket of a [`fresh_rooms_store`] call.
pub fn media_objects(tables: &cinder_aws::rooms::RoomTables) -> Arc<S3Objects> {
    Arc::new(S3Objects::on_endpoint(endpoint(), media_bucket(tables)).expect("moto's endpoint"))
}

/// Creates an S3 bucket on moto.
pub async fn create_bucket(name: &str) {
    S3Objects::on_endpoint(endpoint(), name.to_owned())
        .expect("moto's endpoint")
        .client()
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("creating a bucket on moto");
}

/// The calls function's relay store on a fresh table.
pub async fn fresh_relays_store() -> (Arc<cinder_aws::calls::DynamoRelays>, String) {
    let client = client();
    let table = format!("{}relays", unique_prefix());
    cinder_aws::schema::create(&client, &table, cinder_aws::schema::RELAYS)
        .await
        .expect("creating the relays table on moto");
    (
        Arc::new(cinder_aws::calls::DynamoRelays::new(client, table.clone())),
        table,
    )
}

/// The live function's store on a fresh table.
pub async fn fresh_live_store() -> (Arc<cinder_aws::live::DynamoLive>, String) {
    let client = client();
    let table = format!("{}live", unique_prefix());
    cinder_aws::schema::create(&client, &table, cinder_aws::schema::LIVE)
        .await
        .expect("creating the live table on moto");
    (
        Arc::new(cinder_aws::live::DynamoLive::new(client, table.clone())),
        table,
    )
}

/// One call of moto's DynamoDB or DynamoDB Streams JSON API (moto reads the service from
/// the credential scope and the target, and checks no signature).
pub async fn moto_call(target: &str, body: Value) -> Value {
    let answer = reqwest::Client::new()
        .post(endpoint())
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.0")
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{target}: {}",
        answer.status()
    );
    answer.json().await.unwrap()
}

/// Every record on the table's stream so far, oldest first.
pub async fn stream_records(table: &str) -> Vec<Value> {
    let table = moto_call(
        "DynamoDB_20120810.DescribeTable",
        json!({"TableName": table}),
    )
    .await;
    let arn = table["Table"]["LatestStreamArn"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream = moto_call(
        "DynamoDBStreams_20120810.DescribeStream",
        json!({"StreamArn": arn}),
    )
    .await;
    let shard = stream["StreamDescription"]["Shards"][0]["ShardId"].clone();
    let iterator = moto_call(
        "DynamoDBStreams_20120810.GetShardIterator",
        json!({"StreamArn": arn, "ShardId": shard, "ShardIteratorType": "TRIM_HORIZON"}),
    )
    .await;
    let records = moto_call(
        "DynamoDBStreams_20120810.GetRecords",
        json!({"ShardIterator": iterator["ShardIterator"]}),
    )
    .await;
    records["Records"].as_array().unwrap().clone()
}

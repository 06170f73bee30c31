//! `make bench`: cold starts of the shipped Lambda binaries, against a bare lambda_http
//! "hello world" (`tests/hello`, `cinder-hello`) built the same way.
//!
//! The bench builds the functions and the baseline in release (`cargo build --release`),
//! starts moto (`tests/moto_serial.py`, as every test does), makes the tables and the media
//! bucket, and seeds what each function's request reads. Then it
//! starts each binary [`STARTS`] times under the Runtime API emulator (`tests/src/lambda.rs`),
//! taking the binaries in turn so drift on the machine hits all of them alike, and measures:
//!
//! - **init**: from just before `exec` to the binary's first
//!   `GET /2018-06-01/runtime/invocation/next` (what Lambda reports as Init Duration);
//! - **init + first request**: from just before `exec` to the answer to its first event, a
//!   real request that makes the function use its AWS clients (credentials, connection,
//!   signing, the service call), so work put off until the first request is counted too.
//!
//! The event is queued before the process starts, as on Lambda, where a cold start happens
//! because an event is waiting. Every binary is started once, untimed, before the rounds, so
//! all are measured with their pages in the page cache, and first each is dropped from the
//! cache and read back ([`as_deployed`]): a binary the linker has just written starts
//! measurably slower (about 0.3 ms here) than the same file read from storage, which is how
//! Lambda's and every deployed binary's pages arrive. Figures, never timed assertions.
//!
//! `COLDSTART_STARTS=N` changes the number of starts per binary; `COLDSTART_BINARIES=DIR`
//! skips the build and measures the binaries in `DIR` (to compare two builds; a function
//! missing from `DIR` is left out); `COLDSTART_ENV=K=V,…` adds variables to every binary's
//! environment.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinder_client::account::ClientSuite;
use cinder_proto::accounts::LoginStart;
use cinder_proto::{Blob, ChannelId, Timestamp};
use cinder_server::Clock;
use cinder_server::store::KeyStore;
use cinder_tests::fixtures::User;
use cinder_tests::lambda::{RuntimeApi, apigw_event, rooms_env};
use cinder_tests::moto;
use cinder_tests::rooms::RoomCaps;
use opaque_ke::ClientLogin;
use rand_core::OsRng;
use serde_json::{Value, json};

/// Cold starts per binary.
const STARTS: usize = 60;
/// The goal: each function's median init at most this many times the hello world's.
const GOAL: f64 = 1.3;
/// The baseline's package (and binary) name.
const HELLO: &str = "cinder-hello";
/// The function packages, as `functions/*/Cargo.toml` name them (and the Makefile's FUNCTIONS).
const FUNCTIONS: [&str; 8] = [
    "cinder-keys",
    "cinder-enclave",
    "cinder-spine",
    "cinder-shards",
    "cinder-media",
    "cinder-burn",
    "cinder-live",
    "cinder-calls",
];

/// One binary under test: its environment, and its first request.
struct Subject {
    name: &'static str,
    /// What the first request is, for the table.
    request: &'static str,
    env: Vec<(&'static str, String)>,
    /// A fresh first event (fresh signature, nonce, login), made just before each start.
    event: Box<dyn Fn() -> Value>,
    /// Checks the answer, so a failing request is never timed as a fast one.
    check: Box<dyn Fn(&Value)>,
}

/// One cold start's figures.
struct Sample {
    init: Duration,
    first: Duration,
}

fn main() {
    let starts = std::env::var("COLDSTART_STARTS")
        .ok()
        .map(|n| n.parse().expect("COLDSTART_STARTS is a number"))
        .unwrap_or(STARTS);
    let bin_dir = match std::env::var_os("COLDSTART_BINARIES") {
        Some(dir) => PathBuf::from(dir),
        None => build(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(&bin_dir, starts));
}

/// Builds the baseline and the functions in release; returns where the binaries are.
fn build() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(root).args(["build", "--release"]);
    for name in std::iter::once(HELLO).chain(FUNCTIONS) {
        cmd.args(["-p", name]);
    }
    eprintln!("building {HELLO} and the functions in release…");
    let status = cmd.status().expect("cannot run cargo");
    assert!(status.success(), "cargo build --release failed");
    // This bench runs from target/release/deps/, so the binaries are one folder up.
    std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .expect("the bench runs from target/<profile>/deps")
        .to_owned()
}

async fn run(bin_dir: &Path, starts: usize) {
    let mut subjects = subjects().await;
    // Extra variables for every binary (COLDSTART_ENV), e.g. `SSL_CERT_FILE=…`.
    if let Ok(extra) = std::env::var("COLDSTART_ENV") {
        for pair in extra.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').expect("COLDSTART_ENV is K=V,K=V");
            let k: &'static str = Box::leak(k.to_owned().into_boxed_str());
            for s in &mut subjects {
                s.env.push((k, v.to_owned()));
            }
        }
    }
    // Binaries another build did not have (COLDSTART_BINARIES from before a function
    // existed) are left out; the hello world never is.
    subjects.retain(|s| {
        let there = s.name == HELLO || bin_dir.join(s.name).exists();
        if !there {
            eprintln!("{} is not in {}: left out", s.name, bin_dir.display());
        }
        there
    });
    for s in &subjects {
        as_deployed(&bin_dir.join(s.name));
    }
    // Every emulator stays up until the end: a dropped one would fail a poll still open.
    let mut emulators = Vec::new();
    for s in &subjects {
        cold_start(&bin_dir.join(s.name), s, &mut emulators).await;
    }
    let mut samples: Vec<Vec<Sample>> = subjects.iter().map(|_| Vec::new()).collect();
    for round in 0..starts {
        // A different binary goes first each round.
        for i in 0..subjects.len() {
            let k = (round + i) % subjects.len();
            let s = &subjects[k];
            samples[k].push(cold_start(&bin_dir.join(s.name), s, &mut emulators).await);
        }
    }
    report(bin_dir, &subjects, samples, starts);
}

/// Puts `binary` in the page cache as a deployed binary is: read from storage. Its pages
/// are written out, dropped from the cache, and read back in one sequential pass, so the
/// cache holds them as read-ahead makes them (large pieces); a file the linker has just
/// written through a mapping is held as it was written, and starts measurably slower
/// (docs/PERFORMANCE.md, "The page cache"). Without this, a function built in this run was
/// measured against a hello world built (and re-read) long ago, and ratios moved by 0.1 to
/// 0.2 from one sitting to the next with nothing changed.
fn as_deployed(binary: &Path) {
    let mut file = std::fs::File::open(binary).unwrap();
    // Only clean pages can be dropped.
    file.sync_all().unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)
        .unwrap_or_else(|e| panic!("posix_fadvise({}): {e}", binary.display()));
    std::io::copy(&mut file, &mut std::io::sink()).unwrap();
}

/// Starts `binary` with its event waiting, and times its init and its first answer.
async fn cold_start(binary: &Path, s: &Subject, emulators: &mut Vec<Arc<RuntimeApi>>) -> Sample {
    let api = Arc::new(RuntimeApi::start().await);
    let event = (s.event)();
    let invoke = {
        let api = api.clone();
        tokio::spawn(async move { api.invoke(event).await })
    };
    // Let the invocation queue its event before the process exists.
    tokio::task::yield_now().await;
    let started = Instant::now();
    let mut child = api.spawn_function(binary, &s.env);
    let answer = tokio::select! {
        answer = invoke => answer.unwrap(),
        status = child.wait() => panic!("{} exited before answering: {status:?}", s.name),
    };
    let answer = answer.unwrap_or_else(|e| panic!("{}: invocation error {e}", s.name));
    (s.check)(&answer);
    let init = api.first_next().expect("the function polled") - started;
    let first = api.first_answer().expect("the function answered") - started;
    child.kill().await.unwrap();
    emulators.push(api);
    Sample { init, first }
}

fn report(bin_dir: &Path, subjects: &[Subject], samples: Vec<Vec<Sample>>, starts: usize) {
    let stats = |mut d: Vec<Duration>| {
        d.sort();
        // Nearest rank.
        let rank = |p: f64| d[((d.len() as f64 * p).ceil() as usize).clamp(1, d.len()) - 1];
        (rank(0.5), rank(0.9))
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let figures: Vec<_> = samples
        .into_iter()
        .map(|s| {
            let init = stats(s.iter().map(|x| x.init).collect());
            let first = stats(s.iter().map(|x| x.first).collect());
            (init, first)
        })
        .collect();
    let (hello_init, hello_first) = (figures[0].0.0, figures[0].1.0);
    println!(
        "\ncold starts: {starts} per binary, taken in turn, release build, {}; \
         AWS on moto (127.0.0.1)",
        std::env::consts::ARCH
    );
    println!("goal: each function's median init <= {GOAL}x the hello world's\n");
    println!(
        "{:<15} {:>7} | {:>8} {:>8} {:>6} {:<6} | {:>8} {:>8} {:>6} | first request",
        "binary", "size", "init p50", "p90", "ratio", "goal", "+1st p50", "p90", "ratio"
    );
    for (s, ((init50, init90), (first50, first90))) in subjects.iter().zip(&figures) {
        let ratio = ms(*init50) / ms(hello_init);
        let size = std::fs::metadata(bin_dir.join(s.name)).map_or(0, |m| m.len());
        println!(
            "{:<15} {:>4.1}MiB | {:>6.1}ms {:>6.1}ms {:>5.2}x {:<6} | {:>6.1}ms {:>6.1}ms {:>5.2}x | {}",
            s.name,
            size as f64 / (1024.0 * 1024.0),
            ms(*init50),
            ms(*init90),
            ratio,
            if s.name == HELLO {
                ""
            } else if ratio <= GOAL {
                "ok"
            } else {
                "OVER"
            },
            ms(*first50),
            ms(*first90),
            ms(*first50) / ms(hello_first),
            s.request,
        );
    }
}

/// The AWS SDK's variables as Lambda sets them (moto checks no credentials).
fn aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto::endpoint().to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_SESSION_TOKEN", "test".into()),
    ]
}

/// An API Gateway event for a `/prefix/...` path, signed with `sign` now, with a JSON body.
fn signed_event(
    method: &str,
    target: &str,
    body: Option<Value>,
    sign: impl FnOnce(&str, &str, &[u8], Timestamp) -> [(&'static str, String); 4],
) -> Value {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let prefix = path.split('/').nth(1).unwrap_or("");
    let mut event = apigw_event(method, &format!("ANY /{prefix}/{{proxy+}}"), path, query);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    for (name, value) in sign(method, target, body.as_bytes(), Timestamp::now()) {
        event["headers"][name] = json!(value);
    }
    if !body.is_empty() {
        event["headers"]["content-type"] = json!("application/json");
        event["body"] = json!(body);
    }
    event
}

/// Checks a proxy response's status.
fn status(want: u64) -> Box<dyn Fn(&Value)> {
    Box::new(move |answer| assert_eq!(answer["statusCode"], want, "{answer}"))
}

fn random_hex(bytes: usize) -> String {
    let mut r = vec![0u8; bytes];
    getrandom::fill(&mut r).unwrap();
    r.iter().map(|b| format!("{b:02x}")).collect()
}

/// The binaries, their environments on fresh moto tables, and their first requests, with
/// what those requests read seeded.
async fn subjects() -> Vec<Subject> {
    // The hello world: the same Lambda variables, a request that touches nothing.
    let hello = Subject {
        name: HELLO,
        request: "GET /hello (no AWS)",
        env: aws_env(),
        event: Box::new(|| apigw_event("GET", "ANY /hello", "/hello", "")),
        check: status(200),
    };

    // keys: a key bundle lookup, a DynamoDB query.
    let (keys_store, key_tables) = moto::fresh_store().await;
    let alice = User::new(1, Timestamp::now());
    keys_store.insert(&alice.bundle).await.unwrap();
    let mut env = aws_env();
    env.extend([
        ("KEYS_TABLE", key_tables.keys.clone()),
        ("INBOX_TABLE", key_tables.inbox.clone()),
        ("NONCES_TABLE", key_tables.nonces.clone()),
        ("RATE_LIMITS_TABLE", key_tables.rate_limits.clone()),
    ]);
    let path = format!("/keys/{}", alice.id());
    let keys = Subject {
        name: "cinder-keys",
        request: "GET /keys/{id}: DynamoDB query",
        env,
        event: Box::new(move || apigw_event("GET", "ANY /keys/{proxy+}", &path, "")),
        check: status(200),
    };

    // enclave: a login start (three rate-limit updates, account read, OPAQUE with the
    // derived server setup, a sealed login state), for a fresh login each time so the
    // per-login limits never answer instead. Every start comes from the event's one source
    // address, so that address's own bucket (30 per 15 minutes) is off here.
    let (_, account_tables) = moto::fresh_accounts_store().await;
    let mut env = aws_env();
    env.extend([
        ("ACCOUNTS_TABLE", account_tables.accounts.clone()),
        ("RATE_LIMITS_TABLE", account_tables.rate_limits.clone()),
        ("NONCES_TABLE", account_tables.nonces.clone()),
        ("MASTER_SECRET", random_hex(32)),
        ("CINDER_LIMITS", "login_per_address=off".into()),
    ]);
    let enclave = Subject {
        name: "cinder-enclave",
        request: "POST /accounts/login/start: 2 DynamoDB calls, OPAQUE",
        env,
        event: Box::new(|| {
            let start = ClientLogin::<ClientSuite>::start(&mut OsRng, b"bench password").unwrap();
            let body = LoginStart {
                login: format!("bench.{}", random_hex(8)).parse().unwrap(),
                request: Blob(start.message.serialize().to_vec()),
            };
            let mut event = apigw_event(
                "POST",
                "ANY /accounts/{proxy+}",
                "/accounts/login/start",
                "",
            );
            event["headers"]["content-type"] = json!("application/json");
            event["body"] = json!(serde_json::to_string(&body).unwrap());
            event
        }),
        check: status(200),
    };

    // spine, shards, media: a room with one channel and message number 1 reserved, made
    // through the routers in-process on the same tables.
    let (rooms_store, room_tables) = moto::fresh_rooms_store().await;
    let channel = ChannelId([0x42; 16]);
    let caps = Arc::new(RoomCaps::new(0x41, &[channel]));
    let seed = cinder_server::routing::finish(
        cinder_server::spine::routes(cinder_server::spine::SpineState::new(
            rooms_store.clone(),
            Clock::system(),
        ))
        .merge(cinder_server::shards::routes(
            cinder_server::shards::ShardsState::new(
                rooms_store,
                Clock::system(),
                cinder_server::shards::DEFAULT_MAX_BURN_SECS,
            ),
        )),
    );
    let body = serde_json::to_vec(&caps.create_body(b"sealed spine")).unwrap();
    let headers = caps.admin.sign("POST", "/rooms", &body, Timestamp::now());
    let created = cinder_tests::router::send(&seed, "POST", "/rooms", &headers, body).await;
    assert_eq!(created.status, 201, "{}", created.json);
    let numbers = format!("{}/numbers", caps.messages(0));
    let headers = caps
        .channel(0)
        .1
        .sign("POST", &numbers, b"", Timestamp::now());
    let reserved = cinder_tests::router::send(&seed, "POST", &numbers, &headers, vec![]).await;
    assert_eq!(reserved.status, 201, "{}", reserved.json);
    assert_eq!(reserved.json["number"], 1);
    let env = {
        let mut env = aws_env();
        env.extend(
            rooms_env(&room_tables)
                .into_iter()
                .filter(|(k, _)| !k.starts_with("AWS_")),
        );
        env
    };

    let c = caps.clone();
    let spine = Subject {
        name: "cinder-spine",
        request: "GET /rooms/{room} signed: DynamoDB reads",
        env: env.clone(),
        event: Box::new(move || {
            signed_event("GET", &c.path(), None, |m, p, b, t| {
                c.member.sign(m, p, b, t)
            })
        }),
        check: status(200),
    };
    let c = caps.clone();
    let shards = Subject {
        name: "cinder-shards",
        request: "GET /messages/{room}/{channel} signed: DynamoDB read, query",
        env: env.clone(),
        event: Box::new(move || {
            let target = format!("{}?after=0", c.messages(0));
            signed_event("GET", &target, None, |m, p, b, t| {
                c.channel(0).1.sign(m, p, b, t)
            })
        }),
        check: status(200),
    };
    let c = caps.clone();
    let media = Subject {
        name: "cinder-media",
        request: "POST /media/{room}/{channel}/1 signed: DynamoDB reads, nonce write, S3 presign",
        env: env.clone(),
        event: Box::new(move || {
            let target = format!("/media/{}/{}/1", c.room, channel);
            signed_event(
                "POST",
                &target,
                Some(json!({"size": 1234})),
                |m, p, b, t| c.channel(0).1.sign(m, p, b, t),
            )
        }),
        check: status(201),
    };

    // burn: a burnt message's stream record, whose two objects are deleted from S3.
    let (room, chan) = (caps.room, channel);
    let burn = Subject {
        name: "cinder-burn",
        request: "stream REMOVE with 2 media: S3 DeleteObjects",
        env: env.clone(),
        event: Box::new(move || {
            let now = Timestamp::now().0;
            let key = json!({"S": format!("{room}/{chan}")});
            json!({"Records": [{
                "eventID": "1",
                "eventName": "REMOVE",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": now,
                    "Keys": {"channel": key, "number": {"N": "1"}},
                    "OldImage": {
                        "channel": key,
                        "number": {"N": "1"},
                        "ciphertext": {"S": "c2VhbGVkIG1lc3NhZ2U"},
                        "burn_at": {"N": now.to_string()},
                        "posted_at": {"N": (now - 60).to_string()},
                        "delete_hash": {"S": "ZGVsZXRlIGhhc2g"},
                        "media": {"L": [{"S": random_hex(16)}, {"S": random_hex(16)}]}
                    },
                    "SequenceNumber": "100000000000000000001",
                    "SizeBytes": 300,
                    "StreamViewType": "NEW_AND_OLD_IMAGES"
                },
                "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/shards/stream/x"
            }]})
        }),
        check: Box::new(|answer| assert_eq!(answer, &json!({"batchItemFailures": []}))),
    };
    // live: a WebSocket `$disconnect`, which forgets the connection's subscriptions (a read
    // and a batch delete on its table); the endpoint it posts frames to is not called.
    let (_, live_table) = moto::fresh_live_store().await;
    let mut env = env.clone();
    env.extend([
        ("LIVE_TABLE", live_table),
        ("LIVE_ENDPOINT", moto::endpoint().to_owned()),
    ]);
    let disconnect = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../functions/live/tests/events/disconnect.json"
    );
    let disconnect: Value =
        serde_json::from_str(&std::fs::read_to_string(disconnect).unwrap()).unwrap();
    let live = Subject {
        name: "cinder-live",
        request: "WebSocket $disconnect: DynamoDB get and batch delete",
        env: env.clone(),
        event: Box::new(move || disconnect.clone()),
        check: status(200),
    };

    // calls: TURN credentials for the channel (a room read, a nonce write, a relay scan);
    // its TURN secret comes in its environment, as the enclave's master secret does. Every
    // start asks for the one channel's credentials, so its bucket (120 a minute) is off here:
    // more starts than that would be answered 429.
    let (_, relays_table) = moto::fresh_relays_store().await;
    env.extend([
        ("RELAYS_TABLE", relays_table),
        ("TURN_SECRET", random_hex(32)),
        ("CINDER_LIMITS", "turn_per_capability=off".into()),
    ]);
    let c = caps.clone();
    let calls = Subject {
        name: "cinder-calls",
        request: "POST /calls/{room}/{channel}/turn signed: DynamoDB read, nonce write, scan",
        env,
        event: Box::new(move || {
            let target = format!("/calls/{}/{}/turn", c.room, channel);
            signed_event("POST", &target, None, |m, p, b, t| {
                c.channel(0).1.sign(m, p, b, t)
            })
        }),
        check: status(200),
    };
    vec![
        hello, keys, enclave, spine, shards, media, burn, live, calls,
    ]
}

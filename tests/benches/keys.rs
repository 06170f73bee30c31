//! `make bench`: the key directory's per-request latency through the router on the embedded
//! store (SQLite on disk, as `make dev` runs it), and the cost of verifying one signed request.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use cinder_proto::{HpkePublicKey, KeyBundle, Nonce, RequestSignature, Signer, Timestamp};
use cinder_server::keys::{KeysState, router};
use cinder_server::{Auth, Clock};
use cinder_sqlite::SqliteStore;
use criterion::{BatchSize, Criterion};
use ed25519_dalek::SigningKey;
use tower::ServiceExt;

const REQUESTS: usize = 2_000;

fn random_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).unwrap();
    SigningKey::from_bytes(&seed)
}

fn random_nonce() -> Nonce {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).unwrap();
    Nonce(n)
}

async fn timed(app: &Router, request: http::Request<Body>, expect: u16) -> Duration {
    let started = Instant::now();
    let response = app.clone().oneshot(request).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(response.status().as_u16(), expect);
    elapsed
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    // Nearest rank: the smallest sample with at least `p` of them at or below it.
    let pct =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "{name:<28} n={:<6} p50={:>9.1?} p99={:>9.1?} max={:>9.1?}",
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("bench.sqlite3")).unwrap());
    let now = Timestamp::now();
    // Figures of the server's own work, without the rate limits a bench outruns (its
    // publishes, all from one address, pass the per-address limit after 20).
    let app = router(
        KeysState::new(store.clone(), Clock::system())
            .with_limits(cinder_server::limits::Limits::off()),
    );

    println!("key directory through the router, SQLite on disk, concurrency 1, limits off:");
    let bundles: Vec<KeyBundle> = (0..REQUESTS)
        .map(|_| KeyBundle::genesis(&random_key(), HpkePublicKey([1; 32]), now))
        .collect();
    let publish = rt.block_on(async {
        let mut samples = Vec::with_capacity(REQUESTS);
        for b in &bundles {
            let req = http::Request::post("/keys")
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(b).unwrap()))
                .unwrap();
            samples.push(timed(&app, req, 201).await);
        }
        samples
    });
    report("POST /keys (publish)", publish);
    let get = rt.block_on(async {
        let mut samples = Vec::with_capacity(REQUESTS);
        for i in 0..REQUESTS {
            // Visit users in a scattered order rather than insertion order.
            let id = bundles[(i * 7919) % bundles.len()].user_id;
            let req = http::Request::get(format!("/keys/{id}"))
                .body(Body::empty())
                .unwrap();
            samples.push(timed(&app, req, 200).await);
        }
        samples
    });
    report("GET /keys/{id}", get);

    let mut c = Criterion::default().configure_from_args();
    let key = random_key();
    let bundle = KeyBundle::genesis(&key, HpkePublicKey([1; 32]), now);
    let signer = Signer::User(bundle.user_id);
    let body = br#"{"sealed":"c2VhbGVk","ttl":3600}"#;
    let path = format!("/inbox/{}", bundle.user_id);
    rt.block_on(cinder_server::store::KeyStore::insert(
        store.as_ref(),
        &bundle,
    ))
    .unwrap();

    c.bench_function("verify request signature (ed25519, canonical text)", |b| {
        let sig = RequestSignature::sign(&key, signer, "POST", &path, body, now, random_nonce());
        b.iter(|| {
            let msg = cinder_proto::auth::canonical_request(
                "POST",
                &path,
                body,
                &signer,
                sig.timestamp,
                &sig.nonce,
            );
            bundle
                .sign_key
                .verify(msg.as_bytes(), &sig.signature)
                .unwrap();
        });
    });
    let auth = Auth::new(store.clone(), store.clone(), Clock::system());
    c.bench_function(
        "authenticate request (key lookup + verify + nonce, SQLite)",
        |b| {
            b.to_async(&rt).iter_batched(
                || {
                    RequestSignature::sign(
                        &key,
                        signer,
                        "POST",
                        &path,
                        body,
                        Timestamp::now(),
                        random_nonce(),
                    )
                },
                |sig| {
                    let auth = auth.clone();
                    let path = path.clone();
                    async move { auth.verify(&sig, "POST", &path, body).await.unwrap() }
                },
                BatchSize::SmallInput,
            );
        },
    );
    c.final_summary();
}

//! `make bench`: what an account costs. Client time for register and login end to end
//! (HTTP, Argon2id at the floor: 64 MiB, t=3, p=4), and the server's own time per login
//! (both OPAQUE round trips, in-process, on SQLite): the figure that sizes the Lambda.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::body::Body;
use cinder_client::account::{ClientSuite, UserProfile};
use cinder_proto::accounts::{KsfParams, Login};
use cinder_proto::encoding::{decode, encode};
use cinder_tests::server::{Backend, start};
use opaque_ke::{ClientLogin, ClientLoginFinishParameters, CredentialResponse};
use rand_core::OsRng;
use serde_json::{Value, json};
use tower::ServiceExt;

const ROUNDS: usize = 10;

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<44} n={:<3} p50={:>9.1?} mean={:>9.1?} max={:>9.1?}",
        samples.len(),
        samples[samples.len() / 2],
        mean,
        samples[samples.len() - 1]
    );
}

async fn post(app: &axum::Router, path: &str, body: Value) -> (Duration, Value) {
    let request = http::Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let started = Instant::now();
    let response = app.clone().oneshot(request).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    (elapsed, serde_json::from_slice(&bytes).unwrap())
}

fn main() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = start(Backend::Sqlite, b"bench master secret, thirty-two bytes or more").await;
        let client = server.client();
        println!("accounts, Argon2id m={} KiB t={} p={}:", KsfParams::FLOOR.m_kib, KsfParams::FLOOR.t, KsfParams::FLOOR.p);

        let mut register = Vec::new();
        let mut login = Vec::new();
        for i in 0..ROUNDS {
            let name: Login = format!("bench{i}").parse().unwrap();
            let started = Instant::now();
            client.register(&name, b"a bench password", UserProfile::default(), KsfParams::FLOOR).await.unwrap();
            register.push(started.elapsed());
            let started = Instant::now();
            client.login(&name, b"a bench password", 1, None).await.unwrap();
            login.push(started.elapsed());
        }
        summary("client: register (HTTP, incl. key publish)", register);
        summary("client: login (HTTP, incl. enclave open)", login);

        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(KsfParams::FLOOR.m_kib, KsfParams::FLOOR.t, KsfParams::FLOOR.p, None).unwrap(),
        );
        let mut server_time = Vec::new();
        for i in 0..ROUNDS {
            let c = ClientLogin::<ClientSuite>::start(&mut OsRng, b"a bench password").unwrap();
            let (t1, started) = post(
                &server.app,
                "/accounts/login/start",
                json!({"login": format!("bench{i}"), "request": encode(&c.message.serialize())}),
            )
            .await;
            let response = CredentialResponse::<ClientSuite>::deserialize(&decode(started["response"].as_str().unwrap()).unwrap()).unwrap();
            let finish = c
                .state
                .finish(b"a bench password", response, ClientLoginFinishParameters::new(Some(b"cinder/opaque/v1"), Default::default(), Some(&argon)))
                .unwrap();
            let (t2, _) = post(
                &server.app,
                "/accounts/login/finish",
                json!({"state": started["state"], "finalization": encode(&finish.message.serialize())}),
            )
            .await;
            server_time.push(t1 + t2);
        }
        summary("server: one login (start + finish, in-process)", server_time);
    });
}

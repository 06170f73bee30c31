//! Logging in against a lying server: Argon2id parameters weakened to make a password cheap
//! to guess, or inflated to exhaust the client. The server is the dev server's router
//! behind a layer that rewrites its answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cinder_proto::accounts::{KsfParams, Login};

use super::*;
use crate::account::UserProfile;

/// What the lying layer does: the parameters it answers login starts with, and how many
/// login finishes (finalizations) reached it.
#[derive(Clone, Default)]
struct Lies {
    ksf: Arc<Mutex<Option<KsfParams>>>,
    finishes: Arc<AtomicUsize>,
}

async fn rewrite_ksf(State(lies): State<Lies>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if path == "/accounts/login/finish" {
        lies.finishes.fetch_add(1, Ordering::SeqCst);
    }
    let response = next.run(request).await;
    let ksf = *lies.ksf.lock().unwrap();
    match ksf {
        Some(ksf) if path == "/accounts/login/start" && response.status().is_success() => {
            let (mut parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            json["ksf"] = serde_json::to_value(ksf).unwrap();
            parts.headers.remove(axum::http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(serde_json::to_vec(&json).unwrap()))
        }
        _ => response,
    }
}

/// Defence: the client checks the Argon2id parameters a login start answers with
/// (`account::argon2`, `KsfParams::acceptable`) before it stretches the password or sends
/// anything more: below the floor or above the bounds, the login stops with a clear error
/// and no finalization is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cannot_weaken_or_inflate_argon2id_at_login() {
    let lies = Lies::default();
    let layer = axum::middleware::from_fn_with_state(lies.clone(), rewrite_ksf);
    let w = world_behind(Clock::system(), |app| app.layer(layer)).await;
    let login: Login = "alice".parse().unwrap();
    let password = b"correct horse battery staple";
    w.client
        .register(&login, password, UserProfile::default(), KsfParams::FLOOR)
        .await
        .unwrap();

    for (what, ksf) in [
        // Cheap to stretch, so cheap to guess against: below the floor in each dimension.
        (
            "weak memory",
            KsfParams {
                m_kib: 1024,
                ..KsfParams::FLOOR
            },
        ),
        (
            "one pass",
            KsfParams {
                t: 1,
                ..KsfParams::FLOOR
            },
        ),
        (
            "one lane",
            KsfParams {
                p: 1,
                ..KsfParams::FLOOR
            },
        ),
        // Ruinous to stretch: a thousand passes (minutes of CPU), 4 GiB of memory.
        (
            "a thousand passes",
            KsfParams {
                t: 1000,
                ..KsfParams::FLOOR
            },
        ),
        (
            "4 GiB",
            KsfParams {
                m_kib: 4 * 1024 * 1024,
                ..KsfParams::FLOOR
            },
        ),
    ] {
        // GIVEN a server that answers the login start with these parameters
        *lies.ksf.lock().unwrap() = Some(ksf);
        // WHEN Alice logs in with the right password
        let started = Instant::now();
        let refused = w.client.login(&login, password, 0, None).await.unwrap_err();
        // THEN her client refuses at once, saying why, and sends no finalization
        assert!(
            matches!(&refused, ClientError::Verification(why) if why.contains("Argon2id")),
            "{what}: {refused}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: stretched the password first ({:?})",
            started.elapsed()
        );
        assert_eq!(lies.finishes.load(Ordering::SeqCst), 0, "{what}");
    }

    // The same server telling the truth: the login goes through.
    *lies.ksf.lock().unwrap() = None;
    let session = w.client.login(&login, password, 0, None).await.unwrap();
    assert_eq!(session.ksf, KsfParams::FLOOR);
    assert_eq!(lies.finishes.load(Ordering::SeqCst), 1);
}

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

/// Answers the next request to each listed method and path with the listed status and
/// error code instead of passing it on (an answer lost, or refused), and counts the
/// requests that reach each path.
#[derive(Clone, Default)]
struct Refusals {
    next: Arc<Mutex<Vec<Refusal>>>,
    seen: Arc<Mutex<Vec<(Method, String)>>>,
}

impl Refusals {
    fn refuse_next(&self, method: Method, path: &str, status: u16, code: ErrorCode) {
        let mut next = self.next.lock().unwrap();
        next.push((method, path.to_owned(), status, code));
    }

    fn count(&self, method: Method, path: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|(m, p)| *m == method && p == path)
            .count()
    }
}

use axum::http::Method;

/// A request to answer in place of the server: method, path, status, error code.
type Refusal = (Method, String, u16, ErrorCode);

async fn refuse(State(r): State<Refusals>, request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    r.seen.lock().unwrap().push((method.clone(), path.clone()));
    let hit = {
        let mut rules = r.next.lock().unwrap();
        let at = rules
            .iter()
            .position(|(m, p, ..)| *m == method && *p == path);
        at.map(|i| rules.remove(i))
    };
    match hit {
        Some((_, _, status, code)) => {
            let body = cinder_proto::ErrorBody {
                code,
                message: "refused by the test".into(),
                field: None,
                reserved: None,
            };
            let mut response = axum::response::IntoResponse::into_response(axum::Json(body));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            response
        }
        None => next.run(request).await,
    }
}

/// Defences: a login completes a registration whose key publish got no answer, and a
/// rotation whose directory update never went out (the enclave is written first), but
/// publishes nothing when the directory could not be read for another reason; and a
/// finalization the server refuses is a failed login, in a login and in a
/// re-authentication alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_finishes_an_interrupted_registration_and_nothing_else() {
    let r = Refusals::default();
    let layer = axum::middleware::from_fn_with_state(r.clone(), refuse);
    let w = world_behind(Clock::system(), |app| app.layer(layer)).await;
    let login: Login = "alice".parse().unwrap();
    let password = b"correct horse battery staple";
    // GIVEN a registration whose key publish is lost
    r.refuse_next(Method::POST, "/keys", 503, ErrorCode::Unavailable);
    let lost = w
        .client
        .register(&login, password, UserProfile::default(), KsfParams::FLOOR)
        .await
        .unwrap_err();
    assert_eq!(lost.code(), Some(ErrorCode::Unavailable), "{lost}");
    // WHEN she logs in, THEN her keys are published
    let me = w.client.login(&login, password, 1, None).await.unwrap();
    let user = me.contents.identity.user_id();
    assert_eq!(r.count(Method::POST, "/keys"), 2, "published at login");
    assert_eq!(
        w.client.key(user).await.unwrap(),
        me.contents.identity.bundle
    );
    // A login whose directory read fails for another reason stops with that error and
    // publishes nothing.
    r.refuse_next(
        Method::GET,
        &format!("/keys/{user}"),
        500,
        ErrorCode::Internal,
    );
    let failed = w.client.login(&login, password, 1, None).await.unwrap_err();
    assert_eq!(failed.code(), Some(ErrorCode::Internal), "{failed}");
    assert_eq!(r.count(Method::POST, "/keys"), 2);
    // A finalization the server refuses is a failed login, and a failed re-authentication.
    r.refuse_next(
        Method::POST,
        "/accounts/login/finish",
        401,
        ErrorCode::Unauthenticated,
    );
    let refused = w.client.login(&login, password, 1, None).await.unwrap_err();
    assert!(matches!(refused, ClientError::LoginFailed), "{refused}");
    let session = w.client.login(&login, password, 1, None).await.unwrap();
    r.refuse_next(
        Method::POST,
        "/accounts/reauth/finish",
        401,
        ErrorCode::Unauthenticated,
    );
    let refused = w
        .client
        .reauthenticate(&session, password)
        .await
        .unwrap_err();
    assert!(matches!(refused, ClientError::LoginFailed), "{refused}");
    assert!(w.client.reauthenticate(&session, password).await.is_ok());
    // A rotation written to the enclave whose directory update never went out is
    // finished by the next login.
    let mut session = session;
    session.contents.identity = session.contents.identity.rotated(Timestamp::now()).unwrap();
    w.client.save_enclave(&mut session).await.unwrap();
    assert_eq!(w.client.key(user).await.unwrap().version, 1);
    w.client.login(&login, password, 1, None).await.unwrap();
    assert_eq!(
        w.client.key(user).await.unwrap(),
        session.contents.identity.bundle
    );
}

//! Accounts end to end on both stores: the real client library over real HTTP against every
//! function's routes. OPAQUE, the enclave, enumeration, rate limits, rollback, conflicts,
//! password change, deletion, and what a stolen database is worth.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use cinder_client::account::{ClientSuite, UserProfile};
use cinder_client::{ClientError, Profile};
use cinder_proto::accounts::{KsfParams, Login, StoredEnclave};
use cinder_proto::encoding::encode;
use cinder_proto::{Blob, ErrorCode, Timestamp};
use cinder_server::Clock;
use cinder_server::accounts::{AccountsState, ServerSecrets};
use cinder_server::clock::ManualTime;
use cinder_server::keys::KeysState;
use cinder_server::store::AccountStore;
use cinder_sqlite::SqliteStore;
use cinder_tests::router::{Answer, send, send_from};
use cinder_tests::server::{Backend, TestServer, start};
use opaque_ke::ClientLogin;
use rand_core::OsRng;
use serde_json::{Value, json};

const MASTER: &[u8] = b"a test master secret of at least thirty-two bytes";

async fn servers() -> Vec<TestServer> {
    vec![
        start(Backend::Sqlite, MASTER).await,
        start(Backend::Dynamo, MASTER).await,
    ]
}

fn login(name: &str) -> Login {
    name.parse().unwrap()
}

fn profile(name: &str) -> UserProfile {
    UserProfile {
        name: name.into(),
        status: "here".into(),
        avatar: None,
    }
}

/// A raw OPAQUE credential request, as a client would send it.
fn credential_request(password: &[u8]) -> String {
    let start = ClientLogin::<ClientSuite>::start(&mut OsRng, password).unwrap();
    encode(&start.message.serialize())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_login_opens_the_same_enclave_and_publishes_keys() {
    for s in servers().await {
        let client = s.client();
        let registered = client
            .register(
                &login("alice"),
                b"correct horse",
                profile("Alice"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        assert_eq!(registered.contents.version, 1);
        let id = registered.contents.identity.user_id();
        assert_eq!(
            client.key(id).await.unwrap(),
            registered.contents.identity.bundle,
            "{:?}",
            s.backend
        );

        let again = client
            .login(
                &login("ALICE"),
                b"correct horse",
                1,
                Some(&registered.server_key),
            )
            .await
            .unwrap();
        assert_eq!(
            again.contents.identity.user_id(),
            id,
            "logins are case-insensitive"
        );
        assert_eq!(
            again.contents.identity.bundle,
            registered.contents.identity.bundle
        );
        assert_eq!(again.contents.profile, profile("Alice"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_login_and_wrong_password_look_the_same() {
    for s in servers().await {
        s.client()
            .register(
                &login("bob"),
                b"bob's password",
                profile("Bob"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();

        // Login start: same status, same fields, same sizes.
        let mut starts = Vec::new();
        for who in ["bob", "nobody"] {
            let body = json!({ "login": who, "request": credential_request(b"guess") });
            let answer = send(
                &s.app,
                "POST",
                "/accounts/login/start",
                &[],
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
            assert_eq!(answer.status, 200, "{:?} {who}", s.backend);
            starts.push(answer.json);
        }
        let shape = |v: &Value| {
            v.as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map(str::len),
                        v.as_object().map(|_| v.clone()),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(shape(&starts[0]), shape(&starts[1]), "{:?}", s.backend);

        // Login finish with a wrong proof: the same answer, byte for byte.
        let mut finishes = Vec::new();
        for start in &starts {
            let body = json!({ "state": start["state"], "finalization": encode(&[7u8; 64]) });
            let answer = send(
                &s.app,
                "POST",
                "/accounts/login/finish",
                &[],
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
            finishes.push((answer.status, answer.json));
        }
        assert_eq!(finishes[0], finishes[1], "{:?}", s.backend);
        assert_eq!(finishes[0].0, 401);

        // Through the client: both are "wrong login or password".
        let client = s.client();
        for (who, password) in [("bob", &b"wrong"[..]), ("nobody", &b"bob's password"[..])] {
            let err = client
                .login(&login(who), password, 0, None)
                .await
                .err()
                .unwrap();
            assert!(
                matches!(err, ClientError::LoginFailed),
                "{:?} {who}: {err}",
                s.backend
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_attempts_are_limited_per_address_so_a_stranger_cannot_lock_the_owner_out() {
    for s in servers().await {
        let stranger: std::net::IpAddr = "198.51.100.7".parse().unwrap();
        let owner: std::net::IpAddr = "203.0.113.5".parse().unwrap();
        let start = |who: &str| {
            let body = json!({ "login": who, "request": credential_request(b"guess") });
            serde_json::to_vec(&body).unwrap()
        };
        let from = |ip, who: &'static str| {
            let app = s.app.clone();
            let body = start(who);
            async move { send_from(&app, Some(ip), "POST", "/accounts/login/start", &[], body).await }
        };
        // GIVEN a stranger guessing carol's password from one address: ten go through
        for i in 0..10 {
            assert_eq!(
                from(stranger, "carol").await.status,
                200,
                "{:?}: {i}",
                s.backend
            );
        }
        // THEN the eleventh waits for the bucket's next token, 90 s (10 per 15 minutes)
        let limited = from(stranger, "carol").await;
        assert_eq!(
            (limited.status.as_u16(), limited.code()),
            (429, "rate_limited"),
            "{:?}",
            s.backend
        );
        let retry: u64 = limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // One token's wait (90 s, less the time the ten took), not a 15-minute window.
        assert!((60..=90).contains(&retry), "{retry}");
        // AND carol, from her own address, still logs in
        assert_eq!(from(owner, "carol").await.status, 200, "{:?}", s.backend);
        // AND after the wait the stranger gets one more guess, not a fresh window of ten
        s.time.advance(retry);
        assert_eq!(from(stranger, "carol").await.status, 200);
        assert_eq!(from(stranger, "carol").await.status, 429);
        // AND one address spraying many logins runs out of its own bucket (30 per 15
        // minutes), whichever login it names
        let sprayer: std::net::IpAddr = "2001:db8:5::1".parse().unwrap();
        let names = ["dora", "eric", "fay"];
        let mut through = 0;
        for i in 0..31 {
            if from(sprayer, names[i % 3]).await.status == 200 {
                through += 1;
            }
        }
        assert_eq!(through, 30, "{:?}", s.backend);
        // ... and another host in the same /64 shares it
        let neighbour: std::net::IpAddr = "2001:db8:5::2".parse().unwrap();
        assert_eq!(from(neighbour, "gus").await.status, 429);
    }
}

/// A login driven by hand up to its finish: the body of `POST /accounts/login/finish`, with
/// the sealed state of a login start for `who` made now and the client's proof of `password`.
async fn login_by_hand(app: &Router, who: &str, password: &[u8]) -> Vec<u8> {
    proof_by_hand(app, "/accounts/login/start", &[], Some(who), password).await
}

/// The same for a re-authentication started in the session of `token`: the body of
/// `POST /accounts/reauth/finish`.
async fn reauth_by_hand(app: &Router, token: &Blob, password: &[u8]) -> Vec<u8> {
    let session = [("x-cinder-session", encode(&token.0))];
    proof_by_hand(app, "/accounts/reauth/start", &session, None, password).await
}

/// A start at `path` (naming `who` for a login) and the client's proof of `password`
/// against its answer, as a finish's body.
async fn proof_by_hand(
    app: &Router,
    path: &str,
    headers: &[(&str, String)],
    who: Option<&str>,
    password: &[u8],
) -> Vec<u8> {
    let start_msg = ClientLogin::<ClientSuite>::start(&mut OsRng, password).unwrap();
    let mut body = json!({ "request": encode(&start_msg.message.serialize()) });
    if let Some(who) = who {
        body["login"] = json!(who);
    }
    let started = send(
        app,
        "POST",
        path,
        headers,
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(started.status, 200, "{:?}", started.json);
    let response = opaque_ke::CredentialResponse::<ClientSuite>::deserialize(
        &cinder_proto::encoding::decode(started.json["response"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let ksf: KsfParams = serde_json::from_value(started.json["ksf"].clone()).unwrap();
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(ksf.m_kib, ksf.t, ksf.p, None).unwrap(),
    );
    let finish = start_msg
        .state
        .finish(
            password,
            response,
            opaque_ke::ClientLoginFinishParameters::new(
                Some(b"cinder/opaque/v1"),
                Default::default(),
                Some(&argon),
            ),
        )
        .unwrap();
    serde_json::to_vec(&json!({
        "state": started.json["state"],
        "finalization": encode(&finish.message.serialize()),
    }))
    .unwrap()
}

async fn finish_login(app: &Router, body: Vec<u8>) -> Answer {
    send(app, "POST", "/accounts/login/finish", &[], body).await
}

/// What every failed login finish answers, whatever the reason.
fn login_failed() -> (u16, Value) {
    (
        401,
        json!({"code": "unauthenticated", "message": "login failed: wrong login or password"}),
    )
}

fn status_and_json(answer: &Answer) -> (u16, Value) {
    (answer.status.as_u16(), answer.json.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_state_finishes_once() {
    let s = start(Backend::Sqlite, MASTER).await;
    let client = s.client();
    client
        .register(
            &login("erin"),
            b"pw for erin",
            profile("Erin"),
            KsfParams::FLOOR,
        )
        .await
        .unwrap();
    // Drive the protocol by hand to replay the finish.
    let body = login_by_hand(&s.app, "erin", b"pw for erin").await;
    assert_eq!(finish_login(&s.app, body.clone()).await.status, 200);
    let replay = finish_login(&s.app, body).await;
    assert_eq!(status_and_json(&replay), login_failed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_finishes_only_for_the_record_it_started_against() {
    for s in servers().await {
        let client = s.client();
        let mut me = client
            .register(
                &login("olga"),
                b"old password",
                profile("Olga"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        // GIVEN a login started, and proven, with the old password
        let with_old = login_by_hand(&s.app, "olga", b"old password").await;
        // WHEN the password changes (through another session) before that login finishes
        client
            .change_password(&mut me, b"old password", b"new password", KsfParams::FLOOR)
            .await
            .unwrap();
        // THEN the old password's proof opens no session under the new record, and the
        // refusal is the one a wrong password gets
        let finished = finish_login(&s.app, with_old).await;
        assert_eq!(
            status_and_json(&finished),
            login_failed(),
            "{:?}",
            s.backend
        );
        // AND a login started after the change, with the new password, finishes.
        let with_new = login_by_hand(&s.app, "olga", b"new password").await;
        assert_eq!(
            finish_login(&s.app, with_new).await.status,
            200,
            "{:?}",
            s.backend
        );

        // The same for a login that outlives its account: a new registration of the login
        // with the same password is another record, and the old proof does not open it.
        let me = client
            .login(&login("olga"), b"new password", 2, Some(&me.server_key))
            .await
            .unwrap();
        let before_deletion = login_by_hand(&s.app, "olga", b"new password").await;
        client.delete_account(&me, b"new password").await.unwrap();
        client
            .register(
                &login("olga"),
                b"new password",
                profile("Another Olga"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        assert_eq!(
            status_and_json(&finish_login(&s.app, before_deletion).await),
            login_failed(),
            "{:?}",
            s.backend
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enclave_saves_conflict_and_lose_nothing() {
    for s in servers().await {
        let client = s.client();
        let mut a = client
            .register(
                &login("frank"),
                b"frank's pw",
                profile("Frank"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let mut b = a.clone();
        a.contents.profile.status = "from device A".into();
        b.contents.profile.status = "from device B".into();
        let (ra, rb) = tokio::join!(client.save_enclave(&mut a), client.save_enclave(&mut b));
        let (won, lost) = match (ra, rb) {
            (Ok(()), Err(e)) => (a, e),
            (Err(e), Ok(())) => (b, e),
            other => panic!("{:?}: expected one winner, got {other:?}", s.backend),
        };
        assert_eq!(lost.code(), Some(ErrorCode::VersionConflict));
        let mut fresh = client
            .login(&login("frank"), b"frank's pw", 2, None)
            .await
            .unwrap();
        assert_eq!(
            fresh.contents.profile, won.contents.profile,
            "{:?}",
            s.backend
        );
        assert_eq!(fresh.contents.version, 2);
        // The loser re-reads and re-applies its change on top.
        fresh.contents.profile.name = "Franklin".into();
        client.save_enclave(&mut fresh).await.unwrap();
        assert_eq!(fresh.contents.version, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_a_rolled_back_enclave() {
    for s in servers().await {
        let client = s.client();
        let mut me = client
            .register(
                &login("gina"),
                b"gina's pw",
                profile("Gina"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let old = s
            .accounts
            .account(&server_login_key("gina"))
            .await
            .unwrap()
            .unwrap();
        me.contents.profile.status = "newer".into();
        client.save_enclave(&mut me).await.unwrap();

        // A hostile server restores yesterday's record (same password, older enclave).
        s.accounts.delete_account(&old.login).await.unwrap();
        s.accounts.create(&old).await.unwrap();
        let err = client
            .login(&login("gina"), b"gina's pw", me.contents.version, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, ClientError::Verification(m) if m.contains("rollback")),
            "{:?}: {err}",
            s.backend
        );

        // And cannot relabel the old ciphertext as the newer version.
        s.accounts.delete_account(&old.login).await.unwrap();
        let mut relabelled = old.clone();
        relabelled.enclave = StoredEnclave {
            version: 2,
            ..old.enclave.clone()
        };
        s.accounts.create(&relabelled).await.unwrap();
        let err = client
            .login(&login("gina"), b"gina's pw", 2, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ClientError::Verification(_)),
            "{:?}: {err}",
            s.backend
        );
    }
}

fn server_login_key(name: &str) -> cinder_server::store::LoginKey {
    cinder_server::accounts::ServerSecrets::from_master(MASTER)
        .unwrap()
        .login_key(&login(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_keeps_the_enclave_and_ends_old_sessions() {
    for s in servers().await {
        let client = s.client();
        let mut me = client
            .register(
                &login("hank"),
                b"old password",
                profile("Hank"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let old_token = me.token.clone();
        let id = me.contents.identity.user_id();
        let stronger = KsfParams {
            t: 4,
            ..KsfParams::FLOOR
        };
        client
            .change_password(&mut me, b"old password", b"new password", stronger)
            .await
            .unwrap();

        let old = client
            .login(&login("hank"), b"old password", 0, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(old, ClientError::LoginFailed),
            "{:?}: {old}",
            s.backend
        );
        let new = client
            .login(&login("hank"), b"new password", 2, Some(&me.server_key))
            .await
            .unwrap();
        assert_eq!(new.contents.identity.user_id(), id, "nothing lost");
        assert_eq!(new.contents.identity.bundle, me.contents.identity.bundle);
        assert_eq!(new.contents.profile, profile("Hank"));

        let mut stale = me.clone();
        stale.token = old_token;
        let err = client.refresh_enclave(&mut stale).await.err().unwrap();
        assert_eq!(
            err.code(),
            Some(ErrorCode::Unauthenticated),
            "{:?}",
            s.backend
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_accounts_are_gone() {
    for s in servers().await {
        let client = s.client();
        let me = client
            .register(&login("ivy"), b"ivy's pw", profile("Ivy"), KsfParams::FLOOR)
            .await
            .unwrap();
        client.delete_account(&me, b"ivy's pw").await.unwrap();
        let err = client
            .login(&login("ivy"), b"ivy's pw", 0, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(err, ClientError::LoginFailed),
            "{:?}: {err}",
            s.backend
        );
        let mut stale = me.clone();
        assert_eq!(
            client
                .refresh_enclave(&mut stale)
                .await
                .err()
                .unwrap()
                .code(),
            Some(ErrorCode::Unauthenticated)
        );
        // The login is free again.
        client
            .register(
                &login("ivy"),
                b"another pw",
                profile("Ivy 2"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_database_reveals_nothing_and_opens_nothing() {
    let s = start(Backend::Sqlite, MASTER).await;
    let client = s.client();
    let me = client
        .register(
            &login("judy.secret"),
            b"judy's password",
            profile("Judy Marvellous"),
            KsfParams::FLOOR,
        )
        .await
        .unwrap();
    drop(me);
    // GIVEN a copy of the database file
    let file = s.sqlite_file.clone().unwrap();
    let bytes = [
        std::fs::read(&file).unwrap(),
        std::fs::read(file.with_extension("sqlite3-wal")).unwrap_or_default(),
    ]
    .concat();
    // THEN neither the login, the password nor the profile appear in it
    for needle in [&b"judy.secret"[..], b"judy's password", b"Judy Marvellous"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{:?} is in the database",
            String::from_utf8_lossy(needle)
        );
    }
    // AND a server built from the copy but without the master secret cannot check even the
    // right password: the OPRF key is not in the database.
    let thief = start(
        Backend::Sqlite,
        b"the thief does not have the real master secret",
    )
    .await;
    let record = s
        .accounts
        .account(&server_login_key("judy.secret"))
        .await
        .unwrap()
        .unwrap();
    let mut stolen = record.clone();
    stolen.login = cinder_server::accounts::ServerSecrets::from_master(
        b"the thief does not have the real master secret",
    )
    .unwrap()
    .login_key(&login("judy.secret"));
    thief.accounts.create(&stolen).await.unwrap();
    let err = thief
        .client()
        .login(&login("judy.secret"), b"judy's password", 0, None)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ClientError::LoginFailed), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_account_input_gets_clear_4xx() {
    for s in servers().await {
        let post = |path: &'static str, body: Value| {
            let app = s.app.clone();
            async move { send(&app, "POST", path, &[], serde_json::to_vec(&body).unwrap()).await }
        };
        let bad_login = post(
            "/accounts/login/start",
            json!({"login": "x", "request": "AAAA"}),
        )
        .await;
        assert_eq!(
            (bad_login.status.as_u16(), bad_login.code()),
            (422, "invalid_body")
        );
        assert_eq!(bad_login.json["field"], "login");
        let bad_opaque = post(
            "/accounts/login/start",
            json!({"login": "kate", "request": "AAAA"}),
        )
        .await;
        assert_eq!(
            (
                bad_opaque.status.as_u16(),
                bad_opaque.code(),
                bad_opaque.json["field"].as_str()
            ),
            (422, "invalid_body", Some("request"))
        );
        let weak = post(
            "/accounts/register/finish",
            json!({"login": "kate", "upload": "AAAA", "ksf": {"m_kib": 1024, "t": 1, "p": 1}, "enclave": "AAAA"}),
        )
        .await;
        assert_eq!(
            (
                weak.status.as_u16(),
                weak.code(),
                weak.json["field"].as_str()
            ),
            (422, "limit_exceeded", Some("ksf"))
        );
        let huge = post(
            "/accounts/register/finish",
            json!({"login": "kate", "upload": "AAAA", "ksf": KsfParams::FLOOR, "enclave": encode(&vec![0u8; 256 * 1024 + 1])}),
        )
        .await;
        assert_eq!(
            (huge.status.as_u16(), huge.json["field"].as_str()),
            (422, Some("enclave"))
        );
        let too_big = send(
            &s.app,
            "POST",
            "/accounts/register/finish",
            &[],
            vec![b' '; 401 * 1024],
        )
        .await;
        assert_eq!(too_big.code(), "body_too_large");
        for (method, path) in [("GET", "/accounts/enclave"), ("DELETE", "/accounts/me")] {
            let none = send(&s.app, method, path, &[], vec![]).await;
            assert_eq!(
                (none.status.as_u16(), none.code()),
                (401, "unauthenticated")
            );
            let forged = send(
                &s.app,
                method,
                path,
                &[("x-cinder-session", encode(&[1u8; 80]))],
                vec![],
            )
            .await;
            assert_eq!(
                (forged.status.as_u16(), forged.code()),
                (401, "unauthenticated")
            );
        }
        let _ = Blob::default();
    }
}

/// The accounts and keys functions on a manual clock, served over real HTTP so the client
/// library can drive them: expiry is tested to the second, with no sleeping.
struct ManualServer {
    backend: Backend,
    client: cinder_client::Client,
    app: Router,
    time: ManualTime,
    start: Timestamp,
    /// The accounts store, for tests that rewrite what it holds.
    accounts: Arc<dyn AccountStore>,
}

async fn manual_servers() -> Vec<ManualServer> {
    let mut servers = Vec::new();
    for backend in [Backend::Sqlite, Backend::Dynamo] {
        // Real time, so the bundles the client dates with its own clock look ordinary.
        let start = Timestamp::now();
        let (clock, time) = Clock::manual(start);
        let secrets = Arc::new(ServerSecrets::from_master(MASTER).unwrap());
        let (keys, accounts) = match backend {
            Backend::Sqlite => {
                let store = Arc::new(SqliteStore::in_memory().unwrap());
                (
                    KeysState::new(store.clone(), clock.clone()),
                    AccountsState::new(store, secrets, clock),
                )
            }
            Backend::Dynamo => (
                KeysState::new(cinder_tests::moto::fresh_store().await.0, clock.clone()),
                AccountsState::new(
                    cinder_tests::moto::fresh_accounts_store().await.0,
                    secrets,
                    clock,
                ),
            ),
        };
        let store = accounts.accounts.clone();
        let app = cinder_server::routing::finish(
            Router::new()
                .merge(cinder_server::keys::routes(keys))
                .merge(cinder_server::accounts::routes(accounts)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = app.clone();
        tokio::spawn(async move { axum::serve(listener, served).await.unwrap() });
        servers.push(ManualServer {
            backend,
            client: cinder_client::Client::new(&url),
            app,
            time,
            start,
            accounts: store,
        });
    }
    servers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_last_one_hour_to_the_second() {
    for m in manual_servers().await {
        let t0 = m.start;
        let mut registered = m
            .client
            .register(&login("pat"), b"pat's pw", profile("Pat"), KsfParams::FLOOR)
            .await
            .unwrap();
        assert_eq!(registered.expires_at, t0.plus(3600), "{:?}", m.backend);
        // A login's session is an hour from the login.
        m.time.set(t0.plus(1000));
        let mut logged_in = m
            .client
            .login(&login("pat"), b"pat's pw", 1, None)
            .await
            .unwrap();
        assert_eq!(logged_in.expires_at, t0.plus(4600));

        m.time.set(t0.plus(3599));
        m.client.refresh_enclave(&mut registered).await.unwrap();
        m.time.set(t0.plus(3600));
        let err = m.client.refresh_enclave(&mut registered).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::Unauthenticated),
            "{:?}: a session outlived its hour",
            m.backend
        );
        // The later session is still good until its own hour is up, and then it is not.
        m.time.set(t0.plus(4599));
        m.client.refresh_enclave(&mut logged_in).await.unwrap();
        m.time.set(t0.plus(4600));
        let err = m.client.refresh_enclave(&mut logged_in).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::Unauthenticated),
            "{:?}",
            m.backend
        );
        // An expired session changes nothing either: not the enclave, not the account.
        assert_eq!(
            m.client
                .save_enclave(&mut logged_in)
                .await
                .unwrap_err()
                .code(),
            Some(ErrorCode::Unauthenticated)
        );
        assert_eq!(
            m.client
                .delete_account(&logged_in, b"pat's pw")
                .await
                .unwrap_err()
                .code(),
            Some(ErrorCode::Unauthenticated)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_states_last_120_seconds_to_the_second() {
    for m in manual_servers().await {
        let t0 = m.start;
        m.client
            .register(
                &login("quinn"),
                b"quinn's pw",
                profile("Quinn"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        // Started at t0, finished at t0 + 119: in time.
        let body = login_by_hand(&m.app, "quinn", b"quinn's pw").await;
        m.time.set(t0.plus(119));
        let on_time = finish_login(&m.app, body).await;
        assert_eq!(on_time.status, 200, "{:?}: {:?}", m.backend, on_time.json);
        // Started at t0 + 119, finished at t0 + 239: 120 s later, too late, and refused as
        // a wrong password is.
        let body = login_by_hand(&m.app, "quinn", b"quinn's pw").await;
        m.time.set(t0.plus(239));
        assert_eq!(
            status_and_json(&finish_login(&m.app, body.clone()).await),
            login_failed(),
            "{:?}: a login state outlived its 120 s",
            m.backend
        );
        // Much later, still refused.
        m.time.set(t0.plus(3000));
        assert_eq!(
            status_and_json(&finish_login(&m.app, body).await),
            login_failed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_to_a_server_with_another_opaque_key_is_refused() {
    let s = start(Backend::Sqlite, MASTER).await;
    let client = s.client();
    let me = client
        .register(
            &login("rita"),
            b"rita's pw",
            profile("Rita"),
            KsfParams::FLOOR,
        )
        .await
        .unwrap();
    // The key a server with another master secret would present; pinning it and meeting the
    // real one is the same mismatch as pinning the real one and meeting an impostor.
    let other = Blob(
        ServerSecrets::from_master(b"another deployment's master secret, 32+ bytes")
            .unwrap()
            .setup()
            .keypair()
            .public()
            .serialize()
            .to_vec(),
    );
    assert_ne!(other, me.server_key);
    let refused = client
        .login(&login("rita"), b"rita's pw", 1, Some(&other))
        .await;
    match refused {
        Err(ClientError::Verification(m)) => assert!(m.contains("OPAQUE key"), "{m}"),
        Err(e) => panic!("expected a verification error, got {e}"),
        Ok(session) => panic!("a login with the wrong pinned key returned {session:?}"),
    }
    // The right pin logs in.
    client
        .login(&login("rita"), b"rita's pw", 1, Some(&me.server_key))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_tokens_and_states_get_the_one_refusal() {
    for s in servers().await {
        let me = s
            .client()
            .register(&login("sam"), b"sam's pw", profile("Sam"), KsfParams::FLOOR)
            .await
            .unwrap();
        let token = me.token.0.clone();
        let refused_session = |header: String| {
            let app = s.app.clone();
            async move {
                let answer = send(
                    &app,
                    "GET",
                    "/accounts/enclave",
                    &[("x-cinder-session", header)],
                    vec![],
                )
                .await;
                status_and_json(&answer)
            }
        };
        let unauthenticated = (
            401,
            json!({"code": "unauthenticated", "message": "not authenticated: the signature or session is missing, invalid or expired"}),
        );
        let mut flipped = token.clone();
        flipped[40] ^= 1;
        let mut oversized = token.clone();
        oversized.resize(4096, 0);
        for (what, header) in [
            ("empty", String::new()),
            ("not base64url", "!!".repeat(60)),
            ("a salt cut short", encode(&token[..20])),
            ("salt and tag only", encode(&token[..48])),
            ("one byte short", encode(&token[..token.len() - 1])),
            ("the salt's first byte gone", encode(&token[1..])),
            ("a flipped byte", encode(&flipped)),
            ("padded to 4 KiB", encode(&oversized)),
        ] {
            assert_eq!(
                refused_session(header).await,
                unauthenticated,
                "{:?}: {what}",
                s.backend
            );
        }
        assert_eq!(refused_session(encode(&token)).await.0, 200);

        // A login finish's state: the same for every garbling, and as for a wrong password.
        let body = login_by_hand(&s.app, "sam", b"sam's pw").await;
        let good: Value = serde_json::from_slice(&body).unwrap();
        let state = cinder_proto::encoding::decode(good["state"].as_str().unwrap()).unwrap();
        let mut flipped = state.clone();
        flipped[40] ^= 1;
        for (what, garbled) in [
            ("a salt cut short", encode(&state[..20])),
            ("one byte short", encode(&state[..state.len() - 1])),
            ("a flipped byte", encode(&flipped)),
            ("a session token", encode(&token)),
        ] {
            let body = json!({"state": garbled, "finalization": good["finalization"]});
            let answer = finish_login(&s.app, serde_json::to_vec(&body).unwrap()).await;
            assert_eq!(
                status_and_json(&answer),
                login_failed(),
                "{:?}: {what}",
                s.backend
            );
        }
        // Nothing above spent the real state.
        assert_eq!(finish_login(&s.app, body).await.status, 200);
    }
}

// A new device against a hostile server: it has no memory of its own, so it must not take
// the server's word for how new the enclave is or which keys are someone's current ones.
// What the user's other devices saw travels in the enclave; the directory is the check.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_refuses_an_enclave_from_before_a_key_rotation() {
    for s in servers().await {
        let client = s.client();
        let mut me = client
            .register(
                &login("gus"),
                b"gus's pw",
                UserProfile::default(),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let old = s
            .accounts
            .account(&server_login_key("gus"))
            .await
            .unwrap()
            .unwrap();
        // GIVEN Gus rotated his keys (enclave first, then the directory)
        let next = me.contents.identity.rotated(Timestamp::now()).unwrap();
        me.contents.identity = next.clone();
        client.save_enclave(&mut me).await.unwrap();
        client.rotate(&next.bundle).await.unwrap();
        // WHEN the server restores the record from before, holding his old keys
        s.accounts.delete_account(&old.login).await.unwrap();
        s.accounts.create(&old).await.unwrap();
        // THEN a device that remembers nothing still refuses it: the directory is ahead
        let err = client
            .login(&login("gus"), b"gus's pw", 0, None)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, ClientError::Verification(m) if m.contains("rollback")),
            "{:?}: {err}",
            s.backend
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_travel_through_the_enclave_to_a_new_device() {
    for s in servers().await {
        let client = s.client();
        let ida = client
            .register(
                &login("ida"),
                b"ida's pw",
                UserProfile::default(),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let jon = client
            .register(
                &login("jon"),
                b"jon's pw",
                UserProfile::default(),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let jon_id = jon.contents.identity.user_id();
        // GIVEN Ida's laptop pinned Jon's keys, which Jon then rotated, and it followed
        let mut laptop = Profile::default();
        laptop.remember(client.base_url(), ida);
        let v1 = client.verified_keys(jon_id, None).await.unwrap();
        laptop.pins.insert(jon_id, v1);
        let rotated = jon.contents.identity.rotated(Timestamp::now()).unwrap();
        client.rotate(&rotated.bundle).await.unwrap();
        let v2 = client
            .verified_keys(jon_id, laptop.pins.get(&jon_id))
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        laptop.pins.insert(jon_id, v2.clone());
        // and saved its enclave (pins go with it)
        let mut session = laptop.session.clone().unwrap();
        laptop.remember(client.base_url(), session.clone());
        session = laptop.session.clone().unwrap();
        client.save_enclave(&mut session).await.unwrap();
        // WHEN she logs in on a new phone
        let mut phone = Profile::default();
        let fresh = client
            .login(&login("ida"), b"ida's pw", 0, None)
            .await
            .unwrap();
        phone.remember(client.base_url(), fresh);
        // THEN the phone starts from the laptop's pin, not from the server's word
        assert_eq!(phone.pins.get(&jon_id), Some(&v2), "{:?}", s.backend);
        // so a server that forgets Jon's rotation and serves his old keys is caught
        if let Some(file) = &s.sqlite_file {
            let db = rusqlite::Connection::open(file).unwrap();
            db.execute(
                "DELETE FROM key_bundles WHERE user_id = ?1 AND version = 2",
                [jon_id.to_string()],
            )
            .unwrap();
            assert_eq!(client.key(jon_id).await.unwrap().version, 1);
            let refused = client
                .verified_keys(jon_id, phone.pins.get(&jon_id))
                .await
                .unwrap_err();
            assert!(matches!(refused, ClientError::Verification(_)), "{refused}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_spends_one_attempt() {
    for s in servers().await {
        let now = cinder_proto::Timestamp::now().0;
        s.time.advance(900 - now % 900 + 1);
        // One registration through the client: start and finish.
        let client = s.client();
        client
            .register(
                &login("lena"),
                b"lena's password",
                profile("Lena"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        // Nine more starts fit in the window: the finish did not count.
        let start = || {
            let request = opaque_ke::ClientRegistration::<ClientSuite>::start(&mut OsRng, b"x")
                .unwrap()
                .message
                .serialize();
            serde_json::to_vec(&json!({ "login": "lena", "request": encode(&request) })).unwrap()
        };
        for i in 0..9 {
            let answer = send(&s.app, "POST", "/accounts/register/start", &[], start()).await;
            assert_eq!(
                answer.status, 200,
                "{:?}: start {i}: {:?}",
                s.backend, answer.json
            );
        }
        let limited = send(&s.app, "POST", "/accounts/register/start", &[], start()).await;
        assert_eq!(limited.status, 429, "{:?}", s.backend);
    }
}

/// A password change's body built by hand for `login`'s session: an OPAQUE registration of
/// `password` answered by the server, and a placeholder enclave, at `expected_version`.
async fn password_finish_body(
    app: &Router,
    token: &Blob,
    password: &[u8],
    expected_version: u64,
) -> Vec<u8> {
    let start = opaque_ke::ClientRegistration::<ClientSuite>::start(&mut OsRng, password).unwrap();
    let session = [("x-cinder-session", encode(&token.0))];
    let body = json!({ "request": encode(&start.message.serialize()) });
    let answer = send(
        app,
        "POST",
        "/accounts/password/start",
        &session,
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.json);
    let response = opaque_ke::RegistrationResponse::<ClientSuite>::deserialize(
        &cinder_proto::encoding::decode(answer.json["response"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let f = KsfParams::FLOOR;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(f.m_kib, f.t, f.p, None).unwrap(),
    );
    let finish = start
        .state
        .finish(
            &mut OsRng,
            password,
            response,
            opaque_ke::ClientRegistrationFinishParameters::new(Default::default(), Some(&argon)),
        )
        .unwrap();
    serde_json::to_vec(&json!({
        "upload": encode(&finish.message.serialize()),
        "ksf": KsfParams::FLOOR,
        "ciphertext": encode(b"a new enclave"),
        "expected_version": expected_version,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_session_token_cannot_change_the_password_or_delete_the_account() {
    for s in servers().await {
        let client = s.client();
        let me = client
            .register(
                &login("rita"),
                b"rita's pw",
                profile("Rita"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let session = ("x-cinder-session", encode(&me.token.0));
        let refused = |a: &Answer| (a.status.as_u16(), a.code().to_owned());
        let reauth_required = (403, "reauth_required".to_owned());
        // GIVEN only the session token (a thief's copy): no deletion, no password change
        let deleted = send(
            &s.app,
            "DELETE",
            "/accounts/me",
            std::slice::from_ref(&session),
            Vec::new(),
        )
        .await;
        assert_eq!(refused(&deleted), reauth_required, "{:?}", s.backend);
        let body = password_finish_body(&s.app, &me.token, b"thief's pw", 1).await;
        let changed = send(
            &s.app,
            "POST",
            "/accounts/password/finish",
            std::slice::from_ref(&session),
            body,
        )
        .await;
        assert_eq!(refused(&changed), reauth_required, "{:?}", s.backend);
        let forged = ("x-cinder-reauth", encode(&[7u8; 120]));
        let deleted = send(
            &s.app,
            "DELETE",
            "/accounts/me",
            &[session.clone(), forged],
            Vec::new(),
        )
        .await;
        assert_eq!(refused(&deleted), reauth_required);
        // AND proving the password again needs the password
        assert!(matches!(
            client.reauthenticate(&me, b"a guess").await,
            Err(ClientError::LoginFailed)
        ));
        // THEN the account is untouched
        let mut again = client
            .login(&login("rita"), b"rita's pw", 1, None)
            .await
            .unwrap();
        client.refresh_enclave(&mut again).await.unwrap();

        // A token is for its own session only.
        let token = client.reauthenticate(&me, b"rita's pw").await.unwrap();
        let other = [
            ("x-cinder-session", encode(&again.token.0)),
            ("x-cinder-reauth", encode(&token.token.0)),
        ];
        let deleted = send(&s.app, "DELETE", "/accounts/me", &other, Vec::new()).await;
        assert_eq!(refused(&deleted), reauth_required, "{:?}", s.backend);
        // It is spent by the first request that could succeed: a change that loses a race
        // (a stale version) spends it, and it does not work twice.
        let with_token = [session.clone(), ("x-cinder-reauth", encode(&token.token.0))];
        let stale = password_finish_body(&s.app, &me.token, b"rita's new pw", 7).await;
        let lost = send(
            &s.app,
            "POST",
            "/accounts/password/finish",
            &with_token,
            stale,
        )
        .await;
        assert_eq!(
            refused(&lost),
            (409, "version_conflict".to_owned()),
            "{:?}",
            s.backend
        );
        let fresh = password_finish_body(&s.app, &me.token, b"rita's new pw", 1).await;
        let twice = send(
            &s.app,
            "POST",
            "/accounts/password/finish",
            &with_token,
            fresh,
        )
        .await;
        assert_eq!(refused(&twice), reauth_required, "{:?}", s.backend);
        // And it lapses after five minutes.
        let late = client.reauthenticate(&me, b"rita's pw").await.unwrap();
        s.time.advance(301);
        let deleted = send(
            &s.app,
            "DELETE",
            "/accounts/me",
            &[session.clone(), ("x-cinder-reauth", encode(&late.token.0))],
            Vec::new(),
        )
        .await;
        assert_eq!(refused(&deleted), reauth_required, "{:?}", s.backend);
        // The owner, with the password, deletes the account.
        client.delete_account(&again, b"rita's pw").await.unwrap();
        assert!(matches!(
            client.login(&login("rita"), b"rita's pw", 1, None).await,
            Err(ClientError::LoginFailed)
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_and_end_one_by_one_or_all_at_once() {
    for s in servers().await {
        let client = s.client();
        let mut a = client
            .register(
                &login("sven"),
                b"sven's pw",
                profile("Sven"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let mut b = client
            .login(&login("sven"), b"sven's pw", 1, None)
            .await
            .unwrap();
        let mut c = client
            .login(&login("sven"), b"sven's pw", 1, None)
            .await
            .unwrap();
        let listed = client.sessions(&a).await.unwrap();
        let ids: Vec<&str> = listed.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [&a.session_id, &b.session_id, &c.session_id],
            "{:?}",
            s.backend
        );
        let current: Vec<bool> = listed.iter().map(|s| s.current).collect();
        assert_eq!(current, [true, false, false]);
        // GIVEN one session ended from another
        client.end_session(&a, &b.session_id).await.unwrap();
        // THEN it no longer works, and the others do
        assert_eq!(
            client.refresh_enclave(&mut b).await.unwrap_err().code(),
            Some(ErrorCode::Unauthenticated),
            "{:?}",
            s.backend
        );
        client.refresh_enclave(&mut a).await.unwrap();
        client.refresh_enclave(&mut c).await.unwrap();
        assert_eq!(client.sessions(&c).await.unwrap().len(), 2);
        // AND ending it again, or one that never was, is a 404
        assert_eq!(
            client
                .end_session(&a, &b.session_id)
                .await
                .unwrap_err()
                .code(),
            Some(ErrorCode::NotFound)
        );
        // AND ending them all ends this one too
        client.end_all_sessions(&c).await.unwrap();
        for mut gone in [a, c] {
            assert_eq!(
                client.refresh_enclave(&mut gone).await.unwrap_err().code(),
                Some(ErrorCode::Unauthenticated),
                "{:?}",
                s.backend
            );
        }
        // AND a new login still works, alone on the list
        let d = client
            .login(&login("sven"), b"sven's pw", 1, None)
            .await
            .unwrap();
        assert_eq!(client.sessions(&d).await.unwrap().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_the_first_of_its_tokens_end_and_its_listed_end() {
    for m in manual_servers().await {
        let t0 = m.start;
        let key = server_login_key("uma");
        m.client
            .register(&login("uma"), b"uma's pw", profile("Uma"), KsfParams::FLOOR)
            .await
            .unwrap();
        m.time.set(t0.plus(10));
        let mut b = m
            .client
            .login(&login("uma"), b"uma's pw", 1, None)
            .await
            .unwrap();
        // GIVEN the first session's last second, both are listed; at its end, only b
        m.time.set(t0.plus(3599));
        assert_eq!(
            m.client.sessions(&b).await.unwrap().len(),
            2,
            "{:?}",
            m.backend
        );
        m.time.set(t0.plus(3600));
        let listed: Vec<String> = m
            .client
            .sessions(&b)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(listed, [b.session_id.clone()], "{:?}", m.backend);
        // AND a login at that second keeps it off the stored list too
        let mut c = m
            .client
            .login(&login("uma"), b"uma's pw", 1, None)
            .await
            .unwrap();
        let stored = m.accounts.account(&key).await.unwrap().unwrap().sessions;
        let stored_ids: Vec<String> = stored.open.iter().map(|s| s.id.clone()).collect();
        assert_eq!(
            stored_ids,
            [b.session_id.clone(), c.session_id.clone()],
            "{:?}",
            m.backend
        );
        // WHEN the list says b lasts longer than its token, and c shorter
        let mut open = stored.open.clone();
        open[0].expires_at = t0.plus(9999);
        open[1].expires_at = t0.plus(3700);
        m.accounts
            .put_sessions(&key, &open, stored.version)
            .await
            .unwrap();
        // THEN each ends at the earlier of the two, to the second
        m.time.set(t0.plus(3609));
        m.client.refresh_enclave(&mut b).await.unwrap();
        m.time.set(t0.plus(3610));
        let err = m.client.refresh_enclave(&mut b).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::Unauthenticated),
            "{:?}: b outlived its token",
            m.backend
        );
        m.time.set(t0.plus(3699));
        m.client.refresh_enclave(&mut c).await.unwrap();
        m.time.set(t0.plus(3700));
        let err = m.client.refresh_enclave(&mut c).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::Unauthenticated),
            "{:?}: c outlived its listing",
            m.backend
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reauthentication_token_lasts_five_minutes_to_the_second() {
    for m in manual_servers().await {
        let t0 = m.start;
        let me = m
            .client
            .register(&login("vic"), b"vic's pw", profile("Vic"), KsfParams::FLOOR)
            .await
            .unwrap();
        let delete = |reauth: &Blob| {
            let app = m.app.clone();
            let headers = [
                ("x-cinder-session", encode(&me.token.0)),
                ("x-cinder-reauth", encode(&reauth.0)),
            ];
            async move { send(&app, "DELETE", "/accounts/me", &headers, Vec::new()).await }
        };
        // A token made at t0 is refused at t0 + 300, and the account stays
        let late = m.client.reauthenticate(&me, b"vic's pw").await.unwrap();
        assert_eq!(late.expires_at, t0.plus(300));
        m.time.set(t0.plus(300));
        let refused = delete(&late.token).await;
        assert_eq!(
            (refused.status.as_u16(), refused.code()),
            (403, "reauth_required"),
            "{:?}: a token outlived its five minutes",
            m.backend
        );
        // AND one made at t0 + 300 still works at t0 + 599
        let on_time = m.client.reauthenticate(&me, b"vic's pw").await.unwrap();
        m.time.set(t0.plus(599));
        assert_eq!(delete(&on_time.token).await.status, 204, "{:?}", m.backend);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reauthentication_finishes_only_in_the_session_that_started_it() {
    for s in servers().await {
        let client = s.client();
        let me = client
            .register(&login("wes"), b"wes's pw", profile("Wes"), KsfParams::FLOOR)
            .await
            .unwrap();
        let other = client
            .login(&login("wes"), b"wes's pw", 1, None)
            .await
            .unwrap();
        let finish_in = |token: &Blob, body: Vec<u8>| {
            let app = s.app.clone();
            let session = [("x-cinder-session", encode(&token.0))];
            async move { send(&app, "POST", "/accounts/reauth/finish", &session, body).await }
        };
        // A login's state, proven with the right password, is not a re-authentication
        let login_state = login_by_hand(&s.app, "wes", b"wes's pw").await;
        assert_eq!(
            status_and_json(&finish_in(&me.token, login_state).await),
            login_failed(),
            "{:?}",
            s.backend
        );
        // AND one started in the other session does not finish in this one
        let others = reauth_by_hand(&s.app, &other.token, b"wes's pw").await;
        assert_eq!(
            status_and_json(&finish_in(&me.token, others).await),
            login_failed(),
            "{:?}",
            s.backend
        );
        // AND a re-authentication's state is not a login
        let reauth_state = reauth_by_hand(&s.app, &me.token, b"wes's pw").await;
        assert_eq!(
            status_and_json(&finish_login(&s.app, reauth_state).await),
            login_failed(),
            "{:?}",
            s.backend
        );
        // THEN one started and finished in its own session gets its token
        let own = reauth_by_hand(&s.app, &me.token, b"wes's pw").await;
        let answer = finish_in(&me.token, own).await;
        assert_eq!(answer.status, 200, "{:?}: {:?}", s.backend, answer.json);
        assert!(answer.json["token"].is_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_of_exactly_the_most_bytes_is_saved_and_no_version_past_the_stores() {
    for s in servers().await {
        let me = s
            .client()
            .register(
                &login("xena"),
                b"xena's pw",
                profile("Xena"),
                KsfParams::FLOOR,
            )
            .await
            .unwrap();
        let put = |ciphertext: Vec<u8>, expected_version: u64| {
            let app = s.app.clone();
            let session = [("x-cinder-session", encode(&me.token.0))];
            let body =
                json!({ "ciphertext": encode(&ciphertext), "expected_version": expected_version });
            async move {
                send(
                    &app,
                    "PUT",
                    "/accounts/enclave",
                    &session,
                    serde_json::to_vec(&body).unwrap(),
                )
                .await
            }
        };
        // Versions no store can hold and count on from are a conflict, as any stale one is,
        // and store nothing
        for version in [i64::MAX as u64, u64::MAX] {
            let answer = put(b"sealed".to_vec(), version).await;
            assert_eq!(
                (answer.status.as_u16(), answer.code()),
                (409, "version_conflict"),
                "{:?}: {version}",
                s.backend
            );
        }
        // An empty enclave is refused; one of exactly 256 KiB is kept whole
        let empty = put(Vec::new(), 1).await;
        assert_eq!(
            (
                empty.status.as_u16(),
                empty.code(),
                empty.json["field"].as_str()
            ),
            (422, "limit_exceeded", Some("ciphertext")),
            "{:?}",
            s.backend
        );
        let most = vec![7u8; 256 * 1024];
        let saved = put(most.clone(), 1).await;
        assert_eq!(saved.status, 200, "{:?}: {:?}", s.backend, saved.json);
        assert_eq!(saved.json["version"], 2);
        let stored = s
            .accounts
            .account(&server_login_key("xena"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.enclave.ciphertext.0, most);
        let over = put(vec![7u8; 256 * 1024 + 1], 2).await;
        assert_eq!(
            (over.status.as_u16(), over.json["field"].as_str()),
            (422, Some("ciphertext")),
            "{:?}",
            s.backend
        );
    }
}

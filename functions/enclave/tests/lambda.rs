//! The `cinder-enclave` binary, exactly as it ships, behind an API Gateway stand-in, on
//! DynamoDB (moto): the reference client registers, logs in, edits its
//! enclave, changes its password and deletes its account. Two function processes take
//! turns answering, so a login started on one instance is finished on another.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cinder_client::ClientError;
use cinder_client::account::UserProfile;
use cinder_proto::accounts::{KsfParams, Login};
use cinder_server::Clock;
use cinder_server::keys::{KeysState, routes};
use cinder_tests::lambda::{Gateway, RuntimeApi, Target};
use cinder_tests::moto;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enclave_binary_serves_the_account_life_cycle_statelessly() {
    // GIVEN two enclave processes sharing tables and a master secret, on moto
    let (keys_store, _) = moto::fresh_store().await;
    let (_, tables) = moto::fresh_accounts_store().await;
    let env = [
        ("ACCOUNTS_TABLE", tables.accounts.clone()),
        ("RATE_LIMITS_TABLE", tables.rate_limits.clone()),
        ("NONCES_TABLE", tables.nonces.clone()),
        (
            "MASTER_SECRET",
            "x7Gq2v9LwP4sN8kR1tY6uB3mZ5cH0jDfA2eQ9oWsVxLpK4nR".into(),
        ),
        ("AWS_ENDPOINT_URL", moto::endpoint().to_owned()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
    ];
    let binary = env!("CARGO_BIN_EXE_cinder-enclave");
    let (a, b) = (
        Arc::new(RuntimeApi::start().await),
        Arc::new(RuntimeApi::start().await),
    );
    let _fa = a.spawn_function(binary.as_ref(), &env);
    let _fb = b.spawn_function(binary.as_ref(), &env);
    let keys = routes(KeysState::new(keys_store, Clock::system()));
    let gateway = Gateway::start(vec![
        ("/accounts", Target::functions(vec![a, b])),
        ("/keys", Target::Router(keys.clone())),
        ("/inbox", Target::Router(keys)),
    ])
    .await;
    let client = cinder_client::Client::new(&gateway.url);
    let login: Login = "lambda.user".parse().unwrap();
    let profile = UserProfile {
        name: "Lambda User".into(),
        ..Default::default()
    };

    // WHEN the reference client runs an account's whole life, THEN each step holds
    let mut me = client
        .register(&login, b"first password", profile.clone(), KsfParams::FLOOR)
        .await
        .unwrap();
    let id = me.contents.identity.user_id();
    assert_eq!(client.key(id).await.unwrap(), me.contents.identity.bundle);

    let again = client
        .login(&login, b"first password", 1, Some(&me.server_key))
        .await
        .unwrap();
    assert_eq!(again.contents.identity.user_id(), id);
    assert_eq!(again.contents.profile, profile);

    me.contents.profile.status = "edited".into();
    client.save_enclave(&mut me).await.unwrap();
    let mut stale = again.clone();
    stale.contents.profile.status = "stale edit".into();
    let conflict = client.save_enclave(&mut stale).await.err().unwrap();
    assert_eq!(
        conflict.code(),
        Some(cinder_proto::ErrorCode::VersionConflict)
    );

    let wrong = client
        .login(&login, b"not it", 0, None)
        .await
        .err()
        .unwrap();
    assert!(matches!(wrong, ClientError::LoginFailed), "{wrong}");

    client
        .change_password(
            &mut me,
            b"first password",
            b"second password",
            KsfParams::FLOOR,
        )
        .await
        .unwrap();
    let after = client
        .login(&login, b"second password", 3, Some(&me.server_key))
        .await
        .unwrap();
    assert_eq!(after.contents.profile.status, "edited");

    // Sessions end one by one, and deletion needs the password proved again.
    let listed = client.sessions(&after).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].current);
    assert_eq!(
        client
            .delete_account(&after, b"first password")
            .await
            .err()
            .map(|e| matches!(e, ClientError::LoginFailed)),
        Some(true)
    );
    client
        .delete_account(&after, b"second password")
        .await
        .unwrap();
    let gone = client
        .login(&login, b"second password", 0, None)
        .await
        .err()
        .unwrap();
    assert!(matches!(gone, ClientError::LoginFailed), "{gone}");
}

#[test]
fn an_enclave_without_a_usable_master_secret_fails_its_start_without_printing_it() {
    // GIVEN the enclave's configuration with the master secret missing, empty or too short
    let tables = [
        ("ACCOUNTS_TABLE", "accounts"),
        ("RATE_LIMITS_TABLE", "rate-limits"),
        ("NONCES_TABLE", "nonces"),
    ];
    let short = "tooShortToDeriveFrom";
    for (secret, names) in [
        (None, "MASTER_SECRET"),
        (Some(""), "MASTER_SECRET"),
        (Some(short), "at least 32 bytes"),
    ] {
        let mut start = std::process::Command::new(env!("CARGO_BIN_EXE_cinder-enclave"));
        start
            .env_clear()
            .envs(tables)
            // No Runtime API: a binary that got past its configuration would fail here
            // instead, with an error about the API, not the secret.
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9");
        if let Some(value) = secret {
            start.env("MASTER_SECRET", value);
        }

        // WHEN it starts
        let out = start.output().unwrap();

        // THEN it exits before asking for an event, naming what is wrong, and never the value
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{secret:?} started");
        assert!(stderr.contains(names), "{secret:?}: {stderr}");
        assert!(!stderr.contains(short), "the secret was printed: {stderr}");
    }
}

//! A new device against a hostile server: it has no memory of its own, so it must not take
//! the server's word for how new the enclave is or which keys are someone's current ones.
//! What the user's other devices saw travels in the enclave; the directory is the check.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_client::account::UserProfile;
use cinder_client::{ClientError, Profile};
use cinder_proto::Timestamp;
use cinder_proto::accounts::{KsfParams, Login};
use cinder_tests::server::{Backend, TestServer, start};

const MASTER: &[u8] = b"freshness test master secret, thirty-two bytes or more";

async fn servers() -> Vec<TestServer> {
    vec![
        start(Backend::Sqlite, MASTER).await,
        start(Backend::Dynamo, MASTER).await,
    ]
}

fn login(name: &str) -> Login {
    name.parse().unwrap()
}

fn login_key(name: &str) -> cinder_server::store::LoginKey {
    cinder_server::accounts::ServerSecrets::from_master(MASTER)
        .unwrap()
        .login_key(&login(name))
}

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
            .account(&login_key("gus"))
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

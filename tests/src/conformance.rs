//! The storage conformance suite. Every implementation of the storage traits runs every case
//! here, through [`conformance_suite!`](crate::conformance_suite): the embedded store always,
//! the DynamoDB store against moto. A case names the behaviour it proves.

use std::sync::Arc;

use cinder_proto::accounts::{KsfParams, StoredEnclave};
use cinder_proto::rooms::{Room, Shard, SpineEntry, limits};
use cinder_proto::{Blob, Envelope, EnvelopeId, Timestamp, UserId};
use cinder_proto::{ChannelId, RoomId};
use cinder_server::store::{
    AccountRecord, AccountStore, ChannelRef, InboxStore, KeyStore, LoginKey, NonceStore,
    RateLimitStore, RoomStore, ShardStore, StoreError,
};

use crate::fixtures::User;

/// What a store under test must implement.
pub trait Store: KeyStore + InboxStore + NonceStore + 'static {}
impl<T: KeyStore + InboxStore + NonceStore + 'static> Store for T {}

/// What an accounts store under test must implement.
pub trait Accounts: AccountStore + RateLimitStore + NonceStore + 'static {}
impl<T: AccountStore + RateLimitStore + NonceStore + 'static> Accounts for T {}

/// Expands to one `#[tokio::test]` per live-subscription conformance case, each on a store
/// made by `$make` (a future of `Arc<impl LiveStore>`).
#[macro_export]
macro_rules! live_conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            live_subscriptions_are_found_by_channel_and_by_connection,
            live_a_renewal_replaces_the_key_and_expiry,
            live_lapsed_subscriptions_are_never_returned,
            live_disconnect_drops_only_that_connections_subscriptions,
            live_a_hundred_subscribers_on_one_channel);
    };
}

/// Expands to one `#[tokio::test]` per relay-store conformance case, each on a store made
/// by `$make` (a future of `Arc<impl RelayStore>`).
#[macro_export]
macro_rules! relays_conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            relays_announcements_are_listed_until_they_lapse,
            relays_an_older_announcement_never_replaces_a_newer_one,
            relays_concurrent_announcements_keep_the_furthest);
    };
}

/// Expands to one `#[tokio::test]` per accounts conformance case, each on a store made by
/// `$make` (a future of `Arc<impl Accounts>`).
#[macro_export]
macro_rules! accounts_conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            accounts_create_read_and_duplicate_conflicts,
            accounts_enclave_writes_need_the_expected_version,
            accounts_concurrent_enclave_writes_have_one_winner,
            accounts_credentials_are_replaced_together,
            accounts_delete_reports_presence_and_stops_writes,
            accounts_sessions_are_replaced_at_their_version,
            accounts_concurrent_session_writes_have_one_winner,
            rate_limits_let_a_burst_through_then_refill,
            rate_limits_let_exactly_the_burst_through_concurrent_spenders);
    };
}

/// What a rooms store under test must implement.
pub trait Rooms: RoomStore + ShardStore + NonceStore + 'static {}
impl<T: RoomStore + ShardStore + NonceStore + 'static> Rooms for T {}

/// Expands to one `#[tokio::test]` per rooms conformance case, each on a store made by
/// `$make` (a future of `Arc<impl Rooms>`).
#[macro_export]
macro_rules! rooms_conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            rooms_are_versioned_and_conflicts_change_nothing,
            rooms_concurrent_updates_have_one_winner,
            spine_log_holds_every_version_and_no_lost_write,
            spine_log_keeps_only_the_winners_of_concurrent_writes,
            spine_log_pages_through_the_largest_spines,
            shards_reserve_unique_increasing_numbers_under_concurrency,
            shards_post_next_takes_exactly_the_next_number,
            shards_post_next_has_one_winner_under_concurrency,
            shards_holds_are_filled_once_by_their_proof,
            shards_list_in_order_and_never_return_burnt_ones,
            shards_are_scoped_by_room_and_channel,
            shards_delete_reports_presence);
    };
}

/// Expands to one `#[tokio::test]` per conformance case, each on a store made by `$make`
/// (an expression evaluating to a future of `Arc<impl Store>`).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@cases $make;
            keys_current_is_the_highest_version,
            keys_duplicate_version_conflicts_and_keeps_the_original,
            keys_unknown_user_has_no_current,
            keys_current_many_leaves_out_unknown_users,
            keys_chain_is_ordered_bounded_and_after_exclusive,
            keys_concurrent_inserts_of_one_version_have_one_winner,
            nonces_are_accepted_once_until_they_expire,
            nonces_concurrent_spends_have_one_winner,
            inbox_lists_in_id_order_with_cursor_and_limit,
            inbox_never_returns_or_counts_expired_envelopes,
            inbox_delete_is_owner_scoped_and_reports_absence,
            inbox_duplicate_id_conflicts,
            inbox_cap_refuses_drops_past_it_and_counts_only_live_envelopes,
            inbox_cap_holds_under_concurrent_drops);
    };
    (@cases $make:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let store = $make.await;
                $crate::conformance::$case(store).await;
            }
        )*
    };
}

const T0: Timestamp = Timestamp(1_800_000_000);

pub async fn keys_current_is_the_highest_version<S: Store>(store: Arc<S>) {
    let v1 = User::new(1, T0);
    let v2 = v1.rotated(2, T0.plus(10));
    let v3 = v2.rotated(3, T0.plus(20));
    for u in [&v1, &v3, &v2] {
        store.insert(&u.bundle).await.unwrap();
    }
    assert_eq!(store.current(&v1.id()).await.unwrap(), Some(v3.bundle));
}

pub async fn keys_duplicate_version_conflicts_and_keeps_the_original<S: Store>(store: Arc<S>) {
    let first = User::new(1, T0);
    store.insert(&first.bundle).await.unwrap();
    let mut impostor = first.bundle.clone();
    impostor.created_at = T0.plus(1);
    assert!(matches!(
        store.insert(&impostor).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(
        store.current(&first.id()).await.unwrap(),
        Some(first.bundle)
    );
}

pub async fn keys_unknown_user_has_no_current<S: Store>(store: Arc<S>) {
    assert_eq!(store.current(&UserId([9; 16])).await.unwrap(), None);
    assert_eq!(store.chain(&UserId([9; 16]), 0, 10).await.unwrap(), vec![]);
}

pub async fn keys_current_many_leaves_out_unknown_users<S: Store>(store: Arc<S>) {
    let a = User::new(1, T0);
    let b = User::new(2, T0);
    let b2 = b.rotated(3, T0.plus(5));
    for bundle in [&a.bundle, &b.bundle, &b2.bundle] {
        store.insert(bundle).await.unwrap();
    }
    let mut found = store
        .current_many(&[a.id(), UserId([0; 16]), b.id()])
        .await
        .unwrap();
    found.sort_by_key(|x| x.user_id);
    let mut expected = vec![a.bundle, b2.bundle];
    expected.sort_by_key(|x| x.user_id);
    assert_eq!(found, expected);
}

pub async fn keys_chain_is_ordered_bounded_and_after_exclusive<S: Store>(store: Arc<S>) {
    let mut user = User::new(1, T0);
    let mut all = vec![user.bundle.clone()];
    for seed in 2..=6 {
        user = user.rotated(seed, T0.plus(u64::from(seed)));
        all.push(user.bundle.clone());
    }
    for b in all.iter().rev() {
        store.insert(b).await.unwrap();
    }
    let id = all[0].user_id;
    assert_eq!(store.chain(&id, 0, 100).await.unwrap(), all);
    assert_eq!(store.chain(&id, 2, 2).await.unwrap(), all[2..4].to_vec());
    assert_eq!(store.chain(&id, 6, 10).await.unwrap(), vec![]);
}

pub async fn keys_concurrent_inserts_of_one_version_have_one_winner<S: Store>(store: Arc<S>) {
    let base = User::new(1, T0);
    store.insert(&base.bundle).await.unwrap();
    let tasks: Vec<_> = (0..10u8)
        .map(|i| {
            let store = store.clone();
            let next = base.rotated(10 + i, T0.plus(1));
            tokio::spawn(async move { (store.insert(&next.bundle).await, next.bundle) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (Ok(()), bundle) => winners.push(bundle),
            (Err(StoreError::Conflict), _) => {}
            (Err(e), _) => panic!("unexpected store error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins version 2");
    assert_eq!(
        store.current(&base.id()).await.unwrap(),
        Some(winners.remove(0))
    );
}

pub async fn nonces_are_accepted_once_until_they_expire<S: Store>(store: Arc<S>) {
    let expires = T0.plus(60);
    assert!(store.remember("user:a/n1", expires, T0).await.unwrap());
    assert!(
        !store
            .remember("user:a/n1", expires, T0.plus(30))
            .await
            .unwrap()
    );
    assert!(
        store.remember("user:b/n1", expires, T0).await.unwrap(),
        "keys are per signer"
    );
    // Once expired (whether or not the database has deleted it) the key is free again.
    assert!(
        store
            .remember("user:a/n1", T0.plus(200), T0.plus(60))
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember("user:a/n1", T0.plus(200), T0.plus(61))
            .await
            .unwrap()
    );
}

pub async fn nonces_concurrent_spends_have_one_winner<S: Store>(store: Arc<S>) {
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .remember("user:c/same", T0.plus(60), T0)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut fresh = 0;
    for t in tasks {
        fresh += usize::from(t.await.unwrap());
    }
    assert_eq!(fresh, 1);
}

fn envelope(ms: u64, tag: u8, expires_at: Timestamp) -> Envelope {
    Envelope {
        id: EnvelopeId::new(ms, [tag; 8]),
        sender: UserId([tag; 16]),
        created_at: Timestamp(ms / 1000),
        expires_at,
        sealed: Blob(vec![tag; 40]),
    }
}

pub async fn inbox_lists_in_id_order_with_cursor_and_limit<S: Store>(store: Arc<S>) {
    let owner = UserId([1; 16]);
    let other = UserId([2; 16]);
    let ms = T0.0 * 1000;
    let envs: Vec<_> = (0..5u8)
        .map(|i| envelope(ms + u64::from(i), i, T0.plus(100)))
        .collect();
    for e in envs.iter().rev() {
        store.put(&owner, e, usize::MAX).await.unwrap();
    }
    store
        .put(&other, &envelope(ms, 9, T0.plus(100)), usize::MAX)
        .await
        .unwrap();

    assert_eq!(store.list(&owner, None, 10, T0).await.unwrap(), envs);
    assert_eq!(
        store.list(&owner, None, 2, T0).await.unwrap(),
        envs[..2].to_vec()
    );
    assert_eq!(
        store.list(&owner, Some(envs[1].id), 2, T0).await.unwrap(),
        envs[2..4].to_vec()
    );
    assert_eq!(
        store.list(&owner, Some(envs[4].id), 2, T0).await.unwrap(),
        vec![]
    );
    assert_eq!(store.count(&owner, T0).await.unwrap(), 5);
}

pub async fn inbox_never_returns_or_counts_expired_envelopes<S: Store>(store: Arc<S>) {
    let owner = UserId([1; 16]);
    let ms = T0.0 * 1000;
    let soon = envelope(ms, 1, T0.plus(10));
    let later = envelope(ms + 1, 2, T0.plus(100));
    let soon2 = envelope(ms + 2, 3, T0.plus(10));
    for e in [&soon, &later, &soon2] {
        store.put(&owner, e, usize::MAX).await.unwrap();
    }
    assert_eq!(store.count(&owner, T0).await.unwrap(), 3);
    let after = T0.plus(10);
    assert_eq!(
        store.list(&owner, None, 10, after).await.unwrap(),
        vec![later.clone()]
    );
    // A page limit smaller than the expired run still finds the live envelope behind it.
    assert_eq!(
        store.list(&owner, None, 1, after).await.unwrap(),
        vec![later]
    );
    assert_eq!(store.count(&owner, after).await.unwrap(), 1);
    assert!(!store.delete(&owner, &soon.id, after).await.unwrap());
}

pub async fn inbox_delete_is_owner_scoped_and_reports_absence<S: Store>(store: Arc<S>) {
    let owner = UserId([1; 16]);
    let other = UserId([2; 16]);
    let e = envelope(T0.0 * 1000, 1, T0.plus(100));
    store.put(&owner, &e, usize::MAX).await.unwrap();
    assert!(
        !store.delete(&other, &e.id, T0).await.unwrap(),
        "another owner cannot delete it"
    );
    assert_eq!(store.count(&owner, T0).await.unwrap(), 1);
    assert!(store.delete(&owner, &e.id, T0).await.unwrap());
    assert!(!store.delete(&owner, &e.id, T0).await.unwrap());
    assert_eq!(store.list(&owner, None, 10, T0).await.unwrap(), vec![]);
}

pub async fn inbox_duplicate_id_conflicts<S: Store>(store: Arc<S>) {
    let owner = UserId([1; 16]);
    let e = envelope(T0.0 * 1000, 1, T0.plus(100));
    store.put(&owner, &e, usize::MAX).await.unwrap();
    let mut clash = e.clone();
    clash.sealed = Blob(vec![0; 8]);
    assert!(matches!(
        store.put(&owner, &clash, usize::MAX).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.list(&owner, None, 10, T0).await.unwrap(), vec![e]);
}

fn account(tag: u8) -> AccountRecord {
    AccountRecord {
        login: LoginKey([tag; 32]),
        registration: Blob(vec![tag; 192]),
        ksf: KsfParams::FLOOR,
        enclave: StoredEnclave {
            ciphertext: Blob(vec![tag; 100]),
            version: 1,
        },
        sessions: Default::default(),
    }
}

pub async fn accounts_create_read_and_duplicate_conflicts<S: Accounts>(store: Arc<S>) {
    let a = account(1);
    store.create(&a).await.unwrap();
    assert_eq!(store.account(&a.login).await.unwrap(), Some(a.clone()));
    assert_eq!(store.account(&LoginKey([2; 32])).await.unwrap(), None);
    let mut rival = account(1);
    rival.registration = Blob(vec![9; 192]);
    assert!(matches!(
        store.create(&rival).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.account(&a.login).await.unwrap(), Some(a));
}

pub async fn accounts_enclave_writes_need_the_expected_version<S: Accounts>(store: Arc<S>) {
    let a = account(1);
    store.create(&a).await.unwrap();
    assert_eq!(
        store
            .put_enclave(&a.login, &Blob(vec![2; 10]), 1)
            .await
            .unwrap(),
        2
    );
    assert!(matches!(
        store.put_enclave(&a.login, &Blob(vec![3; 10]), 1).await,
        Err(StoreError::Conflict)
    ));
    let now = store.account(&a.login).await.unwrap().unwrap();
    assert_eq!(
        now.enclave,
        StoredEnclave {
            ciphertext: Blob(vec![2; 10]),
            version: 2
        }
    );
    assert_eq!(
        now.registration, a.registration,
        "the password record is untouched"
    );
}

pub async fn accounts_concurrent_enclave_writes_have_one_winner<S: Accounts>(store: Arc<S>) {
    let a = account(1);
    store.create(&a).await.unwrap();
    let tasks: Vec<_> = (0..10u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                (
                    store
                        .put_enclave(&LoginKey([1; 32]), &Blob(vec![i; 10]), 1)
                        .await,
                    i,
                )
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (Ok(2), i) => winners.push(i),
            (Err(StoreError::Conflict), _) => {}
            (other, _) => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored = store.account(&a.login).await.unwrap().unwrap().enclave;
    assert_eq!(
        stored,
        StoredEnclave {
            ciphertext: Blob(vec![winners[0]; 10]),
            version: 2
        }
    );
}

pub async fn accounts_credentials_are_replaced_together<S: Accounts>(store: Arc<S>) {
    let a = account(1);
    store.create(&a).await.unwrap();
    let stronger = KsfParams {
        t: 4,
        ..KsfParams::FLOOR
    };
    let stale = store
        .replace_credentials(
            &a.login,
            &Blob(vec![7; 192]),
            stronger,
            &Blob(vec![7; 10]),
            5,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict)));
    assert_eq!(
        store.account(&a.login).await.unwrap(),
        Some(a.clone()),
        "nothing changed"
    );
    let v = store
        .replace_credentials(
            &a.login,
            &Blob(vec![7; 192]),
            stronger,
            &Blob(vec![7; 10]),
            1,
        )
        .await
        .unwrap();
    assert_eq!(v, 2);
    let now = store.account(&a.login).await.unwrap().unwrap();
    assert_eq!(
        (now.registration, now.ksf, now.enclave.ciphertext),
        (Blob(vec![7; 192]), stronger, Blob(vec![7; 10]))
    );
}

pub async fn accounts_delete_reports_presence_and_stops_writes<S: Accounts>(store: Arc<S>) {
    let a = account(1);
    store.create(&a).await.unwrap();
    assert!(store.delete_account(&a.login).await.unwrap());
    assert!(!store.delete_account(&a.login).await.unwrap());
    assert_eq!(store.account(&a.login).await.unwrap(), None);
    assert!(matches!(
        store.put_enclave(&a.login, &Blob(vec![1]), 1).await,
        Err(StoreError::Conflict)
    ));
}

pub async fn rate_limits_let_a_burst_through_then_refill<S: Accounts>(store: Arc<S>) {
    use cinder_server::limits::Rate;
    let rate = Rate::per(3, std::time::Duration::from_secs(30));
    let now = T0.0 * 1000;
    for i in 0..3 {
        assert_eq!(
            store.take("login:a", rate, now).await.unwrap(),
            None,
            "burst {i}"
        );
    }
    assert_eq!(
        store.take("login:a", rate, now).await.unwrap(),
        Some(10_000),
        "the fourth waits for the next token"
    );
    assert_eq!(
        store.take("login:b", rate, now).await.unwrap(),
        None,
        "buckets are per key"
    );
    assert_eq!(
        store.take("login:a", rate, now + 9_999).await.unwrap(),
        Some(1),
        "a refusal spends nothing"
    );
    assert_eq!(
        store.take("login:a", rate, now + 10_000).await.unwrap(),
        None
    );
    assert!(
        store
            .take("login:a", rate, now + 10_000)
            .await
            .unwrap()
            .is_some()
    );
    // Long after, the bucket is full again (and past `forget_at` it may be gone).
    for _ in 0..3 {
        assert_eq!(
            store.take("login:a", rate, now + 3_600_000).await.unwrap(),
            None
        );
    }
}

pub async fn rate_limits_let_exactly_the_burst_through_concurrent_spenders<S: Accounts>(
    store: Arc<S>,
) {
    use cinder_server::limits::Rate;
    let rate = Rate::per(5, std::time::Duration::from_secs(3600));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take("login:c", rate, T0.0 * 1000).await.unwrap() })
        })
        .collect();
    let mut through = 0;
    for t in tasks {
        if t.await.unwrap().is_none() {
            through += 1;
        }
    }
    assert_eq!(through, 5, "exactly the burst went through");
}

pub async fn accounts_sessions_are_replaced_at_their_version<S: Accounts>(store: Arc<S>) {
    use cinder_server::store::{SessionEntry, Sessions};
    let a = account(1);
    store.create(&a).await.unwrap();
    let first = SessionEntry {
        id: "aa".into(),
        created_at: T0,
        expires_at: T0.plus(3600),
    };
    assert_eq!(
        store
            .put_sessions(&a.login, std::slice::from_ref(&first), 0)
            .await
            .unwrap(),
        1
    );
    assert!(
        matches!(
            store.put_sessions(&a.login, &[], 0).await,
            Err(StoreError::Conflict)
        ),
        "a stale version loses"
    );
    assert_eq!(
        store.account(&a.login).await.unwrap().unwrap().sessions,
        Sessions {
            version: 1,
            open: vec![first.clone()],
        }
    );
    // The enclave's version is its own: an enclave write leaves the sessions alone.
    store
        .put_enclave(&a.login, &Blob(vec![5]), 1)
        .await
        .unwrap();
    assert_eq!(store.put_sessions(&a.login, &[], 1).await.unwrap(), 2);
    // A password change ends every session and moves their version on.
    store
        .put_sessions(&a.login, std::slice::from_ref(&first), 2)
        .await
        .unwrap();
    store
        .replace_credentials(
            &a.login,
            &Blob(vec![7; 192]),
            KsfParams::FLOOR,
            &Blob(vec![7]),
            2,
        )
        .await
        .unwrap();
    let after = store.account(&a.login).await.unwrap().unwrap().sessions;
    assert_eq!(after.open, vec![]);
    assert_eq!(after.version, 4);
    assert!(
        matches!(
            store.put_sessions(&LoginKey([9; 32]), &[], 0).await,
            Err(StoreError::Conflict)
        ),
        "no account, no sessions"
    );
}

pub async fn accounts_concurrent_session_writes_have_one_winner<S: Accounts>(store: Arc<S>) {
    use cinder_server::store::SessionEntry;
    let a = account(2);
    store.create(&a).await.unwrap();
    let tasks: Vec<_> = (0..8u8)
        .map(|i| {
            let store = store.clone();
            let login = a.login;
            tokio::spawn(async move {
                let entry = SessionEntry {
                    id: format!("{i:02x}"),
                    created_at: T0,
                    expires_at: T0.plus(3600),
                };
                store.put_sessions(&login, &[entry], 0).await
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(1) => won += 1,
            Err(StoreError::Conflict) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        store
            .account(&a.login)
            .await
            .unwrap()
            .unwrap()
            .sessions
            .open
            .len(),
        1
    );
}

fn room(tag: u8, version: u64) -> Room {
    let key = crate::fixtures::User::new(tag, T0).bundle.sign_key;
    Room {
        room_id: RoomId([tag; 16]),
        version,
        spine: Blob(vec![tag; 64]),
        admin_key: key,
        member_key: key,
        channels: [(ChannelId([1; 16]), key)].into_iter().collect(),
    }
}

pub async fn rooms_are_versioned_and_conflicts_change_nothing<S: Rooms>(store: Arc<S>) {
    let r1 = room(1, 1);
    store.create_room(&r1).await.unwrap();
    assert!(matches!(
        store.create_room(&room(1, 1)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.room(&r1.room_id).await.unwrap(), Some(r1.clone()));
    let mut r2 = r1.clone();
    r2.version = 2;
    r2.spine = Blob(vec![2; 10]);
    store.update_room(&r2).await.unwrap();
    let mut stale = r1.clone();
    stale.version = 2;
    stale.spine = Blob(vec![3; 10]);
    assert!(matches!(
        store.update_room(&stale).await,
        Err(StoreError::Conflict)
    ));
    let mut skip = r2.clone();
    skip.version = 4;
    assert!(matches!(
        store.update_room(&skip).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.room(&r1.room_id).await.unwrap(), Some(r2.clone()));
    assert!(store.delete_room(&r1.room_id).await.unwrap());
    assert!(!store.delete_room(&r1.room_id).await.unwrap());
    assert_eq!(store.room(&r1.room_id).await.unwrap(), None);
    assert!(
        matches!(
            store.create_room(&room(1, 1)).await,
            Err(StoreError::Conflict)
        ),
        "a deleted room's id stays taken"
    );
    let mut after = r2;
    after.version = 3;
    assert!(
        matches!(store.update_room(&after).await, Err(StoreError::Conflict)),
        "no update revives a room"
    );
}

pub async fn rooms_concurrent_updates_have_one_winner<S: Rooms>(store: Arc<S>) {
    store.create_room(&room(1, 1)).await.unwrap();
    let tasks: Vec<_> = (0..10u8)
        .map(|i| {
            let store = store.clone();
            let mut next = room(1, 2);
            next.spine = Blob(vec![i; 8]);
            tokio::spawn(async move { (store.update_room(&next).await, next) })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (Ok(()), r) => winners.push(r),
            (Err(StoreError::Conflict), _) => {}
            (Err(e), _) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1);
    assert_eq!(
        store.room(&RoomId([1; 16])).await.unwrap(),
        Some(winners.remove(0))
    );
}

/// The log entry a room write must leave.
fn logged(room: &Room) -> SpineEntry {
    SpineEntry {
        version: room.version,
        spine: room.spine.clone(),
    }
}

/// `room` at `version` with a spine of `len` bytes of `fill`.
fn at_version(room: &Room, version: u64, fill: u8, len: usize) -> Room {
    Room {
        version,
        spine: Blob(vec![fill; len]),
        ..room.clone()
    }
}

pub async fn spine_log_holds_every_version_and_no_lost_write<S: Rooms>(store: Arc<S>) {
    let id = RoomId([7; 16]);
    let v1 = room(7, 1);
    let v2 = at_version(&v1, 2, 72, 40);
    let v3 = at_version(&v1, 3, 73, 90);
    store.create_room(&v1).await.unwrap();
    store.update_room(&v2).await.unwrap();
    store.update_room(&v3).await.unwrap();
    let all = vec![logged(&v1), logged(&v2), logged(&v3)];
    assert_eq!(store.spines(&id, 0, 10).await.unwrap(), all);
    // `after` is exclusive and `limit` bounds the page.
    assert_eq!(store.spines(&id, 1, 10).await.unwrap(), all[1..]);
    assert_eq!(store.spines(&id, 0, 2).await.unwrap(), all[..2]);
    assert_eq!(store.spines(&id, 1, 1).await.unwrap(), all[1..2]);
    assert_eq!(store.spines(&id, 3, 10).await.unwrap(), vec![]);
    // Logs are per room; an unknown room has none.
    let other = room(8, 1);
    store.create_room(&other).await.unwrap();
    assert_eq!(
        store.spines(&other.room_id, 0, 10).await.unwrap(),
        vec![logged(&other)]
    );
    assert_eq!(store.spines(&RoomId([9; 16]), 0, 10).await.unwrap(), vec![]);

    // Lost writes leave nothing behind: a second creation, an update from a stale version
    // (the version exists), an update that skips a version.
    for lost in [
        store.create_room(&at_version(&v1, 1, 1, 5)).await,
        store.update_room(&at_version(&v1, 3, 3, 5)).await,
        store.update_room(&at_version(&v1, 2, 2, 5)).await,
        store.update_room(&at_version(&v1, 5, 5, 5)).await,
    ] {
        assert!(matches!(lost, Err(StoreError::Conflict)), "{lost:?}");
    }
    assert_eq!(store.spines(&id, 0, 10).await.unwrap(), all);
    assert_eq!(store.spines(&id, 3, 10).await.unwrap(), vec![]);
    assert_eq!(store.room(&id).await.unwrap(), Some(v3.clone()));

    // Deletion leaves the log (the caller decides not to serve it), and adds nothing to it.
    assert!(store.delete_room(&id).await.unwrap());
    assert!(matches!(
        store.update_room(&at_version(&v1, 4, 4, 5)).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.spines(&id, 0, 10).await.unwrap(), all);
}

/// Awaits racing room writes and returns the one that won; every other one must conflict.
async fn the_winner(tasks: Vec<tokio::task::JoinHandle<(Result<(), StoreError>, Room)>>) -> Room {
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (Ok(()), r) => winners.push(r),
            (Err(StoreError::Conflict), _) => {}
            (Err(e), _) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "one winner per version");
    winners.remove(0)
}

pub async fn spine_log_keeps_only_the_winners_of_concurrent_writes<S: Rooms>(store: Arc<S>) {
    // Ten creations of one id, then ten updates to version 2: one of each wins, and the
    // log holds exactly the winners' spines.
    let base = room(6, 1);
    let creates = (0..10u8)
        .map(|i| {
            let store = store.clone();
            let r = at_version(&base, 1, i, 16);
            tokio::spawn(async move { (store.create_room(&r).await, r) })
        })
        .collect();
    let created = the_winner(creates).await;
    assert_eq!(
        store.spines(&base.room_id, 0, 10).await.unwrap(),
        vec![logged(&created)]
    );
    let updates = (0..10u8)
        .map(|i| {
            let store = store.clone();
            let r = at_version(&base, 2, 100 + i, 16);
            tokio::spawn(async move { (store.update_room(&r).await, r) })
        })
        .collect();
    let updated = the_winner(updates).await;
    assert_eq!(
        store.spines(&base.room_id, 0, 10).await.unwrap(),
        vec![logged(&created), logged(&updated)]
    );
    assert_eq!(store.room(&base.room_id).await.unwrap(), Some(updated));
}

pub async fn spine_log_pages_through_the_largest_spines<S: Rooms>(store: Arc<S>) {
    // Eight spines of the largest size are more than one DynamoDB Query answers (1 MB):
    // the store reads on until the page is full.
    let first = at_version(&room(5, 1), 1, 1, limits::MAX_SPINE_BYTES);
    store.create_room(&first).await.unwrap();
    let mut all = vec![logged(&first)];
    for v in 2..=8u64 {
        let next = at_version(&first, v, v as u8, limits::MAX_SPINE_BYTES);
        store.update_room(&next).await.unwrap();
        all.push(logged(&next));
    }
    assert_eq!(store.spines(&first.room_id, 0, 20).await.unwrap(), all);
    assert_eq!(store.spines(&first.room_id, 0, 8).await.unwrap(), all);
    assert_eq!(store.spines(&first.room_id, 1, 6).await.unwrap(), all[1..7]);
}

fn channel(room: u8, channel: u8) -> ChannelRef {
    ChannelRef {
        room: RoomId([room; 16]),
        channel: ChannelId([channel; 16]),
    }
}

fn shard(number: u64, burn_at: Timestamp) -> Shard {
    Shard {
        number,
        ciphertext: Blob(vec![number as u8; 32]),
        burn_at,
        posted_at: T0,
        delete_hash: Some(Blob(vec![9; 32])),
        media: vec![cinder_proto::MediaId([number as u8; 16])],
    }
}

const HOLD: [u8; 16] = [7; 16];

pub async fn shards_reserve_unique_increasing_numbers_under_concurrency<S: Rooms>(store: Arc<S>) {
    let c = channel(1, 1);
    assert_eq!(store.reserved(&c).await.unwrap(), 0);
    let tasks: Vec<_> = (0..100u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.reserve(&c, &[i; 16], T0.plus(100)).await.unwrap() })
        })
        .collect();
    let mut numbers = Vec::new();
    for t in tasks {
        numbers.push(t.await.unwrap());
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=100).collect::<Vec<u64>>());
    assert_eq!(store.reserved(&c).await.unwrap(), 100);
    assert_eq!(
        store.shards(&c, 0, 100, T0).await.unwrap(),
        vec![],
        "a hold is not a message"
    );
    assert_eq!(store.shard(&c, 1, T0).await.unwrap(), None);
    assert_eq!(
        store
            .reserve(&channel(1, 2), &HOLD, T0.plus(100))
            .await
            .unwrap(),
        1,
        "counters are per channel"
    );
}

pub async fn shards_post_next_takes_exactly_the_next_number<S: Rooms>(store: Arc<S>) {
    let c = channel(1, 1);
    let conflict = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Conflict));
    assert!(
        conflict(store.post_next(&c, &shard(2, T0.plus(100))).await),
        "a number past the next one"
    );
    store.post_next(&c, &shard(1, T0.plus(100))).await.unwrap();
    let mut clash = shard(1, T0.plus(100));
    clash.ciphertext = Blob(vec![0; 4]);
    assert!(conflict(store.post_next(&c, &clash).await), "a taken one");
    assert_eq!(
        store.shard(&c, 1, T0).await.unwrap(),
        Some(shard(1, T0.plus(100))),
        "the loser changed nothing"
    );
    assert!(conflict(store.post_next(&c, &shard(3, T0.plus(100))).await));
    store.post_next(&c, &shard(2, T0.plus(100))).await.unwrap();
    assert_eq!(store.reserved(&c).await.unwrap(), 2);
    // A held number counts as taken: the next post goes after it.
    assert_eq!(store.reserve(&c, &HOLD, T0.plus(100)).await.unwrap(), 3);
    assert!(conflict(store.post_next(&c, &shard(3, T0.plus(100))).await));
    store.post_next(&c, &shard(4, T0.plus(100))).await.unwrap();
    assert_eq!(store.reserved(&c).await.unwrap(), 4);
}

pub async fn shards_post_next_has_one_winner_under_concurrency<S: Rooms>(store: Arc<S>) {
    let c = channel(1, 1);
    let tasks: Vec<_> = (0..20u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut s = shard(1, T0.plus(100));
                s.ciphertext = Blob(vec![i; 8]);
                (i, store.post_next(&c, &s).await)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(())) => winners.push(i),
            (_, Err(StoreError::Conflict)) => {}
            (_, Err(e)) => panic!("{e}"),
        }
    }
    assert_eq!(winners.len(), 1, "one poster takes number 1");
    let stored = store.shard(&c, 1, T0).await.unwrap().unwrap();
    assert_eq!(
        stored.ciphertext,
        Blob(vec![winners[0]; 8]),
        "the winner's message"
    );
    assert_eq!(store.reserved(&c).await.unwrap(), 1);
}

pub async fn shards_holds_are_filled_once_by_their_proof<S: Rooms>(store: Arc<S>) {
    let c = channel(1, 1);
    let conflict = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Conflict));
    let held = store.reserve(&c, &HOLD, T0.plus(100)).await.unwrap();
    assert_eq!(held, 1);
    store.post_next(&c, &shard(2, T0.plus(100))).await.unwrap();
    assert!(
        conflict(
            store
                .fill_hold(&c, &shard(1, T0.plus(100)), &[8; 16], T0)
                .await
        ),
        "the wrong proof"
    );
    assert!(
        conflict(
            store
                .fill_hold(&c, &shard(2, T0.plus(100)), &HOLD, T0)
                .await
        ),
        "a posted number is no hold"
    );
    assert!(
        conflict(
            store
                .fill_hold(&c, &shard(9, T0.plus(100)), &HOLD, T0)
                .await
        ),
        "a number never taken"
    );
    assert!(
        !store.delete_shard(&c, 1).await.unwrap(),
        "a hold is not a message to delete"
    );
    store
        .fill_hold(&c, &shard(1, T0.plus(100)), &HOLD, T0)
        .await
        .unwrap();
    let numbers = |v: Vec<Shard>| v.into_iter().map(|s| s.number).collect::<Vec<_>>();
    assert_eq!(
        numbers(store.shards(&c, 0, 10, T0).await.unwrap()),
        vec![1, 2]
    );
    assert_eq!(
        store.shard(&c, 1, T0).await.unwrap(),
        Some(shard(1, T0.plus(100)))
    );
    let mut again = shard(1, T0.plus(100));
    again.ciphertext = Blob(vec![0; 4]);
    assert!(
        conflict(store.fill_hold(&c, &again, &HOLD, T0).await),
        "a hold is filled once"
    );
    assert_eq!(
        store.shard(&c, 1, T0).await.unwrap(),
        Some(shard(1, T0.plus(100)))
    );
    // A hold that has lapsed takes nothing.
    let lapsing = store.reserve(&c, &HOLD, T0.plus(10)).await.unwrap();
    assert_eq!(lapsing, 3);
    assert!(conflict(
        store
            .fill_hold(&c, &shard(3, T0.plus(100)), &HOLD, T0.plus(10))
            .await
    ));
    assert_eq!(store.shards(&c, 2, 10, T0.plus(10)).await.unwrap(), vec![]);
}

pub async fn shards_list_in_order_and_never_return_burnt_ones<S: Rooms>(store: Arc<S>) {
    let c = channel(1, 1);
    // Numbers 2 and 3 burn at T0+10; the rest much later.
    for n in 1..=5 {
        let burn = if n == 2 || n == 3 {
            T0.plus(10)
        } else {
            T0.plus(1000)
        };
        store.post_next(&c, &shard(n, burn)).await.unwrap();
    }
    let numbers = |v: Vec<Shard>| v.into_iter().map(|s| s.number).collect::<Vec<_>>();
    assert_eq!(
        numbers(store.shards(&c, 0, 10, T0).await.unwrap()),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        numbers(store.shards(&c, 1, 2, T0).await.unwrap()),
        vec![2, 3]
    );
    let later = T0.plus(10);
    assert_eq!(
        numbers(store.shards(&c, 0, 10, later).await.unwrap()),
        vec![1, 4, 5]
    );
    assert_eq!(
        numbers(store.shards(&c, 1, 1, later).await.unwrap()),
        vec![4],
        "a burnt run does not end a page early"
    );
    assert_eq!(store.shard(&c, 2, later).await.unwrap(), None);
    assert_eq!(
        store.shard(&c, 4, later).await.unwrap(),
        Some(shard(4, T0.plus(1000)))
    );
    assert_eq!(store.shard(&c, 9, T0).await.unwrap(), None);
    // Holds among messages do not end a page early either.
    store.reserve(&c, &HOLD, T0.plus(1000)).await.unwrap();
    store.reserve(&c, &[8; 16], T0.plus(1000)).await.unwrap();
    store.post_next(&c, &shard(8, T0.plus(1000))).await.unwrap();
    assert_eq!(
        numbers(store.shards(&c, 5, 1, T0).await.unwrap()),
        vec![8],
        "a run of holds does not end a page early"
    );
}

pub async fn shards_are_scoped_by_room_and_channel<S: Rooms>(store: Arc<S>) {
    store
        .post_next(&channel(1, 1), &shard(1, T0.plus(100)))
        .await
        .unwrap();
    // The same channel id in another room, and another channel in the same room, are apart.
    assert_eq!(
        store.shards(&channel(2, 1), 0, 10, T0).await.unwrap(),
        vec![]
    );
    assert_eq!(
        store.shards(&channel(1, 2), 0, 10, T0).await.unwrap(),
        vec![]
    );
    store
        .post_next(&channel(2, 1), &shard(1, T0.plus(100)))
        .await
        .unwrap();
}

pub async fn shards_delete_reports_presence<S: Rooms>(store: Arc<S>) {
    let c = channel(1, 1);
    store.post_next(&c, &shard(1, T0.plus(100))).await.unwrap();
    assert!(store.delete_shard(&c, 1).await.unwrap());
    assert!(!store.delete_shard(&c, 1).await.unwrap());
    assert_eq!(store.shard(&c, 1, T0).await.unwrap(), None);
    assert_eq!(store.shards(&c, 0, 10, T0).await.unwrap(), vec![]);
    assert!(
        matches!(
            store.post_next(&c, &shard(1, T0.plus(100))).await,
            Err(StoreError::Conflict)
        ),
        "a deleted number stays taken"
    );
}

// ---------------------------------------------------------------- live subscriptions

fn subscription(
    connection: &str,
    c: ChannelRef,
    key: u8,
    expires_at: Timestamp,
) -> cinder_server::store::Subscription {
    cinder_server::store::Subscription {
        connection: connection.to_owned(),
        channel: c,
        key: cinder_proto::VerifyKey::from(
            ed25519_dalek::SigningKey::from_bytes(&[key; 32]).verifying_key(),
        ),
        expires_at,
    }
}

fn connections(mut subs: Vec<cinder_server::store::Subscription>) -> Vec<String> {
    subs.sort_by(|a, b| a.connection.cmp(&b.connection));
    subs.into_iter().map(|s| s.connection).collect()
}

pub async fn live_subscriptions_are_found_by_channel_and_by_connection<
    S: cinder_server::store::LiveStore,
>(
    store: Arc<S>,
) {
    let (a, b) = (channel(1, 1), channel(1, 2));
    let later = T0.plus(100);
    store
        .subscribe(&subscription("conn-A", a, 1, later))
        .await
        .unwrap();
    store
        .subscribe(&subscription("conn-A", b, 2, later))
        .await
        .unwrap();
    store
        .subscribe(&subscription("conn-B", a, 1, later))
        .await
        .unwrap();
    assert_eq!(
        connections(store.subscribers(&a, T0).await.unwrap()),
        ["conn-A", "conn-B"]
    );
    assert_eq!(
        connections(store.subscribers(&b, T0).await.unwrap()),
        ["conn-A"]
    );
    assert_eq!(store.subscribers(&channel(2, 1), T0).await.unwrap(), vec![]);
    let mut mine = store.subscriptions_of("conn-A", T0).await.unwrap();
    mine.sort_by_key(|c| c.channel.0);
    assert_eq!(mine, vec![a, b]);
    assert!(store.unsubscribe("conn-A", &a).await.unwrap());
    assert!(
        !store.unsubscribe("conn-A", &a).await.unwrap(),
        "gone already"
    );
    assert_eq!(
        connections(store.subscribers(&a, T0).await.unwrap()),
        ["conn-B"]
    );
    assert_eq!(store.subscriptions_of("conn-A", T0).await.unwrap(), vec![b]);
    assert_eq!(store.subscriptions_of("conn-C", T0).await.unwrap(), vec![]);
}

pub async fn live_a_renewal_replaces_the_key_and_expiry<S: cinder_server::store::LiveStore>(
    store: Arc<S>,
) {
    let a = channel(1, 1);
    store
        .subscribe(&subscription("conn-A", a, 1, T0.plus(10)))
        .await
        .unwrap();
    let renewed = subscription("conn-A", a, 2, T0.plus(100));
    store.subscribe(&renewed).await.unwrap();
    assert_eq!(
        store.subscribers(&a, T0.plus(50)).await.unwrap(),
        vec![renewed]
    );
}

pub async fn live_lapsed_subscriptions_are_never_returned<S: cinder_server::store::LiveStore>(
    store: Arc<S>,
) {
    let a = channel(1, 1);
    store
        .subscribe(&subscription("conn-A", a, 1, T0.plus(10)))
        .await
        .unwrap();
    store
        .subscribe(&subscription("conn-B", a, 1, T0.plus(20)))
        .await
        .unwrap();
    assert_eq!(
        connections(store.subscribers(&a, T0.plus(10)).await.unwrap()),
        ["conn-B"]
    );
    assert_eq!(
        store.subscriptions_of("conn-A", T0.plus(10)).await.unwrap(),
        vec![]
    );
    assert_eq!(store.subscribers(&a, T0.plus(20)).await.unwrap(), vec![]);
}

pub async fn live_disconnect_drops_only_that_connections_subscriptions<
    S: cinder_server::store::LiveStore,
>(
    store: Arc<S>,
) {
    let (a, b) = (channel(1, 1), channel(2, 1));
    let later = T0.plus(100);
    for c in [a, b] {
        store
            .subscribe(&subscription("conn-A", c, 1, later))
            .await
            .unwrap();
        store
            .subscribe(&subscription("conn-B", c, 1, later))
            .await
            .unwrap();
    }
    store.disconnect("conn-A").await.unwrap();
    for c in [a, b] {
        assert_eq!(
            connections(store.subscribers(&c, T0).await.unwrap()),
            ["conn-B"]
        );
    }
    assert_eq!(store.subscriptions_of("conn-A", T0).await.unwrap(), vec![]);
    store.disconnect("conn-A").await.unwrap();
    store.disconnect("never-seen").await.unwrap();
}

pub async fn live_a_hundred_subscribers_on_one_channel<S: cinder_server::store::LiveStore>(
    store: Arc<S>,
) {
    let a = channel(1, 1);
    let names: Vec<String> = (0..100).map(|i| format!("conn-{i:03}")).collect();
    for name in &names {
        store
            .subscribe(&subscription(name, a, 1, T0.plus(100)))
            .await
            .unwrap();
    }
    assert_eq!(connections(store.subscribers(&a, T0).await.unwrap()), names);
}

// ---------------------------------------------------------------------------
// Relays (the calls function's relay announcements)
// ---------------------------------------------------------------------------

fn relay(id: &str, urls: &[&str], expires_at: Timestamp) -> cinder_server::store::Relay {
    cinder_server::store::Relay {
        relay_id: id.to_owned(),
        urls: urls.iter().map(|u| (*u).to_owned()).collect(),
        expires_at,
    }
}

fn sorted_relays(mut relays: Vec<cinder_server::store::Relay>) -> Vec<cinder_server::store::Relay> {
    relays.sort_by(|a, b| a.relay_id.cmp(&b.relay_id));
    relays
}

pub async fn relays_announcements_are_listed_until_they_lapse<
    S: cinder_server::store::RelayStore,
>(
    store: Arc<S>,
) {
    let a = relay(
        "relay-a",
        &["turn:203.0.113.1:3478?transport=udp"],
        T0.plus(100),
    );
    let b = relay(
        "relay-b",
        &[
            "turn:203.0.113.2:3478?transport=udp",
            "turns:203.0.113.2:443?transport=tcp",
        ],
        T0.plus(200),
    );
    store.announce(&a).await.unwrap();
    store.announce(&b).await.unwrap();
    assert_eq!(
        sorted_relays(store.relays(T0).await.unwrap()),
        vec![a.clone(), b.clone()]
    );
    // At a's expiry it is gone (expiry is exclusive), whatever TTL has or has not done.
    assert_eq!(store.relays(T0.plus(100)).await.unwrap(), vec![b.clone()]);
    assert_eq!(store.relays(T0.plus(200)).await.unwrap(), vec![]);
    // A renewal brings a relay back with its new URLs.
    let renewed = relay(
        "relay-a",
        &["turn:203.0.113.9:3478?transport=udp"],
        T0.plus(400),
    );
    store.announce(&renewed).await.unwrap();
    assert_eq!(store.relays(T0.plus(300)).await.unwrap(), vec![renewed]);
}

pub async fn relays_an_older_announcement_never_replaces_a_newer_one<
    S: cinder_server::store::RelayStore,
>(
    store: Arc<S>,
) {
    let newer = relay(
        "relay-a",
        &["turn:203.0.113.1:3478?transport=udp"],
        T0.plus(300),
    );
    let older = relay(
        "relay-a",
        &["turn:198.51.100.1:3478?transport=udp"],
        T0.plus(200),
    );
    store.announce(&newer).await.unwrap();
    assert!(matches!(
        store.announce(&older).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.relays(T0).await.unwrap(), vec![newer.clone()]);
    // The same announcement again (a relay retrying) is taken.
    store.announce(&newer).await.unwrap();
    assert_eq!(store.relays(T0).await.unwrap(), vec![newer]);
}

pub async fn relays_concurrent_announcements_keep_the_furthest<
    S: cinder_server::store::RelayStore + 'static,
>(
    store: Arc<S>,
) {
    let tasks: Vec<_> = (1..=16u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let url = format!("turn:203.0.113.{i}:3478?transport=udp");
                store
                    .announce(&relay("relay-a", &[url.as_str()], T0.plus(100 + i)))
                    .await
            })
        })
        .collect();
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(
        store.relays(T0).await.unwrap(),
        vec![relay(
            "relay-a",
            &["turn:203.0.113.16:3478?transport=udp"],
            T0.plus(116)
        )]
    );
}

pub async fn inbox_cap_refuses_drops_past_it_and_counts_only_live_envelopes<S: Store>(
    store: Arc<S>,
) {
    let owner = UserId([1; 16]);
    let ms = T0.0 * 1000;
    // Two that expire soon and one that stays fill a cap of three.
    for (i, expires) in [(0u8, T0.plus(10)), (1, T0.plus(10)), (2, T0.plus(100))] {
        assert!(
            store
                .put(&owner, &envelope(ms + u64::from(i), i, expires), 3)
                .await
                .unwrap()
        );
    }
    let fourth = envelope(ms + 3, 3, T0.plus(100));
    assert!(
        !store.put(&owner, &fourth, 3).await.unwrap(),
        "over the cap"
    );
    assert_eq!(store.count(&owner, T0).await.unwrap(), 3);
    assert!(
        !store
            .list(&owner, None, 10, T0)
            .await
            .unwrap()
            .contains(&fourth),
        "a refused envelope is not kept"
    );
    // Once two have expired there is room again: the cap counts live envelopes only.
    let mut later = envelope((T0.0 + 20) * 1000, 4, T0.plus(200));
    later.created_at = T0.plus(20);
    assert!(store.put(&owner, &later, 3).await.unwrap());
    assert_eq!(store.count(&owner, T0.plus(20)).await.unwrap(), 2);
}

pub async fn inbox_cap_holds_under_concurrent_drops<S: Store>(store: Arc<S>) {
    // GIVEN an inbox holding 250 of its 256
    let owner = UserId([1; 16]);
    let ms = T0.0 * 1000;
    let cap = cinder_proto::api::limits::MAX_INBOX;
    for i in 0..250u64 {
        let mut e = envelope(ms + i, (i % 200) as u8, T0.plus(1000));
        e.id = EnvelopeId::new(ms + i, [1; 8]);
        assert!(store.put(&owner, &e, cap).await.unwrap());
    }
    // WHEN 32 drops arrive at once
    let tasks: Vec<_> = (0..32u64)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut e = envelope(ms + 1000 + i, 7, T0.plus(1000));
                e.id = EnvelopeId::new(ms + 1000 + i, [2; 8]);
                store.put(&owner, &e, cap).await.unwrap()
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await.unwrap());
    }
    // THEN the inbox never holds more than its cap, and exactly the accepted ones stayed
    let held = store.count(&owner, T0).await.unwrap();
    assert!(held <= cap, "{held} envelopes in an inbox of {cap}");
    assert_eq!(
        held,
        250 + accepted,
        "an accepted drop was lost, or a refused one kept"
    );
    assert!(accepted >= 1 || held == 250);
}

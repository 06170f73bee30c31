//! The storage conformance suite on the embedded store (SQLite, in memory).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cinder_sqlite::SqliteStore;

cinder_tests::conformance_suite!(async { Arc::new(SqliteStore::in_memory().unwrap()) });

/// The same suite once on a file, as `make dev` runs it, to cover WAL mode and reopening.
#[tokio::test]
async fn sqlite_file_store_keeps_records_across_reopen() {
    use cinder_server::store::KeyStore;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite3");
    let user = cinder_tests::fixtures::User::new(1, cinder_proto::Timestamp(1_800_000_000));
    {
        let store = SqliteStore::open(&path).unwrap();
        store.insert(&user.bundle).await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.current(&user.id()).await.unwrap(), Some(user.bundle));
}

//! The rooms and shards storage conformance suite on both stores.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod sqlite {
    use std::sync::Arc;

    cinder_tests::rooms_conformance_suite!(async {
        Arc::new(cinder_sqlite::SqliteStore::in_memory().unwrap())
    });
}

mod dynamodb {
    cinder_tests::rooms_conformance_suite!(async {
        cinder_tests::moto::fresh_rooms_store().await.0
    });
}

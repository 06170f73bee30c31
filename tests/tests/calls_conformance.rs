//! The relay-store conformance suite: in memory (the dev server, whose relay runs in its
//! own process) and on DynamoDB (the calls function).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod memory {
    use std::sync::Arc;

    cinder_tests::relays_conformance_suite!(async {
        Arc::new(cinder_server::calls::MemoryRelays::default())
    });
}

mod dynamodb {
    cinder_tests::relays_conformance_suite!(async {
        cinder_tests::moto::fresh_relays_store().await.0
    });
}

//! The live-subscription storage conformance suite: in memory (the dev server, which holds
//! its sockets itself) and on DynamoDB (the live function).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod memory {
    use std::sync::Arc;

    cinder_tests::live_conformance_suite!(async {
        Arc::new(cinder_server::live::MemoryLive::default())
    });
}

mod dynamodb {
    cinder_tests::live_conformance_suite!(async { cinder_tests::moto::fresh_live_store().await.0 });
}

//! The storage conformance suite on the DynamoDB store, against moto's server.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

cinder_tests::conformance_suite!(async { cinder_tests::moto::fresh_store().await.0 });

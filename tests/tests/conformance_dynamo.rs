//! The storage conformance suite on the DynamoDB store, against moto's server.

cinder_tests::conformance_suite!(async { cinder_tests::moto::fresh_store().await.0 });

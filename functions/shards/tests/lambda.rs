//! The shipped `cinder-shards` binary (two instances taking turns) behind the API Gateway
//! stand-in, on DynamoDB (moto), running the three-user rooms scenario through the
//! reference client; the other functions run in-process on the same tables.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_tests::lambda::{Under, rooms_deployment};
use cinder_tests::scenarios::{PassTime, three_users};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_user_scenario_through_the_shards_lambda() {
    let (gateway, _functions) =
        rooms_deployment(env!("CARGO_BIN_EXE_cinder-shards").as_ref(), Under::Shards).await;
    // The binary reads the real clock, so time passes for real.
    let pass: PassTime =
        Box::new(|secs| Box::pin(tokio::time::sleep(std::time::Duration::from_secs(secs))));
    three_users(
        &cinder_client::Client::new(&gateway.url),
        "shards lambda",
        &pass,
    )
    .await;
}

//! Lambda entry point for channel messages: read config once, build the store once, serve
//! the router.

use std::sync::Arc;

use cinder_aws::rooms::{DynamoRooms, RoomTables, max_burn_secs_from_env};
use cinder_server::Clock;
use cinder_server::shards::{ShardsState, router};

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let tables = RoomTables::from_env()?;
    let max_burn = max_burn_secs_from_env()?;
    let limits = cinder_server::limits::Limits::from_env()?;
    let sdk = cinder_aws::sdk_config().await?;
    let store = DynamoRooms::new(aws_sdk_dynamodb::Client::new(&sdk), tables);
    let state = ShardsState::new(Arc::new(store), Clock::system(), max_burn).with_limits(limits);
    lambda_http::run(router(state)).await
}

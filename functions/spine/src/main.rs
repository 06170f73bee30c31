//! Lambda entry point for rooms: read config once, build the store once, serve the router.

use std::sync::Arc;

use cinder_aws::rooms::{DynamoRooms, RoomTables};
use cinder_server::Clock;
use cinder_server::limits::{Limits, with_source_addr};
use cinder_server::spine::{SpineState, router};

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let tables = RoomTables::from_env()?;
    let limits = Limits::from_env()?;
    let sdk = cinder_aws::sdk_config().await?;
    let store = DynamoRooms::new(aws_sdk_dynamodb::Client::new(&sdk), tables);
    let state = SpineState::new(Arc::new(store), Clock::system()).with_limits(limits);
    lambda_http::run(with_source_addr(router(state))).await
}

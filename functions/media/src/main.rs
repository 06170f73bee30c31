//! Lambda entry point for media: read config once, build the stores once, serve the
//! router. The function hands out presigned S3 URLs; no media bytes pass through it.

use std::sync::Arc;

use cinder_aws::media::{MediaConfig, S3Presigner};
use cinder_aws::rooms::{DynamoRooms, RoomTables};
use cinder_server::Clock;
use cinder_server::media::{MediaState, router};

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let tables = RoomTables::from_env()?;
    let media = MediaConfig::from_env()?;
    let limits = cinder_server::limits::Limits::from_env()?;
    let sdk = cinder_aws::sdk_config().await?;
    let store = DynamoRooms::new(aws_sdk_dynamodb::Client::new(&sdk), tables);
    // Presigning is all it does with S3: no S3 client (cinder_aws::media::S3Presigner).
    let objects = S3Presigner::from_sdk(&sdk, &media.bucket)?;
    let state = MediaState::new(
        Arc::new(store),
        Arc::new(objects),
        Clock::system(),
        media.max_bytes,
    )
    .with_limits(limits);
    lambda_http::run(router(state)).await
}

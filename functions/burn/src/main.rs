//! Lambda entry point for the shards table's stream: read config once, build the object
//! store once, and burn each batch's media (`cinder_aws::burn`), answering with the records
//! that failed so only they are retried.

use cinder_aws::burn::burn;
use cinder_aws::media::{MediaConfig, S3Objects};
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let media = MediaConfig::from_env()?;
    let sdk = cinder_aws::sdk_config().await?;
    let objects = &S3Objects::from_sdk(&sdk, media.bucket)?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        burn(&event.payload, objects)
            .await
            .map_err(lambda_runtime::Error::from)
    }))
    .await
}

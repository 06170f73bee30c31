//! Lambda entry point for the key directory and invite inboxes: read config once, build
//! the store once, then serve the shared router for every invocation.

use std::sync::Arc;

use cinder_aws::{Config, DynamoStore};
use cinder_server::Clock;
use cinder_server::keys::{KeysState, router};
use cinder_server::limits::{Limits, with_source_addr};

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let limits = Limits::from_env()?;
    let store = DynamoStore::from_env(Config::from_env()?).await?;
    let state = KeysState::new(Arc::new(store), Clock::system()).with_limits(limits);
    lambda_http::run(with_source_addr(router(state))).await
}

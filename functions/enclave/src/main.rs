//! Lambda entry point for accounts and the enclave: read config and the master secret
//! once, derive the server secrets once, then serve the shared router.
//!
//! The master secret comes in the function's environment (`MASTER_SECRET`: the template
//! resolves it from Secrets Manager at deploy, and Lambda keeps it encrypted under the
//! stack's KMS key until the instance starts), so a cold start makes no network call
//! before its first event; an instance without a usable secret fails its start, which
//! Lambda reports and retries, rather than its requests. The secret is never logged.

use std::sync::Arc;

use cinder_aws::accounts::{AccountsConfig, DynamoAccounts};
use cinder_server::Clock;
use cinder_server::accounts::{AccountsState, ServerSecrets, router};
use cinder_server::limits::{Limits, with_source_addr};

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = AccountsConfig::from_env()?;
    let limits = Limits::from_env()?;
    let secrets = ServerSecrets::from_master(config.master_secret.bytes())?;
    drop(config.master_secret);
    let sdk = cinder_aws::sdk_config().await?;
    let store = DynamoAccounts::new(aws_sdk_dynamodb::Client::new(&sdk), config.tables);
    let state =
        AccountsState::new(Arc::new(store), Arc::new(secrets), Clock::system()).with_limits(limits);
    lambda_http::run(with_source_addr(router(state))).await
}

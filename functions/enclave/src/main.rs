//! Lambda entry point for accounts and the enclave: read config and the master secret
//! once, derive the server secrets once, then serve the shared router.

use std::sync::Arc;

use cinder_aws::accounts::{AccountsConfig, DynamoAccounts, master_secret};
use cinder_server::Clock;
use cinder_server::accounts::{AccountsState, ServerSecrets, router};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = AccountsConfig::from_env()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secrets =
        ServerSecrets::from_master(&master_secret(&sdk, &config.master_secret_id).await?)?;
    let store = DynamoAccounts::new(aws_sdk_dynamodb::Client::new(&sdk), config.tables);
    let state = AccountsState::new(Arc::new(store), Arc::new(secrets), Clock::system());
    lambda_http::run(router(state)).await
}

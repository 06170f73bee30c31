//! Lambda entry point for calls: read config and the TURN secret once, build the stores
//! once, serve the router. Call media never passes through it: it hands out TURN
//! credentials and records where the relays are.
//!
//! The TURN secret is read (one Secrets Manager round trip) before the function asks for
//! its first event, as the enclave reads its master secret: an instance that cannot read
//! it fails its start rather than its requests. It is never logged.

use std::sync::Arc;

use cinder_aws::calls::{CallsConfig, DynamoRelays};
use cinder_aws::rooms::{DynamoRooms, RoomTables};
use cinder_aws::secrets::secret_bytes;
use cinder_server::Clock;
use cinder_server::calls::{CallsState, TurnSecret, router};

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let tables = RoomTables::from_env()?;
    let config = CallsConfig::from_env()?;
    let sdk = cinder_aws::sdk_config().await?;
    let secret = Arc::new(TurnSecret::new(
        secret_bytes(&sdk, &config.turn_secret_id).await?,
    )?);
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let rooms = DynamoRooms::new(client.clone(), tables);
    let relays = DynamoRelays::new(client, config.relays_table);
    let state = CallsState::new(Arc::new(rooms), Arc::new(relays), secret, Clock::system())
        .with_credential_secs(config.credential_secs)
        .with_limits(cinder_server::limits::Limits::from_env()?);
    lambda_http::run(router(state)).await
}

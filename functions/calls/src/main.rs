//! Lambda entry point for calls: read config and the TURN secret once, build the stores
//! once, serve the router. Call media never passes through it: it hands out TURN
//! credentials and records where the relays are.
//!
//! The TURN secret comes in the function's environment (`TURN_SECRET`), as the enclave's
//! master secret does: no network call before the first event, and an instance without a
//! usable secret fails its start rather than its requests. It is never logged.

use std::sync::Arc;

use cinder_aws::calls::{CallsConfig, DynamoRelays};
use cinder_aws::rooms::{DynamoRooms, RoomTables};
use cinder_server::Clock;
use cinder_server::calls::{CallsState, TurnSecret, router};

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let tables = RoomTables::from_env()?;
    let config = CallsConfig::from_env()?;
    let secret = Arc::new(TurnSecret::new(config.turn_secret.bytes().to_vec())?);
    drop(config.turn_secret);
    let sdk = cinder_aws::sdk_config().await?;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let rooms = DynamoRooms::new(client.clone(), tables);
    let relays = DynamoRelays::new(client, config.relays_table);
    let state = CallsState::new(Arc::new(rooms), Arc::new(relays), secret, Clock::system())
        .with_credential_secs(config.credential_secs)
        .with_limits(cinder_server::limits::Limits::from_env()?);
    lambda_http::run(router(state)).await
}

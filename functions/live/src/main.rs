//! Lambda entry point of the live socket. One binary, two triggers:
//!
//! - API Gateway's WebSocket API (`$connect`, `$disconnect`, and the `subscribe` and
//!   `unsubscribe` routes, chosen by `$request.body.action`): [`socket`] checks each
//!   subscription's capability proof (`cinder_server::live::handle_frame`) and posts the
//!   answers back on the connection;
//! - the shards table's stream: [`stream`] turns new and deleted messages into notices and
//!   posts each to every connection that proved it may read their channel.
//!
//! Config and clients are built once per instance. Logs carry routes, counts and failure
//! kinds, never bodies, proofs, keys or connection ids.

mod post;
mod socket;
mod stream;

use std::sync::Arc;

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use cinder_aws::live::DynamoLive;
use cinder_aws::rooms::{DynamoRooms, RoomTables};
use cinder_server::live::LiveState;
use cinder_server::{Auth, Clock};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::Deserialize;
use serde_json::Value;

use crate::post::Poster;

/// Everything an invocation needs, built once.
struct Live {
    state: LiveState,
    rooms: Arc<DynamoRooms>,
    poster: Poster,
}

// One thread: Lambda gives an instance one event at a time, so worker threads would only
// cost their start (cinder_aws::sdk_config says what else a cold start no longer pays for).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let tables = RoomTables::from_env()?;
    let table = DynamoLive::table_from_env()?;
    // The WebSocket API's management endpoint, https://{api}.execute-api.{region}
    // .amazonaws.com/{stage}: where PostToConnection goes.
    let endpoint = std::env::var("LIVE_ENDPOINT").map_err(|_| "LIVE_ENDPOINT is not set")?;
    let sdk = cinder_aws::sdk_config().await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let rooms = Arc::new(DynamoRooms::new(dynamo.clone(), tables));
    let live = Arc::new(DynamoLive::new(dynamo, table));
    let live = &Live {
        state: LiveState {
            auth: Auth::for_rooms(rooms.clone(), rooms.clone(), Clock::system()),
            live,
        },
        rooms,
        poster: Poster::new(&sdk, &endpoint),
    };
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        handle(live, &event.payload).await
    }))
    .await
}

/// One invocation: a stream batch (`{"Records": [...]}`, tried first) or a WebSocket event.
async fn handle(live: &Live, payload: &Value) -> Result<Value, lambda_runtime::Error> {
    if payload.get("Records").is_some_and(Value::is_array) {
        let response = stream::fan_out(live, payload).await;
        return Ok(serde_json::to_value(response)?);
    }
    let request = ApiGatewayWebsocketProxyRequest::deserialize(payload)
        .map_err(|_| "the event is neither a stream batch nor a WebSocket event")?;
    Ok(socket::answer(live, request).await)
}

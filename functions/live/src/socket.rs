//! The WebSocket API's events: `$connect` is let in (a connection proves nothing until it
//! subscribes), `$disconnect` forgets the connection's subscriptions, and every other route
//! (`subscribe`, `unsubscribe`) is one client frame, answered on the connection.

use aws_lambda_events::event::apigw::ApiGatewayWebsocketProxyRequest;
use base64::Engine as _;
use cinder_proto::Timestamp;
use cinder_server::live::{handle_frame, valid_connection_id};
use serde_json::{Value, json};

use crate::Live;
use crate::post::Posted;

fn status(code: u16) -> Value {
    json!({ "statusCode": code })
}

/// Answers one WebSocket event. The status goes to API Gateway (a `$connect` other than
/// 200 refuses the connection); frames go back through PostToConnection, since the routes
/// have no route responses.
pub async fn answer(live: &Live, request: ApiGatewayWebsocketProxyRequest) -> Value {
    let context = &request.request_context;
    let route = context.route_key.as_deref().unwrap_or_default();
    let Some(connection) = context
        .connection_id
        .as_deref()
        .filter(|c| valid_connection_id(c))
    else {
        tracing::warn!(route, "WebSocket event without a valid connection id");
        return status(400);
    };
    match route {
        "$connect" => status(200),
        "$disconnect" => match live.state.live.disconnect(connection).await {
            Ok(()) => status(200),
            Err(error) => {
                // Its items expire on their own (the table's TTL); nothing else to do.
                tracing::error!(%error, "forgetting a closed connection failed");
                status(500)
            }
        },
        _ => {
            let body = request.body.unwrap_or_default();
            let frame = if request.is_base64_encoded {
                // Not base64 after all: handed on as it is, and refused as not JSON.
                base64::engine::general_purpose::STANDARD
                    .decode(&body)
                    .unwrap_or_else(|_| body.into_bytes())
            } else {
                body.into_bytes()
            };
            let answers = handle_frame(&live.state, connection, &frame, Timestamp::now()).await;
            let count = answers.len();
            for frame in &answers {
                match live.poster.post(connection, frame).await {
                    Posted::Sent | Posted::Failed => {}
                    Posted::Gone => {
                        // Closed while we answered: drop what it just subscribed to.
                        if let Err(error) = live.state.live.disconnect(connection).await {
                            tracing::error!(%error, "forgetting a gone connection failed");
                        }
                        break;
                    }
                }
            }
            tracing::info!(route, answers = count, "frame answered");
            status(200)
        }
    }
}

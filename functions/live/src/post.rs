//! Posting frames to WebSocket connections: API Gateway's management API
//! (`POST /@connections/{id}` on the stage's URL).

use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use cinder_proto::live::ServerFrame;

/// What became of one post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// The frame is on its way.
    Sent,
    /// The connection is closed (410 Gone): its subscriptions should go.
    Gone,
    /// Any other failure (logged by kind).
    Failed,
}

/// The management API client, on the stage's endpoint.
pub struct Poster {
    client: Client,
}

impl Poster {
    /// A client on `endpoint` with the function's SDK configuration.
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }

    /// Posts one frame (JSON text) to one connection.
    pub async fn post(&self, connection: &str, frame: &ServerFrame) -> Posted {
        let Ok(body) = serde_json::to_vec(frame) else {
            return Posted::Failed;
        };
        match self
            .client
            .post_to_connection()
            .connection_id(connection)
            .data(Blob::new(body))
            .send()
            .await
        {
            Ok(_) => Posted::Sent,
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                let gone = status == Some(410)
                    || e.as_service_error().is_some_and(|s| s.is_gone_exception());
                if gone {
                    Posted::Gone
                } else {
                    let kind = match &e {
                        SdkError::ServiceError(_) => "service error",
                        SdkError::TimeoutError(_) => "timeout",
                        SdkError::DispatchFailure(_) => "dispatch failure",
                        SdkError::ResponseError(_) => "unreadable response",
                        SdkError::ConstructionFailure(_) => "construction failure",
                        _ => "other",
                    };
                    tracing::warn!(kind, status, "PostToConnection failed");
                    Posted::Failed
                }
            }
        }
    }
}

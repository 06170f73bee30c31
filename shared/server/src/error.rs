//! The one error type of the server and the one place it becomes a response.
//!
//! Handlers return [`Error`]; [`IntoResponse`] below picks the status and the stable
//! [`ErrorCode`]. Caller mistakes are 4xx and logged at debug at most; internal failures are
//! a generic 500, logged once here with their cause, never with a body or a key; storage
//! that is throttled or busy is a 503 with `retry-after`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cinder_proto::{ErrorBody, ErrorCode, Timestamp};

use crate::StoreError;

/// Shorthand for results in the server.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON of the wrong shape.
    #[error("invalid request body at `{field}`: {message}")]
    InvalidBody {
        /// Path to the offending field, `.` for the whole body.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A path segment or query parameter is malformed.
    #[error("invalid {0}")]
    InvalidParameter(String),
    /// The body exceeds the endpoint's limit.
    #[error("request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The endpoint's limit in bytes.
        limit: usize,
    },
    /// Missing, malformed or wrong signature, unknown signer, or a missing, forged or ended
    /// session: deliberately one answer.
    #[error("not authenticated: the signature or session is missing, invalid or expired")]
    Unauthenticated,
    /// The request's timestamp is outside the window around `now`.
    #[error("request timestamp is outside the accepted window")]
    StaleRequest {
        /// The server's time, returned so the client can correct its clock.
        now: Timestamp,
    },
    /// This (signer, nonce) was seen before.
    #[error("request was already received once")]
    ReplayedRequest,
    /// A login that did not finish: wrong password, unknown login, expired or replayed
    /// login state. Deliberately one answer for all.
    #[error("login failed: wrong login or password")]
    LoginFailed,
    /// Too many requests of one kind from one caller.
    #[error("too many requests; retry in {retry_after} seconds")]
    RateLimited {
        /// Seconds until one would go through.
        retry_after: u64,
    },
    /// A password change or account deletion without a fresh proof of the password.
    #[error("prove the password again first (x-cinder-reauth)")]
    ReauthRequired,
    /// Authenticated, but the signer may not do this.
    #[error("not allowed")]
    Forbidden,
    /// The user is not in the key directory.
    #[error("no such user")]
    UnknownUser,
    /// The record does not exist.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The record exists already.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// A concurrent writer got there first.
    #[error("the record changed; read it again and retry")]
    VersionConflict,
    /// The message number was taken; another is held for the caller.
    #[error("message number taken; post again under number {}", .0.number)]
    NumberTaken(cinder_proto::rooms::Reserved),
    /// A key bundle whose id or self-signature does not check out.
    #[error("invalid key bundle: {0}")]
    InvalidBundle(String),
    /// A rotation not signed by the current key.
    #[error("rotation refused: {0}")]
    InvalidRotation(String),
    /// A bound was exceeded.
    #[error("{message}")]
    LimitExceeded {
        /// The field at fault, if any.
        field: Option<&'static str>,
        /// Which bound, in words.
        message: String,
    },
    /// No route for this path.
    #[error("no such endpoint")]
    NoRoute,
    /// The path exists, the method does not.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// The request took longer than the server allows.
    #[error("the request took too long")]
    RequestTimeout,
    /// Storage failed.
    #[error("storage failure")]
    Store(#[from] StoreError),
    /// A bug: an invariant the code relies on did not hold.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A bound was exceeded on `field`.
    pub fn limit(field: &'static str, message: impl Into<String>) -> Self {
        Self::LimitExceeded {
            field: Some(field),
            message: message.into(),
        }
    }

    /// The status and stable code for this error.
    pub fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        use ErrorCode as C;
        match self {
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, C::MalformedJson),
            Self::InvalidBody { .. } => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidBody),
            Self::InvalidParameter(_) => (StatusCode::BAD_REQUEST, C::InvalidParameter),
            Self::BodyTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, C::BodyTooLarge),
            Self::Unauthenticated => (StatusCode::UNAUTHORIZED, C::Unauthenticated),
            Self::StaleRequest { .. } => (StatusCode::UNAUTHORIZED, C::StaleRequest),
            Self::ReplayedRequest => (StatusCode::UNAUTHORIZED, C::ReplayedRequest),
            Self::LoginFailed => (StatusCode::UNAUTHORIZED, C::Unauthenticated),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, C::RateLimited),
            Self::Forbidden => (StatusCode::FORBIDDEN, C::Forbidden),
            Self::ReauthRequired => (StatusCode::FORBIDDEN, C::ReauthRequired),
            Self::UnknownUser => (StatusCode::NOT_FOUND, C::UnknownUser),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, C::NotFound),
            Self::AlreadyExists(_) => (StatusCode::CONFLICT, C::AlreadyExists),
            Self::VersionConflict => (StatusCode::CONFLICT, C::VersionConflict),
            Self::NumberTaken(_) => (StatusCode::CONFLICT, C::NumberTaken),
            Self::InvalidBundle(_) => (StatusCode::UNPROCESSABLE_ENTITY, C::InvalidBundle),
            Self::InvalidRotation(_) => (StatusCode::FORBIDDEN, C::InvalidRotation),
            Self::LimitExceeded { .. } => (StatusCode::UNPROCESSABLE_ENTITY, C::LimitExceeded),
            Self::NoRoute => (StatusCode::NOT_FOUND, C::NoRoute),
            Self::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, C::RequestTimeout),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, C::MethodNotAllowed),
            Self::Store(StoreError::Unavailable(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, C::Unavailable)
            }
            Self::Store(_) | Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, C::Internal),
        }
    }
}

/// Seconds a `503 unavailable` asks the caller to wait: storage throttling on DynamoDB
/// lasts about as long as its partition needs to catch up, and SQLite's busy wait is
/// already spent; a second, with the client's own jitter, spreads the retries out.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 1;

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            // Logged once with its cause, as a 500 is, but as a warning: it is expected
            // under load, and the caller is told only to come back.
            tracing::warn!(error = %self, cause = ?self, "storage unavailable");
            format!("the service is busy; retry after {UNAVAILABLE_RETRY_AFTER_SECS} s")
        } else if status.is_server_error() {
            // The cause stays in the log; the caller learns nothing from it.
            tracing::error!(error = %self, cause = ?self, "request failed");
            "the server failed to handle this request".to_owned()
        } else {
            tracing::debug!(?code, "request refused");
            self.to_string()
        };
        let field = match &self {
            Self::InvalidBody { field, .. } => Some(field.clone()),
            Self::LimitExceeded { field, .. } => field.map(str::to_owned),
            _ => None,
        };
        let reserved = match &self {
            Self::NumberTaken(reserved) => Some(reserved.clone()),
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                code,
                message,
                field,
                reserved,
            }),
        )
            .into_response();
        if let Self::StaleRequest { now } = self
            && let Ok(value) = HeaderValue::from_str(&now.to_string())
        {
            response.headers_mut().insert("x-cinder-server-time", value);
        }
        if let Self::RateLimited { retry_after } = self
            && let Ok(value) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECS),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Cinder-Ed25519"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_cause() {
        let response =
            Error::Store(StoreError::Backend("table cinder-keys is gone".into())).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[tokio::test]
    async fn unavailable_storage_is_a_503_with_retry_after_and_no_cause() {
        let response = Error::Store(StoreError::Unavailable(
            "ProvisionedThroughputExceededException on cinder-inbox".into(),
        ))
        .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from_static("1"))
        );
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body.code, ErrorCode::Unavailable);
        assert!(!body.message.contains("cinder-inbox"), "{}", body.message);
    }
}

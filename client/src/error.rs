//! The client's one error type. Each message is a sentence a CLI user can act on.

use cinder_proto::{ErrorBody, ErrorCode};

/// A lower-level error kept as the cause of a [`ClientError`].
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a client call can fail with. New variants may come, so match with a
/// wildcard arm; [`std::error::Error::source`] gives the underlying cause where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached or answered with something that is not Cinder.
    #[error("could not reach the Cinder server at {url}: {reason}")]
    Unreachable {
        /// Where we tried.
        url: String,
        /// What went wrong, as the HTTP library put it.
        reason: String,
        /// The HTTP library's error or the decoding error, if any.
        #[source]
        cause: Option<Cause>,
    },
    /// The server refused the request.
    #[error("{}", describe(.status, .body))]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's error body.
        body: ErrorBody,
    },
    /// What the server sent does not verify: it may be lying.
    #[error("the server's answer failed verification: {0}")]
    Verification(String),
    /// The local profile could not be read or written.
    #[error("the profile file {path} {reason}")]
    Profile {
        /// Its path.
        path: String,
        /// What went wrong.
        reason: String,
        /// The I/O or decoding error.
        #[source]
        cause: Option<Cause>,
    },
    /// The user's input cannot be used.
    #[error("{0}")]
    Input(String),
    /// The operation needs an identity and the profile has none.
    #[error(
        "this profile has no identity yet; run `cinder register` (or `cinder keys publish`) first"
    )]
    NoIdentity,
    /// The login or the password is wrong (the two are deliberately indistinguishable).
    #[error("wrong login or password")]
    LoginFailed,
    /// The cached session has ended.
    #[error("not logged in, or the session has ended; run `cinder login`")]
    NotLoggedIn,
    /// Object storage refused an upload or download, or the transfer broke off.
    #[error("the file transfer failed: {reason}")]
    Transfer {
        /// The storage's HTTP status, if it answered.
        status: Option<u16>,
        /// What went wrong.
        reason: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bug or a failure of the runtime (a worker thread that stopped), not of the server.
    #[error("internal client error: {0}")]
    Internal(String),
    /// The system could not provide randomness.
    #[error("the system's random number generator failed")]
    Randomness,
}

impl ClientError {
    /// The server's error code, if the server refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { body, .. } => Some(body.code),
            _ => None,
        }
    }
}

fn describe(status: &u16, body: &ErrorBody) -> String {
    use ErrorCode as C;
    let lead = match body.code {
        C::UnknownUser => "No user with that id is in the key directory.",
        C::AlreadyExists => "That already exists on the server.",
        C::VersionConflict => "Someone else changed this first; fetch it again and retry.",
        C::Unauthenticated => {
            "The server did not accept this profile's signature; are these keys published on this server?"
        }
        C::StaleRequest => {
            "This machine's clock is too far from the server's; fix the clock and retry."
        }
        C::ReplayedRequest => "The server has already seen this exact request.",
        C::RateLimited => "Too many attempts; wait a little and retry.",
        C::Forbidden => "This identity is not allowed to do that.",
        C::InvalidRotation => "The server refused the key rotation.",
        C::Internal => "The server failed; try again later.",
        C::Unavailable => {
            "The server is busy or its storage briefly unreachable; try again shortly."
        }
        _ => "The server refused the request.",
    };
    format!("{lead} ({status} {}: {})", body.code, body.message)
}

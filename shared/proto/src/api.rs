//! Bodies of the HTTP API and the stable error codes. `docs/API.md` documents them.

use serde::{Deserialize, Serialize};

use crate::{Blob, EnvelopeId, KeyBundle, Timestamp, UserId};

/// Bounds the server enforces, published so clients can respect them up front.
pub mod limits {
    /// Most user ids in one directory lookup.
    pub const MAX_LOOKUP: usize = 100;
    /// Most bundles in one page of a key chain.
    pub const MAX_CHAIN_PAGE: usize = 100;
    /// Largest sealed invitation envelope, in bytes after base64url decoding.
    pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024;
    /// Longest an envelope may wait in an inbox, in seconds (14 days).
    pub const MAX_ENVELOPE_TTL: u64 = 14 * 24 * 3600;
    /// How long an envelope waits when the sender does not say (7 days).
    pub const DEFAULT_ENVELOPE_TTL: u64 = 7 * 24 * 3600;
    /// Most envelopes waiting in one inbox; past it, drops are refused until the owner
    /// clears some.
    pub const MAX_INBOX: usize = 256;
    /// Most envelopes in one page of an inbox listing.
    pub const MAX_INBOX_PAGE: usize = 100;
    /// Largest sealed enclave, in bytes after base64url decoding.
    pub const MAX_ENCLAVE_BYTES: usize = 256 * 1024;
    /// Largest request body the accounts endpoints accept, in bytes (an enclave in base64url
    /// plus room for the rest).
    pub const MAX_ACCOUNTS_BODY: usize = 400 * 1024;
    /// Largest request body the key directory accepts, in bytes.
    pub const MAX_KEYS_BODY: usize = 64 * 1024;
}

/// A stable, machine-readable error code. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body is not JSON at all.
    MalformedJson,
    /// The body is JSON but a field is missing, mistyped or malformed; `field` says which.
    InvalidBody,
    /// A path segment or query parameter is malformed.
    InvalidParameter,
    /// The body exceeds the endpoint's limit.
    BodyTooLarge,
    /// The signature is missing, malformed or wrong, or the signer is unknown; or the
    /// session is missing, forged or ended; or a login failed (wrong login or password).
    Unauthenticated,
    /// The request's timestamp is outside the accepted window; the `x-cinder-server-time`
    /// header gives the server's time.
    StaleRequest,
    /// The (signer, nonce) pair was already used.
    ReplayedRequest,
    /// Authenticated, but not allowed to do this.
    Forbidden,
    /// No such user in the key directory.
    UnknownUser,
    /// No such record.
    NotFound,
    /// The record exists already.
    AlreadyExists,
    /// The record changed since the caller read it; re-read and retry.
    VersionConflict,
    /// A key bundle whose signatures or id do not check out.
    InvalidBundle,
    /// A rotation whose signatures do not chain from the current version, or that skips
    /// versions. (One for a version already taken is `version_conflict`.)
    InvalidRotation,
    /// A count, size or time bound was exceeded.
    LimitExceeded,
    /// No such route.
    NoRoute,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// Too many requests of this kind from this caller; `retry-after` says when to try
    /// again (seconds).
    RateLimited,
    /// A password change or account deletion without a fresh proof of the password: prove
    /// it again (`POST /accounts/reauth/start` and `…/finish`) and send the token in
    /// `x-cinder-reauth`.
    ReauthRequired,
    /// The message number was taken by another poster (or its hold lapsed); `reserved`
    /// holds another number for this poster: seal the message for it and post again.
    NumberTaken,
    /// The request took longer than the server allows (a stalled or very slow client);
    /// nothing was done unless the answer to a retry says so.
    RequestTimeout,
    /// The server failed; nothing about the request is implied.
    Internal,
    /// Storage is throttled or briefly unreachable; `retry-after` says when to try again
    /// (seconds). Nothing about the request is implied: a write may or may not have been
    /// stored, and is safe to send again only where the endpoint is idempotent.
    Unavailable,
}

impl std::fmt::Display for ErrorCode {
    /// The code as it appears on the wire, e.g. `unknown_user`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(s)) => f.write_str(&s),
            _ => write!(f, "{self:?}"),
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
    /// The offending field's path in the body, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With `number_taken`: the number now held for the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<crate::rooms::Reserved>,
}

/// `POST /keys/lookup`: current bundles of many users at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// Users to look up, at most [`limits::MAX_LOOKUP`].
    pub user_ids: Vec<UserId>,
}

/// Answer to [`LookupRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupResponse {
    /// Current bundles of the users that exist, in request order.
    pub bundles: Vec<KeyBundle>,
    /// The ids that have no bundle.
    pub missing: Vec<UserId>,
}

/// `GET /keys/{user_id}/chain?after=N`: bundles with a version above N, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainPage {
    /// Consecutive versions, oldest first.
    pub bundles: Vec<KeyBundle>,
    /// Whether later versions remain; ask again with `after` = the last version here.
    pub more: bool,
}

/// `POST /inbox/{user_id}`: drop a sealed envelope for a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropEnvelope {
    /// HPKE-sealed to the recipient's directory key; opaque to the server.
    pub sealed: Blob,
    /// Seconds until it expires unread, at most [`limits::MAX_ENVELOPE_TTL`].
    #[serde(default)]
    pub ttl: Option<u64>,
}

/// An envelope waiting in an inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Its id, ordered by arrival.
    pub id: EnvelopeId,
    /// Who dropped it (authenticated by the server).
    pub sender: UserId,
    /// When it arrived.
    pub created_at: Timestamp,
    /// When it expires unread.
    pub expires_at: Timestamp,
    /// The sealed contents.
    pub sealed: Blob,
}

/// `GET /inbox/{user_id}?after=ID&limit=N`: one page of an inbox, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopePage {
    /// Envelopes after the cursor.
    pub envelopes: Vec<Envelope>,
    /// Pass as `after` to get the next page; present whenever this page is full, so the
    /// page after it may be empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<EnvelopeId>,
}

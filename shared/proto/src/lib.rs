//! Cinder's wire contract: the types a client and the server must agree on byte for byte.
//!
//! # Layout
//! - [`encoding`]: base64url (unpadded) byte fields, the one binary-to-text encoding of the API.
//! - [`ids`]: identifiers and timestamps, parsed once at the edge.
//! - [`keys`]: the self-signed key bundle of the key directory and its rotation chain.
//! - [`auth`]: how a request is signed: headers and the canonical bytes under the signature.
//! - [`accounts`]: OPAQUE registration and login bodies, logins, Argon2id parameters.
//! - [`rooms`]: rooms (the spine) and channel messages (the shards).
//! - [`media`]: upload and download grants for encrypted attachments and avatars.
//! - [`live`]: the live socket's frames: subscriptions proved by capability, and notices.
//! - [`calls`]: TURN credentials for a channel's members, and relays' announcements.
//! - [`api`]: request and response bodies of the HTTP API, and the stable error codes.
//!
//! The server compiles this crate to *verify*; the client compiles it to *sign*. Neither
//! needs anything else to agree on what a signature covers.

pub mod accounts;
pub mod api;
pub mod auth;
pub mod calls;
pub mod encoding;
pub mod ids;
pub mod keys;
pub mod live;
pub mod media;
pub mod rooms;

pub use api::{Envelope, ErrorBody, ErrorCode};
pub use auth::{RequestSignature, Signer};
pub use encoding::{Blob, HpkePublicKey, Nonce, Signature, VerifyKey};
pub use ids::{ChannelId, EnvelopeId, MediaId, RoomId, Timestamp, UserId};
pub use keys::KeyBundle;

/// Why a piece of wire data was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    /// Not valid base64url (unpadded).
    #[error("not valid base64url")]
    Base64,
    /// Decoded to the wrong number of bytes.
    #[error("expected {expected} bytes, got {actual}")]
    Length {
        /// Bytes the field must hold.
        expected: usize,
        /// Bytes it held.
        actual: usize,
    },
    /// An Ed25519 verification key that is not a valid curve point.
    #[error("not a valid Ed25519 public key")]
    BadKey,
    /// An identifier in the wrong shape.
    #[error("malformed {0}")]
    BadId(&'static str),
    /// A signature that does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A key bundle that breaks the chain rules.
    #[error("{0}")]
    BadBundle(&'static str),
}

//! Cinder's client library: the reference implementation of everything a client must do
//! that the server cannot do for it: hold keys, sign requests, verify what comes back.
//! The `cinder` command line is a separate crate (`client/cli`), so an app embedding this
//! library compiles no argument parser or terminal code.
//!
//! # Layout
//! - [`identity`]: a user's private keys and the bundle that publishes them.
//! - [`profile`]: the local profile file (mode 0600): identity and pinned keys.
//! - [`account`]: OPAQUE registration and login, and the enclave that holds the identity.
//! - [`api`]: [`Client`], one method per endpoint, signing requests where required.
//! - [`directory`]: fetching other users' keys and following their rotation chains
//!   against pinned versions.
//! - [`rooms`]: rooms, channels, invitations and messages: every key made and kept here.
//! - [`live`]: the live socket, whose notices say when to read a followed channel.
//! - [`call`]: call signals (sealed channel messages), who is in a call, TURN credentials;
//!   with the `call` feature, the WebRTC call engine.
//! - [`media`]: files sealed as a stream (STREAM over AES-256-GCM) for attachments.
//! - [`error`]: the one error type, each variant a sentence a person can read.
//! - `secret`: keeps secrets from serialising anywhere but the crate's own storage.

pub mod account;
pub mod api;
pub mod call;
pub mod directory;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod live;
pub mod media;
pub mod profile;
pub mod rooms;
mod secret;
#[cfg(test)]
mod vectors;

pub use api::Client;
pub use error::ClientError;
pub use identity::Identity;
pub use profile::Profile;

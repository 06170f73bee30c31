//! The server core every Cinder function shares: domain rules, storage traits, HTTP routers
//! and the one error scheme. Lambda binaries and the dev server only wire stores into these
//! routers; nothing here knows which database or which runtime it runs on.
//!
//! # Layout
//! - [`error`]: the one error type and the one place it becomes an HTTP status and code.
//! - [`store`]: one storage trait per record; implementations live in `cinder-sqlite` and
//!   `cinder-aws` and pass the same conformance suite.
//! - [`clock`]: the time source, injected so tests set `now` instead of sleeping.
//! - [`auth`]: request authentication: signature, window, replay; reused by every function.
//! - [`extract`]: axum extractors that parse bodies, paths and signatures at the edge.
//! - [`limits`]: rate limits as token buckets in a shared store.
//! - [`routing`]: fallbacks and the access log every finished router gets.
//! - `accounts` (feature `accounts`): OPAQUE login and the enclave: domain rules and router.
//! - [`spine`]: rooms: the sealed spine and its capabilities.
//! - [`shards`]: channel messages: numbering, burn, capability checks.
//! - [`keys`]: the key directory and invite inboxes: domain rules and router.
//! - [`media`]: upload and download URLs for encrypted attachments and avatars.
//! - [`live`]: the live socket: subscriptions proved by capability, and who to notify.
//! - [`calls`]: TURN credentials for a channel's members, and where the relays are.

#[cfg(feature = "accounts")]
pub mod accounts;
pub mod auth;
pub mod calls;
pub mod clock;
pub mod error;
pub mod extract;
pub mod keys;
pub mod limits;
pub mod live;
pub mod media;
pub mod routing;
pub mod shards;
pub mod spine;
pub mod store;

pub use auth::Auth;
pub use clock::Clock;
pub use error::{Error, Result};
pub use store::StoreError;

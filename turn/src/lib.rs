//! `cinder-turn`: Cinder's TURN relay (RFC 8656) for calls.
//!
//! Clients that cannot reach each other directly relay their (already end-to-end
//! encrypted) media through it, with short-lived REST credentials from the Cinder API.
//! It relays UDP only, over UDP, TCP and TLS listeners, and only to public unicast peers.
//!
//! ```no_run
//! # async fn run() -> Result<(), cinder_turn::Error> {
//! let mut config = cinder_turn::Config::loopback("cinder", b"shared secret".to_vec());
//! config.user_quota = 4;
//! let server = cinder_turn::Server::start(config).await?;
//! println!("{:?} {:?}", server.local_addrs(), server.urls());
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`Config`], with production ([`Config::new`]) and loopback defaults.
//! - [`auth`]: REST credentials (coturn's `use-auth-secret`) and stateless nonces.
//! - [`filter`]: the peer address policy (what clients may not relay to).
//! - `allocation`: allocations, permissions, channels, the bandwidth cap, the peer-side loop.
//! - `server`: [`Server`]: start, the control plane (Allocate, Refresh, CreatePermission,
//!   ChannelBind, Binding) and stop.
//! - `udp`, `tcp`, `tls`, `net`: listeners and sockets; `wire`: the per-packet formats
//!   (ChannelData, Send and Data indications) read and written in place.
//! - [`announce`]: telling the Cinder API where the relay is.
//! - [`metrics`]: counters, as a [`Snapshot`].
//!
//! The STUN codec for control messages (integrity, fingerprint, error codes, XOR addresses)
//! is webrtc-rs's `stun` crate; docs/TURN.md says why and what else was measured.

pub mod announce;
pub mod auth;
pub mod config;
pub mod filter;
pub mod metrics;

mod allocation;
mod net;
mod server;
mod tcp;
mod tls;
mod udp;
mod wire;

pub use config::{Announce, Config, TlsListener, TlsSource};
pub use filter::{Cidr, PeerPolicy, Refusal};
pub use metrics::Snapshot;
pub use server::{LocalAddrs, Server};
pub use tls::server_config as tls_server_config;

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// A socket could not be made or bound.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or key could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
}

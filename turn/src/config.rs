//! What a server is started with: listeners, relay addresses, credentials, policy, limits.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::filter::PeerPolicy;

/// Where the TLS listener's certificate comes from.
#[derive(Clone)]
pub enum TlsSource {
    /// A PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1), read at start.
    Files {
        /// The certificate chain, leaf first.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A ready rustls configuration (embedders, tests).
    Config(Arc<rustls::ServerConfig>),
}

impl fmt::Debug for TlsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsSource::Files { cert, key } => f
                .debug_struct("Files")
                .field("cert", cert)
                .field("key", key)
                .finish(),
            TlsSource::Config(_) => f.write_str("Config(..)"),
        }
    }
}

/// The TLS (TURNS) listener: TURN over TLS over TCP, for networks that let only 443 out.
#[derive(Debug, Clone)]
pub struct TlsListener {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The certificate.
    pub source: TlsSource,
}

/// Where to announce the relay to the Cinder API.
#[derive(Debug, Clone)]
pub struct Announce {
    /// The API's relay collection: `PUT {url}/{relay_id}` every `interval`.
    pub url: String,
    /// How often to announce.
    pub interval: Duration,
    /// How far ahead each announcement's `expires_at` reaches.
    pub ttl: Duration,
}

/// A server's configuration. [`Config::new`] gives production defaults,
/// [`Config::loopback`] a server on 127.0.0.1 with OS-chosen ports.
#[derive(Clone)]
pub struct Config {
    /// The UDP listener (3478), or none.
    pub udp: Option<SocketAddr>,
    /// The TCP listener (3478), or none.
    pub tcp: Option<SocketAddr>,
    /// The TLS listener (443 or 5349), or none.
    pub tls: Option<TlsListener>,
    /// The address relay sockets bind to.
    pub relay_bind: IpAddr,
    /// The address peers reach relay sockets at and clients reach listeners at, when it
    /// differs from the bound one (a Fargate task's public IP, behind 1:1 NAT).
    pub public_ip: Option<IpAddr>,
    /// The relay ports; `0..=0` lets the OS choose.
    pub ports: RangeInclusive<u16>,
    /// The realm of the long-term credentials.
    pub realm: String,
    /// The REST credential secret, shared with the Cinder API.
    pub secret: Vec<u8>,
    /// Which peers clients may relay to.
    pub peers: PeerPolicy,
    /// Most allocations one username may hold at once (486 past it).
    pub user_quota: usize,
    /// Most allocations the server holds at once (508 past it).
    pub max_allocations: usize,
    /// Per-allocation bandwidth cap in bytes per second, both directions together
    /// (packets over it are dropped and counted); none for no cap.
    pub bandwidth: Option<u64>,
    /// Allocation lifetime when the client asks for less (RFC 8656: 600 s).
    pub default_lifetime: Duration,
    /// Longest allocation lifetime granted (3600 s).
    pub max_lifetime: Duration,
    /// Permission lifetime (RFC 8656: 300 s).
    pub permission_lifetime: Duration,
    /// Channel binding lifetime (RFC 8656: 600 s).
    pub channel_lifetime: Duration,
    /// How long a nonce is good for before 438.
    pub nonce_lifetime: Duration,
    /// SO_RCVBUF and SO_SNDBUF of every socket, in bytes (the kernel caps them at
    /// `net.core.rmem_max` and `wmem_max`).
    pub socket_buffer: usize,
    /// Bytes queued per TCP or TLS client (a slow reader) before packets to it are
    /// dropped.
    pub stream_queue: usize,
    /// How often counters are logged; none for never.
    pub stats_interval: Option<Duration>,
    /// Relay announcements to the Cinder API; none for none.
    pub announce: Option<Announce>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .field("tls", &self.tls)
            .field("relay_bind", &self.relay_bind)
            .field("public_ip", &self.public_ip)
            .field("ports", &self.ports)
            .field("realm", &self.realm)
            .field("secret", &"..")
            .field("peers", &self.peers)
            .field("user_quota", &self.user_quota)
            .field("max_allocations", &self.max_allocations)
            .field("bandwidth", &self.bandwidth)
            .field("socket_buffer", &self.socket_buffer)
            .field("announce", &self.announce)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Production defaults: UDP and TCP on `0.0.0.0:3478`, no TLS, relays on `0.0.0.0`
    /// ports 49152–65535, loopback and private peers refused, 10 allocations per user,
    /// 4 MiB socket buffers. Set `public_ip` (or `relay_bind`) before starting.
    pub fn new(realm: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Config {
            udp: Some(SocketAddr::new(any, 3478)),
            tcp: Some(SocketAddr::new(any, 3478)),
            tls: None,
            relay_bind: any,
            public_ip: None,
            ports: 49152..=65535,
            realm: realm.into(),
            secret: secret.into(),
            peers: PeerPolicy::default(),
            user_quota: 10,
            max_allocations: 10_000,
            bandwidth: None,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            permission_lifetime: Duration::from_secs(300),
            channel_lifetime: Duration::from_secs(600),
            nonce_lifetime: Duration::from_secs(600),
            socket_buffer: 4 << 20,
            stream_queue: 1 << 20,
            stats_interval: Some(Duration::from_secs(60)),
            announce: None,
        }
    }

    /// A server for tests and the dev server: UDP and TCP on `127.0.0.1` with OS-chosen
    /// ports, relays on `127.0.0.1`, loopback peers allowed.
    pub fn loopback(realm: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Config {
            udp: Some(SocketAddr::new(lo, 0)),
            tcp: Some(SocketAddr::new(lo, 0)),
            relay_bind: lo,
            ports: 0..=0,
            peers: PeerPolicy {
                allow_loopback: true,
                allow: vec![],
            },
            stats_interval: None,
            ..Config::new(realm, secret)
        }
    }
}

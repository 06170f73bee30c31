//! `cinder-turn`: the TURN relay as a long-running process. Every flag has an environment
//! variable; the shared secret comes only from `CINDER_TURN_SECRET` or `--secret-file`,
//! never from a flag (flags show in `ps`). SIGTERM or SIGINT stops it gracefully.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cinder_turn::{Announce, Cidr, Config, PeerPolicy, Server, TlsListener, TlsSource};
use clap::Parser;

/// Cinder's TURN relay (RFC 8656): UDP, TCP and TLS listeners, REST credentials.
#[derive(Debug, Parser)]
#[command(name = "cinder-turn", version)]
struct Args {
    /// UDP listener, or `off`.
    #[arg(long, env = "CINDER_TURN_UDP", default_value = "0.0.0.0:3478")]
    udp: Listen,
    /// TCP listener, or `off`.
    #[arg(long, env = "CINDER_TURN_TCP", default_value = "0.0.0.0:3478")]
    tcp: Listen,
    /// TLS (TURNS) listener, e.g. `0.0.0.0:443`; needs --tls-cert and --tls-key.
    #[arg(long, env = "CINDER_TURN_TLS")]
    tls: Option<SocketAddr>,
    /// PEM certificate chain for --tls.
    #[arg(long, env = "CINDER_TURN_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls.
    #[arg(long, env = "CINDER_TURN_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// Address relay sockets bind to.
    #[arg(long, env = "CINDER_TURN_RELAY_IP", default_value = "0.0.0.0")]
    relay_ip: IpAddr,
    /// Address clients and peers reach the relay at (behind 1:1 NAT, e.g. Fargate), or
    /// `auto` to ask http://checkip.amazonaws.com at start.
    #[arg(long, env = "CINDER_TURN_PUBLIC_IP")]
    public_ip: Option<String>,
    /// Relay port range, `LOW-HIGH`.
    #[arg(long, env = "CINDER_TURN_PORTS", default_value = "49152-65535")]
    ports: String,
    /// Realm of the credentials.
    #[arg(long, env = "CINDER_TURN_REALM", default_value = "cinder")]
    realm: String,
    /// File holding the shared secret (else the CINDER_TURN_SECRET variable).
    #[arg(long, env = "CINDER_TURN_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    /// Allow relaying to loopback peers (tests and local development only).
    #[arg(long, env = "CINDER_TURN_ALLOW_LOOPBACK")]
    allow_loopback: bool,
    /// Allow relaying to a special-purpose range, e.g. 10.0.0.0/8 (repeatable).
    #[arg(
        long = "allow-peer",
        env = "CINDER_TURN_ALLOW_PEERS",
        value_delimiter = ','
    )]
    allow_peers: Vec<Cidr>,
    /// Most allocations one username holds at once.
    #[arg(long, env = "CINDER_TURN_USER_QUOTA", default_value_t = 10)]
    user_quota: usize,
    /// Most allocations the server holds at once.
    #[arg(long, env = "CINDER_TURN_MAX_ALLOCATIONS", default_value_t = 10_000)]
    max_allocations: usize,
    /// Per-allocation bandwidth cap in bytes per second (0: none).
    #[arg(long, env = "CINDER_TURN_BANDWIDTH", default_value_t = 0)]
    bandwidth: u64,
    /// SO_RCVBUF and SO_SNDBUF of every socket, in bytes.
    #[arg(long, env = "CINDER_TURN_SOCKET_BUFFER", default_value_t = 4 << 20)]
    socket_buffer: usize,
    /// Seconds between counter logs (0: never).
    #[arg(long, env = "CINDER_TURN_STATS_INTERVAL", default_value_t = 60)]
    stats_interval: u64,
    /// The Cinder API's relay collection: `PUT {URL}/{relay_id}` every 60 s.
    #[arg(long, env = "CINDER_TURN_ANNOUNCE_URL")]
    announce_url: Option<String>,
    /// Runtime worker threads. One thread relays a packet with the least CPU (no wake-ups
    /// across threads; docs/TURN.md has the figures); more spread load over more cores.
    #[arg(long, env = "CINDER_TURN_THREADS", default_value_t = 1)]
    threads: usize,
    /// Log format.
    #[arg(long, env = "CINDER_TURN_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// A listener address or `off`.
#[derive(Debug, Clone, Copy)]
struct Listen(Option<SocketAddr>);

impl std::str::FromStr for Listen {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "off" {
            return Ok(Listen(None));
        }
        s.parse().map(|a| Listen(Some(a)))
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn parse_ports(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let bad = || format!("ports: want LOW-HIGH, got {s:?}");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

fn secret(args: &Args) -> Result<Vec<u8>, String> {
    let secret = match &args.secret_file {
        Some(path) => {
            std::fs::read(path).map_err(|e| format!("secret file {}: {e}", path.display()))?
        }
        None => std::env::var("CINDER_TURN_SECRET")
            .map_err(|_| "set CINDER_TURN_SECRET or --secret-file".to_string())?
            .into_bytes(),
    };
    // A file written with `echo` ends in a newline that is not part of the secret.
    let secret = secret.trim_ascii_end().to_vec();
    if secret.is_empty() {
        return Err("the shared secret is empty".into());
    }
    Ok(secret)
}

/// The TLS certificate and key: PEM files (`--tls-cert`, `--tls-key`), or PEM text in
/// `CINDER_TURN_TLS_CERT_PEM` and `CINDER_TURN_TLS_KEY_PEM`, which is how ECS hands a
/// container a Secrets Manager secret (the image has no shell to write files with). The
/// key, like the shared secret, is never taken as a flag.
fn tls_source(args: &Args) -> Result<TlsSource, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(TlsSource::Files {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let (Ok(cert), Ok(key)) = (
        std::env::var("CINDER_TURN_TLS_CERT_PEM"),
        std::env::var("CINDER_TURN_TLS_KEY_PEM"),
    ) else {
        return Err(
            "--tls needs --tls-cert and --tls-key, or CINDER_TURN_TLS_CERT_PEM and \
                    CINDER_TURN_TLS_KEY_PEM"
                .into(),
        );
    };
    let certs = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CINDER_TURN_TLS_CERT_PEM: {e}"))?;
    if certs.is_empty() {
        return Err("CINDER_TURN_TLS_CERT_PEM holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
        .map_err(|e| format!("CINDER_TURN_TLS_KEY_PEM: {e}"))?;
    let config = cinder_turn::tls_server_config(certs, key).map_err(|e| e.to_string())?;
    Ok(TlsSource::Config(std::sync::Arc::new(config)))
}

async fn public_ip(arg: Option<&str>) -> Result<Option<IpAddr>, String> {
    match arg {
        None => Ok(None),
        Some("auto") => {
            let text = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?
                .get("http://checkip.amazonaws.com")
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map_err(|e| format!("public IP lookup: {e}"))?
                .text()
                .await
                .map_err(|e| format!("public IP lookup: {e}"))?;
            let ip = text
                .trim()
                .parse()
                .map_err(|_| format!("public IP lookup answered {:?}", text.trim()))?;
            tracing::info!(public_ip = %ip, "public IP looked up");
            Ok(Some(ip))
        }
        Some(ip) => ip
            .parse()
            .map(Some)
            .map_err(|_| format!("public IP: not an address: {ip:?}")),
    }
}

async fn config(args: &Args) -> Result<Config, String> {
    let mut config = Config::new(args.realm.clone(), secret(args)?);
    config.udp = args.udp.0;
    config.tcp = args.tcp.0;
    config.tls = match args.tls {
        None => None,
        Some(addr) => Some(TlsListener {
            addr,
            source: tls_source(args)?,
        }),
    };
    config.relay_bind = args.relay_ip;
    config.public_ip = public_ip(args.public_ip.as_deref()).await?;
    config.ports = parse_ports(&args.ports)?;
    config.peers = PeerPolicy {
        allow_loopback: args.allow_loopback,
        allow: args.allow_peers.clone(),
    };
    config.user_quota = args.user_quota;
    config.max_allocations = args.max_allocations;
    config.bandwidth = (args.bandwidth > 0).then_some(args.bandwidth);
    config.socket_buffer = args.socket_buffer;
    config.stats_interval =
        (args.stats_interval > 0).then(|| Duration::from_secs(args.stats_interval));
    config.announce = args.announce_url.clone().map(|url| Announce {
        url,
        interval: Duration::from_secs(60),
        ttl: Duration::from_secs(180),
    });
    Ok(config)
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = int.recv() => tracing::info!("SIGINT: stopping"),
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logs(args.log_format);
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    match runtime {
        Ok(runtime) => runtime.block_on(serve(args)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the runtime");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: Args) -> ExitCode {
    let config = match config(&args).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let server = match Server::start(config).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    stopped().await;
    server.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_and_refuse_nonsense() {
        assert_eq!(parse_ports("49152-65535"), Ok(49152..=65535));
        assert_eq!(parse_ports("5000-5000"), Ok(5000..=5000));
        for bad in ["0-10", "10-5", "x-10", "10", "10-70000"] {
            assert!(parse_ports(bad).is_err(), "{bad}");
        }
    }
}

//! `cinder-dev`: runs every Cinder function locally on the embedded store.

use std::path::PathBuf;

use cinder_server::Clock;
use clap::Parser;

/// Runs every Cinder function on one local port, over SQLite in a data folder that
/// survives restarts. No AWS, no Docker.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "CINDER_DEV_ADDR", default_value = "127.0.0.1:8787")]
    addr: String,
    /// Folder for the database; created on first run.
    #[arg(long, env = "CINDER_DATA_DIR", default_value = ".cinder/dev")]
    data_dir: PathBuf,
    /// The largest media object (attachment or avatar), in bytes of ciphertext.
    #[arg(long, env = "CINDER_MAX_MEDIA_BYTES", default_value_t = cinder_proto::media::limits::DEFAULT_MAX_MEDIA_BYTES)]
    max_media_bytes: u64,
    /// Read-only database connections beside the one that writes, so reads do not queue
    /// behind writes; 0 runs reads on the writer too.
    #[arg(long, env = "CINDER_DEV_READERS", default_value_t = cinder_sqlite::DEFAULT_READERS)]
    readers: usize,
    /// Where the TURN relay for calls listens (UDP and TCP); port 0 picks free ones.
    /// Unset: 127.0.0.1:3478, or free ports if something else holds 3478 (a coturn
    /// service, say); credentials name whichever it got.
    #[arg(long, env = "CINDER_DEV_TURN_ADDR")]
    turn_addr: Option<std::net::SocketAddr>,
    /// Most HTTP connections open at once; past it new ones are closed at once.
    #[arg(long, env = "CINDER_DEV_MAX_CONNECTIONS", default_value_t = cinder_dev::serve::Limits::default().max_connections)]
    max_connections: usize,
    /// Seconds a connection may take to send a request's headers before it is closed.
    #[arg(long, env = "CINDER_DEV_HEADER_TIMEOUT", default_value_t = cinder_dev::serve::Limits::default().header_timeout.as_secs())]
    header_timeout: u64,
    /// Seconds a request may take, body and answer included, before `408 request_timeout`.
    #[arg(long, env = "CINDER_DEV_REQUEST_TIMEOUT", default_value_t = cinder_dev::serve::Limits::default().request_timeout.as_secs())]
    request_timeout: u64,
    /// Rate limits: overrides of the defaults, comma-separated `name=N/PERIOD` (or
    /// `name=off`); see docs/API.md, "Limits".
    #[arg(long, env = "CINDER_LIMITS", default_value = "")]
    limits: String,
    /// Runs no TURN relay: credentials then name none, and local calls connect directly.
    #[arg(long, env = "CINDER_DEV_NO_TURN")]
    no_turn: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let rate_limits =
        cinder_server::limits::Limits::parse(&args.limits).map_err(|e| format!("--limits: {e}"))?;
    let store = cinder_dev::open_store_with_readers(&args.data_dir, args.readers)?;
    let secrets = std::sync::Arc::new(cinder_dev::master_secret(&args.data_dir)?);
    let listener = cinder_dev::bind(&args.addr).await?;
    let addr = listener.local_addr()?;
    let clock = Clock::system();
    let objects =
        cinder_dev::media_store(&args.data_dir, &format!("http://{addr}"), clock.clone())?;
    // Media of burnt and deleted messages goes within a few seconds, as on AWS.
    cinder_dev::media::spawn_sweeper(
        store.clone(),
        objects.clone(),
        std::time::Duration::from_secs(5),
        // Like the bucket's lifecycle rule: a day past the longest burn time.
        cinder_server::shards::DEFAULT_MAX_BURN_SECS + 24 * 3600,
    );
    let calls = cinder_dev::calls::Calls::unrelayed();
    let relay = if args.no_turn {
        None
    } else {
        let wanted = args
            .turn_addr
            .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 3478)));
        let started = match cinder_dev::calls::start_relay(&calls, wanted, clock.clone()).await {
            Err(e) if args.turn_addr.is_none() => {
                eprintln!("cinder-dev: {wanted} is taken ({e}); the TURN relay takes free ports");
                let free = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                cinder_dev::calls::start_relay(&calls, free, clock.clone()).await
            }
            other => other,
        };
        let relay = started.map_err(|e| {
            format!(
                "cannot start the TURN relay on {wanted}: {e} (pick another with --turn-addr, \
                 or run none with --no-turn)"
            )
        })?;
        Some(relay)
    };
    println!(
        "cinder-dev: serving http://{addr} (data in {})",
        args.data_dir.display()
    );
    if let Some(relay) = &relay {
        println!(
            "cinder-dev: TURN relay for calls on {} (credentials from POST /calls/{{room}}/{{channel}}/turn)",
            relay.urls().join(", ")
        );
    }
    println!("cinder-dev: live socket on ws://{addr}/live (`cinder read … --follow`)");
    println!("cinder-dev: try `cinder --server http://{addr} register NAME`; Ctrl-C stops");
    let shutdown = async {
        // If the signal cannot be awaited, keep serving until the process is killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let limits = cinder_dev::serve::Limits {
        max_connections: args.max_connections.max(1),
        header_timeout: std::time::Duration::from_secs(args.header_timeout.max(1)),
        request_timeout: std::time::Duration::from_secs(args.request_timeout.max(1)),
        ..Default::default()
    };
    cinder_dev::serve_within(
        listener,
        cinder_dev::app_with_limits(store, secrets, clock, objects, calls, rate_limits),
        limits,
        shutdown,
    )
    .await?;
    if let Some(relay) = relay {
        relay.shutdown().await;
    }
    Ok(())
}

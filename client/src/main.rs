//! `cinder`: the reference client's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use cinder_client::api::DEFAULT_SERVER;
use cinder_client::{Client, ClientError, Identity, Profile};
use cinder_proto::{KeyBundle, Timestamp, UserId};
use clap::{Parser, Subcommand};

/// Cinder: end-to-end encrypted group chat. This is the reference client.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// The Cinder server's base URL.
    #[arg(long, global = true, env = "CINDER_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// The profile file holding this device's identity (created mode 0600).
    #[arg(long, global = true, env = "CINDER_PROFILE")]
    profile: Option<PathBuf>,
    /// Print machine-readable JSON instead of prose.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The public key directory.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create this profile's identity and publish its public keys.
    Publish,
    /// Show a user's verified keys (yours if no id is given), pinning them.
    Get {
        /// The user's id (32 hex characters).
        user_id: Option<UserId>,
    },
    /// Replace your keys with fresh ones, signed by the current ones.
    Rotate,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let path = cli.profile.clone().unwrap_or_else(|| {
        let var = |name| std::env::var_os(name).map(PathBuf::from);
        Profile::default_path(var("CINDER_HOME"), var("XDG_CONFIG_HOME"), var("HOME"))
    });
    let mut profile = Profile::load(&path)?;
    let client = Client::new(&cli.server);
    match cli.command {
        Command::Keys(KeysCommand::Publish) => {
            let me = match &profile.identity {
                // A profile whose first publish failed half-way publishes the same keys again.
                Some(me)
                    if me.bundle.version == 1 && is_unknown(client.key(me.user_id()).await) =>
                {
                    me.clone()
                }
                Some(me) => {
                    return Err(ClientError::Profile {
                        path: path.display().to_string(),
                        reason: format!(
                            "already holds published user {}; use `cinder keys rotate` for new keys",
                            me.user_id()
                        ),
                    });
                }
                None => {
                    let me = Identity::generate(Timestamp::now())?;
                    // Save before publishing: a published key whose secret was lost is worse
                    // than a saved key that still has to be published.
                    profile.identity = Some(me.clone());
                    profile.pins.insert(me.user_id(), me.bundle.clone());
                    profile.save(&path)?;
                    me
                }
            };
            let bundle = client.publish(&me.bundle).await?;
            show(&cli, "Published your keys.", &bundle, &path);
        }
        Command::Keys(KeysCommand::Get { user_id }) => {
            let user = match user_id {
                Some(u) => u,
                None => profile.identity()?.user_id(),
            };
            let bundle = client.verified_keys(user, profile.pins.get(&user)).await?;
            profile.pins.insert(user, bundle.clone());
            profile.save(&path)?;
            show(&cli, "Verified keys:", &bundle, &path);
        }
        Command::Keys(KeysCommand::Rotate) => {
            let current = profile.identity()?.clone();
            let next = current.rotated(Timestamp::now())?;
            let bundle = client.rotate(&next.bundle).await?;
            profile.pins.insert(next.user_id(), next.bundle.clone());
            profile.identity = Some(next);
            profile.save(&path)?;
            show(&cli, "Rotated your keys.", &bundle, &path);
        }
    }
    Ok(())
}

fn is_unknown<T>(answer: Result<T, ClientError>) -> bool {
    matches!(answer, Err(e) if e.code() == Some(cinder_proto::ErrorCode::UnknownUser))
}

fn show(cli: &Cli, headline: &str, bundle: &KeyBundle, profile: &std::path::Path) {
    if cli.json {
        // Serialising a bundle cannot fail: every field is a string or a number.
        println!(
            "{}",
            serde_json::to_string_pretty(bundle).unwrap_or_default()
        );
        return;
    }
    println!("{headline}");
    println!("  user id:      {}", bundle.user_id);
    println!("  version:      {}", bundle.version);
    println!("  signing key:  {}", bundle.sign_key);
    println!("  hpke key:     {}", bundle.hpke_key);
    println!("  server:       {}", cli.server);
    println!("  profile:      {}", profile.display());
}

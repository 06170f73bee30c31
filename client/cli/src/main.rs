//! `cinder`: the reference client's command line.

/// `println!` for a Unix citizen: when standard output is closed (`cinder read … | head`),
/// stop quietly with success, as `cat` does, instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*).and_then(|()| stdout.flush()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod progress;
mod rooms;

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cinder_client::account::{LoggedIn, UserProfile};
use cinder_client::api::DEFAULT_SERVER;
use cinder_client::{Client, ClientError, Identity, Profile};
use cinder_proto::accounts::{KsfParams, Login};
use cinder_proto::{ErrorCode, KeyBundle, Timestamp, UserId};
use clap::{Parser, Subcommand};
use zeroize::Zeroizing;

/// Cinder: end-to-end encrypted group chat. This is the reference client.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// The Cinder server's base URL.
    #[arg(long, global = true, env = "CINDER_SERVER", default_value = DEFAULT_SERVER)]
    server: String,
    /// The live socket's URL (in AWS, the WebSocket API's `wss://…` URL); by default the
    /// server's own `ws://…/live`, as the dev server serves it.
    #[arg(long, global = true, env = "CINDER_LIVE_URL")]
    live_url: Option<String>,
    /// The profile file holding this device's identity and session (created mode 0600).
    #[arg(long, global = true, env = "CINDER_PROFILE")]
    profile: Option<PathBuf>,
    /// Print machine-readable JSON instead of prose.
    #[arg(long, global = true)]
    json: bool,
    /// Read passwords from standard input, one per line, instead of prompting.
    #[arg(long, global = true)]
    password_stdin: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an account: a fresh identity, sealed in an enclave only your password opens.
    Register {
        /// Login name (3-64 of a-z 0-9 . _ -).
        login: Login,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Log in and open your enclave on this device.
    Login {
        /// Login name.
        login: Login,
    },
    /// Forget the session and keys on this device (the account stays on the server).
    Logout {
        /// Also delete a stand-alone identity (from `cinder keys publish`), whose private
        /// keys exist only in this profile.
        #[arg(long)]
        yes: bool,
    },
    /// Show who this device is logged in as.
    Whoami,
    /// Your profile, kept in your enclave.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Change your password (re-seals your enclave; other sessions end).
    Passwd,
    /// Your account.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The public key directory.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Rooms you belong to.
    #[command(subcommand)]
    Room(rooms::RoomCommand),
    /// A room's channels.
    #[command(subcommand)]
    Channel(rooms::ChannelCommand),
    /// Invite a user to a room (admins).
    Invite {
        /// The room (name or id).
        room: String,
        /// The user's id.
        user_id: UserId,
        /// The name to list them under.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show invitations waiting in your inbox.
    Invites,
    /// Accept every waiting invitation (and new keys after a removal).
    Accept,
    /// Send a message.
    Send {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// The text (may be empty when files are attached).
        #[arg(default_value = "")]
        text: String,
        /// Attach a file (repeat for several); it is encrypted here and burns with the message.
        #[arg(long = "file", value_name = "PATH")]
        files: Vec<PathBuf>,
        /// Seconds until it burns (default: the channel's burn time).
        #[arg(long)]
        burn: Option<u64>,
    },
    /// Replace the text of one of your messages; readers show the newest, marked edited.
    Edit {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// Your message's number.
        number: u64,
        /// Its new text.
        text: String,
        /// Seconds until the edit burns (default: the channel's burn time); after that,
        /// readers show the text before it.
        #[arg(long)]
        burn: Option<u64>,
    },
    /// Reply to a message.
    Reply {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// The number of the message answered.
        number: u64,
        /// The text.
        text: String,
        /// Seconds until it burns (default: the channel's burn time).
        #[arg(long)]
        burn: Option<u64>,
    },
    /// React to a message with an emoji (or take your reaction back).
    React {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// The number of the message reacted to.
        number: u64,
        /// The emoji (at most 64 bytes).
        emoji: String,
        /// Take back your reaction with this emoji.
        #[arg(long)]
        remove: bool,
        /// Seconds until it burns (default: the channel's burn time).
        #[arg(long)]
        burn: Option<u64>,
    },
    /// Download and decrypt a message's attachment.
    Download {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// The message's number.
        number: u64,
        /// Which attachment, from 1 (default: the first).
        #[arg(long, default_value_t = 1)]
        index: usize,
        /// Where to write it (default: its name, in the current folder; `-` for stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Read a channel's messages.
    Read {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// Only messages after this number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep showing new messages as they come, told by the live socket (polling if it
        /// cannot be reached; Ctrl-C stops).
        #[arg(long)]
        follow: bool,
    },
    /// Join the call in a voice channel: a WebRTC connection to everyone else in it
    /// (through the server's TURN relays if need be), sending a tone or an Ogg Opus file.
    /// Ctrl-C (or --duration) leaves.
    Call {
        /// The room (name or id).
        room: String,
        /// The voice channel (name or id).
        channel: String,
        /// Relay everything through TURN: the other participants never learn your address.
        #[arg(long)]
        relay: bool,
        /// An Ogg Opus file to send, looped (default: a short tone).
        #[arg(long, value_name = "FILE.ogg")]
        audio: Option<PathBuf>,
        /// Leave after this many seconds.
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
        /// The local UDP address to bind.
        #[arg(
            long,
            env = "CINDER_CALL_BIND",
            default_value = "0.0.0.0:0",
            hide = true
        )]
        bind: String,
        /// TURN credentials to use instead of asking the server (JSON, as the server
        /// answers them): for a relay of your own.
        #[arg(long, env = "CINDER_TURN_CREDENTIALS", hide = true)]
        turn_credentials: Option<String>,
    },
    /// List a room's members.
    Members {
        /// The room (name or id).
        room: String,
    },
    /// Save a room member's avatar (opened and checked) to a file.
    Avatar {
        /// The room (name or id).
        room: String,
        /// The member's user id.
        user_id: UserId,
        /// Where to write it (default: `<user id>.avatar`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Grant, revoke or hand over admin in a room.
    #[command(subcommand)]
    Admin(rooms::AdminCommand),
    /// Remove a member from a room and rotate its keys (admins).
    Kick {
        /// The room (name or id).
        room: String,
        /// The member's user id.
        user_id: UserId,
    },
    /// Leave a room: this device forgets its keys, and the room is re-keyed for those who
    /// stay (at once if you are an admin, else by an admin's next command).
    Leave {
        /// The room (name or id).
        room: String,
    },
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Set your display name and status.
    Set {
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Status line.
        #[arg(long)]
        status: Option<String>,
        /// A picture (at most 64 KiB): kept in your enclave, and sealed for each of your
        /// rooms, where members see it.
        #[arg(long, value_name = "PATH")]
        avatar: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Delete your account and enclave from the server (asks for your password again).
    /// Your public keys stay published.
    Delete {
        /// Confirm; nothing is deleted without it.
        #[arg(long)]
        yes: bool,
    },
    /// List your account's open sessions (each device's login).
    Sessions,
    /// End one session by its id, or every session with --all (this one too).
    End {
        /// The session's id, as `cinder account sessions` lists it.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        session_id: Option<String>,
        /// End every session, on every device.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a stand-alone identity (no account) and publish its public keys.
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

/// What a command works with: where the profile lives, the profile, the server.
struct Ctx {
    cli: Cli,
    path: PathBuf,
    profile: Profile,
    client: Client,
}

impl Ctx {
    fn save(&self) -> Result<(), ClientError> {
        self.profile.save(&self.path)
    }

    fn session(&mut self) -> Result<&mut LoggedIn, ClientError> {
        match &mut self.profile.session {
            Some(s) if s.expires_at > Timestamp::now() => Ok(s),
            _ => Err(ClientError::NotLoggedIn),
        }
    }

    /// Reads one password: from stdin with `--password-stdin`, else from the terminal.
    fn password(&self, prompt: &str) -> Result<Zeroizing<String>, ClientError> {
        let read = if self.cli.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map(|_| line.trim_end_matches(['\r', '\n']).to_owned())
        } else {
            rpassword::prompt_password(prompt)
        };
        let password = Zeroizing::new(
            read.map_err(|e| ClientError::Input(format!("cannot read the password: {e}")))?,
        );
        if password.is_empty() {
            return Err(ClientError::Input("the password is empty".into()));
        }
        Ok(password)
    }

    /// A new password, typed twice when prompting.
    fn new_password(&self) -> Result<Zeroizing<String>, ClientError> {
        let first = self.password("New password: ")?;
        if !self.cli.password_stdin {
            let again = self.password("Repeat it: ")?;
            if *again != *first {
                return Err(ClientError::Input("the two passwords differ".into()));
            }
        }
        if first.len() < 8 {
            return Err(ClientError::Input(
                "use a password of at least 8 characters".into(),
            ));
        }
        Ok(first)
    }
}

async fn run(cli: Cli) -> Result<(), ClientError> {
    let path = cli.profile.clone().unwrap_or_else(|| {
        let var = |name| std::env::var_os(name).map(PathBuf::from);
        Profile::default_path(var("CINDER_HOME"), var("XDG_CONFIG_HOME"), var("HOME"))
    });
    let profile = Profile::load(&path)?;
    let client = Client::new(&cli.server);
    let mut ctx = Ctx {
        cli,
        path,
        profile,
        client,
    };
    let command = std::mem::replace(&mut ctx.cli.command, Command::Whoami);
    match command {
        Command::Register { login, name } => register(&mut ctx, login, name).await,
        Command::Login { login } => login_cmd(&mut ctx, login).await,
        Command::Logout { yes } => logout(&mut ctx, yes).await,
        Command::Whoami => whoami(&mut ctx),
        Command::Profile(ProfileCommand::Set {
            name,
            status,
            avatar,
        }) => profile_set(&mut ctx, name, status, avatar).await,
        Command::Passwd => passwd(&mut ctx).await,
        Command::Account(AccountCommand::Delete { yes }) => delete_account(&mut ctx, yes).await,
        Command::Account(AccountCommand::Sessions) => list_sessions(&mut ctx).await,
        Command::Account(AccountCommand::End { session_id, all }) => {
            end_sessions(&mut ctx, session_id, all).await
        }
        Command::Keys(k) => keys(&mut ctx, k).await,
        rooms => rooms_cmd(&mut ctx, rooms).await,
    }
}

async fn register(ctx: &mut Ctx, login: Login, name: Option<String>) -> Result<(), ClientError> {
    let password = ctx.new_password()?;
    let profile = UserProfile {
        name: name.unwrap_or_else(|| login.to_string()),
        ..UserProfile::default()
    };
    let spinner = Spinner::start("Stretching your password with Argon2id (64 MiB)");
    let session = ctx
        .client
        .register(&login, password.as_bytes(), profile, KsfParams::FLOOR)
        .await;
    drop(spinner);
    let session = session?;
    let id = session.contents.identity.user_id();
    ctx.profile.remember(&ctx.cli.server, session);
    ctx.save()?;
    if ctx.cli.json {
        out!("{}", serde_json::json!({ "login": login, "user_id": id }));
    } else {
        out!("Registered {login}. Your user id is {id}; share it so others can invite you.");
    }
    Ok(())
}

async fn login_cmd(ctx: &mut Ctx, login: Login) -> Result<(), ClientError> {
    let password = ctx.password("Password: ")?;
    let memory = ctx
        .profile
        .accounts
        .get(&Profile::account_key(&ctx.cli.server, &login))
        .cloned()
        .unwrap_or_default();
    let spinner = Spinner::start("Stretching your password with Argon2id");
    let session = ctx
        .client
        .login(
            &login,
            password.as_bytes(),
            memory.enclave_version,
            memory.server_key.as_ref(),
        )
        .await;
    drop(spinner);
    let session = session?;
    let id = session.contents.identity.user_id();
    let name = session.contents.profile.name.clone();
    ctx.profile.remember(&ctx.cli.server, session);
    ctx.save()?;
    if ctx.cli.json {
        out!("{}", serde_json::json!({ "login": login, "user_id": id }));
    } else {
        out!("Logged in as {login} ({name}), user id {id}.");
    }
    Ok(())
}

async fn logout(ctx: &mut Ctx, yes: bool) -> Result<(), ClientError> {
    // An account's keys live on in its enclave; a stand-alone identity's only copy is here.
    if let Some(me) = &ctx.profile.identity
        && !yes
    {
        return Err(ClientError::Input(format!(
            "this profile holds the only copy of stand-alone user {}'s private keys; logging out deletes them for good; run again with --yes to confirm",
            me.user_id()
        )));
    }
    // End the session on the server too, so a copy of its token stops working; a device
    // that cannot reach the server still forgets it (it lapses within the hour).
    if let Some(s) = ctx
        .profile
        .session
        .as_ref()
        .filter(|s| !s.session_id.is_empty())
        && s.expires_at > Timestamp::now()
        && let Err(e) = ctx.client.end_session(s, &s.session_id).await
        && e.code() != Some(cinder_proto::ErrorCode::Unauthenticated)
    {
        eprintln!(
            "warning: the server did not end the session ({e}); it lapses by itself within the hour"
        );
    }
    let was = ctx.profile.session.take().map(|s| s.login);
    ctx.profile.identity = None;
    ctx.save()?;
    match was {
        Some(login) => out!("Logged out {login}; this device no longer holds its keys."),
        None => out!("Not logged in."),
    }
    Ok(())
}

fn whoami(ctx: &mut Ctx) -> Result<(), ClientError> {
    let json = ctx.cli.json;
    let s = ctx.session()?;
    let id = s.contents.identity.user_id();
    if json {
        out!(
            "{}",
            serde_json::json!({
                "login": s.login, "user_id": id, "name": s.contents.profile.name,
                "status": s.contents.profile.status, "session_expires_at": s.expires_at,
                "enclave_version": s.contents.version,
            })
        );
    } else {
        out!("{} ({})", s.login, s.contents.profile.name);
        out!("  user id:   {id}");
        if !s.contents.profile.status.is_empty() {
            out!("  status:    {}", s.contents.profile.status);
        }
        out!(
            "  session:   ends in {} minutes",
            s.expires_at.0.saturating_sub(Timestamp::now().0) / 60
        );
    }
    Ok(())
}

async fn profile_set(
    ctx: &mut Ctx,
    name: Option<String>,
    status: Option<String>,
    avatar: Option<PathBuf>,
) -> Result<(), ClientError> {
    if name.is_none() && status.is_none() && avatar.is_none() {
        return Err(ClientError::Input(
            "give --name, --status, --avatar or several".into(),
        ));
    }
    let picture = match &avatar {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|source| ClientError::File {
                path: path.display().to_string(),
                source,
            })?;
            if bytes.is_empty() || bytes.len() > cinder_client::rooms::avatars::MAX_AVATAR_BYTES {
                return Err(ClientError::Input(format!(
                    "an avatar holds 1 to {} bytes",
                    cinder_client::rooms::avatars::MAX_AVATAR_BYTES
                )));
            }
            Some(bytes)
        }
        None => None,
    };
    let client = Client::new(&ctx.cli.server);
    let session = ctx.session()?;
    let apply = |s: &mut LoggedIn| {
        if let Some(n) = &name {
            s.contents.profile.name = n.clone();
        }
        if let Some(st) = &status {
            s.contents.profile.status = st.clone();
        }
        if let Some(p) = &picture {
            s.contents.profile.avatar = Some(cinder_proto::Blob(p.clone()));
        }
    };
    apply(session);
    if let Err(e) = client.save_enclave(session).await {
        if e.code() != Some(ErrorCode::VersionConflict) {
            return Err(e);
        }
        // Another device saved first: take its enclave and apply the change on top.
        client.refresh_enclave(session).await?;
        apply(session);
        client.save_enclave(session).await?;
    }
    if let Some(picture) = &picture {
        // Each room gets its own sealed copy; the enclave keeps the rooms' new states.
        let Profile { session, pins, .. } = &mut ctx.profile;
        let session = session.as_mut().ok_or(ClientError::NotLoggedIn)?;
        let me = session.contents.identity.clone();
        let ids: Vec<_> = session.contents.memberships.keys().copied().collect();
        for id in ids {
            let Some(m) = session.contents.memberships.get_mut(&id) else {
                continue;
            };
            match client.set_avatar(&me, m, picture, pins).await {
                Ok(true) => out!("Avatar shown in {}.", m.spine().name),
                Ok(false) => out!(
                    "Avatar sent to the admins of {}; it shows once one of them signs it in.",
                    m.spine().name
                ),
                Err(e) => eprintln!("warning: avatar not set in room {id}: {e}"),
            }
        }
        client.save_enclave(session).await?;
    }
    let session = ctx.session()?.clone();
    ctx.profile.remember(&ctx.cli.server, session);
    ctx.save()?;
    out!("Profile saved.");
    Ok(())
}

async fn passwd(ctx: &mut Ctx) -> Result<(), ClientError> {
    ctx.session()?;
    let current = ctx.password("Current password: ")?;
    let new = ctx.new_password()?;
    let client = Client::new(&ctx.cli.server);
    let server = ctx.cli.server.clone();
    let session = ctx.session()?;
    let spinner = Spinner::start("Stretching your new password with Argon2id");
    // Keep the account's Argon2id strength; never fall back to a weaker default.
    let ksf = session.ksf;
    let changed = client
        .change_password(session, current.as_bytes(), new.as_bytes(), ksf)
        .await;
    drop(spinner);
    changed?;
    // The change ended every session, this one too: open a fresh one.
    let (login, version) = (session.login.clone(), session.contents.version);
    let server_key = session.server_key.clone();
    let spinner = Spinner::start("Logging in with the new password");
    let fresh = client
        .login(&login, new.as_bytes(), version, Some(&server_key))
        .await;
    drop(spinner);
    ctx.profile.remember(&server, fresh?);
    ctx.save()?;
    out!("Password changed. Sessions on other devices have ended.");
    Ok(())
}

async fn delete_account(ctx: &mut Ctx, yes: bool) -> Result<(), ClientError> {
    let session = ctx.session()?.clone();
    if !yes {
        return Err(ClientError::Input(format!(
            "this deletes {} and everything in its enclave; run again with --yes to confirm",
            session.login
        )));
    }
    let password = ctx.password("Password: ")?;
    let spinner = Spinner::start("Proving your password again");
    let deleted = ctx
        .client
        .delete_account(&session, password.as_bytes())
        .await;
    drop(spinner);
    deleted?;
    ctx.profile.session = None;
    ctx.profile
        .accounts
        .remove(&Profile::account_key(&ctx.cli.server, &session.login));
    ctx.save()?;
    out!("Deleted account {}.", session.login);
    Ok(())
}

async fn list_sessions(ctx: &mut Ctx) -> Result<(), ClientError> {
    let session = ctx.session()?.clone();
    let sessions = ctx.client.sessions(&session).await?;
    if ctx.cli.json {
        out!(
            "{}",
            serde_json::to_string(&sessions).map_err(|e| ClientError::Input(e.to_string()))?
        );
        return Ok(());
    }
    for s in &sessions {
        out!(
            "{}  since {}  until {}{}",
            s.id,
            s.created_at,
            s.expires_at,
            if s.current { "  (this one)" } else { "" }
        );
    }
    Ok(())
}

async fn end_sessions(
    ctx: &mut Ctx,
    session_id: Option<String>,
    all: bool,
) -> Result<(), ClientError> {
    let session = ctx.session()?.clone();
    let ended_here = match (all, session_id) {
        (true, _) => {
            ctx.client.end_all_sessions(&session).await?;
            out!("Ended every session, this one too.");
            true
        }
        (false, Some(id)) => {
            ctx.client.end_session(&session, &id).await?;
            out!("Ended session {id}.");
            id == session.session_id
        }
        (false, None) => return Err(ClientError::Input("name a session or pass --all".into())),
    };
    if ended_here {
        ctx.profile.session = None;
        ctx.save()?;
    }
    Ok(())
}

async fn keys(ctx: &mut Ctx, command: KeysCommand) -> Result<(), ClientError> {
    match command {
        KeysCommand::Publish => {
            let me = match (&ctx.profile.session, &ctx.profile.identity) {
                (Some(s), _) => {
                    return Err(ClientError::Input(format!(
                        "logged in as {}, whose keys registration published; use `cinder keys rotate` for new keys",
                        s.login
                    )));
                }
                // A profile whose first publish failed half-way publishes the same keys again.
                (None, Some(me))
                    if me.bundle.version == 1 && is_unknown(ctx.client.key(me.user_id()).await) =>
                {
                    me.clone()
                }
                (None, Some(me)) => {
                    return Err(ClientError::Input(format!(
                        "this profile already holds published user {}; use `cinder keys rotate` for new keys",
                        me.user_id()
                    )));
                }
                (None, None) => {
                    let me = Identity::generate(Timestamp::now())?;
                    // Save before publishing: a published key whose secret was lost is worse
                    // than a saved key that still has to be published.
                    ctx.profile.identity = Some(me.clone());
                    ctx.profile.pins.insert(me.user_id(), me.bundle.clone());
                    ctx.save()?;
                    me
                }
            };
            let bundle = ctx.client.publish(&me.bundle).await?;
            show(ctx, "Published your keys.", &bundle);
        }
        KeysCommand::Get { user_id } => {
            let user = match user_id {
                Some(u) => u,
                None => ctx.profile.identity()?.user_id(),
            };
            let bundle = ctx
                .client
                .verified_keys(user, ctx.profile.pins.get(&user))
                .await?;
            ctx.profile.pins.insert(user, bundle.clone());
            ctx.save()?;
            show(ctx, "Verified keys:", &bundle);
        }
        KeysCommand::Rotate => {
            let next = ctx.profile.identity()?.rotated(Timestamp::now())?;
            // In an account, the enclave must hold the new keys before the directory does,
            // or a crash in between would leave the account with keys it cannot use.
            if ctx.profile.session.is_some() {
                let client = Client::new(&ctx.cli.server);
                let session = ctx.session()?;
                session.contents.identity = next.clone();
                client.save_enclave(session).await?;
            }
            let bundle = ctx.client.rotate(&next.bundle).await?;
            ctx.profile.pins.insert(next.user_id(), next.bundle.clone());
            if ctx.profile.session.is_none() {
                ctx.profile.identity = Some(next);
            }
            ctx.save()?;
            show(ctx, "Rotated your keys.", &bundle);
        }
    }
    Ok(())
}

async fn rooms_cmd(ctx: &mut Ctx, command: Command) -> Result<(), ClientError> {
    ctx.session()?;
    let json = ctx.cli.json;
    let mut client = Client::new(&ctx.cli.server);
    if let Some(url) = &ctx.cli.live_url {
        client = client.with_live_url(url);
    }
    let client = Arc::new(client);
    let Profile { session, pins, .. } = &mut ctx.profile;
    let session = session.as_mut().ok_or(ClientError::NotLoggedIn)?;
    // The enclave is the source of truth for memberships: another device (or a `read
    // --follow` that took new keys) may have changed it since this profile cached it.
    client.refresh_enclave(session).await.map_err(|e| {
        if e.code() == Some(ErrorCode::Unauthenticated) {
            ClientError::NotLoggedIn
        } else {
            e
        }
    })?;
    let heads = versions(&session.contents.memberships);
    let mut rc = rooms::RoomCtx {
        client: &client,
        session,
        pins,
        json,
    };
    // Keys sent for rooms already joined (after a removal, for a new channel, the admin
    // key) are taken before any room command; invitations wait for `cinder accept`.
    if !matches!(command, Command::Invites | Command::Accept) {
        let me = rc.session.contents.identity.clone();
        let took = client
            .take_keys(&me, &mut rc.session.contents.memberships, rc.pins)
            .await?;
        if !took.is_empty() {
            rc.save().await?;
        }
        // As an admin, sign in the avatars members asked to show.
        let asked: Vec<_> = rc
            .session
            .contents
            .memberships
            .iter()
            .filter(|(_, m)| m.has_avatar_requests())
            .map(|(id, _)| *id)
            .collect();
        for id in asked {
            if let Some(m) = rc.session.contents.memberships.get_mut(&id)
                && let Err(e) = client.apply_avatar_requests(&me, m, rc.pins).await
            {
                eprintln!("warning: members' avatars not signed in yet: {e}");
            }
        }
    }
    let result = match command {
        Command::Room(c) => rooms::room(&mut rc, c).await,
        Command::Channel(c) => rooms::channel(&mut rc, c).await,
        Command::Invite {
            room,
            user_id,
            name,
        } => rooms::invite(&mut rc, &room, user_id, name).await,
        Command::Invites => rooms::invites(&mut rc).await,
        Command::Accept => rooms::accept(&mut rc).await,
        Command::Send {
            room,
            channel,
            text,
            files,
            burn,
        } => rooms::send(&mut rc, (&room, &channel), (&text, &files), burn).await,
        Command::Edit {
            room,
            channel,
            number,
            text,
            burn,
        } => {
            let what = rooms::Compose::Edit(&text);
            rooms::compose(&mut rc, (&room, &channel, number), what, burn).await
        }
        Command::Reply {
            room,
            channel,
            number,
            text,
            burn,
        } => {
            let what = rooms::Compose::Reply(&text);
            rooms::compose(&mut rc, (&room, &channel, number), what, burn).await
        }
        Command::React {
            room,
            channel,
            number,
            emoji,
            remove,
            burn,
        } => {
            let what = rooms::Compose::React(&emoji, remove);
            rooms::compose(&mut rc, (&room, &channel, number), what, burn).await
        }
        Command::Download {
            room,
            channel,
            number,
            index,
            out,
        } => rooms::download(&mut rc, (&room, &channel, number, index), out).await,
        Command::Read {
            room,
            channel,
            after,
            follow,
        } => rooms::read(&mut rc, &room, &channel, after, follow).await,
        Command::Call {
            room,
            channel,
            relay,
            audio,
            duration,
            bind,
            turn_credentials,
        } => {
            let options = rooms::CallArgs {
                relay,
                audio,
                duration,
                bind,
                turn_credentials,
            };
            rooms::call(&mut rc, &client, (&room, &channel), options).await
        }
        Command::Members { room } => rooms::members(&mut rc, &room).await,
        Command::Kick { room, user_id } => rooms::kick(&mut rc, &room, user_id).await,
        Command::Leave { room } => rooms::leave(&mut rc, &room).await,
        Command::Admin(c) => rooms::admin(&mut rc, c).await,
        Command::Avatar { room, user_id, out } => rooms::avatar(&mut rc, &room, user_id, out).await,
        _ => Ok(()),
    };
    // A room state verified along the way is a floor for every device: keep it in the
    // enclave, so neither a rollback nor another device can take this one back.
    // A failed command saves too: a kick whose re-sharing failed part-way has new keys.
    let result = if versions(&rc.session.contents.memberships) != heads {
        let saved = rc.save().await;
        result.and(saved)
    } else {
        result
    };
    // Keep what changed (memberships, spine versions, pins) even when the command failed late.
    if let Some(s) = ctx.profile.session.clone() {
        let server = ctx.cli.server.clone();
        ctx.profile.remember(&server, s);
    }
    ctx.save()?;
    // Room requests are signed with the room's keys, not the user's: a refused signature
    // there means the room's keys moved on (keys sent to this device were taken above).
    result.map_err(|e| {
        if e.code() == Some(ErrorCode::Unauthenticated) {
            ClientError::Input(
                "the room's keys have changed and no new keys have reached this device: \
                 either you were removed, or an admin has yet to send them \
                 (`cinder accept` takes them when they come)"
                    .into(),
            )
        } else {
            e
        }
    })
}

fn versions(
    memberships: &std::collections::BTreeMap<
        cinder_proto::RoomId,
        cinder_client::rooms::Membership,
    >,
) -> Vec<(cinder_proto::RoomId, u64)> {
    memberships
        .iter()
        .map(|(id, m)| (*id, m.spine().version))
        .collect()
}

fn is_unknown<T>(answer: Result<T, ClientError>) -> bool {
    matches!(answer, Err(e) if e.code() == Some(ErrorCode::UnknownUser))
}

fn show(ctx: &Ctx, headline: &str, bundle: &KeyBundle) {
    if ctx.cli.json {
        // Serialising a bundle cannot fail: every field is a string or a number.
        out!(
            "{}",
            serde_json::to_string_pretty(bundle).unwrap_or_default()
        );
        return;
    }
    out!("{headline}");
    out!("  user id:      {}", bundle.user_id);
    out!("  version:      {}", bundle.version);
    out!("  signing key:  {}", bundle.sign_key);
    out!("  hpke key:     {}", bundle.hpke_key);
    out!("  server:       {}", ctx.cli.server);
    out!("  profile:      {}", display(&ctx.path));
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// A terminal spinner on stderr while something slow runs; silent when stderr is not a
/// terminal, so scripts and tests see clean output.
struct Spinner {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start(message: &'static str) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let thread = std::io::stderr().is_terminal().then(|| {
            let done = done.clone();
            std::thread::spawn(move || {
                let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
                let mut i = 0;
                while !done.load(Ordering::Relaxed) {
                    eprint!("\r{} {message}…", frames[i % frames.len()]);
                    let _ = std::io::stderr().flush();
                    i += 1;
                    std::thread::sleep(std::time::Duration::from_millis(80));
                }
                eprint!("\r\x1b[2K");
            })
        });
        Self { done, thread }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

//! The `cinder` CLI's room, channel and message commands.

use std::collections::BTreeMap;
use std::time::Duration;

use cinder_proto::live::ServerFrame;
use cinder_proto::{ChannelId, ErrorCode, RoomId, UserId};
use clap::{Args, Subcommand};

use cinder_client::account::LoggedIn;
use cinder_client::call::{CallRoster, RosterChange};
use cinder_client::media::FileToSend;
use cinder_client::rooms::thread::{Reactions, Shown as ShownMessage, View};
use cinder_client::rooms::{Break, Content, Continuity, Membership, Received, Spine, Thread};
use cinder_client::{Client, ClientError};

/// Room commands.
#[derive(Subcommand)]
pub enum RoomCommand {
    /// Create a room; you are its admin. It starts with one text channel.
    Create {
        /// The room's name.
        name: String,
        /// The first text channel's name.
        #[arg(long, default_value = "general")]
        channel: String,
        /// Seconds until its messages burn.
        #[arg(long, default_value_t = 24 * 3600)]
        burn: u64,
    },
    /// List the rooms you belong to.
    List,
    /// Show a room: its channels and members.
    Show(RoomArg),
    /// Delete a room (admins).
    Delete(RoomArg),
    /// Rename a room (admins).
    Rename {
        /// The room (name or id).
        room: String,
        /// Its new name.
        name: String,
    },
}

/// Channel commands.
#[derive(Subcommand)]
pub enum ChannelCommand {
    /// Add a channel to a room (admins).
    Create {
        /// The room (name or id).
        room: String,
        /// The channel's name.
        name: String,
        /// A voice channel (calls) instead of text.
        #[arg(long)]
        voice: bool,
        /// Seconds until its messages burn.
        #[arg(long, default_value_t = 24 * 3600)]
        burn: u64,
    },
    /// List a room's channels.
    List(RoomArg),
    /// Rename a channel (admins).
    Rename {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// Its new name.
        name: String,
    },
    /// Delete a channel and everything in it (admins).
    Delete {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
    },
    /// Change how long a channel's messages live, for messages posted from now on (admins).
    Burn {
        /// The room (name or id).
        room: String,
        /// The channel (name or id).
        channel: String,
        /// Seconds until a message burns.
        secs: u64,
    },
}

/// A room, by name or id.
#[derive(Args)]
pub struct RoomArg {
    /// The room (name or id).
    pub room: String,
}

type PinMap = BTreeMap<UserId, cinder_proto::KeyBundle>;

/// What a room command needs from the CLI's context.
pub struct RoomCtx<'a> {
    /// The server.
    pub client: &'a Client,
    /// The logged-in session (its enclave holds the memberships).
    pub session: &'a mut LoggedIn,
    /// Pinned directory keys.
    pub pins: &'a mut BTreeMap<UserId, cinder_proto::KeyBundle>,
    /// Print JSON.
    pub json: bool,
}

impl RoomCtx<'_> {
    fn me(&self) -> cinder_client::Identity {
        self.session.contents.identity.clone()
    }

    /// Finds a membership by room id or by the name in its spine.
    async fn find(&mut self, room: &str) -> Result<(RoomId, Spine), ClientError> {
        if let Ok(id) = room.parse::<RoomId>()
            && self.session.contents.memberships.contains_key(&id)
        {
            return Ok((id, self.sync(id).await?));
        }
        // By the name this device last verified; then brought up to date (an error there,
        // a removal say, is the answer).
        let named: Vec<RoomId> = self
            .session
            .contents
            .memberships
            .iter()
            .filter(|(_, m)| m.spine().name == room)
            .map(|(id, _)| *id)
            .collect();
        if let [id] = named.as_slice() {
            return Ok((*id, self.sync(*id).await?));
        }
        if named.len() > 1 {
            return Err(ClientError::Input(format!(
                "you are in several rooms called {room:?}; name it by id"
            )));
        }
        // Renamed since: look at each room's current name.
        let ids: Vec<RoomId> = self.session.contents.memberships.keys().copied().collect();
        for id in ids {
            if let Ok(spine) = self.sync(id).await
                && spine.name == room
            {
                return Ok((id, spine));
            }
        }
        Err(ClientError::Input(format!(
            "you are in no room called {room:?}"
        )))
    }

    /// Brings a room's verified state up to date along its signed chain.
    async fn sync(&mut self, id: RoomId) -> Result<Spine, ClientError> {
        let client = self.client;
        let (m, pins) = self.parts(id)?;
        client.room(m, pins).await
    }

    /// The membership and the pins, borrowed together.
    fn parts(&mut self, id: RoomId) -> Result<(&mut Membership, &mut PinMap), ClientError> {
        let m = self
            .session
            .contents
            .memberships
            .get_mut(&id)
            .ok_or_else(|| ClientError::Input(format!("you are not in room {id}")))?;
        Ok((m, self.pins))
    }

    /// Makes sure this device holds the channel's key (every channel's it can get, if
    /// `None`): a channel added after joining comes in an envelope, taken here if it has
    /// not been yet. Admin actions go on without a key that never came (a re-key makes
    /// every channel's key anew).
    async fn keys_for(
        &mut self,
        id: RoomId,
        channel: Option<ChannelId>,
    ) -> Result<(), ClientError> {
        let missing = |m: &Membership| match channel {
            Some(c) => !m.holds_channel_key(c),
            None => m
                .spine()
                .channels
                .iter()
                .any(|c| !m.holds_channel_key(c.id)),
        };
        if !missing(self.membership(id)?) {
            return Ok(());
        }
        let me = self.me();
        self.client
            .accept_invites(&me, &mut self.session.contents.memberships, self.pins)
            .await?;
        self.save().await?;
        if channel.is_some() && missing(self.membership(id)?) {
            return Err(ClientError::Input(
                "this device has no key yet for this channel; ask an admin to invite you again"
                    .into(),
            ));
        }
        Ok(())
    }

    fn membership(&mut self, id: RoomId) -> Result<&mut Membership, ClientError> {
        self.session
            .contents
            .memberships
            .get_mut(&id)
            .ok_or_else(|| ClientError::Input(format!("you are not in room {id}")))
    }

    /// Saves the memberships into the enclave, merging over a concurrent change key by
    /// key, so neither device's newer keys or verified states are lost.
    pub async fn save(&mut self) -> Result<(), ClientError> {
        cinder_client::profile::merge_pins(&mut self.session.contents.pins, self.pins);
        match self.client.save_enclave(self.session).await {
            Err(e) if e.code() == Some(ErrorCode::VersionConflict) => {
                // Refreshing merges this device's memberships into the newer enclave.
                self.client.refresh_enclave(self.session).await?;
                cinder_client::profile::merge_pins(&mut self.session.contents.pins, self.pins);
                self.client.save_enclave(self.session).await
            }
            other => other,
        }
    }
}

fn channel_of(spine: &Spine, channel: &str) -> Result<ChannelId, ClientError> {
    spine
        .channels
        .iter()
        .find(|c| c.name == channel || c.id.to_string() == channel)
        .map(|c| c.id)
        .ok_or_else(|| {
            ClientError::Input(format!("room {:?} has no channel {channel:?}", spine.name))
        })
}

fn print_spine(id: RoomId, spine: &Spine, json: bool) {
    if json {
        out!("{}", serde_json::json!({ "room_id": id, "spine": spine }));
        return;
    }
    out!("{} ({id}), version {}", spine.name, spine.version);
    out!("  channels:");
    for c in &spine.channels {
        let kind = if c.voice { "voice" } else { "text" };
        out!(
            "    #{:<16} {kind:<5} burns after {}s   {}",
            c.name,
            c.burn_secs,
            c.id
        );
    }
    out!("  members:");
    for m in &spine.members {
        out!(
            "    {:<18} {}{}",
            m.name,
            m.user_id,
            if m.admin { "  (admin)" } else { "" }
        );
    }
}

/// `cinder room …`
pub async fn room(ctx: &mut RoomCtx<'_>, command: RoomCommand) -> Result<(), ClientError> {
    match command {
        RoomCommand::Create {
            name,
            channel,
            burn,
        } => {
            let me = ctx.me();
            let my_name = ctx.session.contents.profile.name.clone();
            let (m, spine) = ctx
                .client
                .create_room(&me, &my_name, &name, &[(channel, false, burn)])
                .await?;
            let id = m.room;
            ctx.session.contents.memberships.insert(id, m);
            ctx.save().await?;
            print_spine(id, &spine, ctx.json);
        }
        RoomCommand::List => {
            let ids: Vec<RoomId> = ctx.session.contents.memberships.keys().copied().collect();
            let mut rows = Vec::new();
            for id in ids {
                match ctx.sync(id).await {
                    Ok(spine) => {
                        rows.push((id, spine.name, spine.members.len(), spine.channels.len()))
                    }
                    // A room deleted, or one we were removed from: its keys no longer verify.
                    Err(e)
                        if matches!(
                            e.code(),
                            Some(ErrorCode::Unauthenticated | ErrorCode::NotFound)
                        ) => {}
                    Err(e) => return Err(e),
                }
            }
            if ctx.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(id, n, m, c)| serde_json::json!({"room_id": id, "name": n, "members": m, "channels": c}))
                    .collect();
                out!("{}", serde_json::Value::Array(list));
            } else if rows.is_empty() {
                out!(
                    "You are in no rooms yet. `cinder room create NAME`, or `cinder accept` an invitation."
                );
            } else {
                for (id, name, members, channels) in rows {
                    out!("{name:<20} {members} members, {channels} channels   {id}");
                }
            }
        }
        RoomCommand::Show(arg) => {
            let (id, spine) = ctx.find(&arg.room).await?;
            print_spine(id, &spine, ctx.json);
        }
        RoomCommand::Delete(arg) => {
            let (id, spine) = ctx.find(&arg.room).await?;
            ctx.client.delete_room(ctx.membership(id)?).await?;
            ctx.session.contents.memberships.remove(&id);
            ctx.save().await?;
            out!("Deleted room {}.", spine.name);
        }
        RoomCommand::Rename { room, name } => {
            let (id, spine) = ctx.find(&room).await?;
            let me = ctx.me();
            let client = ctx.client;
            let (m, pins) = ctx.parts(id)?;
            client.rename_room(&me, m, &name, pins).await?;
            ctx.save().await?;
            out!("Renamed room {} to {name}.", spine.name);
        }
    }
    Ok(())
}

/// `cinder channel …`
pub async fn channel(ctx: &mut RoomCtx<'_>, command: ChannelCommand) -> Result<(), ClientError> {
    match command {
        ChannelCommand::Create {
            room,
            name,
            voice,
            burn,
        } => {
            let (id, _) = ctx.find(&room).await?;
            ctx.keys_for(id, None).await?;
            let me = ctx.me();
            let client = ctx.client;
            let (m, pins) = ctx.parts(id)?;
            let added = client.add_channel(&me, m, (&name, voice, burn), pins).await;
            // Saved either way, as after a kick: what a change stopped part-way needs to be
            // finished (by this room's next admin command) is in the membership.
            ctx.save().await?;
            let channel = added.inspect_err(|_| {
                eprintln!(
                    "Adding the channel stopped part-way; this room's next admin command finishes it."
                );
            })?;
            if ctx.json {
                out!("{}", serde_json::json!({ "channel_id": channel }));
            } else {
                out!("Added #{name} ({channel}).");
            }
        }
        ChannelCommand::Rename {
            room,
            channel,
            name,
        } => {
            let (id, spine) = ctx.find(&room).await?;
            let channel_id = channel_of(&spine, &channel)?;
            let me = ctx.me();
            let client = ctx.client;
            let (m, pins) = ctx.parts(id)?;
            client
                .rename_channel(&me, m, channel_id, &name, pins)
                .await?;
            ctx.save().await?;
            out!("Renamed #{channel} to #{name}.");
        }
        ChannelCommand::Delete { room, channel } => {
            let (id, spine) = ctx.find(&room).await?;
            let channel_id = channel_of(&spine, &channel)?;
            let me = ctx.me();
            let client = ctx.client;
            let (m, pins) = ctx.parts(id)?;
            client.delete_channel(&me, m, channel_id, pins).await?;
            ctx.save().await?;
            out!("Deleted #{channel}.");
        }
        ChannelCommand::Burn {
            room,
            channel,
            secs,
        } => {
            let (id, spine) = ctx.find(&room).await?;
            let channel_id = channel_of(&spine, &channel)?;
            let me = ctx.me();
            let client = ctx.client;
            let (m, pins) = ctx.parts(id)?;
            client.set_burn(&me, m, channel_id, secs, pins).await?;
            ctx.save().await?;
            out!("#{channel}'s messages from now on burn after {secs}s; older ones keep theirs.");
        }
        ChannelCommand::List(arg) => {
            let (id, spine) = ctx.find(&arg.room).await?;
            print_spine(id, &spine, ctx.json);
        }
    }
    Ok(())
}

/// `cinder invite ROOM USER_ID`
pub async fn invite(
    ctx: &mut RoomCtx<'_>,
    room: &str,
    user: UserId,
    name: Option<String>,
) -> Result<(), ClientError> {
    let (id, _) = ctx.find(room).await?;
    ctx.keys_for(id, None).await?;
    let keys = ctx.client.verified_keys(user, ctx.pins.get(&user)).await?;
    ctx.pins.insert(user, keys.clone());
    let me = ctx.me();
    let name = name.unwrap_or_else(|| user.to_string()[..8].to_owned());
    let client = ctx.client;
    let (m, pins) = ctx.parts(id)?;
    client.invite(&me, m, &keys, &name, pins).await?;
    ctx.save().await?;
    out!("Invited {name} ({user}); they join with `cinder accept`.");
    Ok(())
}

/// `cinder invites`: what waits in the inbox.
pub async fn invites(ctx: &mut RoomCtx<'_>) -> Result<(), ClientError> {
    let me = ctx.me();
    let page = ctx.client.inbox(&me, None, None).await?;
    if ctx.json {
        let list: Vec<_> = page
            .envelopes
            .iter()
            .map(|e| serde_json::json!({"id": e.id, "from": e.sender, "expires_at": e.expires_at}))
            .collect();
        out!("{}", serde_json::Value::Array(list));
    } else if page.envelopes.is_empty() {
        out!("No invitations.");
    } else {
        for e in &page.envelopes {
            out!("from {} (expires {})", e.sender, e.expires_at);
        }
        out!("`cinder accept` opens and verifies them.");
    }
    Ok(())
}

/// `cinder accept`: join every room invited to (and take new keys after removals).
pub async fn accept(ctx: &mut RoomCtx<'_>) -> Result<(), ClientError> {
    let me = ctx.me();
    let before: Vec<RoomId> = ctx.session.contents.memberships.keys().copied().collect();
    let joined = ctx
        .client
        .accept_invites(&me, &mut ctx.session.contents.memberships, ctx.pins)
        .await?;
    ctx.save().await?;
    let avatar = ctx.session.contents.profile.avatar.clone();
    for id in &joined {
        let name = ctx.membership(*id)?.spine().name.clone();
        if before.contains(id) {
            out!("Took new keys for {name} ({id}).");
            continue;
        }
        out!("Joined {name} ({id}).");
        // A new room gets its own sealed copy of the avatar.
        if let Some(picture) = &avatar {
            let client = ctx.client;
            let (m, pins) = ctx.parts(*id)?;
            if let Err(e) = client.set_avatar(&me, m, &picture.0, pins).await {
                eprintln!("warning: avatar not set in {name}: {e}");
            }
        }
    }
    if avatar.is_some() && !joined.is_empty() {
        ctx.save().await?;
    }
    if joined.is_empty() {
        out!("No invitations to accept.");
    }
    Ok(())
}

/// `cinder send ROOM CHANNEL TEXT`
pub async fn send(
    ctx: &mut RoomCtx<'_>,
    (room, channel): (&str, &str),
    (text, files): (&str, &[std::path::PathBuf]),
    burn: Option<u64>,
) -> Result<(), ClientError> {
    if text.is_empty() && files.is_empty() {
        return Err(ClientError::Input("give a text, a --file, or both".into()));
    }
    let (id, spine) = ctx.find(room).await?;
    let ch = channel_of(&spine, channel)?;
    let burn = burn.unwrap_or_else(|| spine.channel(ch).map_or(3600, |c| c.burn_secs));
    let me = ctx.me();
    ctx.keys_for(id, Some(ch)).await?;
    let client = ctx.client;
    let (m, _) = ctx.parts(id)?;
    let number = if files.is_empty() {
        client.send_message(&me, m, ch, text, burn).await?
    } else {
        let files: Vec<FileToSend> = files.iter().map(FileToSend::new).collect();
        let total = files
            .iter()
            .map(|f| std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0))
            .sum();
        let bar = crate::progress::Bar::new("Encrypting and uploading", total);
        let sent = client
            .send_files(&me, m, ch, (text, &files), burn, Some(bar.reporter()))
            .await;
        drop(bar);
        sent?
    };
    if ctx.json {
        out!("{}", serde_json::json!({ "number": number }));
    } else {
        out!("Sent #{number}; it burns in {burn}s.");
    }
    Ok(())
}

/// What `cinder edit`, `reply` and `react` post about a message.
pub enum Compose<'a> {
    /// A new text for one of my messages.
    Edit(&'a str),
    /// A reply's text.
    Reply(&'a str),
    /// An emoji, and whether to take it back.
    React(&'a str, bool),
}

/// `cinder edit|reply|react ROOM CHANNEL NUMBER …`
pub async fn compose(
    ctx: &mut RoomCtx<'_>,
    (room, channel, number): (&str, &str, u64),
    what: Compose<'_>,
    burn: Option<u64>,
) -> Result<(), ClientError> {
    if let Compose::Edit("") | Compose::Reply("") = what {
        return Err(ClientError::Input("give a text".into()));
    }
    let (id, spine) = ctx.find(room).await?;
    let ch = channel_of(&spine, channel)?;
    let burn = burn.unwrap_or_else(|| spine.channel(ch).map_or(3600, |c| c.burn_secs));
    let me = ctx.me();
    ctx.keys_for(id, Some(ch)).await?;
    let client = ctx.client;
    let (m, pins) = ctx.parts(id)?;
    let posted = match what {
        Compose::Edit(text) => {
            // Readers refuse an edit of someone else's message: say so before sending one.
            let target = client.message(m, ch, number, pins).await?;
            if target.sender != me.user_id() || target.text().is_none() {
                return Err(ClientError::Input(format!(
                    "#{number} is not a text of yours: only its sender can edit a message"
                )));
            }
            client.edit(&me, m, ch, number, text, burn).await?
        }
        Compose::Reply(text) => client.reply(&me, m, ch, number, text, burn).await?,
        Compose::React(emoji, remove) => {
            client
                .react(&me, m, ch, number, emoji, remove, burn)
                .await?
        }
    };
    if ctx.json {
        out!("{}", serde_json::json!({ "number": posted }));
    } else {
        let done = match what {
            Compose::Edit(_) => format!("Edited #{number}"),
            Compose::Reply(_) => format!("Replied to #{number}"),
            Compose::React(emoji, false) => format!("Reacted {emoji} to #{number}"),
            Compose::React(emoji, true) => format!("Took back your {emoji} on #{number}"),
        };
        out!("{done} (sent as #{posted}; it burns in {burn}s).");
    }
    Ok(())
}

/// `cinder download ROOM CHANNEL NUMBER [--index N] [--out PATH]`
pub async fn download(
    ctx: &mut RoomCtx<'_>,
    (room, channel, number, index): (&str, &str, u64, usize),
    out: Option<std::path::PathBuf>,
) -> Result<(), ClientError> {
    let (id, spine) = ctx.find(room).await?;
    let ch = channel_of(&spine, channel)?;
    ctx.keys_for(id, Some(ch)).await?;
    let m = ctx.membership(id)?.clone();
    let message = ctx.client.message(&m, ch, number, ctx.pins).await?;
    let attachment = index
        .checked_sub(1)
        .and_then(|i| message.attachments().get(i))
        .ok_or_else(|| {
            ClientError::Input(format!(
                "message #{number} has {} attachment(s)",
                message.attachments().len()
            ))
        })?;
    // The sender chose the name: keep only its last component, never a path.
    let name = std::path::Path::new(&attachment.name)
        .file_name()
        .map_or_else(|| "attachment".into(), |n| n.to_os_string());
    let target = out.unwrap_or_else(|| name.into());
    let bar = crate::progress::Bar::new("Downloading and decrypting", attachment.size);
    let written = if target.as_os_str() == "-" {
        let mut stdout = tokio::io::stdout();
        ctx.client
            .download(
                &m,
                ch,
                number,
                attachment,
                &mut stdout,
                Some(bar.reporter()),
            )
            .await?
    } else {
        // Written beside the target, renamed only once every segment and the hash check out.
        let partial = target.with_extension("cinder-partial");
        let file_error = |source| ClientError::File {
            path: partial.display().to_string(),
            source,
        };
        let mut file = tokio::fs::File::create(&partial)
            .await
            .map_err(file_error)?;
        let result = ctx
            .client
            .download(&m, ch, number, attachment, &mut file, Some(bar.reporter()))
            .await;
        drop(file);
        match result {
            Ok(n) => {
                tokio::fs::rename(&partial, &target)
                    .await
                    .map_err(file_error)?;
                n
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
        }
    };
    drop(bar);
    if target.as_os_str() != "-" {
        if ctx.json {
            out!(
                "{}",
                serde_json::json!({ "path": target.display().to_string(), "size": written })
            );
        } else {
            out!("Saved {} ({written} bytes, verified).", target.display());
        }
    }
    Ok(())
}

/// A member's name as the room state has it (the start of their id otherwise).
fn name_in(spine: &Spine, user: UserId) -> String {
    spine
        .member(user)
        .map(|m| m.name.clone())
        .unwrap_or_else(|| user.to_string()[..8].to_owned())
}

/// What a reader shows of a channel as it goes: breaks in senders' sequences, (voice
/// channels) who is in the call, and the messages read so far, to fold later edits and
/// reactions into.
#[derive(Default)]
struct Shown {
    continuity: Continuity,
    roster: CallRoster,
    /// Every verified message read so far but call signals.
    history: Vec<Received>,
    /// The numbers printed so far.
    printed: std::collections::BTreeSet<u64>,
}

/// A sender's name, or the start of their id.
fn who(user: UserId, name: &Option<String>) -> String {
    name.clone()
        .unwrap_or_else(|| user.to_string()[..8].to_owned())
}

/// Shows a batch of verified messages (in channel order) folded with everything read
/// before: each text or placeholder in its place, with its newest edit, reply and
/// reactions; a message shown in an earlier batch again when an edit or reaction changes
/// it; call signals as joins and leaves, then who is in the call if that changed. Never
/// SDP or candidates.
fn show_batch(batch: &[Received], shown: &mut Shown, spine: &Spine, json: bool) {
    shown
        .history
        .extend(batch.iter().filter(|r| r.signal().is_none()).cloned());
    let view = cinder_client::rooms::thread(&shown.history);
    let new: std::collections::BTreeSet<u64> = batch.iter().map(|r| r.number).collect();
    for (number, why) in view.refused.iter().filter(|(n, _)| new.contains(n)) {
        eprintln!("warning: message #{number} {why}; not shown");
    }
    let before = shown.printed.clone();
    let mut updated = std::collections::BTreeSet::new();
    let mut changed = false;
    for r in batch {
        match &r.content {
            Content::Call { .. } => changed |= print_signal(r, &mut shown.roster, json),
            Content::Edit { of: to, .. } | Content::Reaction { to, .. } => {
                // Folded into its message if that is in this batch; shown again if earlier.
                if before.contains(to) && updated.insert(*to) {
                    if let Some(s) = view.get(*to) {
                        print_shown(s, &view, json);
                    }
                } else if let Some(list) = view.elsewhere.get(to)
                    && !new.contains(to)
                    && updated.insert(*to)
                {
                    print_elsewhere(*to, list, json);
                }
            }
            _ => {
                if let Some(s) = view.get(r.number) {
                    print_shown(s, &view, json);
                    shown.printed.insert(r.number);
                }
            }
        }
    }
    if changed {
        let present = shown.roster.present(cinder_proto::Timestamp::now());
        let mut named: Vec<(String, UserId)> =
            present.iter().map(|u| (name_in(spine, *u), *u)).collect();
        named.sort();
        let names: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
        if json {
            let list: Vec<_> = named
                .iter()
                .map(|(name, user)| serde_json::json!({"name": name, "user_id": user}))
                .collect();
            out!("{}", serde_json::json!({ "in_call": list }));
        } else if names.is_empty() {
            out!("       nobody is in the call");
        } else {
            out!("       in the call: {}", names.join(", "));
        }
    }
}

/// Shows a call signal's join or leave; whether it changed who is in the call.
fn print_signal(r: &Received, roster: &mut CallRoster, json: bool) -> bool {
    let what = match roster.observe(r) {
        Some(RosterChange::Joined(_)) => "joined",
        Some(RosterChange::Left(_)) => "left",
        None => return false,
    };
    if json {
        out!(
            "{}",
            serde_json::json!({"number": r.number, "sender": r.sender, "name": r.sender_name,
                "sent_at": r.sent_at, "call": what})
        );
    } else {
        out!(
            "#{:<5} {} {what} the call",
            r.number,
            who(r.sender, &r.sender_name)
        );
    }
    true
}

/// The first words of a text, for a reply's line.
fn first_words(text: &str) -> String {
    const WORDS: usize = 40;
    let mut chars = text.chars();
    let start: String = chars.by_ref().take(WORDS).collect();
    let more = if chars.next().is_some() { "…" } else { "" };
    format!("{}{more}", start.escape_debug())
}

fn reactions_json(list: &[Reactions]) -> serde_json::Value {
    list.iter()
        .map(|x| {
            let by: Vec<_> =
                x.by.iter()
                    .map(|(u, n)| serde_json::json!({"user_id": u, "name": n}))
                    .collect();
            serde_json::json!({"emoji": x.emoji, "count": x.by.len(), "by": by})
        })
        .collect()
}

fn reactions_line(list: &[Reactions]) -> String {
    list.iter()
        .map(|x| {
            let names: Vec<String> = x.by.iter().map(|(u, n)| who(*u, n)).collect();
            format!(
                "{} {} ({})",
                x.emoji.escape_debug(),
                x.by.len(),
                names.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

/// Shows one message as the thread has it.
fn print_shown(s: &ShownMessage, view: &Thread, json: bool) {
    let name = who(s.sender, &s.sender_name);
    match &s.view {
        View::Text {
            text,
            edited,
            reply_to,
            attachments,
        } => {
            if json {
                let files: Vec<_> = attachments
                    .iter()
                    .map(|a| serde_json::json!({"name": a.name, "size": a.size, "media_id": a.media_id}))
                    .collect();
                out!(
                    "{}",
                    serde_json::json!({"number": s.number, "sender": s.sender, "name": s.sender_name,
                        "sent_at": s.sent_at, "burn_at": s.burn_at, "kind": "text", "text": text,
                        "edited": edited.is_some(), "edit": edited,
                        "reply_to": reply_to.map(|r| r.number),
                        "attachments": files, "reactions": reactions_json(&s.reactions)})
                );
                return;
            }
            let mark = if edited.is_some() { " (edited)" } else { "" };
            out!("#{:<5} {name}: {text}{mark}", s.number);
            if let Some(reply) = reply_to {
                match view.get(reply.number) {
                    Some(target) => {
                        let words = match &target.view {
                            View::Text { text, .. } => first_words(text),
                            _ => "…".into(),
                        };
                        out!(
                            "       ↪ #{} {}: {words}",
                            reply.number,
                            who(target.sender, &target.sender_name)
                        );
                    }
                    None => out!("       ↪ #{} (not shown)", reply.number),
                }
            }
            for (i, a) in attachments.iter().enumerate() {
                out!(
                    "       [{}] {} ({}), `cinder download … {} --index {}`",
                    i + 1,
                    a.name.escape_debug(),
                    crate::progress::size(a.size),
                    s.number,
                    i + 1
                );
            }
        }
        View::Unknown { kind } => {
            if json {
                out!(
                    "{}",
                    serde_json::json!({"number": s.number, "sender": s.sender, "name": s.sender_name,
                        "sent_at": s.sent_at, "burn_at": s.burn_at, "kind": kind, "unknown": true,
                        "reactions": reactions_json(&s.reactions)})
                );
                return;
            }
            out!(
                "#{:<5} {name}: [a message of a kind this client cannot show: {:?}]",
                s.number,
                kind
            );
        }
        _ => return,
    }
    if !s.reactions.is_empty() {
        out!("       {}", reactions_line(&s.reactions));
    }
}

/// Shows the reactions to a message that is not shown (burnt, deleted, or not read).
fn print_elsewhere(number: u64, list: &[Reactions], json: bool) {
    if json {
        out!(
            "{}",
            serde_json::json!({"number": number, "shown": false, "reactions": reactions_json(list)})
        );
    } else {
        out!("#{number:<5} (not shown) {}", reactions_line(list));
    }
}

/// `cinder read ROOM CHANNEL [--follow]`
pub async fn read(
    ctx: &mut RoomCtx<'_>,
    room: &str,
    channel: &str,
    after: u64,
    follow: bool,
) -> Result<(), ClientError> {
    let (id, spine) = ctx.find(room).await?;
    let ch = channel_of(&spine, channel)?;
    ctx.keys_for(id, Some(ch)).await?;
    let mut shown = Shown::default();
    let after = catch_up(ctx, id, ch, after, follow, &mut shown).await?;
    if !follow {
        return Ok(());
    }
    follow_live(ctx, id, ch, after, &mut shown).await
}

/// Shows every message after `after`, page by page; returns the last number read (shown or
/// refused). While following, takes new keys if the room was re-keyed.
async fn catch_up(
    ctx: &mut RoomCtx<'_>,
    id: RoomId,
    ch: ChannelId,
    mut after: u64,
    follow: bool,
    shown: &mut Shown,
) -> Result<u64, ClientError> {
    // Shown once every page is read, so an edit or a reaction on a later page is folded
    // into its message instead of showing it twice.
    let mut batch = Vec::new();
    loop {
        let m = ctx.membership(id)?.clone();
        let page = match ctx.client.read(&m, ch, after, ctx.pins).await {
            Ok(page) => page,
            Err(e) if follow && e.code() == Some(ErrorCode::Unauthenticated) => {
                rekeyed(ctx, id, e).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        for (number, why) in &page.refused {
            eprintln!("warning: message #{number} {why}; not shown");
        }
        // Read on after everything on the page, shown or refused, so a page of messages
        // that do not verify cannot hold the reader in place.
        if let Some(last) = page.last {
            after = last;
        }
        for r in &page.messages {
            match shown.continuity.observe(r) {
                Some(Break::Missing {
                    sender,
                    count,
                    number,
                }) => eprintln!(
                    "warning: {count} message(s) from {sender} are missing before #{number}: burnt, deleted, or withheld by the server"
                ),
                Some(Break::Forked { sender, number }) => eprintln!(
                    "warning: #{number} from {sender} does not follow their previous message: replaced or replayed by the server, or sent from two devices at once"
                ),
                _ => {}
            }
        }
        let more = page.more;
        batch.extend(page.messages);
        if !more {
            show_batch(&batch, shown, m.spine(), ctx.json);
            return Ok(after);
        }
    }
}

/// How often a quiet follower re-reads the room's signed state (a re-key drops its
/// subscription without a word) and pings the socket (API Gateway closes idle ones).
const RESYNC: Duration = Duration::from_secs(15);
/// The longest wait between two attempts to reach the live socket.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A socket that stayed up this long starts the backoff afresh when it drops.
const STEADY: Duration = Duration::from_secs(10);

/// The polling fallback's interval: `CINDER_POLL_SECS` if set, else 1 s doubling to 15 s.
fn poll_interval(round: u32) -> Duration {
    match std::env::var("CINDER_POLL_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(secs) => Duration::from_secs(secs.max(1)),
        None => Duration::from_secs(1 << round.min(4)).min(Duration::from_secs(15)),
    }
}

/// Exponential backoff with jitter: a random half to all of 250 ms × 2^attempt, capped.
fn backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let full = Duration::from_millis(250)
        .saturating_mul(1 << attempt.min(10))
        .min(MAX_BACKOFF);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    full / 2 + full.mul_f64((random % 1000) as f64 / 2000.0)
}

/// Follows a channel: on the live socket while it can be reached (listing from the last
/// number shown on every connect, so a drop loses nothing and shows nothing twice, then
/// reading on at each notice of a newer message), polling while it cannot.
async fn follow_live(
    ctx: &mut RoomCtx<'_>,
    id: RoomId,
    ch: ChannelId,
    mut after: u64,
    shown: &mut Shown,
) -> Result<(), ClientError> {
    let mut attempt = 0u32;
    let mut polling_said = false;
    let mut round = 0u32;
    loop {
        let m = ctx.membership(id)?.clone();
        let opened = match ctx.client.live().await {
            Ok(mut socket) => match socket.follow(ctx.client, &m, ch).await {
                Ok(()) => Ok(socket),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let mut socket = match opened {
            Ok(socket) => socket,
            Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => {
                // Our capability is stale: the room was re-keyed.
                rekeyed(ctx, id, e).await?;
                continue;
            }
            Err(e) => {
                if !polling_said {
                    eprintln!(
                        "cinder: the live socket at {} cannot be used ({e}); polling instead",
                        ctx.client.live_url()
                    );
                    polling_said = true;
                }
                tokio::time::sleep(poll_interval(round)).await;
                round = round.saturating_add(1);
                resync(ctx, id).await?;
                after = catch_up(ctx, id, ch, after, true, shown).await?;
                continue;
            }
        };
        round = 0;
        let up = std::time::Instant::now();
        // Subscribed first, then listed: a message posted in between is in the listing or
        // in a notice, and a notice for a number already shown is ignored.
        after = catch_up(ctx, id, ch, after, true, shown).await?;
        loop {
            match tokio::time::timeout(RESYNC, socket.next()).await {
                Ok(Ok(Some(ServerFrame::Message {
                    room,
                    channel,
                    number,
                }))) if room == id && channel == ch && number > after => {
                    after = catch_up(ctx, id, ch, after, true, shown).await?;
                }
                Ok(Ok(Some(_))) => {}
                // Closed or broken: reconnect and catch up.
                Ok(Ok(None) | Err(_)) => break,
                Err(_) => {
                    if resync(ctx, id).await? || socket.ping().await.is_err() {
                        break;
                    }
                }
            }
        }
        socket.close().await;
        if up.elapsed() >= STEADY {
            attempt = 0;
        }
        tokio::time::sleep(backoff(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// Follows the room's signed state; whether the room was re-keyed (the subscription, proved
/// with the old capability, no longer hears anything).
async fn resync(ctx: &mut RoomCtx<'_>, id: RoomId) -> Result<bool, ClientError> {
    let before = ctx.membership(id)?.spine().epoch;
    match ctx.sync(id).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => rekeyed(ctx, id, e).await?,
        Err(e) => return Err(e),
    }
    Ok(ctx.membership(id)?.spine().epoch != before)
}

/// After the room's keys stopped verifying (someone was removed): takes the new keys if we
/// were sent some; otherwise we were the one removed, and the original error stands.
async fn rekeyed(
    ctx: &mut RoomCtx<'_>,
    id: RoomId,
    original: ClientError,
) -> Result<(), ClientError> {
    let me = ctx.me();
    let before = ctx.membership(id)?.spine().epoch;
    ctx.client
        .accept_invites(&me, &mut ctx.session.contents.memberships, ctx.pins)
        .await?;
    ctx.save().await?;
    ctx.sync(id).await?;
    if ctx.membership(id)?.spine().epoch == before {
        return Err(original);
    }
    Ok(())
}

/// `cinder call`'s options.
pub struct CallArgs {
    /// Relay-only ICE.
    pub relay: bool,
    /// An Ogg Opus file to send.
    pub audio: Option<std::path::PathBuf>,
    /// Leave after this many seconds.
    pub duration: Option<u64>,
    /// The local UDP address.
    pub bind: String,
    /// TURN credentials (JSON) instead of the server's.
    pub turn_credentials: Option<String>,
}

/// How often `cinder call` prints its figures (with `--json`, every second).
const CALL_REPORT_EVERY: u32 = 5;

/// `cinder call ROOM CHANNEL [--relay] [--audio FILE.ogg] [--duration SECS]`
pub async fn call(
    ctx: &mut RoomCtx<'_>,
    client: &std::sync::Arc<Client>,
    (room, channel): (&str, &str),
    args: CallArgs,
) -> Result<(), ClientError> {
    use cinder_client::call::engine::{self, CallEvent, CallOptions, CallRoom};

    let (id, spine) = ctx.find(room).await?;
    let ch = channel_of(&spine, channel)?;
    ctx.keys_for(id, Some(ch)).await?;
    let m = ctx.membership(id)?.clone();
    let audio = match &args.audio {
        Some(path) => Some(std::fs::read(path).map_err(|source| ClientError::File {
            path: path.display().to_string(),
            source,
        })?),
        None => None,
    };
    let credentials = match &args.turn_credentials {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| ClientError::Input(format!("the TURN credentials do not parse: {e}")))?,
        None => client.turn_credentials(&m, ch).await?,
    };
    let options = CallOptions {
        credentials,
        relay_only: args.relay,
        audio,
        bind: args.bind,
    };
    let room = CallRoom {
        client: client.clone(),
        me: ctx.me(),
        membership: m,
        channel: ch,
        pins: ctx.pins.clone(),
    };
    let duration = args.duration;
    let args_audio = args.audio.clone();
    let stop = async move {
        match duration {
            Some(secs) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(secs)) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let (report, mut events) = tokio::sync::mpsc::unbounded_channel();
    let json = ctx.json;
    let names = spine.clone();
    let printer = tokio::spawn(async move {
        let mut ticks = 0u32;
        while let Some(event) = events.recv().await {
            if json {
                out!("{}", serde_json::to_string(&event).unwrap_or_default());
                continue;
            }
            let name = |u: UserId| name_in(&names, u);
            match event {
                CallEvent::InCall { .. } => {
                    out!(
                        "In the call in #{channel_name}; Ctrl-C leaves.",
                        channel_name = names.channel(ch).map_or("?", |c| c.name.as_str())
                    )
                }
                CallEvent::Joined { user, .. } => out!("{} is in the call", name(user)),
                CallEvent::Left { user, .. } => out!("{} left the call", name(user)),
                CallEvent::Connected {
                    user,
                    candidate_type,
                    ..
                } => out!("connected to {} ({candidate_type})", name(user)),
                CallEvent::Disconnected { user, .. } => out!("lost {}", name(user)),
                CallEvent::Warning { message } => eprintln!("warning: {message}"),
                CallEvent::Stats { peers } => {
                    ticks += 1;
                    if ticks.is_multiple_of(CALL_REPORT_EVERY) {
                        for p in peers.iter().filter(|p| p.connected) {
                            out!("{}", peer_line(&name(p.user), p));
                        }
                    }
                }
                CallEvent::Summary { peers } => {
                    if !peers.is_empty() {
                        out!("Connected during the call:");
                    }
                    for p in &peers {
                        out!("{}", peer_line(&name(p.user), p));
                    }
                }
                _ => {}
            }
        }
    });
    let result = engine::run(room, options, report, stop).await;
    let _ = printer.await;
    match result {
        Ok(m) => {
            // Keep the count of this device's messages in the channel (the signals were
            // messages), so the next one follows on.
            ctx.session.contents.memberships.insert(id, m);
            if !json {
                out!("Left the call.");
            }
            Ok(())
        }
        Err(engine::CallError::Client(e)) => Err(e),
        Err(e @ engine::CallError::Audio(_)) => Err(ClientError::Input(match &args_audio {
            Some(path) => format!("{}: {e}", path.display()),
            None => e.to_string(),
        })),
        Err(e) => Err(ClientError::Internal(e.to_string())),
    }
}

/// One connection's figures, as `cinder call` prints them.
fn peer_line(name: &str, p: &cinder_client::call::engine::PeerStats) -> String {
    let rtt = p.ping_rtt_ms.or(p.ice_rtt_ms);
    format!(
        "  {name:<16} via {:<6} rtt {:>9}  audio packets in {:>6}  data messages {}/{} out/in",
        p.candidate_type.as_deref().unwrap_or("?"),
        rtt.map_or_else(|| "?".to_owned(), |r| format!("{r:.1} ms")),
        p.audio_packets,
        p.data_sent,
        p.data_received
    )
}

/// `cinder members ROOM`
pub async fn members(ctx: &mut RoomCtx<'_>, room: &str) -> Result<(), ClientError> {
    let (_, spine) = ctx.find(room).await?;
    if ctx.json {
        out!(
            "{}",
            serde_json::to_string(&spine.members).unwrap_or_default()
        );
    } else {
        for m in &spine.members {
            out!(
                "{:<18} {}{}{}",
                m.name,
                m.user_id,
                if m.admin { "  (admin)" } else { "" },
                if m.avatar.is_some() { "  (avatar)" } else { "" }
            );
        }
    }
    Ok(())
}

/// `cinder kick ROOM USER_ID`
pub async fn kick(ctx: &mut RoomCtx<'_>, room: &str, user: UserId) -> Result<(), ClientError> {
    let (id, _) = ctx.find(room).await?;
    ctx.keys_for(id, None).await?;
    let me = ctx.me();
    let client = ctx.client;
    let (m, pins) = ctx.parts(id)?;
    let kicked = client.kick(&me, m, user, pins).await;
    // Saved whether or not it finished: a kick stopped part-way keeps the new keys, and
    // whom they are still owed to, for running it again to finish.
    ctx.save().await?;
    kicked.inspect_err(|_| {
        eprintln!("The kick stopped part-way; run the same `cinder kick` again to finish it.");
    })?;
    out!("Removed {user}; the room's keys are new and went to everyone who stays.");
    Ok(())
}

/// `cinder leave ROOM`
pub async fn leave(ctx: &mut RoomCtx<'_>, room: &str) -> Result<(), ClientError> {
    let (id, spine) = ctx.find(room).await?;
    let admin = spine.is_admin(ctx.me().user_id());
    let me = ctx.me();
    let left = ctx
        .client
        .leave(&me, &mut ctx.session.contents.memberships, id, ctx.pins)
        .await;
    // Saved either way: an admin's leave stopped part-way is finished by leaving again.
    ctx.save().await?;
    left.inspect_err(|_| {
        eprintln!("Leaving stopped part-way; run the same `cinder leave` again to finish it.");
    })?;
    if admin {
        out!(
            "Left {}; its keys are new and went to everyone who stays.",
            spine.name
        );
    } else {
        out!(
            "Left {}; this device forgot its keys, and an admin's next command re-keys it for everyone who stays.",
            spine.name
        );
    }
    Ok(())
}

/// Admin commands.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// Make a member an admin (admins).
    Grant(AdminArgs),
    /// Take admin from a member; the admin key is replaced (admins).
    Revoke(AdminArgs),
    /// Hand admin to a member and give it up yourself (admins).
    Transfer(AdminArgs),
}

/// A room and a member.
#[derive(Args)]
pub struct AdminArgs {
    /// The room (name or id).
    pub room: String,
    /// The member's user id.
    pub user_id: UserId,
}

/// `cinder admin grant|revoke|transfer ROOM USER_ID`
pub async fn admin(ctx: &mut RoomCtx<'_>, command: AdminCommand) -> Result<(), ClientError> {
    let (args, done) = match &command {
        AdminCommand::Grant(a) => (a, "is now an admin"),
        AdminCommand::Revoke(a) => (a, "is no longer an admin; the admin key is new"),
        AdminCommand::Transfer(a) => (a, "is now an admin, and you are not"),
    };
    let (id, _) = ctx.find(&args.room).await?;
    ctx.keys_for(id, None).await?;
    let me = ctx.me();
    let user = args.user_id;
    let client = ctx.client;
    let (m, pins) = ctx.parts(id)?;
    let result = match command {
        AdminCommand::Grant(_) => client.grant_admin(&me, m, user, pins).await,
        AdminCommand::Revoke(_) => client.revoke_admin(&me, m, user, pins).await,
        AdminCommand::Transfer(_) => client.transfer_admin(&me, m, user, pins).await,
    };
    ctx.save().await?;
    result?;
    out!("{user} {done}.");
    Ok(())
}

/// `cinder avatar ROOM USER_ID [--out PATH]`
pub async fn avatar(
    ctx: &mut RoomCtx<'_>,
    room: &str,
    user: UserId,
    out: Option<std::path::PathBuf>,
) -> Result<(), ClientError> {
    let (id, _) = ctx.find(room).await?;
    let m = ctx.membership(id)?.clone();
    let picture = ctx
        .client
        .avatar(&m, user)
        .await?
        .ok_or_else(|| ClientError::Input(format!("{user} has no avatar in this room")))?;
    let path = out.unwrap_or_else(|| format!("{user}.avatar").into());
    std::fs::write(&path, &picture).map_err(|source| ClientError::File {
        path: path.display().to_string(),
        source,
    })?;
    out!(
        "Saved {} ({} bytes, verified).",
        path.display(),
        picture.len()
    );
    Ok(())
}

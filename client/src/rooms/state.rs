//! The signed room state (the spine): every version signed by an admin's own directory key,
//! chained to the one before by hash, and sealed under the master key of its epoch.
//!
//! A client pins the version it joined at and from then on accepts only versions that
//! extend its pin, each signed by an admin of the version before and following the rules
//! in [`check_successor`]: a removal starts a new key epoch and records the old epoch's
//! last message number per channel; revoking or removing an admin replaces the admin key;
//! the list of former members only grows. The server's word is never taken for who is a
//! member, who is an admin or which keys are current: what it serves either verifies
//! along the chain or is refused.

use std::collections::BTreeMap;

use cinder_proto::rooms::{CreateRoom, Room, SpineEntry, SpinePage, UpdateRoom};
use cinder_proto::{
    Blob, ChannelId, ErrorCode, KeyBundle, RoomId, Signature, Signer, UserId, VerifyKey,
};
use ed25519_dalek::Signer as _;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::capabilities::{
    CapabilityKeys, admin_capability, channel_capability, member_capability, spine_key,
};
use super::invites::InviteKind;
use super::{Membership, Secret32, open, random_id, seal};
use crate::directory::KeyCache;
use crate::{Client, ClientError, Identity};

/// One version of a room's state, as its admins signed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spine {
    /// The room.
    pub room: RoomId,
    /// 1 at creation, one more per change; equals the stored version.
    pub version: u64,
    /// The hash of the previous version's signed bytes (32 zero bytes for version 1).
    pub prev: Blob,
    /// The key epoch: 1 at creation, one more at every re-key.
    pub epoch: u64,
    /// The room's name.
    pub name: String,
    /// Who is in the room.
    pub members: Vec<SpineMember>,
    /// Who was removed, and the last epoch whose keys they held. Only grows.
    #[serde(default)]
    pub former: Vec<FormerMember>,
    /// The channels.
    pub channels: Vec<ChannelInfo>,
    /// The admin capability's verification key.
    pub admin_key: VerifyKey,
    /// The member capability's verification key (derived from this epoch's master key).
    pub member_key: VerifyKey,
    /// Each channel's capability verification key (derived from its current key).
    pub channel_keys: BTreeMap<ChannelId, VerifyKey>,
}

/// A member as the state lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpineMember {
    /// Directory id.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Status line.
    #[serde(default)]
    pub status: String,
    /// An admin: may sign the next state, and holds the admin capability.
    pub admin: bool,
    /// Their avatar, sealed for this room's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<super::avatars::AvatarRef>,
}

/// Someone removed from the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormerMember {
    /// Directory id.
    pub user_id: UserId,
    /// The name they had.
    pub name: String,
    /// The last epoch whose keys they held: their messages under later keys are forgeries.
    pub last_epoch: u64,
}

/// A channel as the state lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Its id.
    pub id: ChannelId,
    /// Its name.
    pub name: String,
    /// A voice channel (calls) rather than text.
    pub voice: bool,
    /// Seconds until a message burns: the longest a message may ask for.
    pub burn_secs: u64,
    /// The epoch the channel was created in.
    pub since_epoch: u64,
    /// Per superseded epoch, the last message number sealed under that epoch's key.
    #[serde(default)]
    pub cutoffs: BTreeMap<u64, u64>,
    /// Earlier burn times, oldest first: each applied to the messages numbered up to its
    /// cut-off (and after the one before). Only grows, so a changed burn time never
    /// rewrites what older messages were allowed; `burn_secs` applies after the last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub burn_history: Vec<BurnChange>,
}

/// A channel's burn time before a change: it applied to messages numbered up to `up_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BurnChange {
    /// The channel's highest message number when the change was signed (reserved from the
    /// server, so every later message has a higher number).
    pub up_to: u64,
    /// The burn time that applied up to and including `up_to`.
    pub burn_secs: u64,
}

impl ChannelInfo {
    /// The longest burn time a message numbered `number` may ask for: the one that applied
    /// when it was posted, so shortening a channel's burn time leaves older messages valid
    /// and lengthening it does not stretch them.
    pub fn burn_secs_for(&self, number: u64) -> u64 {
        self.burn_history
            .iter()
            .find(|c| number <= c.up_to)
            .map_or(self.burn_secs, |c| c.burn_secs)
    }
}

/// Whether `next`'s burn history extends `prev`'s by the rules: the old entries kept as
/// they were, and exactly one entry (recording the previous burn time, at a cut-off no
/// lower than the last) added when, and only when, the burn time changes.
fn burn_history_extends(prev: &ChannelInfo, next: &ChannelInfo) -> bool {
    if !next.burn_history.starts_with(&prev.burn_history) {
        return false;
    }
    match &next.burn_history[prev.burn_history.len()..] {
        [] => next.burn_secs == prev.burn_secs,
        [added] => {
            next.burn_secs != prev.burn_secs
                && added.burn_secs == prev.burn_secs
                && prev
                    .burn_history
                    .last()
                    .is_none_or(|l| added.up_to >= l.up_to)
        }
        _ => false,
    }
}

impl Spine {
    /// The member with this id, if any.
    pub fn member(&self, user: UserId) -> Option<&SpineMember> {
        self.members.iter().find(|m| m.user_id == user)
    }

    /// Whether `user` is an admin in this state.
    pub fn is_admin(&self, user: UserId) -> bool {
        self.member(user).is_some_and(|m| m.admin)
    }

    /// The channel with this id, if any.
    pub fn channel(&self, id: ChannelId) -> Option<&ChannelInfo> {
        self.channels.iter().find(|c| c.id == id)
    }

    fn capability_keys(&self) -> CapabilityKeys {
        CapabilityKeys {
            admin: self.admin_key,
            member: self.member_key,
            channels: self.channel_keys.clone(),
        }
    }
}

/// The newest verified state and its hash, as a membership pins it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Head {
    pub spine: Spine,
    pub hash: Blob,
}

/// What is sealed: the state's exact bytes and an admin's signature over them.
#[derive(Serialize, Deserialize)]
pub(crate) struct SignedSpine {
    pub(crate) state: Blob,
    pub(crate) signer: UserId,
    /// The version of the signer's directory keys that signed.
    pub(crate) key_version: u64,
    pub(crate) signature: Signature,
}

pub(crate) const SIGN_DOMAIN: &[u8] = b"cinder/spine-signature/v2\0";

/// How many times a room change is tried against a room other admins keep changing.
pub(crate) const CHANGE_ATTEMPTS: u32 = 5;

/// The channel to change, or an error naming it.
fn channel_mut(spine: &mut Spine, channel: ChannelId) -> Result<&mut ChannelInfo, ClientError> {
    spine
        .channels
        .iter_mut()
        .find(|c| c.id == channel)
        .ok_or_else(|| ClientError::Input(format!("no channel {channel} in this room")))
}
const HASH_DOMAIN: &[u8] = b"cinder/spine-hash/v2\0";

fn state_hash(bytes: &[u8]) -> Blob {
    Blob(
        Sha256::new()
            .chain_update(HASH_DOMAIN)
            .chain_update(bytes)
            .finalize()
            .to_vec(),
    )
}

pub(crate) fn spine_aad(room: RoomId, version: u64) -> Vec<u8> {
    [
        b"cinder/spine/v2\0".as_slice(),
        &room.0,
        &version.to_be_bytes(),
    ]
    .concat()
}

/// A stored version opened and parsed, not yet checked against the chain.
pub(crate) struct OpenedEntry {
    pub(crate) signed: SignedSpine,
    pub(crate) spine: Spine,
    pub(crate) hash: Blob,
    /// The master key that opened it (it derives the state's member key).
    pub(crate) master: Secret32,
}

/// Opens a stored version with whichever of `keys` seals it; the key must be the one of
/// the state's own epoch (it derives the signed member key), and the state must name the
/// room and version it is stored under.
pub(crate) fn open_entry<'k>(
    room: RoomId,
    keys: impl IntoIterator<Item = &'k Secret32>,
    entry: &SpineEntry,
) -> Option<OpenedEntry> {
    let aad = spine_aad(room, entry.version);
    keys.into_iter().find_map(|key| {
        let json = open(&spine_key(key, room), &entry.spine.0, &aad)?;
        let signed: SignedSpine = serde_json::from_slice(&json).ok()?;
        let spine: Spine = serde_json::from_slice(&signed.state.0).ok()?;
        let member: VerifyKey = member_capability(key, room).verifying_key().into();
        (spine.room == room && spine.version == entry.version && spine.member_key == member).then(
            || OpenedEntry {
                hash: state_hash(&signed.state.0),
                signed,
                spine,
                master: key.clone(),
            },
        )
    })
}

fn refused(why: impl std::fmt::Display) -> ClientError {
    ClientError::Verification(format!("room state refused: {why}"))
}

/// The rules of a first version: its creator signs it, is its only member and an admin.
pub(crate) fn check_genesis(s: &Spine, signer: UserId) -> Result<(), ClientError> {
    let ok = s.version == 1
        && s.prev.0 == [0u8; 32]
        && s.epoch == 1
        && s.former.is_empty()
        && s.members.len() == 1
        && s.is_admin(signer)
        && s.channels
            .iter()
            .all(|c| c.since_epoch == 1 && c.cutoffs.is_empty() && c.burn_history.is_empty());
    ok.then_some(())
        .ok_or_else(|| refused("version 1 is not a room created by its signer"))
}

/// The rules a next version must follow, whoever signed it. The signer must also be an
/// admin of `prev`, which the caller checks with the signature.
pub(crate) fn check_successor(
    prev: &Spine,
    prev_hash: &Blob,
    next: &Spine,
) -> Result<(), ClientError> {
    if next.room != prev.room
        || prev.version.checked_add(1) != Some(next.version)
        || &next.prev != prev_hash
    {
        return Err(refused(format!(
            "version {} does not extend version {}",
            next.version, prev.version
        )));
    }
    let rekeyed = prev.epoch.checked_add(1) == Some(next.epoch);
    if !rekeyed && next.epoch != prev.epoch {
        return Err(refused("the key epoch jumped"));
    }
    // Removal: the removed must be listed as former members of the old epoch, and keys change.
    let removed: Vec<&SpineMember> = prev
        .members
        .iter()
        .filter(|m| next.member(m.user_id).is_none())
        .collect();
    if !removed.is_empty() && !rekeyed {
        return Err(refused("a member was removed without new keys"));
    }
    if !next.former.starts_with(&prev.former) {
        return Err(refused("the list of former members was rewritten"));
    }
    let added = &next.former[prev.former.len()..];
    let listed = removed.len() == added.len()
        && removed
            .iter()
            .zip(added)
            .all(|(r, f)| r.user_id == f.user_id && f.last_epoch == prev.epoch);
    if !listed {
        return Err(refused(
            "removed members are not recorded as former members",
        ));
    }
    // A former member cannot come back under the same keys they were removed from.
    if next
        .members
        .iter()
        .any(|m| added.iter().any(|f| f.user_id == m.user_id))
    {
        return Err(refused("a member is listed as both current and removed"));
    }
    // Revoking or removing an admin replaces the admin capability.
    let lost_admin = prev
        .members
        .iter()
        .any(|m| m.admin && !next.is_admin(m.user_id));
    if lost_admin && next.admin_key == prev.admin_key {
        return Err(refused("an admin was revoked but the admin key was kept"));
    }
    if next.members.iter().all(|m| !m.admin) {
        return Err(refused("a room without admins"));
    }
    // Keys: unchanged within an epoch, all new in a new one, with the old epoch's cut-off.
    if rekeyed == (next.member_key == prev.member_key) {
        return Err(refused("the member key does not match the key epoch"));
    }
    for c in &next.channels {
        let before = prev.channel(c.id);
        let key_same = prev.channel_keys.get(&c.id) == next.channel_keys.get(&c.id);
        let ok = match before {
            None => {
                c.since_epoch == next.epoch && c.cutoffs.is_empty() && c.burn_history.is_empty()
            }
            Some(b) if !burn_history_extends(b, c) => false,
            Some(b) if rekeyed => {
                !key_same
                    && c.since_epoch == b.since_epoch
                    && c.cutoffs.len() == b.cutoffs.len() + 1
                    && c.cutoffs.iter().take(b.cutoffs.len()).eq(b.cutoffs.iter())
                    && c.cutoffs.contains_key(&prev.epoch)
            }
            Some(b) => key_same && c.since_epoch == b.since_epoch && c.cutoffs == b.cutoffs,
        };
        if !ok || !next.channel_keys.contains_key(&c.id) {
            return Err(refused(format!("channel {} breaks the key rules", c.id)));
        }
    }
    // An avatar is sealed under the master key of the epoch it names: a new epoch re-seals
    // them all (or drops them), so no copy a removed member can open stays in use.
    if next
        .members
        .iter()
        .filter_map(|m| m.avatar.as_ref())
        .any(|a| a.epoch != next.epoch)
    {
        return Err(refused("an avatar sealed for another key epoch"));
    }
    if next.channel_keys.len() != next.channels.len() {
        return Err(refused(
            "capability keys for channels the state does not list",
        ));
    }
    Ok(())
}

impl Client {
    /// Creates a room with the given channels (name, voice, burn seconds); the creator is
    /// its only member and admin. Returns the membership to keep in the enclave.
    ///
    /// A create that gets no answer (a 5xx, a lost connection) may have been stored all
    /// the same; the room is then read back, and if the server holds exactly the state
    /// sent, the room is this one (its id is fresh and random) and is returned, rather than
    /// left on the server with nobody holding its keys.
    pub async fn create_room(
        &self,
        me: &Identity,
        my_name: &str,
        name: &str,
        channels: &[(String, bool, u64)],
    ) -> Result<(Membership, Spine), ClientError> {
        let room = RoomId(random_id()?);
        let mut channel_keys = BTreeMap::new();
        let mut infos = Vec::new();
        for (cname, voice, burn_secs) in channels {
            let id = ChannelId(random_id()?);
            channel_keys.insert(id, [(1, Secret32::random()?)].into_iter().collect());
            infos.push(ChannelInfo {
                id,
                name: cname.clone(),
                voice: *voice,
                burn_secs: *burn_secs,
                since_epoch: 1,
                cutoffs: BTreeMap::new(),
                burn_history: Vec::new(),
            });
        }
        let (master, admin) = (Secret32::random()?, Secret32::random()?);
        let caps = CapabilityKeys {
            admin: admin_capability(&admin).verifying_key().into(),
            member: member_capability(&master, room).verifying_key().into(),
            channels: channel_keys
                .iter()
                .flat_map(|(id, keys): (&ChannelId, &BTreeMap<u64, Secret32>)| {
                    keys.values()
                        .map(|k| (*id, channel_capability(k, room, *id).verifying_key().into()))
                })
                .collect(),
        };
        let spine = Spine {
            room,
            version: 1,
            prev: Blob(vec![0; 32]),
            epoch: 1,
            name: name.into(),
            members: vec![SpineMember {
                user_id: me.user_id(),
                name: my_name.into(),
                status: String::new(),
                admin: true,
                avatar: None,
            }],
            former: Vec::new(),
            channels: infos,
            admin_key: caps.admin,
            member_key: caps.member,
            channel_keys: caps.channels.clone(),
        };
        let mut m = Membership {
            room,
            master_keys: [(1, master)].into_iter().collect(),
            admin_key: Some(admin),
            channel_keys,
            head: Head {
                spine: spine.clone(),
                hash: Blob(Vec::new()),
            },
            sent: BTreeMap::new(),
            avatar_requests: BTreeMap::new(),
            owed_keys: Default::default(),
            unsettled: None,
        };
        let (sealed, hash) = sign_and_seal(me, &m, &spine)?;
        m.head.hash = hash;
        let body = CreateRoom {
            room_id: room,
            spine: sealed,
            admin_key: caps.admin,
            member_key: caps.member,
            channels: caps.channels,
        };
        let created: Result<Room, _> = self
            .call_capability(
                &m.admin()?,
                Signer::Admin(room),
                Method::POST,
                "/rooms",
                Some(&body),
            )
            .await;
        match created {
            Ok(_) => Ok((m, spine)),
            Err(e)
                if !super::invites::definitive(&e) && self.stored_as_created(&m, &body).await =>
            {
                Ok((m, spine))
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the server holds `created` as the room's first state, under the keys it was
    /// created with (false also if that cannot be read now). Taking the server's word here
    /// gives it nothing: a room it claims but does not hold fails the creator's next
    /// request, and every later state is still checked against the one sent.
    async fn stored_as_created(&self, m: &Membership, created: &CreateRoom) -> bool {
        let Some(master) = m.master_keys.get(&1) else {
            return false;
        };
        let stored: Result<Room, _> = self
            .call_capability::<(), _>(
                &member_capability(master, m.room),
                Signer::Member(m.room),
                Method::GET,
                &format!("/rooms/{}", m.room),
                None,
            )
            .await;
        stored.is_ok_and(|r| {
            r.room_id == created.room_id
                && r.version == 1
                && r.spine == created.spine
                && r.admin_key == created.admin_key
                && r.member_key == created.member_key
                && r.channels == created.channels
        })
    }

    /// Brings `m` up to the newest state the server has, verifying every version along the
    /// chain from the pinned one, and returns it. A server that serves an older state than
    /// the pinned one, or one that does not extend it, is caught here.
    pub async fn room(
        &self,
        m: &mut Membership,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<Spine, ClientError> {
        self.settle(m, pins).await?;
        let mut cache = KeyCache::default();
        self.sync(m, &[], pins, &mut cache, None).await?;
        Ok(m.head.spine.clone())
    }

    /// Extends `m`'s head along the server's log. `extra` are master keys from invitations
    /// not yet trusted: one is kept only once a verified state shows it is its epoch's key.
    /// Every verified version is recorded in `seen`, if given.
    pub(crate) async fn sync(
        &self,
        m: &mut Membership,
        extra: &[&Secret32],
        pins: &mut BTreeMap<UserId, KeyBundle>,
        cache: &mut KeyCache,
        mut seen: Option<&mut BTreeMap<u64, Head>>,
    ) -> Result<(), ClientError> {
        // Ask with the newest key the server still takes; a bogus key from a forged
        // invitation simply fails to authenticate.
        let mut candidates: Vec<Secret32> = extra.iter().map(|k| (*k).clone()).collect();
        candidates.extend(m.master_keys.values().rev().cloned());
        loop {
            let after = m.head.spine.version;
            let page = self.spine_page(m.room, &candidates, after).await?;
            let mut keys: Vec<&Secret32> = m.master_keys.values().rev().collect();
            keys.extend(extra.iter().copied());
            for entry in &page.entries {
                if m.head.spine.version.checked_add(1) != Some(entry.version) {
                    return Err(refused("the server skipped versions"));
                }
                let opened = open_entry(m.room, keys.iter().copied(), entry).ok_or_else(|| {
                    ClientError::Verification(format!(
                        "room version {} is sealed under keys this device does not have; run `cinder accept`",
                        entry.version
                    ))
                })?;
                self.verify_successor(&m.head, &opened, pins, cache).await?;
                let epoch = opened.spine.epoch;
                m.master_keys.entry(epoch).or_insert(opened.master);
                m.head = Head {
                    spine: opened.spine,
                    hash: opened.hash,
                };
                if let Some(seen) = seen.as_deref_mut() {
                    seen.insert(m.head.spine.version, m.head.clone());
                }
                keys = m.master_keys.values().rev().collect();
                keys.extend(extra.iter().copied());
            }
            if page.next.is_none() || page.entries.is_empty() {
                // An admin key the state no longer lists is useless: forget it.
                if !m.holds_admin_key() {
                    m.admin_key = None;
                }
                return Ok(());
            }
        }
    }

    /// Checks `next` against `head`: the chain rules, and a valid signature by an admin of
    /// `head` with a verified version of their directory keys.
    async fn verify_successor(
        &self,
        head: &Head,
        next: &OpenedEntry,
        pins: &mut BTreeMap<UserId, KeyBundle>,
        cache: &mut KeyCache,
    ) -> Result<(), ClientError> {
        check_successor(&head.spine, &head.hash, &next.spine)?;
        if !head.spine.is_admin(next.signed.signer) {
            return Err(refused(format!(
                "version {} is signed by someone who is not an admin",
                next.spine.version
            )));
        }
        self.verify_signed(next, pins, cache).await
    }

    /// The signature of a state, by its signer's verified directory key.
    async fn verify_signed(
        &self,
        entry: &OpenedEntry,
        pins: &mut BTreeMap<UserId, KeyBundle>,
        cache: &mut KeyCache,
    ) -> Result<(), ClientError> {
        let s = &entry.signed;
        let key = cache
            .key(self, pins, s.signer, s.key_version)
            .await
            .ok_or_else(|| refused("its signer's keys do not verify"))?;
        key.key
            .verify(&[SIGN_DOMAIN, &s.state.0].concat(), &s.signature)
            .map_err(|_| {
                refused(format!(
                    "version {} has a bad signature",
                    entry.spine.version
                ))
            })
    }

    /// The first verified state of a room joined by invitation: the version the inviter
    /// named, which must hash as named, be signed by one of its admins, list the inviter as
    /// an admin and `me` as a member.
    pub(crate) async fn anchor(
        &self,
        me: &Identity,
        room: RoomId,
        keys: &[&Secret32],
        (version, hash, inviter): (u64, &Blob, UserId),
        pins: &mut BTreeMap<UserId, KeyBundle>,
        cache: &mut KeyCache,
    ) -> Result<(Head, Secret32), ClientError> {
        let page = self
            .spine_page(
                room,
                &keys.iter().map(|k| (*k).clone()).collect::<Vec<_>>(),
                version.saturating_sub(1),
            )
            .await?;
        let entry = page
            .entries
            .iter()
            .find(|e| e.version == version)
            .ok_or_else(|| refused("the invitation's room version is not on the server"))?;
        let opened = open_entry(room, keys.iter().copied(), entry)
            .ok_or_else(|| refused("the invitation's keys do not open its room version"))?;
        if &opened.hash != hash {
            return Err(refused(
                "the room version differs from the one the inviter signed",
            ));
        }
        let s = &opened.spine;
        if version == 1 {
            check_genesis(s, opened.signed.signer)?;
        }
        if !s.is_admin(opened.signed.signer)
            || !s.is_admin(inviter)
            || s.member(me.user_id()).is_none()
        {
            return Err(refused(
                "the inviter is not an admin of the room, or you are not a member",
            ));
        }
        self.verify_signed(&opened, pins, cache).await?;
        Ok((
            Head {
                spine: opened.spine,
                hash: opened.hash,
            },
            opened.master,
        ))
    }

    /// The versions after `after` up to `m`'s pin, proven genuine without signatures: each
    /// names the hash of the one before, and the last is the pinned one. Used to check keys
    /// sent at a version this device has already moved past.
    pub(crate) async fn ancestors(
        &self,
        m: &Membership,
        after: u64,
        extra: &[&Secret32],
    ) -> Result<BTreeMap<u64, Head>, ClientError> {
        let mut candidates: Vec<Secret32> = m.master_keys.values().rev().cloned().collect();
        candidates.extend(extra.iter().map(|k| (*k).clone()));
        let mut keys: Vec<&Secret32> = m.master_keys.values().rev().collect();
        keys.extend(extra.iter().copied());
        let mut found: Vec<OpenedEntry> = Vec::new();
        let mut cursor = after;
        while cursor < m.head.spine.version {
            let page = self.spine_page(m.room, &candidates, cursor).await?;
            if page.entries.is_empty() {
                break;
            }
            for entry in page
                .entries
                .iter()
                .filter(|e| e.version <= m.head.spine.version)
            {
                let opened = open_entry(m.room, keys.iter().copied(), entry)
                    .ok_or_else(|| refused("an earlier version does not open"))?;
                found.push(opened);
            }
            // Each page must move the cursor on: one that does not (entries at or before it)
            // would have this loop ask for the same page forever.
            match page.entries.last() {
                Some(last) if last.version > cursor => cursor = last.version,
                _ => return Err(refused("a page of earlier versions does not move on")),
            }
        }
        // Walk back from the pin: each version must be the one its successor names.
        let mut expected = m.head.hash.clone();
        let mut heads = BTreeMap::new();
        for opened in found.into_iter().rev() {
            if opened.hash != expected {
                return Err(refused(
                    "an earlier version is not an ancestor of the pinned one",
                ));
            }
            expected = opened.spine.prev.clone();
            heads.insert(
                opened.spine.version,
                Head {
                    spine: opened.spine,
                    hash: opened.hash,
                },
            );
        }
        Ok(heads)
    }

    /// One page of the room's log after `after`, asked with the first of `keys` the
    /// server accepts.
    async fn spine_page(
        &self,
        room: RoomId,
        keys: &[Secret32],
        after: u64,
    ) -> Result<SpinePage, ClientError> {
        let mut last = None;
        for key in keys {
            let answer = self
                .call_capability::<(), SpinePage>(
                    &member_capability(key, room),
                    Signer::Member(room),
                    Method::GET,
                    &format!("/rooms/{room}/spines?after={after}"),
                    None,
                )
                .await;
            match answer {
                Err(e) if e.code() == Some(ErrorCode::Unauthenticated) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Input(format!("no keys for room {room}"))))
    }

    /// Signs `spine` as the next version after `m`'s head with `next`'s keys, and stores it
    /// (signed by `m`'s admin capability, which the server holds). Returns `next` with its
    /// head moved; a concurrent change is a 409 and changes nothing.
    pub(crate) async fn commit(
        &self,
        me: &Identity,
        m: &Membership,
        mut next: Membership,
        mut spine: Spine,
    ) -> Result<Membership, ClientError> {
        if !m.head.spine.is_admin(me.user_id()) {
            return Err(ClientError::Input("only a room admin can do that".into()));
        }
        let mut caps = next.capabilities_for_state()?;
        // A deleted channel's capability goes with it: the server then takes no request
        // signed for it, and its messages are unreachable.
        caps.channels.retain(|c, _| spine.channel(*c).is_some());
        spine.room = m.room;
        spine.version = m.head.spine.version + 1;
        spine.prev = m.head.hash.clone();
        spine.epoch = next.master()?.0;
        spine.admin_key = caps.admin;
        spine.member_key = caps.member;
        spine.channel_keys = caps.channels.clone();
        check_successor(&m.head.spine, &m.head.hash, &spine)?;
        let (sealed, hash) = sign_and_seal(me, &next, &spine)?;
        let body = UpdateRoom {
            expected_version: m.head.spine.version,
            spine: sealed,
            admin_key: caps.admin,
            member_key: caps.member,
            channels: caps.channels,
        };
        let _: Room = self
            .call_capability(
                &m.admin()?,
                Signer::Admin(m.room),
                Method::PUT,
                &format!("/rooms/{}", m.room),
                Some(&body),
            )
            .await?;
        next.head = Head { spine, hash };
        Ok(next)
    }

    /// Makes a signed change to the room (admins only) and stores it, re-reading the room
    /// and applying the change again when another admin changed it first (a 409), up to
    /// [`CHANGE_ATTEMPTS`] times: two admins changing the room at once both end up applied,
    /// or one gets the 409, and neither change silently overwrites the other. `change`
    /// edits the state and the keys it is committed with, from the newest verified state
    /// each time; it must not depend on anything but them.
    pub(crate) async fn change_room<F>(
        &self,
        me: &Identity,
        m: &mut Membership,
        pins: &mut BTreeMap<UserId, KeyBundle>,
        mut change: F,
    ) -> Result<(), ClientError>
    where
        F: FnMut(&mut Spine, &mut Membership) -> Result<(), ClientError>,
    {
        let mut attempt = 1;
        self.room(m, pins).await?;
        self.share_owed_keys(me, m, pins).await?;
        loop {
            let mut spine = self.room(m, pins).await?;
            let mut next = m.clone();
            change(&mut spine, &mut next)?;
            let new_keys = next.capabilities()? != m.capabilities()?;
            match self.commit(me, m, next.clone(), spine).await {
                Ok(done) => {
                    *m = done;
                    return Ok(());
                }
                Err(e)
                    if e.code() == Some(ErrorCode::VersionConflict)
                        && attempt < CHANGE_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => {
                    // A change that made keys (a new channel's) and got no answer: keep
                    // them until the room shows whether it was stored (see `Client::kick`).
                    if new_keys && !super::invites::definitive(&e) {
                        m.unsettled = Some(Box::new(Unsettled {
                            next,
                            kind: InviteKind::Rekey,
                            by: me.user_id(),
                        }));
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Finishes an admin change that stopped part-way (see [`Client::kick`]): settles a
    /// state write that got no answer, then sends the keys still owed. Running the change
    /// itself again does the same for a kick, a leave and admin changes; this is the way
    /// for a new channel (adding it again would make another). Nothing to do if no change
    /// stopped.
    pub async fn finish_changes(
        &self,
        me: &Identity,
        m: &mut Membership,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        self.room(m, pins).await?;
        self.share_owed_keys(me, m, pins).await
    }

    /// Adds a channel (admins only).
    pub async fn add_channel(
        &self,
        me: &Identity,
        m: &mut Membership,
        (name, voice, burn_secs): (&str, bool, u64),
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<ChannelId, ClientError> {
        let id = ChannelId(random_id()?);
        let key = Secret32::random()?;
        self.change_room(me, m, pins, |spine, next| {
            let epoch = next.master()?.0;
            next.channel_keys
                .insert(id, [(epoch, key.clone())].into_iter().collect());
            spine.channels.push(ChannelInfo {
                id,
                name: name.into(),
                voice,
                burn_secs,
                since_epoch: epoch,
                cutoffs: BTreeMap::new(),
                burn_history: Vec::new(),
            });
            Ok(())
        })
        .await?;
        // Everyone else needs the new channel's key: sent at the new state, it installs
        // only because that state lists its capability. Owed until sent.
        m.owed_keys = owed(&m.head.spine, InviteKind::Rekey, me.user_id());
        self.share_owed_keys(me, m, pins).await?;
        Ok(id)
    }

    /// Renames the room (admins only), a signed change every member verifies.
    pub async fn rename_room(
        &self,
        me: &Identity,
        m: &mut Membership,
        name: &str,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        self.change_room(me, m, pins, |spine, _| {
            spine.name = name.into();
            Ok(())
        })
        .await
    }

    /// Renames a channel (admins only). Refused if another channel has that name: members
    /// name channels by name.
    pub async fn rename_channel(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        name: &str,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        self.change_room(me, m, pins, |spine, _| {
            if spine
                .channels
                .iter()
                .any(|c| c.id != channel && c.name == name)
            {
                return Err(ClientError::Input(format!(
                    "this room already has a channel called {name:?}"
                )));
            }
            channel_mut(spine, channel)?.name = name.into();
            Ok(())
        })
        .await
    }

    /// Deletes a channel (admins only): it leaves the signed state, and its capability
    /// leaves the server, so its messages can no longer be read or posted; they burn on
    /// their own.
    pub async fn delete_channel(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        self.change_room(me, m, pins, |spine, next| {
            channel_mut(spine, channel)?;
            spine.channels.retain(|c| c.id != channel);
            next.channel_keys.remove(&channel);
            next.sent.remove(&channel);
            Ok(())
        })
        .await
    }

    /// Changes a channel's burn time for messages posted from now on (admins only). The
    /// channel's highest number is reserved first and signed in as the cut-off, with the
    /// burn time that applied up to it, so messages already posted keep verifying under
    /// the time they were posted with.
    pub async fn set_burn(
        &self,
        me: &Identity,
        m: &mut Membership,
        channel: ChannelId,
        burn_secs: u64,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        let mut attempt = 1;
        loop {
            let mut spine = self.room(m, pins).await?;
            if channel_mut(&mut spine, channel)?.burn_secs == burn_secs {
                return Ok(());
            }
            // Reserved against the state just verified, anew on every attempt: every
            // message under that state's burn time has this number or a lower one.
            let up_to = self.last_number(m, channel).await?;
            let c = channel_mut(&mut spine, channel)?;
            c.burn_history.push(BurnChange {
                up_to,
                burn_secs: c.burn_secs,
            });
            c.burn_secs = burn_secs;
            let next = m.clone();
            match self.commit(me, m, next, spine).await {
                Ok(done) => {
                    *m = done;
                    return Ok(());
                }
                Err(e)
                    if e.code() == Some(ErrorCode::VersionConflict)
                        && attempt < CHANGE_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes a member (admins only): a new epoch (new master and channel keys, and a new
    /// admin key if they were an admin), each channel's last number under the old keys
    /// recorded, and the new keys sealed to everyone who stays. To remove yourself,
    /// [`Client::leave`].
    ///
    /// A kick that fails part-way can be run again (save the enclave in between, as after
    /// any change), and ends where one uninterrupted run would have:
    ///
    /// - if the state was stored and re-sharing stopped, `m` holds the new keys and the
    ///   members still owed them; running it again sends to those only;
    /// - if the state write got no answer (a 5xx, a lost connection), `m` keeps the keys
    ///   it was sealed under until the room shows whether it was stored: running it again
    ///   adopts them if it was (then re-shares), or removes the member anew if not.
    pub async fn kick(
        &self,
        me: &Identity,
        m: &mut Membership,
        user: UserId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        let spine = self.room(m, pins).await?;
        if spine.member(user).is_none() {
            if spine.former.iter().any(|f| f.user_id == user) {
                // Removed already (by an earlier run that stopped part-way, or another
                // admin): finish sending the new keys to everyone still owed them.
                return self.share_owed_keys(me, m, pins).await;
            }
            return Err(ClientError::Input(format!(
                "{user} is not a member of this room"
            )));
        }
        if user == me.user_id() {
            return Err(ClientError::Input(
                "you cannot remove yourself; `leave` the room instead".into(),
            ));
        }
        self.remove_members(me, m, &[user], pins).await
    }

    /// Removes `users` (those still members) in one signed change with a new key epoch, and
    /// seals the new keys to everyone who stays: what [`Client::kick`] does, for several
    /// members at once (leave requests) or for this admin itself (leaving). Does nothing
    /// if none of them is a member any more.
    pub(crate) async fn remove_members(
        &self,
        me: &Identity,
        m: &mut Membership,
        users: &[UserId],
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        // Members owed the current keys get them before a newer epoch replaces them, so
        // they can read what was posted under them.
        self.room(m, pins).await?;
        self.share_owed_keys(me, m, pins).await?;
        let mut spine = self.room(m, pins).await?;
        let gone: Vec<SpineMember> = spine
            .members
            .iter()
            .filter(|x| users.contains(&x.user_id))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        let old_epoch = spine.epoch;
        for c in &mut spine.channels {
            c.cutoffs
                .insert(old_epoch, self.last_number(m, c.id).await?);
        }
        spine.members.retain(|x| !users.contains(&x.user_id));
        // In the order the members were listed: the chain rules match them up that way.
        spine.former.extend(gone.iter().map(|g| FormerMember {
            user_id: g.user_id,
            name: g.name.clone(),
            last_epoch: old_epoch,
        }));
        let next = m.rekeyed(gone.iter().any(|g| g.admin))?;
        self.reseal_avatars(m, &next, &mut spine).await?;
        match self.commit(me, m, next.clone(), spine).await {
            Ok(done) => *m = done,
            Err(e) => {
                if !super::invites::definitive(&e) {
                    m.unsettled = Some(Box::new(Unsettled {
                        next,
                        kind: InviteKind::Rekey,
                        by: me.user_id(),
                    }));
                }
                return Err(e);
            }
        }
        m.owed_keys = owed(&m.head.spine, InviteKind::Rekey, me.user_id());
        self.share_owed_keys(me, m, pins).await
    }

    /// After a removal or admin change whose state write got no answer: reads the room
    /// with the keys that state was made with. If the server stored it (the room's newest
    /// state opens under them and lists their capabilities), they become `m`'s, and the
    /// members who should have them are owed them; if not, they are dropped. Nothing to
    /// do if no write is in doubt.
    async fn settle(
        &self,
        m: &mut Membership,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        let Some(unsettled) = m.unsettled.take() else {
            return Ok(());
        };
        let next = &unsettled.next;
        let (epoch, master) = next.master()?;
        let mut cache = KeyCache::default();
        if let Err(e) = self.sync(m, &[master], pins, &mut cache, None).await {
            m.unsettled = Some(unsettled);
            return Err(e);
        }
        let spine = m.head.spine.clone();
        let stored = match unsettled.kind {
            // A new epoch: its state opened under the new master key, and lists the new
            // capabilities.
            InviteKind::Rekey => {
                spine.epoch == epoch
                    && m.master_keys.get(&epoch).map(Secret32::expose) == Some(master.expose())
                    && Membership::keys_match(&spine, &next.capabilities()?)
            }
            // A new admin key: the state lists its capability.
            _ => next.admin_key.as_ref().is_some_and(|k| {
                VerifyKey::from(admin_capability(k).verifying_key()) == spine.admin_key
            }),
        };
        if !stored {
            return Ok(());
        }
        let channels: BTreeMap<ChannelId, Secret32> = next
            .channel_keys
            .iter()
            .filter_map(|(c, keys)| keys.get(&epoch).map(|k| (*c, k.clone())))
            .collect();
        m.install(&spine, master, &channels, next.admin_key.as_ref());
        m.owed_keys = owed(&spine, unsettled.kind, unsettled.by);
        Ok(())
    }

    /// Sends `m`'s current keys to each member still owed them (see [`Client::kick`]),
    /// forgetting each debt as its envelope is stored; a member no longer in the room (or,
    /// for the admin key, no longer an admin) is owed nothing. Once nothing is owed, an
    /// admin key this admin kept only to hand over (it stepped down) is forgotten.
    pub(crate) async fn share_owed_keys(
        &self,
        me: &Identity,
        m: &mut Membership,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        let spine = m.head.spine.clone();
        m.owed_keys.retain(|u, kind| match kind {
            InviteKind::Admin => spine.is_admin(*u),
            _ => spine.member(*u).is_some(),
        });
        let owed: Vec<(UserId, InviteKind)> = m.owed_keys.iter().map(|(u, k)| (*u, *k)).collect();
        for (user, kind) in owed {
            let keys = self.verified_keys(user, pins.get(&user)).await?;
            self.send_keys(me, m, &keys, kind).await?;
            pins.insert(user, keys);
            m.owed_keys.remove(&user);
        }
        if !spine.is_admin(me.user_id()) {
            m.admin_key = None;
        }
        Ok(())
    }

    /// Leaves a room, and drops it from `memberships` (save the enclave after). What this
    /// device held stops working for anything new once the room is re-keyed:
    ///
    /// - an admin removes itself at once, in a signed change with a new key epoch whose
    ///   keys go to everyone who stays (refused for the last admin: grant or transfer
    ///   admin first, or delete the room);
    /// - any other member seals a signed leave request to every admin, and the first admin
    ///   client to read its inbox removes it the same way (see [`Client::take_keys`]).
    ///
    /// Until then a dishonest leaver that kept the keys could still read; an honest one
    /// forgets them here. An admin's leave that stopped part-way (as a kick can) is
    /// finished by leaving again: `memberships` keeps the room until then.
    pub async fn leave(
        &self,
        me: &Identity,
        memberships: &mut BTreeMap<RoomId, Membership>,
        room: RoomId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        let m = memberships
            .get_mut(&room)
            .ok_or_else(|| ClientError::Input(format!("you are not in room {room}")))?;
        let spine = self.room(m, pins).await?;
        if spine.member(me.user_id()).is_none() {
            if !m.owed_keys.is_empty() {
                // This admin's own removal stopped part-way: finish sending the new keys
                // to those who stay, then forget the room.
                self.share_owed_keys(me, m, pins).await?;
                memberships.remove(&room);
                return Ok(());
            }
            return Err(ClientError::Input(
                "you are no longer a member of this room".into(),
            ));
        }
        if spine.is_admin(me.user_id()) {
            if !spine
                .members
                .iter()
                .any(|x| x.admin && x.user_id != me.user_id())
            {
                return Err(ClientError::Input(
                    "you are this room's last admin: grant or transfer admin first, or delete the room"
                        .into(),
                ));
            }
            self.remove_members(me, m, &[me.user_id()], pins).await?;
        } else {
            let admins: Vec<UserId> = spine
                .members
                .iter()
                .filter(|x| x.admin)
                .map(|x| x.user_id)
                .collect();
            for admin in admins {
                let keys = self.verified_keys(admin, pins.get(&admin)).await?;
                self.send_request(me, m, &keys, InviteKind::Leave, None)
                    .await?;
                pins.insert(admin, keys);
            }
        }
        memberships.remove(&room);
        Ok(())
    }

    /// The channel's highest number so far, reserved before the re-key: every message
    /// under the old key has this number or a lower one. Reserved with the channel's key,
    /// or with the admin capability if this admin was never sent that channel's key.
    async fn last_number(&self, m: &Membership, channel: ChannelId) -> Result<u64, ClientError> {
        let (key, signer) = match m.channel_key(channel) {
            Ok((_, key)) => (
                channel_capability(key, m.room, channel),
                Signer::Channel(m.room, channel),
            ),
            Err(_) => (m.admin()?, Signer::Admin(m.room)),
        };
        let cinder_proto::rooms::Reserved { number, .. } = self
            .call_capability::<(), _>(
                &key,
                signer,
                Method::POST,
                &format!("/messages/{}/{channel}/numbers", m.room),
                None,
            )
            .await?;
        Ok(number)
    }

    /// Makes a member an admin (admins only): a signed state change, then the admin key
    /// sealed to them. Like every admin change here (and [`Client::kick`]), one that
    /// stopped part-way is finished by running it again; one already in place does nothing.
    pub async fn grant_admin(
        &self,
        me: &Identity,
        m: &mut Membership,
        user: UserId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        self.change_admins(me, m, &[(user, true)], pins).await
    }

    /// Takes admin from a member (admins only): the admin key is replaced and re-shared
    /// with the admins who stay.
    pub async fn revoke_admin(
        &self,
        me: &Identity,
        m: &mut Membership,
        user: UserId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        self.change_admins(me, m, &[(user, false)], pins).await
    }

    /// Hands admin to a member and gives it up, in one signed state change.
    pub async fn transfer_admin(
        &self,
        me: &Identity,
        m: &mut Membership,
        user: UserId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        if user == me.user_id() {
            return Err(ClientError::Input("you already are an admin".into()));
        }
        let spine = self.room(m, pins).await?;
        if spine.is_admin(user) {
            // Already an admin: handing over is only stepping down.
            return self
                .change_admins(me, m, &[(me.user_id(), false)], pins)
                .await;
        }
        self.change_admins(me, m, &[(user, true), (me.user_id(), false)], pins)
            .await
    }

    async fn change_admins(
        &self,
        me: &Identity,
        m: &mut Membership,
        changes: &[(UserId, bool)],
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        self.room(m, pins).await?;
        self.share_owed_keys(me, m, pins).await?;
        let mut spine = self.room(m, pins).await?;
        // Already so (an earlier run that stopped part-way, now finished above, or another
        // admin): nothing to do.
        if changes
            .iter()
            .all(|(user, admin)| spine.member(*user).is_some_and(|x| x.admin == *admin))
        {
            return Ok(());
        }
        let mut revoked = false;
        for (user, admin) in changes {
            let member = spine
                .members
                .iter_mut()
                .find(|x| x.user_id == *user)
                .ok_or_else(|| ClientError::Input(format!("{user} is not a member")))?;
            if member.admin == *admin {
                return Err(ClientError::Input(format!(
                    "{user} is {} an admin",
                    if *admin { "already" } else { "not" }
                )));
            }
            member.admin = *admin;
            revoked |= !*admin;
        }
        let mut next = m.clone();
        if revoked {
            next.admin_key = Some(Secret32::random()?);
        }
        // As for a removal (see `Client::kick`): the new admin key is `m`'s as soon as the
        // state is stored, with the admins still owed it; a write without an answer keeps
        // it until the room shows whether it was stored. Either way nobody is left with a
        // room whose admin key no one holds.
        match self.commit(me, m, next.clone(), spine).await {
            Ok(done) => *m = done,
            Err(e) => {
                if revoked && !super::invites::definitive(&e) {
                    m.unsettled = Some(Box::new(Unsettled {
                        next,
                        kind: InviteKind::Admin,
                        by: me.user_id(),
                    }));
                }
                return Err(e);
            }
        }
        m.owed_keys = owed(&m.head.spine, InviteKind::Admin, me.user_id());
        self.share_owed_keys(me, m, pins).await
    }

    /// Deletes a room (admins only). Its messages become unreachable and burn on their own.
    pub async fn delete_room(&self, m: &Membership) -> Result<(), ClientError> {
        self.call_capability::<(), ()>(
            &m.admin()?,
            Signer::Admin(m.room),
            Method::DELETE,
            &format!("/rooms/{}", m.room),
            None,
        )
        .await
    }
}

/// A change whose state write got no answer: the membership it was made with, what its
/// keys are sent as (`Rekey` after a removal, `Admin` after an admin change), and by whom.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Unsettled {
    next: Membership,
    kind: InviteKind,
    by: UserId,
}

/// Who is owed `kind` keys in `spine` after `by` changed it: every other member for new
/// room keys, every other admin for a new admin key.
fn owed(spine: &Spine, kind: InviteKind, by: UserId) -> BTreeMap<UserId, InviteKind> {
    spine
        .members
        .iter()
        .filter(|x| x.user_id != by && (kind != InviteKind::Admin || x.admin))
        .map(|x| (x.user_id, kind))
        .collect()
}

/// Signs `spine` with `me`'s directory key and seals it under `keys`' current master key.
pub(super) fn sign_and_seal(
    me: &Identity,
    keys: &Membership,
    spine: &Spine,
) -> Result<(Blob, Blob), ClientError> {
    let state = serde_json::to_vec(spine).map_err(|e| ClientError::Internal(e.to_string()))?;
    let signature = Signature(
        me.signing_key()
            .sign(&[SIGN_DOMAIN, &state].concat())
            .to_bytes(),
    );
    let hash = state_hash(&state);
    let signed = SignedSpine {
        state: Blob(state),
        signer: me.user_id(),
        key_version: me.bundle.version,
        signature,
    };
    let json = serde_json::to_vec(&signed).map_err(|e| ClientError::Internal(e.to_string()))?;
    let (_, master) = keys.master()?;
    let sealed = seal(
        &spine_key(master, spine.room),
        &json,
        &spine_aad(spine.room, spine.version),
    )?;
    Ok((sealed, hash))
}

impl Membership {
    /// A membership starting at a verified head, holding the master key of its epoch.
    pub(crate) fn joined(room: RoomId, head: Head, master: Secret32) -> Self {
        let epoch = head.spine.epoch;
        Self {
            room,
            master_keys: [(epoch, master)].into_iter().collect(),
            admin_key: None,
            channel_keys: BTreeMap::new(),
            head,
            sent: BTreeMap::new(),
            avatar_requests: BTreeMap::new(),
            owed_keys: Default::default(),
            unsettled: None,
        }
    }

    /// The same membership with every key of a new epoch (and a new admin key if asked).
    fn rekeyed(&self, new_admin_key: bool) -> Result<Self, ClientError> {
        let mut next = self.clone();
        let epoch = self.head.spine.epoch + 1;
        next.master_keys.insert(epoch, Secret32::random()?);
        for c in &self.head.spine.channels {
            next.channel_keys
                .entry(c.id)
                .or_default()
                .insert(epoch, Secret32::random()?);
        }
        if new_admin_key {
            next.admin_key = Some(Secret32::random()?);
        }
        Ok(next)
    }

    /// The capability keys the next state lists: those of the keys held, and for a
    /// channel whose key this admin was never sent, the one the current state lists (it
    /// cannot change without a re-key, which makes every channel's key anew).
    fn capabilities_for_state(&self) -> Result<CapabilityKeys, ClientError> {
        let mut caps = self.capabilities()?;
        for (c, key) in &self.head.spine.channel_keys {
            caps.channels.entry(*c).or_insert(*key);
        }
        Ok(caps)
    }

    /// Whether `keys` are exactly the ones `spine` signed for: the check that makes a key
    /// handed over in an invitation the room's, whoever sent it.
    pub(crate) fn keys_match(spine: &Spine, keys: &CapabilityKeys) -> bool {
        let signed = spine.capability_keys();
        signed.member == keys.member
            && keys
                .channels
                .iter()
                .all(|(c, k)| signed.channels.get(c) == Some(k))
    }

    /// Takes in another copy of this membership (from another device, after a write
    /// conflict): every key either holds, by epoch, and the newer verified head. Nothing
    /// newer is ever replaced by something older.
    pub fn merge(&mut self, other: Membership) {
        for (e, k) in other.master_keys {
            self.master_keys.entry(e).or_insert(k);
        }
        for (c, keys) in other.channel_keys {
            let mine = self.channel_keys.entry(c).or_default();
            for (e, k) in keys {
                mine.entry(e).or_insert(k);
            }
        }
        for (c, mark) in other.sent {
            let mine = self.sent.entry(c).or_insert_with(|| mark.clone());
            if mark.seq > mine.seq {
                *mine = mark;
            }
        }
        for (user, avatar) in other.avatar_requests {
            self.avatar_requests.entry(user).or_insert(avatar);
        }
        self.owed_keys.extend(other.owed_keys);
        if self.unsettled.is_none() {
            self.unsettled = other.unsettled;
        }
        if other.head.spine.version > self.head.spine.version {
            self.head = other.head;
            // An admin key is worth keeping only while it is the room's.
            if other.admin_key.is_some() {
                self.admin_key = other.admin_key;
            }
        } else if self.admin_key.is_none() {
            self.admin_key = other.admin_key;
        }
        if !self.holds_admin_key() {
            self.admin_key = None;
        }
    }

    /// Installs keys from an invitation that verified against `spine` (the state at the
    /// invitation's head): the master key of its epoch, its channel keys, and the admin
    /// key if it is the current one. Never replaces a key; says whether anything was new.
    pub(crate) fn install(
        &mut self,
        spine: &Spine,
        master: &Secret32,
        channels: &BTreeMap<ChannelId, Secret32>,
        admin: Option<&Secret32>,
    ) -> bool {
        let mut added = false;
        if let std::collections::btree_map::Entry::Vacant(slot) =
            self.master_keys.entry(spine.epoch)
        {
            slot.insert(master.clone());
            added = true;
        }
        for (c, k) in channels {
            let keys = self.channel_keys.entry(*c).or_default();
            if let std::collections::btree_map::Entry::Vacant(slot) = keys.entry(spine.epoch) {
                slot.insert(k.clone());
                added = true;
            }
        }
        if let Some(a) = admin {
            let key: VerifyKey = super::capabilities::admin_capability(a)
                .verifying_key()
                .into();
            if key == self.head.spine.admin_key && self.admin_key.as_ref() != Some(a) {
                self.admin_key = Some(a.clone());
                added = true;
            }
        }
        added
    }
}

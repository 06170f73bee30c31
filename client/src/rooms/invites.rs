//! Invitations, re-keyings and admin grants: a room's keys for one recipient, signed by
//! the sender and HPKE-sealed to the recipient's directory key, naming the signed room
//! version (its number and hash) the keys belong to.
//!
//! A client installs keys only where they match the signed room state: a newcomer anchors
//! on the version the inviter named (it must hash as named and list the inviter as an admin
//! and the newcomer as a member); an existing member verifies the chain from its pin to the
//! named version. Either way the keys must derive the capability keys that version lists,
//! so keys from anyone else, a replayed invitation or a state the server made up are
//! refused, and nothing already held is ever replaced.
//!
//! The same envelope carries members' requests to the admins: an avatar to show, or a
//! request to be removed (leaving), each signed by the member and checked against the
//! signed state before an admin's client acts on it.

use std::collections::BTreeMap;

use cinder_proto::api::limits as api_limits;
use cinder_proto::{Blob, ChannelId, EnvelopeId, KeyBundle, RoomId, Signature, UserId, VerifyKey};
use ed25519_dalek::Signer as _;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

use super::capabilities::{CapabilityKeys, channel_capability, member_capability};
use super::state::Head;
use super::{Membership, Secret32};
use crate::directory::KeyCache;
use crate::{Client, ClientError, Identity};

/// Why keys are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InviteKind {
    /// Into a room the recipient was just added to.
    Join,
    /// New keys after a removal, for a member who stays.
    Rekey,
    /// The admin key, for a member who is (still) an admin.
    Admin,
    /// From a member to the room's admins: please show this avatar for me.
    Avatar,
    /// From a member to the room's admins: remove me and re-key. Signed by the leaver's
    /// directory key and naming the room, so nobody can leave in someone else's name or
    /// for another room.
    Leave,
}

/// What an invitation carries, signed by its sender.
#[derive(Serialize, Deserialize)]
pub(crate) struct InviteBody {
    kind: InviteKind,
    room: RoomId,
    recipient: UserId,
    from: UserId,
    /// The signed room version the keys belong to, and its hash.
    head_version: u64,
    head_hash: Blob,
    master_key: Secret32,
    channel_keys: BTreeMap<ChannelId, Secret32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin_key: Option<Secret32>,
    /// With [`InviteKind::Avatar`]: the sender's avatar, sealed for the head's epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    avatar: Option<super::avatars::AvatarRef>,
}

/// What is HPKE-sealed: the body's exact bytes and the sender's signature over them.
#[derive(Serialize, Deserialize)]
pub(crate) struct SignedInvite {
    pub(crate) body: Blob,
    pub(crate) signature: Signature,
}

pub(crate) const INVITE_INFO: &[u8] = b"cinder/invite/v2";
pub(crate) const INVITE_DOMAIN: &[u8] = b"cinder/invite-signature/v2\0";

/// What became of one envelope.
enum Fate {
    /// Used or refused for good: delete it.
    Done,
    /// Names a room version this device cannot reach yet: keep it for a later try.
    Keep,
    /// A genuine leave request from this member, for this admin to apply: deleted once
    /// they are removed, kept if removing them fails for now.
    Leave(UserId),
}

impl Client {
    /// Invites a user (admins only): adds them to the signed state, then seals the room's
    /// keys at that version to their verified directory key. Inviting a member again
    /// re-sends the current keys (after an interrupted re-key, say).
    pub async fn invite(
        &self,
        me: &Identity,
        m: &mut Membership,
        invitee: &KeyBundle,
        name: &str,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<(), ClientError> {
        let mut spine = self.room(m, pins).await?;
        if spine.member(invitee.user_id).is_none() {
            spine.members.push(super::SpineMember {
                user_id: invitee.user_id,
                name: name.into(),
                status: String::new(),
                admin: false,
                avatar: None,
            });
            let next = m.clone();
            *m = self.commit(me, m, next, spine).await?;
        }
        self.send_keys(me, m, invitee, InviteKind::Join).await
    }

    /// Seals `m`'s current keys at its head for `to`: the admin key too if the state lists
    /// them as an admin.
    pub(crate) async fn send_keys(
        &self,
        me: &Identity,
        m: &Membership,
        to: &KeyBundle,
        kind: InviteKind,
    ) -> Result<(), ClientError> {
        self.send_request(me, m, to, kind, None).await
    }

    /// The envelope behind [`Client::send_keys`], and a member's avatar request to an admin
    /// (which carries the room's keys too, proving the sender holds them).
    pub(crate) async fn send_request(
        &self,
        me: &Identity,
        m: &Membership,
        to: &KeyBundle,
        kind: InviteKind,
        avatar: Option<super::avatars::AvatarRef>,
    ) -> Result<(), ClientError> {
        let head = m.spine();
        let (_, master) = m.master()?;
        let body = InviteBody {
            kind,
            room: m.room,
            recipient: to.user_id,
            from: me.user_id(),
            head_version: head.version,
            head_hash: m.head_hash().clone(),
            master_key: master.clone(),
            channel_keys: head
                .channels
                .iter()
                .filter_map(|c| m.channel_key(c.id).ok().map(|(_, k)| (c.id, k.clone())))
                .collect(),
            admin_key: if head.is_admin(to.user_id)
                && !matches!(kind, InviteKind::Avatar | InviteKind::Leave)
            {
                m.admin_key.clone()
            } else {
                None
            },
            avatar,
        };
        let body = crate::secret::exposing(|| serde_json::to_vec(&body))
            .map_err(|e| ClientError::Internal(e.to_string()))?;
        let signature = Signature(
            me.signing_key()
                .sign(&[INVITE_DOMAIN, &body].concat())
                .to_bytes(),
        );
        let plaintext = serde_json::to_vec(&SignedInvite {
            body: Blob(body),
            signature,
        })
        .map_err(|e| ClientError::Internal(e.to_string()))?;
        let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(to.hpke_key.as_bytes())
            .map_err(|_| {
                ClientError::Verification("the invitee's HPKE key is not a valid X25519 key".into())
            })?;
        let (encapped, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &pk,
            INVITE_INFO,
            &plaintext,
            &to.user_id.0,
            &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
        )
        .map_err(|_| ClientError::Internal("HPKE sealing failed".into()))?;
        let sealed = [encapped.to_bytes().as_slice(), &ct].concat();
        if sealed.len() > api_limits::MAX_ENVELOPE_BYTES {
            return Err(ClientError::Input(
                "this room has too many channels to fit one invitation".into(),
            ));
        }
        self.drop_envelope(me, to.user_id, sealed, None)
            .await
            .map(drop)
    }

    /// Opens every envelope in the inbox and installs the keys of those that verify against
    /// the signed room state (see the module's introduction). Returns the rooms joined or
    /// given new keys. Envelopes that are forged, replayed or used are deleted; ones that
    /// name a room version this device cannot reach yet are kept; a failure to ask the
    /// server (a 5xx, a 429, no connection) stops here and deletes nothing unchecked.
    pub async fn accept_invites(
        &self,
        me: &Identity,
        memberships: &mut BTreeMap<RoomId, Membership>,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<Vec<RoomId>, ClientError> {
        self.process_inbox(me, memberships, pins, true).await
    }

    /// Like [`Client::accept_invites`], but only for rooms already joined: new keys after a
    /// removal, a new channel's key, the admin key. Invitations to other rooms stay in the
    /// inbox for the user to accept or not. Apps call this before acting on a room.
    ///
    /// For an admin (here and in [`Client::accept_invites`]), genuine leave requests are
    /// applied at once: their senders are removed with a new key epoch, as by a kick, so
    /// what they held stops working as early as an admin's client can make it.
    pub async fn take_keys(
        &self,
        me: &Identity,
        memberships: &mut BTreeMap<RoomId, Membership>,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<Vec<RoomId>, ClientError> {
        self.process_inbox(me, memberships, pins, false).await
    }

    async fn process_inbox(
        &self,
        me: &Identity,
        memberships: &mut BTreeMap<RoomId, Membership>,
        pins: &mut BTreeMap<UserId, KeyBundle>,
        join: bool,
    ) -> Result<Vec<RoomId>, ClientError> {
        let mut by_room: BTreeMap<RoomId, Vec<(EnvelopeId, InviteBody)>> = BTreeMap::new();
        let mut after = None;
        let mut taken = std::collections::BTreeSet::new();
        loop {
            let page = self.inbox(me, after, None).await?;
            // A page with no envelope not seen before ends the listing: an inbox is bounded,
            // so only a lying server repeats its pages, and this loop would follow it forever.
            let mut fresh = page
                .envelopes
                .iter()
                .filter(|e| taken.insert(e.id))
                .peekable();
            if fresh.peek().is_none() {
                break;
            }
            for envelope in fresh {
                match self
                    .open_invite(me, &envelope.sealed, envelope.sender, pins)
                    .await
                {
                    Ok(body) => by_room
                        .entry(body.room)
                        .or_default()
                        .push((envelope.id, body)),
                    Err(e) if definitive(&e) => self.delete_envelope(me, envelope.id).await?,
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let mut changed = Vec::new();
        for (room, invites) in by_room {
            if !join && !memberships.contains_key(&room) {
                continue;
            }
            let mut cache = KeyCache::default();
            let (next, fates) = self
                .accept_room(me, memberships.get(&room), room, &invites, pins, &mut cache)
                .await?;
            if let Some(next) = next {
                memberships.insert(room, next);
                changed.push(room);
            }
            let leaving: Vec<UserId> = fates
                .iter()
                .filter_map(|f| match f {
                    Fate::Leave(user) => Some(*user),
                    _ => None,
                })
                .collect();
            let mut left = false;
            if !leaving.is_empty()
                && let Some(m) = memberships.get_mut(&room)
            {
                // Applied at once, like a kick: what the leavers held stops working for
                // anything new. A failure (another admin removed them first, a 409, no
                // connection) keeps the requests for the next inbox read.
                let before = m.spine().version;
                left = self.remove_members(me, m, &leaving, pins).await.is_ok();
                if m.spine().version != before && !changed.contains(&room) {
                    changed.push(room);
                }
            }
            for ((id, _), fate) in invites.iter().zip(fates) {
                if matches!(fate, Fate::Done) || (left && matches!(fate, Fate::Leave(_))) {
                    self.delete_envelope(me, *id).await?;
                }
            }
        }
        Ok(changed)
    }

    /// One room's invitations: the membership they verifiably give or extend (`None` if
    /// nothing changed), and what to do with each envelope.
    async fn accept_room(
        &self,
        me: &Identity,
        current: Option<&Membership>,
        room: RoomId,
        invites: &[(EnvelopeId, InviteBody)],
        pins: &mut BTreeMap<UserId, KeyBundle>,
        cache: &mut KeyCache,
    ) -> Result<(Option<Membership>, Vec<Fate>), ClientError> {
        let extra: Vec<&Secret32> = invites.iter().map(|(_, b)| &b.master_key).collect();
        let mut seen: BTreeMap<u64, Head> = BTreeMap::new();
        let mut m = match current {
            Some(m) => m.clone(),
            None => {
                let mut joined = None;
                let mut joins: Vec<&InviteBody> = invites
                    .iter()
                    .map(|(_, b)| b)
                    .filter(|b| b.kind == InviteKind::Join)
                    .collect();
                joins.sort_by_key(|b| std::cmp::Reverse(b.head_version));
                for b in joins {
                    let named = (b.head_version, &b.head_hash, b.from);
                    match self.anchor(me, room, &extra, named, pins, cache).await {
                        Ok((head, master)) => {
                            joined = Some(Membership::joined(room, head, master));
                            break;
                        }
                        Err(e) if definitive(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                match joined {
                    Some(m) => m,
                    // Nothing anchors: none of these can ever be used by a newcomer.
                    None => return Ok((None, invites.iter().map(|_| Fate::Done).collect())),
                }
            }
        };
        let start = m.clone();
        seen.insert(m.spine().version, m.head.clone());
        match self
            .sync(&mut m, &extra, pins, cache, Some(&mut seen))
            .await
        {
            Ok(()) => {}
            // Stuck part-way (keys of a later epoch not here yet) or shut out: use what
            // verified so far.
            Err(e) if definitive(&e) => {}
            Err(e) => return Err(e),
        }
        // Keys sent at a version this device has since moved past (it read the room more
        // often than its inbox) are checked against that version, found by hash links
        // back from the pin.
        // The version before each head is needed too: whoever sent the keys may have been
        // an admin only until that head (handing over admin).
        if let Some(oldest) = invites
            .iter()
            .flat_map(|(_, b)| [b.head_version, b.head_version.saturating_sub(1)])
            .filter(|v| *v >= 1 && !seen.contains_key(v) && *v <= m.spine().version)
            .min()
        {
            match self.ancestors(&m, oldest.saturating_sub(1), &extra).await {
                Ok(found) => seen.extend(found),
                Err(e) if definitive(&e) => {}
                Err(e) => return Err(e),
            }
        }
        let mut fates = Vec::new();
        let mut installed = current.is_none();
        for (_, b) in invites {
            let fate = match seen.get(&b.head_version) {
                Some(head) if b.kind == InviteKind::Avatar => {
                    // A member's avatar for this admin to sign into the next state.
                    if let Some(avatar) = avatar_request(me, head, b) {
                        m.avatar_requests.insert(b.from, avatar);
                        installed = true;
                    }
                    Fate::Done
                }
                Some(head) if b.kind == InviteKind::Leave => {
                    match leave_request(me, head, m.spine(), b) {
                        Some(user) if m.spine().member(user).is_some() && m.holds_admin_key() => {
                            Fate::Leave(user)
                        }
                        // Genuine, but this device cannot remove them yet (the admin key
                        // has not come): keep it.
                        Some(user)
                            if m.spine().member(user).is_some()
                                && m.spine().is_admin(me.user_id()) =>
                        {
                            Fate::Keep
                        }
                        // Forged, stale, already removed, or no longer this admin's to do.
                        _ => Fate::Done,
                    }
                }
                Some(head) if genuine(me, head, seen.get(&b.head_version.saturating_sub(1)), b) => {
                    installed |= m.install(
                        &head.spine,
                        &b.master_key,
                        &b.channel_keys,
                        b.admin_key.as_ref(),
                    );
                    Fate::Done
                }
                Some(_) => Fate::Done,
                None if b.head_version <= m.spine().version => Fate::Done,
                None => Fate::Keep,
            };
            fates.push(fate);
        }
        let moved = m.spine().version != start.spine().version;
        Ok(((installed || moved).then_some(m), fates))
    }

    async fn open_invite(
        &self,
        me: &Identity,
        sealed: &Blob,
        sender: UserId,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<InviteBody, ClientError> {
        let (body, signed) = unseal_invite(me, sealed, sender)?;
        let sender_keys = self.verified_keys(sender, pins.get(&sender)).await?;
        invite_signed_by(&sender_keys.sign_key, &signed)?;
        pins.insert(sender, sender_keys);
        Ok(body)
    }
}

fn bad_invite(why: &str) -> ClientError {
    ClientError::Verification(format!("an invitation {why}"))
}

/// Opens an invitation sealed to `me` and parses it, checking that it names `me` as its
/// recipient and `sender` as its sender. Its signature is checked apart
/// ([`invite_signed_by`]), once the sender's keys are verified.
pub(crate) fn unseal_invite(
    me: &Identity,
    sealed: &Blob,
    sender: UserId,
) -> Result<(InviteBody, SignedInvite), ClientError> {
    let bad = bad_invite;
    let (encapped, ct) = sealed
        .0
        .split_at_checked(32)
        .ok_or_else(|| bad("is truncated"))?;
    let encapped = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(encapped)
        .map_err(|_| bad("is malformed"))?;
    let (sk, _) = me.seeds.hpke_keypair();
    let plaintext = hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk,
        &encapped,
        INVITE_INFO,
        ct,
        &me.user_id().0,
    )
    .map_err(|_| bad("does not open with this user's key"))?;
    let signed: SignedInvite =
        serde_json::from_slice(&plaintext).map_err(|_| bad("is malformed"))?;
    let body: InviteBody =
        serde_json::from_slice(&signed.body.0).map_err(|_| bad("is malformed"))?;
    if body.recipient != me.user_id() || body.from != sender {
        return Err(bad("names another sender or recipient"));
    }
    Ok((body, signed))
}

/// Whether `key` (the sender's verified directory key) signed the invitation.
pub(crate) fn invite_signed_by(key: &VerifyKey, signed: &SignedInvite) -> Result<(), ClientError> {
    key.verify(&[INVITE_DOMAIN, &signed.body.0].concat(), &signed.signature)
        .map_err(|_| bad_invite("is not signed by its sender"))
}

/// The avatar a member asks this admin to show, if the request is genuine: from a member
/// of the verified state at its head, to an admin of it, holding the room's keys, for that
/// state's epoch.
fn avatar_request(me: &Identity, head: &Head, b: &InviteBody) -> Option<super::avatars::AvatarRef> {
    let s = &head.spine;
    let avatar = b.avatar.clone()?;
    let fine = head.hash == b.head_hash
        && b.room == s.room
        && s.member(b.from).is_some()
        && s.is_admin(me.user_id())
        && avatar.epoch == s.epoch
        && Membership::keys_match(s, &offered_keys(s, b));
    fine.then_some(avatar)
}

/// The member asking to leave, if the request is genuine: signed by them (checked when
/// opened), from a member of the verified state at its head, to an admin of it, for that
/// room and holding its keys, and not older than their last removal (`now` is the newest
/// verified state: a request replayed after they were removed and invited back names a
/// state from before that removal, and is refused).
fn leave_request(me: &Identity, head: &Head, now: &super::Spine, b: &InviteBody) -> Option<UserId> {
    let s = &head.spine;
    let stale = now
        .former
        .iter()
        .any(|f| f.user_id == b.from && f.last_epoch >= s.epoch);
    let fine = head.hash == b.head_hash
        && b.room == s.room
        && b.from != me.user_id()
        && s.member(b.from).is_some()
        && s.is_admin(me.user_id())
        && !stale
        && Membership::keys_match(s, &offered_keys(s, b));
    fine.then_some(b.from)
}

fn offered_keys(s: &super::Spine, b: &InviteBody) -> CapabilityKeys {
    CapabilityKeys {
        admin: s.admin_key,
        member: member_capability(&b.master_key, s.room)
            .verifying_key()
            .into(),
        channels: b
            .channel_keys
            .iter()
            .map(|(c, k)| (*c, channel_capability(k, s.room, *c).verifying_key().into()))
            .collect(),
    }
}

/// Whether an invitation's keys are the ones the verified state at its head lists, sent
/// to a member of it by an admin of it or of the state before (an admin who just handed
/// over admin sends the key to the new one).
fn genuine(me: &Identity, head: &Head, before: Option<&Head>, b: &InviteBody) -> bool {
    let s = &head.spine;
    let sender_admin = s.is_admin(b.from) || before.is_some_and(|p| p.spine.is_admin(b.from));
    if head.hash != b.head_hash
        || !sender_admin
        || s.member(me.user_id()).is_none()
        || b.room != s.room
    {
        return false;
    }
    Membership::keys_match(s, &offered_keys(s, b))
}

/// Whether an error settles the question for good (a forgery, a refusal) rather than being
/// a failure to ask (no connection, a 5xx, a 429), after which an envelope must be kept.
pub(super) fn definitive(e: &ClientError) -> bool {
    match e {
        ClientError::Verification(_) => true,
        ClientError::Api { status, .. } => (400..500).contains(status) && *status != 429,
        _ => false,
    }
}

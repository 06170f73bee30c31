//! Avatars. The picture is the owner's: it lives in their enclave (sealed under the enclave
//! key). For each room it is shown in, the owner's client seals a copy under a key derived
//! from that room's master key (so every member of the epoch can open it, and nobody
//! else), uploads it with the member capability, and the member's entry in the signed room
//! state points at it (media id, size, SHA-256, epoch).
//!
//! Only admins sign room states, so a member who is not an admin sends the pointer to the
//! room's admins in a signed, HPKE-sealed envelope; an admin's client puts it into the
//! next state it signs. A removal's new epoch re-encrypts every avatar under the new key
//! (the removing admin's client does it), so a removed member cannot open the new copies,
//! and no copy outlives its epoch in a verified state.

use std::collections::BTreeMap;

use cinder_proto::media::{DownloadGrant, UploadGrant, UploadRequest};
use cinder_proto::{Blob, KeyBundle, MediaId, RoomId, Signer, UserId};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::capabilities::derive;
use super::invites::InviteKind;
use super::{Membership, Secret32};
use crate::media::{Attachment, Opener, SEGMENT, Sealer, sealed_len, to_storage, transfer_failed};
use crate::{Client, ClientError, Identity};

/// The largest avatar picture, in bytes: it is kept whole in the owner's enclave.
pub const MAX_AVATAR_BYTES: usize = 64 * 1024;

/// Where a member's avatar is, as the signed room state lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvatarRef {
    /// The object, under the room's avatars.
    pub media_id: MediaId,
    /// The picture's size in bytes.
    pub size: u64,
    /// SHA-256 of the picture.
    pub sha256: Blob,
    /// The key epoch whose master key seals it.
    pub epoch: u64,
}

/// The key one copy is sealed under: from the epoch's master key, the room, the owner and
/// the object's (random, server-chosen) id, so no two copies share a key.
fn avatar_key(master: &Secret32, room: RoomId, owner: UserId, media: MediaId) -> Secret32 {
    Secret32::from_bytes(derive(
        master.expose(),
        b"avatar",
        &[&room.0, &owner.0, &media.0],
    ))
}

impl Client {
    /// Seals `picture` for room `m` (current epoch) on behalf of `owner` and uploads it.
    pub(crate) async fn upload_avatar(
        &self,
        m: &Membership,
        owner: UserId,
        picture: &[u8],
    ) -> Result<AvatarRef, ClientError> {
        if picture.is_empty() || picture.len() > MAX_AVATAR_BYTES {
            return Err(ClientError::Input(format!(
                "an avatar holds 1 to {MAX_AVATAR_BYTES} bytes"
            )));
        }
        self.upload_avatar_with(m, m, owner, picture).await
    }

    /// Sets `me`'s avatar in room `m` to `picture`: uploads a copy sealed for the room, then
    /// (as an admin) signs the state that points at it, or (as a member) asks the room's
    /// admins to, in a signed envelope. Returns whether the state already shows it.
    pub async fn set_avatar(
        &self,
        me: &Identity,
        m: &mut Membership,
        picture: &[u8],
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<bool, ClientError> {
        let mut spine = self.room(m, pins).await?;
        let avatar = self.upload_avatar(m, me.user_id(), picture).await?;
        if spine.is_admin(me.user_id()) && m.holds_admin_key() {
            let mine = spine
                .members
                .iter_mut()
                .find(|x| x.user_id == me.user_id())
                .ok_or_else(|| ClientError::Input("you are not in this room".into()))?;
            mine.avatar = Some(avatar);
            let next = m.clone();
            *m = self.commit(me, m, next, spine).await?;
            return Ok(true);
        }
        let admins: Vec<UserId> = spine
            .members
            .iter()
            .filter(|x| x.admin)
            .map(|x| x.user_id)
            .collect();
        for admin in admins {
            let keys = self.verified_keys(admin, pins.get(&admin)).await?;
            self.send_request(me, m, &keys, InviteKind::Avatar, Some(avatar.clone()))
                .await?;
            pins.insert(admin, keys);
        }
        Ok(false)
    }

    /// Puts the avatars members asked for into the next signed state (admins only), if
    /// each still names the current epoch and its owner is still a member. Returns how
    /// many were applied.
    pub async fn apply_avatar_requests(
        &self,
        me: &Identity,
        m: &mut Membership,
        pins: &mut BTreeMap<UserId, KeyBundle>,
    ) -> Result<usize, ClientError> {
        if m.avatar_requests.is_empty() || !m.holds_admin_key() {
            return Ok(0);
        }
        let mut spine = self.room(m, pins).await?;
        let requests = std::mem::take(&mut m.avatar_requests);
        let mut applied = 0;
        for (user, avatar) in requests {
            if avatar.epoch != spine.epoch {
                continue;
            }
            if let Some(member) = spine.members.iter_mut().find(|x| x.user_id == user)
                && member.avatar.as_ref() != Some(&avatar)
            {
                member.avatar = Some(avatar);
                applied += 1;
            }
        }
        if applied > 0 {
            let next = m.clone();
            *m = self.commit(me, m, next, spine).await?;
        }
        Ok(applied)
    }

    /// A member's avatar in room `m`, opened and checked against the signed state.
    /// `None` if they have none.
    pub async fn avatar(
        &self,
        m: &Membership,
        user: UserId,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let Some(avatar) = m.spine().member(user).and_then(|x| x.avatar.clone()) else {
            return Ok(None);
        };
        let master = m.master_keys.get(&avatar.epoch).ok_or_else(|| {
            ClientError::Verification("an avatar of an epoch this device lacks".into())
        })?;
        self.fetch_avatar(m, master, user, &avatar).await.map(Some)
    }

    async fn fetch_avatar(
        &self,
        m: &Membership,
        master: &Secret32,
        owner: UserId,
        avatar: &AvatarRef,
    ) -> Result<Vec<u8>, ClientError> {
        let grant: DownloadGrant = self
            .call_capability::<(), _>(
                &m.member_key()?,
                Signer::Member(m.room),
                Method::GET,
                &format!("/media/{}/avatars/{}", m.room, avatar.media_id),
                None,
            )
            .await?;
        let wrong_size = || ClientError::Verification("the avatar has the wrong size".into());
        if avatar.size > MAX_AVATAR_BYTES as u64 {
            return Err(wrong_size());
        }
        // Read no more than the signed size allows: a server cannot make this device hold
        // more than one avatar's worth of bytes.
        let expected = sealed_len(avatar.size) as usize;
        let mut body = to_storage(self.http().get(&grant.url), &Default::default(), "avatar")
            .await?
            .bytes_stream();
        let mut sealed = Vec::with_capacity(expected);
        while let Some(chunk) = futures::StreamExt::next(&mut body).await {
            let chunk = chunk.map_err(|e| transfer_failed(None, e.without_url().to_string()))?;
            if sealed.len() + chunk.len() > expected {
                return Err(wrong_size());
            }
            sealed.extend_from_slice(&chunk);
        }
        if sealed.len() != expected {
            return Err(wrong_size());
        }
        let attachment = Attachment {
            media_id: avatar.media_id,
            name: "avatar".into(),
            size: avatar.size,
            sha256: avatar.sha256.clone(),
            key: avatar_key(master, m.room, owner, avatar.media_id),
            burn_at: None,
        };
        let mut opener = Opener::new(&attachment);
        let mut picture = opener.feed(&sealed)?;
        picture.extend(opener.finish(&attachment.sha256)?);
        Ok(picture)
    }

    /// For a re-key: every avatar in `spine` (sealed under `old`'s epoch) opened and sealed
    /// again under `next`'s new master key. One that cannot be fetched or opened is dropped.
    pub(crate) async fn reseal_avatars(
        &self,
        old: &Membership,
        next: &Membership,
        spine: &mut super::Spine,
    ) -> Result<(), ClientError> {
        for member in &mut spine.members {
            let Some(avatar) = member.avatar.take() else {
                continue;
            };
            let Some(master) = old.master_keys.get(&avatar.epoch) else {
                continue;
            };
            match self
                .fetch_avatar(old, master, member.user_id, &avatar)
                .await
            {
                Ok(picture) => {
                    // Uploaded with the old capability, which still verifies until the
                    // new state is stored; sealed under the new epoch's key.
                    let copy = self
                        .upload_avatar_with(old, next, member.user_id, &picture)
                        .await?;
                    member.avatar = Some(copy);
                }
                Err(ClientError::Verification(_) | ClientError::Transfer { .. }) => {}
                Err(e) if e.code().is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Uploads with `auth`'s member capability a copy sealed under `keys`' current master.
    async fn upload_avatar_with(
        &self,
        auth: &Membership,
        keys: &Membership,
        owner: UserId,
        picture: &[u8],
    ) -> Result<AvatarRef, ClientError> {
        let size = picture.len() as u64;
        let grant: UploadGrant = self
            .call_capability(
                &auth.member_key()?,
                Signer::Member(auth.room),
                Method::POST,
                &format!("/media/{}/avatars", auth.room),
                Some(&UploadRequest {
                    size: sealed_len(size),
                }),
            )
            .await?;
        let (epoch, master) = keys.master()?;
        let key = avatar_key(master, auth.room, owner, grant.media_id);
        let mut sealer = Sealer::new(&key, grant.media_id, size);
        let mut sealed = Vec::new();
        for segment in picture.chunks(SEGMENT) {
            sealed.extend(sealer.seal(segment.to_vec())?);
        }
        to_storage(
            self.http().put(&grant.url).body(sealed),
            &grant.headers,
            "avatar",
        )
        .await?;
        Ok(AvatarRef {
            media_id: grant.media_id,
            size,
            sha256: sealer.finish()?,
            epoch,
        })
    }
}

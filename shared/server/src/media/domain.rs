//! Media rules: who gets a URL for which object, and for how long.

use cinder_proto::media::{DownloadGrant, ObjectKey, UploadGrant, limits};
use cinder_proto::{MediaId, RoomId, Signer, Timestamp};

use crate::shards::domain::require_channel;
use crate::store::{ChannelRef, MediaUrls, ShardStore};
use crate::{Error, Result};

/// A fresh object id: the server picks it, so no client can aim at another's object.
fn fresh_id() -> Result<MediaId> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    Ok(MediaId(id))
}

fn check_size(size: u64, max_bytes: u64) -> Result<()> {
    if size == 0 || size > max_bytes {
        return Err(Error::limit(
            "size",
            format!("an object holds 1 to {max_bytes} bytes"),
        ));
    }
    Ok(())
}

fn require_member(signer: Signer, room: RoomId) -> Result<()> {
    match signer {
        Signer::Member(r) if r == room => Ok(()),
        _ => Err(Error::Forbidden),
    }
}

async fn upload(
    objects: &dyn MediaUrls,
    key: ObjectKey,
    media: MediaId,
    size: u64,
    now: Timestamp,
) -> Result<UploadGrant> {
    let url = objects
        .upload_url(&key, size, now, limits::URL_TTL_SECS)
        .await?;
    Ok(UploadGrant {
        media_id: media,
        url: url.url,
        headers: url.headers,
        expires_at: now.plus(limits::URL_TTL_SECS),
    })
}

/// An upload URL for an attachment of message `number`, which must have been reserved in
/// this channel (channel capability).
#[tracing::instrument(skip_all)]
pub async fn upload_attachment(
    shards: &dyn ShardStore,
    objects: &dyn MediaUrls,
    signer: Signer,
    (channel, number): (ChannelRef, u64),
    size: u64,
    (now, max_bytes): (Timestamp, u64),
) -> Result<UploadGrant> {
    require_channel(signer, channel)?;
    check_size(size, max_bytes)?;
    if number == 0 || number > shards.reserved(&channel).await? {
        return Err(Error::InvalidParameter(
            "message number: reserve it first".into(),
        ));
    }
    let media = fresh_id()?;
    let key = ObjectKey::Attachment {
        room: channel.room,
        channel: channel.channel,
        number,
        media,
    };
    upload(objects, key, media, size, now).await
}

/// A download URL for an attachment, only while message `number` lives and links it.
#[tracing::instrument(skip_all)]
pub async fn download_attachment(
    shards: &dyn ShardStore,
    objects: &dyn MediaUrls,
    signer: Signer,
    (channel, number, media): (ChannelRef, u64, MediaId),
    now: Timestamp,
) -> Result<DownloadGrant> {
    require_channel(signer, channel)?;
    let linked = shards
        .shard(&channel, number, now)
        .await?
        .is_some_and(|s| s.media.contains(&media));
    if !linked {
        // Burnt, deleted, never posted, or not this message's: all look the same.
        return Err(Error::NotFound("media"));
    }
    let key = ObjectKey::Attachment {
        room: channel.room,
        channel: channel.channel,
        number,
        media,
    };
    let url = objects
        .download_url(&key, now, limits::URL_TTL_SECS)
        .await?;
    Ok(DownloadGrant {
        url: url.url,
        expires_at: now.plus(limits::URL_TTL_SECS),
    })
}

/// An upload URL for an avatar sealed for this room (member capability).
#[tracing::instrument(skip_all)]
pub async fn upload_avatar(
    objects: &dyn MediaUrls,
    signer: Signer,
    room: RoomId,
    size: u64,
    (now, max_bytes): (Timestamp, u64),
) -> Result<UploadGrant> {
    require_member(signer, room)?;
    check_size(size, max_bytes)?;
    let media = fresh_id()?;
    upload(objects, ObjectKey::Avatar { room, media }, media, size, now).await
}

/// A download URL for an avatar of this room (member capability).
#[tracing::instrument(skip_all)]
pub async fn download_avatar(
    objects: &dyn MediaUrls,
    signer: Signer,
    (room, media): (RoomId, MediaId),
    now: Timestamp,
) -> Result<DownloadGrant> {
    require_member(signer, room)?;
    let url = objects
        .download_url(
            &ObjectKey::Avatar { room, media },
            now,
            limits::URL_TTL_SECS,
        )
        .await?;
    Ok(DownloadGrant {
        url: url.url,
        expires_at: now.plus(limits::URL_TTL_SECS),
    })
}

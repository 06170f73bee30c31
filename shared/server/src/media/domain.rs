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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use cinder_proto::rooms::Shard;
    use cinder_proto::{Blob, ChannelId};

    use super::*;
    use crate::store::{Presigned, StoreError};

    const NOW: Timestamp = Timestamp(1_800_000_000);
    const MAX: u64 = 1000;
    const ROOM: RoomId = RoomId([1; 16]);
    const CHANNEL: ChannelRef = ChannelRef {
        room: ROOM,
        channel: ChannelId([2; 16]),
    };
    const CAP: Signer = Signer::Channel(ROOM, ChannelId([2; 16]));
    const MEMBER: Signer = Signer::Member(ROOM);

    /// A channel whose numbers up to `taken` are reserved and whose messages are
    /// `posted` (none burnt: the store's filter is not what these tests are about).
    #[derive(Default)]
    struct Shards {
        taken: u64,
        posted: BTreeMap<u64, Shard>,
    }

    #[async_trait]
    impl ShardStore for Shards {
        async fn reserve(&self, _: &ChannelRef, _: &[u8], _: Timestamp) -> Result<u64, StoreError> {
            Err(StoreError::Conflict)
        }
        async fn reserved(&self, _: &ChannelRef) -> Result<u64, StoreError> {
            Ok(self.taken)
        }
        async fn post_next(&self, _: &ChannelRef, _: &Shard) -> Result<(), StoreError> {
            Err(StoreError::Conflict)
        }
        async fn fill_hold(
            &self,
            _: &ChannelRef,
            _: &Shard,
            _: &[u8],
            _: Timestamp,
        ) -> Result<(), StoreError> {
            Err(StoreError::Conflict)
        }
        async fn shards(
            &self,
            _: &ChannelRef,
            _: u64,
            _: usize,
            _: Timestamp,
        ) -> Result<Vec<Shard>, StoreError> {
            Ok(Vec::new())
        }
        async fn shard(
            &self,
            _: &ChannelRef,
            number: u64,
            _: Timestamp,
        ) -> Result<Option<Shard>, StoreError> {
            Ok(self.posted.get(&number).cloned())
        }
        async fn delete_shard(&self, _: &ChannelRef, _: u64) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    /// Hands out URLs naming the key and, for uploads, the size; remembers every key.
    #[derive(Default)]
    struct Objects(Mutex<Vec<ObjectKey>>);

    #[async_trait]
    impl MediaUrls for Objects {
        async fn upload_url(
            &self,
            key: &ObjectKey,
            size: u64,
            _: Timestamp,
            ttl_secs: u64,
        ) -> Result<Presigned, StoreError> {
            self.0.lock().unwrap().push(*key);
            Ok(Presigned {
                url: format!("put {key:?} for {ttl_secs}"),
                headers: BTreeMap::from([("content-length".to_owned(), size.to_string())]),
            })
        }
        async fn download_url(
            &self,
            key: &ObjectKey,
            _: Timestamp,
            ttl_secs: u64,
        ) -> Result<Presigned, StoreError> {
            self.0.lock().unwrap().push(*key);
            Ok(Presigned {
                url: format!("get {key:?} for {ttl_secs}"),
                headers: BTreeMap::new(),
            })
        }
    }

    fn is_size_limit<T: std::fmt::Debug>(r: &Result<T>) -> bool {
        matches!(r, Err(Error::LimitExceeded { field: Some(f), .. }) if *f == "size")
    }

    fn linking(number: u64, media: &[MediaId]) -> Shard {
        Shard {
            number,
            ciphertext: Blob(vec![7; 8]),
            burn_at: NOW.plus(60),
            posted_at: NOW,
            delete_hash: None,
            media: media.to_vec(),
        }
    }

    #[tokio::test]
    async fn an_attachment_is_one_byte_to_the_most_for_a_number_reserved() {
        let shards = Shards {
            taken: 5,
            ..Shards::default()
        };
        let objects = Objects::default();
        let grant = |number, size| {
            upload_attachment(&shards, &objects, CAP, (CHANNEL, number), size, (NOW, MAX))
        };
        // The largest object, for the highest number reserved: a grant for it alone.
        let full = grant(5, MAX).await.unwrap();
        assert_eq!(full.expires_at, NOW.plus(limits::URL_TTL_SECS));
        assert_eq!(full.headers["content-length"], MAX.to_string());
        let key = ObjectKey::Attachment {
            room: ROOM,
            channel: CHANNEL.channel,
            number: 5,
            media: full.media_id,
        };
        assert_eq!(
            full.url,
            format!("put {key:?} for {}", limits::URL_TTL_SECS)
        );
        // One byte, for the first number: a grant too, with an id of its own.
        let small = grant(1, 1).await.unwrap();
        assert_ne!(small.media_id, full.media_id);
        // Nothing, one byte past the most, no number or one not yet reserved: none.
        assert!(is_size_limit(&grant(5, 0).await));
        assert!(is_size_limit(&grant(5, MAX + 1).await));
        for number in [0, 6] {
            let r = grant(number, 1).await;
            assert!(
                matches!(r, Err(Error::InvalidParameter(_))),
                "{number}: {r:?}"
            );
        }
        // Another channel's capability, or a member's, gets nothing.
        let other = Signer::Channel(ROOM, ChannelId([3; 16]));
        for signer in [other, MEMBER] {
            let r = upload_attachment(&shards, &objects, signer, (CHANNEL, 5), 1, (NOW, MAX)).await;
            assert!(matches!(r, Err(Error::Forbidden)), "{signer}: {r:?}");
        }
        assert_eq!(
            objects.0.lock().unwrap().len(),
            2,
            "only the two grants reached the store"
        );
    }

    #[tokio::test]
    async fn an_attachment_is_served_only_while_its_message_links_it() {
        let (linked, unlinked) = (MediaId([8; 16]), MediaId([9; 16]));
        let shards = Shards {
            taken: 3,
            posted: BTreeMap::from([(2, linking(2, &[linked]))]),
        };
        let objects = Objects::default();
        let get = |signer, number, media| {
            download_attachment(&shards, &objects, signer, (CHANNEL, number, media), NOW)
        };
        let grant = get(CAP, 2, linked).await.unwrap();
        let key = ObjectKey::Attachment {
            room: ROOM,
            channel: CHANNEL.channel,
            number: 2,
            media: linked,
        };
        assert_eq!(
            grant.url,
            format!("get {key:?} for {}", limits::URL_TTL_SECS)
        );
        assert_eq!(grant.expires_at, NOW.plus(limits::URL_TTL_SECS));
        // Another id, a message that does not link it, or none at all: all alike.
        for (number, media) in [(2, unlinked), (3, linked), (1, linked)] {
            let r = get(CAP, number, media).await;
            assert!(
                matches!(r, Err(Error::NotFound("media"))),
                "{number}: {r:?}"
            );
        }
        let r = get(Signer::Channel(ROOM, ChannelId([3; 16])), 2, linked).await;
        assert!(matches!(r, Err(Error::Forbidden)), "{r:?}");
        assert_eq!(*objects.0.lock().unwrap(), [key]);
    }

    #[tokio::test]
    async fn avatars_are_for_the_rooms_own_members() {
        let objects = Objects::default();
        let up = |signer, size| upload_avatar(&objects, signer, ROOM, size, (NOW, MAX));
        let grant = up(MEMBER, MAX).await.unwrap();
        let key = ObjectKey::Avatar {
            room: ROOM,
            media: grant.media_id,
        };
        assert_eq!(
            grant.url,
            format!("put {key:?} for {}", limits::URL_TTL_SECS)
        );
        assert_eq!(grant.expires_at, NOW.plus(limits::URL_TTL_SECS));
        assert_ne!(up(MEMBER, 1).await.unwrap().media_id, grant.media_id);
        assert!(is_size_limit(&up(MEMBER, 0).await));
        assert!(is_size_limit(&up(MEMBER, MAX + 1).await));
        let down = download_avatar(&objects, MEMBER, (ROOM, grant.media_id), NOW)
            .await
            .unwrap();
        assert_eq!(
            down.url,
            format!("get {key:?} for {}", limits::URL_TTL_SECS)
        );
        assert_eq!(down.expires_at, NOW.plus(limits::URL_TTL_SECS));
        // Another room's members, and the room's admin or channel keys, get nothing.
        for signer in [Signer::Member(RoomId([4; 16])), Signer::Admin(ROOM), CAP] {
            let r = up(signer, 1).await;
            assert!(matches!(r, Err(Error::Forbidden)), "{signer}: {r:?}");
            let r = download_avatar(&objects, signer, (ROOM, grant.media_id), NOW).await;
            assert!(matches!(r, Err(Error::Forbidden)), "{signer}: {r:?}");
        }
        assert_eq!(objects.0.lock().unwrap().len(), 3);
    }
}

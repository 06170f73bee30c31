//! Message rules: numbering, the burn horizon, and who may delete.

use cinder_proto::rooms::{DeleteShard, PostShard, Reserved, Shard, ShardPage, limits};
use cinder_proto::{Blob, Signer, Timestamp};
use sha2::{Digest, Sha256};

use crate::store::{ChannelRef, ShardStore, StoreError};
use crate::{Error, Result};

/// Message numbers are stored as signed 64-bit integers; anything larger names no message.
fn check_number(n: u64) -> Result<()> {
    if n > i64::MAX as u64 {
        return Err(Error::InvalidParameter(format!(
            "message number {n} is out of range"
        )));
    }
    Ok(())
}

/// Requires the channel's capability.
pub fn require_channel(signer: Signer, channel: ChannelRef) -> Result<()> {
    match signer {
        Signer::Channel(room, ch) if room == channel.room && ch == channel.channel => Ok(()),
        _ => Err(Error::Forbidden),
    }
}

/// Reserves the next message number: for the channel's capability, to post a message
/// whose attachments are uploaded first (their storage keys name the number), or for the
/// room's admin, who reserves one to record a channel's cut-off before re-keying the room,
/// and may not hold that channel's key (it can reserve, never post or read).
pub async fn reserve(
    shards: &dyn ShardStore,
    signer: Signer,
    channel: ChannelRef,
    now: Timestamp,
) -> Result<Reserved> {
    match signer {
        Signer::Admin(room) if room == channel.room => {}
        _ => require_channel(signer, channel)?,
    }
    hold_next(shards, channel, now).await
}

/// Takes the next number and holds it under a fresh random proof.
async fn hold_next(
    shards: &dyn ShardStore,
    channel: ChannelRef,
    now: Timestamp,
) -> Result<Reserved> {
    let mut hold = [0u8; limits::HOLD_BYTES];
    getrandom::fill(&mut hold).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let expires_at = now.plus(limits::HOLD_SECS);
    let number = shards.reserve(&channel, &hold, expires_at).await?;
    Ok(Reserved {
        number,
        hold: Blob(hold.to_vec()),
        expires_at,
    })
}

/// Stores a message: as the channel's next number (one past the highest taken), or under
/// a number held for the poster. If the number is taken, or the hold has lapsed, the
/// answer is `number_taken` with another number held for the poster, so that a poster's
/// one retry succeeds however many others post at once.
#[tracing::instrument(skip_all, fields(number))]
pub async fn post(
    shards: &dyn ShardStore,
    signer: Signer,
    channel: ChannelRef,
    number: u64,
    req: PostShard,
    now: Timestamp,
    max_burn_secs: u64,
) -> Result<Shard> {
    require_channel(signer, channel)?;
    check_number(number)?;
    if number == 0 {
        return Err(Error::InvalidParameter(
            "message number: messages are numbered from 1".into(),
        ));
    }
    if req.ciphertext.is_empty() || req.ciphertext.len() > limits::MAX_SHARD_BYTES {
        return Err(Error::limit(
            "ciphertext",
            format!("a message holds 1 to {} bytes", limits::MAX_SHARD_BYTES),
        ));
    }
    if req.burn_at <= now || req.burn_at > now.plus(max_burn_secs) {
        return Err(Error::limit(
            "burn_at",
            format!("burn_at must be after now and at most {max_burn_secs} seconds ahead"),
        ));
    }
    if req.delete_hash.as_ref().is_some_and(|h| h.len() != 32) {
        return Err(Error::limit(
            "delete_hash",
            "delete_hash is a 32-byte SHA-256",
        ));
    }
    if req
        .hold
        .as_ref()
        .is_some_and(|h| h.len() != limits::HOLD_BYTES)
    {
        return Err(Error::limit(
            "hold",
            format!("a hold is {} bytes", limits::HOLD_BYTES),
        ));
    }
    check_media(&req.media)?;
    let shard = Shard {
        number,
        ciphertext: req.ciphertext,
        burn_at: req.burn_at,
        posted_at: now,
        delete_hash: req.delete_hash,
        media: req.media,
    };
    let stored = match &req.hold {
        None => shards.post_next(&channel, &shard).await,
        Some(hold) => shards.fill_hold(&channel, &shard, &hold.0, now).await,
    };
    match stored {
        Ok(()) => Ok(shard),
        Err(StoreError::Conflict) => {
            Err(Error::NumberTaken(hold_next(shards, channel, now).await?))
        }
        Err(e) => Err(e.into()),
    }
}

/// A message links at most a few objects, each once.
fn check_media(media: &[cinder_proto::MediaId]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    if media.len() > cinder_proto::media::limits::MAX_MEDIA_PER_MESSAGE
        || !media.iter().all(|m| seen.insert(*m))
    {
        return Err(Error::limit(
            "media",
            format!(
                "a message links at most {} distinct objects",
                cinder_proto::media::limits::MAX_MEDIA_PER_MESSAGE
            ),
        ));
    }
    Ok(())
}

/// A page of unburnt messages after `after`.
pub async fn list(
    shards: &dyn ShardStore,
    signer: Signer,
    channel: ChannelRef,
    after: u64,
    limit: Option<usize>,
    now: Timestamp,
) -> Result<ShardPage> {
    require_channel(signer, channel)?;
    check_number(after)?;
    let limit = match limit {
        None => 50,
        Some(n) if (1..=limits::MAX_SHARD_PAGE).contains(&n) => n,
        Some(_) => {
            return Err(Error::limit(
                "limit",
                format!("limit is 1 to {}", limits::MAX_SHARD_PAGE),
            ));
        }
    };
    let shards = shards.shards(&channel, after, limit, now).await?;
    let next = (shards.len() == limit)
        .then(|| shards.last().map(|s| s.number))
        .flatten();
    Ok(ShardPage { shards, next })
}

/// One unburnt message.
pub async fn get(
    shards: &dyn ShardStore,
    signer: Signer,
    channel: ChannelRef,
    number: u64,
    now: Timestamp,
) -> Result<Shard> {
    require_channel(signer, channel)?;
    check_number(number)?;
    shards
        .shard(&channel, number, now)
        .await?
        .ok_or(Error::NotFound("message"))
}

/// Deletes a message: by the room's admin, or by its sender, who proves it with the secret
/// behind the message's `delete_hash` (and the channel capability).
#[tracing::instrument(skip_all)]
pub async fn delete(
    shards: &dyn ShardStore,
    signer: Signer,
    channel: ChannelRef,
    number: u64,
    proof: Option<DeleteShard>,
    now: Timestamp,
) -> Result<()> {
    check_number(number)?;
    let is_admin = matches!(signer, Signer::Admin(room) if room == channel.room);
    if !is_admin {
        require_channel(signer, channel)?;
    }
    // A burnt message is gone for everyone, whatever the database still holds.
    let shard = shards
        .shard(&channel, number, now)
        .await?
        .ok_or(Error::NotFound("message"))?;
    match signer {
        _ if is_admin => {}
        Signer::Channel(..) => {
            let proven = match (&shard.delete_hash, proof) {
                (Some(hash), Some(p)) => hash.0 == sha256(&p.delete_secret.0),
                _ => false,
            };
            if !proven {
                return Err(Error::Forbidden);
            }
        }
        _ => return Err(Error::Forbidden),
    }
    if shards.delete_shard(&channel, number).await? {
        Ok(())
    } else {
        Err(Error::NotFound("message"))
    }
}

/// SHA-256 of a delete secret, as clients compute `delete_hash`.
pub fn delete_hash_of(secret: &[u8]) -> Blob {
    Blob(sha256(secret))
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use cinder_proto::{ChannelId, MediaId, RoomId};

    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000);
    const HORIZON: u64 = 86_400;

    /// The channel's messages and holds in memory, with the store's contract: numbers
    /// only grow, `post_next` takes exactly one past the highest, burnt messages are
    /// never served.
    #[derive(Default)]
    struct Shards(Mutex<Channel>);

    #[derive(Default)]
    struct Channel {
        taken: u64,
        holds: BTreeMap<u64, (Vec<u8>, Timestamp)>,
        posted: BTreeMap<u64, Shard>,
    }

    #[async_trait]
    impl ShardStore for Shards {
        async fn reserve(
            &self,
            _: &ChannelRef,
            hold: &[u8],
            expires_at: Timestamp,
        ) -> Result<u64, StoreError> {
            let mut c = self.0.lock().unwrap();
            c.taken += 1;
            let n = c.taken;
            c.holds.insert(n, (hold.to_vec(), expires_at));
            Ok(n)
        }
        async fn reserved(&self, _: &ChannelRef) -> Result<u64, StoreError> {
            Ok(self.0.lock().unwrap().taken)
        }
        async fn post_next(&self, _: &ChannelRef, shard: &Shard) -> Result<(), StoreError> {
            let mut c = self.0.lock().unwrap();
            if shard.number != c.taken + 1 {
                return Err(StoreError::Conflict);
            }
            c.taken = shard.number;
            c.posted.insert(shard.number, shard.clone());
            Ok(())
        }
        async fn fill_hold(
            &self,
            _: &ChannelRef,
            shard: &Shard,
            hold: &[u8],
            now: Timestamp,
        ) -> Result<(), StoreError> {
            let mut c = self.0.lock().unwrap();
            match c.holds.get(&shard.number) {
                Some((h, expires)) if h == hold && now < *expires => {}
                _ => return Err(StoreError::Conflict),
            }
            c.holds.remove(&shard.number);
            c.posted.insert(shard.number, shard.clone());
            Ok(())
        }
        async fn shards(
            &self,
            _: &ChannelRef,
            after: u64,
            limit: usize,
            now: Timestamp,
        ) -> Result<Vec<Shard>, StoreError> {
            let c = self.0.lock().unwrap();
            Ok(c.posted
                .range(after + 1..)
                .map(|(_, s)| s)
                .filter(|s| s.burn_at > now)
                .take(limit)
                .cloned()
                .collect())
        }
        async fn shard(
            &self,
            _: &ChannelRef,
            number: u64,
            now: Timestamp,
        ) -> Result<Option<Shard>, StoreError> {
            let c = self.0.lock().unwrap();
            Ok(c.posted.get(&number).filter(|s| s.burn_at > now).cloned())
        }
        async fn delete_shard(&self, _: &ChannelRef, number: u64) -> Result<bool, StoreError> {
            Ok(self.0.lock().unwrap().posted.remove(&number).is_some())
        }
    }

    const CHANNEL: ChannelRef = ChannelRef {
        room: RoomId([1; 16]),
        channel: ChannelId([2; 16]),
    };
    const CAP: Signer = Signer::Channel(RoomId([1; 16]), ChannelId([2; 16]));

    fn message(bytes: usize) -> PostShard {
        PostShard {
            ciphertext: Blob(vec![7; bytes]),
            burn_at: NOW.plus(60),
            delete_hash: None,
            media: Vec::new(),
            hold: None,
        }
    }

    async fn post_as(store: &Shards, number: u64, req: PostShard) -> Result<Shard> {
        post(store, CAP, CHANNEL, number, req, NOW, HORIZON).await
    }

    fn is_limit(r: &Result<impl std::fmt::Debug>, name: &str) -> bool {
        matches!(r, Err(Error::LimitExceeded { field: Some(f), .. }) if *f == name)
    }

    #[test]
    fn numbers_up_to_the_largest_stored_integer_are_in_range() {
        assert!(check_number(i64::MAX as u64).is_ok());
        assert!(matches!(
            check_number(i64::MAX as u64 + 1),
            Err(Error::InvalidParameter(_))
        ));
    }

    #[tokio::test]
    async fn a_message_of_exactly_the_bounds_is_stored_and_one_past_is_refused() {
        let store = Shards::default();
        let full = post_as(&store, 1, message(limits::MAX_SHARD_BYTES))
            .await
            .unwrap();
        assert_eq!(full.ciphertext.len(), limits::MAX_SHARD_BYTES);
        assert_eq!(full.posted_at, NOW);
        let r = post_as(&store, 2, message(limits::MAX_SHARD_BYTES + 1)).await;
        assert!(is_limit(&r, "ciphertext"), "{r:?}");
        let r = post_as(&store, 2, message(0)).await;
        assert!(is_limit(&r, "ciphertext"), "{r:?}");
    }
    #[tokio::test]
    async fn a_message_links_up_to_the_most_objects_each_once() {
        let max = cinder_proto::media::limits::MAX_MEDIA_PER_MESSAGE;
        let ids = |n: usize| (0..n).map(|i| MediaId([i as u8; 16])).collect::<Vec<_>>();
        let store = Shards::default();
        let most = PostShard {
            media: ids(max),
            ..message(1)
        };
        assert_eq!(post_as(&store, 1, most).await.unwrap().media, ids(max));
        let too_many = PostShard {
            media: ids(max + 1),
            ..message(1)
        };
        let r = post_as(&store, 2, too_many).await;
        assert!(is_limit(&r, "media"), "{r:?}");
        let twice = PostShard {
            media: vec![MediaId([1; 16]), MediaId([2; 16]), MediaId([1; 16])],
            ..message(1)
        };
        let r = post_as(&store, 2, twice).await;
        assert!(is_limit(&r, "media"), "{r:?}");
        // Nothing refused was stored.
        assert_eq!(store.0.lock().unwrap().posted.len(), 1);
    }
    #[tokio::test]
    async fn a_page_is_one_to_the_most_messages_and_names_the_next_when_full() {
        let store = Shards::default();
        for n in 1..=3 {
            post_as(&store, n, message(1)).await.unwrap();
        }
        let page = |limit| list(&store, CAP, CHANNEL, 0, limit, NOW);
        for bad in [0, limits::MAX_SHARD_PAGE + 1] {
            let r = page(Some(bad)).await;
            assert!(is_limit(&r, "limit"), "{bad}: {r:?}");
        }
        let most = page(Some(limits::MAX_SHARD_PAGE)).await.unwrap();
        assert_eq!((most.shards.len(), most.next), (3, None));
        let two = page(Some(2)).await.unwrap();
        assert_eq!(
            two.shards.iter().map(|s| s.number).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(two.next, Some(2));
        let one = page(Some(1)).await.unwrap();
        assert_eq!((one.shards.len(), one.next), (1, Some(1)));
        let rest = list(&store, CAP, CHANNEL, 2, None, NOW).await.unwrap();
        assert_eq!((rest.shards.len(), rest.next), (1, None));
    }
}

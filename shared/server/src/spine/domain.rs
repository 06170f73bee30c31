//! Room rules: who may read and change a room, and the bounds on what is stored.

use cinder_proto::rooms::{CreateRoom, Room, SpinePage, UpdateRoom, limits};
use cinder_proto::{Blob, ChannelId, RoomId, Signer, VerifyKey};

use crate::extract::BringsKey;
use crate::store::{RoomStore, StoreError};
use crate::{Error, Result};

impl BringsKey for CreateRoom {
    fn key_for(&self, signer: &Signer) -> Option<VerifyKey> {
        // Creation is signed by the admin key it registers, for the room it names.
        matches!(signer, Signer::Admin(room) if *room == self.room_id).then_some(self.admin_key)
    }
}

fn check_bounds(
    spine: &Blob,
    channels: &std::collections::BTreeMap<ChannelId, VerifyKey>,
) -> Result<()> {
    if spine.is_empty() || spine.len() > limits::MAX_SPINE_BYTES {
        return Err(Error::limit(
            "spine",
            format!("a spine holds 1 to {} bytes", limits::MAX_SPINE_BYTES),
        ));
    }
    if channels.len() > limits::MAX_CHANNELS {
        return Err(Error::limit(
            "channels",
            format!("a room has at most {} channels", limits::MAX_CHANNELS),
        ));
    }
    Ok(())
}

/// Requires an admin signature for `room`.
pub fn require_admin(signer: Signer, room: RoomId) -> Result<()> {
    match signer {
        Signer::Admin(r) if r == room => Ok(()),
        _ => Err(Error::Forbidden),
    }
}

/// Creates a room at version 1.
#[tracing::instrument(skip_all)]
pub async fn create(rooms: &dyn RoomStore, req: CreateRoom) -> Result<Room> {
    check_bounds(&req.spine, &req.channels)?;
    let room = Room {
        room_id: req.room_id,
        version: 1,
        spine: req.spine,
        admin_key: req.admin_key,
        member_key: req.member_key,
        channels: req.channels,
    };
    match rooms.create_room(&room).await {
        Ok(()) => Ok(room),
        Err(StoreError::Conflict) => Err(Error::AlreadyExists("room")),
        Err(e) => Err(e.into()),
    }
}

/// Requires a member or admin signature for `room`: who may read the room.
pub fn require_reader(signer: Signer, room: RoomId) -> Result<()> {
    match signer {
        Signer::Member(r) | Signer::Admin(r) if r == room => Ok(()),
        _ => Err(Error::Forbidden),
    }
}

/// A room, for its members and admins: the record the signature check read (`resolved`),
/// not read again.
pub fn get(signer: Signer, room: RoomId, resolved: Option<Room>) -> Result<Room> {
    require_reader(signer, room)?;
    resolved
        .filter(|r| r.room_id == room)
        .ok_or(Error::NotFound("room"))
}

/// A page of the room's spine log after version `after`, for its members and admins, who
/// check every step of the room's history rather than trusting the latest version alone.
pub async fn spines(
    rooms: &dyn RoomStore,
    (signer, resolved): (Signer, Option<&Room>),
    room: RoomId,
    after: u64,
) -> Result<SpinePage> {
    require_reader(signer, room)?;
    // Versions are stored as signed 64-bit integers; a larger cursor names no version.
    if after > i64::MAX as u64 {
        return Err(Error::InvalidParameter(format!(
            "version {after} is out of range"
        )));
    }
    // The store keeps a deleted room's log; the wire does not serve it, as for the room.
    // (The signature check read the room, and found it live.)
    if resolved.is_none_or(|r| r.room_id != room) {
        return Err(Error::NotFound("room"));
    }
    let entries = rooms.spines(&room, after, limits::MAX_SPINE_PAGE).await?;
    let next = (entries.len() == limits::MAX_SPINE_PAGE)
        .then(|| entries.last().map(|e| e.version))
        .flatten();
    Ok(SpinePage { entries, next })
}

/// Replaces a room's spine and capabilities, if nobody did since `expected_version`.
#[tracing::instrument(skip_all)]
pub async fn update(
    rooms: &dyn RoomStore,
    signer: Signer,
    room: RoomId,
    req: UpdateRoom,
) -> Result<Room> {
    require_admin(signer, room)?;
    check_bounds(&req.spine, &req.channels)?;
    if req.expected_version >= i64::MAX as u64 {
        return Err(Error::VersionConflict);
    }
    let next = Room {
        room_id: room,
        version: req.expected_version + 1,
        spine: req.spine,
        admin_key: req.admin_key,
        member_key: req.member_key,
        channels: req.channels,
    };
    match rooms.update_room(&next).await {
        Ok(()) => Ok(next),
        Err(StoreError::Conflict) => Err(Error::VersionConflict),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a room. Its messages become unreachable (no capability verifies any more) and
/// burn on their own time.
#[tracing::instrument(skip_all)]
pub async fn delete(rooms: &dyn RoomStore, signer: Signer, room: RoomId) -> Result<()> {
    require_admin(signer, room)?;
    if rooms.delete_room(&room).await? {
        Ok(())
    } else {
        Err(Error::NotFound("room"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use cinder_proto::rooms::SpineEntry;

    use super::*;

    /// Rooms and their spine logs in memory, with the store's contract: an update takes
    /// exactly the next version, the log keeps every version's spine and outlives the room.
    /// Live rooms, and every logged spine by (room, version).
    type Held = (HashMap<RoomId, Room>, BTreeMap<(RoomId, u64), Blob>);

    #[derive(Default)]
    struct Rooms(Mutex<Held>);

    #[async_trait]
    impl RoomStore for Rooms {
        async fn create_room(&self, room: &Room) -> Result<(), StoreError> {
            let mut s = self.0.lock().unwrap();
            if s.0.contains_key(&room.room_id) {
                return Err(StoreError::Conflict);
            }
            s.0.insert(room.room_id, room.clone());
            s.1.insert((room.room_id, room.version), room.spine.clone());
            Ok(())
        }
        async fn room(&self, id: &RoomId) -> Result<Option<Room>, StoreError> {
            Ok(self.0.lock().unwrap().0.get(id).cloned())
        }
        async fn update_room(&self, room: &Room) -> Result<(), StoreError> {
            let mut s = self.0.lock().unwrap();
            match s.0.get(&room.room_id) {
                Some(old) if old.version + 1 == room.version => {}
                _ => return Err(StoreError::Conflict),
            }
            s.0.insert(room.room_id, room.clone());
            s.1.insert((room.room_id, room.version), room.spine.clone());
            Ok(())
        }
        async fn spines(
            &self,
            id: &RoomId,
            after: u64,
            limit: usize,
        ) -> Result<Vec<SpineEntry>, StoreError> {
            let s = self.0.lock().unwrap();
            Ok(s.1
                .range((*id, after + 1)..=(*id, u64::MAX))
                .take(limit)
                .map(|(&(_, version), spine)| SpineEntry {
                    version,
                    spine: spine.clone(),
                })
                .collect())
        }
        async fn delete_room(&self, id: &RoomId) -> Result<bool, StoreError> {
            Ok(self.0.lock().unwrap().0.remove(id).is_some())
        }
    }

    const ROOM: RoomId = RoomId([1; 16]);

    fn key(seed: u8) -> VerifyKey {
        VerifyKey::from(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key())
    }

    fn channels(n: usize) -> BTreeMap<ChannelId, VerifyKey> {
        (0..n).map(|i| (ChannelId([i as u8; 16]), key(9))).collect()
    }

    fn creation(spine: usize, channel_count: usize) -> CreateRoom {
        CreateRoom {
            room_id: ROOM,
            spine: Blob(vec![1; spine]),
            admin_key: key(1),
            member_key: key(2),
            channels: channels(channel_count),
        }
    }

    fn update_to(expected_version: u64, spine: usize, channel_count: usize) -> UpdateRoom {
        UpdateRoom {
            expected_version,
            spine: Blob(vec![2; spine]),
            admin_key: key(3),
            member_key: key(4),
            channels: channels(channel_count),
        }
    }

    fn is_limit(r: &Result<impl std::fmt::Debug>, name: &str) -> bool {
        matches!(r, Err(Error::LimitExceeded { field: Some(f), .. }) if *f == name)
    }

    #[tokio::test]
    async fn a_room_of_exactly_the_bounds_is_created_and_updated_and_one_past_is_refused() {
        let rooms = Rooms::default();
        let (max_spine, max_channels) = (limits::MAX_SPINE_BYTES, limits::MAX_CHANNELS);
        for (spine, count, field) in [
            (max_spine + 1, 0, "spine"),
            (0, 0, "spine"),
            (1, max_channels + 1, "channels"),
        ] {
            let r = create(&rooms, creation(spine, count)).await;
            assert!(is_limit(&r, field), "{spine} {count}: {r:?}");
            let r = update(
                &rooms,
                Signer::Admin(ROOM),
                ROOM,
                update_to(1, spine, count),
            )
            .await;
            assert!(is_limit(&r, field), "{spine} {count}: {r:?}");
        }
        let room = create(&rooms, creation(max_spine, max_channels))
            .await
            .unwrap();
        assert_eq!((room.version, room.channels.len()), (1, max_channels));
        let next = update(
            &rooms,
            Signer::Admin(ROOM),
            ROOM,
            update_to(1, max_spine, max_channels),
        )
        .await
        .unwrap();
        assert_eq!((next.version, next.admin_key), (2, key(3)));
        assert_eq!(rooms.room(&ROOM).await.unwrap(), Some(next));
    }
    #[tokio::test]
    async fn the_log_is_read_after_any_stored_version_and_no_further() {
        let rooms = Rooms::default();
        let room = create(&rooms, creation(1, 0)).await.unwrap();
        let reader = (Signer::Member(ROOM), Some(&room));
        let all = spines(&rooms, reader, ROOM, 0).await.unwrap();
        assert_eq!(all.entries.len(), 1);
        // The largest version a store holds is a cursor past everything, not an error.
        let past = spines(&rooms, reader, ROOM, i64::MAX as u64).await.unwrap();
        assert_eq!((past.entries.len(), past.next), (0, None));
        let r = spines(&rooms, reader, ROOM, i64::MAX as u64 + 1).await;
        assert!(matches!(r, Err(Error::InvalidParameter(_))), "{r:?}");
    }
}

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

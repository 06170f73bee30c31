//! The live socket's rules, whatever carries the socket (API Gateway's WebSocket API and
//! the live function in AWS; axum's WebSocket under `make dev`):
//!
//! - [`handle_frame`]: one frame from a connection: subscriptions proved by channel
//!   capability (the HTTP API's signature check, nonce spent once), or dropped.
//! - [`deliveries`]: who to tell of a batch of new and deleted messages, leaving out (and
//!   forgetting) subscriptions proved with a capability key the room has since replaced.
//! - [`Notify`]: how a post tells a live hub in the same process (the dev server).
//! - [`MemoryLive`]: subscriptions held in memory, for a process that holds the sockets too.
//!
//! A notice says "channel C of room R has message N" and nothing else.

mod memory;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use cinder_proto::live::{ClientFrame, Place, ServerFrame, limits, proof_path};
use cinder_proto::{ErrorCode, Timestamp};

pub use memory::MemoryLive;

use crate::store::{ChannelRef, LiveStore, RoomStore, Subscription};
use crate::{Auth, Error};

/// What the live socket's rules need.
#[derive(Clone)]
pub struct LiveState {
    /// Capability authentication (reads rooms for channel keys; spends nonces).
    pub auth: Auth,
    /// Subscriptions.
    pub live: Arc<dyn LiveStore>,
}

/// Tells live connections in this process of a change to a channel. Called after the
/// change is stored; must not block (hand the work to a task).
pub trait Notify: Send + Sync {
    /// `frame` is a [`ServerFrame::Message`] or [`ServerFrame::Deleted`] for `channel`.
    fn notify(&self, channel: ChannelRef, frame: ServerFrame);
}

/// Whether `id` can be a connection id: 1 to 128 characters of base64 and `-_`.
pub fn valid_connection_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
}

fn place_of(channel: ChannelRef) -> Place {
    Place {
        room: channel.room,
        channel: channel.channel,
    }
}

fn channel_of(place: Place) -> ChannelRef {
    ChannelRef {
        room: place.room,
        channel: place.channel,
    }
}

fn frame_error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
    ServerFrame::Error {
        code,
        message: message.into(),
    }
}

/// Takes one frame from `connection` and answers it: a [`ServerFrame::Subscribed`] or
/// [`ServerFrame::Refused`] per channel of a subscription (each proof stands alone), nothing
/// for an unsubscription, or one [`ServerFrame::Error`] for a frame that is not a frame.
pub async fn handle_frame(
    state: &LiveState,
    connection: &str,
    frame: &[u8],
    now: Timestamp,
) -> Vec<ServerFrame> {
    if !valid_connection_id(connection) {
        return vec![frame_error(ErrorCode::InvalidParameter, "connection id")];
    }
    if frame.len() > limits::MAX_FRAME_BYTES {
        return vec![frame_error(
            ErrorCode::BodyTooLarge,
            format!("a frame holds at most {} bytes", limits::MAX_FRAME_BYTES),
        )];
    }
    let frame = match crate::extract::parse_json::<ClientFrame>(frame) {
        Ok(frame) => frame,
        Err(e) => {
            let (_, code) = e.status_and_code();
            return vec![frame_error(code, e.to_string())];
        }
    };
    let count = match &frame {
        ClientFrame::Subscribe { channels } => channels.len(),
        ClientFrame::Unsubscribe { channels } => channels.len(),
    };
    if count > limits::MAX_CHANNELS_PER_FRAME {
        return vec![frame_error(
            ErrorCode::LimitExceeded,
            format!(
                "a frame names at most {} channels",
                limits::MAX_CHANNELS_PER_FRAME
            ),
        )];
    }
    match frame {
        ClientFrame::Subscribe { channels } => {
            let mut out = Vec::with_capacity(channels.len());
            for proof in channels {
                let place = proof.place();
                out.push(match subscribe(state, connection, &proof, now).await {
                    Ok(()) => ServerFrame::Subscribed {
                        room: place.room,
                        channel: place.channel,
                    },
                    Err(e) => ServerFrame::Refused {
                        room: place.room,
                        channel: place.channel,
                        code: e.status_and_code().1,
                    },
                });
            }
            out
        }
        ClientFrame::Unsubscribe { channels } => {
            for place in channels {
                if let Err(e) = state.live.unsubscribe(connection, &channel_of(place)).await {
                    let (_, code) = Error::from(e).status_and_code();
                    return vec![frame_error(code, "the server failed")];
                }
            }
            Vec::new()
        }
    }
}

/// One subscription: the proof must verify as the channel capability's signature of
/// `POST /live/{room}/{channel}`, in the window, with an unspent nonce.
async fn subscribe(
    state: &LiveState,
    connection: &str,
    proof: &cinder_proto::live::Proof,
    now: Timestamp,
) -> crate::Result<()> {
    let path = proof_path(proof.room, proof.channel);
    let verified = state
        .auth
        .verify(
            &proof.as_request(),
            cinder_proto::live::PROOF_METHOD,
            &path,
            b"",
        )
        .await?;
    let channel = channel_of(proof.place());
    let key = verified
        .room
        .as_ref()
        .and_then(|r| r.channels.get(&proof.channel).copied())
        .ok_or(Error::Unauthenticated)?;
    let followed = state.live.subscriptions_of(connection, now).await?;
    if !followed.contains(&channel) && followed.len() >= limits::MAX_CHANNELS_PER_CONNECTION {
        return Err(Error::limit(
            "channels",
            format!(
                "a connection follows at most {} channels",
                limits::MAX_CHANNELS_PER_CONNECTION
            ),
        ));
    }
    state
        .live
        .subscribe(&Subscription {
            connection: connection.to_owned(),
            channel,
            key,
            expires_at: now.plus(limits::SUBSCRIPTION_SECS),
        })
        .await?;
    Ok(())
}

/// Who to tell of `notices` (each a [`ServerFrame::Message`] or [`ServerFrame::Deleted`]
/// for its channel): every unlapsed subscriber of the channel whose subscription was proved
/// with the channel's current capability key. Subscriptions proved with a replaced key (the
/// room re-keyed, perhaps to remove their subscriber), or to a deleted room or channel, are
/// dropped instead. Reads each channel's subscribers and each room once.
pub async fn deliveries(
    live: &dyn LiveStore,
    rooms: &dyn RoomStore,
    notices: &[(ChannelRef, ServerFrame)],
    now: Timestamp,
) -> crate::Result<Vec<(String, ServerFrame)>> {
    let channels: BTreeSet<(cinder_proto::RoomId, cinder_proto::ChannelId)> =
        notices.iter().map(|(c, _)| (c.room, c.channel)).collect();
    let mut current = BTreeMap::new();
    let mut subscribers = BTreeMap::new();
    for &(room, channel) in &channels {
        if let std::collections::btree_map::Entry::Vacant(e) = current.entry(room) {
            e.insert(rooms.room(&room).await?);
        }
        let key = current
            .get(&room)
            .and_then(|r: &Option<cinder_proto::rooms::Room>| r.as_ref())
            .and_then(|r| r.channels.get(&channel).copied());
        let c = ChannelRef { room, channel };
        let mut live_ones = Vec::new();
        for s in live.subscribers(&c, now).await? {
            if Some(s.key) == key {
                live_ones.push(s.connection);
            } else {
                live.unsubscribe(&s.connection, &c).await?;
            }
        }
        subscribers.insert((room, channel), live_ones);
    }
    let mut out = Vec::new();
    for (c, frame) in notices {
        for connection in &subscribers[&(c.room, c.channel)] {
            out.push((connection.clone(), frame.clone()));
        }
    }
    Ok(out)
}

/// The notice for a new message.
pub fn posted(channel: ChannelRef, number: u64) -> ServerFrame {
    let p = place_of(channel);
    ServerFrame::Message {
        room: p.room,
        channel: p.channel,
        number,
    }
}

/// The notice for a deleted message.
pub fn deleted(channel: ChannelRef, number: u64) -> ServerFrame {
    let p = place_of(channel);
    ServerFrame::Deleted {
        room: p.room,
        channel: p.channel,
        number,
    }
}

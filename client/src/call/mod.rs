//! Calls: who is in a voice channel's call, and how its members' devices find each other.
//!
//! Signalling travels as ordinary channel messages: a [`CallSignal`] rides inside the
//! sealed, signed message body ([`Client::send_signal`]), so the server carries it without
//! reading it, and a reader acts only on signals from verified members, with every check a
//! message gets (see [`crate::rooms::messages`]). The signature covers the signal.
//!
//! A call is a mesh: each participant runs one session (16 random bytes per call) and holds
//! one WebRTC connection to every other session. A session posts [`CallSignal::Join`] when it
//! starts and again every half burn time (so late comers see it before it burns), and
//! [`CallSignal::Leave`] when it ends. Of each pair, the one with the smaller (user id,
//! session) offers, when it sees the other's Join; the other answers. Offers, answers and
//! ICE candidates name the session they are for; every other session ignores them.
//!
//! The call engine (the `engine` module, with the `call` feature) runs the connections; this
//! module, always compiled, holds the signals and [`CallRoster`], which a reader uses to say
//! who is in the call.

#[cfg(feature = "call")]
pub mod engine;

use std::collections::BTreeMap;

use cinder_proto::calls::TurnCredentials;
use cinder_proto::{ChannelId, Signer, Timestamp, UserId};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use crate::rooms::Membership;
use crate::rooms::Received;
use crate::rooms::capabilities::channel_capability;
use crate::{Client, ClientError};

/// One run of a call on one device: 16 random bytes, hex in JSON.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallSession(pub [u8; 16]);

impl CallSession {
    /// A fresh random session.
    pub fn random() -> Result<Self, ClientError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| ClientError::Randomness)?;
        Ok(Self(id))
    }
}

impl std::fmt::Display for CallSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for CallSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallSession({self})")
    }
}

impl Serialize for CallSession {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for CallSession {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut id = [0u8; 16];
        hex::decode_to_slice(&text, &mut id)
            .map_err(|_| serde::de::Error::custom("a call session is 32 hex characters"))?;
        Ok(Self(id))
    }
}

/// A call signal, carried inside a sealed and signed channel message.
///
/// SDP and ICE candidates are not secret-free (ICE credentials, DTLS fingerprints,
/// addresses): they travel sealed, and nothing here prints or logs them; `Debug` leaves
/// them out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallSignal {
    /// The sender's `session` is in the call (posted on joining, and again every half burn
    /// time while it stays).
    Join {
        /// The sender's session.
        session: CallSession,
    },
    /// The sender's `session` has left the call.
    Leave {
        /// The sender's session.
        session: CallSession,
    },
    /// An SDP offer from the sender's `session` to `to`'s `to_session`.
    Offer {
        /// The sender's session.
        session: CallSession,
        /// Whom it is for.
        to: UserId,
        /// Which of their sessions.
        to_session: CallSession,
        /// The SDP.
        sdp: String,
    },
    /// The SDP answer to an offer.
    Answer {
        /// The sender's session.
        session: CallSession,
        /// Whom it is for.
        to: UserId,
        /// Which of their sessions.
        to_session: CallSession,
        /// The SDP.
        sdp: String,
    },
    /// An ICE candidate of the sender's connection to `to`'s `to_session`.
    Candidate {
        /// The sender's session.
        session: CallSession,
        /// Whom it is for.
        to: UserId,
        /// Which of their sessions.
        to_session: CallSession,
        /// The candidate: the JSON of an `RTCIceCandidateInit`.
        candidate: String,
    },
}

impl std::fmt::Debug for CallSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the SDP or the candidate.
        let kind = match self {
            Self::Join { .. } => "Join",
            Self::Leave { .. } => "Leave",
            Self::Offer { .. } => "Offer",
            Self::Answer { .. } => "Answer",
            Self::Candidate { .. } => "Candidate",
        };
        let mut d = f.debug_struct(kind);
        d.field("session", &self.session());
        if let Some((to, to_session)) = self.addressee() {
            d.field("to", &to).field("to_session", &to_session);
        }
        d.finish_non_exhaustive()
    }
}

impl CallSignal {
    /// The sender's session.
    pub fn session(&self) -> CallSession {
        match self {
            Self::Join { session }
            | Self::Leave { session }
            | Self::Offer { session, .. }
            | Self::Answer { session, .. }
            | Self::Candidate { session, .. } => *session,
        }
    }

    /// Whom an offer, answer or candidate is for; `None` for Join and Leave, which are for
    /// everyone.
    pub fn addressee(&self) -> Option<(UserId, CallSession)> {
        match self {
            Self::Offer { to, to_session, .. }
            | Self::Answer { to, to_session, .. }
            | Self::Candidate { to, to_session, .. } => Some((*to, *to_session)),
            Self::Join { .. } | Self::Leave { .. } => None,
        }
    }

    /// Whether `me` in `session` should act on this signal: Join and Leave are for everyone;
    /// an offer, answer or candidate only for the session it names. A signal addressed to
    /// someone else is ignored, whatever the server delivers.
    pub fn is_for(&self, me: UserId, session: CallSession) -> bool {
        self.addressee()
            .is_none_or(|(to, to_session)| to == me && to_session == session)
    }
}

/// A change in who is in the call, as a reader shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterChange {
    /// A session of `user` joined (the first announcement seen of it).
    Joined(UserId),
    /// A session of `user` left.
    Left(UserId),
}

/// Who is in a voice channel's call, from the verified Join and Leave signals a reader has
/// seen: a session is in the call from its Join until its Leave, or until its last Join
/// has burnt (a device that vanished without a Leave stops re-announcing).
#[derive(Debug, Clone, Default)]
pub struct CallRoster {
    /// Per (user, session): when its last Join burns.
    sessions: BTreeMap<(UserId, CallSession), Timestamp>,
    /// Sessions seen leaving: a Join read after its Leave (a late page) does not revive them.
    left: std::collections::BTreeSet<(UserId, CallSession)>,
}

impl CallRoster {
    /// Takes in a verified message in channel order; says if it changes who is in the call.
    pub fn observe(&mut self, r: &Received) -> Option<RosterChange> {
        match r.signal()? {
            CallSignal::Join { session } => {
                let key = (r.sender, *session);
                if self.left.contains(&key) {
                    return None;
                }
                let new = self.sessions.insert(key, r.burn_at).is_none();
                new.then_some(RosterChange::Joined(r.sender))
            }
            CallSignal::Leave { session } => {
                let key = (r.sender, *session);
                self.left.insert(key);
                self.sessions
                    .remove(&key)
                    .map(|_| RosterChange::Left(r.sender))
            }
            _ => None,
        }
    }

    /// The users with a session in the call at `now`, each once.
    pub fn present(&self, now: Timestamp) -> Vec<UserId> {
        let mut users: Vec<UserId> = self
            .sessions
            .iter()
            .filter(|(_, burn_at)| burn_at.0 > now.0)
            .map(|((user, _), _)| *user)
            .collect();
        users.dedup();
        users
    }
}

impl Client {
    /// TURN relay credentials for a call in `channel`: `POST /calls/{room}/{channel}/turn`,
    /// signed with the channel capability, as a member proves it for messages.
    pub async fn turn_credentials(
        &self,
        m: &Membership,
        channel: ChannelId,
    ) -> Result<TurnCredentials, ClientError> {
        let (_, key) = m.channel_key(channel)?;
        self.call_capability::<(), _>(
            &channel_capability(key, m.room, channel),
            Signer::Channel(m.room, channel),
            Method::POST,
            &format!("/calls/{}/{channel}/turn", m.room),
            None,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use cinder_proto::Blob;

    fn session(n: u8) -> CallSession {
        CallSession([n; 16])
    }

    fn message(sender: UserId, number: u64, signal: CallSignal, burn_at: u64) -> Received {
        Received {
            number,
            sender,
            sender_name: None,
            sent_at: Timestamp(burn_at - 600),
            burn_at: Timestamp(burn_at),
            content: crate::rooms::Content::Call { signal },
            seq: number,
            hash: Blob(vec![0; 32]),
            prev: Blob(vec![0; 32]),
        }
    }

    #[test]
    fn signals_for_another_session_or_user_are_not_for_me() {
        let (me, other) = (UserId([1; 16]), UserId([2; 16]));
        let offer = |to, to_session| CallSignal::Offer {
            session: session(9),
            to,
            to_session,
            sdp: "v=0".into(),
        };
        assert!(offer(me, session(1)).is_for(me, session(1)));
        assert!(!offer(other, session(1)).is_for(me, session(1)));
        assert!(!offer(me, session(2)).is_for(me, session(1)));
        assert!(
            CallSignal::Join {
                session: session(9)
            }
            .is_for(me, session(1))
        );
    }

    #[test]
    fn debug_never_shows_sdp_or_candidates() {
        let offer = CallSignal::Offer {
            session: session(9),
            to: UserId([1; 16]),
            to_session: session(1),
            sdp: "a=ice-pwd:SECRETPWD".into(),
        };
        let candidate = CallSignal::Candidate {
            session: session(9),
            to: UserId([1; 16]),
            to_session: session(1),
            candidate: "candidate:1 1 udp 1 192.0.2.1 5000 typ host".into(),
        };
        for s in [format!("{offer:?}"), format!("{candidate:?}")] {
            assert!(!s.contains("SECRETPWD") && !s.contains("192.0.2.1"), "{s}");
            assert!(s.contains("to_session"), "{s}");
        }
    }

    #[test]
    fn a_session_json_round_trips_as_hex() {
        let join = CallSignal::Join {
            session: session(0xab),
        };
        let json = serde_json::to_string(&join).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"type":"join","session":"{}"}}"#, "ab".repeat(16))
        );
        assert_eq!(serde_json::from_str::<CallSignal>(&json).unwrap(), join);
        assert!(serde_json::from_str::<CallSignal>(r#"{"type":"join","session":"ab"}"#).is_err());
    }

    #[test]
    fn the_roster_counts_joins_minus_leaves_within_the_burn_time() {
        let (alice, bob) = (UserId([1; 16]), UserId([2; 16]));
        let mut roster = CallRoster::default();
        let join = |s| CallSignal::Join {
            session: session(s),
        };
        assert_eq!(
            roster.observe(&message(alice, 1, join(1), 1000)),
            Some(RosterChange::Joined(alice))
        );
        assert_eq!(
            roster.observe(&message(bob, 2, join(2), 1000)),
            Some(RosterChange::Joined(bob))
        );
        // A re-announcement is not a new join.
        assert_eq!(roster.observe(&message(alice, 3, join(1), 1300)), None);
        assert_eq!(roster.present(Timestamp(500)), vec![alice, bob]);
        assert_eq!(
            roster.observe(&message(
                bob,
                4,
                CallSignal::Leave {
                    session: session(2)
                },
                1300
            )),
            Some(RosterChange::Left(bob))
        );
        assert_eq!(roster.present(Timestamp(500)), vec![alice]);
        // Bob's Join does not bring back a session that left.
        assert_eq!(roster.observe(&message(bob, 5, join(2), 1300)), None);
        // Alice's last Join burns at 1300: after that she is no longer listed.
        assert_eq!(roster.present(Timestamp(1300)), vec![]);
    }
}

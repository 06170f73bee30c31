//! Request authentication, shared by every function.
//!
//! Order matters and is fixed: parse the headers, check the timestamp window, verify the
//! signature against the signer's key, and only then spend the nonce. A forged request
//! therefore cannot burn a real client's nonce. The window check comes first because it
//! reveals nothing but the server's clock; after it, a missing key and a wrong signature
//! answer the same `unauthenticated`, so probing does not reveal who exists.
//!
//! Only requests that change something spend a nonce. A `GET` changes nothing, and the
//! signature binds its method, path and query, so a replay (within the window) fetches
//! again exactly what its signer was shown: ciphertext, to whoever could capture a signed
//! request, which is the server itself or someone inside its TLS. docs/SECURITY.md weighs
//! this. Skipping the nonce saves a write on every read.
//!
//! A capability's key lives in its room record, so checking one reads the room; the
//! record read is handed on ([`Verified::room`]) so that no handler reads it again.

use std::sync::Arc;

use cinder_proto::auth::canonical_request;
use cinder_proto::rooms::Room;
use cinder_proto::{RequestSignature, Signer, Timestamp, VerifyKey};

use crate::store::{KeyStore, NonceStore, RoomStore};
use crate::{Clock, Error, Result};

/// How far a request's timestamp may be from the server's clock, either way, in seconds.
pub const DEFAULT_WINDOW: u64 = 120;

/// Who signed a request, and the room record their key was found in, if any.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Who signed the request.
    pub signer: Signer,
    /// For a room or channel capability: the room record read to find its key, current
    /// as of the check.
    pub room: Option<Room>,
}

/// Whether a request with this method only reads, and so spends no nonce.
fn reads_only(method: &str) -> bool {
    matches!(method, "GET" | "HEAD")
}

/// What request authentication needs: where keys and nonces live, and the time.
#[derive(Clone)]
pub struct Auth {
    /// Where user verification keys are looked up (functions that take user signatures).
    pub keys: Option<Arc<dyn KeyStore>>,
    /// Where room and channel capabilities are looked up (functions that take them).
    pub rooms: Option<Arc<dyn RoomStore>>,
    /// Where nonces are spent.
    pub nonces: Arc<dyn NonceStore>,
    /// The time source.
    pub clock: Clock,
    /// Accepted clock skew either way, in seconds.
    pub window: u64,
}

impl Auth {
    /// Authentication over the given stores with the default window.
    pub fn new(keys: Arc<dyn KeyStore>, nonces: Arc<dyn NonceStore>, clock: Clock) -> Self {
        Self {
            keys: Some(keys),
            rooms: None,
            nonces,
            clock,
            window: DEFAULT_WINDOW,
        }
    }

    /// Authentication of room and channel capabilities.
    pub fn for_rooms(rooms: Arc<dyn RoomStore>, nonces: Arc<dyn NonceStore>, clock: Clock) -> Self {
        Self {
            keys: None,
            rooms: Some(rooms),
            nonces,
            clock,
            window: DEFAULT_WINDOW,
        }
    }

    /// The key that verifies `signer`, if this function knows it, and the room record it
    /// was found in.
    async fn key_of(&self, signer: &Signer) -> Result<(Option<VerifyKey>, Option<Room>)> {
        let room = |room| async move {
            match &self.rooms {
                Some(rooms) => rooms.room(&room).await.map_err(Error::from),
                None => Ok(None),
            }
        };
        Ok(match *signer {
            Signer::User(user) => match &self.keys {
                Some(keys) => (keys.current(&user).await?.map(|b| b.sign_key), None),
                None => (None, None),
            },
            Signer::Member(r) => {
                let room = room(r).await?;
                (room.as_ref().map(|r| r.member_key), room)
            }
            Signer::Admin(r) => {
                let room = room(r).await?;
                (room.as_ref().map(|r| r.admin_key), room)
            }
            Signer::Channel(r, channel) => {
                let room = room(r).await?;
                (
                    room.as_ref()
                        .and_then(|r| r.channels.get(&channel).copied()),
                    room,
                )
            }
        })
    }

    /// Checks one request's signature and spends its nonce (unless it only reads).
    /// Returns who signed it, and the room record their key came from.
    #[tracing::instrument(skip_all, fields(signer = %sig.signer))]
    pub async fn verify(
        &self,
        sig: &RequestSignature,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Verified> {
        self.check_window(sig)?;
        let (Some(key), room) = self.key_of(&sig.signer).await? else {
            return Err(Error::Unauthenticated);
        };
        let signer = self
            .verify_with(sig, &key, method, path_and_query, body)
            .await?;
        Ok(Verified { signer, room })
    }

    /// Like [`Auth::verify`], with a key the caller already holds: for a request that
    /// brings its own key, such as the one creating a room.
    pub async fn verify_with(
        &self,
        sig: &RequestSignature,
        key: &VerifyKey,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> Result<Signer> {
        self.check_window(sig)?;
        let now = self.clock.now();
        let msg = canonical_request(
            method,
            path_and_query,
            body,
            &sig.signer,
            sig.timestamp,
            &sig.nonce,
        );
        key.verify(msg.as_bytes(), &sig.signature)
            .map_err(|_| Error::Unauthenticated)?;
        if reads_only(method) {
            return Ok(sig.signer);
        }
        // Keep the nonce until its timestamp could no longer pass the window check.
        let expires_at: Timestamp = sig.timestamp.plus(self.window + 1);
        let nonce_key = format!("{}/{}", sig.signer, sig.nonce);
        if !self.nonces.remember(&nonce_key, expires_at, now).await? {
            return Err(Error::ReplayedRequest);
        }
        Ok(sig.signer)
    }

    fn check_window(&self, sig: &RequestSignature) -> Result<()> {
        let now = self.clock.now();
        if sig.timestamp.distance(now) > self.window {
            return Err(Error::StaleRequest { now });
        }
        Ok(())
    }
}

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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use async_trait::async_trait;
    use cinder_proto::rooms::SpineEntry;
    use cinder_proto::{Blob, ChannelId, HpkePublicKey, KeyBundle, Nonce, RoomId, UserId};
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::clock::ManualTime;
    use crate::store::StoreError;

    const T0: Timestamp = Timestamp(1_800_000_000);

    /// Bundles by user: the current one only.
    #[derive(Default)]
    struct Keys(HashMap<UserId, KeyBundle>);

    #[async_trait]
    impl KeyStore for Keys {
        async fn insert(&self, _: &KeyBundle) -> Result<(), StoreError> {
            unreachable!("authentication never writes keys")
        }
        async fn current(&self, user: &UserId) -> Result<Option<KeyBundle>, StoreError> {
            Ok(self.0.get(user).cloned())
        }
        async fn current_many(&self, _: &[UserId]) -> Result<Vec<KeyBundle>, StoreError> {
            unreachable!("authentication reads one key")
        }
        async fn chain(&self, _: &UserId, _: u64, _: usize) -> Result<Vec<KeyBundle>, StoreError> {
            unreachable!("authentication reads one key")
        }
    }

    /// Rooms by id.
    #[derive(Default)]
    struct Rooms(HashMap<RoomId, Room>);

    #[async_trait]
    impl RoomStore for Rooms {
        async fn create_room(&self, _: &Room) -> Result<(), StoreError> {
            unreachable!("authentication never writes rooms")
        }
        async fn room(&self, id: &RoomId) -> Result<Option<Room>, StoreError> {
            Ok(self.0.get(id).cloned())
        }
        async fn update_room(&self, _: &Room) -> Result<(), StoreError> {
            unreachable!("authentication never writes rooms")
        }
        async fn spines(
            &self,
            _: &RoomId,
            _: u64,
            _: usize,
        ) -> Result<Vec<SpineEntry>, StoreError> {
            unreachable!("authentication reads the room only")
        }
        async fn delete_room(&self, _: &RoomId) -> Result<bool, StoreError> {
            unreachable!("authentication never writes rooms")
        }
    }

    /// Nonces with the stores' contract: a nonce is live while `now < expires_at`. Keeps
    /// every call, so tests see what was spent and until when.
    #[derive(Default)]
    struct Nonces(Mutex<HashMap<String, Timestamp>>);

    #[async_trait]
    impl NonceStore for Nonces {
        async fn remember(
            &self,
            key: &str,
            expires_at: Timestamp,
            now: Timestamp,
        ) -> Result<bool, StoreError> {
            let mut seen = self.0.lock().unwrap();
            if seen.get(key).is_some_and(|&e| now < e) {
                return Ok(false);
            }
            seen.insert(key.to_owned(), expires_at);
            Ok(true)
        }
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn verify_key(k: &SigningKey) -> VerifyKey {
        VerifyKey::from(k.verifying_key())
    }

    struct World {
        auth: Auth,
        time: ManualTime,
        nonces: Arc<Nonces>,
        user: (SigningKey, UserId),
        room: Room,
        admin: SigningKey,
        member: SigningKey,
        channel: (SigningKey, ChannelId),
    }

    /// One user with a published key, one room with an admin, a member and a channel key,
    /// and authentication that knows both (as no deployed function does, to test each
    /// lookup against the same stores).
    fn world() -> World {
        let user_key = key(1);
        let bundle = KeyBundle::genesis(&user_key, HpkePublicKey([9; 32]), T0);
        let user = bundle.user_id;
        let (admin, member, channel_key) = (key(2), key(3), key(4));
        let channel = ChannelId([7; 16]);
        let room = Room {
            room_id: RoomId([5; 16]),
            version: 3,
            spine: Blob(vec![1, 2, 3]),
            admin_key: verify_key(&admin),
            member_key: verify_key(&member),
            channels: BTreeMap::from([(channel, verify_key(&channel_key))]),
        };
        let (clock, time) = Clock::manual(T0);
        let nonces = Arc::new(Nonces::default());
        let mut auth = Auth::new(
            Arc::new(Keys(HashMap::from([(user, bundle)]))),
            nonces.clone(),
            clock.clone(),
        );
        let rooms = Auth::for_rooms(
            Arc::new(Rooms(HashMap::from([(room.room_id, room.clone())]))),
            nonces.clone(),
            clock,
        );
        assert!(rooms.keys.is_none() && rooms.window == DEFAULT_WINDOW);
        auth.rooms = rooms.rooms;
        World {
            auth,
            time,
            nonces,
            user: (user_key, user),
            room,
            admin,
            member,
            channel: (channel_key, channel),
        }
    }

    fn sign(
        k: &SigningKey,
        signer: Signer,
        method: &str,
        at: Timestamp,
        nonce: u8,
    ) -> RequestSignature {
        RequestSignature::sign(k, signer, method, "/x?a=1", b"body", at, Nonce([nonce; 16]))
    }

    async fn verify(w: &World, sig: &RequestSignature, method: &str) -> Result<Verified> {
        w.auth.verify(sig, method, "/x?a=1", b"body").await
    }

    #[tokio::test]
    async fn each_signer_is_verified_with_its_own_key_and_gets_the_room_read() {
        let w = world();
        let room = w.room.room_id;
        let user = Signer::User(w.user.1);
        let ok = verify(&w, &sign(&w.user.0, user, "POST", T0, 1), "POST")
            .await
            .unwrap();
        assert_eq!(ok.signer, user);
        assert!(ok.room.is_none());
        let cases = [
            (&w.admin, Signer::Admin(room)),
            (&w.member, Signer::Member(room)),
            (&w.channel.0, Signer::Channel(room, w.channel.1)),
        ];
        for (i, (k, signer)) in cases.into_iter().enumerate() {
            let ok = verify(&w, &sign(k, signer, "POST", T0, 10 + i as u8), "POST")
                .await
                .unwrap();
            assert_eq!(ok.signer, signer);
            assert_eq!(ok.room.as_ref(), Some(&w.room), "{signer}");
        }
        // Each capability's key is its own: the member key does not pass as admin, nor the
        // admin key as the channel's, nor another user's key as this user's.
        let wrong = [
            (&w.member, Signer::Admin(room)),
            (&w.admin, Signer::Channel(room, w.channel.1)),
            (&w.admin, Signer::Member(room)),
            (&w.admin, user),
        ];
        for (i, (k, signer)) in wrong.into_iter().enumerate() {
            let err = verify(&w, &sign(k, signer, "POST", T0, 20 + i as u8), "POST").await;
            assert!(
                matches!(err, Err(Error::Unauthenticated)),
                "{signer}: {err:?}"
            );
        }
    }

    #[tokio::test]
    async fn unknown_signers_and_altered_requests_are_unauthenticated() {
        let w = world();
        let stranger = key(8);
        let unknown_user = Signer::User(UserId([8; 16]));
        let unknown_room = Signer::Admin(RoomId([8; 16]));
        let unknown_channel = Signer::Channel(w.room.room_id, ChannelId([8; 16]));
        for signer in [unknown_user, unknown_room, unknown_channel] {
            let err = verify(&w, &sign(&stranger, signer, "POST", T0, 1), "POST").await;
            assert!(
                matches!(err, Err(Error::Unauthenticated)),
                "{signer}: {err:?}"
            );
        }
        // A room signer where only keys are known, and the other way round.
        let (clock, _) = Clock::manual(T0);
        let keys_only = Auth::new(Arc::new(Keys::default()), w.nonces.clone(), clock.clone());
        let sig = sign(&w.admin, Signer::Admin(w.room.room_id), "POST", T0, 2);
        let err = keys_only.verify(&sig, "POST", "/x?a=1", b"body").await;
        assert!(matches!(err, Err(Error::Unauthenticated)), "{err:?}");
        let rooms_only = Auth::for_rooms(Arc::new(Rooms::default()), w.nonces.clone(), clock);
        let sig = sign(&w.user.0, Signer::User(w.user.1), "POST", T0, 3);
        let err = rooms_only.verify(&sig, "POST", "/x?a=1", b"body").await;
        assert!(matches!(err, Err(Error::Unauthenticated)), "{err:?}");
        // The signature covers method, path and body.
        let sig = sign(&w.user.0, Signer::User(w.user.1), "POST", T0, 4);
        for (method, path, body) in [
            ("PUT", "/x?a=1", b"body".as_slice()),
            ("POST", "/x?a=2", b"body"),
            ("POST", "/x?a=1", b"bodY"),
        ] {
            let err = w.auth.verify(&sig, method, path, body).await;
            assert!(matches!(err, Err(Error::Unauthenticated)), "{err:?}");
        }
        // None of the refusals spent a nonce.
        assert!(w.nonces.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_write_spends_its_nonce_until_its_timestamp_leaves_the_window() {
        let w = world();
        let signer = Signer::User(w.user.1);
        let sig = sign(&w.user.0, signer, "POST", T0, 1);
        verify(&w, &sig, "POST").await.unwrap();
        assert!(matches!(
            verify(&w, &sig, "POST").await,
            Err(Error::ReplayedRequest)
        ));
        // Still refused at the last second the timestamp passes the window check...
        w.time.set(T0.plus(DEFAULT_WINDOW));
        assert!(matches!(
            verify(&w, &sig, "POST").await,
            Err(Error::ReplayedRequest)
        ));
        // ...and stale one second later, when the nonce may be forgotten.
        w.time.set(T0.plus(DEFAULT_WINDOW + 1));
        assert!(matches!(
            verify(&w, &sig, "POST").await,
            Err(Error::StaleRequest { .. })
        ));
        let kept = w.nonces.0.lock().unwrap().clone();
        let nonce_key = format!("{signer}/{}", Nonce([1; 16]));
        assert_eq!(
            kept,
            HashMap::from([(nonce_key, T0.plus(DEFAULT_WINDOW + 1))])
        );
    }

    #[tokio::test]
    async fn a_read_spends_no_nonce_and_may_be_repeated() {
        let w = world();
        let signer = Signer::Member(w.room.room_id);
        for method in ["GET", "HEAD"] {
            let sig = sign(&w.member, signer, method, T0, 1);
            for _ in 0..2 {
                assert_eq!(verify(&w, &sig, method).await.unwrap().signer, signer);
            }
        }
        assert!(w.nonces.0.lock().unwrap().is_empty());
        // A write with the same nonce is still its first use.
        let sig = sign(&w.member, signer, "DELETE", T0, 1);
        verify(&w, &sig, "DELETE").await.unwrap();
        assert_eq!(w.nonces.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn the_window_admits_its_bounds_either_way_and_nothing_past_them() {
        let w = world();
        let signer = Signer::User(w.user.1);
        let mut nonce = 0;
        let mut at = |offset: i64| {
            nonce += 1;
            let t = Timestamp(T0.0.checked_add_signed(offset).unwrap());
            sign(&w.user.0, signer, "POST", t, nonce)
        };
        for offset in [0, -120, 120] {
            let sig = at(offset);
            assert!(verify(&w, &sig, "POST").await.is_ok(), "{offset}");
            // verify_with applies the same window.
            let sig = at(offset);
            let key = verify_key(&w.user.0);
            let got = w
                .auth
                .verify_with(&sig, &key, "POST", "/x?a=1", b"body")
                .await;
            assert_eq!(got.unwrap(), signer);
        }
        for offset in [-121, 121, -100_000, 100_000] {
            let sig = at(offset);
            let err = verify(&w, &sig, "POST").await;
            assert!(
                matches!(err, Err(Error::StaleRequest { now }) if now == T0),
                "{offset}: {err:?}"
            );
            let sig = at(offset);
            let key = verify_key(&w.user.0);
            let err = w
                .auth
                .verify_with(&sig, &key, "POST", "/x?a=1", b"body")
                .await;
            assert!(
                matches!(err, Err(Error::StaleRequest { .. })),
                "{offset}: {err:?}"
            );
        }
    }
}

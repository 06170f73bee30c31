//! [`Client`]: one method per endpoint. Requests that need a signature are signed with the
//! caller's identity; a `stale_request` answer corrects for the server's clock and is
//! retried once with a fresh nonce.

use std::sync::atomic::{AtomicI64, Ordering};

use cinder_proto::api::{ChainPage, DropEnvelope, EnvelopePage, LookupRequest, LookupResponse};
use cinder_proto::{
    Blob, ChannelId, Envelope, EnvelopeId, ErrorBody, ErrorCode, KeyBundle, Nonce,
    RequestSignature, RoomId, Signer, Timestamp, UserId,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{ClientError, Identity};

/// The dev server's address, where a client points when told nothing else.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8787";

/// The most this client moves its clock to agree with a server's: a hostile server must
/// not be able to make it think it is a day earlier, when burnt messages still look alive.
pub const MAX_CLOCK_OFFSET_SECS: i64 = 900;

/// The session headers of a request: the token, and a re-authentication token if the
/// request needs one.
#[derive(Clone, Copy)]
pub(crate) struct SessionHeaders<'a> {
    token: &'a Blob,
    reauth: Option<&'a Blob>,
}

/// Who signs a request.
#[derive(Clone, Copy)]
enum SignAs<'a> {
    Nobody,
    User(&'a Identity),
    Capability(&'a ed25519_dalek::SigningKey, Signer),
}

/// A connection to one Cinder server.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The live socket's URL, when it is not the dev server's (derived from `base`).
    live: Option<String>,
    /// Seconds to add to the local clock to match the server's, learnt from `stale_request`.
    clock_offset: AtomicI64,
    /// Per channel, the highest message number this client has seen: the next one it
    /// sends proposes the number after it.
    marks: std::sync::Mutex<std::collections::HashMap<(RoomId, ChannelId), u64>>,
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://127.0.0.1:8787`).
    pub fn new(base_url: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base_url.trim_end_matches('/').to_owned(),
            live: None,
            clock_offset: AtomicI64::new(0),
            marks: Default::default(),
        }
    }

    /// Notes that message `number` exists in a channel.
    pub(crate) fn saw(&self, room: RoomId, channel: ChannelId, number: u64) {
        let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        let mark = marks.entry((room, channel)).or_default();
        *mark = (*mark).max(number);
    }

    /// The highest message number this client has seen in a channel (0 if none).
    pub(crate) fn seen(&self, room: RoomId, channel: ChannelId) -> u64 {
        let marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
        marks.get(&(room, channel)).copied().unwrap_or(0)
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The same client, its live socket at `url` (in AWS, the WebSocket API's
    /// `wss://…` URL) rather than on the server's own address.
    pub fn with_live_url(mut self, url: &str) -> Self {
        self.live = Some(url.to_owned());
        self
    }

    /// The live socket's URL: as set by [`Client::with_live_url`], else the dev server's
    /// (see [`crate::live::derived_live_url`]).
    pub fn live_url(&self) -> String {
        self.live
            .clone()
            .unwrap_or_else(|| crate::live::derived_live_url(&self.base))
    }

    /// The HTTP client, for transfers to and from object storage.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Publishes a first key bundle.
    pub async fn publish(&self, bundle: &KeyBundle) -> Result<KeyBundle, ClientError> {
        self.call(Method::POST, "/keys", Some(bundle), None).await
    }

    /// A user's current bundle, unverified: prefer [`Client::verified_keys`].
    pub async fn key(&self, user: UserId) -> Result<KeyBundle, ClientError> {
        self.call::<(), _>(Method::GET, &format!("/keys/{user}"), None, None)
            .await
    }

    /// Publishes the next version of the caller's keys.
    pub async fn rotate(&self, bundle: &KeyBundle) -> Result<KeyBundle, ClientError> {
        self.call(
            Method::PUT,
            &format!("/keys/{}", bundle.user_id),
            Some(bundle),
            None,
        )
        .await
    }

    /// One page of a user's key chain after version `after`.
    pub async fn chain(&self, user: UserId, after: u64) -> Result<ChainPage, ClientError> {
        self.call::<(), _>(
            Method::GET,
            &format!("/keys/{user}/chain?after={after}"),
            None,
            None,
        )
        .await
    }

    /// Current bundles of many users, unverified.
    pub async fn lookup(&self, user_ids: Vec<UserId>) -> Result<LookupResponse, ClientError> {
        self.call(
            Method::POST,
            "/keys/lookup",
            Some(&LookupRequest { user_ids }),
            None,
        )
        .await
    }

    /// Drops a sealed envelope into `to`'s inbox.
    pub async fn drop_envelope(
        &self,
        me: &Identity,
        to: UserId,
        sealed: Vec<u8>,
        ttl: Option<u64>,
    ) -> Result<Envelope, ClientError> {
        let body = DropEnvelope {
            sealed: Blob(sealed),
            ttl,
        };
        self.call(Method::POST, &format!("/inbox/{to}"), Some(&body), Some(me))
            .await
    }

    /// One page of the caller's own inbox.
    pub async fn inbox(
        &self,
        me: &Identity,
        after: Option<EnvelopeId>,
        limit: Option<usize>,
    ) -> Result<EnvelopePage, ClientError> {
        let mut path = format!("/inbox/{}", me.user_id());
        let mut sep = '?';
        if let Some(after) = after {
            path.push_str(&format!("{sep}after={after}"));
            sep = '&';
        }
        if let Some(limit) = limit {
            path.push_str(&format!("{sep}limit={limit}"));
        }
        self.call::<(), _>(Method::GET, &path, None, Some(me)).await
    }

    /// Deletes one envelope from the caller's own inbox.
    pub async fn delete_envelope(&self, me: &Identity, id: EnvelopeId) -> Result<(), ClientError> {
        self.call::<(), _>(
            Method::DELETE,
            &format!("/inbox/{}/{id}", me.user_id()),
            None,
            Some(me),
        )
        .await
    }

    /// Sends one request and decodes the answer; a signed request that was refused as
    /// stale is retried once on the server's clock.
    async fn call<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        signer: Option<&Identity>,
    ) -> Result<T, ClientError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.call_with(method, path, body, signer, None).await
    }

    /// Sends a request signed by a room or channel capability key.
    pub(crate) async fn call_capability<B, T>(
        &self,
        key: &ed25519_dalek::SigningKey,
        signer: Signer,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        self.call_signed(method, path, body, SignAs::Capability(key, signer), None)
            .await
    }

    /// A success body as `T` (empty reads as `null`), or the server's error body.
    fn decode<T: DeserializeOwned>(
        &self,
        status: StatusCode,
        text: &[u8],
    ) -> Result<Result<T, ErrorBody>, ClientError> {
        if status.is_success() {
            let text = if text.is_empty() {
                b"null".as_slice()
            } else {
                text
            };
            return serde_json::from_slice(text)
                .map(Ok)
                .map_err(|e| self.unreadable(e.to_string()));
        }
        serde_json::from_slice(text)
            .map(Err)
            .map_err(|_| self.unreadable(format!("HTTP {status} without a Cinder error body")))
    }

    /// Like `call`, optionally in an account session.
    pub(crate) async fn call_with<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        signer: Option<&Identity>,
        session: Option<&Blob>,
    ) -> Result<T, ClientError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let sign_as = signer.map_or(SignAs::Nobody, SignAs::User);
        let session = session.map(|token| SessionHeaders {
            token,
            reauth: None,
        });
        self.call_signed(method, path, body, sign_as, session).await
    }

    /// Sends one request in a session with a re-authentication token beside it.
    pub(crate) async fn call_reauthed<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        token: &Blob,
        reauth: &Blob,
    ) -> Result<T, ClientError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let session = SessionHeaders {
            token,
            reauth: Some(reauth),
        };
        self.call_signed(method, path, body, SignAs::Nobody, Some(session))
            .await
    }

    /// Sends one request signed as asked; a signed request refused as stale is retried
    /// once on the server's clock, as far as [`MAX_CLOCK_OFFSET_SECS`] lets it move ours.
    async fn call_signed<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        sign_as: SignAs<'_>,
        session: Option<SessionHeaders<'_>>,
    ) -> Result<T, ClientError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let bytes = match body {
            Some(b) => {
                serde_json::to_vec(b).map_err(|e| ClientError::Verification(e.to_string()))?
            }
            None => Vec::new(),
        };
        let mut retried = false;
        loop {
            let (status, server_time, text) = self
                .send(method.clone(), path, &bytes, sign_as, session)
                .await?;
            let body = match self.decode(status, &text)? {
                Ok(value) => return Ok(value),
                Err(body) => body,
            };
            if body.code == ErrorCode::StaleRequest
                && !retried
                && !matches!(sign_as, SignAs::Nobody)
                && let Some(server) = server_time
            {
                let local = i64::try_from(Timestamp::now().0).unwrap_or(i64::MAX);
                let offset = server
                    .saturating_sub(local)
                    .clamp(-MAX_CLOCK_OFFSET_SECS, MAX_CLOCK_OFFSET_SECS);
                self.clock_offset.store(offset, Ordering::Relaxed);
                retried = true;
                continue;
            }
            return Err(ClientError::Api {
                status: status.as_u16(),
                body,
            });
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &[u8],
        sign_as: SignAs<'_>,
        session: Option<SessionHeaders<'_>>,
    ) -> Result<(StatusCode, Option<i64>, Vec<u8>), ClientError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if !body.is_empty() {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        if let Some(session) = session {
            request = request.header(
                cinder_proto::accounts::SESSION_HEADER,
                cinder_proto::encoding::encode(&session.token.0),
            );
            if let Some(reauth) = session.reauth {
                request = request.header(
                    cinder_proto::accounts::REAUTH_HEADER,
                    cinder_proto::encoding::encode(&reauth.0),
                );
            }
        }
        let (key, signer) = match sign_as {
            SignAs::Nobody => (None, None),
            SignAs::User(me) => (Some(me.signing_key()), Some(Signer::User(me.user_id()))),
            SignAs::Capability(key, signer) => (Some(key.clone()), Some(signer)),
        };
        if let (Some(key), Some(signer)) = (key, signer) {
            let mut nonce = [0u8; 16];
            getrandom::fill(&mut nonce).map_err(|_| ClientError::Randomness)?;
            let sig = RequestSignature::sign(
                &key,
                signer,
                method.as_str(),
                path,
                body,
                self.now(),
                Nonce(nonce),
            );
            for (name, value) in sig.headers() {
                request = request.header(name, value);
            }
        }
        let response = request.send().await.map_err(|e| self.unreachable(e))?;
        let status = response.status();
        let server_time = response
            .headers()
            .get("x-cinder-server-time")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok((status, server_time, text.to_vec()))
    }

    /// The local clock, corrected by what `stale_request` answers taught this client
    /// (at most [`MAX_CLOCK_OFFSET_SECS`] either way).
    pub(crate) fn now(&self) -> Timestamp {
        let offset = self.clock_offset.load(Ordering::Relaxed);
        Timestamp(Timestamp::now().0.saturating_add_signed(offset))
    }

    fn unreachable(&self, e: reqwest::Error) -> ClientError {
        let e = e.without_url();
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
            cause: Some(Box::new(e)),
        }
    }

    fn unreadable(&self, reason: String) -> ClientError {
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: format!("unexpected answer: {reason}"),
            cause: None,
        }
    }
}

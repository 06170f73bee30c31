//! [`Client`]: one method per endpoint. Requests that need a signature are signed with the
//! caller's identity; a `stale_request` answer corrects for the server's clock and is
//! retried once with a fresh nonce. A read (a `GET`, or the key lookup, a `POST` that
//! changes nothing) answered `503 unavailable` is sent again after the server's
//! `retry-after` plus a jittered, doubling backoff, at most [`UNAVAILABLE_RETRIES`] times; a
//! write answered so is returned to the caller, who knows whether repeating it is safe.

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

/// How many times a read answered `503 unavailable` is sent again before the error is
/// returned.
pub const UNAVAILABLE_RETRIES: u32 = 3;

/// The first backoff step after a `503`; each retry doubles it. The wait is the server's
/// `retry-after` (at most [`MAX_RETRY_AFTER_SECS`]) plus a random part of the step, so
/// clients turned away together do not come back together.
const UNAVAILABLE_BACKOFF_MS: u64 = 250;

/// The longest `retry-after` this client honours: a hostile or confused server must not
/// park it for an hour.
const MAX_RETRY_AFTER_SECS: u64 = 10;

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
            LOOKUP_PATH,
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
        let mut unavailable = 0u32;
        loop {
            let (status, server_time, retry_after, text) = self
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
            if body.code == ErrorCode::Unavailable
                && is_read(&method, path)
                && unavailable < UNAVAILABLE_RETRIES
            {
                tokio::time::sleep(unavailable_backoff(retry_after, unavailable)?).await;
                unavailable += 1;
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
    ) -> Result<(StatusCode, Option<i64>, Option<u64>, Vec<u8>), ClientError> {
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
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = response.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok((status, server_time, retry_after, text.to_vec()))
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

/// The key lookup's path: a read sent as a `POST` (see [`is_read`]).
const LOOKUP_PATH: &str = "/keys/lookup";

/// Whether a request only reads, so sending it again after a `503` is safe: every `GET`,
/// and `POST /keys/lookup` (a `POST` only because its list of ids would not fit a URL).
fn is_read(method: &Method, path: &str) -> bool {
    *method == Method::GET || (*method == Method::POST && path == LOOKUP_PATH)
}

/// How long to wait before retry number `attempt` (from 0) of a read answered `503`: the
/// server's `retry-after` (capped), plus a uniformly random part of a step that doubles
/// with each attempt ("full jitter" on the backoff).
fn unavailable_backoff(
    retry_after: Option<u64>,
    attempt: u32,
) -> Result<std::time::Duration, ClientError> {
    let floor = retry_after.unwrap_or(0).min(MAX_RETRY_AFTER_SECS) * 1000;
    let step = UNAVAILABLE_BACKOFF_MS << attempt.min(8);
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|_| ClientError::Randomness)?;
    let jitter = u64::from_le_bytes(random) % (step + 1);
    Ok(std::time::Duration::from_millis(floor + jitter))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const BUSY: &str = r#"{"code":"unavailable","message":"the service is busy; retry after 0 s"}"#;

    /// A one-route HTTP server that answers `503 unavailable` (with `retry-after: 0`) to
    /// the first `busy` requests, then `200` with an empty key chain; counts the requests.
    async fn server(busy: usize) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let mut buf = vec![0u8; 16 * 1024];
                let _ = socket.read(&mut buf).await;
                let (status, body) = if n < busy {
                    ("503 Service Unavailable", BUSY)
                } else {
                    ("200 OK", r#"{"bundles":[],"more":false,"missing":[]}"#)
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nretry-after: 0\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn a_read_answered_unavailable_is_retried_until_it_answers() {
        let (url, seen) = server(UNAVAILABLE_RETRIES as usize).await;
        let page = Client::new(&url).chain(UserId([1; 16]), 0).await.unwrap();
        assert!(page.bundles.is_empty());
        assert_eq!(
            seen.load(Ordering::SeqCst),
            UNAVAILABLE_RETRIES as usize + 1
        );
    }

    #[tokio::test]
    async fn a_key_lookup_answered_unavailable_is_retried_as_a_read() {
        let (url, seen) = server(UNAVAILABLE_RETRIES as usize).await;
        let found = Client::new(&url)
            .lookup(vec![UserId([1; 16])])
            .await
            .unwrap();
        assert!(found.bundles.is_empty() && found.missing.is_empty());
        assert_eq!(
            seen.load(Ordering::SeqCst),
            UNAVAILABLE_RETRIES as usize + 1
        );
    }

    #[tokio::test]
    async fn a_read_unavailable_past_the_retries_returns_the_503() {
        let (url, seen) = server(usize::MAX).await;
        let err = Client::new(&url)
            .chain(UserId([1; 16]), 0)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            UNAVAILABLE_RETRIES as usize + 1
        );
    }

    #[tokio::test]
    async fn a_write_answered_unavailable_is_returned_at_once() {
        let (url, seen) = server(usize::MAX).await;
        let me = Identity::generate(Timestamp::now()).unwrap();
        let err = Client::new(&url)
            .drop_envelope(&me, UserId([1; 16]), vec![1], None)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
        assert_eq!(
            seen.load(Ordering::SeqCst),
            1,
            "a write is never repeated blindly"
        );
    }

    #[test]
    fn the_backoff_honours_retry_after_within_its_cap_and_jitters() {
        for attempt in 0..4 {
            let wait = unavailable_backoff(Some(2), attempt).unwrap().as_millis() as u64;
            assert!((2000..=2000 + (UNAVAILABLE_BACKOFF_MS << attempt)).contains(&wait));
        }
        let capped = unavailable_backoff(Some(3600), 0).unwrap().as_millis() as u64;
        assert!(capped <= MAX_RETRY_AFTER_SECS * 1000 + UNAVAILABLE_BACKOFF_MS);
        let waits: std::collections::BTreeSet<_> = (0..16)
            .map(|_| unavailable_backoff(None, 3).unwrap())
            .collect();
        assert!(waits.len() > 1, "the wait is random");
    }
}

//! Extractors: parse bodies, paths, queries and signatures once, at the edge, into typed
//! values, and turn every failure into an [`Error`] with its stable code.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use cinder_proto::RequestSignature;
use cinder_proto::auth::{NONCE_HEADER, SIGNATURE_HEADER, SIGNER_HEADER, TIMESTAMP_HEADER};
use cinder_proto::{Signer, api::limits};
use serde::de::DeserializeOwned;

use crate::{Auth, Error, Result};

/// Body limit when an endpoint does not name its own.
pub const DEFAULT_BODY_LIMIT: usize = limits::MAX_KEYS_BODY;

/// Reads a whole body, refusing more than `limit` bytes.
pub async fn read_body(request: Request, limit: usize) -> Result<(Parts, Bytes)> {
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Error::BodyTooLarge { limit });
    }
    // The only failure of a length-limited read that a caller can cause is the limit itself.
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Error::BodyTooLarge { limit })?;
    Ok((parts, bytes))
}

/// Parses a JSON body. An empty body reads as `null`, so `()` stands for "no body".
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let bytes = if bytes.is_empty() {
        b"null".as_slice()
    } else {
        bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|err| {
        let field = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => Error::InvalidBody {
                field,
                message: inner.to_string(),
            },
            _ => Error::MalformedJson(inner.to_string()),
        }
    })?;
    // Trailing bytes after the value mean the body is not the JSON document it claims.
    de.end().map_err(|e| Error::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// A JSON body of at most `LIMIT` bytes, without a signature.
#[derive(Debug)]
pub struct JsonBody<T, const LIMIT: usize = DEFAULT_BODY_LIMIT>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for JsonBody<T, LIMIT>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, _: &S) -> Result<Self> {
        let (_, bytes) = read_body(request, LIMIT).await?;
        parse_json(&bytes).map(Self)
    }
}

/// A signed request: who signed it, and its JSON body (use `()` for none).
///
/// The signature is checked before the body is parsed, so an unauthenticated caller never
/// learns how the server reads a body.
#[derive(Debug)]
pub struct Signed<T, const LIMIT: usize = DEFAULT_BODY_LIMIT> {
    /// Who signed the request.
    pub signer: Signer,
    /// For a room or channel capability, the room record its key was found in: handlers
    /// use it rather than read the room again.
    pub room: Option<cinder_proto::rooms::Room>,
    /// The parsed body.
    pub body: T,
}

impl<S, T, const LIMIT: usize> FromRequest<S> for Signed<T, LIMIT>
where
    S: Send + Sync,
    Auth: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        let (parts, bytes) = read_body(request, LIMIT).await?;
        let sig = signature_headers(&parts.headers)?;
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        let verified = Auth::from_ref(state)
            .verify(&sig, parts.method.as_str(), path, &bytes)
            .await?;
        let body = parse_json(&bytes)?;
        Ok(Self {
            signer: verified.signer,
            room: verified.room,
            body,
        })
    }
}

/// Reads a signed request's four `x-cinder-*` headers (signer, timestamp, nonce,
/// signature) into a [`RequestSignature`]; a missing, non-text or malformed header is
/// [`Error::Unauthenticated`]. What [`Signed`] and [`SelfSigned`] run first; public so the
/// fuzz targets (`fuzz/`) reach it.
pub fn signature_headers(headers: &HeaderMap) -> Result<RequestSignature> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or(Error::Unauthenticated)
    };
    RequestSignature::parse(
        get(SIGNER_HEADER)?,
        get(TIMESTAMP_HEADER)?,
        get(NONCE_HEADER)?,
        get(SIGNATURE_HEADER)?,
    )
    .map_err(|_| Error::Unauthenticated)
}

/// Path parameters, parsed with the types' own `FromStr`/serde rules.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<S, T> FromRequestParts<S> for PathParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Self(v))
            .map_err(|e| Error::InvalidParameter(format!("path: {}", e.body_text())))
    }
}

/// Query parameters, parsed into `T`.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S, T> FromRequestParts<S> for QueryParams<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| Error::InvalidParameter(format!("query: {}", e.body_text())))
    }
}

/// A body that names the key its own request is signed with, such as a room's creation,
/// which brings the admin key that will govern the room.
pub trait BringsKey {
    /// The key that must verify a request signed by `signer`, if the body vouches for one.
    fn key_for(&self, signer: &Signer) -> Option<cinder_proto::VerifyKey>;
}

/// A request signed by a key its own body brings (see [`BringsKey`]). The body is parsed
/// before the signature is checked, since the key is in it; nothing is stored before both.
#[derive(Debug)]
pub struct SelfSigned<T, const LIMIT: usize = DEFAULT_BODY_LIMIT>(pub T);

impl<S, T, const LIMIT: usize> FromRequest<S> for SelfSigned<T, LIMIT>
where
    S: Send + Sync,
    Auth: FromRef<S>,
    T: DeserializeOwned + BringsKey + Send,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self> {
        let (parts, bytes) = read_body(request, LIMIT).await?;
        let sig = signature_headers(&parts.headers)?;
        let body: T = parse_json(&bytes)?;
        let key = body.key_for(&sig.signer).ok_or(Error::Unauthenticated)?;
        let path = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path(), |pq| pq.as_str());
        Auth::from_ref(state)
            .verify_with(&sig, &key, parts.method.as_str(), path, &bytes)
            .await?;
        Ok(Self(body))
    }
}

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

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn request(body: &'static [u8], declared: Option<usize>) -> Request {
        let mut builder = Request::builder().method("POST").uri("/x");
        if let Some(n) = declared {
            builder = builder.header(axum::http::header::CONTENT_LENGTH, n);
        }
        builder.body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn a_body_up_to_the_limit_is_read_whole() {
        for declared in [None, Some(4)] {
            let (parts, bytes) = read_body(request(b"abcd", declared), 4).await.unwrap();
            assert_eq!(&bytes[..], b"abcd");
            assert_eq!(parts.uri, "/x");
        }
        let (_, bytes) = read_body(request(b"ab", Some(2)), 4).await.unwrap();
        assert_eq!(&bytes[..], b"ab");
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_refused_declared_or_not() {
        // Declared too long: refused on the header alone, whatever follows.
        let err = read_body(request(b"ab", Some(5)), 4).await;
        assert!(
            matches!(err, Err(Error::BodyTooLarge { limit: 4 })),
            "{err:?}"
        );
        // Not declared (or declared short): refused while reading.
        for declared in [None, Some(3)] {
            let err = read_body(request(b"abcde", declared), 4).await;
            assert!(
                matches!(err, Err(Error::BodyTooLarge { limit: 4 })),
                "{err:?}"
            );
        }
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Body2 {
        n: u32,
        inner: Inner,
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Inner {
        s: String,
    }

    #[test]
    fn json_parses_into_the_type_and_an_empty_body_is_null() {
        let got: Body2 = parse_json(br#"{"n": 7, "inner": {"s": "x"}}"#).unwrap();
        assert_eq!(
            got,
            Body2 {
                n: 7,
                inner: Inner { s: "x".into() }
            }
        );
        parse_json::<()>(b"").unwrap();
        let none: Option<u32> = parse_json(b"").unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn a_wrong_value_names_its_field_and_broken_json_is_malformed() {
        let err = parse_json::<Body2>(br#"{"n": 7, "inner": {"s": 5}}"#);
        assert!(
            matches!(&err, Err(Error::InvalidBody { field, .. }) if field == "inner.s"),
            "{err:?}"
        );
        for broken in [
            &br#"{"n": 7"#[..],
            b"{n}",
            br#"{"n": 7, "inner": {"s": "x"}} x"#,
        ] {
            let err = parse_json::<Body2>(broken);
            assert!(matches!(err, Err(Error::MalformedJson(_))), "{err:?}");
        }
    }

    #[test]
    fn signature_headers_need_all_four_well_formed() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let sig = RequestSignature::sign(
            &key,
            Signer::User(cinder_proto::UserId([2; 16])),
            "POST",
            "/x",
            b"",
            cinder_proto::Timestamp(10),
            cinder_proto::Nonce([3; 16]),
        );
        let mut headers = HeaderMap::new();
        for (name, value) in sig.headers() {
            headers.insert(name, value.parse().unwrap());
        }
        assert_eq!(signature_headers(&headers).unwrap(), sig);
        for name in [
            SIGNER_HEADER,
            TIMESTAMP_HEADER,
            NONCE_HEADER,
            SIGNATURE_HEADER,
        ] {
            let mut missing = headers.clone();
            missing.remove(name);
            assert!(matches!(
                signature_headers(&missing),
                Err(Error::Unauthenticated)
            ));
            let mut bad = headers.clone();
            bad.insert(name, "not-it".parse().unwrap());
            assert!(matches!(
                signature_headers(&bad),
                Err(Error::Unauthenticated)
            ));
        }
    }
}

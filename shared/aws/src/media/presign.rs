//! The media function's presigned S3 URLs, signed with `aws-sigv4` (AWS's own SigV4
//! signer, the one the SDK signs with) rather than through an `aws-sdk-s3` client.
//!
//! The media function only ever presigns one `PutObject` or `GetObject` for one object of one
//! bucket: no request leaves it. Building an S3 client for that cost its cold start more than
//! anything else it does (the client resolves its endpoint rules and partitions when it is
//! made, and the S3 crate is a sixth of the binary), so this builds the two URLs the way the
//! SDK's presigner does: the same address, the same query, the same signing settings.
//! `tests/presign.rs` holds the two to the same output, byte for byte, for every addressing
//! this supports. What it supports is what a Cinder deployment uses:
//!
//! - virtual-hosted addressing, `https://{bucket}.s3.{region}.{suffix}`, in the `aws`,
//!   `aws-cn` and `aws-us-gov` partitions, with FIPS and dual-stack endpoints;
//! - path-style addressing on a configured endpoint (`AWS_ENDPOINT_URL_S3`, else
//!   `AWS_ENDPOINT_URL`): moto in tests and `make watch`.
//!
//! Anything else (another partition, a bucket name that is not one DNS label) is refused
//! when the function starts, naming the setting, rather than signing a URL S3 would refuse.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use cinder_proto::Timestamp;
use cinder_proto::media::ObjectKey;
use cinder_server::store::{MediaUrls, Presigned, StoreError};

use crate::ConfigError;

/// The longest a SigV4 presigned URL may be valid: seven days.
const MAX_EXPIRY_SECS: u64 = 7 * 24 * 60 * 60;

/// Presigns `PutObject` and `GetObject` URLs for the objects of one bucket.
#[derive(Clone)]
pub struct S3Presigner {
    /// The bucket's address, to which `/{key}` is appended: `https://{bucket}.s3.…` or
    /// `{endpoint}/{bucket}`.
    base: String,
    region: String,
    credentials: SharedCredentialsProvider,
}

impl fmt::Debug for S3Presigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Presigner")
            .field("base", &self.base)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Where S3 is, for [`S3Presigner::new`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Endpoint {
    /// AWS's own: the region's (FIPS, dual-stack) endpoint, the bucket in the host name.
    Aws {
        /// FIPS 140 endpoints (`s3-fips.`); `AWS_USE_FIPS_ENDPOINT`.
        fips: bool,
        /// IPv4 and IPv6 endpoints (`.dualstack.`); `AWS_USE_DUALSTACK_ENDPOINT`.
        dual_stack: bool,
    },
    /// An S3-compatible server at this URL (`http://127.0.0.1:5000`), the bucket in the path.
    PathStyle(String),
}

impl S3Presigner {
    /// A presigner for `bucket` in `region` on `endpoint`, signing with `credentials`' keys.
    pub fn new(
        endpoint: S3Endpoint,
        bucket: &str,
        region: &str,
        credentials: SharedCredentialsProvider,
    ) -> Result<Self, ConfigError> {
        let base = match endpoint {
            S3Endpoint::Aws { fips, dual_stack } => {
                if !is_dns_label(bucket) {
                    return Err(ConfigError::Invalid("MEDIA_BUCKET"));
                }
                let suffix = dns_suffix(region).ok_or(ConfigError::Invalid("AWS_REGION"))?;
                if fips && suffix == CN_SUFFIX {
                    // No partition but `aws`, `aws-us-gov` has FIPS endpoints for S3 in China.
                    return Err(ConfigError::Invalid("AWS_USE_FIPS_ENDPOINT"));
                }
                let service = if fips { "s3-fips" } else { "s3" };
                let stack = if dual_stack { ".dualstack" } else { "" };
                format!("https://{bucket}.{service}{stack}.{region}.{suffix}")
            }
            S3Endpoint::PathStyle(url) => {
                if url.is_empty() || bucket.is_empty() || bucket.contains('/') {
                    return Err(ConfigError::Invalid("AWS_ENDPOINT_URL"));
                }
                format!("{}/{bucket}", url.trim_end_matches('/'))
            }
        };
        Ok(Self {
            base,
            region: region.to_owned(),
            credentials,
        })
    }

    /// A presigner configured the way a Lambda is: region, credentials, endpoint, FIPS and
    /// dual-stack from the SDK's settings (its environment), `AWS_ENDPOINT_URL_S3` before
    /// `AWS_ENDPOINT_URL`, neither if `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true` (as
    /// the SDK has it).
    pub fn from_sdk(sdk: &aws_config::SdkConfig, bucket: &str) -> Result<Self, ConfigError> {
        let region = sdk.region().ok_or(ConfigError::Missing("AWS_REGION"))?;
        let credentials = sdk
            .credentials_provider()
            .ok_or(ConfigError::Missing("AWS_ACCESS_KEY_ID"))?;
        let ignore_endpoints = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let s3_endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
            .ok()
            .filter(|_| !ignore_endpoints);
        let endpoint = match s3_endpoint.or_else(|| sdk.endpoint_url().map(str::to_owned)) {
            Some(url) => S3Endpoint::PathStyle(url),
            None => S3Endpoint::Aws {
                fips: sdk.use_fips().unwrap_or(false),
                dual_stack: sdk.use_dual_stack().unwrap_or(false),
            },
        };
        Self::new(endpoint, bucket, region.as_ref(), credentials)
    }

    /// A presigner for an S3-compatible test server (moto) at `endpoint`: path-style
    /// addressing, `us-east-1`, and placeholder credentials, which such a server does not
    /// check.
    pub fn on_endpoint(endpoint: &str, bucket: &str) -> Result<Self, ConfigError> {
        Self::new(
            S3Endpoint::PathStyle(endpoint.to_owned()),
            bucket,
            "us-east-1",
            SharedCredentialsProvider::new(Credentials::new(
                "test",
                "test",
                None,
                None,
                "test-server",
            )),
        )
    }

    /// The URL of `key`, before signing: what the SDK sends for `operation` on it.
    fn address(&self, key: &ObjectKey, operation: &str) -> String {
        // Object keys are ids in hex and fixed words between slashes (`ObjectKey`'s
        // `Display`), so they need no percent-encoding: the URL is the canonical URI too.
        format!("{}/{key}?x-id={operation}", self.base)
    }

    /// `method` on `url`, with `headers` signed, valid from `now` for `ttl_secs`.
    async fn presign(
        &self,
        method: &str,
        url: String,
        headers: &[(&str, String)],
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        if ttl_secs == 0 || ttl_secs > MAX_EXPIRY_SECS {
            return Err(StoreError::Backend(format!(
                "presigning: a URL lasts 1 s to 7 days, not {ttl_secs} s"
            )));
        }
        let identity = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| StoreError::Backend(format!("presigning: credentials: {e}")))?
            .into();
        // What the SDK's S3 operations sign with (aws-runtime's SigV4 signer with S3's
        // signing options), moved to the query as its presigner does, over an unsigned
        // payload: the body is the client's, sent later.
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.session_token_mode = SessionTokenMode::Include;
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(Duration::from_secs(ttl_secs));
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(SystemTime::UNIX_EPOCH + Duration::from_secs(now.0))
            .settings(settings)
            .build()
            .map_err(|e| StoreError::Backend(format!("presigning: {e}")))?
            .into();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().map(|(name, value)| (*name, value.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| StoreError::Backend(format!("presigning: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| StoreError::Backend(format!("presigning: {e}")))?
            .into_parts();
        let mut request = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(())
            .map_err(|e| StoreError::Backend(format!("presigning: {e}")))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(Presigned {
            url: request.uri().to_string(),
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), value.clone()))
                .collect(),
        })
    }
}

#[async_trait]
impl MediaUrls for S3Presigner {
    async fn upload_url(
        &self,
        key: &ObjectKey,
        size: u64,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        // The length is a request header, so SigV4 signs it (`X-Amz-SignedHeaders` lists
        // `content-length`): S3 refuses the URL for a body of any other size. This is what
        // bounds an upload; a presigned PUT has no other size limit.
        let headers = [("content-length", size.to_string())];
        self.presign(
            "PUT",
            self.address(key, "PutObject"),
            &headers,
            now,
            ttl_secs,
        )
        .await
    }

    async fn download_url(
        &self,
        key: &ObjectKey,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        self.presign("GET", self.address(key, "GetObject"), &[], now, ttl_secs)
            .await
    }
}

const CN_SUFFIX: &str = "amazonaws.com.cn";

/// The DNS suffix of `region`'s partition, for the partitions Cinder deploys to (their
/// region names as the SDK's partition table matches them); `None` for any other.
fn dns_suffix(region: &str) -> Option<&'static str> {
    let mut parts = region.split('-').collect::<Vec<_>>();
    // `{area}-{direction}-{n}`, or `us-gov-{direction}-{n}`.
    let gov = parts.len() == 4 && parts[..2] == ["us", "gov"];
    if gov {
        parts.remove(1);
    }
    let [area, direction, number] = parts[..] else {
        return None;
    };
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !word(direction) || number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match area {
        "us" | "eu" | "ap" | "sa" | "ca" | "me" | "af" | "il" | "mx" => Some("amazonaws.com"),
        "cn" if !gov => Some(CN_SUFFIX),
        _ => None,
    }
}

/// Whether `bucket` can be a host name's first label, as virtual-hosted addressing needs
/// over HTTPS: 3 to 63 lower-case letters, digits and hyphens, a letter or digit at each end.
fn is_dns_label(bucket: &str) -> bool {
    let bytes = bucket.as_bytes();
    (3..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.first() != Some(&b'-')
        && bytes.last() != Some(&b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_told_by_their_region_names() {
        for (region, suffix) in [
            ("us-east-1", Some("amazonaws.com")),
            ("eu-central-2", Some("amazonaws.com")),
            ("ap-southeast-7", Some("amazonaws.com")),
            ("mx-central-1", Some("amazonaws.com")),
            ("us-gov-west-1", Some("amazonaws.com")),
            ("cn-north-1", Some(CN_SUFFIX)),
            ("cn-gov-west-1", None),
            ("us-iso-east-1", None),
            ("us-isob-east-1", None),
            ("eu-isoe-west-1", None),
            ("eusc-de-east-1", None),
            ("us-east", None),
            ("us-east-1a", None),
            ("us--1", None),
            ("", None),
            ("us-east-1/../x", None),
        ] {
            assert_eq!(dns_suffix(region), suffix, "{region}");
        }
    }

    #[test]
    fn a_bucket_must_be_one_dns_label_for_virtual_hosting() {
        for good in ["abc", "cinder-media-1a2b3c", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in [
            "ab",
            "Media",
            "my.bucket",
            "-abc",
            "abc-",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn addressing_that_s3_would_refuse_is_refused_at_start() {
        let credentials = || SharedCredentialsProvider::new(Credentials::for_tests());
        let aws = S3Endpoint::Aws {
            fips: false,
            dual_stack: false,
        };
        let refused = |endpoint: S3Endpoint, bucket: &str, region: &str| {
            S3Presigner::new(endpoint, bucket, region, credentials()).map(|p| p.base)
        };
        assert!(matches!(
            refused(aws.clone(), "my.bucket", "us-east-1"),
            Err(ConfigError::Invalid("MEDIA_BUCKET"))
        ));
        assert!(matches!(
            refused(aws.clone(), "media", "us-iso-east-1"),
            Err(ConfigError::Invalid("AWS_REGION"))
        ));
        assert!(matches!(
            refused(
                S3Endpoint::Aws {
                    fips: true,
                    dual_stack: false
                },
                "media",
                "cn-north-1"
            ),
            Err(ConfigError::Invalid("AWS_USE_FIPS_ENDPOINT"))
        ));
        assert!(matches!(
            refused(S3Endpoint::PathStyle(String::new()), "media", "us-east-1"),
            Err(ConfigError::Invalid("AWS_ENDPOINT_URL"))
        ));
        assert_eq!(
            refused(aws, "media", "cn-northwest-1").ok().as_deref(),
            Some("https://media.s3.cn-northwest-1.amazonaws.com.cn")
        );
    }

    #[tokio::test]
    async fn a_url_lasts_at_most_seven_days() {
        let presigner = S3Presigner::on_endpoint("http://127.0.0.1:9", "media").unwrap();
        let key = ObjectKey::Avatar {
            room: cinder_proto::RoomId([1; 16]),
            media: cinder_proto::MediaId([2; 16]),
        };
        let now = Timestamp(1_800_000_000);
        assert!(
            presigner
                .download_url(&key, now, MAX_EXPIRY_SECS)
                .await
                .is_ok()
        );
        for ttl in [0, MAX_EXPIRY_SECS + 1] {
            assert!(
                presigner.download_url(&key, now, ttl).await.is_err(),
                "{ttl}"
            );
            assert!(
                presigner.upload_url(&key, 1, now, ttl).await.is_err(),
                "{ttl}"
            );
        }
    }

    #[tokio::test]
    async fn upload_urls_sign_the_exact_length() {
        // Presigning is local: no server is contacted.
        let store = S3Presigner::on_endpoint("http://127.0.0.1:9", "media").unwrap();
        let key = ObjectKey::Avatar {
            room: cinder_proto::RoomId([1; 16]),
            media: cinder_proto::MediaId([2; 16]),
        };
        let url = store
            .upload_url(&key, 1234, Timestamp(1_800_000_000), 300)
            .await
            .unwrap();
        let signed = url
            .url
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
            .unwrap_or_default();
        assert!(
            signed.split("%3B").any(|h| h == "content-length"),
            "{url:?}"
        );
        assert_eq!(
            url.headers.get("content-length").map(String::as_str),
            Some("1234")
        );
        assert!(url.url.contains("X-Amz-Expires=300"), "{url:?}");
        assert!(url.url.contains("X-Amz-Date=20270115T080000Z"), "{url:?}");
        assert!(
            url.url
                .starts_with(&format!("http://127.0.0.1:9/media/{key}?")),
            "{url:?}"
        );
    }
}

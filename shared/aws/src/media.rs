//! The media and burn functions' object store: media ciphertexts in one S3 bucket.
//!
//! No bytes pass through a function. The media function checks a capability and presigns
//! one request for one object with its own role's credentials, so a URL can do exactly what
//! that role may (`PutObject` and `GetObject` under `rooms/`) and nothing after it expires;
//! the burn function deletes. Object keys come from [`ObjectKey`] alone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::{PresignedRequest, PresigningConfig};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use cinder_proto::Timestamp;
use cinder_proto::media::{ObjectKey, limits};
use cinder_server::store::{ObjectStore, Presigned, StoreError};

use crate::{ConfigError, backend};

/// The most keys one `DeleteObjects` call takes.
const DELETE_BATCH: usize = 1000;

/// The smallest `MAX_MEDIA_BYTES` accepted: 1 KiB.
const MIN_MAX_BYTES: u64 = 1024;
/// The largest `MAX_MEDIA_BYTES` accepted: 5 GiB, the most one S3 `PUT` can upload.
const MAX_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// The media and burn functions' configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// The bucket holding every media ciphertext.
    pub bucket: String,
    /// The largest object an upload URL is issued for, in bytes.
    pub max_bytes: u64,
}

impl MediaConfig {
    /// Reads `MEDIA_BUCKET` and `MAX_MEDIA_BYTES` (default
    /// [`limits::DEFAULT_MAX_MEDIA_BYTES`]; 1 KiB to 5 GiB).
    pub fn from_env() -> Result<Self, ConfigError> {
        let bucket =
            std::env::var("MEDIA_BUCKET").map_err(|_| ConfigError::Missing("MEDIA_BUCKET"))?;
        Ok(Self {
            bucket,
            max_bytes: max_bytes(std::env::var("MAX_MEDIA_BYTES").ok().as_deref())?,
        })
    }
}

/// `MAX_MEDIA_BYTES`'s value, given the variable's text if it is set.
fn max_bytes(value: Option<&str>) -> Result<u64, ConfigError> {
    match value {
        None => Ok(limits::DEFAULT_MAX_MEDIA_BYTES),
        Some(v) => v
            .parse()
            .ok()
            .filter(|bytes| (MIN_MAX_BYTES..=MAX_MAX_BYTES).contains(bytes))
            .ok_or(ConfigError::Invalid("MAX_MEDIA_BYTES")),
    }
}

/// Media objects in one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: Client,
    bucket: String,
}

impl S3Objects {
    /// A store over an existing client.
    pub fn new(client: Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    /// A store configured the way a Lambda is: SDK settings from the environment. An
    /// `AWS_ENDPOINT_URL` that is an IP address gets path-style URLs (the SDK's endpoint
    /// rules), which is how the shipped binaries reach moto in tests.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, bucket: String) -> Self {
        Self::new(Client::new(sdk), bucket)
    }

    /// A store on an S3-compatible test server (moto) at `endpoint`: path-style addressing,
    /// `us-east-1`, and placeholder credentials, which such a server does not check.
    pub fn on_endpoint(endpoint: &str, bucket: String) -> Self {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new("test", "test", None, None, "test-server"))
            .build();
        Self::new(Client::from_conf(config), bucket)
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The S3 client, for harnesses that create the bucket or inspect it.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Presigning valid from `now` (the server's clock, so a URL expires with its grant's
/// `expires_at`) for `ttl_secs`.
fn presigning(now: Timestamp, ttl_secs: u64) -> Result<PresigningConfig, StoreError> {
    PresigningConfig::builder()
        .start_time(SystemTime::UNIX_EPOCH + Duration::from_secs(now.0))
        .expires_in(Duration::from_secs(ttl_secs))
        .build()
        .map_err(|e| StoreError::Backend(format!("presigning: {e}")))
}

/// The URL and the headers the request must carry as signed (names in lower case).
fn presigned(request: &PresignedRequest) -> Presigned {
    Presigned {
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
    async fn upload_url(
        &self,
        key: &ObjectKey,
        size: u64,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        let length = i64::try_from(size)
            .map_err(|_| StoreError::Backend("object size out of range".into()))?;
        // The length is a request header, so SigV4 signs it (`X-Amz-SignedHeaders` lists
        // `content-length`): S3 refuses the URL for a body of any other size. This is what
        // bounds an upload; a presigned PUT has no other size limit.
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.to_string())
            .content_length(length)
            .presigned(presigning(now, ttl_secs)?)
            .await
            .map_err(backend)?;
        let url = presigned(&request);
        // Should the SDK ever stop sending (and so signing) the length, refuse to hand out a
        // URL that would accept any size.
        if url.headers.get("content-length") != Some(&size.to_string()) {
            return Err(StoreError::Backend(
                "presigned upload does not sign content-length".into(),
            ));
        }
        Ok(url)
    }

    async fn download_url(
        &self,
        key: &ObjectKey,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.to_string())
            .presigned(presigning(now, ttl_secs)?)
            .await
            .map_err(backend)?;
        Ok(presigned(&request))
    }

    async fn delete(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key.to_string()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                // Quiet: the answer lists only the keys that failed. An absent key is not
                // one of them: S3 reports deleting it.
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Backend(e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(backend)?;
            if let Some(first) = out.errors().first() {
                // Counts and S3's error code only: keys name rooms and channels.
                return Err(StoreError::Backend(format!(
                    "{} of {} objects not deleted (first: {})",
                    out.errors().len(),
                    batch.len(),
                    first.code().unwrap_or("no code"),
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_media_bytes_defaults_and_is_bounded() {
        assert_eq!(max_bytes(None).ok(), Some(limits::DEFAULT_MAX_MEDIA_BYTES));
        assert_eq!(max_bytes(Some("1024")).ok(), Some(1024));
        assert_eq!(max_bytes(Some("5368709120")).ok(), Some(MAX_MAX_BYTES));
        for bad in ["", "1023", "5368709121", "-1", "1e6", "ten"] {
            assert!(
                matches!(
                    max_bytes(Some(bad)),
                    Err(ConfigError::Invalid("MAX_MEDIA_BYTES"))
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn upload_urls_sign_the_exact_length() {
        // Presigning is local: no server is contacted.
        let store = S3Objects::on_endpoint("http://127.0.0.1:9", "media".into());
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

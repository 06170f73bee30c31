//! The object store with deletes: the burn function's (and the tests'), on an S3 client.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use cinder_proto::Timestamp;
use cinder_proto::media::ObjectKey;
use cinder_server::store::{MediaUrls, ObjectStore, Presigned, StoreError};

use super::S3Presigner;
use crate::{ConfigError, backend};

/// The most keys one `DeleteObjects` call takes.
const DELETE_BATCH: usize = 1000;

/// Media objects in one S3 bucket: deleted through an S3 client, presigned without one.
#[derive(Debug, Clone)]
pub struct S3Objects {
    client: Client,
    presigner: S3Presigner,
    bucket: String,
}

impl S3Objects {
    /// A store configured the way a Lambda is: SDK settings from the environment (what
    /// [`S3Presigner::from_sdk`] reads; an `AWS_ENDPOINT_URL` gets path-style URLs).
    pub fn from_sdk(sdk: &aws_config::SdkConfig, bucket: String) -> Result<Self, ConfigError> {
        Ok(Self {
            presigner: S3Presigner::from_sdk(sdk, &bucket)?,
            client: Client::new(sdk),
            bucket,
        })
    }

    /// A store on an S3-compatible test server (moto) at `endpoint`: path-style addressing,
    /// `us-east-1`, and placeholder credentials, which such a server does not check.
    pub fn on_endpoint(endpoint: &str, bucket: String) -> Result<Self, ConfigError> {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .credentials_provider(Credentials::new("test", "test", None, None, "test-server"))
            .build();
        Ok(Self {
            presigner: S3Presigner::on_endpoint(endpoint, &bucket)?,
            client: Client::from_conf(config),
            bucket,
        })
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

#[async_trait]
impl MediaUrls for S3Objects {
    async fn upload_url(
        &self,
        key: &ObjectKey,
        size: u64,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        self.presigner.upload_url(key, size, now, ttl_secs).await
    }

    async fn download_url(
        &self,
        key: &ObjectKey,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        self.presigner.download_url(key, now, ttl_secs).await
    }
}

#[async_trait]
impl ObjectStore for S3Objects {
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

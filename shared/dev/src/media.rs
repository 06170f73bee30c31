//! Media under `make dev`: files in the data folder, behind URLs signed the way S3's
//! presigned URLs are, so a client cannot tell the two apart. A URL names one object, one
//! method, an expiry and (for uploads) the exact size, under an HMAC-SHA256 whose key lives
//! in the data folder; the dev server checks all of it before it reads or writes a byte.
//!
//! - [`FileObjects`]: the [`ObjectStore`] over the folder.
//! - [`routes`]: `PUT` and `GET /blobs/{key}`, the URLs' other end.
//! - [`sweep`]: deletes the files of burnt and deleted messages, as the shards table's
//!   stream does in AWS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cinder_proto::Timestamp;
use cinder_proto::media::ObjectKey;
use cinder_server::store::{MediaUrls, ObjectStore, Presigned, StoreError};
use cinder_server::{Clock, Error};
use cinder_sqlite::SqliteStore;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

/// Media files and the key that signs their URLs.
pub struct FileObjects {
    root: PathBuf,
    /// The largest object an upload URL is issued for.
    max_bytes: u64,
    key: [u8; 32],
    /// The dev server's own address, which the URLs start with.
    base: String,
    clock: Clock,
}

impl FileObjects {
    /// Media under `data_dir/media`, URLs signed with `key` and starting with `base_url`,
    /// objects up to `max_bytes`.
    pub fn new(
        data_dir: &Path,
        key: [u8; 32],
        base_url: &str,
        clock: Clock,
        max_bytes: u64,
    ) -> Self {
        Self {
            root: data_dir.join("media"),
            max_bytes,
            key,
            base: base_url.trim_end_matches('/').to_owned(),
            clock,
        }
    }

    /// The largest object, in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        // An ObjectKey prints as ids and numbers only, so it cannot climb out of the folder.
        self.root.join(key.to_string())
    }

    fn mac(&self, method: &str, key: &ObjectKey, size: Option<u64>, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        let size = size.map_or_else(String::new, |s| s.to_string());
        mac.update(format!("cinder/blob/v1\n{method}\n{key}\n{size}\n{expires}").as_bytes());
        mac
    }

    fn url(&self, method: &str, key: &ObjectKey, size: Option<u64>, expires: u64) -> String {
        let sig = hex::encode(self.mac(method, key, size, expires).finalize().into_bytes());
        let size = size.map_or_else(String::new, |s| format!("&size={s}"));
        format!(
            "{}/blobs/{key}?expires={expires}{size}&sig={sig}",
            self.base
        )
    }

    /// Checks a URL's signature (in constant time) and expiry.
    fn check(&self, method: &str, key: &ObjectKey, q: &Signed) -> Result<(), Error> {
        let sig = hex::decode(&q.sig).map_err(|_| Error::Forbidden)?;
        self.mac(method, key, q.size, q.expires)
            .verify_slice(&sig)
            .map_err(|_| Error::Forbidden)?;
        if q.expires <= self.clock.now().0 {
            return Err(Error::Forbidden);
        }
        Ok(())
    }
}

#[async_trait]
impl MediaUrls for FileObjects {
    async fn upload_url(
        &self,
        key: &ObjectKey,
        size: u64,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        Ok(Presigned {
            url: self.url("PUT", key, Some(size), now.plus(ttl_secs).0),
            headers: [("content-length".to_owned(), size.to_string())].into(),
        })
    }

    async fn download_url(
        &self,
        key: &ObjectKey,
        now: Timestamp,
        ttl_secs: u64,
    ) -> Result<Presigned, StoreError> {
        Ok(Presigned {
            url: self.url("GET", key, None, now.plus(ttl_secs).0),
            headers: Default::default(),
        })
    }
}

#[async_trait]
impl ObjectStore for FileObjects {
    async fn delete(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
        for key in keys {
            match tokio::fs::remove_file(self.path(key)).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::Backend(format!("deleting a media file: {e}")));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A signed URL's query.
#[derive(Deserialize)]
struct Signed {
    expires: u64,
    size: Option<u64>,
    sig: String,
}

/// `PUT` and `GET /blobs/{key}`: where the signed URLs lead.
pub fn routes(objects: Arc<FileObjects>) -> Router {
    Router::new()
        .route("/blobs/{*key}", get(download).put(upload))
        .with_state(objects)
}

fn parse_key(key: &str) -> Result<ObjectKey, Error> {
    key.parse().map_err(|_| Error::NotFound("object"))
}

async fn upload(
    State(objects): State<Arc<FileObjects>>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<Signed>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Error> {
    let key = parse_key(&key)?;
    objects.check("PUT", &key, &q)?;
    let size = q.size.ok_or(Error::Forbidden)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared != Some(size) {
        return Err(Error::limit(
            "content-length",
            format!("this URL takes exactly {size} bytes"),
        ));
    }
    let path = objects.path(&key);
    let dir = path.parent().ok_or(Error::NotFound("object"))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::Internal(format!("media folder: {e}")))?;
    // Written beside, then renamed: a reader never sees half a file.
    let tmp = path.with_extension(format!("part-{}", hex::encode(random8()?)));
    let written = write_exactly(&tmp, body, size).await;
    match written {
        Ok(()) => tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| Error::Internal(format!("media file: {e}")))
            .map(|()| StatusCode::OK),
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

fn random8() -> Result<[u8; 8], Error> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    Ok(b)
}

/// Streams `body` into `path`, refusing a byte more or less than `size`.
async fn write_exactly(path: &Path, body: Body, size: u64) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Internal(format!("media file: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut stream = body.into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| Error::InvalidParameter("upload interrupted".into()))?;
        total += chunk.len() as u64;
        if total > size {
            return Err(Error::limit("body", format!("more than {size} bytes")));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    if total != size {
        return Err(Error::limit("body", format!("{total} bytes, not {size}")));
    }
    file.sync_all().await.map_err(io)
}

async fn download(
    State(objects): State<Arc<FileObjects>>,
    UrlPath(key): UrlPath<String>,
    Query(q): Query<Signed>,
) -> Result<Response, Error> {
    let key = parse_key(&key)?;
    if q.size.is_some() {
        return Err(Error::Forbidden);
    }
    objects.check("GET", &key, &q)?;
    let file = match tokio::fs::File::open(objects.path(&key)).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound("object"));
        }
        Err(e) => return Err(Error::Internal(format!("media file: {e}"))),
    };
    let len = file
        .metadata()
        .await
        .map_err(|e| Error::Internal(format!("media file: {e}")))?
        .len();
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
    Ok((
        [
            (header::CONTENT_LENGTH, len.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Deletes the files of messages that burnt or were deleted by `now`; returns how many.
pub async fn sweep(
    store: &SqliteStore,
    objects: &FileObjects,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut done = 0;
    loop {
        let due = store.media_due(now, 500).await?;
        if due.is_empty() {
            return Ok(done);
        }
        objects.delete(&due).await?;
        store.forget_media(&due).await?;
        done += due.len();
    }
}

/// Deletes files no message will ever link or serve: attachments older than `max_age_secs`
/// (uploaded but never posted, or outliving any burn time), and uploads that broke off. The S3 bucket's lifecycle rule does the same in AWS. Returns how many.
pub async fn sweep_orphans(objects: &FileObjects, max_age_secs: u64) -> std::io::Result<usize> {
    let cutoff = std::time::SystemTime::now()
        .checked_sub(std::time::Duration::from_secs(max_age_secs))
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut gone = 0;
    // Attachments only (`rooms/`), as the bucket's lifecycle rule: avatars do not burn.
    let mut dirs = vec![objects.root.join("rooms")];
    while let Some(dir) = dirs.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        while let Some(entry) = entries.next_entry().await? {
            let meta = entry.metadata().await?;
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.modified()? < cutoff {
                tokio::fs::remove_file(entry.path()).await?;
                gone += 1;
            }
        }
    }
    Ok(gone)
}

/// Sweeps every `every` until the process ends; orphans once an hour, after
/// `orphan_age_secs`.
pub fn spawn_sweeper(
    store: Arc<SqliteStore>,
    objects: Arc<FileObjects>,
    every: std::time::Duration,
    orphan_age_secs: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut last_orphan_sweep: Option<std::time::Instant> = None;
        loop {
            tick.tick().await;
            let now = objects.clock.now();
            if let Err(e) = sweep(&store, &objects, now).await {
                tracing::warn!(error = %e, "media sweep failed; retrying at the next tick");
            }
            if last_orphan_sweep.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(3600))
            {
                last_orphan_sweep = Some(std::time::Instant::now());
                if let Err(e) = sweep_orphans(&objects, orphan_age_secs).await {
                    tracing::warn!(error = %e, "orphaned media sweep failed");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_orphans_go_and_recent_files_stay() {
        let dir = tempfile::tempdir().unwrap();
        let objects = FileObjects::new(dir.path(), [1; 32], "http://x", Clock::system(), 10);
        let key: ObjectKey = format!(
            "rooms/{}/channels/{}/3/{}",
            cinder_proto::RoomId([1; 16]),
            cinder_proto::ChannelId([2; 16]),
            cinder_proto::MediaId([3; 16])
        )
        .parse()
        .unwrap();
        let path = objects.path(&key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(
            sweep_orphans(&objects, 3600).await.unwrap(),
            0,
            "a fresh file stays"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(sweep_orphans(&objects, 1).await.unwrap(), 1);
        assert!(!path.exists());
    }
}

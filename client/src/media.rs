//! Files, encrypted on the client as a stream and moved straight to or from storage.
//!
//! Each file gets a fresh 256-bit key. The plaintext is cut into 64 KiB segments, each
//! sealed with AES-256-GCM under the nonce `0 0 0 ‖ index (u64 big-endian) ‖ last` (the
//! STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár): a reader detects a
//! dropped, repeated or reordered segment (wrong index), a truncated file (no segment
//! marked last) and anything after the end. The associated data binds the object's media id
//! and the file's size, so a segment from another file, or the same bytes under another
//! id, does not open. Memory stays at one segment whatever the file's size.
//!
//! The key, name, size and SHA-256 of the plaintext travel inside the message that links
//! the file (an [`Attachment`]), signed by its sender; the server sees only the media id.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce, Tag};
use cinder_proto::{Blob, MediaId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ClientError;
use crate::rooms::Secret32;

/// Plaintext bytes per segment.
pub const SEGMENT: usize = 64 * 1024;
const TAG: usize = 16;

/// A file linked from a message: what a reader needs to fetch, open and check it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The object, under the message's room, channel and number.
    pub media_id: MediaId,
    /// The file's name, as the sender gave it (a reader should not trust it as a path).
    pub name: String,
    /// The plaintext's size in bytes.
    pub size: u64,
    /// SHA-256 of the plaintext.
    pub sha256: Blob,
    /// The file key.
    pub(crate) key: Secret32,
    /// When the message that links it burns: set by the reader that verified the message,
    /// never sent. [`crate::Client::download`] fetches nothing once it has passed, whatever
    /// the server still serves.
    #[serde(skip)]
    pub(crate) burn_at: Option<Timestamp>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("media_id", &self.media_id)
            .field("name", &self.name)
            .field("size", &self.size)
            .field("burn_at", &self.burn_at)
            .finish_non_exhaustive()
    }
}

/// How many segments a file of `size` bytes has (an empty file has one, empty and last).
fn segments(size: u64) -> u64 {
    size.div_ceil(SEGMENT as u64).max(1)
}

/// The ciphertext's length for a plaintext of `size` bytes.
pub fn sealed_len(size: u64) -> u64 {
    // Saturates rather than overflow: no stream that long exists to compare with.
    size.saturating_add(segments(size).saturating_mul(TAG as u64))
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

fn aad(media: MediaId, size: u64) -> Vec<u8> {
    [
        b"cinder/media/v1\0".as_slice(),
        &media.0,
        &size.to_be_bytes(),
    ]
    .concat()
}

/// Seals a file segment by segment. Feed it the plaintext in order; it hands back each
/// sealed segment, and the SHA-256 of everything at the end.
pub struct Sealer {
    cipher: Aes256Gcm,
    media: MediaId,
    aad: Vec<u8>,
    size: u64,
    index: u64,
    fed: u64,
    hash: Sha256,
}

impl Sealer {
    /// A sealer for a file of exactly `size` bytes, stored as `media`, under `key`.
    pub fn new(key: &Secret32, media: MediaId, size: u64) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.expose().into()),
            media,
            aad: aad(media, size),
            size,
            index: 0,
            fed: 0,
            hash: Sha256::new(),
        }
    }

    /// The attachment a message carries for the file just sealed under `key` (the key this
    /// sealer was made with).
    pub fn attachment(&self, key: Secret32, name: &str) -> Result<Attachment, ClientError> {
        Ok(Attachment {
            media_id: self.media,
            name: name.into(),
            size: self.size,
            sha256: self.finish()?,
            key,
            burn_at: None,
        })
    }

    /// Seals the next segment: exactly [`SEGMENT`] bytes, or fewer for the last one.
    pub fn seal(&mut self, mut segment: Vec<u8>) -> Result<Vec<u8>, ClientError> {
        let last = self.fed + segment.len() as u64 == self.size;
        let full = segment.len() == SEGMENT;
        if self.index >= segments(self.size) || (!last && !full) || segment.len() > SEGMENT {
            return Err(ClientError::Input(
                "the file changed size while it was being sent".into(),
            ));
        }
        self.hash.update(&segment);
        let tag = self
            .cipher
            .encrypt_in_place_detached(
                GcmNonce::from_slice(&nonce(self.index, last)),
                &self.aad,
                &mut segment,
            )
            .map_err(|_| ClientError::Internal("AES-GCM sealing failed".into()))?;
        segment.extend_from_slice(&tag);
        self.index += 1;
        self.fed += (segment.len() - TAG) as u64;
        Ok(segment)
    }

    /// Whether every segment has been sealed.
    pub fn done(&self) -> bool {
        self.index == segments(self.size)
    }

    /// The plaintext's SHA-256, once every segment is sealed.
    pub fn finish(&self) -> Result<Blob, ClientError> {
        if !self.done() {
            return Err(ClientError::Input(
                "the file changed size while it was being sent".into(),
            ));
        }
        Ok(Blob(self.hash.clone().finalize().to_vec()))
    }
}

/// Opens a sealed file as its bytes arrive, in any chunking, holding at most one segment.
pub struct Opener {
    cipher: Aes256Gcm,
    aad: Vec<u8>,
    size: u64,
    index: u64,
    buffer: Vec<u8>,
    finished: bool,
    opened: u64,
    hash: Sha256,
}

fn refused(why: &str) -> ClientError {
    ClientError::Verification(format!("the attachment {why}"))
}

impl Opener {
    /// An opener for the file `attachment` describes.
    pub fn new(attachment: &Attachment) -> Self {
        Self {
            cipher: Aes256Gcm::new(attachment.key.expose().into()),
            aad: aad(attachment.media_id, attachment.size),
            size: attachment.size,
            index: 0,
            buffer: Vec::with_capacity(SEGMENT + TAG),
            finished: false,
            opened: 0,
            hash: Sha256::new(),
        }
    }

    /// Takes the next bytes of ciphertext; returns the plaintext of every segment they
    /// complete. A segment is opened only once the one after it has begun (or the stream
    /// ends), since only then is it known whether it is the last.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            if self.finished {
                return Err(refused("has bytes after its last segment"));
            }
            let room = SEGMENT + TAG - self.buffer.len();
            if room == 0 {
                // Only the last segment waits here whole (any other is opened as soon as
                // it fills), so these bytes are past the end; taking none of them would
                // loop forever.
                return Err(refused("has bytes after its last segment"));
            }
            let take = room.min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            let expected_last = self.index + 1 == segments(self.size);
            if self.buffer.len() == SEGMENT + TAG && !expected_last {
                out.extend(self.open_segment(false)?);
            }
        }
        Ok(out)
    }

    /// The stream ended: opens the last segment, and checks the whole file's size and hash
    /// against `expected` (the SHA-256 the message carries).
    pub fn finish(mut self, expected: &Blob) -> Result<Vec<u8>, ClientError> {
        if self.finished || self.index + 1 != segments(self.size) {
            return Err(refused("is truncated"));
        }
        let tail = self.open_segment(true)?;
        if self.opened != self.size {
            return Err(refused("has the wrong size"));
        }
        let hash = Blob(std::mem::take(&mut self.hash).finalize().to_vec());
        if &hash != expected {
            return Err(refused("does not match its hash"));
        }
        Ok(tail)
    }

    fn open_segment(&mut self, last: bool) -> Result<Vec<u8>, ClientError> {
        let mut segment = std::mem::take(&mut self.buffer);
        let split = segment
            .len()
            .checked_sub(TAG)
            .ok_or_else(|| refused("is truncated"))?;
        let tag = Tag::clone_from_slice(&segment[split..]);
        segment.truncate(split);
        self.cipher
            .decrypt_in_place_detached(
                GcmNonce::from_slice(&nonce(self.index, last)),
                &self.aad,
                &mut segment,
                &tag,
            )
            .map_err(|_| refused("was altered, reordered, cut or spliced"))?;
        self.index += 1;
        self.finished = last;
        self.opened += segment.len() as u64;
        self.hash.update(&segment);
        self.buffer = Vec::with_capacity(SEGMENT + TAG);
        Ok(segment)
    }
}

/// Reports progress: bytes moved so far.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// A local file to attach.
#[derive(Debug, Clone)]
pub struct FileToSend {
    /// Where it is.
    pub path: std::path::PathBuf,
    /// The name readers see (by default the file's own name).
    pub name: String,
}

impl FileToSend {
    /// The file at `path`, under its own name.
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        let path = path.into();
        let name = path
            .file_name()
            .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
        Self { path, name }
    }
}

fn file_error(path: &std::path::Path) -> impl Fn(std::io::Error) -> ClientError + '_ {
    move |source| ClientError::File {
        path: path.display().to_string(),
        source,
    }
}

/// Sends one request to object storage (with the headers its URL was signed with):
/// anything but success is a failed transfer, naming `what`.
pub(crate) async fn to_storage(
    mut request: reqwest::RequestBuilder,
    headers: &std::collections::BTreeMap<String, String>,
    what: &str,
) -> Result<reqwest::Response, ClientError> {
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = request
        .send()
        .await
        .map_err(|e| transfer_failed(None, e.without_url().to_string()))?;
    if !answer.status().is_success() {
        return Err(transfer_failed(
            Some(answer.status().as_u16()),
            format!("storage refused the {what}"),
        ));
    }
    Ok(answer)
}

pub(crate) fn transfer_failed(status: Option<u16>, reason: impl Into<String>) -> ClientError {
    ClientError::Transfer {
        status,
        reason: reason.into(),
    }
}

impl crate::Client {
    /// Sends a message with files: holds a number, uploads each file sealed as a stream
    /// under a fresh key straight to storage (never through a function), then posts the
    /// message, which carries the keys, names, sizes and hashes, signed. `burn_secs` may not
    /// exceed the channel's; the files are deleted when the message burns or is deleted.
    pub async fn send_files(
        &self,
        me: &crate::Identity,
        m: &mut crate::rooms::Membership,
        channel: cinder_proto::ChannelId,
        (text, files): (&str, &[FileToSend]),
        burn_secs: u64,
        progress: Option<Progress>,
    ) -> Result<u64, ClientError> {
        let reserved = self.reserve_for(m, channel, burn_secs).await?;
        let number = reserved.number;
        let mut attachments = Vec::new();
        for file in files {
            attachments.push(
                self.upload(m, channel, number, file, progress.clone())
                    .await?,
            );
        }
        let content = crate::rooms::Content::Text {
            text: text.into(),
            reply_to: None,
            attachments,
        };
        self.post_message(
            me,
            m,
            (channel, number, Some(reserved.hold)),
            &content,
            burn_secs,
        )
        .await
    }

    async fn upload(
        &self,
        m: &crate::rooms::Membership,
        channel: cinder_proto::ChannelId,
        number: u64,
        file: &FileToSend,
        progress: Option<Progress>,
    ) -> Result<Attachment, ClientError> {
        use tokio::io::AsyncReadExt;
        let fail = file_error(&file.path);
        let handle = tokio::fs::File::open(&file.path).await.map_err(&fail)?;
        let size = handle.metadata().await.map_err(&fail)?.len();
        let grant = self
            .upload_grant(m, channel, number, sealed_len(size))
            .await?;
        let key = Secret32::random()?;
        let sealer = Sealer::new(&key, grant.media_id, size);
        let hash = std::sync::Arc::new(std::sync::Mutex::new(None));
        let done = hash.clone();
        let path = file.path.clone();
        // One segment in memory at a time: read, seal, hand to the HTTP body, repeat.
        let body = futures::stream::try_unfold(
            (handle, sealer, 0u64),
            move |(mut handle, mut sealer, sent)| {
                let (path, done, progress) = (path.clone(), done.clone(), progress.clone());
                async move {
                    if sealer.done() {
                        return Ok::<_, ClientError>(None);
                    }
                    let mut segment = vec![0u8; SEGMENT];
                    let mut filled = 0;
                    while filled < SEGMENT {
                        let n = handle
                            .read(&mut segment[filled..])
                            .await
                            .map_err(file_error(&path))?;
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    segment.truncate(filled);
                    let sealed = bytes::Bytes::from(sealer.seal(segment)?);
                    // The HTTP client may stop asking once it has the declared length, so
                    // the hash is taken with the last segment, not after it.
                    if sealer.done() {
                        *done.lock().unwrap_or_else(|p| p.into_inner()) = Some(sealer.finish()?);
                    }
                    let sent = sent + filled as u64;
                    if let Some(p) = &progress {
                        p(sent);
                    }
                    Ok(Some((sealed, (handle, sealer, sent))))
                }
            },
        );
        let request = self
            .http()
            .put(&grant.url)
            .body(reqwest::Body::wrap_stream(body));
        to_storage(request, &grant.headers, "upload").await?;
        let sha256 = hash
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| transfer_failed(None, "the upload ended early"))?;
        Ok(Attachment {
            media_id: grant.media_id,
            name: file.name.clone(),
            size,
            sha256,
            key,
            burn_at: None,
        })
    }

    /// An upload URL for an object of `size` bytes linked from message `number`.
    pub(crate) async fn upload_grant(
        &self,
        m: &crate::rooms::Membership,
        channel: cinder_proto::ChannelId,
        number: u64,
        size: u64,
    ) -> Result<cinder_proto::media::UploadGrant, ClientError> {
        let (_, key) = m.channel_key(channel)?;
        self.call_capability(
            &crate::rooms::capabilities::channel_capability(key, m.room, channel),
            cinder_proto::Signer::Channel(m.room, channel),
            reqwest::Method::POST,
            &format!("/media/{}/{channel}/{number}", m.room),
            Some(&cinder_proto::media::UploadRequest { size }),
        )
        .await
    }

    /// A download URL for an object linked from message `number`, while it lives.
    pub(crate) async fn download_grant(
        &self,
        m: &crate::rooms::Membership,
        channel: cinder_proto::ChannelId,
        number: u64,
        media: MediaId,
    ) -> Result<cinder_proto::media::DownloadGrant, ClientError> {
        let (_, key) = m.channel_key(channel)?;
        self.call_capability::<(), _>(
            &crate::rooms::capabilities::channel_capability(key, m.room, channel),
            cinder_proto::Signer::Channel(m.room, channel),
            reqwest::Method::GET,
            &format!("/media/{}/{channel}/{number}/{media}", m.room),
            None,
        )
        .await
    }

    /// Downloads an attachment of message `number` and writes its plaintext to `out`,
    /// refusing it unless every segment opens in order and its size and hash match what
    /// the (verified) message says. Returns the bytes written.
    ///
    /// An attachment read from a message carries that message's burn time: once it has
    /// passed (by the clock readers burn by), nothing is fetched, even from a server that
    /// still hands out a URL, so an app that kept the message does not show its files.
    pub async fn download<W>(
        &self,
        m: &crate::rooms::Membership,
        channel: cinder_proto::ChannelId,
        number: u64,
        attachment: &Attachment,
        out: &mut W,
        progress: Option<Progress>,
    ) -> Result<u64, ClientError>
    where
        W: tokio::io::AsyncWrite + Unpin,
    {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        self.not_burnt(attachment)?;
        let grant = self
            .download_grant(m, channel, number, attachment.media_id)
            .await?;
        // Asking may have taught this client the server's clock: check again.
        self.not_burnt(attachment)?;
        let answer =
            to_storage(self.http().get(&grant.url), &Default::default(), "download").await?;
        let write = |e| ClientError::File {
            path: attachment.name.clone(),
            source: e,
        };
        let mut opener = Opener::new(attachment);
        let mut stream = answer.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| transfer_failed(None, e.without_url().to_string()))?;
            let plain = opener.feed(&chunk)?;
            out.write_all(&plain).await.map_err(write)?;
            written += plain.len() as u64;
            if let Some(p) = &progress {
                p(written);
            }
        }
        let tail = opener.finish(&attachment.sha256)?;
        out.write_all(&tail).await.map_err(write)?;
        out.flush().await.map_err(write)?;
        Ok(written + tail.len() as u64)
    }

    /// Refuses an attachment whose message has burnt, by the clock readers burn by.
    fn not_burnt(&self, attachment: &Attachment) -> Result<(), ClientError> {
        match attachment.burn_at {
            Some(at) if crate::rooms::messages::burnt(at, self.burn_clock()) => {
                Err(ClientError::Verification(format!(
                    "the message linking {} burnt at {}: its file is not fetched",
                    attachment.name, at.0
                )))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn attachment(data: &[u8], media: MediaId) -> (Attachment, Vec<u8>) {
        let key = Secret32::random().unwrap();
        let mut sealer = Sealer::new(&key, media, data.len() as u64);
        let mut sealed = Vec::new();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[]]
        } else {
            data.chunks(SEGMENT).collect()
        };
        for chunk in chunks {
            sealed.extend(sealer.seal(chunk.to_vec()).unwrap());
        }
        let sha256 = sealer.finish().unwrap();
        let a = Attachment {
            media_id: media,
            name: "f".into(),
            size: data.len() as u64,
            sha256,
            key,
            burn_at: None,
        };
        (a, sealed)
    }

    fn open(a: &Attachment, sealed: &[u8], chunk: usize) -> Result<Vec<u8>, ClientError> {
        let mut opener = Opener::new(a);
        let mut out = Vec::new();
        for piece in sealed.chunks(chunk.max(1)) {
            out.extend(opener.feed(piece)?);
        }
        out.extend(opener.finish(&a.sha256)?);
        Ok(out)
    }

    #[test]
    fn files_of_every_shape_round_trip_in_any_chunking() {
        for size in [
            0,
            1,
            SEGMENT - 1,
            SEGMENT,
            SEGMENT + 1,
            3 * SEGMENT,
            3 * SEGMENT + 7,
        ] {
            let data = file(size);
            let (a, sealed) = attachment(&data, MediaId([1; 16]));
            assert_eq!(sealed.len() as u64, sealed_len(size as u64), "{size}");
            for chunk in [1, 1000, SEGMENT + TAG, 1 << 20] {
                assert_eq!(open(&a, &sealed, chunk).unwrap(), data, "{size} by {chunk}");
            }
        }
    }

    #[test]
    fn tampered_truncated_reordered_extended_and_swapped_files_are_refused() {
        let data = file(3 * SEGMENT + 100);
        let (a, sealed) = attachment(&data, MediaId([1; 16]));
        let seg = SEGMENT + TAG;
        let mut flipped = sealed.clone();
        flipped[10] ^= 1;
        let truncated = sealed[..2 * seg].to_vec();
        let cut_tail = sealed[..sealed.len() - 1].to_vec();
        let mut reordered = sealed.clone();
        reordered[..seg].copy_from_slice(&sealed[seg..2 * seg]);
        reordered[seg..2 * seg].copy_from_slice(&sealed[..seg]);
        let mut extended = sealed.clone();
        extended.extend_from_slice(&[0; 17]);
        // The same file under another media id, and another file's segment spliced in.
        let mut other_id = a.clone();
        other_id.media_id = MediaId([2; 16]);
        let (b, sealed_b) = attachment(&file(3 * SEGMENT + 100), MediaId([1; 16]));
        let mut spliced = sealed.clone();
        spliced[seg..2 * seg].copy_from_slice(&sealed_b[seg..2 * seg]);
        let _ = b;
        for (what, a, bytes) in [
            ("flipped", &a, flipped),
            ("truncated at a segment", &a, truncated),
            ("cut", &a, cut_tail),
            ("reordered", &a, reordered),
            ("extended", &a, extended),
            ("relabelled", &other_id, sealed.clone()),
            ("spliced", &a, spliced),
        ] {
            assert!(open(a, &bytes, 4096).is_err(), "{what} opened");
        }
        // A wrong hash in the message is caught too.
        let mut wrong = a.clone();
        wrong.sha256 = Blob(vec![0; 32]);
        assert!(open(&wrong, &sealed, 4096).is_err());
    }

    #[test]
    fn bytes_past_a_full_last_segment_are_refused_not_looped_on() {
        // Found by fuzzing (fuzz/fuzz_targets/client_media.rs): when the last segment is
        // whole, extra bytes used to find no room in the buffer and `feed` spun forever.
        for size in [0, SEGMENT, 2 * SEGMENT] {
            let (a, mut sealed) = attachment(&file(size), MediaId([1; 16]));
            sealed.push(0);
            for chunk in [1, 4096, 1 << 20] {
                assert!(
                    open(&a, &sealed, chunk).is_err(),
                    "{size} by {chunk} opened"
                );
            }
        }
    }

    #[test]
    fn a_sealer_refuses_a_file_that_changes_size() {
        let key = Secret32::random().unwrap();
        let mut s = Sealer::new(&key, MediaId([1; 16]), 10);
        assert!(s.seal(vec![0; 11]).is_err());
        let mut s = Sealer::new(&key, MediaId([1; 16]), (SEGMENT + 10) as u64);
        assert!(
            s.seal(vec![0; 100]).is_err(),
            "a short segment that is not the last"
        );
        let mut s = Sealer::new(&key, MediaId([1; 16]), 10);
        s.seal(vec![0; 10]).unwrap();
        assert!(s.seal(vec![]).is_err(), "nothing after the last");
    }

    #[test]
    fn the_sealed_object_is_the_documented_format() {
        use aes_gcm::aead::Aead;
        // Three segments, the first two the same bytes: the format of docs/API.md, opened
        // with AES-256-GCM alone.
        let mut data = vec![7u8; 2 * SEGMENT];
        data.extend_from_slice(b"tail");
        let media = MediaId([9; 16]);
        let (a, sealed) = attachment(&data, media);
        let cipher = Aes256Gcm::new(a.key.expose().into());
        let mut ad = b"cinder/media/v1\0".to_vec();
        ad.extend_from_slice(&media.0);
        ad.extend_from_slice(&(data.len() as u64).to_be_bytes());
        let segments: Vec<&[u8]> = sealed.chunks(SEGMENT + TAG).collect();
        assert_eq!(segments.len(), 3);
        let mut opened = Vec::new();
        for (i, segment) in segments.iter().enumerate() {
            let mut n = [0u8; 12];
            n[3..11].copy_from_slice(&(i as u64).to_be_bytes());
            n[11] = u8::from(i == 2);
            let plain = cipher
                .decrypt(
                    GcmNonce::from_slice(&n),
                    aes_gcm::aead::Payload {
                        msg: segment,
                        aad: &ad,
                    },
                )
                .unwrap();
            opened.extend(plain);
        }
        assert_eq!(opened, data);
        // Equal plaintext segments seal to different bytes: no nonce is used twice.
        assert_ne!(segments[0], segments[1]);
    }

    #[test]
    fn each_tampering_is_refused_where_it_is_first_seen() {
        let data = file(3 * SEGMENT + 100);
        let (a, sealed) = attachment(&data, MediaId([1; 16]));
        let seg = SEGMENT + TAG;
        let refusal = |bytes: &[u8]| match open(&a, bytes, 4096) {
            Err(ClientError::Verification(why)) => why,
            other => panic!("{other:?}"),
        };
        // Segments swapped, or an earlier one served as the last, fail their own tags (the
        // nonce names the position and whether it is the last), before any hash is checked;
        let mut swapped = sealed.clone();
        swapped[..seg].copy_from_slice(&sealed[seg..2 * seg]);
        swapped[seg..2 * seg].copy_from_slice(&sealed[..seg]);
        assert!(refusal(&swapped).contains("altered, reordered, cut or spliced"));
        let early_last = [&sealed[..3 * seg], &sealed[..seg]].concat();
        assert!(refusal(&early_last).contains("altered, reordered, cut or spliced"));
        // a stream cut after a whole segment has no last one to open.
        assert!(refusal(&sealed[..3 * seg]).contains("is truncated"));
        assert!(refusal(&sealed[..2 * seg]).contains("is truncated"));
    }
}

//! The media and burn functions' object store: media ciphertexts in one S3 bucket.
//!
//! No bytes pass through a function. The media function checks a capability and presigns
//! one request for one object with its own role's credentials, so a URL can do exactly what
//! that role may (`PutObject` and `GetObject` under `rooms/`) and nothing after it expires:
//! it presigns with [`S3Presigner`] alone, without an S3 client. The burn function deletes,
//! through `S3Objects`. Object keys come from [`cinder_proto::media::ObjectKey`] alone.

use cinder_proto::media::limits;

use crate::ConfigError;

mod presign;
pub use presign::{S3Endpoint, S3Presigner};

#[cfg(feature = "media-objects")]
mod objects;
#[cfg(feature = "media-objects")]
pub use objects::S3Objects;

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
}

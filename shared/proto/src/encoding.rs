//! Byte fields on the wire: base64url without padding, with their lengths checked on parse.
//!
//! Every binary value in a JSON body or a header uses this one encoding, so a client author
//! has exactly one rule to follow. Fixed-size values are checked for length when parsed,
//! so code past the edge never handles a key of the wrong size.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ProtoError;

/// Encodes bytes as base64url without padding.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn decode(text: &str) -> Result<Vec<u8>, ProtoError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| ProtoError::Base64)
}

fn decode_array<const N: usize>(text: &str) -> Result<[u8; N], ProtoError> {
    let bytes = decode(text)?;
    let actual = bytes.len();
    bytes.try_into().map_err(|_| ProtoError::Length {
        expected: N,
        actual,
    })
}

macro_rules! fixed_bytes {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&encode(&self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl FromStr for $name {
            type Err = ProtoError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                decode_array(s).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

fixed_bytes!(
    /// An X25519 public key for HPKE (RFC 9180, DHKEM(X25519, HKDF-SHA256)).
    HpkePublicKey,
    32
);
fixed_bytes!(
    /// An Ed25519 signature.
    Signature,
    64
);
fixed_bytes!(
    /// A request nonce: 16 random bytes, never reused by a signer within the replay window.
    Nonce,
    16
);

/// An Ed25519 verification key, checked to be a valid curve point when parsed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyKey(ed25519_dalek::VerifyingKey);

impl VerifyKey {
    /// Length in bytes.
    pub const LEN: usize = 32;

    /// Parses raw key bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, ProtoError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(Self)
            .map_err(|_| ProtoError::BadKey)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// Verifies `signature` over `message`, refusing weak keys and malleable signatures.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), ProtoError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| ProtoError::BadSignature)
    }
}

impl From<ed25519_dalek::VerifyingKey> for VerifyKey {
    fn from(key: ed25519_dalek::VerifyingKey) -> Self {
        Self(key)
    }
}

impl fmt::Display for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode(self.as_bytes()))
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyKey({self})")
    }
}

impl FromStr for VerifyKey {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_bytes(&decode_array(s)?)
    }
}

impl Serialize for VerifyKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VerifyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Opaque bytes of any length: ciphertexts and sealed envelopes. Bounds are the server's
/// business and are checked where the blob is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

impl Blob {
    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Blob {
    // Never print contents: blobs are ciphertexts, and logs are not the place for them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode(&text).map(Self).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_bytes_round_trip_and_reject_wrong_length() {
        let nonce = Nonce([7; 16]);
        let text = nonce.to_string();
        assert_eq!(text.parse::<Nonce>(), Ok(nonce));
        assert_eq!(
            encode(&[1; 15]).parse::<Nonce>(),
            Err(ProtoError::Length {
                expected: 16,
                actual: 15
            })
        );
        assert_eq!("not base64!".parse::<Nonce>(), Err(ProtoError::Base64));
    }

    #[test]
    fn verify_key_rejects_points_off_the_curve() {
        // y = 2 has no matching x on edwards25519, so it does not decompress.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert_eq!(VerifyKey::from_bytes(&bytes), Err(ProtoError::BadKey));
    }

    #[test]
    fn blob_debug_hides_contents() {
        assert_eq!(format!("{:?}", Blob(vec![42; 5])), "Blob(5 bytes)");
    }
}

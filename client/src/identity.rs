//! A user's private keys, and the public bundle that publishes them.
//!
//! Secrets are 32-byte seeds from the operating system's generator: the Ed25519 signing key
//! directly, the HPKE X25519 key pair through RFC 9180's `DeriveKeyPair`. They are wiped
//! from memory on drop.

use cinder_proto::{HpkePublicKey, KeyBundle, Timestamp, UserId};
use ed25519_dalek::SigningKey;
use hpke::kem::X25519HkdfSha256;
use hpke::{Kem, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ClientError;

/// Secret seeds, as kept in the profile and the enclave. Their bytes never leave this crate.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Seeds {
    /// Ed25519 signing key seed.
    #[serde(with = "seed")]
    pub(crate) sign: [u8; 32],
    /// Input keying material for the HPKE X25519 key pair.
    #[serde(with = "seed")]
    pub(crate) hpke: [u8; 32],
}

/// A user: their published bundle and the secrets behind it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Identity {
    /// The published bundle (current version).
    pub bundle: KeyBundle,
    /// The secrets behind it.
    pub(crate) seeds: Seeds,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user_id", &self.bundle.user_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Makes a new user with fresh keys; its bundle is version 1.
    pub fn generate(now: Timestamp) -> Result<Self, ClientError> {
        let seeds = Seeds::random()?;
        let bundle = KeyBundle::genesis(&seeds.signing_key(), seeds.hpke_public(), now);
        Ok(Self { bundle, seeds })
    }

    /// The next identity: fresh keys, bundle signed by the current key and the new one.
    pub fn rotated(&self, now: Timestamp) -> Result<Self, ClientError> {
        let seeds = Seeds::random()?;
        let bundle = self.bundle.successor(
            &self.seeds.signing_key(),
            &seeds.signing_key(),
            seeds.hpke_public(),
            now,
        );
        Ok(Self { bundle, seeds })
    }

    /// This user's id.
    pub fn user_id(&self) -> UserId {
        self.bundle.user_id
    }

    /// The key that signs this user's requests and messages.
    pub(crate) fn signing_key(&self) -> SigningKey {
        self.seeds.signing_key()
    }
}

impl Seeds {
    fn random() -> Result<Self, ClientError> {
        let mut seeds = Self {
            sign: [0; 32],
            hpke: [0; 32],
        };
        getrandom::fill(&mut seeds.sign).map_err(|_| ClientError::Randomness)?;
        getrandom::fill(&mut seeds.hpke).map_err(|_| ClientError::Randomness)?;
        Ok(seeds)
    }

    /// The Ed25519 signing key.
    pub(crate) fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.sign)
    }

    /// The HPKE key pair.
    pub(crate) fn hpke_keypair(
        &self,
    ) -> (
        <X25519HkdfSha256 as Kem>::PrivateKey,
        <X25519HkdfSha256 as Kem>::PublicKey,
    ) {
        X25519HkdfSha256::derive_keypair(&self.hpke)
    }

    /// The HPKE public key, as published.
    pub(crate) fn hpke_public(&self) -> HpkePublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.hpke_keypair().1.to_bytes());
        HpkePublicKey(out)
    }
}

mod seed {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        crate::secret::guard::<S::Error>()?;
        s.serialize_str(&cinder_proto::encoding::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = cinder_proto::encoding::decode(&text).map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a seed is 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identities_verify_and_rotate() {
        let first = Identity::generate(Timestamp(1)).unwrap();
        assert_eq!(first.bundle.verify_genesis(), Ok(()));
        let second = first.rotated(Timestamp(2)).unwrap();
        assert_eq!(second.bundle.verify_successor(&first.bundle), Ok(()));
        assert_eq!(second.user_id(), first.user_id());
        assert_ne!(second.bundle.sign_key, first.bundle.sign_key);
        assert_ne!(second.bundle.hpke_key, first.bundle.hpke_key);
    }
}

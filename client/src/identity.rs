//! A user's private keys, and the public bundle that publishes them.
//!
//! Secrets are 32-byte seeds from the operating system's generator: the Ed25519 signing key
//! directly, the HPKE X25519 key pair through RFC 9180's `DeriveKeyPair`. They are wiped
//! from memory on drop.
//!
//! A third seed, the delete seed, proves authorship when deleting one's own messages. It is
//! not a directory key: rotations keep it, so messages sent before a rotation can still be
//! deleted after it.

use cinder_proto::{HpkePublicKey, KeyBundle, Timestamp, UserId};
use ed25519_dalek::SigningKey;
use hpke::kem::X25519HkdfSha256;
use hpke::{Kem, Serializable};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ClientError;

/// Secret seeds, as kept in the profile and the enclave. Their bytes never leave this crate.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(from = "StoredSeeds")]
pub struct Seeds {
    /// Ed25519 signing key seed.
    #[serde(with = "seed")]
    pub(crate) sign: [u8; 32],
    /// Input keying material for the HPKE X25519 key pair.
    #[serde(with = "seed")]
    pub(crate) hpke: [u8; 32],
    /// The seed every message's delete secret derives from; kept across rotations.
    #[serde(with = "seed")]
    pub(crate) delete: [u8; 32],
}

/// Seeds as stored: profiles and enclaves from before the delete seed have none.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct StoredSeeds {
    #[serde(with = "seed")]
    sign: [u8; 32],
    #[serde(with = "seed")]
    hpke: [u8; 32],
    #[serde(default, with = "optional_seed")]
    delete: Option<[u8; 32]>,
}

impl From<StoredSeeds> for Seeds {
    /// A stored identity without a delete seed gets one derived from its signing seed,
    /// not a random one: every device opening the same old enclave derives the same seed,
    /// so none of them signs messages another device's seed cannot delete, whichever saves
    /// the enclave first. It is derived once; rotations then keep it (and every save
    /// stores it), so it no longer follows the signing key. One-way (HKDF), it reveals
    /// nothing of the signing seed.
    fn from(stored: StoredSeeds) -> Self {
        let delete = stored.delete.unwrap_or_else(|| {
            crate::rooms::capabilities::derive(&stored.sign, b"delete-seed", &[])
        });
        Self {
            sign: stored.sign,
            hpke: stored.hpke,
            delete,
        }
    }
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

    /// The next identity: fresh keys, bundle signed by the current key and the new one. The
    /// delete seed stays, so messages sent before the rotation can still be deleted.
    pub fn rotated(&self, now: Timestamp) -> Result<Self, ClientError> {
        let mut seeds = Seeds::random()?;
        seeds.delete = self.seeds.delete;
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
            delete: [0; 32],
        };
        getrandom::fill(&mut seeds.sign).map_err(|_| ClientError::Randomness)?;
        getrandom::fill(&mut seeds.hpke).map_err(|_| ClientError::Randomness)?;
        getrandom::fill(&mut seeds.delete).map_err(|_| ClientError::Randomness)?;
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

mod optional_seed {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        #[derive(Deserialize)]
        struct Wrap(#[serde(with = "super::seed")] [u8; 32]);
        Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
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

    #[test]
    fn rotations_keep_the_delete_seed_and_new_identities_get_their_own() {
        let first = Identity::generate(Timestamp(1)).unwrap();
        let second = first
            .rotated(Timestamp(2))
            .unwrap()
            .rotated(Timestamp(3))
            .unwrap();
        assert_eq!(second.seeds.delete, first.seeds.delete);
        assert_ne!(second.seeds.sign, first.seeds.sign);
        let other = Identity::generate(Timestamp(1)).unwrap();
        assert_ne!(other.seeds.delete, first.seeds.delete);
        assert_ne!(first.seeds.delete, first.seeds.sign);
        // Saved and loaded, it is the same seed.
        let json = crate::secret::exposing(|| serde_json::to_string(&second)).unwrap();
        let loaded: Identity = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded.seeds.delete, first.seeds.delete);
    }

    #[test]
    fn an_identity_saved_before_the_delete_seed_derives_the_same_one_everywhere() {
        let me = Identity::generate(Timestamp(1)).unwrap();
        let mut old: serde_json::Value =
            serde_json::from_str(&crate::secret::exposing(|| serde_json::to_string(&me)).unwrap())
                .unwrap();
        old["seeds"].as_object_mut().unwrap().remove("delete");
        let one: Identity = serde_json::from_value(old.clone()).unwrap();
        let two: Identity = serde_json::from_value(old).unwrap();
        assert_eq!(one.seeds.delete, two.seeds.delete);
        assert_ne!(one.seeds.delete, me.seeds.sign);
        // and it is kept once saved, through a rotation
        let rotated = one.rotated(Timestamp(2)).unwrap();
        assert_eq!(rotated.seeds.delete, one.seeds.delete);
    }
}

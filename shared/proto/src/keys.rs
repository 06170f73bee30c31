//! The key directory's record: a self-signed bundle of a user's public keys, and the rules
//! that chain one version to the next.
//!
//! Version 1 is self-certifying: its user id is derived from its signing key. Version n+1
//! is signed by its own key *and* by version n's key, so a client that pinned any version
//! can follow the chain to the current one and a server cannot splice in a key of its own.

use ed25519_dalek::{Signer as _, SigningKey};
use serde::{Deserialize, Serialize};

use crate::{HpkePublicKey, ProtoError, Signature, Timestamp, UserId, VerifyKey};

const DOMAIN: &[u8] = b"cinder/key-bundle/v1\0";

/// One version of a user's public keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBundle {
    /// Whose keys these are.
    pub user_id: UserId,
    /// 1 for the first bundle, then one more per rotation.
    pub version: u64,
    /// Where others seal invitations to this user (HPKE, X25519).
    pub hpke_key: HpkePublicKey,
    /// What this user's messages and requests are verified with (Ed25519).
    pub sign_key: VerifyKey,
    /// When the client made this version.
    pub created_at: Timestamp,
    /// `sign_key` over [`KeyBundle::signed_bytes`]: proves possession of the new key.
    pub self_sig: Signature,
    /// The previous version's key over the same bytes; absent exactly on version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_sig: Option<Signature>,
}

impl KeyBundle {
    /// The bytes both signatures cover: a fixed binary layout, so no JSON canonicalisation
    /// question ever arises.
    pub fn signed_bytes(&self) -> Vec<u8> {
        signed_bytes(
            &self.user_id,
            self.version,
            &self.hpke_key,
            &self.sign_key,
            self.created_at,
        )
    }

    /// Makes a user's first bundle; the user id follows from `signing`.
    pub fn genesis(signing: &SigningKey, hpke_key: HpkePublicKey, now: Timestamp) -> Self {
        let sign_key = VerifyKey::from(signing.verifying_key());
        let user_id = UserId::derive(&sign_key);
        let msg = signed_bytes(&user_id, 1, &hpke_key, &sign_key, now);
        Self {
            user_id,
            version: 1,
            hpke_key,
            sign_key,
            created_at: now,
            self_sig: Signature(signing.sign(&msg).to_bytes()),
            prev_sig: None,
        }
    }

    /// Makes the version after `self`, signed by the current key and the new one.
    pub fn successor(
        &self,
        current: &SigningKey,
        next: &SigningKey,
        hpke_key: HpkePublicKey,
        now: Timestamp,
    ) -> Self {
        let sign_key = VerifyKey::from(next.verifying_key());
        let version = self.version + 1;
        let msg = signed_bytes(&self.user_id, version, &hpke_key, &sign_key, now);
        Self {
            user_id: self.user_id,
            version,
            hpke_key,
            sign_key,
            created_at: now,
            self_sig: Signature(next.sign(&msg).to_bytes()),
            prev_sig: Some(Signature(current.sign(&msg).to_bytes())),
        }
    }

    /// Checks a first bundle: version 1, id derived from its key, valid self-signature.
    pub fn verify_genesis(&self) -> Result<(), ProtoError> {
        if self.version != 1 || self.prev_sig.is_some() {
            return Err(ProtoError::BadBundle(
                "a first bundle has version 1 and no prev_sig",
            ));
        }
        if UserId::derive(&self.sign_key) != self.user_id {
            return Err(ProtoError::BadBundle(
                "user_id is not derived from sign_key",
            ));
        }
        self.sign_key.verify(&self.signed_bytes(), &self.self_sig)
    }

    /// Checks that `self` is a valid rotation of `prev`.
    pub fn verify_successor(&self, prev: &KeyBundle) -> Result<(), ProtoError> {
        if self.user_id != prev.user_id || prev.version.checked_add(1) != Some(self.version) {
            return Err(ProtoError::BadBundle(
                "a rotation must follow the current version",
            ));
        }
        let Some(prev_sig) = &self.prev_sig else {
            return Err(ProtoError::BadBundle("a rotation needs prev_sig"));
        };
        let msg = self.signed_bytes();
        self.sign_key.verify(&msg, &self.self_sig)?;
        prev.sign_key.verify(&msg, prev_sig)
    }
}

fn signed_bytes(
    user_id: &UserId,
    version: u64,
    hpke_key: &HpkePublicKey,
    sign_key: &VerifyKey,
    created_at: Timestamp,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 16 + 8 + 32 + 32 + 8);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(&user_id.0);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(hpke_key.as_bytes());
    out.extend_from_slice(sign_key.as_bytes());
    out.extend_from_slice(&created_at.0.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn genesis_verifies_and_tampering_breaks_it() {
        let b = KeyBundle::genesis(&key(1), HpkePublicKey([9; 32]), Timestamp(100));
        assert_eq!(b.verify_genesis(), Ok(()));

        let mut other_hpke = b.clone();
        other_hpke.hpke_key = HpkePublicKey([8; 32]);
        assert_eq!(other_hpke.verify_genesis(), Err(ProtoError::BadSignature));

        let mut other_id = b.clone();
        other_id.user_id = UserId([0; 16]);
        assert!(other_id.verify_genesis().is_err());
    }

    #[test]
    fn rotation_needs_the_previous_key() {
        let first = KeyBundle::genesis(&key(1), HpkePublicKey([9; 32]), Timestamp(100));
        let second = first.successor(&key(1), &key(2), HpkePublicKey([7; 32]), Timestamp(200));
        assert_eq!(second.verify_successor(&first), Ok(()));

        let forged = first.successor(&key(3), &key(2), HpkePublicKey([7; 32]), Timestamp(200));
        assert_eq!(
            forged.verify_successor(&first),
            Err(ProtoError::BadSignature)
        );

        let skipped = second.successor(&key(2), &key(4), HpkePublicKey([6; 32]), Timestamp(300));
        assert!(skipped.verify_successor(&first).is_err());
    }

    #[test]
    fn nothing_follows_the_last_version() {
        // Found by fuzzing (fuzz/fuzz_targets/client_key_chain.rs): `prev.version + 1`
        // overflowed on a bundle claiming the last version.
        let mut last = KeyBundle::genesis(&key(1), HpkePublicKey([9; 32]), Timestamp(100));
        last.version = u64::MAX;
        let mut next = last.clone();
        next.version = 0;
        next.prev_sig = Some(last.self_sig);
        assert!(next.verify_successor(&last).is_err());
    }
}

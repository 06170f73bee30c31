//! Deterministic users and signed requests.

use cinder_proto::{HpkePublicKey, KeyBundle, Nonce, RequestSignature, Signer, Timestamp, UserId};
use ed25519_dalek::SigningKey;

/// A test user: a signing key from a one-byte seed and its first bundle.
#[derive(Clone)]
pub struct User {
    pub key: SigningKey,
    pub bundle: KeyBundle,
}

impl User {
    /// The user whose signing key is `[seed; 32]`, first published at `now`.
    pub fn new(seed: u8, now: Timestamp) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let bundle = KeyBundle::genesis(&key, HpkePublicKey([seed.wrapping_add(100); 32]), now);
        Self { key, bundle }
    }

    pub fn id(&self) -> UserId {
        self.bundle.user_id
    }

    /// This user after one rotation to the key `[new_seed; 32]`.
    pub fn rotated(&self, new_seed: u8, now: Timestamp) -> Self {
        let key = SigningKey::from_bytes(&[new_seed; 32]);
        let bundle = self.bundle.successor(
            &self.key,
            &key,
            HpkePublicKey([new_seed.wrapping_add(100); 32]),
            now,
        );
        Self { key, bundle }
    }

    /// Signature headers for a request by this user.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        at: Timestamp,
    ) -> [(&'static str, String); 4] {
        RequestSignature::sign(
            &self.key,
            Signer::User(self.id()),
            method,
            path,
            body,
            at,
            random_nonce(),
        )
        .headers()
    }
}

/// A fresh random nonce.
pub fn random_nonce() -> Nonce {
    let mut n = [0u8; 16];
    getrandom::fill(&mut n).expect("randomness");
    Nonce(n)
}

/// A capability key (room admin, room member or channel) that signs requests.
#[derive(Clone)]
pub struct Capability {
    pub key: SigningKey,
    pub signer: Signer,
}

impl Capability {
    pub fn new(seed: u8, signer: Signer) -> Self {
        Self {
            key: SigningKey::from_bytes(&[seed; 32]),
            signer,
        }
    }

    pub fn verify_key(&self) -> cinder_proto::VerifyKey {
        self.key.verifying_key().into()
    }

    pub fn sign(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        at: Timestamp,
    ) -> [(&'static str, String); 4] {
        RequestSignature::sign(
            &self.key,
            self.signer,
            method,
            path,
            body,
            at,
            random_nonce(),
        )
        .headers()
    }
}

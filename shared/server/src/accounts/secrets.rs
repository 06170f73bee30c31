//! The enclave function's secrets, all derived from one master secret (Secrets Manager in
//! AWS, a file in the dev server's data folder):
//!
//! - the OPAQUE server setup (OPRF seed and server key pair), made by `ServerSetup::new`
//!   from a ChaCha20 generator seeded by HKDF, so every Lambda instance derives the same one
//!   and no instance ever has to generate and race to store it;
//! - the key that hashes logins into table keys (HMAC-SHA256);
//! - the key that seals login state and session tokens (AES-256-GCM), each sealed with its
//!   purpose as associated data so one kind of token never opens as another.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use cinder_proto::accounts::Login;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use opaque_ke::ServerSetup;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use sha2::Sha256;

use super::suite::ServerSuite;
use crate::store::LoginKey;
use crate::{Error, Result};

/// Shortest master secret accepted, in bytes.
pub const MIN_MASTER_LEN: usize = 32;

/// Everything secret the enclave function holds, derived once at start.
pub struct ServerSecrets {
    setup: ServerSetup<ServerSuite>,
    login_hmac: [u8; 32],
    token_key: Aes256Gcm,
}

impl std::fmt::Debug for ServerSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecrets(..)")
    }
}

impl ServerSecrets {
    /// Derives every secret from `master` (at least 32 bytes of entropy).
    pub fn from_master(master: &[u8]) -> Result<Self> {
        if master.len() < MIN_MASTER_LEN {
            return Err(Error::Internal(format!(
                "the server master secret must be at least {MIN_MASTER_LEN} bytes"
            )));
        }
        let hk = Hkdf::<Sha256>::new(Some(b"cinder/server-secrets/v1"), master);
        let expand = |info: &[u8]| {
            let mut out = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
            hk.expand(info, &mut out).map(|()| out)
        };
        let (Ok(setup_seed), Ok(login_hmac), Ok(token_key)) = (
            expand(b"opaque-setup"),
            expand(b"login-key"),
            expand(b"token-key"),
        ) else {
            return Err(Error::Internal("HKDF expand failed".into()));
        };
        let setup = ServerSetup::<ServerSuite>::new(&mut ChaCha20Rng::from_seed(setup_seed));
        Ok(Self {
            setup,
            login_hmac,
            token_key: Aes256Gcm::new(&token_key.into()),
        })
    }

    /// The OPAQUE server setup.
    pub fn setup(&self) -> &ServerSetup<ServerSuite> {
        &self.setup
    }

    /// The table key of a login.
    pub fn login_key(&self, login: &Login) -> LoginKey {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.login_hmac)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"cinder/login/v1\0");
        mac.update(login.as_str().as_bytes());
        LoginKey(mac.finalize().into_bytes().into())
    }

    /// Seals `plaintext` for `purpose`: 12-byte random nonce, then AES-256-GCM ciphertext.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let sealed = self
            .token_key
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose,
                },
            )
            .map_err(|_| Error::Internal("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`ServerSecrets::seal`] sealed for the same purpose; `None` for anything
    /// else, forged, truncated or sealed for another purpose.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(12)?;
        self.token_key
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: purpose,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_secret_dependent() {
        let a = ServerSecrets::from_master(&[1; 32]).unwrap();
        let b = ServerSecrets::from_master(&[1; 32]).unwrap();
        let c = ServerSecrets::from_master(&[2; 32]).unwrap();
        assert_eq!(a.setup().serialize(), b.setup().serialize());
        assert_ne!(a.setup().serialize(), c.setup().serialize());
        let login: Login = "alice".parse().unwrap();
        assert_eq!(a.login_key(&login), b.login_key(&login));
        assert_ne!(a.login_key(&login), c.login_key(&login));
        assert!(ServerSecrets::from_master(&[1; 31]).is_err());
    }

    #[test]
    fn sealed_tokens_open_only_for_their_purpose_and_key() {
        let a = ServerSecrets::from_master(&[1; 32]).unwrap();
        let c = ServerSecrets::from_master(&[2; 32]).unwrap();
        let sealed = a.seal(b"session", b"hello").unwrap();
        assert_eq!(a.open(b"session", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(a.open(b"login", &sealed), None);
        assert_eq!(c.open(b"session", &sealed), None);
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(a.open(b"session", &flipped), None);
        assert_eq!(a.open(b"session", &sealed[..8]), None);
    }
}

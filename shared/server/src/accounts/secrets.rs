//! The enclave function's secrets, all derived from one master secret (Secrets Manager in
//! AWS, a file in the dev server's data folder):
//!
//! - the OPAQUE server setup (OPRF seed and server key pair), made by `ServerSetup::new`
//!   from a ChaCha20 generator seeded by HKDF, so every Lambda instance derives the same one
//!   and no instance ever has to generate and race to store it;
//! - the key that hashes logins into table keys (HMAC-SHA256);
//! - the long-lived sealing key behind login states and session tokens. It never encrypts
//!   anything itself: each token carries a fresh random salt, and its AES-256-GCM key is
//!   HKDF-SHA256 of the sealing key, that salt and the token's purpose. Anyone can make the
//!   server mint tokens (every login start does), and one AES-GCM key under random 96-bit
//!   nonces is only good for about 2^32 messages (NIST SP 800-38D's bound, which keeps a
//!   repeated nonce improbable; one would leak the authentication key and let tokens be
//!   forged); a key per token has no such budget. The purpose is also the associated data,
//!   so one kind of token never opens as another.

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

/// Bytes of random salt at the front of every sealed token.
pub const TOKEN_SALT_LEN: usize = 32;
/// Bytes of AES-256-GCM tag at the end of every sealed token.
const TOKEN_TAG_LEN: usize = 16;
/// The largest sealed token [`ServerSecrets::open`] looks at. Real ones are a few hundred
/// bytes (a login state, the larger kind, is about 500); anything bigger is refused before
/// any key is derived, so a caller cannot make the server decrypt a 400 KiB body.
pub const MAX_TOKEN_LEN: usize = 1024;
/// Every token key seals exactly one token, so a fixed nonce never repeats under a key.
const TOKEN_NONCE: [u8; 12] = [0; 12];

/// Everything secret the enclave function holds, derived once at start.
pub struct ServerSecrets {
    setup: ServerSetup<ServerSuite>,
    login_hmac: [u8; 32],
    /// Input to each token's key derivation; never an encryption key itself.
    sealing_key: [u8; 32],
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
        let (Ok(setup_seed), Ok(login_hmac), Ok(sealing_key)) = (
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
            sealing_key,
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

    /// The AES-256-GCM key of the one token with this `salt` and `purpose`:
    /// HKDF-SHA256 with the sealing key as input, the salt as salt and the purpose as info.
    fn token_key(&self, purpose: &[u8], salt: &[u8]) -> Option<[u8; 32]> {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        Hkdf::<Sha256>::new(Some(salt), &self.sealing_key)
            .expand(purpose, &mut key)
            .ok()?;
        Some(key)
    }

    /// Seals `plaintext` for `purpose`: a fresh random 32-byte salt, then the AES-256-GCM
    /// ciphertext and tag under that salt's key, with `purpose` as associated data.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let mut salt = [0u8; TOKEN_SALT_LEN];
        getrandom::fill(&mut salt).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
        let key = self
            .token_key(purpose, &salt)
            .ok_or_else(|| Error::Internal("HKDF expand failed".into()))?;
        let sealed = Aes256Gcm::new(&key.into())
            .encrypt(
                Nonce::from_slice(&TOKEN_NONCE),
                Payload {
                    msg: plaintext,
                    aad: purpose,
                },
            )
            .map_err(|_| Error::Internal("sealing failed".into()))?;
        let mut out = Vec::with_capacity(TOKEN_SALT_LEN + sealed.len());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`ServerSecrets::seal`] sealed for the same purpose; `None` for anything
    /// else: forged, truncated, oversized, or sealed for another purpose or master secret.
    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if !(TOKEN_SALT_LEN + TOKEN_TAG_LEN..=MAX_TOKEN_LEN).contains(&sealed.len()) {
            return None;
        }
        let (salt, ciphertext) = sealed.split_at_checked(TOKEN_SALT_LEN)?;
        let key = self.token_key(purpose, salt)?;
        Aes256Gcm::new(&key.into())
            .decrypt(
                Nonce::from_slice(&TOKEN_NONCE),
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
        assert_eq!(sealed.len(), TOKEN_SALT_LEN + 5 + TOKEN_TAG_LEN);
        assert_eq!(a.open(b"session", &sealed).as_deref(), Some(&b"hello"[..]));
        // Another purpose (a swapped label) or another master secret: nothing.
        assert_eq!(a.open(b"login", &sealed), None);
        assert_eq!(c.open(b"session", &sealed), None);
    }

    #[test]
    fn any_flipped_byte_breaks_a_token() {
        let a = ServerSecrets::from_master(&[1; 32]).unwrap();
        let sealed = a.seal(b"session", b"hello").unwrap();
        // The salt (which picks the key), the ciphertext and the tag alike.
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert_eq!(a.open(b"session", &flipped), None, "byte {i}");
        }
    }

    #[test]
    fn short_and_oversized_tokens_are_refused() {
        let a = ServerSecrets::from_master(&[1; 32]).unwrap();
        let sealed = a.seal(b"session", b"hello").unwrap();
        // A truncated salt, a salt alone, a salt and a partial tag, nothing at all.
        for cut in [0, 8, TOKEN_SALT_LEN - 1, TOKEN_SALT_LEN, sealed.len() - 1] {
            assert_eq!(a.open(b"session", &sealed[..cut]), None, "{cut} bytes");
        }
        // A token whose salt lost its first byte: every later byte shifts into the wrong field.
        assert_eq!(a.open(b"session", &sealed[1..]), None);
        // The largest accepted token opens; one byte more is refused before any decryption.
        let biggest = MAX_TOKEN_LEN - TOKEN_SALT_LEN - TOKEN_TAG_LEN;
        let big = a.seal(b"session", &vec![7; biggest]).unwrap();
        assert_eq!(big.len(), MAX_TOKEN_LEN);
        assert!(a.open(b"session", &big).is_some());
        let too_big = a.seal(b"session", &vec![7; biggest + 1]).unwrap();
        assert_eq!(a.open(b"session", &too_big), None);
    }

    #[test]
    fn every_token_has_its_own_key() {
        let a = ServerSecrets::from_master(&[1; 32]).unwrap();
        let first = a.seal(b"session", b"same claims").unwrap();
        let second = a.seal(b"session", b"same claims").unwrap();
        let (salt1, salt2) = (&first[..TOKEN_SALT_LEN], &second[..TOKEN_SALT_LEN]);
        assert_ne!(salt1, salt2, "two tokens in a row share a salt");
        assert_ne!(
            a.token_key(b"session", salt1),
            a.token_key(b"session", salt2),
            "two tokens in a row share a key"
        );
        assert_ne!(first[TOKEN_SALT_LEN..], second[TOKEN_SALT_LEN..]);
        // The key depends on the purpose too, not only on the associated data.
        assert_ne!(a.token_key(b"session", salt1), a.token_key(b"login", salt1));
        // And on the master secret.
        let c = ServerSecrets::from_master(&[2; 32]).unwrap();
        assert_ne!(
            a.token_key(b"session", salt1),
            c.token_key(b"session", salt1)
        );
        // A token moved onto another token's salt no longer opens.
        let mut spliced = second[..TOKEN_SALT_LEN].to_vec();
        spliced.extend_from_slice(&first[TOKEN_SALT_LEN..]);
        assert_eq!(a.open(b"session", &spliced), None);
    }
}

//! Who may allocate: TURN REST credentials and the server's nonces.
//!
//! Credentials are coturn's `use-auth-secret` (draft-uberti-behave-turn-rest): the Cinder
//! API hands a call's members the username `<expiry unix seconds>:<user>` and the password
//! `base64(HMAC-SHA1(secret, username))`, and any relay holding the secret checks them with
//! no call back ([`cinder_proto::calls`] is the one definition of both). The long-term
//! credential key of RFC 8489 §9.2 is then `MD5(username ":" realm ":" password)`.
//!
//! Nonces are stateless: `<issued, 16 hex digits><tag, 16 hex digits>` where the tag is a
//! truncated HMAC-SHA256 under a per-process key over the issue time and the client's
//! transport address. A nonce is valid only for the address it was issued to and for
//! [`crate::Config::nonce_lifetime`]; past that the client gets 438 and a fresh one.

use std::net::SocketAddr;
use std::time::Duration;

use cinder_proto::calls::{turn_expiry, turn_password};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a REST username was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// Not `<expiry>:<user>`.
    #[error("username is not <expiry>:<user>")]
    Malformed,
    /// The expiry has passed.
    #[error("username expired")]
    Expired,
}

/// The REST password for `username` under `secret`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    turn_password(secret, username)
}

/// Whether a REST `username` is well formed and unexpired at `now` (unix seconds).
pub fn check_rest_username(username: &str, now: u64) -> Result<(), CredentialError> {
    let expiry = turn_expiry(username).ok_or(CredentialError::Malformed)?;
    if expiry.0 <= now {
        return Err(CredentialError::Expired);
    }
    Ok(())
}

/// The long-term credential key: `MD5(username:realm:password)` (RFC 8489 §9.2.2).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    stun::integrity::MessageIntegrity::new_long_term_integrity(
        username.to_string(),
        realm.to_string(),
        password.to_string(),
    )
    .0
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Issued by this process to this client, within its lifetime.
    Fresh,
    /// Too old, from another process or client, or not ours: answer 438.
    Stale,
}

/// Issues and checks the server's stateless nonces.
pub struct Nonces {
    key: [u8; 32],
    lifetime: Duration,
}

impl Nonces {
    /// Nonces under a fresh random key, each valid for `lifetime`.
    pub fn new(lifetime: Duration) -> std::io::Result<Self> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(std::io::Error::other)?;
        Ok(Nonces { key, lifetime })
    }

    fn tag(&self, issued: u64, client: SocketAddr) -> u64 {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail on 32 bytes.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.key) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(&issued.to_be_bytes());
        mac.update(client.to_string().as_bytes());
        let out = mac.finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&out[..8]);
        u64::from_be_bytes(tag)
    }

    /// A nonce for `client`, issued at `now` (unix seconds).
    pub fn issue(&self, client: SocketAddr, now: u64) -> String {
        format!("{now:016x}{:016x}", self.tag(now, client))
    }

    /// Whether `nonce` was issued to `client` by this process less than a lifetime ago.
    pub fn check(&self, nonce: &str, client: SocketAddr, now: u64) -> NonceCheck {
        if nonce.len() != 32 || !nonce.is_ascii() {
            return NonceCheck::Stale;
        }
        let (issued, tag) = nonce.split_at(16);
        let (Ok(issued), Ok(tag)) = (
            u64::from_str_radix(issued, 16),
            u64::from_str_radix(tag, 16),
        ) else {
            return NonceCheck::Stale;
        };
        // Compared as whole integers: the tag is not secret once sent, only unforgeable.
        if tag != self.tag(issued, client) {
            return NonceCheck::Stale;
        }
        if now < issued || now - issued >= self.lifetime.as_secs() {
            return NonceCheck::Stale;
        }
        NonceCheck::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_usernames_are_checked_for_form_and_expiry() {
        assert_eq!(check_rest_username("1000:alice", 999), Ok(()));
        assert_eq!(
            check_rest_username("1000:alice", 1000),
            Err(CredentialError::Expired)
        );
        assert_eq!(
            check_rest_username("999:alice", 1000),
            Err(CredentialError::Expired)
        );
        for bad in ["alice", ":alice", "abc:alice", "-1:alice", "", "1e9:x"] {
            assert_eq!(
                check_rest_username(bad, 0),
                Err(CredentialError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn rest_password_is_coturns_use_auth_secret() {
        // `echo -n 1433895918506:my_username | openssl dgst -binary -sha1 -hmac north | base64`
        assert_eq!(
            rest_password(b"north", "1433895918506:my_username"),
            "Gx/rOncp1ZXBdeBo0S3RrYQnHDA="
        );
    }

    #[test]
    fn long_term_key_is_md5_of_username_realm_password() {
        // `echo -n user:realm:pass | md5sum`
        let key = long_term_key("user", "realm", "pass");
        assert_eq!(hex::encode(key), "8493fbc53ba582fb4c044c456bdc40eb");
    }

    #[test]
    fn nonces_are_bound_to_client_and_lifetime() {
        let nonces = Nonces::new(Duration::from_secs(600)).expect("random key");
        let a: SocketAddr = "192.0.2.1:5000".parse().expect("addr");
        let b: SocketAddr = "192.0.2.1:5001".parse().expect("addr");
        let n = nonces.issue(a, 10_000);
        assert_eq!(nonces.check(&n, a, 10_000), NonceCheck::Fresh);
        assert_eq!(nonces.check(&n, a, 10_599), NonceCheck::Fresh);
        assert_eq!(nonces.check(&n, a, 10_600), NonceCheck::Stale);
        assert_eq!(nonces.check(&n, b, 10_000), NonceCheck::Stale);
        assert_eq!(nonces.check(&n, a, 9_999), NonceCheck::Stale);
        let mut forged = n.clone();
        forged.replace_range(0..16, &format!("{:016x}", 10_500u64));
        assert_eq!(nonces.check(&forged, a, 10_550), NonceCheck::Stale);
        let other = Nonces::new(Duration::from_secs(600)).expect("random key");
        assert_eq!(other.check(&n, a, 10_000), NonceCheck::Stale);
        assert_eq!(nonces.check("short", a, 10_000), NonceCheck::Stale);
    }
}

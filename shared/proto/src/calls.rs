//! Calls on the wire: TURN relay credentials for a channel's members, and the relays'
//! announcements of where they can be reached.
//!
//! Call media never passes through a function: peers reach each other directly or through
//! a TURN relay (`turn/`). A member proves the channel capability and gets credentials in
//! the TURN REST API format that browsers' apps and coturn use (`expiry:user`, password
//! `base64(HMAC-SHA1(secret, username))`), which any relay holding the shared secret checks
//! with no call back to the API. Relays run where their addresses change (Fargate tasks),
//! so each one tells the API where it is, with a MAC under the same shared secret.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// Bounds of calls.
pub mod limits {
    /// Longest a TURN credential lives, in seconds.
    pub const MAX_CREDENTIAL_SECS: u64 = 3600;
    /// Furthest ahead a relay's announcement may reach, in seconds: a relay that stops
    /// announcing is forgotten this soon.
    pub const MAX_ANNOUNCEMENT_SECS: u64 = 300;
    /// Most URLs one relay announces.
    pub const MAX_RELAY_URLS: usize = 8;
    /// Longest URL a relay announces, in bytes.
    pub const MAX_URL_BYTES: usize = 256;
    /// Longest relay id, in bytes.
    pub const MAX_RELAY_ID_BYTES: usize = 64;
    /// Most relays whose URLs one credential lists.
    pub const MAX_RELAYS_PER_ANSWER: usize = 4;
}

/// The header that carries a relay announcement's MAC ([`relay_mac`]).
pub const RELAY_HEADER: &str = "x-cinder-relay";

/// `POST /calls/{room}/{channel}/turn`, signed `channel:<room>/<channel>`: credentials for
/// the TURN relays, valid until `expires_at` (at most an hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnCredentials {
    /// The TURN username: `<expires_at>:<random>`. The relay refuses it after `expires_at`.
    pub username: String,
    /// The TURN password: `base64(HMAC-SHA1(shared secret, username))`.
    pub credential: String,
    /// When the relays stop accepting it.
    pub expires_at: Timestamp,
    /// The relays, as ICE server URLs (`turn:host:port?transport=udp`, `turns:…`); empty
    /// when no relay has announced itself lately (peers can still try to connect directly).
    pub urls: Vec<String>,
}

/// `PUT /calls/relays/{relay_id}`, with the [`RELAY_HEADER`] MAC: a relay says where it
/// can be reached until `expires_at` (at most [`limits::MAX_ANNOUNCEMENT_SECS`] ahead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayAnnouncement {
    /// ICE server URLs: each `turn:` or `turns:`.
    pub urls: Vec<String>,
    /// When to forget the relay unless it announces itself again.
    pub expires_at: Timestamp,
}

impl RelayAnnouncement {
    /// Whether the URLs are within bounds and each a `turn:` or `turns:` URL.
    pub fn urls_valid(&self) -> bool {
        !self.urls.is_empty()
            && self.urls.len() <= limits::MAX_RELAY_URLS
            && self.urls.iter().all(|u| {
                u.len() <= limits::MAX_URL_BYTES
                    && (u.starts_with("turn:") || u.starts_with("turns:"))
                    && u.bytes().all(|b| b.is_ascii_graphic())
            })
    }
}

/// Whether `id` can name a relay: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn relay_id_valid(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= limits::MAX_RELAY_ID_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The TURN REST username for a credential that lapses at `expires_at`.
pub fn turn_username(expires_at: Timestamp, user: &str) -> String {
    format!("{}:{user}", expires_at.0)
}

/// When a TURN REST username lapses: the number before its first `:`; `None` if it has
/// none, which a relay refuses.
pub fn turn_expiry(username: &str) -> Option<Timestamp> {
    let (expiry, _) = username.split_once(':')?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    expiry.parse().ok().map(Timestamp)
}

/// The TURN REST password for `username`: `base64(HMAC-SHA1(secret, username))`, as coturn's
/// `use-auth-secret` computes it. SHA-1 is what the format and every TURN client use; the
/// MAC keeps its strength as a PRF here.
pub fn turn_password(secret: &[u8], username: &str) -> String {
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(username.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The MAC of a relay announcement: `base64url(HMAC-SHA256(secret, "cinder/relay/v1\0" ||
/// relay_id || "\0" || body))`, over the exact body bytes sent.
pub fn relay_mac(secret: &[u8], relay_id: &str, body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(relay_hmac(secret, relay_id, body).finalize().into_bytes())
}

/// Whether `mac` is [`relay_mac`] of the announcement, compared in constant time.
pub fn relay_mac_valid(secret: &[u8], relay_id: &str, body: &[u8], mac: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(mac) {
        Ok(tag) => relay_hmac(secret, relay_id, body)
            .verify_slice(&tag)
            .is_ok(),
        Err(_) => false,
    }
}

fn relay_hmac(secret: &[u8], relay_id: &str, body: &[u8]) -> Hmac<sha2::Sha256> {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(b"cinder/relay/v1\0");
    mac.update(relay_id.as_bytes());
    mac.update(b"\0");
    mac.update(body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_password_matches_openssls_hmac_sha1() {
        // Computed by another implementation, OpenSSL:
        // `echo -n 1433895918506:my_username | openssl dgst -binary -sha1 -hmac north | base64`
        assert_eq!(
            turn_password(b"north", "1433895918506:my_username"),
            "Gx/rOncp1ZXBdeBo0S3RrYQnHDA="
        );
    }

    #[test]
    fn usernames_carry_their_expiry() {
        let name = turn_username(Timestamp(1_700_000_000), "abc");
        assert_eq!(name, "1700000000:abc");
        assert_eq!(turn_expiry(&name), Some(Timestamp(1_700_000_000)));
        assert_eq!(turn_expiry("alice"), None);
        assert_eq!(turn_expiry(":alice"), None);
        assert_eq!(turn_expiry("-5:alice"), None);
        assert_eq!(turn_expiry("99999999999999999999999:x"), None);
    }

    #[test]
    fn a_relay_mac_binds_id_and_body() {
        let mac = relay_mac(b"secret", "relay-1", b"{}");
        assert!(relay_mac_valid(b"secret", "relay-1", b"{}", &mac));
        assert!(!relay_mac_valid(b"secret", "relay-2", b"{}", &mac));
        assert!(!relay_mac_valid(b"secret", "relay-1", b"{ }", &mac));
        assert!(!relay_mac_valid(b"other", "relay-1", b"{}", &mac));
        assert!(!relay_mac_valid(b"secret", "relay-1", b"{}", "not base64!"));
    }

    #[test]
    fn announcements_take_only_bounded_turn_urls() {
        let ok = RelayAnnouncement {
            urls: vec!["turn:203.0.113.7:3478?transport=udp".into()],
            expires_at: Timestamp(1),
        };
        assert!(ok.urls_valid());
        for bad in [
            vec![],
            vec!["https://example.com".to_string()],
            vec!["turn:a b".to_string()],
            vec![format!("turn:{}", "a".repeat(300))],
            vec!["turn:x".to_string(); 9],
        ] {
            let a = RelayAnnouncement {
                urls: bad,
                expires_at: Timestamp(1),
            };
            assert!(!a.urls_valid(), "{:?}", a.urls);
        }
        assert!(relay_id_valid("a1-B_"));
        assert!(!relay_id_valid(""));
        assert!(!relay_id_valid("a/b"));
        assert!(!relay_id_valid(&"a".repeat(65)));
    }
}

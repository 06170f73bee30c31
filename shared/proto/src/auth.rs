//! Request signing: what a signed request carries and exactly which bytes are signed.
//!
//! A signed request has four headers. The signature covers a fixed, newline-separated
//! string of the method, the path with its query, the SHA-256 of the body, the signer,
//! the timestamp and the nonce, under a domain tag. The server accepts a timestamp only
//! within a short window of its own clock and each (signer, nonce) only once. See
//! `docs/AUTH.md` for the full scheme.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer as _, SigningKey};
use sha2::{Digest, Sha256};

use crate::{ChannelId, Nonce, ProtoError, RoomId, Signature, Timestamp, UserId};

/// Header naming who signed: `user:<user id>`.
pub const SIGNER_HEADER: &str = "x-cinder-signer";
/// Header with the signing time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-cinder-timestamp";
/// Header with the request's 16-byte nonce, base64url.
pub const NONCE_HEADER: &str = "x-cinder-nonce";
/// Header with the Ed25519 signature, base64url.
pub const SIGNATURE_HEADER: &str = "x-cinder-signature";

const DOMAIN: &str = "cinder/request/v1";

/// Who vouches for a request. Users sign with their directory key; rooms and channels are
/// capabilities: keys derived from secrets only members hold, whose verification keys the
/// server keeps in the room record. The server checks the capability, never who holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signer {
    /// A user, verified against the current key in the key directory.
    User(UserId),
    /// Any member of a room (key derived from the room master key).
    Member(RoomId),
    /// A room's administrator (the room admin key).
    Admin(RoomId),
    /// Any holder of a channel's key (key derived from the channel key).
    Channel(RoomId, ChannelId),
}

impl fmt::Display for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::Member(room) => write!(f, "member:{room}"),
            Self::Admin(room) => write!(f, "admin:{room}"),
            Self::Channel(room, channel) => write!(f, "channel:{room}/{channel}"),
        }
    }
}

impl FromStr for Signer {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("user", id)) => Ok(Self::User(id.parse()?)),
            Some(("member", room)) => Ok(Self::Member(room.parse()?)),
            Some(("admin", room)) => Ok(Self::Admin(room.parse()?)),
            Some(("channel", rest)) => {
                let (room, channel) = rest.split_once('/').ok_or(ProtoError::BadId("signer"))?;
                Ok(Self::Channel(room.parse()?, channel.parse()?))
            }
            _ => Err(ProtoError::BadId("signer")),
        }
    }
}

/// The signature headers of one request, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSignature {
    /// Who signed.
    pub signer: Signer,
    /// When, by the signer's clock.
    pub timestamp: Timestamp,
    /// Once-only value that defeats replay.
    pub nonce: Nonce,
    /// The Ed25519 signature over [`canonical_request`].
    pub signature: Signature,
}

impl RequestSignature {
    /// Signs a request. `path_and_query` is exactly what goes on the request line.
    pub fn sign(
        key: &SigningKey,
        signer: Signer,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        timestamp: Timestamp,
        nonce: Nonce,
    ) -> Self {
        let msg = canonical_request(method, path_and_query, body, &signer, timestamp, &nonce);
        Self {
            signer,
            timestamp,
            nonce,
            signature: Signature(key.sign(msg.as_bytes()).to_bytes()),
        }
    }

    /// The four header (name, value) pairs to send.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (SIGNER_HEADER, self.signer.to_string()),
            (TIMESTAMP_HEADER, self.timestamp.to_string()),
            (NONCE_HEADER, self.nonce.to_string()),
            (SIGNATURE_HEADER, self.signature.to_string()),
        ]
    }

    /// Parses the four header values (already read as text).
    pub fn parse(
        signer: &str,
        timestamp: &str,
        nonce: &str,
        signature: &str,
    ) -> Result<Self, ProtoError> {
        Ok(Self {
            signer: signer.parse()?,
            timestamp: timestamp.parse()?,
            nonce: nonce.parse()?,
            signature: signature.parse()?,
        })
    }
}

/// The exact text under a request signature.
pub fn canonical_request(
    method: &str,
    path_and_query: &str,
    body: &[u8],
    signer: &Signer,
    timestamp: Timestamp,
    nonce: &Nonce,
) -> String {
    let digest = hex::encode(Sha256::digest(body));
    format!("{DOMAIN}\n{method}\n{path_and_query}\n{digest}\n{signer}\n{timestamp}\n{nonce}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_headers_parse_back_and_verify() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let signer = Signer::User(UserId([1; 16]));
        let sig = RequestSignature::sign(
            &key,
            signer,
            "PUT",
            "/keys/x?a=1",
            b"{}",
            Timestamp(10),
            Nonce([3; 16]),
        );
        let [s, t, n, g] = sig.headers().map(|(_, v)| v);
        let parsed = RequestSignature::parse(&s, &t, &n, &g).unwrap();
        assert_eq!(parsed, sig);

        let verify = crate::VerifyKey::from(key.verifying_key());
        let msg = canonical_request(
            "PUT",
            "/keys/x?a=1",
            b"{}",
            &signer,
            Timestamp(10),
            &Nonce([3; 16]),
        );
        assert_eq!(verify.verify(msg.as_bytes(), &parsed.signature), Ok(()));
        let moved = canonical_request(
            "PUT",
            "/keys/y?a=1",
            b"{}",
            &signer,
            Timestamp(10),
            &Nonce([3; 16]),
        );
        assert!(verify.verify(moved.as_bytes(), &parsed.signature).is_err());
    }

    #[test]
    fn signer_text_form_is_strict() {
        assert!(
            "user:00112233445566778899aabbccddeeff"
                .parse::<Signer>()
                .is_ok()
        );
        let id = "00112233445566778899aabbccddeeff";
        for good in [
            format!("member:{id}"),
            format!("admin:{id}"),
            format!("channel:{id}/{id}"),
        ] {
            assert_eq!(good.parse::<Signer>().unwrap().to_string(), good);
        }
        for bad in [
            "",
            "user:",
            "room:00112233445566778899aabbccddeeff",
            "00112233445566778899aabbccddeeff",
            "channel:00112233445566778899aabbccddeeff",
        ] {
            assert!(bad.parse::<Signer>().is_err(), "{bad:?} was accepted");
        }
    }
}

//! Known-answer and edge-case tests for every primitive, run as this crate uses it
//! (issue 14, item 5; docs/SECURITY.md, "Test vectors").
//!
//! - [`aes_gcm`]: Wycheproof's AES-GCM set, the 256-bit key, 96-bit nonce and 128-bit tag
//!   groups, through [`crate::rooms::seal_with_nonce`] and [`crate::rooms::open`] (rooms,
//!   messages, avatars) and through the detached in-place calls of [`crate::media`].
//! - [`x25519`]: Wycheproof's X25519 set, through x25519-dalek (the crate `hpke` computes
//!   X25519 with) and through `hpke`'s DHKEM decapsulation and single-shot sealing, the
//!   calls invitations make.
//! - [`ed25519`]: Wycheproof's Ed25519 set through [`cinder_proto::VerifyKey::verify`]
//!   (`verify_strict`), and through the page batch verifier of `rooms::messages`.
//! - [`hpke`]: RFC 9180's vector for exactly our mode (base, DHKEM(X25519, HKDF-SHA256),
//!   HKDF-SHA256, AES-256-GCM), committed beside this file.
//! - [`opaque`]: the OPAQUE vectors for ristretto255 with the server's suite (identity KSF),
//!   and a pinned run of the client's real suite (Argon2id) against it.
//!
//! The vector files are the crates' own data (the `wycheproof` crate), or one entry copied
//! from a crate's sources with its origin named inside the file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod aes_gcm;
pub(crate) mod ed25519;
mod hpke;
mod opaque;
mod x25519;

/// Hex to bytes, for the committed vectors.
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("the vector's hex")
}

//! Byte fields as text (base64url, unpadded): blobs, Ed25519 keys and signatures, nonces,
//! HPKE keys, through `FromStr` and serde. Each accepted value must show as the exact text
//! it came from (one encoding per value), and a key must verify without panicking.
#![no_main]

use cinder_fuzz::{json, text};
use cinder_proto::{Blob, HpkePublicKey, Nonce, Signature, VerifyKey};
use libfuzzer_sys::fuzz_target;

fn exact<T: std::fmt::Display>(s: &str, value: Option<T>) {
    if let Some(v) = value {
        assert_eq!(v.to_string(), s, "accepted in a second encoding");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        exact(s, text::<Signature>(s));
        exact(s, text::<Nonce>(s));
        exact(s, text::<HpkePublicKey>(s));
        if let Some(key) = text::<VerifyKey>(s) {
            assert_eq!(key.to_string(), s, "accepted in a second encoding");
            let _ = key.verify(data, &Signature([7; 64]));
        }
        if let Ok(bytes) = cinder_proto::encoding::decode(s) {
            assert_eq!(cinder_proto::encoding::encode(&bytes), s);
        }
    }
    json::<Blob>(data);
    json::<Signature>(data);
    json::<VerifyKey>(data);
    json::<Nonce>(data);
    json::<HpkePublicKey>(data);
    // A key and signature from raw bytes: verification refuses, never panics.
    if data.len() >= 96 {
        let mut key = [0u8; 32];
        key.copy_from_slice(&data[..32]);
        let mut sig = [0u8; 64];
        sig.copy_from_slice(&data[32..96]);
        if let Ok(k) = VerifyKey::from_bytes(&key) {
            let _ = k.verify(&data[96..], &Signature(sig));
        }
    }
});

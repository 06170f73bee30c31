//! RFC 9180's test vector for exactly the HPKE that invitations use (`rooms::invites`):
//! mode_base, KEM 0x0020 (DHKEM(X25519, HKDF-SHA256)), KDF 0x0001 (HKDF-SHA256), AEAD 0x0002
//! (AES-256-GCM), single-shot. The vector is `rfc9180_base_x25519_sha256_aes256gcm.json`
//! beside this file: the one entry of the CFRG draft's `test-vectors.json` for this suite
//! (its origin is written inside it; RFC 9180's appendix prints only some suites).
//!
//! Checked: the key pairs derived from `ikmR` and `ikmE` (and our identity's HPKE key from
//! its seed, the same derivation); the KEM's shared secret from both ends; the key schedule
//! (`key_schedule_context`, `secret`, `key`, `base_nonce`, `exporter_secret`) recomputed
//! here from RFC 9180 §5.1 with `hkdf`, and the same key and nonces through `hpke`'s
//! receiver context (opens and exports); the encryptions through our AES-GCM wrapper; and
//! the single-shot seal and open that invitations call, given the vector's ephemeral
//! randomness.

use hkdf::Hkdf;
use hpke::aead::{Aead as HpkeAead, AesGcm256};
use hpke::kdf::{HkdfSha256, Kdf as HpkeKdf};
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use serde_json::Value;
use sha2::Sha256;

use super::unhex;
use crate::identity::Seeds;
use crate::rooms::{open, seal_with_nonce};

type Sk = <X25519HkdfSha256 as Kem>::PrivateKey;
type Pk = <X25519HkdfSha256 as Kem>::PublicKey;
type Enc = <X25519HkdfSha256 as Kem>::EncappedKey;

/// RFC 9180 §4: `LabeledExtract(salt, label, ikm)`, the pseudorandom key.
pub(super) fn labeled_extract(suite_id: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Vec<u8> {
    let labeled = [b"HPKE-v1".as_slice(), suite_id, label, ikm].concat();
    Hkdf::<Sha256>::extract(Some(salt), &labeled).0.to_vec()
}

/// RFC 9180 §4: `LabeledExpand(prk, label, info, len)`.
pub(super) fn labeled_expand(
    suite_id: &[u8],
    prk: &[u8],
    label: &[u8],
    info: &[u8],
    len: u16,
) -> Vec<u8> {
    let labeled = [
        &len.to_be_bytes(),
        b"HPKE-v1".as_slice(),
        suite_id,
        label,
        info,
    ]
    .concat();
    let mut out = vec![0u8; usize::from(len)];
    Hkdf::<Sha256>::from_prk(prk)
        .unwrap()
        .expand(&labeled, &mut out)
        .unwrap();
    out
}

/// DHKEM(X25519, HKDF-SHA256)'s `ExtractAndExpand(dh, kem_context)` (RFC 9180 §4.1).
pub(super) fn dhkem_shared_secret(dh: &[u8], enc: &[u8], pk_r: &[u8]) -> Vec<u8> {
    const KEM_SUITE: &[u8] = b"KEM\x00\x20";
    let prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh);
    let context = [enc, pk_r].concat();
    labeled_expand(KEM_SUITE, &prk, b"shared_secret", &context, 32)
}

/// Randomness that replays fixed bytes: the vector's `ikmE` as the ephemeral key's seed.
pub(super) struct Replay(pub(super) Vec<u8>, pub(super) usize);

impl rand_core_09::RngCore for Replay {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for b in dst {
            *b = self.0[self.1 % self.0.len()];
            self.1 += 1;
        }
    }
}
impl rand_core_09::CryptoRng for Replay {}

fn vector() -> Value {
    serde_json::from_str(include_str!("rfc9180_base_x25519_sha256_aes256gcm.json")).unwrap()
}

fn hx(v: &Value, field: &str) -> Vec<u8> {
    unhex(v[field].as_str().unwrap_or_else(|| panic!("{field}")))
}

#[test]
fn the_vector_is_our_suite() {
    let v = vector();
    assert_eq!(v["mode"], 0, "mode_base");
    assert_eq!(v["kem_id"], X25519HkdfSha256::KEM_ID);
    assert_eq!(v["kdf_id"], HkdfSha256::KDF_ID);
    assert_eq!(v["aead_id"], AesGcm256::AEAD_ID);
}

#[test]
fn rfc9180_derived_key_pairs_and_our_identity_key() {
    let v = vector();
    for (ikm, sk, pk) in [("ikmR", "skRm", "pkRm"), ("ikmE", "skEm", "pkEm")] {
        let (s, p) = X25519HkdfSha256::derive_keypair(&hx(&v, ikm));
        assert_eq!(s.to_bytes().to_vec(), hx(&v, sk), "{sk}");
        assert_eq!(p.to_bytes().to_vec(), hx(&v, pk), "{pk}");
    }
    // An identity whose HPKE seed is ikmR publishes pkRm and decrypts with skRm.
    let seeds = Seeds {
        sign: [1; 32],
        hpke: hx(&v, "ikmR").try_into().unwrap(),
        delete: [2; 32],
    };
    assert_eq!(seeds.hpke_public().0.to_vec(), hx(&v, "pkRm"));
    assert_eq!(seeds.hpke_keypair().0.to_bytes().to_vec(), hx(&v, "skRm"));
}

#[test]
fn rfc9180_shared_secret_from_both_ends() {
    let v = vector();
    let sk_r = Sk::from_bytes(&hx(&v, "skRm")).unwrap();
    let pk_r = Pk::from_bytes(&hx(&v, "pkRm")).unwrap();
    let enc = Enc::from_bytes(&hx(&v, "enc")).unwrap();
    let shared = X25519HkdfSha256::decap(&sk_r, None, &enc).unwrap();
    assert_eq!(shared.0.to_vec(), hx(&v, "shared_secret"));
    let (shared, enc) =
        X25519HkdfSha256::encap(&pk_r, None, &mut Replay(hx(&v, "ikmE"), 0)).unwrap();
    assert_eq!(shared.0.to_vec(), hx(&v, "shared_secret"));
    assert_eq!(enc.to_bytes().to_vec(), hx(&v, "enc"));
    // And the DHKEM's ExtractAndExpand, recomputed from the raw X25519 result.
    let sk_e = x25519_dalek::StaticSecret::from(<[u8; 32]>::try_from(hx(&v, "skEm")).unwrap());
    let pk_r_point = x25519_dalek::PublicKey::from(<[u8; 32]>::try_from(hx(&v, "pkRm")).unwrap());
    let dh = sk_e.diffie_hellman(&pk_r_point);
    assert_eq!(
        dhkem_shared_secret(dh.as_bytes(), &hx(&v, "enc"), &hx(&v, "pkRm")),
        hx(&v, "shared_secret")
    );
}

#[test]
fn rfc9180_key_schedule() {
    let v = vector();
    // "HPKE" ‖ kem_id ‖ kdf_id ‖ aead_id
    let suite: &[u8] = b"HPKE\x00\x20\x00\x01\x00\x02";
    let psk_id_hash = labeled_extract(suite, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(suite, b"", b"info_hash", &hx(&v, "info"));
    let context = [[0u8].as_slice(), &psk_id_hash, &info_hash].concat();
    assert_eq!(context, hx(&v, "key_schedule_context"));
    let secret = labeled_extract(suite, &hx(&v, "shared_secret"), b"secret", b"");
    assert_eq!(secret, hx(&v, "secret"));
    let key = labeled_expand(suite, &secret, b"key", &context, 32);
    assert_eq!(key, hx(&v, "key"));
    let base_nonce = labeled_expand(suite, &secret, b"base_nonce", &context, 12);
    assert_eq!(base_nonce, hx(&v, "base_nonce"));
    let exporter = labeled_expand(suite, &secret, b"exp", &context, 32);
    assert_eq!(exporter, hx(&v, "exporter_secret"));

    // Each encryption: nonce = base_nonce XOR seq, and AES-256-GCM under the key, through
    // our own wrapper.
    let key: [u8; 32] = key.try_into().unwrap();
    for (seq, e) in v["encryptions"].as_array().unwrap().iter().enumerate() {
        let mut nonce: [u8; 12] = base_nonce.clone().try_into().unwrap();
        for (n, s) in nonce[4..].iter_mut().zip((seq as u64).to_be_bytes()) {
            *n ^= s;
        }
        assert_eq!(nonce.to_vec(), hx(e, "nonce"), "seq {seq}");
        let sealed = seal_with_nonce(&key, &nonce, &hx(e, "pt"), &hx(e, "aad")).unwrap();
        assert_eq!(
            sealed.0,
            [nonce.as_slice(), &hx(e, "ct")].concat(),
            "seq {seq}"
        );
        assert_eq!(open(&key, &sealed.0, &hx(e, "aad")), Some(hx(e, "pt")));
    }
}

#[test]
fn rfc9180_through_hpke_receiver_context() {
    let v = vector();
    let sk_r = Sk::from_bytes(&hx(&v, "skRm")).unwrap();
    let enc = Enc::from_bytes(&hx(&v, "enc")).unwrap();
    let mut ctx = hpke::setup_receiver::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
        &OpModeR::Base,
        &sk_r,
        &enc,
        &hx(&v, "info"),
    )
    .unwrap();
    for e in v["encryptions"].as_array().unwrap() {
        assert_eq!(ctx.open(&hx(e, "ct"), &hx(e, "aad")).unwrap(), hx(e, "pt"));
    }
    for x in v["exports"].as_array().unwrap() {
        let mut out = vec![0u8; usize::try_from(x["L"].as_u64().unwrap()).unwrap()];
        ctx.export(&hx(x, "exporter_context"), &mut out).unwrap();
        assert_eq!(out, hx(x, "exported_value"));
    }
}

/// The calls `rooms::invites` makes (single-shot, base mode, this suite), given the
/// vector's ephemeral seed: they produce the vector's `enc` and first ciphertext, open it,
/// and refuse it altered or under another info or associated data.
#[test]
fn rfc9180_through_the_single_shot_calls_invitations_make() {
    let v = vector();
    let e = &v["encryptions"][0];
    let pk_r = Pk::from_bytes(&hx(&v, "pkRm")).unwrap();
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk_r,
        &hx(&v, "info"),
        &hx(e, "pt"),
        &hx(e, "aad"),
        &mut Replay(hx(&v, "ikmE"), 0),
    )
    .unwrap();
    assert_eq!(enc.to_bytes().to_vec(), hx(&v, "enc"));
    assert_eq!(ct, hx(e, "ct"));

    let sk_r = Sk::from_bytes(&hx(&v, "skRm")).unwrap();
    let open = |info: &[u8], ct: &[u8], aad: &[u8]| {
        hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &sk_r,
            &enc,
            info,
            ct,
            aad,
        )
    };
    assert_eq!(
        open(&hx(&v, "info"), &ct, &hx(e, "aad")).unwrap(),
        hx(e, "pt")
    );
    assert!(open(b"cinder/invite/v2", &ct, &hx(e, "aad")).is_err());
    assert!(open(&hx(&v, "info"), &ct, b"another recipient").is_err());
    let mut altered = ct.clone();
    altered[0] ^= 1;
    assert!(open(&hx(&v, "info"), &altered, &hx(e, "aad")).is_err());
}

//! Wycheproof Ed25519 (`ed25519_test.json`, 151 vectors: 88 valid, 63 invalid, none
//! acceptable) through the verification every signature in Cinder goes through:
//! [`cinder_proto::VerifyKey`] (parsing a key as a curve point, then `verify_strict`), used
//! alike by the server (requests, key bundles) and the client (bundles, room states,
//! invitations, messages). Pages of messages are verified in a batch first; that path
//! (`rooms::messages::verify_signatures`) runs the same vectors in its own test and must
//! give the same verdicts.
//!
//! Every valid vector must verify and every invalid one must be refused: among them
//! non-canonical `S` (`S ≥ L`, "SignatureMalleability"), bad encodings of `R` or of the
//! signature, truncated signatures and signatures with trailing bytes (which our fixed
//! 64-byte [`Signature`] cannot even carry: the wire format refuses them first).
//! Wycheproof's set has no small-order key, and its small-order `R` cases fail even plain
//! `verify` (their `S` is wrong too), so the set alone does not tell `verify` from
//! `verify_strict`: the last test here does (and `rooms::messages`:
//! `a_signature_only_a_batch_would_accept_is_refused`).

use cinder_proto::{Signature, VerifyKey};
use wycheproof::TestResult;
use wycheproof::eddsa::{TestName, TestSet};

/// One Wycheproof Ed25519 vector.
pub(crate) struct Case {
    pub(crate) id: usize,
    pub(crate) key: [u8; 32],
    pub(crate) msg: Vec<u8>,
    pub(crate) sig: Vec<u8>,
    pub(crate) valid: bool,
}

pub(crate) fn cases() -> Vec<Case> {
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut out = Vec::new();
    for group in set.test_groups {
        let key: [u8; 32] = group.key.pk.as_ref().try_into().unwrap();
        for t in group.tests {
            out.push(Case {
                id: t.tc_id,
                key,
                msg: t.msg.to_vec(),
                sig: t.sig.to_vec(),
                valid: match t.result {
                    TestResult::Valid => true,
                    TestResult::Invalid => false,
                    TestResult::Acceptable => panic!("tc {}: unexpected acceptable", t.tc_id),
                },
            });
        }
    }
    assert!(out.len() >= 151, "{} vectors", out.len());
    out
}

/// Our verdict: the key parses, the signature is 64 bytes, and it verifies strictly.
pub(crate) fn verifies(c: &Case) -> bool {
    let Ok(key) = VerifyKey::from_bytes(&c.key) else {
        return false;
    };
    let Ok(sig) = <[u8; 64]>::try_from(c.sig.as_slice()) else {
        return false;
    };
    key.verify(&c.msg, &Signature(sig)).is_ok()
}

#[test]
fn wycheproof_ed25519_through_verify_key() {
    let cases = cases();
    let valid = cases.iter().filter(|c| c.valid).count();
    assert!(valid >= 88 && cases.len() - valid >= 63);
    for c in &cases {
        assert_eq!(verifies(c), c.valid, "tc {}", c.id);
    }
}

/// What Wycheproof's set does not hold: a key and an `R` of small order. With the identity
/// as both and `S = 0`, every message "verifies" under the cofactorless equation that plain
/// `verify` checks; `verify_strict`, and so [`VerifyKey::verify`], refuses it.
#[test]
fn a_small_order_key_and_r_are_refused_where_plain_verify_accepts() {
    use ed25519_dalek::Verifier as _;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    let lax = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
    assert!(
        lax.verify(b"anything", &ed25519_dalek::Signature::from_bytes(&sig))
            .is_ok()
    );
    let key = VerifyKey::from_bytes(&identity).unwrap();
    assert!(key.verify(b"anything", &Signature(sig)).is_err());
}

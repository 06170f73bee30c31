//! Wycheproof X25519 (`x25519_test.json`, 518 vectors), as invitations use X25519: inside
//! `hpke`'s DHKEM(X25519, HKDF-SHA256), which computes it with x25519-dalek.
//!
//! Wycheproof marks each vector valid or *acceptable*; none is invalid, since X25519 is
//! defined for every 32-byte public value (RFC 7748 §5: the top bit is ignored, and
//! non-canonical values above p are taken as they are). The acceptable ones are:
//! - public keys on the twist, or non-canonical encodings, with a non-zero result: the
//!   function gives the vector's result, and `hpke` uses it like any other;
//! - public keys of low order (`LowOrderPublic`, `ZeroSharedSecret`): the result is all zero.
//!   x25519-dalek returns those zeros as the function's value, and `hpke` refuses them as
//!   RFC 9180 §7.1.4 requires (its DH fails on an all-zero result): decapsulation fails with
//!   `DecapError`, so an invitation whose encapsulated key is such a point does not open
//!   (`open_invite`: "does not open with this user's key"); sealing to a published HPKE key
//!   of low order fails with `EncapError` (`send_keys`: "HPKE sealing failed"), whatever the
//!   ephemeral key, so no key travels under a secret an eavesdropper knows.

use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, HpkeError, Kem, OpModeR, OpModeS, Serializable};
use wycheproof::TestResult;
use wycheproof::xdh::{TestFlag, TestName, TestSet};

use super::hpke::dhkem_shared_secret;

type Sk = <X25519HkdfSha256 as Kem>::PrivateKey;
type Pk = <X25519HkdfSha256 as Kem>::PublicKey;
type Enc = <X25519HkdfSha256 as Kem>::EncappedKey;

struct Case {
    id: usize,
    private: [u8; 32],
    public: [u8; 32],
    shared: [u8; 32],
    result: TestResult,
    flags: Vec<TestFlag>,
}

impl Case {
    fn zero(&self) -> bool {
        self.shared == [0; 32]
    }
}

fn cases() -> Vec<Case> {
    let set = TestSet::load(TestName::X25519).unwrap();
    let cases: Vec<Case> = set
        .test_groups
        .into_iter()
        .flat_map(|g| g.tests)
        .map(|t| Case {
            id: t.tc_id,
            private: t.private_key.as_ref().try_into().unwrap(),
            public: t.public_key.as_ref().try_into().unwrap(),
            shared: t.shared_secret.as_ref().try_into().unwrap(),
            result: t.result,
            flags: t.flags,
        })
        .collect();
    assert!(cases.len() >= 518, "{} vectors", cases.len());
    cases
}

#[test]
fn wycheproof_x25519_through_x25519_dalek() {
    let cases = cases();
    let mut acceptable = 0;
    for c in &cases {
        // Every vector is a defined value of the function; a future invalid one would need
        // its own handling here.
        assert_ne!(c.result, TestResult::Invalid, "tc {}", c.id);
        acceptable += usize::from(c.result == TestResult::Acceptable);
        // A zero result is exactly the low-order case, and only acceptable.
        assert_eq!(
            c.zero(),
            c.flags.contains(&TestFlag::ZeroSharedSecret),
            "tc {}",
            c.id
        );
        if c.zero() {
            assert_eq!(c.result, TestResult::Acceptable, "tc {}", c.id);
        }
        let secret = x25519_dalek::StaticSecret::from(c.private);
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(c.public));
        assert_eq!(shared.as_bytes(), &c.shared, "tc {}", c.id);
        assert_eq!(shared.was_contributory(), !c.zero(), "tc {}", c.id);
    }
    assert!(acceptable > 0);
}

/// Each vector's private key as a recipient's HPKE key and its public value as an
/// encapsulated key: `hpke` decapsulates to `ExtractAndExpand(the vector's result,
/// enc ‖ pkR)` (recomputed here from RFC 9180 §4.1), or refuses an all-zero result.
#[test]
fn wycheproof_x25519_through_hpke_decapsulation() {
    let mut refused = 0;
    for c in &cases() {
        let sk = Sk::from_bytes(&c.private).unwrap();
        let enc = Enc::from_bytes(&c.public).unwrap();
        let decapped = X25519HkdfSha256::decap(&sk, None, &enc);
        if c.zero() {
            assert!(
                matches!(decapped, Err(HpkeError::DecapError)),
                "tc {}: an all-zero X25519 result was used",
                c.id
            );
            refused += 1;
        } else {
            let pk_r = X25519HkdfSha256::sk_to_pk(&sk).to_bytes();
            assert_eq!(
                decapped.unwrap().0.to_vec(),
                dhkem_shared_secret(&c.shared, &c.public, &pk_r),
                "tc {}",
                c.id
            );
        }
    }
    assert!(refused > 0);
}

/// The single-shot calls of `rooms::invites` with a low-order point: sealing to it as a
/// recipient's key and opening it as an encapsulated key both fail.
#[test]
fn low_order_points_are_refused_by_the_calls_invitations_make() {
    let recipient = X25519HkdfSha256::derive_keypair(&[9; 32]);
    let mut points = 0;
    for c in cases().iter().filter(|c| c.zero()) {
        points += 1;
        let pk = Pk::from_bytes(&c.public).unwrap();
        let sealed = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
            &OpModeS::Base,
            &pk,
            b"cinder/invite/v2",
            b"keys",
            b"recipient",
            &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
        );
        assert!(
            matches!(sealed, Err(HpkeError::EncapError)),
            "tc {}: sealed to a low-order key",
            c.id
        );
        let enc = Enc::from_bytes(&c.public).unwrap();
        let opened = hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &recipient.0,
            &enc,
            b"cinder/invite/v2",
            &[0u8; 32],
            b"recipient",
        );
        assert!(
            matches!(opened, Err(HpkeError::DecapError)),
            "tc {}: opened a low-order encapsulated key",
            c.id
        );
    }
    assert!(points >= 30, "{points} low-order vectors");
}

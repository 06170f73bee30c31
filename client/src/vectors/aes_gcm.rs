//! Wycheproof AES-GCM (`aes_gcm_test.json`), the groups of our configuration only: 256-bit
//! keys, 96-bit nonces, 128-bit tags. Every AES-GCM in the client and the server is that
//! (`Aes256Gcm` from `aes-gcm`, whose nonce and tag sizes are fixed at 96 and 128 bits);
//! the other groups (other key sizes, nonces of 0 to 2056 bits) are configurations the type
//! cannot express.
//!
//! Each vector runs through the two shapes of call the code makes:
//! - [`seal_with_nonce`] and [`open`] (`nonce ‖ ciphertext ‖ tag`, the one-shot `Aead`
//!   calls): rooms, message bodies (opened with the same `Aead::decrypt` on a held cipher),
//!   avatars; the enclave and the server's tokens make the same calls.
//! - `encrypt_in_place_detached` and `decrypt_in_place_detached` on a held cipher, the calls
//!   of [`crate::media`]'s sealer and opener (whose nonces and associated data are fixed by
//!   their construction, so the vectors go to the cipher calls, not to the segment framing).
//!
//! A valid vector must seal to exactly its ciphertext and tag and open to exactly its
//! plaintext; an invalid one (a modified tag, ciphertext or counter edge case) must not open.

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce as GcmNonce, Tag};
use wycheproof::TestResult;
use wycheproof::aead::{TestName, TestSet};

use crate::rooms::{open, seal_with_nonce};

/// One vector of our configuration: key, nonce, associated data, plaintext,
/// ciphertext ‖ tag, and whether it is valid.
struct Case {
    id: usize,
    key: [u8; 32],
    nonce: [u8; 12],
    aad: Vec<u8>,
    pt: Vec<u8>,
    ct: Vec<u8>,
    tag: [u8; 16],
    valid: bool,
}

fn cases() -> Vec<Case> {
    let set = TestSet::load(TestName::AesGcm).unwrap();
    let mut out = Vec::new();
    for group in set.test_groups {
        if (group.key_size, group.nonce_size, group.tag_size) != (256, 96, 128) {
            continue;
        }
        for t in group.tests {
            out.push(Case {
                id: t.tc_id,
                key: t.key.as_ref().try_into().unwrap(),
                nonce: t.nonce.as_ref().try_into().unwrap(),
                aad: t.aad.to_vec(),
                pt: t.pt.to_vec(),
                ct: t.ct.to_vec(),
                tag: t.tag.as_ref().try_into().unwrap(),
                // AES-GCM has no "acceptable" vectors: each is valid or invalid.
                valid: match t.result {
                    TestResult::Valid => true,
                    TestResult::Invalid => false,
                    TestResult::Acceptable => panic!("tc {}: unexpected acceptable", t.tc_id),
                },
            });
        }
    }
    out
}

#[test]
fn wycheproof_aes_256_gcm_through_seal_and_open() {
    let cases = cases();
    let valid = cases.iter().filter(|c| c.valid).count();
    // The set as of wycheproof 0.7: 39 valid and 27 invalid vectors in our configuration.
    assert!(
        valid >= 39 && cases.len() - valid >= 27,
        "{} vectors",
        cases.len()
    );
    for c in &cases {
        let wire = [c.nonce.as_slice(), &c.ct, &c.tag].concat();
        if c.valid {
            let sealed = seal_with_nonce(&c.key, &c.nonce, &c.pt, &c.aad).unwrap();
            assert_eq!(sealed.0, wire, "tc {}: sealing", c.id);
            assert_eq!(
                open(&c.key, &wire, &c.aad).as_deref(),
                Some(c.pt.as_slice()),
                "tc {}: opening",
                c.id
            );
            // The associated data is bound: any change refuses.
            let other_aad = [c.aad.as_slice(), b"x"].concat();
            assert!(open(&c.key, &wire, &other_aad).is_none(), "tc {}", c.id);
        } else {
            assert!(
                open(&c.key, &wire, &c.aad).is_none(),
                "tc {}: an invalid vector opened",
                c.id
            );
        }
    }
    // Shorter than a nonce and a tag: nothing to open.
    let key = [7u8; 32];
    for len in [0, 11, 12, 27] {
        assert!(open(&key, &vec![0u8; len], b"").is_none(), "{len} bytes");
    }
}

#[test]
fn wycheproof_aes_256_gcm_through_the_detached_calls_media_makes() {
    for c in &cases() {
        let cipher = Aes256Gcm::new((&c.key).into());
        let nonce = GcmNonce::from_slice(&c.nonce);
        if c.valid {
            let mut buffer = c.pt.clone();
            let tag = cipher
                .encrypt_in_place_detached(nonce, &c.aad, &mut buffer)
                .unwrap();
            assert_eq!(buffer, c.ct, "tc {}: ciphertext", c.id);
            assert_eq!(tag.as_slice(), c.tag, "tc {}: tag", c.id);
        }
        let mut buffer = c.ct.clone();
        let opened =
            cipher.decrypt_in_place_detached(nonce, &c.aad, &mut buffer, Tag::from_slice(&c.tag));
        assert_eq!(opened.is_ok(), c.valid, "tc {}: opening", c.id);
        if c.valid {
            assert_eq!(buffer, c.pt, "tc {}: plaintext", c.id);
        }
        // The held cipher's one-shot call, as message bodies are opened.
        let wire = [c.ct.as_slice(), &c.tag].concat();
        let one_shot = cipher.decrypt(
            nonce,
            Payload {
                msg: &wire,
                aad: &c.aad,
            },
        );
        assert_eq!(one_shot.ok(), c.valid.then(|| c.pt.clone()), "tc {}", c.id);
    }
}

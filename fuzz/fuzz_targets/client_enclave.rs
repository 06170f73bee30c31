//! Opening the password-protected enclave (`EnclaveKey::open`), with a fixed key: a
//! stored enclave as the server sends it (JSON, or raw version and ciphertext), and
//! arbitrary bytes sealed under the key so the plaintext parser behind the AEAD is reached.
#![no_main]

use cinder_client::fuzzing;
use cinder_proto::Blob;
use cinder_proto::accounts::StoredEnclave;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = fuzzing::enclave_key([0x55; 32]).expect("32 bytes");
    let Some((version, body)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let version = u64::from_be_bytes(*version);
    match mode % 3 {
        0 => {
            if let Some(stored) = cinder_fuzz::json::<StoredEnclave>(body) {
                let _ = key.open(&stored, version);
            }
        }
        1 => {
            // A ciphertext the server made up: never opens.
            let stored = StoredEnclave {
                ciphertext: Blob(body.to_vec()),
                version,
            };
            assert!(key.open(&stored, 0).is_err(), "a forged enclave opened");
        }
        _ => {
            // Whatever plaintext the key sealed: opens only as the contents it parses to.
            let stored = fuzzing::seal_enclave_bytes(&key, version, body).expect("seals");
            if let Ok(contents) = key.open(&stored, 0) {
                assert_eq!(contents.version, version);
            }
            if let Some(min) = version.checked_add(1) {
                assert!(key.open(&stored, min).is_err(), "a rollback was accepted");
            }
        }
    }
});

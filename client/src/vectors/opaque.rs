//! OPAQUE (RFC 9807) vectors for our suite: the ristretto255-SHA512 OPRF, ristretto255 for
//! the key exchange, 3DH, SHA-512 (HKDF-SHA512, HMAC-SHA512).
//!
//! Two kinds of check, because the standard vectors use the identity as key-stretching
//! function and our client uses Argon2id:
//! - The standard vectors (`opaque_ristretto255_sha512.json`: the opaque-ke crate's copy of
//!   the CFRG draft's vectors for this OPRF and group; origin inside the file) run through
//!   the server's own suite, `cinder_server::accounts::suite::ServerSuite`, which *is* that
//!   configuration with the identity KSF (the server never stretches). Both sides of every
//!   message are checked: registration request, response, upload, export key, KE1, KE2, KE3,
//!   both session keys, and the fake-record KE2 (an unknown login's answer). This proves the
//!   building blocks and the server's side exactly; on the client's side it proves
//!   everything but the stretch.
//! - Our real client suite (`crate::account::ClientSuite`: the same with Argon2id at
//!   [`KsfParams::FLOOR`], through `account::argon2`), with `account::CONTEXT`, no
//!   identifiers and fixed randomness (the first vector's seeds), against `ServerSuite`, as
//!   production runs them. Its export and session keys are pinned below. They are not an
//!   independent known answer (no published vector covers Argon2id as the KSF; opaque-ke
//!   and argon2 have their own tests): they catch an accidental change of the suite, its
//!   parameters, the context or the crates' behaviour, which would lock every account out.
//!   The messages that do not depend on the KSF or the context (registration request and
//!   response, KE1) still equal the standard vector's.

use cinder_proto::accounts::KsfParams;
use cinder_server::accounts::suite::{CONTEXT as SERVER_CONTEXT, ServerSuite};
use opaque_ke::{
    CipherSuite, ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialFinalization, CredentialRequest,
    CredentialResponse, Identifiers, RegistrationRequest, RegistrationResponse, RegistrationUpload,
    ServerLogin, ServerLoginStartParameters, ServerRegistration, ServerSetup,
};
use serde_json::Value;

use super::unhex;
use crate::account::{CONTEXT, ClientSuite, argon2};

/// The client suite's export key for the pinned run (64 bytes, hex).
const PINNED_EXPORT_KEY: &str = concat!(
    "ae2fc5c8b703a36a3c10985b6bb58ad6f76d771e99801593a6a5f1b5c54a258a",
    "bd0a42064f6ceaa444d7648564058407aa1cc49ef02490fe0bb7421c48d56f8f"
);
/// The client suite's session key for the pinned run (64 bytes, hex).
const PINNED_SESSION_KEY: &str = concat!(
    "868593fa95095626196db9fdd7d0f237e381f49d2b9eb21d96d4af64d53cad91",
    "d38391a795b9078c280f10e83c4e0042171f77eb9b146eebaa374fcbd2376361"
);

/// The vectors' randomness, one value a draw, in order. opaque-ke's own tests build it with
/// a test-only blinding that draws a 32-byte scalar; built as a dependency, it draws 64
/// bytes and reduces them (wide), so a 32-byte value comes padded with zeros here: a
/// canonical scalar reduces to itself. A draw of another shape, or one more draw, fails.
struct Draws(std::collections::VecDeque<Vec<u8>>);

fn draws<const N: usize>(values: [Vec<u8>; N]) -> Draws {
    Draws(values.into())
}

impl rand_core::RngCore for Draws {
    fn next_u32(&mut self) -> u32 {
        unimplemented!("OPAQUE draws bytes")
    }
    fn next_u64(&mut self) -> u64 {
        unimplemented!("OPAQUE draws bytes")
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        let value = self.0.pop_front().expect("a draw the vector does not have");
        assert!(
            value.len() == dst.len() || (value.len() == 32 && dst.len() == 64),
            "a draw of {} bytes for a value of {}",
            dst.len(),
            value.len()
        );
        dst.fill(0);
        dst[..value.len()].copy_from_slice(&value);
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dst);
        Ok(())
    }
}
impl rand_core::CryptoRng for Draws {}

fn vectors() -> Value {
    serde_json::from_str(include_str!("opaque_ristretto255_sha512.json")).unwrap()
}

fn hx(v: &Value, field: &str) -> Vec<u8> {
    unhex(v[field].as_str().unwrap_or_else(|| panic!("{field}")))
}

fn opt(v: &Value, field: &str) -> Option<Vec<u8>> {
    v.get(field).map(|_| hx(v, field))
}

fn setup(v: &Value, dummy: &[u8]) -> ServerSetup<ServerSuite> {
    let bytes = [
        hx(v, "oprf_seed"),
        hx(v, "server_private_key"),
        dummy.to_vec(),
    ]
    .concat();
    ServerSetup::<ServerSuite>::deserialize(&bytes).unwrap()
}

#[test]
fn the_vectors_are_our_suite() {
    for v in vectors()["real"]
        .as_array()
        .unwrap()
        .iter()
        .chain(vectors()["fake"].as_array().unwrap())
    {
        assert_eq!(v["OPRF"], "ristretto255-SHA512");
        assert_eq!(v["Group"], "ristretto255");
        assert_eq!(v["Hash"], "SHA512");
        assert_eq!(v["KSF"], "Identity");
    }
    // The server's suite and the client's differ only in the KSF.
    fn names<CS: CipherSuite>() -> [&'static str; 3] {
        [
            std::any::type_name::<CS::OprfCs>(),
            std::any::type_name::<CS::KeGroup>(),
            std::any::type_name::<CS::KeyExchange>(),
        ]
    }
    assert_eq!(names::<ClientSuite>(), names::<ServerSuite>());
    assert_eq!(CONTEXT, SERVER_CONTEXT);
}

#[test]
fn opaque_real_vectors_with_the_server_suite() {
    let all = vectors();
    let real = all["real"].as_array().unwrap();
    assert_eq!(real.len(), 2);
    for v in real {
        let password = hx(v, "password");
        let credential = hx(v, "credential_identifier");
        let context = hx(v, "Context");
        let (client_id, server_id) = (opt(v, "client_identity"), opt(v, "server_identity"));
        let ids = || Identifiers {
            client: client_id.as_deref(),
            server: server_id.as_deref(),
        };
        // The dummy key only answers unknown logins; any valid scalar does here.
        let setup = setup(v, &hx(v, "server_private_key"));
        assert_eq!(
            setup.keypair().public().serialize().to_vec(),
            hx(v, "server_public_key")
        );

        // Registration.
        let start = ClientRegistration::<ServerSuite>::start(
            &mut draws([hx(v, "blind_registration")]),
            &password,
        )
        .unwrap();
        assert_eq!(
            start.message.serialize().to_vec(),
            hx(v, "registration_request")
        );
        let response = ServerRegistration::<ServerSuite>::start(
            &setup,
            RegistrationRequest::deserialize(&hx(v, "registration_request")).unwrap(),
            &credential,
        )
        .unwrap();
        assert_eq!(
            response.message.serialize().to_vec(),
            hx(v, "registration_response")
        );
        let finish = start
            .state
            .finish(
                &mut draws([hx(v, "envelope_nonce")]),
                &password,
                RegistrationResponse::deserialize(&hx(v, "registration_response")).unwrap(),
                ClientRegistrationFinishParameters::new(ids(), None),
            )
            .unwrap();
        assert_eq!(
            finish.message.serialize().to_vec(),
            hx(v, "registration_upload")
        );
        assert_eq!(finish.export_key.to_vec(), hx(v, "export_key"));
        let record = || {
            ServerRegistration::<ServerSuite>::finish(
                RegistrationUpload::deserialize(&hx(v, "registration_upload")).unwrap(),
            )
        };

        // Login.
        let client_rng = || {
            draws([
                hx(v, "blind_login"),
                hx(v, "client_keyshare_seed"),
                hx(v, "client_nonce"),
            ])
        };
        let login = ClientLogin::<ServerSuite>::start(&mut client_rng(), &password).unwrap();
        assert_eq!(login.message.serialize().to_vec(), hx(v, "KE1"));
        let server = ServerLogin::<ServerSuite>::start(
            &mut draws([
                hx(v, "masking_nonce"),
                hx(v, "server_keyshare_seed"),
                hx(v, "server_nonce"),
            ]),
            &setup,
            Some(record()),
            CredentialRequest::deserialize(&hx(v, "KE1")).unwrap(),
            &credential,
            ServerLoginStartParameters {
                context: Some(&context),
                identifiers: ids(),
            },
        )
        .unwrap();
        assert_eq!(server.message.serialize().to_vec(), hx(v, "KE2"));
        let done = login
            .state
            .finish(
                &password,
                CredentialResponse::deserialize(&hx(v, "KE2")).unwrap(),
                ClientLoginFinishParameters::new(Some(&context), ids(), None),
            )
            .unwrap();
        assert_eq!(done.message.serialize().to_vec(), hx(v, "KE3"));
        assert_eq!(done.session_key.to_vec(), hx(v, "session_key"));
        assert_eq!(done.export_key.to_vec(), hx(v, "export_key"));
        assert_eq!(
            done.server_s_pk.serialize().to_vec(),
            hx(v, "server_public_key")
        );
        let server_done = server
            .state
            .finish(CredentialFinalization::deserialize(&hx(v, "KE3")).unwrap())
            .unwrap();
        assert_eq!(server_done.session_key.to_vec(), hx(v, "session_key"));

        // A wrong password, or another context, does not log in.
        let login = ClientLogin::<ServerSuite>::start(&mut client_rng(), b"wrong").unwrap();
        assert!(
            login
                .state
                .finish(
                    b"wrong",
                    CredentialResponse::deserialize(&hx(v, "KE2")).unwrap(),
                    ClientLoginFinishParameters::new(Some(&context), ids(), None),
                )
                .is_err()
        );
        let login = ClientLogin::<ServerSuite>::start(&mut client_rng(), &password).unwrap();
        assert!(
            login
                .state
                .finish(
                    &password,
                    CredentialResponse::deserialize(&hx(v, "KE2")).unwrap(),
                    ClientLoginFinishParameters::new(Some(CONTEXT), ids(), None),
                )
                .is_err()
        );
    }
}

#[test]
fn opaque_fake_vector_with_the_server_suite() {
    let all = vectors();
    let fake = all["fake"].as_array().unwrap();
    assert_eq!(fake.len(), 1);
    for v in fake {
        let setup = setup(v, &hx(v, "client_private_key"));
        let server = ServerLogin::<ServerSuite>::start(
            &mut draws([
                hx(v, "masking_key"),
                hx(v, "masking_nonce"),
                hx(v, "server_keyshare_seed"),
                hx(v, "server_nonce"),
            ]),
            &setup,
            None,
            CredentialRequest::deserialize(&hx(v, "KE1")).unwrap(),
            &hx(v, "credential_identifier"),
            ServerLoginStartParameters {
                context: Some(&hx(v, "Context")),
                identifiers: Identifiers {
                    client: opt(v, "client_identity").as_deref(),
                    server: opt(v, "server_identity").as_deref(),
                },
            },
        )
        .unwrap();
        assert_eq!(server.message.serialize().to_vec(), hx(v, "KE2"));
    }
}

/// What one pinned run of our real suite produces.
struct Run {
    registration_export_key: Vec<u8>,
    login_export_key: Vec<u8>,
    client_session_key: Vec<u8>,
    server_session_key: Vec<u8>,
}

/// Registration and login as production runs them (client suite `$c` against the server
/// suite, messages as bytes between them), with the first vector's seeds and `$ksf` as the
/// client's stretch. (A macro: opaque-ke's bounds make a generic function unwieldy.)
macro_rules! pinned_run {
    ($c:ty, $ksf:expr) => {{
        let client_ksf = $ksf;
        let all = vectors();
        let v = &all["real"][0];
        let password = hx(v, "password");
        let credential = hx(v, "credential_identifier");
        let setup = setup(v, &hx(v, "server_private_key"));

        let start =
            ClientRegistration::<$c>::start(&mut draws([hx(v, "blind_registration")]), &password)
                .unwrap();
        let request = start.message.serialize().to_vec();
        assert_eq!(request, hx(v, "registration_request"));
        let response = ServerRegistration::<ServerSuite>::start(
            &setup,
            RegistrationRequest::deserialize(&request).unwrap(),
            &credential,
        )
        .unwrap()
        .message
        .serialize()
        .to_vec();
        assert_eq!(response, hx(v, "registration_response"));
        let finish = start
            .state
            .finish(
                &mut draws([hx(v, "envelope_nonce")]),
                &password,
                RegistrationResponse::deserialize(&response).unwrap(),
                ClientRegistrationFinishParameters::new(Identifiers::default(), client_ksf),
            )
            .unwrap();
        let record = ServerRegistration::<ServerSuite>::finish(
            RegistrationUpload::deserialize(&finish.message.serialize()).unwrap(),
        );

        let login = ClientLogin::<$c>::start(
            &mut draws([
                hx(v, "blind_login"),
                hx(v, "client_keyshare_seed"),
                hx(v, "client_nonce"),
            ]),
            &password,
        )
        .unwrap();
        let ke1 = login.message.serialize().to_vec();
        assert_eq!(ke1, hx(v, "KE1"));
        let server = ServerLogin::<ServerSuite>::start(
            &mut draws([
                hx(v, "masking_nonce"),
                hx(v, "server_keyshare_seed"),
                hx(v, "server_nonce"),
            ]),
            &setup,
            Some(record),
            CredentialRequest::deserialize(&ke1).unwrap(),
            &credential,
            ServerLoginStartParameters {
                context: Some(SERVER_CONTEXT),
                identifiers: Identifiers::default(),
            },
        )
        .unwrap();
        let done = login
            .state
            .finish(
                &password,
                CredentialResponse::deserialize(&server.message.serialize()).unwrap(),
                ClientLoginFinishParameters::new(Some(CONTEXT), Identifiers::default(), client_ksf),
            )
            .unwrap();
        let server_done = server
            .state
            .finish(CredentialFinalization::deserialize(&done.message.serialize()).unwrap())
            .unwrap();
        Run {
            registration_export_key: finish.export_key.to_vec(),
            login_export_key: done.export_key.to_vec(),
            client_session_key: done.session_key.to_vec(),
            server_session_key: server_done.session_key.to_vec(),
        }
    }};
}

#[test]
fn our_argon2id_suite_gives_the_pinned_keys() {
    let argon = argon2(&KsfParams::FLOOR).unwrap();
    let run = pinned_run!(ClientSuite, Some(&argon));
    assert_eq!(run.registration_export_key, run.login_export_key);
    assert_eq!(run.client_session_key, run.server_session_key);
    assert_eq!(
        hex::encode(&run.login_export_key),
        PINNED_EXPORT_KEY,
        "the export key changed: every enclave key derives from it"
    );
    assert_eq!(
        hex::encode(&run.client_session_key),
        PINNED_SESSION_KEY,
        "the session key changed"
    );
    // The stretch is in the loop: without it the same run gives other keys.
    let plain = pinned_run!(ServerSuite, None);
    assert_ne!(plain.login_export_key, run.login_export_key);
}

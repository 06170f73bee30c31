//! Accounts: OPAQUE registration and login, and the password-protected enclave.
//!
//! OPAQUE (RFC 9807) messages travel as opaque base64url blobs: their layout is the
//! `opaque-ke` crate's, under Cinder's cipher suite (Ristretto255, triple-DH, SHA-512,
//! Argon2id as the client's key-stretching function). The server never sees the password or
//! anything derived from it that would allow offline guessing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Blob, ProtoError, Timestamp};

/// Header carrying a session token from a finished login.
pub const SESSION_HEADER: &str = "x-cinder-session";

/// Header carrying a re-authentication token ([`Reauth`]): a password proved again inside
/// the session, which a password change and an account deletion require.
pub const REAUTH_HEADER: &str = "x-cinder-reauth";

/// Argon2id parameters the client used to stretch the password. Public: the client needs
/// them before it can log in from a new device, and refuses any below its floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KsfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KsfParams {
    /// The floor and default: Bitwarden's Argon2id defaults (64 MiB, t=3, p=4).
    pub const FLOOR: Self = Self {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
    };
    /// The most memory a client will spend, so a server cannot exhaust it (1 GiB).
    pub const MAX_M_KIB: u32 = 1024 * 1024;

    /// Whether these are at least the floor in every dimension, and within sane bounds.
    pub fn acceptable(&self) -> bool {
        self.m_kib >= Self::FLOOR.m_kib
            && self.t >= Self::FLOOR.t
            && self.p >= Self::FLOOR.p
            && self.m_kib <= Self::MAX_M_KIB
            && self.t <= 64
            && self.p <= 64
    }
}

/// A login name: 3 to 64 characters of `a-z 0-9 . _ -`, lowercased on parse so that
/// `Alice` and `alice` are one account. The server only ever stores a keyed hash of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Login(String);

impl Login {
    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Login {
    // Logins identify people; keep them out of debug output and therefore logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Login(..)")
    }
}

impl fmt::Display for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Login {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let ok = (3..=64).contains(&lower.len())
            && lower.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if ok {
            Ok(Self(lower))
        } else {
            Err(ProtoError::BadId("login (3-64 of a-z 0-9 . _ -)"))
        }
    }
}

impl Serialize for Login {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Login {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `POST /accounts/register/start`: the client's OPAQUE registration request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterStart {
    /// The login to register.
    pub login: Login,
    /// OPAQUE `RegistrationRequest`.
    pub request: Blob,
}

/// The server's OPAQUE answer to a registration (or password change) start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterStartResponse {
    /// OPAQUE `RegistrationResponse`.
    pub response: Blob,
}

/// `POST /accounts/register/finish`: the OPAQUE record and the first enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    /// The login being registered.
    pub login: Login,
    /// OPAQUE `RegistrationUpload`.
    pub upload: Blob,
    /// The Argon2id parameters the client used.
    pub ksf: KsfParams,
    /// The enclave, sealed by the client (version 1).
    pub enclave: Blob,
}

/// `POST /accounts/login/start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    /// Who is logging in.
    pub login: Login,
    /// OPAQUE `CredentialRequest`.
    pub request: Blob,
}

/// The server's answer to a login start. Identical in shape for unknown logins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStartResponse {
    /// OPAQUE `CredentialResponse`.
    pub response: Blob,
    /// The server's login state, sealed to itself; hand it back with the finish.
    pub state: Blob,
    /// The Argon2id parameters to stretch the password with.
    pub ksf: KsfParams,
}

/// `POST /accounts/login/finish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    /// The `state` from the login start.
    pub state: Blob,
    /// OPAQUE `CredentialFinalization`.
    pub finalization: Blob,
}

/// A finished login: a session and the enclave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's id, as `GET /accounts/sessions` lists it.
    pub id: String,
    /// Send in the `x-cinder-session` header for the session's requests.
    pub token: Blob,
    /// When the session ends.
    pub expires_at: Timestamp,
    /// The enclave as stored.
    pub enclave: StoredEnclave,
}

/// The enclave as the server holds it: a ciphertext and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEnclave {
    /// Sealed by the client; the version is bound inside.
    pub ciphertext: Blob,
    /// Increases by one with every replacement.
    pub version: u64,
}

/// `PUT /accounts/enclave`: replace the enclave, if it is still at `expected_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutEnclave {
    /// The new ciphertext, sealed for version `expected_version + 1`.
    pub ciphertext: Blob,
    /// The version the client last read.
    pub expected_version: u64,
}

/// `POST /accounts/password/start` (in a session): OPAQUE registration request for the new password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordStart {
    /// OPAQUE `RegistrationRequest`.
    pub request: Blob,
}

/// `POST /accounts/password/finish` (in a session): new OPAQUE record and re-sealed enclave,
/// swapped in together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordFinish {
    /// OPAQUE `RegistrationUpload` for the new password.
    pub upload: Blob,
    /// The Argon2id parameters used for the new password.
    pub ksf: KsfParams,
    /// The enclave sealed under the new password's key, for version `expected_version + 1`.
    pub ciphertext: Blob,
    /// The version the client last read.
    pub expected_version: u64,
}

/// `POST /accounts/reauth/start` (in a session): prove the password again, first message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReauthStart {
    /// OPAQUE `CredentialRequest`.
    pub request: Blob,
}

/// The answer to `POST /accounts/reauth/finish`: proof, good once and briefly, that the
/// session's holder knows the password. Send it in the `x-cinder-reauth` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reauth {
    /// The token for the `x-cinder-reauth` header.
    pub token: Blob,
    /// When it stops being accepted.
    pub expires_at: Timestamp,
}

/// One open session of the account, as `GET /accounts/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The id to end it by (`DELETE /accounts/sessions/{id}`).
    pub id: String,
    /// When its login finished.
    pub created_at: Timestamp,
    /// When it ends by itself.
    pub expires_at: Timestamp,
    /// Whether it is the session that asked.
    pub current: bool,
}

/// `GET /accounts/sessions`: the account's open sessions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// The sessions.
    pub sessions: Vec<SessionInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_normalised_and_bounded() {
        assert_eq!("Alice.B-1".parse::<Login>().unwrap().as_str(), "alice.b-1");
        for bad in ["ab", "a b c", "ålice", "alice@example.com", &"x".repeat(65)] {
            assert!(bad.parse::<Login>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn ksf_floor_is_enforced_in_every_dimension() {
        assert!(KsfParams::FLOOR.acceptable());
        for weak in [
            KsfParams {
                m_kib: 32 * 1024,
                ..KsfParams::FLOOR
            },
            KsfParams {
                t: 2,
                ..KsfParams::FLOOR
            },
            KsfParams {
                p: 1,
                ..KsfParams::FLOOR
            },
            KsfParams {
                m_kib: 4 * 1024 * 1024,
                ..KsfParams::FLOOR
            },
        ] {
            assert!(!weak.acceptable(), "{weak:?}");
        }
    }
}

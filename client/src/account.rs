//! Accounts from the client's side: OPAQUE registration and login, and the enclave.
//!
//! The password never leaves this module: OPAQUE turns it, through Argon2id, into an export
//! key that only this client learns, and the enclave key is derived from that. The enclave
//! is AES-256-GCM with its version in the associated data and inside the plaintext, so the
//! server can neither relabel an old enclave as new nor serve one older than this device has
//! seen without being caught.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use argon2::{Algorithm, Argon2, Params, Version};
use cinder_proto::accounts::{
    KsfParams, Login, LoginFinish, LoginStart, LoginStartResponse, PasswordFinish, PasswordStart,
    PutEnclave, Reauth, ReauthStart, RegisterFinish, RegisterStart, RegisterStartResponse, Session,
    SessionInfo, SessionList, StoredEnclave,
};
use cinder_proto::{Blob, ErrorCode, Timestamp};
use hkdf::Hkdf;
use opaque_ke::key_exchange::tripledh::TripleDh;
use opaque_ke::{
    CipherSuite, ClientLogin, ClientLoginFinishParameters, ClientRegistration,
    ClientRegistrationFinishParameters, CredentialResponse, Identifiers, RegistrationResponse,
};
use rand_core::OsRng;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::{Client, ClientError, Identity};

/// Cinder's OPAQUE suite, client side: the server's, with Argon2id as the key-stretching
/// function (`cinder_server::accounts::suite`).
pub struct ClientSuite;

impl CipherSuite for ClientSuite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeGroup = opaque_ke::Ristretto255;
    type KeyExchange = TripleDh;
    type Ksf = Argon2<'static>;
}

/// The OPAQUE context string, the same on both sides.
pub(crate) const CONTEXT: &[u8] = b"cinder/opaque/v1";
const ENCLAVE_AAD: &[u8] = b"cinder/enclave/v1\0";

/// What the enclave holds. Only this client ever sees it in the clear.
#[derive(Clone, Serialize, Deserialize)]
pub struct EnclaveContents {
    /// Must equal the stored version; bound into the associated data too.
    pub version: u64,
    /// The user's identity: published bundle and private keys.
    pub identity: Identity,
    /// What others see of the user, once shared into rooms.
    #[serde(default)]
    pub profile: UserProfile,
    /// Per room: its keys by epoch and the verified room state. A membership in a format
    /// this client no longer reads (from before signed room states) is left out rather
    /// than locking the user out of the whole enclave.
    #[serde(default, deserialize_with = "readable_memberships")]
    pub memberships: BTreeMap<cinder_proto::RoomId, crate::rooms::Membership>,
    /// Other users' directory keys as this user's devices verified them: a new device
    /// starts from these pins, not from whatever the server says is current.
    #[serde(default)]
    pub pins: BTreeMap<cinder_proto::UserId, cinder_proto::KeyBundle>,
}

fn readable_memberships<'de, D>(
    d: D,
) -> Result<BTreeMap<cinder_proto::RoomId, crate::rooms::Membership>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = BTreeMap::<cinder_proto::RoomId, serde_json::Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|(id, v)| serde_json::from_value(v).ok().map(|m| (id, m)))
        .collect())
}

/// A user's profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Status line.
    #[serde(default)]
    pub status: String,
    /// The avatar picture (at most `rooms::avatars::MAX_AVATAR_BYTES`), kept here under
    /// the enclave key; each room gets its own sealed copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<Blob>,
}

/// The key that seals the enclave, derived from OPAQUE's export key. It serialises only
/// into the crate's own profile file.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Deserialize)]
#[serde(try_from = "Blob")]
pub struct EnclaveKey([u8; 32]);

impl Serialize for EnclaveKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::secret::guard::<S::Error>()?;
        self.to_blob().serialize(s)
    }
}

impl TryFrom<Blob> for EnclaveKey {
    type Error = &'static str;
    fn try_from(blob: Blob) -> Result<Self, Self::Error> {
        Self::from_blob(&blob).ok_or("an enclave key is 32 bytes")
    }
}

impl EnclaveKey {
    fn from_export_key(export_key: &[u8]) -> Self {
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's output limit.
        let _ = Hkdf::<Sha256>::new(Some(b"cinder/enclave-key/v1"), export_key)
            .expand(b"enclave", &mut key);
        Self(key)
    }

    /// The raw key, for caching in the local profile.
    fn to_blob(&self) -> Blob {
        Blob(self.0.to_vec())
    }

    /// A key read back from the local profile.
    fn from_blob(blob: &Blob) -> Option<Self> {
        blob.0.as_slice().try_into().ok().map(Self)
    }

    /// Seals `contents` (whose `version` says which version it will be stored as).
    pub fn seal(&self, contents: &EnclaveContents) -> Result<Blob, ClientError> {
        let json = crate::secret::exposing(|| serde_json::to_vec(contents))
            .map_err(|e| ClientError::Internal(e.to_string()))?;
        self.seal_bytes(contents.version, &json)
    }

    /// Seals `json` as the enclave of `version`: what [`EnclaveKey::seal`] stores, and what
    /// the fuzz targets seal arbitrary bytes with.
    pub(crate) fn seal_bytes(&self, version: u64, json: &[u8]) -> Result<Blob, ClientError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| ClientError::Randomness)?;
        let aad = aad(version);
        let sealed = Aes256Gcm::new(&self.0.into())
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: json,
                    aad: &aad,
                },
            )
            .map_err(|_| ClientError::Verification("enclave sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(Blob(out))
    }

    /// Opens a stored enclave, refusing one older than `min_version` or whose inner version
    /// disagrees with the stored one.
    pub fn open(
        &self,
        stored: &StoredEnclave,
        min_version: u64,
    ) -> Result<EnclaveContents, ClientError> {
        if stored.version < min_version {
            return Err(ClientError::Verification(format!(
                "the server returned enclave version {} but version {min_version} was seen before (rollback)",
                stored.version
            )));
        }
        let bad =
            || ClientError::Verification("the enclave does not decrypt under this password".into());
        let (nonce, ciphertext) = stored.ciphertext.0.split_at_checked(12).ok_or_else(bad)?;
        let json = Aes256Gcm::new(&self.0.into())
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(stored.version),
                },
            )
            .map_err(|_| bad())?;
        let contents: EnclaveContents = serde_json::from_slice(&json).map_err(|_| bad())?;
        if contents.version != stored.version {
            return Err(ClientError::Verification(
                "the enclave's inner version disagrees".into(),
            ));
        }
        Ok(contents)
    }
}

fn aad(version: u64) -> Vec<u8> {
    let mut aad = ENCLAVE_AAD.to_vec();
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// A logged-in account: the session, the enclave key and the opened enclave. The CLI
/// caches it in the profile file (mode 0600) until `cinder logout`.
#[derive(Clone, Serialize, Deserialize)]
pub struct LoggedIn {
    /// The login.
    pub login: Login,
    /// The session's id (as `sessions` lists it); empty in a profile cached before ids.
    #[serde(default)]
    pub session_id: String,
    /// Session token for the `x-cinder-session` header.
    pub token: Blob,
    /// When the session ends.
    pub expires_at: Timestamp,
    /// Seals the enclave.
    pub key: EnclaveKey,
    /// The enclave as last read or written; `contents.version` is the stored version.
    pub contents: EnclaveContents,
    /// The server's OPAQUE public key, to pin.
    pub server_key: Blob,
    /// The Argon2id parameters the account's password is stretched with; a password
    /// change keeps at least these.
    #[serde(default = "floor")]
    pub ksf: KsfParams,
}

fn floor() -> KsfParams {
    KsfParams::FLOOR
}

impl std::fmt::Debug for LoggedIn {
    // Tokens and keys stay out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("user", &self.contents.identity.user_id())
            .field("version", &self.contents.version)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub(crate) fn argon2(ksf: &KsfParams) -> Result<Argon2<'static>, ClientError> {
    if !ksf.acceptable() {
        return Err(ClientError::Verification(format!(
            "the server asks for Argon2id m={} KiB t={} p={}: below this client's floor (m={} KiB t={} p={}) or more than it will spend (m at most {} KiB, t and p at most 64)",
            ksf.m_kib,
            ksf.t,
            ksf.p,
            KsfParams::FLOOR.m_kib,
            KsfParams::FLOOR.t,
            KsfParams::FLOOR.p,
            KsfParams::MAX_M_KIB
        )));
    }
    let params = Params::new(ksf.m_kib, ksf.t, ksf.p, None)
        .map_err(|e| ClientError::Verification(format!("invalid Argon2id parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn malformed(what: &str) -> ClientError {
    ClientError::Verification(format!("the server sent a malformed OPAQUE {what}"))
}

/// The first half of an OPAQUE registration, shared by registration and password change.
fn registration_start(
    password: &[u8],
) -> Result<(ClientRegistration<ClientSuite>, Blob), ClientError> {
    let start = ClientRegistration::<ClientSuite>::start(&mut OsRng, password)
        .map_err(|_| ClientError::Verification("OPAQUE registration could not start".into()))?;
    Ok((start.state, Blob(start.message.serialize().to_vec())))
}

/// The second half: the upload, the enclave key and the server's public key. Argon2id runs
/// here, for about a second, so it runs on a blocking thread, never on the async executor.
async fn registration_finish(
    state: ClientRegistration<ClientSuite>,
    password: &[u8],
    response: &RegisterStartResponse,
    ksf: &KsfParams,
) -> Result<(Blob, EnclaveKey, Blob), ClientError> {
    let response = RegistrationResponse::<ClientSuite>::deserialize(&response.response.0)
        .map_err(|_| malformed("response"))?;
    let argon = argon2(ksf)?;
    let password = Zeroizing::new(password.to_vec());
    off_executor(move || {
        let finish = state
            .finish(
                &mut OsRng,
                &password,
                response,
                ClientRegistrationFinishParameters::new(Identifiers::default(), Some(&argon)),
            )
            .map_err(|_| ClientError::Verification("OPAQUE registration failed".into()))?;
        Ok((
            Blob(finish.message.serialize().to_vec()),
            EnclaveKey::from_export_key(&finish.export_key),
            Blob(finish.server_s_pk.serialize().to_vec()),
        ))
    })
    .await
}

/// The client's side of an OPAQUE login answered by `answer`: the password stretched with
/// the answer's Argon2id parameters (checked against the bounds first) off the executor.
async fn login_finish(
    state: ClientLogin<ClientSuite>,
    password: &[u8],
    answer: &LoginStartResponse,
) -> Result<opaque_ke::ClientLoginFinishResult<ClientSuite>, ClientError> {
    let argon = argon2(&answer.ksf)?;
    let response = CredentialResponse::<ClientSuite>::deserialize(&answer.response.0)
        .map_err(|_| malformed("response"))?;
    let password = Zeroizing::new(password.to_vec());
    off_executor(move || {
        state
            .finish(
                &password,
                response,
                ClientLoginFinishParameters::new(
                    Some(CONTEXT),
                    Identifiers::default(),
                    Some(&argon),
                ),
            )
            .map_err(|_| ClientError::LoginFailed)
    })
    .await
}

/// Runs CPU-heavy work (Argon2id) on tokio's blocking pool, so an app's other tasks keep
/// running while a password is stretched.
async fn off_executor<T, F>(work: F) -> Result<T, ClientError>
where
    F: FnOnce() -> Result<T, ClientError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ClientError::Internal(format!("password stretching stopped: {e}")))?
}

impl Client {
    /// Registers `login` with a fresh identity, publishes its keys, and returns the session
    /// that registration opens. The password is stretched with `ksf` (at least the floor).
    pub async fn register(
        &self,
        login: &Login,
        password: &[u8],
        profile: UserProfile,
        ksf: KsfParams,
    ) -> Result<LoggedIn, ClientError> {
        let (state, request) = registration_start(password)?;
        let response: RegisterStartResponse = self
            .call_json(
                Method::POST,
                "/accounts/register/start",
                &RegisterStart {
                    login: login.clone(),
                    request,
                },
                None,
            )
            .await?;
        let (upload, key, server_key) =
            registration_finish(state, password, &response, &ksf).await?;
        let contents = EnclaveContents {
            version: 1,
            identity: Identity::generate(Timestamp::now())?,
            profile,
            memberships: BTreeMap::new(),
            pins: BTreeMap::new(),
        };
        let body = RegisterFinish {
            login: login.clone(),
            upload,
            ksf,
            enclave: key.seal(&contents)?,
        };
        let session: Session = self
            .call_json(Method::POST, "/accounts/register/finish", &body, None)
            .await?;
        self.publish(&contents.identity.bundle).await?;
        Ok(LoggedIn {
            login: login.clone(),
            session_id: session.id,
            token: session.token,
            expires_at: session.expires_at,
            key,
            contents,
            server_key,
            ksf,
        })
    }

    /// Logs in, opens the enclave (refusing versions below `min_version` and a server key
    /// other than `pinned_server_key`), and makes sure the identity's keys are published.
    pub async fn login(
        &self,
        login: &Login,
        password: &[u8],
        min_version: u64,
        pinned_server_key: Option<&Blob>,
    ) -> Result<LoggedIn, ClientError> {
        let start = ClientLogin::<ClientSuite>::start(&mut OsRng, password)
            .map_err(|_| ClientError::Verification("OPAQUE login could not start".into()))?;
        let request = Blob(start.message.serialize().to_vec());
        let answer: LoginStartResponse = self
            .call_json(
                Method::POST,
                "/accounts/login/start",
                &LoginStart {
                    login: login.clone(),
                    request,
                },
                None,
            )
            .await?;
        let finish = login_finish(start.state, password, &answer).await?;
        let server_key = Blob(finish.server_s_pk.serialize().to_vec());
        if pinned_server_key.is_some_and(|pinned| pinned != &server_key) {
            return Err(ClientError::Verification(
                "the server's OPAQUE key changed since this device last logged in".into(),
            ));
        }
        let body = LoginFinish {
            state: answer.state,
            finalization: Blob(finish.message.serialize().to_vec()),
        };
        let session: Session = self
            .call_json(Method::POST, "/accounts/login/finish", &body, None)
            .await
            .map_err(|e| {
                if e.code() == Some(ErrorCode::Unauthenticated) {
                    ClientError::LoginFailed
                } else {
                    e
                }
            })?;
        let key = EnclaveKey::from_export_key(&finish.export_key);
        let contents = key.open(&session.enclave, min_version)?;
        // The enclave is written before the directory, so a registration or rotation
        // interrupted between the two is completed here.
        let me = &contents.identity;
        match self.key(me.user_id()).await {
            Err(e) if e.code() == Some(ErrorCode::UnknownUser) && me.bundle.version == 1 => {
                self.publish(&me.bundle).await?;
            }
            Ok(current) if current.version + 1 == me.bundle.version => {
                self.rotate(&me.bundle).await?;
            }
            // The enclave is written first, so it is never behind the directory unless
            // the server serves an old copy: one from before a rotation (or a removal)
            // that a device of this user made since.
            Ok(current) if current.version > me.bundle.version => {
                return Err(ClientError::Verification(format!(
                    "the server returned an enclave holding version {} of your keys, but the directory has version {}: an old copy (rollback)",
                    me.bundle.version, current.version
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        Ok(LoggedIn {
            login: login.clone(),
            session_id: session.id,
            token: session.token,
            expires_at: session.expires_at,
            key,
            contents,
            server_key,
            ksf: answer.ksf,
        })
    }

    /// Reads the enclave again in an open session.
    pub async fn refresh_enclave(&self, session: &mut LoggedIn) -> Result<(), ClientError> {
        let stored: StoredEnclave = self
            .call_session(
                Method::GET,
                "/accounts/enclave",
                None::<&()>,
                &session.token,
            )
            .await?;
        let mut fresh = session.key.open(&stored, session.contents.version)?;
        // What this device verified or was given is never lost to an older copy: each
        // membership keeps every key either copy holds and the newer verified room state.
        for (id, mine) in std::mem::take(&mut session.contents.memberships) {
            match fresh.memberships.entry(id) {
                std::collections::btree_map::Entry::Occupied(mut theirs) => {
                    theirs.get_mut().merge(mine)
                }
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(mine);
                }
            }
        }
        crate::profile::merge_pins(&mut fresh.pins, &session.contents.pins);
        session.contents = fresh;
        Ok(())
    }

    /// Stores `session.contents` as the next version. On `version_conflict` another device
    /// wrote first: refresh, re-apply the change, and save again.
    pub async fn save_enclave(&self, session: &mut LoggedIn) -> Result<(), ClientError> {
        let expected_version = session.contents.version;
        let mut next = session.contents.clone();
        next.version = expected_version + 1;
        let body = PutEnclave {
            ciphertext: session.key.seal(&next)?,
            expected_version,
        };
        let stored: StoredEnclave = self
            .call_session(
                Method::PUT,
                "/accounts/enclave",
                Some(&body),
                &session.token,
            )
            .await?;
        next.version = stored.version;
        session.contents = next;
        Ok(())
    }

    /// Proves the password again inside the session (an OPAQUE login against the
    /// session's own account, checked against the pinned server key and the account's
    /// Argon2id parameters), for a token that lets the session change the password or
    /// delete the account once, within minutes. A stolen session token alone cannot.
    pub async fn reauthenticate(
        &self,
        session: &LoggedIn,
        password: &[u8],
    ) -> Result<Reauth, ClientError> {
        let start = ClientLogin::<ClientSuite>::start(&mut OsRng, password)
            .map_err(|_| ClientError::Verification("OPAQUE login could not start".into()))?;
        let answer: LoginStartResponse = self
            .call_session(
                Method::POST,
                "/accounts/reauth/start",
                Some(&ReauthStart {
                    request: Blob(start.message.serialize().to_vec()),
                }),
                &session.token,
            )
            .await?;
        // The account's parameters are known: a server that answers others (weaker, to
        // make a guess cheaper, or absurd, to stall the client) is refused.
        if answer.ksf != session.ksf {
            return Err(ClientError::Verification(
                "the server asked for other Argon2id parameters than the account's".into(),
            ));
        }
        let finish = login_finish(start.state, password, &answer).await?;
        if Blob(finish.server_s_pk.serialize().to_vec()) != session.server_key {
            return Err(ClientError::Verification(
                "the server's OPAQUE key changed since this session logged in".into(),
            ));
        }
        let body = LoginFinish {
            state: answer.state,
            finalization: Blob(finish.message.serialize().to_vec()),
        };
        self.call_session(
            Method::POST,
            "/accounts/reauth/finish",
            Some(&body),
            &session.token,
        )
        .await
        .map_err(|e| {
            if e.code() == Some(ErrorCode::Unauthenticated) {
                ClientError::LoginFailed
            } else {
                e
            }
        })
    }

    /// The account's open sessions, oldest first.
    pub async fn sessions(&self, session: &LoggedIn) -> Result<Vec<SessionInfo>, ClientError> {
        let list: SessionList = self
            .call_session(
                Method::GET,
                "/accounts/sessions",
                None::<&()>,
                &session.token,
            )
            .await?;
        Ok(list.sessions)
    }

    /// Ends one session of the account (this one too, if it is `id`).
    pub async fn end_session(&self, session: &LoggedIn, id: &str) -> Result<(), ClientError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClientError::Input(format!("`{id}` is not a session id")));
        }
        self.call_session::<(), ()>(
            Method::DELETE,
            &format!("/accounts/sessions/{id}"),
            None,
            &session.token,
        )
        .await
    }

    /// Ends every session of the account, this one included.
    pub async fn end_all_sessions(&self, session: &LoggedIn) -> Result<(), ClientError> {
        self.call_session::<(), ()>(Method::DELETE, "/accounts/sessions", None, &session.token)
            .await
    }

    /// Changes the password: proves the current one again, then a new OPAQUE registration
    /// and the enclave re-sealed under the new key, swapped in together. Every session
    /// ends; this one must log in again.
    pub async fn change_password(
        &self,
        session: &mut LoggedIn,
        current_password: &[u8],
        new_password: &[u8],
        ksf: KsfParams,
    ) -> Result<(), ClientError> {
        let reauth = self.reauthenticate(session, current_password).await?;
        let (state, request) = registration_start(new_password)?;
        let response: RegisterStartResponse = self
            .call_session(
                Method::POST,
                "/accounts/password/start",
                Some(&PasswordStart { request }),
                &session.token,
            )
            .await?;
        let (upload, key, _) = registration_finish(state, new_password, &response, &ksf).await?;
        let expected_version = session.contents.version;
        let mut next = session.contents.clone();
        next.version = expected_version + 1;
        let body = PasswordFinish {
            upload,
            ksf,
            ciphertext: key.seal(&next)?,
            expected_version,
        };
        let stored: StoredEnclave = self
            .call_reauthed(
                Method::POST,
                "/accounts/password/finish",
                Some(&body),
                &session.token,
                &reauth.token,
            )
            .await?;
        next.version = stored.version;
        session.contents = next;
        session.key = key;
        session.ksf = ksf;
        Ok(())
    }

    /// Deletes the account (the enclave and the password record), after proving the
    /// password again. Published public keys stay in the directory, where others' pins
    /// refer to them.
    pub async fn delete_account(
        &self,
        session: &LoggedIn,
        password: &[u8],
    ) -> Result<(), ClientError> {
        let reauth = self.reauthenticate(session, password).await?;
        self.call_reauthed::<(), ()>(
            Method::DELETE,
            "/accounts/me",
            None,
            &session.token,
            &reauth.token,
        )
        .await
    }

    async fn call_json<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
        session: Option<&Blob>,
    ) -> Result<T, ClientError> {
        self.call_with(method, path, Some(body), None, session)
            .await
    }

    async fn call_session<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        token: &Blob,
    ) -> Result<T, ClientError> {
        self.call_with(method, path, body, None, Some(token)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contents(version: u64) -> EnclaveContents {
        EnclaveContents {
            version,
            identity: Identity::generate(Timestamp(1)).unwrap(),
            profile: UserProfile {
                name: "Alice".into(),
                ..Default::default()
            },
            memberships: BTreeMap::new(),
            pins: BTreeMap::new(),
        }
    }

    #[test]
    fn enclave_opens_with_its_key_and_version_only() {
        let key = EnclaveKey::from_export_key(&[7; 64]);
        let sealed = key.seal(&contents(3)).unwrap();
        let stored = StoredEnclave {
            ciphertext: sealed.clone(),
            version: 3,
        };
        assert_eq!(key.open(&stored, 3).unwrap().profile.name, "Alice");
        // Relabelled as another version: the associated data no longer matches.
        assert!(
            key.open(
                &StoredEnclave {
                    ciphertext: sealed.clone(),
                    version: 4
                },
                0
            )
            .is_err()
        );
        // Older than seen: refused before decrypting.
        assert!(
            matches!(key.open(&stored, 4), Err(ClientError::Verification(m)) if m.contains("rollback"))
        );
        // Another password's key.
        assert!(
            EnclaveKey::from_export_key(&[8; 64])
                .open(&stored, 0)
                .is_err()
        );
    }

    #[test]
    fn a_membership_of_an_older_format_is_left_out_not_fatal() {
        let mut json = crate::secret::exposing(|| serde_json::to_value(contents(4))).unwrap();
        json["memberships"] = serde_json::json!({
            "9f1c0e4b2a7d4c3e8b6a5f4e3d2c1b0a": { "room": "9f1c0e4b2a7d4c3e8b6a5f4e3d2c1b0a",
              "master_key": "AAAA", "channel_keys": {}, "spine_version": 3 }
        });
        let back: EnclaveContents = serde_json::from_value(json).unwrap();
        assert!(back.memberships.is_empty());
        assert_eq!(back.version, 4);
    }

    #[test]
    fn argon2_parameters_below_the_floor_are_refused() {
        assert!(argon2(&KsfParams::FLOOR).is_ok());
        assert!(
            argon2(&KsfParams {
                m_kib: 1024,
                t: 1,
                p: 1
            })
            .is_err()
        );
    }

    #[test]
    fn the_version_is_bound_twice_by_the_associated_data_and_inside() {
        let key = EnclaveKey::from_export_key(&[7; 64]);
        let json =
            |version| crate::secret::exposing(|| serde_json::to_vec(&contents(version))).unwrap();
        let stored = |ciphertext, version| StoredEnclave {
            ciphertext,
            version,
        };
        // Contents that say version 4, sealed under version 3's associated data and
        // offered as version 4: the inner check alone would pass it, the AEAD refuses it.
        let relabelled = key.seal_bytes(3, &json(4)).unwrap();
        let err = key.open(&stored(relabelled, 4), 0).err();
        assert!(
            matches!(&err, Some(ClientError::Verification(m)) if m.contains("does not decrypt")),
            "{err:?}"
        );
        // Sealed as version 5 with contents that say 4: decrypts, and the inner version
        // disagrees.
        let inner = key.seal_bytes(5, &json(4)).unwrap();
        let err = key.open(&stored(inner, 5), 0).err();
        assert!(
            matches!(&err, Some(ClientError::Verification(m)) if m.contains("inner version")),
            "{err:?}"
        );
        // The newest version seen is still accepted; a shorter blob than a nonce is not.
        let sealed = key.seal(&contents(6)).unwrap();
        assert_eq!(key.open(&stored(sealed, 6), 6).unwrap().version, 6);
        assert!(key.open(&stored(Blob(vec![1; 11]), 6), 0).is_err());
    }

    #[test]
    fn an_enclave_key_round_trips_through_its_blob_and_only_at_32_bytes() {
        let key = EnclaveKey::from_export_key(&[7; 64]);
        let back = EnclaveKey::from_blob(&key.to_blob()).unwrap();
        let sealed = key.seal(&contents(2)).unwrap();
        let stored = StoredEnclave {
            ciphertext: sealed,
            version: 2,
        };
        assert_eq!(back.open(&stored, 0).unwrap().version, 2);
        assert!(EnclaveKey::from_blob(&Blob(vec![1; 31])).is_none());
        assert!(EnclaveKey::try_from(Blob(vec![1; 33])).is_err());
        // Different export keys give different enclave keys.
        assert_ne!(
            key.to_blob(),
            EnclaveKey::from_export_key(&[8; 64]).to_blob()
        );
    }
}

//! Account rules. Every function takes parsed input, the state and `now`.
//!
//! The enumeration rule shapes everything here: an unknown login and a wrong password must
//! look the same from outside. OPAQUE answers a login start for an unknown login with a
//! dummy record indistinguishable from a real one; every way a finish can fail answers the
//! same `LoginFailed`.

use cinder_proto::accounts::{
    KsfParams, LoginFinish, LoginStart, LoginStartResponse, PasswordFinish, PasswordStart,
    PutEnclave, RegisterFinish, RegisterStart, RegisterStartResponse, Session, StoredEnclave,
};
use cinder_proto::api::limits;
use cinder_proto::{Blob, Timestamp};
use opaque_ke::{
    CredentialFinalization, CredentialRequest, RegistrationRequest, RegistrationUpload,
    ServerLogin, ServerLoginStartParameters, ServerRegistration,
};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::AccountsState;
use super::suite::{CONTEXT, ServerSuite};
use crate::store::{AccountRecord, LoginKey, StoreError};
use crate::{Error, Result};

/// How long a login start may wait for its finish, in seconds.
pub const LOGIN_STATE_TTL: u64 = 120;
/// How long a session lasts, in seconds.
pub const SESSION_TTL: u64 = 3600;
/// Login (and registration) starts allowed per login per window.
pub const ATTEMPTS_PER_WINDOW: u64 = 10;
/// The rate-limit window, in seconds.
pub const ATTEMPT_WINDOW: u64 = 900;

const LOGIN_STATE: &[u8] = b"cinder/login-state/v1";
const SESSION: &[u8] = b"cinder/session/v1";

/// What a sealed login state holds. `cred` is the tag of the OPAQUE record the login
/// started against: the proof at finish is checked against that record, so the session
/// must be for that record too, not for whatever replaced it in between (a password change,
/// or a deletion and a new registration of the same login).
#[derive(Serialize, Deserialize)]
struct LoginState {
    id: String,
    login: LoginKey,
    cred: String,
    expires_at: Timestamp,
    state: Blob,
}

/// What a sealed session token holds. `cred` ties it to one registration, so a password
/// change or an account deletion ends every older session.
#[derive(Serialize, Deserialize)]
struct SessionClaims {
    login: LoginKey,
    cred: String,
    expires_at: Timestamp,
}

fn bad_field(field: &str, what: &str) -> Error {
    Error::InvalidBody {
        field: field.to_owned(),
        message: format!("not a valid {what}"),
    }
}

fn random_id() -> Result<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(id))
}

fn credential_tag(registration: &Blob) -> String {
    hex::encode(&Sha256::digest(&registration.0)[..16])
}

/// A tag no record has, as long as a real one, so an unknown login's sealed state is the
/// same size as a real login's and matches no account that appears before the finish.
fn no_credential_tag() -> Result<String> {
    random_id()
}

/// Counts one attempt against `login` and refuses past the limit.
async fn limit_attempts(
    state: &AccountsState,
    kind: &str,
    login: &LoginKey,
    now: Timestamp,
) -> Result<()> {
    let window = now.0 / ATTEMPT_WINDOW;
    let window_end = Timestamp((window + 1) * ATTEMPT_WINDOW);
    let key = format!("{kind}:{login}:{window}");
    let hits = state.limits.hit(&key, window_end, now).await?;
    if hits > ATTEMPTS_PER_WINDOW {
        return Err(Error::RateLimited {
            retry_after: window_end.0 - now.0,
        });
    }
    Ok(())
}

fn check_ksf(ksf: &KsfParams) -> Result<()> {
    if ksf.acceptable() {
        Ok(())
    } else {
        Err(Error::limit(
            "ksf",
            format!(
                "Argon2id parameters must be at least m={} KiB, t={}, p={} and at most m={} KiB, t=64, p=64",
                KsfParams::FLOOR.m_kib,
                KsfParams::FLOOR.t,
                KsfParams::FLOOR.p,
                KsfParams::MAX_M_KIB
            ),
        ))
    }
}

/// A version a store can hold and add one to; anything larger cannot be current.
fn check_version(expected: u64) -> Result<()> {
    if expected >= i64::MAX as u64 {
        return Err(Error::VersionConflict);
    }
    Ok(())
}

fn check_enclave(field: &'static str, ciphertext: &Blob) -> Result<()> {
    if ciphertext.is_empty() || ciphertext.len() > limits::MAX_ENCLAVE_BYTES {
        return Err(Error::limit(
            field,
            format!("an enclave holds 1 to {} bytes", limits::MAX_ENCLAVE_BYTES),
        ));
    }
    Ok(())
}

fn registration_response(state: &AccountsState, login: &LoginKey, request: &Blob) -> Result<Blob> {
    let request = RegistrationRequest::<ServerSuite>::deserialize(&request.0)
        .map_err(|_| bad_field("request", "OPAQUE registration request"))?;
    let start = ServerRegistration::<ServerSuite>::start(state.secrets.setup(), request, &login.0)
        .map_err(|e| Error::Internal(format!("OPAQUE registration start: {e:?}")))?;
    Ok(Blob(start.message.serialize().to_vec()))
}

fn registration_record(upload: &Blob) -> Result<Blob> {
    let upload = RegistrationUpload::<ServerSuite>::deserialize(&upload.0)
        .map_err(|_| bad_field("upload", "OPAQUE registration upload"))?;
    Ok(Blob(
        ServerRegistration::finish(upload).serialize().to_vec(),
    ))
}

/// First half of registration: the OPAQUE response for this login.
#[tracing::instrument(skip_all)]
pub async fn register_start(
    state: &AccountsState,
    req: RegisterStart,
    now: Timestamp,
) -> Result<RegisterStartResponse> {
    let login = state.secrets.login_key(&req.login);
    limit_attempts(state, "register", &login, now).await?;
    Ok(RegisterStartResponse {
        response: registration_response(state, &login, &req.request)?,
    })
}

/// Second half of registration: store the OPAQUE record and the first enclave, and open a
/// session for the new account (its creator owns it by definition).
#[tracing::instrument(skip_all)]
pub async fn register_finish(
    state: &AccountsState,
    req: RegisterFinish,
    now: Timestamp,
) -> Result<Session> {
    // Not counted: a registration is one attempt (its start). A finish for a login that
    // exists is a 409, and one that succeeds can succeed only once; the per-login counter
    // would add nothing here but spend a second attempt of an honest registration.
    let login = state.secrets.login_key(&req.login);
    check_ksf(&req.ksf)?;
    check_enclave("enclave", &req.enclave)?;
    let record = AccountRecord {
        login,
        registration: registration_record(&req.upload)?,
        ksf: req.ksf,
        enclave: StoredEnclave {
            ciphertext: req.enclave,
            version: 1,
        },
    };
    match state.accounts.create(&record).await {
        Ok(()) => new_session(state, record, now),
        Err(StoreError::Conflict) => Err(Error::AlreadyExists("account")),
        Err(e) => Err(e.into()),
    }
}

/// First half of login. Answers alike for known and unknown logins.
#[tracing::instrument(skip_all)]
pub async fn login_start(
    state: &AccountsState,
    req: LoginStart,
    now: Timestamp,
) -> Result<LoginStartResponse> {
    let login = state.secrets.login_key(&req.login);
    limit_attempts(state, "login", &login, now).await?;
    let request = CredentialRequest::<ServerSuite>::deserialize(&req.request.0)
        .map_err(|_| bad_field("request", "OPAQUE credential request"))?;
    let record = state.accounts.account(&login).await?;
    let (password_file, ksf, cred) = match &record {
        Some(r) => (
            Some(
                ServerRegistration::<ServerSuite>::deserialize(&r.registration.0)
                    .map_err(|_| StoreError::Corrupt("OPAQUE registration".into()))?,
            ),
            r.ksf,
            credential_tag(&r.registration),
        ),
        // The floor is also every client's default, so an unknown login looks like most.
        None => (None, KsfParams::FLOOR, no_credential_tag()?),
    };
    let params = ServerLoginStartParameters {
        context: Some(CONTEXT),
        identifiers: Default::default(),
    };
    let start = ServerLogin::start(
        &mut OsRng,
        state.secrets.setup(),
        password_file,
        request,
        &login.0,
        params,
    )
    .map_err(|e| Error::Internal(format!("OPAQUE login start: {e:?}")))?;
    let sealed = LoginState {
        id: random_id()?,
        login,
        cred,
        expires_at: now.plus(LOGIN_STATE_TTL),
        state: Blob(start.state.serialize().to_vec()),
    };
    let json = serde_json::to_vec(&sealed).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(LoginStartResponse {
        response: Blob(start.message.serialize().to_vec()),
        state: Blob(state.secrets.seal(LOGIN_STATE, &json)?),
        ksf,
    })
}

/// Second half of login: verify the client's proof against the record the login started
/// with, and if that is still the account's record, hand over a session and the enclave.
#[tracing::instrument(skip_all)]
pub async fn login_finish(
    state: &AccountsState,
    req: LoginFinish,
    now: Timestamp,
) -> Result<Session> {
    let opened = state
        .secrets
        .open(LOGIN_STATE, &req.state.0)
        .and_then(|json| serde_json::from_slice::<LoginState>(&json).ok())
        .ok_or(Error::LoginFailed)?;
    if opened.expires_at <= now {
        return Err(Error::LoginFailed);
    }
    // Each login start finishes at most once.
    let spent = format!("login-state/{}", opened.id);
    if !state
        .nonces
        .remember(&spent, opened.expires_at, now)
        .await?
    {
        return Err(Error::LoginFailed);
    }
    let finalization = CredentialFinalization::<ServerSuite>::deserialize(&req.finalization.0)
        .map_err(|_| bad_field("finalization", "OPAQUE credential finalization"))?;
    let server_login =
        ServerLogin::<ServerSuite>::deserialize(&opened.state.0).map_err(|_| Error::LoginFailed)?;
    server_login
        .finish(finalization)
        .map_err(|_| Error::LoginFailed)?;
    // The proof holds for the record the login started against; if the account's record
    // changed since, the password that proved it may no longer be the account's.
    let record = state
        .accounts
        .account(&opened.login)
        .await?
        .filter(|r| credential_tag(&r.registration) == opened.cred)
        .ok_or(Error::LoginFailed)?;
    new_session(state, record, now)
}

fn new_session(state: &AccountsState, record: AccountRecord, now: Timestamp) -> Result<Session> {
    let claims = SessionClaims {
        login: record.login,
        cred: credential_tag(&record.registration),
        expires_at: now.plus(SESSION_TTL),
    };
    let json = serde_json::to_vec(&claims).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Session {
        token: Blob(state.secrets.seal(SESSION, &json)?),
        expires_at: claims.expires_at,
        enclave: record.enclave,
    })
}

/// The account behind a session token, if the token is genuine, unexpired and still for
/// the account's current password.
pub async fn session(state: &AccountsState, token: &Blob, now: Timestamp) -> Result<AccountRecord> {
    let claims = state
        .secrets
        .open(SESSION, &token.0)
        .and_then(|json| serde_json::from_slice::<SessionClaims>(&json).ok())
        .filter(|c| c.expires_at > now)
        .ok_or(Error::Unauthenticated)?;
    let record = state
        .accounts
        .account(&claims.login)
        .await?
        .ok_or(Error::Unauthenticated)?;
    if credential_tag(&record.registration) != claims.cred {
        return Err(Error::Unauthenticated);
    }
    Ok(record)
}

/// Replaces the enclave, if nobody else did since `expected_version`.
#[tracing::instrument(skip_all)]
pub async fn put_enclave(
    state: &AccountsState,
    record: &AccountRecord,
    req: PutEnclave,
) -> Result<StoredEnclave> {
    check_version(req.expected_version)?;
    check_enclave("ciphertext", &req.ciphertext)?;
    match state
        .accounts
        .put_enclave(&record.login, &req.ciphertext, req.expected_version)
        .await
    {
        Ok(version) => Ok(StoredEnclave {
            ciphertext: req.ciphertext,
            version,
        }),
        Err(StoreError::Conflict) => Err(Error::VersionConflict),
        Err(e) => Err(e.into()),
    }
}

/// First half of a password change: the OPAQUE response for the new password.
pub fn password_start(
    state: &AccountsState,
    record: &AccountRecord,
    req: PasswordStart,
) -> Result<RegisterStartResponse> {
    Ok(RegisterStartResponse {
        response: registration_response(state, &record.login, &req.request)?,
    })
}

/// Second half of a password change: new record and re-sealed enclave, swapped in together.
#[tracing::instrument(skip_all)]
pub async fn password_finish(
    state: &AccountsState,
    record: &AccountRecord,
    req: PasswordFinish,
) -> Result<StoredEnclave> {
    check_version(req.expected_version)?;
    check_ksf(&req.ksf)?;
    check_enclave("ciphertext", &req.ciphertext)?;
    let registration = registration_record(&req.upload)?;
    match state
        .accounts
        .replace_credentials(
            &record.login,
            &registration,
            req.ksf,
            &req.ciphertext,
            req.expected_version,
        )
        .await
    {
        Ok(version) => Ok(StoredEnclave {
            ciphertext: req.ciphertext,
            version,
        }),
        Err(StoreError::Conflict) => Err(Error::VersionConflict),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the session's account.
#[tracing::instrument(skip_all)]
pub async fn delete_account(state: &AccountsState, record: &AccountRecord) -> Result<()> {
    state.accounts.delete_account(&record.login).await?;
    Ok(())
}

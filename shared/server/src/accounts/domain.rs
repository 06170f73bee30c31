//! Account rules. Every function takes parsed input, the state and `now`.
//!
//! The enumeration rule shapes everything here: an unknown login and a wrong password must
//! look the same from outside. OPAQUE answers a login start for an unknown login with a
//! dummy record indistinguishable from a real one; every way a finish can fail answers the
//! same `LoginFailed`.

use cinder_proto::accounts::{
    KsfParams, LoginFinish, LoginStart, LoginStartResponse, PasswordFinish, PasswordStart,
    PutEnclave, Reauth, ReauthStart, RegisterFinish, RegisterStart, RegisterStartResponse, Session,
    SessionInfo, SessionList, StoredEnclave,
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
use crate::limits::{ClientAddr, addr_bucket};
use crate::store::{AccountRecord, LoginKey, SessionEntry, Sessions, StoreError};
use crate::{Error, Result};

/// How long a login start may wait for its finish, in seconds.
pub const LOGIN_STATE_TTL: u64 = 120;
/// How long a session lasts, in seconds.
pub const SESSION_TTL: u64 = 3600;
/// How long a re-authentication token is accepted, in seconds.
pub const REAUTH_TTL: u64 = 300;
/// Most sessions an account keeps open; a login past it ends the oldest.
pub const MAX_SESSIONS: usize = 32;
/// Rounds of read-and-replace of an account's sessions before a change gives up (409).
const SESSION_WRITE_ROUNDS: usize = 5;

const LOGIN_STATE: &[u8] = b"cinder/login-state/v1";
const SESSION: &[u8] = b"cinder/session/v2";
const REAUTH: &[u8] = b"cinder/reauth/v1";

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
    /// For a re-authentication: the session it was started in. A login state with one
    /// finishes only a re-authentication in that session, and one without only a login.
    #[serde(default)]
    reauth: Option<String>,
}

/// What a sealed session token holds. `cred` ties it to one registration, so a password
/// change or an account deletion ends every older session; `sid` names it in the
/// account's list of open sessions, so it ends when it leaves the list.
#[derive(Serialize, Deserialize)]
struct SessionClaims {
    login: LoginKey,
    cred: String,
    sid: String,
    expires_at: Timestamp,
}

/// What a sealed re-authentication token holds: the password proved again for this
/// registration, in session `sid`, good once (`id` is spent) until `expires_at`.
#[derive(Serialize, Deserialize)]
struct ReauthClaims {
    id: String,
    login: LoginKey,
    cred: String,
    sid: String,
    expires_at: Timestamp,
}

/// The caller of a session request: the account, read for this request, and the session.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account.
    pub record: AccountRecord,
    /// The session's id.
    pub sid: String,
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

/// Spends one login attempt (a login or re-authentication start) against `login` from
/// `addr`. The address's own buckets come first, so a stranger refused there spends
/// nothing of the login's; the login's own bucket is high enough that one address cannot
/// empty it (docs/API.md, "Limits"), so a stranger cannot lock its owner out.
async fn limit_logins(
    state: &AccountsState,
    login: &LoginKey,
    addr: Option<ClientAddr>,
) -> Result<()> {
    let now = state.clock.now_ms();
    let addr = addr_bucket(addr);
    let limits = &state.limits;
    limits.check("login_per_address", &addr, now).await?;
    limits
        .check(
            "login_per_address_and_login",
            &format!("{addr}/{login}"),
            now,
        )
        .await?;
    limits
        .check("login_per_login", &login.to_string(), now)
        .await
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
    addr: Option<ClientAddr>,
) -> Result<RegisterStartResponse> {
    let login = state.secrets.login_key(&req.login);
    state
        .limits
        .check(
            "register_per_address",
            &addr_bucket(addr),
            state.clock.now_ms(),
        )
        .await?;
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
    // exists is a 409, and one that succeeds can succeed only once; the per-address
    // bucket would add nothing here but spend a second attempt of an honest registration.
    let login = state.secrets.login_key(&req.login);
    check_ksf(&req.ksf)?;
    check_enclave("enclave", &req.enclave)?;
    let first = new_session_entry(now)?;
    let record = AccountRecord {
        login,
        registration: registration_record(&req.upload)?,
        ksf: req.ksf,
        enclave: StoredEnclave {
            ciphertext: req.enclave,
            version: 1,
        },
        sessions: Sessions {
            version: 1,
            open: vec![first.clone()],
        },
    };
    match state.accounts.create(&record).await {
        Ok(()) => session_token(state, &record, &first),
        Err(StoreError::Conflict) => Err(Error::AlreadyExists("account")),
        Err(e) => Err(e.into()),
    }
}

/// First half of login. Answers alike for known and unknown logins.
#[tracing::instrument(skip_all)]
pub async fn login_start(
    state: &AccountsState,
    req: LoginStart,
    addr: Option<ClientAddr>,
    now: Timestamp,
) -> Result<LoginStartResponse> {
    let login = state.secrets.login_key(&req.login);
    limit_logins(state, &login, addr).await?;
    let record = state.accounts.account(&login).await?;
    begin_login(state, login, &req.request, record.as_ref(), None, now)
}

/// The OPAQUE side of a login or re-authentication start, against `record` (a dummy for
/// none), with the sealed state to finish it by.
fn begin_login(
    state: &AccountsState,
    login: LoginKey,
    request: &Blob,
    record: Option<&AccountRecord>,
    reauth: Option<String>,
    now: Timestamp,
) -> Result<LoginStartResponse> {
    let request = CredentialRequest::<ServerSuite>::deserialize(&request.0)
        .map_err(|_| bad_field("request", "OPAQUE credential request"))?;
    let (password_file, ksf, cred) = match record {
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
        reauth,
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
    let opened = finish_login(state, &req, now).await?;
    if opened.reauth.is_some() {
        return Err(Error::LoginFailed);
    }
    open_session(state, &opened.login, &opened.cred, now).await
}

/// Opens a login state, spends it, and checks the client's proof against it.
async fn finish_login(
    state: &AccountsState,
    req: &LoginFinish,
    now: Timestamp,
) -> Result<LoginState> {
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
    Ok(opened)
}

fn new_session_entry(now: Timestamp) -> Result<SessionEntry> {
    Ok(SessionEntry {
        id: random_id()?,
        created_at: now,
        expires_at: now.plus(SESSION_TTL),
    })
}

/// Adds a session to the account, if its record is still the one with tag `cred` (the
/// proof holds for the record the login started against; if the account's record changed
/// since, the password that proved it may no longer be the account's). Expired sessions
/// leave the list, and past [`MAX_SESSIONS`] the oldest.
async fn open_session(
    state: &AccountsState,
    login: &LoginKey,
    cred: &str,
    now: Timestamp,
) -> Result<Session> {
    let entry = new_session_entry(now)?;
    for _ in 0..SESSION_WRITE_ROUNDS {
        let record = state
            .accounts
            .account(login)
            .await?
            .filter(|r| credential_tag(&r.registration) == cred)
            .ok_or(Error::LoginFailed)?;
        let mut open: Vec<SessionEntry> = record
            .sessions
            .open
            .iter()
            .filter(|s| s.expires_at > now)
            .cloned()
            .collect();
        open.push(entry.clone());
        let over = open.len().saturating_sub(MAX_SESSIONS);
        open.drain(..over);
        match state
            .accounts
            .put_sessions(login, &open, record.sessions.version)
            .await
        {
            Ok(_) => return session_token(state, &record, &entry),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::VersionConflict)
}

fn session_token(
    state: &AccountsState,
    record: &AccountRecord,
    entry: &SessionEntry,
) -> Result<Session> {
    let claims = SessionClaims {
        login: record.login,
        cred: credential_tag(&record.registration),
        sid: entry.id.clone(),
        expires_at: entry.expires_at,
    };
    let json = serde_json::to_vec(&claims).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Session {
        id: entry.id.clone(),
        token: Blob(state.secrets.seal(SESSION, &json)?),
        expires_at: claims.expires_at,
        enclave: record.enclave.clone(),
    })
}

/// The caller behind a session token, if the token is genuine, unexpired, still for the
/// account's current password, and its session still open.
pub async fn session(state: &AccountsState, token: &Blob, now: Timestamp) -> Result<Caller> {
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
    if credential_tag(&record.registration) != claims.cred
        || !record
            .sessions
            .open
            .iter()
            .any(|s| s.id == claims.sid && s.expires_at > now)
    {
        return Err(Error::Unauthenticated);
    }
    Ok(Caller {
        record,
        sid: claims.sid,
    })
}

/// First half of a re-authentication: a login start for the session's own account.
#[tracing::instrument(skip_all)]
pub async fn reauth_start(
    state: &AccountsState,
    caller: &Caller,
    req: ReauthStart,
    addr: Option<ClientAddr>,
    now: Timestamp,
) -> Result<LoginStartResponse> {
    let login = caller.record.login;
    limit_logins(state, &login, addr).await?;
    begin_login(
        state,
        login,
        &req.request,
        Some(&caller.record),
        Some(caller.sid.clone()),
        now,
    )
}

/// Second half of a re-authentication: the proof, checked as a login's, answered with a
/// token that lets this session change the password or delete the account once.
#[tracing::instrument(skip_all)]
pub async fn reauth_finish(
    state: &AccountsState,
    caller: &Caller,
    req: LoginFinish,
    now: Timestamp,
) -> Result<Reauth> {
    let cred = credential_tag(&caller.record.registration);
    let opened = finish_login(state, &req, now).await?;
    if opened.reauth.as_deref() != Some(caller.sid.as_str())
        || opened.login != caller.record.login
        || opened.cred != cred
    {
        return Err(Error::LoginFailed);
    }
    let claims = ReauthClaims {
        id: random_id()?,
        login: caller.record.login,
        cred,
        sid: caller.sid.clone(),
        expires_at: now.plus(REAUTH_TTL),
    };
    let json = serde_json::to_vec(&claims).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Reauth {
        token: Blob(state.secrets.seal(REAUTH, &json)?),
        expires_at: claims.expires_at,
    })
}

/// Checks and spends a re-authentication token: made in this session, for this account's
/// current password, unexpired and unspent.
async fn spend_reauth(
    state: &AccountsState,
    caller: &Caller,
    token: Option<&Blob>,
    now: Timestamp,
) -> Result<()> {
    let claims = token
        .and_then(|t| state.secrets.open(REAUTH, &t.0))
        .and_then(|json| serde_json::from_slice::<ReauthClaims>(&json).ok())
        .filter(|c| {
            c.expires_at > now
                && c.login == caller.record.login
                && c.sid == caller.sid
                && c.cred == credential_tag(&caller.record.registration)
        })
        .ok_or(Error::ReauthRequired)?;
    if !state
        .nonces
        .remember(&format!("reauth/{}", claims.id), claims.expires_at, now)
        .await?
    {
        return Err(Error::ReauthRequired);
    }
    Ok(())
}

/// The account's open sessions, oldest first.
pub fn sessions(caller: &Caller, now: Timestamp) -> SessionList {
    SessionList {
        sessions: caller
            .record
            .sessions
            .open
            .iter()
            .filter(|s| s.expires_at > now)
            .map(|s| SessionInfo {
                id: s.id.clone(),
                created_at: s.created_at,
                expires_at: s.expires_at,
                current: s.id == caller.sid,
            })
            .collect(),
    }
}

/// Ends the session `id` (`None`: every session, the caller's too).
#[tracing::instrument(skip_all)]
pub async fn end_sessions(state: &AccountsState, caller: &Caller, id: Option<&str>) -> Result<()> {
    let mut sessions = caller.record.sessions.clone();
    for _ in 0..SESSION_WRITE_ROUNDS {
        let open: Vec<SessionEntry> = match id {
            Some(id) => {
                if !sessions.open.iter().any(|s| s.id == id) {
                    return Err(Error::NotFound("session"));
                }
                sessions
                    .open
                    .iter()
                    .filter(|s| s.id != id)
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        };
        match state
            .accounts
            .put_sessions(&caller.record.login, &open, sessions.version)
            .await
        {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict) => {
                sessions = state
                    .accounts
                    .account(&caller.record.login)
                    .await?
                    .ok_or(Error::Unauthenticated)?
                    .sessions;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::VersionConflict)
}

/// Replaces the enclave, if nobody else did since `expected_version`.
#[tracing::instrument(skip_all)]
pub async fn put_enclave(
    state: &AccountsState,
    caller: &Caller,
    req: PutEnclave,
) -> Result<StoredEnclave> {
    let record = &caller.record;
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
    caller: &Caller,
    req: PasswordStart,
) -> Result<RegisterStartResponse> {
    Ok(RegisterStartResponse {
        response: registration_response(state, &caller.record.login, &req.request)?,
    })
}

/// Second half of a password change: new record and re-sealed enclave, swapped in together.
/// Needs a re-authentication token (`reauth`), so a stolen session token cannot take the
/// account over; every session ends with it.
#[tracing::instrument(skip_all)]
pub async fn password_finish(
    state: &AccountsState,
    caller: &Caller,
    reauth: Option<&Blob>,
    req: PasswordFinish,
    now: Timestamp,
) -> Result<StoredEnclave> {
    check_version(req.expected_version)?;
    check_ksf(&req.ksf)?;
    check_enclave("ciphertext", &req.ciphertext)?;
    let registration = registration_record(&req.upload)?;
    // Spent only by a request that could succeed: a malformed one keeps the token.
    spend_reauth(state, caller, reauth, now).await?;
    let record = &caller.record;
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

/// Deletes the session's account. Needs a re-authentication token (`reauth`).
#[tracing::instrument(skip_all)]
pub async fn delete_account(
    state: &AccountsState,
    caller: &Caller,
    reauth: Option<&Blob>,
    now: Timestamp,
) -> Result<()> {
    spend_reauth(state, caller, reauth, now).await?;
    state.accounts.delete_account(&caller.record.login).await?;
    Ok(())
}

//! The enclave function's HTTP surface.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /accounts/register/start` | OPAQUE registration, first message |
//! | `POST /accounts/register/finish` | OPAQUE record and the first enclave |
//! | `POST /accounts/login/start` | OPAQUE login, first message (rate limited per address and login) |
//! | `POST /accounts/login/finish` | OPAQUE login, proof; answers a session and the enclave |
//! | `POST /accounts/reauth/start` | prove the password again, first message (session) |
//! | `POST /accounts/reauth/finish` | the proof; answers a re-authentication token (session) |
//! | `GET /accounts/enclave` | the enclave (session) |
//! | `PUT /accounts/enclave` | replace the enclave at an expected version (session) |
//! | `POST /accounts/password/start` | password change, first message (session) |
//! | `POST /accounts/password/finish` | new record and re-sealed enclave together (session, re-authenticated) |
//! | `GET /accounts/sessions` | the open sessions (session) |
//! | `DELETE /accounts/sessions` | end every session (session) |
//! | `DELETE /accounts/sessions/{id}` | end one session (session) |
//! | `DELETE /accounts/me` | delete the account (session, re-authenticated) |

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cinder_proto::Blob;
use cinder_proto::accounts::{
    LoginFinish, LoginStart, LoginStartResponse, PasswordFinish, PasswordStart, PutEnclave,
    REAUTH_HEADER, Reauth, ReauthStart, RegisterFinish, RegisterStart, RegisterStartResponse,
    SESSION_HEADER, Session, SessionList, StoredEnclave,
};
use cinder_proto::api::limits;

use super::domain::Caller;
use super::{AccountsState, domain};
use crate::extract::JsonBody;
use crate::limits::SourceAddr;
use crate::{Error, Result};

type Body<T> = JsonBody<T, { limits::MAX_ACCOUNTS_BODY }>;

/// The enclave function's router.
pub fn router(state: AccountsState) -> Router {
    crate::routing::finish(routes(state))
}

/// The enclave function's routes alone, for merging in the dev server.
pub fn routes(state: AccountsState) -> Router {
    Router::new()
        .route("/accounts/register/start", post(register_start))
        .route("/accounts/register/finish", post(register_finish))
        .route("/accounts/login/start", post(login_start))
        .route("/accounts/login/finish", post(login_finish))
        .route("/accounts/reauth/start", post(reauth_start))
        .route("/accounts/reauth/finish", post(reauth_finish))
        .route(
            "/accounts/sessions",
            get(list_sessions).delete(end_all_sessions),
        )
        .route("/accounts/sessions/{session_id}", delete(end_session))
        .route("/accounts/enclave", get(get_enclave).put(put_enclave))
        .route("/accounts/password/start", post(password_start))
        .route("/accounts/password/finish", post(password_finish))
        .route("/accounts/me", delete(delete_account))
        .with_state(state)
}

/// The caller of a valid session, from the `x-cinder-session` header.
pub struct InSession(pub Caller);

impl FromRequestParts<AccountsState> for InSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AccountsState) -> Result<Self> {
        let token: Blob = parts
            .headers
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| cinder_proto::encoding::decode(v).ok())
            .map(Blob)
            .ok_or(Error::Unauthenticated)?;
        domain::session(state, &token, state.clock.now())
            .await
            .map(Self)
    }
}

/// The `x-cinder-reauth` header's token, if any.
struct ReauthToken(Option<Blob>);

impl<S: Send + Sync> FromRequestParts<S> for ReauthToken {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(Self(
            parts
                .headers
                .get(REAUTH_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| cinder_proto::encoding::decode(v).ok())
                .map(Blob),
        ))
    }
}

async fn register_start(
    State(s): State<AccountsState>,
    SourceAddr(addr): SourceAddr,
    JsonBody(req): Body<RegisterStart>,
) -> Result<Json<RegisterStartResponse>> {
    domain::register_start(&s, req, addr).await.map(Json)
}

async fn register_finish(
    State(s): State<AccountsState>,
    JsonBody(req): Body<RegisterFinish>,
) -> Result<(StatusCode, Json<Session>)> {
    let session = domain::register_finish(&s, req, s.clock.now()).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

async fn login_start(
    State(s): State<AccountsState>,
    SourceAddr(addr): SourceAddr,
    JsonBody(req): Body<LoginStart>,
) -> Result<Json<LoginStartResponse>> {
    domain::login_start(&s, req, addr, s.clock.now())
        .await
        .map(Json)
}

async fn login_finish(
    State(s): State<AccountsState>,
    JsonBody(req): Body<LoginFinish>,
) -> Result<Json<Session>> {
    domain::login_finish(&s, req, s.clock.now()).await.map(Json)
}

async fn reauth_start(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
    SourceAddr(addr): SourceAddr,
    JsonBody(req): Body<ReauthStart>,
) -> Result<Json<LoginStartResponse>> {
    domain::reauth_start(&s, &caller, req, addr, s.clock.now())
        .await
        .map(Json)
}

async fn reauth_finish(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
    JsonBody(req): Body<LoginFinish>,
) -> Result<Json<Reauth>> {
    domain::reauth_finish(&s, &caller, req, s.clock.now())
        .await
        .map(Json)
}

async fn get_enclave(InSession(caller): InSession) -> Json<StoredEnclave> {
    Json(caller.record.enclave)
}

async fn put_enclave(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
    JsonBody(req): Body<PutEnclave>,
) -> Result<Json<StoredEnclave>> {
    domain::put_enclave(&s, &caller, req).await.map(Json)
}

async fn password_start(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
    JsonBody(req): Body<PasswordStart>,
) -> Result<Json<RegisterStartResponse>> {
    domain::password_start(&s, &caller, req).map(Json)
}

async fn password_finish(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
    ReauthToken(reauth): ReauthToken,
    JsonBody(req): Body<PasswordFinish>,
) -> Result<Json<StoredEnclave>> {
    domain::password_finish(&s, &caller, reauth.as_ref(), req, s.clock.now())
        .await
        .map(Json)
}

async fn list_sessions(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
) -> Json<SessionList> {
    Json(domain::sessions(&caller, s.clock.now()))
}

async fn end_all_sessions(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
) -> Result<StatusCode> {
    domain::end_sessions(&s, &caller, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn end_session(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    domain::end_sessions(&s, &caller, Some(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_account(
    State(s): State<AccountsState>,
    InSession(caller): InSession,
    ReauthToken(reauth): ReauthToken,
) -> Result<StatusCode> {
    domain::delete_account(&s, &caller, reauth.as_ref(), s.clock.now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

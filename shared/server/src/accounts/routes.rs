//! The enclave function's HTTP surface.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /accounts/register/start` | OPAQUE registration, first message |
//! | `POST /accounts/register/finish` | OPAQUE record and the first enclave |
//! | `POST /accounts/login/start` | OPAQUE login, first message (rate limited per login) |
//! | `POST /accounts/login/finish` | OPAQUE login, proof; answers a session and the enclave |
//! | `GET /accounts/enclave` | the enclave (session) |
//! | `PUT /accounts/enclave` | replace the enclave at an expected version (session) |
//! | `POST /accounts/password/start` | password change, first message (session) |
//! | `POST /accounts/password/finish` | new record and re-sealed enclave together (session) |
//! | `DELETE /accounts/me` | delete the account (session) |

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cinder_proto::Blob;
use cinder_proto::accounts::{
    LoginFinish, LoginStart, LoginStartResponse, PasswordFinish, PasswordStart, PutEnclave,
    RegisterFinish, RegisterStart, RegisterStartResponse, SESSION_HEADER, Session, StoredEnclave,
};
use cinder_proto::api::limits;

use super::{AccountsState, domain};
use crate::extract::JsonBody;
use crate::store::AccountRecord;
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
        .route("/accounts/enclave", get(get_enclave).put(put_enclave))
        .route("/accounts/password/start", post(password_start))
        .route("/accounts/password/finish", post(password_finish))
        .route("/accounts/me", delete(delete_account))
        .with_state(state)
}

/// The account of a valid session, from the `x-cinder-session` header.
pub struct InSession(pub AccountRecord);

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

async fn register_start(
    State(s): State<AccountsState>,
    JsonBody(req): Body<RegisterStart>,
) -> Result<Json<RegisterStartResponse>> {
    domain::register_start(&s, req, s.clock.now())
        .await
        .map(Json)
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
    JsonBody(req): Body<LoginStart>,
) -> Result<Json<LoginStartResponse>> {
    domain::login_start(&s, req, s.clock.now()).await.map(Json)
}

async fn login_finish(
    State(s): State<AccountsState>,
    JsonBody(req): Body<LoginFinish>,
) -> Result<Json<Session>> {
    domain::login_finish(&s, req, s.clock.now()).await.map(Json)
}

async fn get_enclave(InSession(record): InSession) -> Json<StoredEnclave> {
    Json(record.enclave)
}

async fn put_enclave(
    State(s): State<AccountsState>,
    InSession(record): InSession,
    JsonBody(req): Body<PutEnclave>,
) -> Result<Json<StoredEnclave>> {
    domain::put_enclave(&s, &record, req).await.map(Json)
}

async fn password_start(
    State(s): State<AccountsState>,
    InSession(record): InSession,
    JsonBody(req): Body<PasswordStart>,
) -> Result<Json<RegisterStartResponse>> {
    domain::password_start(&s, &record, req).map(Json)
}

async fn password_finish(
    State(s): State<AccountsState>,
    InSession(record): InSession,
    JsonBody(req): Body<PasswordFinish>,
) -> Result<Json<StoredEnclave>> {
    domain::password_finish(&s, &record, req).await.map(Json)
}

async fn delete_account(
    State(s): State<AccountsState>,
    InSession(record): InSession,
) -> Result<StatusCode> {
    domain::delete_account(&s, &record).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! The key directory's HTTP surface.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /keys` | publish a user's first key bundle |
//! | `POST /keys/lookup` | current bundles of up to 100 users |
//! | `GET /keys/{user_id}` | a user's current bundle |
//! | `PUT /keys/{user_id}` | rotate to the next bundle, signed by the current key |
//! | `GET /keys/{user_id}/chain?after=N&limit=M` | versions after N, to follow rotations |
//! | `POST /inbox/{user_id}` | drop a sealed envelope (signed by any user) |
//! | `GET /inbox/{user_id}?after=ID&limit=M` | list one's own inbox (signed by the owner) |
//! | `DELETE /inbox/{user_id}/{envelope_id}` | delete from one's own inbox (signed by the owner) |

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cinder_proto::api::{ChainPage, DropEnvelope, EnvelopePage, LookupRequest, LookupResponse};
use cinder_proto::{Envelope, EnvelopeId, KeyBundle, UserId};
use serde::Deserialize;

use super::{KeysState, domain};
use crate::Result;
use crate::extract::{JsonBody, PathParams, QueryParams, Signed};
use crate::limits::{SourceAddr, addr_bucket};

/// The key directory's router, ready for `lambda_http::run` or a TCP listener.
pub fn router(state: KeysState) -> Router {
    crate::routing::finish(routes(state))
}

/// The key directory's routes alone, for merging with other functions' in the dev server.
pub fn routes(state: KeysState) -> Router {
    Router::new()
        .route("/keys", post(publish))
        .route("/keys/lookup", post(lookup))
        .route("/keys/{user_id}", get(current).put(rotate))
        .route("/keys/{user_id}/chain", get(chain))
        .route("/inbox/{user_id}", post(drop_envelope).get(list_inbox))
        .route(
            "/inbox/{user_id}/{envelope_id}",
            axum::routing::delete(delete_envelope),
        )
        .with_state(state)
}

async fn publish(
    State(s): State<KeysState>,
    SourceAddr(addr): SourceAddr,
    JsonBody(bundle): JsonBody<KeyBundle>,
) -> Result<(StatusCode, Json<KeyBundle>)> {
    let spend = (&s.limits, addr_bucket(addr), s.auth.clock.now_ms());
    let bundle = domain::publish(s.keys.as_ref(), bundle, spend).await?;
    Ok((StatusCode::CREATED, Json(bundle)))
}

async fn lookup(
    State(s): State<KeysState>,
    JsonBody(req): JsonBody<LookupRequest>,
) -> Result<Json<LookupResponse>> {
    domain::lookup(s.keys.as_ref(), req.user_ids)
        .await
        .map(Json)
}

async fn current(
    State(s): State<KeysState>,
    PathParams(user): PathParams<UserId>,
) -> Result<Json<KeyBundle>> {
    domain::current(s.keys.as_ref(), user).await.map(Json)
}

async fn rotate(
    State(s): State<KeysState>,
    PathParams(user): PathParams<UserId>,
    JsonBody(bundle): JsonBody<KeyBundle>,
) -> Result<Json<KeyBundle>> {
    domain::rotate(
        s.keys.as_ref(),
        user,
        bundle,
        (&s.limits, s.auth.clock.now_ms()),
    )
    .await
    .map(Json)
}

#[derive(Deserialize)]
struct ChainQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn chain(
    State(s): State<KeysState>,
    PathParams(user): PathParams<UserId>,
    QueryParams(q): QueryParams<ChainQuery>,
) -> Result<Json<ChainPage>> {
    domain::chain(s.keys.as_ref(), user, q.after, q.limit)
        .await
        .map(Json)
}

async fn drop_envelope(
    State(s): State<KeysState>,
    PathParams(recipient): PathParams<UserId>,
    req: Signed<DropEnvelope>,
) -> Result<(StatusCode, Json<Envelope>)> {
    // The signature is checked by now: only the sender spends its own bucket.
    s.limits
        .check(
            "inbox_drop_per_sender",
            &req.signer.to_string(),
            s.auth.clock.now_ms(),
        )
        .await?;
    let now = s.auth.clock.now();
    let envelope = domain::drop_envelope(
        s.keys.as_ref(),
        s.inbox.as_ref(),
        req.signer,
        recipient,
        req.body,
        now,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(envelope)))
}

#[derive(Deserialize)]
struct InboxQuery {
    after: Option<EnvelopeId>,
    limit: Option<usize>,
}

async fn list_inbox(
    State(s): State<KeysState>,
    PathParams(owner): PathParams<UserId>,
    QueryParams(q): QueryParams<InboxQuery>,
    req: Signed<()>,
) -> Result<Json<EnvelopePage>> {
    let now = s.auth.clock.now();
    domain::list_inbox(s.inbox.as_ref(), req.signer, owner, q.after, q.limit, now)
        .await
        .map(Json)
}

async fn delete_envelope(
    State(s): State<KeysState>,
    PathParams((owner, id)): PathParams<(UserId, EnvelopeId)>,
    req: Signed<()>,
) -> Result<StatusCode> {
    let now = s.auth.clock.now();
    domain::delete_envelope(s.inbox.as_ref(), req.signer, owner, id, now).await?;
    Ok(StatusCode::NO_CONTENT)
}

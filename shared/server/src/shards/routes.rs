//! The shards function's HTTP surface. Every route is signed `channel:<room>/<channel>`,
//! except that an admin (`admin:<room>`) may delete any message.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /messages/{room}/{channel}/numbers` | hold the next message number (for attachments, cut-offs) |
//! | `PUT /messages/{room}/{channel}/{number}` | post a message as the next number, or under a held one |
//! | `GET /messages/{room}/{channel}?after=N&limit=M` | unburnt messages after N, oldest first |
//! | `GET /messages/{room}/{channel}/{number}` | one unburnt message |
//! | `DELETE /messages/{room}/{channel}/{number}` | delete (sender with its delete secret, or admin) |

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cinder_proto::rooms::{DeleteShard, PostShard, Reserved, Shard, ShardPage, limits};
use cinder_proto::{ChannelId, RoomId};
use serde::Deserialize;

use super::{ShardsState, domain};
use crate::Result;
use crate::extract::{PathParams, QueryParams, Signed};
use crate::store::ChannelRef;

/// The shards function's router.
pub fn router(state: ShardsState) -> Router {
    crate::routing::finish(routes(state))
}

/// The shards function's routes alone, for the dev server.
pub fn routes(state: ShardsState) -> Router {
    Router::new()
        .route("/messages/{room}/{channel}/numbers", post(reserve))
        .route("/messages/{room}/{channel}", get(list))
        .route(
            "/messages/{room}/{channel}/{number}",
            get(one).put(put).delete(delete),
        )
        .with_state(state)
}

fn channel((room, channel): (RoomId, ChannelId)) -> ChannelRef {
    ChannelRef { room, channel }
}

async fn reserve(
    State(s): State<ShardsState>,
    PathParams(ids): PathParams<(RoomId, ChannelId)>,
    req: Signed<()>,
) -> Result<(StatusCode, Json<Reserved>)> {
    // The signature is checked by now: only the capability's holders spend its bucket.
    s.limits
        .check(
            "reserve_per_capability",
            &req.signer.to_string(),
            s.auth.clock.now_ms(),
        )
        .await?;
    let now = s.auth.clock.now();
    let reserved = domain::reserve(s.shards.as_ref(), req.signer, channel(ids), now).await?;
    Ok((StatusCode::CREATED, Json(reserved)))
}

async fn put(
    State(s): State<ShardsState>,
    PathParams((room, ch, number)): PathParams<(RoomId, ChannelId, u64)>,
    req: Signed<PostShard, { limits::MAX_ROOMS_BODY }>,
) -> Result<(StatusCode, Json<Shard>)> {
    s.limits
        .check(
            "post_per_capability",
            &req.signer.to_string(),
            s.auth.clock.now_ms(),
        )
        .await?;
    let now = s.auth.clock.now();
    let at = channel((room, ch));
    let shard = domain::post(
        s.shards.as_ref(),
        req.signer,
        at,
        number,
        req.body,
        now,
        s.max_burn_secs,
    )
    .await?;
    if let Some(notify) = &s.notify {
        notify.notify(at, crate::live::posted(at, shard.number));
    }
    Ok((StatusCode::CREATED, Json(shard)))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn list(
    State(s): State<ShardsState>,
    PathParams(ids): PathParams<(RoomId, ChannelId)>,
    QueryParams(q): QueryParams<ListQuery>,
    req: Signed<()>,
) -> Result<Json<ShardPage>> {
    let now = s.auth.clock.now();
    domain::list(
        s.shards.as_ref(),
        req.signer,
        channel(ids),
        q.after,
        q.limit,
        now,
    )
    .await
    .map(Json)
}

async fn one(
    State(s): State<ShardsState>,
    PathParams((room, ch, number)): PathParams<(RoomId, ChannelId, u64)>,
    req: Signed<()>,
) -> Result<Json<Shard>> {
    let now = s.auth.clock.now();
    domain::get(
        s.shards.as_ref(),
        req.signer,
        channel((room, ch)),
        number,
        now,
    )
    .await
    .map(Json)
}

async fn delete(
    State(s): State<ShardsState>,
    PathParams((room, ch, number)): PathParams<(RoomId, ChannelId, u64)>,
    req: Signed<Option<DeleteShard>>,
) -> Result<StatusCode> {
    let now = s.auth.clock.now();
    let at = channel((room, ch));
    domain::delete(s.shards.as_ref(), req.signer, at, number, req.body, now).await?;
    if let Some(notify) = &s.notify {
        notify.notify(at, crate::live::deleted(at, number));
    }
    Ok(StatusCode::NO_CONTENT)
}

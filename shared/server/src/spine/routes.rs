//! The spine function's HTTP surface.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /rooms` | create a room (signed `admin:<room>` by the admin key in the body) |
//! | `GET /rooms/{room_id}` | the room (signed `member:` or `admin:`) |
//! | `GET /rooms/{room_id}/spines?after=N` | logged spines of versions above N, oldest first (signed `member:` or `admin:`) |
//! | `PUT /rooms/{room_id}` | new spine and capabilities at an expected version (signed `admin:`) |
//! | `DELETE /rooms/{room_id}` | delete the room (signed `admin:`) |

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use cinder_proto::RoomId;
use cinder_proto::rooms::{CreateRoom, Room, SpinePage, UpdateRoom, limits};
use serde::Deserialize;

use super::{SpineState, domain};
use crate::Result;
use crate::extract::{PathParams, QueryParams, SelfSigned, Signed};
use crate::limits::{SourceAddr, addr_bucket};

/// The spine function's router.
pub fn router(state: SpineState) -> Router {
    crate::routing::finish(routes(state))
}

/// The spine function's routes alone, for the dev server.
pub fn routes(state: SpineState) -> Router {
    Router::new()
        .route("/rooms", post(create))
        .route(
            "/rooms/{room_id}",
            axum::routing::get(get).put(update).delete(delete),
        )
        .route("/rooms/{room_id}/spines", axum::routing::get(spines))
        .with_state(state)
}

async fn create(
    State(s): State<SpineState>,
    SourceAddr(addr): SourceAddr,
    SelfSigned(req): SelfSigned<CreateRoom, { limits::MAX_ROOMS_BODY }>,
) -> Result<(StatusCode, Json<Room>)> {
    // A new room's only signer is its new admin key, so rooms are counted per address.
    s.limits
        .check(
            "room_create_per_address",
            &addr_bucket(addr),
            s.auth.clock.now_ms(),
        )
        .await?;
    let room = domain::create(s.rooms.as_ref(), req).await?;
    Ok((StatusCode::CREATED, Json(room)))
}

async fn get(PathParams(room): PathParams<RoomId>, req: Signed<()>) -> Result<Json<Room>> {
    domain::get(req.signer, room, req.room).map(Json)
}

#[derive(Deserialize)]
struct SpinesQuery {
    #[serde(default)]
    after: u64,
}

async fn spines(
    State(s): State<SpineState>,
    PathParams(room): PathParams<RoomId>,
    QueryParams(q): QueryParams<SpinesQuery>,
    req: Signed<()>,
) -> Result<Json<SpinePage>> {
    domain::spines(
        s.rooms.as_ref(),
        (req.signer, req.room.as_ref()),
        room,
        q.after,
    )
    .await
    .map(Json)
}

async fn update(
    State(s): State<SpineState>,
    PathParams(room): PathParams<RoomId>,
    req: Signed<UpdateRoom, { limits::MAX_ROOMS_BODY }>,
) -> Result<Json<Room>> {
    domain::update(s.rooms.as_ref(), req.signer, room, req.body)
        .await
        .map(Json)
}

async fn delete(
    State(s): State<SpineState>,
    PathParams(room): PathParams<RoomId>,
    req: Signed<()>,
) -> Result<StatusCode> {
    domain::delete(s.rooms.as_ref(), req.signer, room).await?;
    Ok(StatusCode::NO_CONTENT)
}

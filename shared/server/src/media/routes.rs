//! The media function's HTTP surface.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /media/{room}/{channel}/{number}` | upload URL for an attachment of a reserved message (signed `channel:`) |
//! | `GET /media/{room}/{channel}/{number}/{media}` | download URL, while the message lives and links it (signed `channel:`) |
//! | `POST /media/{room}/avatars` | upload URL for an avatar sealed for the room (signed `member:`) |
//! | `GET /media/{room}/avatars/{media}` | download URL for an avatar (signed `member:`) |

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use cinder_proto::media::{DownloadGrant, UploadGrant, UploadRequest};
use cinder_proto::{ChannelId, MediaId, RoomId};

use super::{MediaState, domain};
use crate::Result;
use crate::extract::{PathParams, Signed};
use crate::store::ChannelRef;

/// The media function's router.
pub fn router(state: MediaState) -> Router {
    crate::routing::finish(routes(state))
}

/// The media function's routes alone, for the dev server.
pub fn routes(state: MediaState) -> Router {
    Router::new()
        .route("/media/{room}/avatars", post(upload_avatar))
        .route("/media/{room}/avatars/{media}", get(download_avatar))
        .route("/media/{room}/{channel}/{number}", post(upload_attachment))
        .route(
            "/media/{room}/{channel}/{number}/{media}",
            get(download_attachment),
        )
        .with_state(state)
}

/// Spends one URL from the signer's bucket. The signature is checked by now, so only the
/// capability's holders spend it; whether it is the right capability is the domain's check.
async fn limit(s: &MediaState, signer: &cinder_proto::auth::Signer) -> Result<()> {
    s.limits
        .check(
            "media_per_capability",
            &signer.to_string(),
            s.auth.clock.now_ms(),
        )
        .await
}

async fn upload_attachment(
    State(s): State<MediaState>,
    PathParams((room, channel, number)): PathParams<(RoomId, ChannelId, u64)>,
    req: Signed<UploadRequest>,
) -> Result<(StatusCode, Json<UploadGrant>)> {
    limit(&s, &req.signer).await?;
    let now = s.auth.clock.now();
    let grant = domain::upload_attachment(
        s.shards.as_ref(),
        s.objects.as_ref(),
        req.signer,
        (ChannelRef { room, channel }, number),
        req.body.size,
        (now, s.max_bytes),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

async fn download_attachment(
    State(s): State<MediaState>,
    PathParams((room, channel, number, media)): PathParams<(RoomId, ChannelId, u64, MediaId)>,
    req: Signed<()>,
) -> Result<Json<DownloadGrant>> {
    limit(&s, &req.signer).await?;
    let now = s.auth.clock.now();
    domain::download_attachment(
        s.shards.as_ref(),
        s.objects.as_ref(),
        req.signer,
        (ChannelRef { room, channel }, number, media),
        now,
    )
    .await
    .map(Json)
}

async fn upload_avatar(
    State(s): State<MediaState>,
    PathParams(room): PathParams<RoomId>,
    req: Signed<UploadRequest>,
) -> Result<(StatusCode, Json<UploadGrant>)> {
    limit(&s, &req.signer).await?;
    let now = s.auth.clock.now();
    let grant = domain::upload_avatar(
        s.objects.as_ref(),
        req.signer,
        room,
        req.body.size,
        (now, s.max_bytes),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(grant)))
}

async fn download_avatar(
    State(s): State<MediaState>,
    PathParams(ids): PathParams<(RoomId, MediaId)>,
    req: Signed<()>,
) -> Result<Json<DownloadGrant>> {
    limit(&s, &req.signer).await?;
    let now = s.auth.clock.now();
    domain::download_avatar(s.objects.as_ref(), req.signer, ids, now)
        .await
        .map(Json)
}

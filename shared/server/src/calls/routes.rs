//! The calls function's HTTP surface.
//!
//! | route | purpose |
//! |---|---|
//! | `POST /calls/{room}/{channel}/turn` | TURN credentials and relay URLs for a channel's members (signed `channel:`) |
//! | `PUT /calls/relays/{relay_id}` | a relay says where it is (MAC under the shared secret in `x-cinder-relay`) |

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{post, put};
use axum::{Json, Router};
use bytes::Bytes;
use cinder_proto::calls::{RELAY_HEADER, TurnCredentials};
use cinder_proto::{ChannelId, RoomId};

use super::{CallsState, domain};
use crate::extract::{PathParams, Signed};
use crate::store::ChannelRef;
use crate::{Error, Result};

/// Largest announcement body, in bytes: eight URLs of 256 bytes fit with room to spare.
const MAX_ANNOUNCEMENT_BYTES: usize = 4096;

/// The calls function's router.
pub fn router(state: CallsState) -> Router {
    crate::routing::finish(routes(state))
}

/// The calls function's routes alone, for the dev server.
pub fn routes(state: CallsState) -> Router {
    Router::new()
        .route("/calls/{room}/{channel}/turn", post(credentials))
        .route("/calls/relays/{relay_id}", put(announce))
        .with_state(state)
}

async fn credentials(
    State(s): State<CallsState>,
    PathParams((room, channel)): PathParams<(RoomId, ChannelId)>,
    req: Signed<()>,
) -> Result<Json<TurnCredentials>> {
    // The signature is checked by now: only the capability's holders spend its bucket.
    s.limits
        .check(
            "turn_per_capability",
            &req.signer.to_string(),
            s.auth.clock.now_ms(),
        )
        .await?;
    let now = s.auth.clock.now();
    domain::credentials(
        s.relays.as_ref(),
        &s.secret,
        req.signer,
        ChannelRef { room, channel },
        (now, s.credential_secs),
    )
    .await
    .map(Json)
}

async fn announce(
    State(s): State<CallsState>,
    PathParams(relay_id): PathParams<String>,
    RelayProof(mac): RelayProof,
    body: Bytes,
) -> Result<StatusCode> {
    if body.len() > MAX_ANNOUNCEMENT_BYTES {
        return Err(Error::BodyTooLarge {
            limit: MAX_ANNOUNCEMENT_BYTES,
        });
    }
    let now = s.auth.clock.now();
    domain::announce(
        s.relays.as_ref(),
        &s.secret,
        &relay_id,
        (&body, mac.as_deref()),
        now,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The [`RELAY_HEADER`] of a relay's announcement, if it has one (the domain checks it,
/// over the exact body bytes, before anything else).
struct RelayProof(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for RelayProof {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Ok(Self(
            parts
                .headers
                .get(RELAY_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ))
    }
}

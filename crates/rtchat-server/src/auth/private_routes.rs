//! Private rooms and direct messages over HTTP (`--auth token`; with `--auth off` each
//! answers `404` `{"code":"auth_off"}`):
//!
//! * `GET /rooms/{room}` — its settings ([`RoomSettings`]), to whoever may use the room.
//! * `PUT /rooms/{room}` `{"private": true|false}` — by its owner or an admin.
//! * `POST|DELETE /rooms/{room}/members/{uid}` — by its owner or an admin.
//! * `POST /me/dm/{uid}` — opens (or finds) the direct message with a user: `{"room","with"}`.
//! * `GET /me/rooms` — `{"rooms":[{"room","private","owner"?,"with"?}...]}`.
//!
//! The rules are [`super::access`]'s.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rtchat_protocol::http::{ME_DM, ME_ROOMS, ROOMS, ROOM_MEMBER};
use rtchat_protocol::shapes::{DmOpened, MyRooms, RoomSettings, RoomSettingsChange};

use super::token::Identity;
use crate::api::{read_json_body, ApiError};
use crate::state::AppState;
use crate::transport::Who;

/// The routes above (behind the transports' token check).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(&format!("{ROOMS}/{{room}}"), get(settings).put(change))
        .route(ROOM_MEMBER, post(add_member).delete(remove_member))
        .route(ME_DM, post(open_dm))
        .route(ME_ROOMS, get(my_rooms))
}

/// The caller's identity; `404` with `--auth off` (no users, so none of this exists).
fn caller(who: Who) -> Result<Arc<Identity>, ApiError> {
    who.map(|w| w.0).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "private rooms and direct messages exist only with --auth token",
        )
        .with_code("auth_off")
    })
}

fn path<T>(path: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn settings(
    State(state): State<AppState>,
    room: Result<Path<String>, PathRejection>,
    who: Who,
) -> Result<Json<RoomSettings>, ApiError> {
    let who = caller(who)?;
    let room = path(room)?;
    rtchat_core::check_room_name(&room)?;
    crate::transport::check_room(&state, Some(&who), &room)?;
    Ok(Json(state.auth.access().settings(&room).await?))
}

async fn change(
    State(state): State<AppState>,
    room: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<RoomSettings>, ApiError> {
    let who = caller(who)?;
    let room = path(room)?;
    let config = &state.config;
    let body = read_json_body(&headers, body, config.max_body, config.timeouts.body).await?;
    let change: RoomSettingsChange = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be {{\"private\": true|false}}: {e}"),
        )
    })?;
    let access = state.auth.access();
    Ok(Json(access.set_private(&who, &room, change.private).await?))
}

async fn add_member(
    State(state): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    who: Who,
) -> Result<Json<RoomSettings>, ApiError> {
    let who = caller(who)?;
    let (room, uid) = path(params)?;
    let access = state.auth.access();
    Ok(Json(access.add_member(&who, &room, &uid).await?))
}

async fn remove_member(
    State(state): State<AppState>,
    params: Result<Path<(String, String)>, PathRejection>,
    who: Who,
) -> Result<Json<RoomSettings>, ApiError> {
    let who = caller(who)?;
    let (room, uid) = path(params)?;
    let access = state.auth.access();
    Ok(Json(access.remove_member(&who, &room, &uid).await?))
}

async fn open_dm(
    State(state): State<AppState>,
    uid: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
) -> Result<Json<DmOpened>, ApiError> {
    let who = caller(who)?;
    let uid = path(uid)?;
    // Each opening counts as a post of its client address (`--post-rate`): opening DMs
    // with made-up ids cannot fill `--max-private-rooms` quickly.
    let client = state.proxies.client_of(&extensions, &headers);
    state.posts.check(None, client.map(|c| c.ip))?;
    Ok(Json(state.auth.access().open_dm(&who, &uid).await?))
}

async fn my_rooms(State(state): State<AppState>, who: Who) -> Result<Json<MyRooms>, ApiError> {
    let who = caller(who)?;
    let rooms = state.auth.access().rooms_of(&who).await?;
    Ok(Json(MyRooms { rooms }))
}

//! Rooms over HTTP. The course's `/poll`, `/msgs` and `/events` are the room `general`; these
//! reach every room (`general` included) with the same handlers:
//!
//! * `GET /rooms` — `{"rooms":[{"name","last","epoch","online"}...]}`, sorted by name.
//! * `GET|POST /rooms/{room}/poll` — `/poll`'s contract (see [`super::poll`]); `?user=` on a
//!   `GET` makes the poller present for `--presence-window`.
//! * `GET|POST /rooms/{room}/msgs` — `/msgs`' stream (see [`super::stream`]), with presence
//!   and typing lines; SSE for `Accept: text/event-stream`.
//! * `GET /rooms/{room}/events` — `/events`' SSE (see [`super::sse`]), with `event: presence`
//!   and `event: typing`.
//! * `GET /rooms/{room}/presence` — `{"room","online","users":[{"user","since"}...],"last","epoch"}`.
//! * `POST /rooms/{room}/typing` — `{"user":U}` → `{"status":"ok"}` (also when the signal is
//!   dropped: at most one per user per room per second, and none in a room that does not exist).
//!
//! A bad room name is a `400`. Posts and streams (joins) create the room (`403` past
//! `--max-rooms`); reads never do: a room that does not exist reads as empty.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use rtchat_core::{check_room_name, PostError};
use rtchat_protocol::http::{room, room_path, ROOMS};
use rtchat_protocol::shapes::{PresentUser, RoomInfo, RoomList, RoomPresence};

use super::poll::PollQuery;
use super::{check_user, PositionQuery, Room, Who};
use crate::api::{json_bytes, read_json_body, ApiError};
use crate::state::AppState;

/// `/rooms` and `/rooms/{room}/...`.
pub fn routes() -> Router<AppState> {
    let path = |leaf| room_path("{room}", leaf);
    Router::new()
        .route(ROOMS, get(list))
        .route(&path(room::POLL), get(get_poll).post(post_message))
        .route(&path(room::MSGS), get(get_msgs).post(post_message))
        .route(&path(room::EVENTS), get(get_events))
        .route(&path(room::PRESENCE), get(presence))
        .route(&path(room::TYPING), post(typing))
}

/// The `{room}` of the path (checked by each handler, with the core's words).
fn room_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(room)| room)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

async fn list(State(state): State<AppState>, who: Who) -> Result<Json<RoomList>, ApiError> {
    let rooms = state.hub.rooms().await?;
    // A token with a `rooms` claim sees only those rooms; private rooms and direct messages
    // only their members.
    let who = who.as_ref().map(|w| &*w.0);
    let access = state.auth.access();
    let rooms = rooms
        .into_iter()
        .filter(|r| access.check(who, &r.name).is_ok())
        .map(|r| RoomInfo {
            name: r.name,
            last: r.last,
            epoch: r.epoch,
            online: r.online as u64,
        })
        .collect();
    Ok(Json(RoomList { rooms }))
}

async fn get_poll(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    who: Who,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = room_of(path)?;
    super::poll::poll(&state, Room::named(&name), who, query).await
}

async fn post_message(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, ApiError> {
    let name = room_of(path)?;
    super::poll::post(&state, Room::named(&name), headers, extensions, body).await
}

async fn get_msgs(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = room_of(path)?;
    Ok(super::stream::msgs(&state, Room::named(&name), who, headers, query).await)
}

async fn get_events(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let name = room_of(path)?;
    Ok(super::sse::events(&state, Room::named(&name), who, headers, query).await)
}

async fn presence(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    who: Who,
) -> Result<Json<RoomPresence>, ApiError> {
    let name = room_of(path)?;
    check_room_name(&name)?;
    super::check_room(&state, who.as_ref().map(|w| &*w.0), &name)?;
    let answer = match state.hub.channel(&name).await? {
        Some(channel) => {
            let snapshot = channel.snapshot();
            let users: Vec<PresentUser> = state
                .hub
                .members(&channel)
                .await
                .into_iter()
                .map(|m| PresentUser {
                    user: m.user.to_string(),
                    uid: m.uid.as_deref().map(str::to_owned),
                    since: m.since,
                })
                .collect();
            RoomPresence {
                room: name,
                // Unnamed clients, and named ones counted once.
                online: channel.online().max(users.len()) as u64,
                users,
                last: snapshot.last_id,
                epoch: snapshot.epoch.to_string(),
            }
        }
        None => RoomPresence {
            room: name,
            online: 0,
            users: Vec::new(),
            last: 0,
            epoch: String::new(),
        },
    };
    Ok(Json(answer))
}

async fn typing(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    who: Who,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let name = room_of(path)?;
    check_room_name(&name)?;
    super::check_room(&state, who.as_ref().map(|w| &*w.0), &name)?;
    let config = &state.config;
    let body = read_json_body(&headers, body, config.max_body, config.timeouts.body).await?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::from(PostError::Json(e.to_string())))?;
    let Some(fields) = value.as_object() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "body must be a JSON object with \"user\"",
        ));
    };
    let limits = &state.hub.config().limits;
    let user = match who.as_ref().map(|w| &*w.0) {
        // With a token: its name (a `user` may only repeat it).
        Some(who) => super::query_user(
            fields.get("user").and_then(|u| u.as_str()),
            Some(who),
            limits,
        )?
        .unwrap_or_else(|| who.name.clone()),
        None => check_user(fields.get("user"), limits)?,
    };
    // Dropped silently past the rate limit, or in a room that does not exist.
    state.hub.typing(&name, &user).await?;
    Ok(json_bytes(Bytes::from_static(br#"{"status":"ok"}"#)))
}

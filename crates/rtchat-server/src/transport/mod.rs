//! One module per transport, each a thin adapter from its wire format to the hub.
//!
//! The HTTP transports (`poll`, `stream`, `sse`) serve any room: the course's paths are the
//! room `general` ([`Room::COURSE`]), `/rooms/{room}/...` ([`rooms`]) any room, with presence
//! and typing on its streams.

pub mod extended_connect;
pub mod poll;
pub mod rooms;
pub mod socketio;
pub mod sse;
pub mod stream;
pub mod websocket;
pub mod ws_echo;

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use rtchat_core::{Attendee, Limits, NewPost, Position, Signal, GENERAL};
use serde::Deserialize;

use crate::api::ApiError;
use crate::auth::lifetime::Credential;
use crate::auth::token::Identity;
use crate::state::AppState;
use rtchat_core::Subscription;
use rtchat_protocol::shapes::Removed;

/// The room an HTTP request is about, and how it was reached.
#[derive(Debug, Clone, Copy)]
pub struct Room<'a> {
    pub name: &'a str,
    /// Reached by `/rooms/{room}/...`: its streams also carry presence and typing.
    pub signals: bool,
}

impl<'a> Room<'a> {
    /// The course's `/poll`, `/msgs` and `/events`: `general`, and nothing on their wire changes.
    pub const COURSE: Room<'static> = Room {
        name: GENERAL,
        signals: false,
    };

    /// `/rooms/{name}/...`.
    pub fn named(name: &'a str) -> Room<'a> {
        Room {
            name,
            signals: true,
        }
    }
}

/// `?since=ID&epoch=E&user=U`: where a client says it is in a room, on every HTTP transport,
/// and the name it is present under.
#[derive(Debug, Default, Deserialize)]
pub struct PositionQuery {
    pub since: Option<u64>,
    pub epoch: Option<String>,
    pub user: Option<String>,
}

impl PositionQuery {
    /// The query of a stream (`/msgs`, `/events`); one that does not parse is a `400`.
    pub fn parse(
        query: Result<Query<PositionQuery>, QueryRejection>,
    ) -> Result<PositionQuery, ApiError> {
        query
            .map(|Query(query)| query)
            .map_err(|e| bad_query(e, "since=<message id>&epoch=<epoch>"))
    }

    /// The position, if the client named one (an epoch alone names none).
    pub fn position(&self) -> Option<Position> {
        self.since
            .map(|after| Position::new(after, self.epoch.clone()))
    }
}

/// A query string that does not parse: a `400` that says what was `expected`.
pub fn bad_query(e: QueryRejection, expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        format!("bad query: {}; expected {expected}", e.body_text()),
    )
}

/// Who made an HTTP request: with `--auth token`, the identity its token proved (put there
/// by [`crate::auth::gate::require_token`]); `None` with `--auth off`.
pub type Who = Option<axum::Extension<Arc<Identity>>>;

/// Whether the request's client may use `room` (see [`crate::auth::access::Access::check`]):
/// a `403` (`code` `room_not_allowed` or `not_a_member`) if not; a direct message's name with
/// `--auth off` is a `400`.
pub fn check_room(state: &AppState, who: Option<&Identity>, room: &str) -> Result<(), ApiError> {
    Ok(state.auth.access().check(who, room)?)
}

/// [`check_room`] at a door that creates the room (a post, a stream, a join): also makes the
/// first user with a token to come into an unowned room its owner.
pub fn enter_room(state: &AppState, who: Option<&Identity>, room: &str) -> Result<(), ApiError> {
    Ok(state.auth.access().enter(who, room)?)
}

/// Whether a single-room stream must leave its room after
/// [`Heard::Narrowed`](crate::auth::lifetime::Heard::Narrowed) (`room`, or
/// `None` for any): the [`Removed`] to tell its client, if so.
pub fn removed(
    credential: Option<&Credential>,
    subscription: &Subscription,
    room: Option<Arc<str>>,
) -> Option<Removed> {
    let mine = subscription.channel().name();
    if room.is_some_and(|room| *room != **mine) {
        return None;
    }
    let denied = credential?.may_stay(mine).err()?;
    Some(Removed {
        room: mine.to_string(),
        reason: denied.to_string(),
    })
}

/// A shape as JSON text (for the few frames written by hand).
pub fn json_text(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Who a client is present as: its token's user (`--auth token`: counted once per user id),
/// else the name it gave, if any.
pub fn attendee(who: Option<&Identity>, user: Option<&str>) -> Option<Attendee> {
    match who {
        Some(who) => Some(Attendee::user(&who.uid, &who.name)),
        None => user.map(Attendee::named),
    }
}

/// `?user=`: the name a client is present under, checked like a post's `user` (`None` when
/// absent or empty: an unnamed client). A bad name is a `400`. With a token (`who`) it is the
/// token's name, and a `?user=` naming someone else is a `403`.
pub fn query_user(
    user: Option<&str>,
    who: Option<&Identity>,
    limits: &Limits,
) -> Result<Option<String>, ApiError> {
    if let Some(who) = who {
        return match user {
            Some(user) if !user.is_empty() && user != who.name => {
                Err(ApiError::from(rtchat_core::PostError::NotYourName {
                    posted: user.to_owned(),
                    name: who.name.clone(),
                }))
            }
            _ => Ok(Some(who.name.clone())),
        };
    }
    match user {
        None | Some("") => Ok(None),
        Some(user) => check_user(Some(&user.into()), limits)
            .map(Some)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad query: user: {e}"))),
    }
}

/// A user name (a JSON value, maybe missing), by the rules of a post's `user`: the core's own
/// check, on a post with a placeholder text.
pub fn check_user(
    user: Option<&serde_json::Value>,
    limits: &Limits,
) -> Result<String, rtchat_core::PostError> {
    let mut post = serde_json::Map::new();
    if let Some(user) = user {
        post.insert("user".into(), user.clone());
    }
    post.insert("text".into(), ".".into());
    NewPost::from_value(&post.into(), limits).map(|p| p.user)
}

/// Why a WebSocket connection or Socket.IO socket may not join one room more
/// (`--max-joined-rooms`).
pub fn too_many_joined(max: usize) -> String {
    format!(
        "this connection is already in {max} rooms, its maximum (--max-joined-rooms); leave one first"
    )
}

/// Whether `signal` is the typing of `own`, the client's own name: never echoed to it.
pub fn is_own_typing(signal: &Signal, own: Option<&Arc<str>>) -> bool {
    signal
        .typing_user()
        .is_some_and(|user| own.is_some_and(|own| **own == *user))
}

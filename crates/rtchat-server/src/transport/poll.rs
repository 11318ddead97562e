//! HTTP polling, short and long (the course's first transport), of `general` at `/poll` and
//! of any room at `/rooms/{room}/poll` (see [`super::rooms`]).
//!
//! * `GET /poll` — the history snapshot `{"msg":[...],"last":N,"epoch":E}`, newest first.
//! * `GET /poll?since=ID[&epoch=E][&timeout=S]` — long poll: the messages with an id above `ID`, at once
//!   if there are any, otherwise as soon as one is posted, or `{"msg":[]}` after the timeout.
//!   `msg` is newest first like every `msg` list; when more than a history's worth is newer,
//!   the oldest of them come first (`"more":true`) so the client can ask again without a gap.
//! * `POST /poll` — `{"user","text","key"?}` → `{"status":"ok","id":N}` (the first post's id
//!   again for a key already used; 409 for a key used for another text).
//! * `?user=U` on a `GET`: U is present in the room for `--presence-window` after the poll
//!   (and while a long poll is held).
//!
//! A room that does not exist reads as an empty one, `{"msg":[],"last":0,"epoch":""}`, and is
//! not created by the read: a long poll on it from `since=0` (no epoch, or `epoch=` empty)
//! waits until it comes into being (then answers its first messages) or times out; any
//! other position gets that empty answer with `"reset":true` at once.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rtchat_core::{
    check_room_name, decide, encode_list, encode_list_with, Channel, Position, Start,
};
use serde::Deserialize;
use tokio::time::Instant;

use super::{bad_query, query_user, Room, Who};
use crate::api::{json_bytes, read_json_body, ApiError};
use crate::auth::lifetime::{CredentialEnd, Heard};
use crate::auth::{Identity, TokenError, Unauthorized};
use crate::drain::Deadline;
use crate::metrics::{PostRefusal, Via};
use crate::state::AppState;
use axum::routing::get;
use axum::Router;
use rtchat_protocol::http::POLL;

/// `GET /poll` (short and long polls) and `POST /poll`.
pub fn routes() -> Router<AppState> {
    Router::new().route(POLL, get(get_poll).post(post_poll))
}

/// Query parameters of `GET /poll`.
#[derive(Debug, Deserialize)]
pub struct PollQuery {
    since: Option<u64>,
    epoch: Option<String>,
    /// Seconds to hold a long poll; clamped to the server's maximum.
    timeout: Option<f64>,
    /// The name the poller is present under.
    user: Option<String>,
}

/// `GET /poll`: the snapshot, or a long poll when `since` is given.
pub async fn get_poll(
    State(state): State<AppState>,
    who: Who,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    poll(&state, Room::COURSE, who, query).await
}

/// `GET` a room's poll: the snapshot, or a long poll when `since` is given.
pub async fn poll(
    state: &AppState,
    room: Room<'_>,
    who: Who,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) =
        query.map_err(|e| bad_query(e, "since=<message id>&epoch=<epoch>&timeout=<seconds>"))?;
    if state.config.fail_rate > 0.0 && fastrand::f64() < state.config.fail_rate {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (--fail-rate)",
        ));
    }
    check_room_name(room.name)?;
    let hub = &state.hub;
    let who = who.as_ref().map(|w| &*w.0);
    super::check_room(state, who, room.name)?;
    let user = query_user(query.user.as_deref(), who, &hub.config().limits)?;
    let channel = hub.channel(room.name).await?;
    let user = super::attendee(who, user.as_deref());
    let Some(since) = query.since else {
        return Ok(match channel {
            Some(channel) => {
                if let Some(user) = &user {
                    hub.polled_as(&channel, user);
                }
                json_bytes(channel.snapshot().json.clone())
            }
            None => json_bytes(empty_room(&[])),
        });
    };
    let timeout = match query.timeout {
        Some(t) if !t.is_finite() || t < 0.0 => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "timeout must be a number of seconds, 0 or more",
            ))
        }
        // Clamped before the conversion, which panics on values past u64::MAX seconds.
        Some(t) => Duration::from_secs_f64(t.min(state.config.poll_timeout_max.as_secs_f64())),
        None => state.config.poll_timeout,
    };
    let deadline = Instant::now() + timeout;
    let mut position = Position::new(since, query.epoch);
    // Counted in `rtchat_clients{transport="longpoll"}` while held.
    let _parked = state.metrics.client(Via::LongPoll);
    // Once the server stops, answered (empty) at a random moment of the close window.
    let closing = state.drain.deadline();
    let channel = match channel {
        Some(channel) => channel,
        // An unknown room is an empty one of epoch "": only its own position (0, no epoch)
        // waits for it; any other means nothing here.
        None if since > 0 || position.epoch.as_deref().is_some_and(|e| !e.is_empty()) => {
            return Ok(json_bytes(empty_room(&["reset"])));
        }
        None => match wait_for_room(state, room.name, deadline, &closing).await? {
            Some(channel) => {
                position = Position::new(0, None);
                channel
            }
            None => return Ok(json_bytes(empty_room(&[]))),
        },
    };
    // Present while held, and for the window after the answer.
    let present = user.as_ref().map(|user| {
        hub.polled_as(&channel, user);
        hub.present_as(&channel, Some(user.clone()))
    });
    let answer = held(state, who, room.name, async {
        long_poll(state, &channel, &position, deadline, &closing).await
    })
    .await;
    if let (Some(user), Some(present)) = (&user, present) {
        hub.polled_as(&channel, user);
        drop(present);
    }
    // The room may have turned private while the poll waited: nothing of it then.
    super::check_room(state, who, room.name)?;
    answer
}

/// A held poll, ended early with `--auth token` when its token is revoked (or expires past
/// the grace period: `401`) or the room turns private under it (`403`): nothing of the room
/// is answered then.
async fn held(
    state: &AppState,
    who: Option<&Identity>,
    room: &str,
    poll: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let Some(mut credential) = who.map(|who| state.auth.credential(who)) else {
        return poll.await;
    };
    tokio::pin!(poll);
    loop {
        tokio::select! {
            answer = &mut poll => return answer,
            heard = credential.next() => match heard {
                Heard::Ended(end) => {
                    let refusal = match end {
                        CredentialEnd::Expired => TokenError::Expired,
                        CredentialEnd::Revoked => TokenError::Revoked,
                        // An admin ended the user's connections: `403` with the reason.
                        CredentialEnd::Banned | CredentialEnd::Kicked => {
                            let (_, reason) = end.close();
                            let message = format!("{reason} by an administrator");
                            let error = ApiError::new(StatusCode::FORBIDDEN, message);
                            return Err(error.with_code(end.event()));
                        }
                    };
                    return Ok(Unauthorized(refusal).into_response());
                }
                Heard::Narrowed(narrowed) => {
                    if narrowed.is_none_or(|r| *r == *room) {
                        credential.may_stay(room)?;
                    }
                }
            },
        }
    }
}

/// What a room that does not exist reads as: `{"msg":[],"last":0,"epoch":""}` (with `flags`).
fn empty_room(flags: &[&str]) -> Bytes {
    encode_list_with(std::iter::empty(), 0, "", flags, "")
}

/// Waits until `room` comes into being (`None` at the deadline or when the server stops).
async fn wait_for_room(
    state: &AppState,
    room: &str,
    deadline: Instant,
    closing: &Deadline,
) -> Result<Option<Arc<Channel>>, ApiError> {
    let hub = &state.hub;
    // Watch before looking, so a room made between the look and the wait still wakes us.
    let mut created = hub.created();
    loop {
        created.borrow_and_update();
        if let Some(channel) = hub.channel(room).await? {
            return Ok(Some(channel));
        }
        tokio::select! {
            changed = created.changed() => if changed.is_err() { return Ok(None) },
            () = tokio::time::sleep_until(deadline) => return Ok(None),
            () = closing.reached() => return Ok(None),
        }
    }
}

async fn long_poll(
    state: &AppState,
    channel: &Channel,
    position: &Position,
    deadline: Instant,
    closing: &Deadline,
) -> Result<Response, ApiError> {
    let hub = &state.hub;
    hub.settle(channel, position).await;
    // Watch before looking, so a post between the look and the wait still wakes us.
    let mut changes = channel.watch();
    let snapshot = changes.borrow_and_update().clone();
    let since = match decide(&snapshot, Some(position)) {
        Start::Resume { after } => after,
        // Another epoch, or ids this server never handed out (it restarted with an empty
        // memory store): the whole history to start over from.
        Start::Reset | Start::Fresh => return Ok(json_bytes(snapshot.reset_json(""))),
    };
    let deadline = tokio::time::sleep_until(deadline);
    tokio::pin!(deadline);
    // Woken by a new message: its fan-out latency is worth measuring.
    let mut woken = false;
    loop {
        let page = hub.since(channel, since, hub.config().history).await?;
        if let Some(first) = page.entries.first() {
            let last = page.entries.last().map_or(since, |e| e.message.id);
            let answer = json_bytes(page.encode(last, &snapshot.epoch, ""));
            if woken {
                state
                    .metrics
                    .delivered_now(Via::LongPoll, page.entries.len(), first);
            } else {
                state
                    .metrics
                    .delivered_untimed(Via::LongPoll, page.entries.len());
            }
            return Ok(answer);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break } else { woken = true },
            () = &mut deadline => break,
            () = closing.reached() => break,
        }
    }
    Ok(json_bytes(encode_list(
        std::iter::empty(),
        since,
        &snapshot.epoch,
        "",
    )))
}

/// `POST /poll`: validates and stores a message in `general`; see [`post`].
pub async fn post_poll(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, ApiError> {
    post(&state, Room::COURSE, headers, extensions, body).await
}

/// A post in `room` (its first creates it): validates and stores a message; answers once it
/// is stored. Every post counts against its client address's rate limit first (`429` past
/// it, before the body is read).
pub async fn post(
    state: &AppState,
    room: Room<'_>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Body,
) -> Result<Response, ApiError> {
    let metrics = &state.metrics;
    let client = state.proxies.client_of(&extensions, &headers);
    state
        .posts
        .check(None, client.map(|c| c.ip))
        .inspect_err(|refused| metrics.rate_limited(refused))?;
    check_room_name(room.name).inspect_err(|_| metrics.post_refused(PostRefusal::Invalid))?;
    let who = extensions.get::<std::sync::Arc<crate::auth::token::Identity>>();
    let allowed = state.auth.may_post(who.map(|w| &**w), room.name);
    allowed.inspect_err(|_| metrics.post_refused(PostRefusal::Unauthorized))?;
    let config = &state.config;
    let body = read_json_body(&headers, body, config.max_body, config.timeouts.body)
        .await
        .inspect_err(|e| metrics.post_refused(PostRefusal::of_status(e.status)))?;
    let poster = crate::auth::gate::poster_of(&extensions);
    let stored = state
        .hub
        .post_json_by(room.name, &body, poster.as_ref())
        .await;
    metrics.post_result(Via::Http, &stored);
    Ok(axum::Json(rtchat_protocol::PostAck::ok(stored?.message.id)).into_response())
}

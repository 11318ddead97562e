//! HTTP polling, short and long (the course's first transport).
//!
//! * `GET /poll` — the history snapshot `{"msg":[...],"last":N,"epoch":E}`, newest first.
//! * `GET /poll?since=ID[&epoch=E][&timeout=S]` — long poll: the messages with an id above `ID`, at once
//!   if there are any, otherwise as soon as one is posted, or `{"msg":[]}` after the timeout.
//!   `msg` is newest first like every `msg` list; when more than a history's worth is newer,
//!   the oldest of them come first (`"more":true`) so the client can ask again without a gap.
//! * `POST /poll` — `{"user","text","key"?}` → `{"status":"ok","id":N}` (the first post's id
//!   again for a key already used; 409 for a key used for another text).

use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rtchat_core::{decide, encode_list, Channel, Position, Start, GENERAL};
use serde::Deserialize;

use crate::api::{json_bytes, read_json_body, ApiError};
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
}

/// `GET /poll`: the snapshot, or a long poll when `since` is given.
pub async fn get_poll(
    State(state): State<AppState>,
    query: Result<Query<PollQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "bad query: {}; expected since=<message id>&epoch=<epoch>&timeout=<seconds>",
                e.body_text()
            ),
        )
    })?;
    if state.config.fail_rate > 0.0 && fastrand::f64() < state.config.fail_rate {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "injected failure (--fail-rate)",
        ));
    }
    let channel = state.hub.general();
    let Some(since) = query.since else {
        return Ok(json_bytes(channel.snapshot().json.clone()));
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
    let position = Position::new(since, query.epoch);
    long_poll(&state, &channel, &position, timeout).await
}

async fn long_poll(
    state: &AppState,
    channel: &Channel,
    position: &Position,
    timeout: Duration,
) -> Result<Response, ApiError> {
    let hub = &state.hub;
    // Watch before looking, so a post between the look and the wait still wakes us.
    let mut changes = channel.watch();
    let snapshot = changes.borrow_and_update().clone();
    let since = match decide(&snapshot, Some(position)) {
        Start::Resume { after } => after,
        // Another epoch, or ids this server never handed out (it restarted with an empty
        // memory store): the whole history to start over from.
        Start::Reset | Start::Fresh => return Ok(json_bytes(snapshot.reset_json(""))),
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    // Counted in `rtchat_clients{transport="longpoll"}` while held.
    let _parked = state.metrics.client(Via::LongPoll);
    // Once the server stops, answered (empty) at a random moment of the close window.
    let closing = state.drain.deadline();
    // Woken by a new message: its fan-out latency is worth measuring.
    let mut woken = false;
    loop {
        let page = hub
            .since(channel, since, hub.config().history)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
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

/// `POST /poll`: validates and stores a message; answers once it is stored. Every post
/// counts against its client address's rate limit first (`429` past it, before the body is
/// read).
pub async fn post_poll(
    State(state): State<AppState>,
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
    let config = &state.config;
    let body = read_json_body(&headers, body, config.max_body, config.timeouts.body)
        .await
        .inspect_err(|e| metrics.post_refused(PostRefusal::of_status(e.status)))?;
    let stored = state.hub.post_json(GENERAL, &body).await;
    metrics.post_result(Via::Http, &stored);
    Ok(axum::Json(rtchat_protocol::PostAck::ok(stored?.message.id)).into_response())
}

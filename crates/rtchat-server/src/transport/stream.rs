//! The course's HTTP/2 stream: `GET /msgs` answers with one never-ending `text/plain` body
//! that carries the history snapshot `{"msg":[...],"last":N,"epoch":E}` at once and a fresh snapshot
//! after every new message, each in its own write and ending with a newline (so both a
//! client that parses each read and one that splits lines read it correctly).
//! `GET /msgs` with `Accept: text/event-stream` is Server-Sent Events instead (see [`super::sse`]).
//! `POST /msgs` posts exactly like `POST /poll`.
//!
//! `GET /msgs?since=ID[&epoch=E]` resumes: instead of the first snapshot the stream starts with the
//! messages after `ID`, in lines shaped like long-poll answers (`{"msg":[...],"last":N,"epoch":E}`,
//! newest first, the oldest page first, `"more":true` on all but the last; `"truncated":true`
//! when messages after `ID` are no longer kept), then goes on with snapshots. An `ID` newer than
//! anything this server handed out, or from another epoch, gets the snapshot with
//! `"reset":true`. Every line carries `"epoch"` next to `"last"`.
//!
//! `GET /rooms/{room}/msgs` is the same stream of any room (a join: it creates the room), with
//! the room's presence and typing events as lines `{"presence":{...}}` and `{"typing":{...}}`
//! between the snapshots. `?user=U` names the stream in the room's presence (unnamed without).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use rtchat_core::{check_room_name, Delivery, PresenceGuard, Signal, Start, Subscription};

use super::{
    attendee, is_own_typing, json_text, query_user, removed, sse, PositionQuery, Room, Who,
};
use crate::api::ApiError;
use crate::auth::lifetime::{Credential, Heard};
use crate::drain::Deadline;
use crate::metrics::{Counted, Metrics, Via};
use crate::state::AppState;
use axum::routing::get;
use axum::Router;
use futures_util::future::OptionFuture;
use rtchat_protocol::http::MSGS;

/// `GET /msgs` (the stream, or SSE for `Accept: text/event-stream`) and `POST /msgs` (the
/// same post as `POST /poll`).
pub fn routes() -> Router<AppState> {
    Router::new().route(MSGS, get(get_msgs).post(super::poll::post_poll))
}

/// `GET /msgs`: the stream of `general`.
pub async fn get_msgs(
    State(state): State<AppState>,
    who: Who,
    headers: HeaderMap,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Response {
    msgs(&state, Room::COURSE, who, headers, query).await
}

/// A room's snapshot stream, or its SSE when the client asks for `text/event-stream`.
pub async fn msgs(
    state: &AppState,
    room: Room<'_>,
    who: Who,
    headers: HeaderMap,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Response {
    if sse::wants_event_stream(&headers) {
        return sse::events(state, room, who, headers, query).await;
    }
    match open(state, room, who, query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn open(
    state: &AppState,
    room: Room<'_>,
    who: Who,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let query = PositionQuery::parse(query)?;
    check_room_name(room.name)?;
    let hub = &state.hub;
    let who = who.as_ref().map(|w| &*w.0);
    super::enter_room(state, who, room.name)?;
    let user = query_user(query.user.as_deref(), who, &hub.config().limits)?;
    let opened = hub.subscribe(room.name, query.position().as_ref()).await?;
    let mut subscription = opened.subscription;
    if room.signals {
        subscription.with_signals();
    }
    let presence = hub.present_as(subscription.channel(), attendee(who, user.as_deref()));
    let snapshot = subscription.snapshot().clone();
    let (first, catching_up) = match opened.start {
        Start::Fresh => (Some(snapshot.json_line.clone()), false),
        Start::Reset => (Some(snapshot.reset_json("\n")), false),
        Start::Resume { .. } => (None, true),
    };
    let stream = SnapshotStream {
        first,
        catching_up,
        subscription,
        presence,
        closing: state.drain.deadline(),
        credential: who.map(|w| Box::new(state.auth.credential(w))),
        ended: false,
        _open: state.metrics.client(Via::Stream),
        metrics: state.metrics.clone(),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|b| (Ok::<_, Infallible>(b), s))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The state of one `/msgs` stream; dropping it (the client went away) drops its
/// subscription and its place in the room's presence at once.
struct SnapshotStream {
    first: Option<Bytes>,
    /// Sending what a resuming client missed, page by page, before the snapshots.
    catching_up: bool,
    subscription: Subscription,
    /// In the room while the stream lives (and the name its own typing is not echoed to).
    presence: PresenceGuard,
    /// Once the server stops, the stream ends (cleanly) at this moment of the close window.
    closing: Deadline,
    /// With `--auth token`: the stream ends with a last line `{"expired":{"reason"}}` or
    /// `{"revoked":{"reason"}}` when its token does, `{"left":{"room","reason"}}` when it may
    /// no longer be in its room.
    credential: Option<Box<Credential>>,
    /// That last line was sent.
    ended: bool,
    /// Counted in `rtchat_clients{transport="stream"}` while it lives.
    _open: Counted,
    metrics: Arc<Metrics>,
}

impl SnapshotStream {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.ended {
            return None;
        }
        if self.catching_up {
            let history = self.subscription.hub().config().history;
            let page = match self.subscription.catch_up(history).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "/msgs catch-up failed; closing the stream");
                    return None;
                }
            };
            self.catching_up = page.more;
            self.metrics
                .delivered_untimed(Via::Stream, page.entries.len());
            let last = self.subscription.last_seen();
            let epoch = self.subscription.snapshot().epoch.clone();
            return Some(page.encode(last, &epoch, "\n"));
        }
        loop {
            let has_credential = self.credential.is_some();
            tokio::select! {
                delivery = self.subscription.recv() => match delivery? {
                    Delivery::Event(event) => {
                        self.metrics.delivered_now(Via::Stream, 1, &event.entry);
                        return Some(event.snapshot.json_line.clone());
                    }
                    // Snapshot mode: the current snapshot supersedes whatever was skipped.
                    Delivery::Lagged { .. } => {
                        return Some(self.subscription.current().json_line.clone())
                    }
                    // The history without the deleted message, at once.
                    Delivery::Deleted(deletion) => return Some(deletion.snapshot.json_line.clone()),
                    // A new epoch: its history, marked as a reset.
                    Delivery::Reset(snapshot) => return Some(snapshot.reset_json("\n")),
                    Delivery::Signal(signal) => {
                        if let Some(line) = signal_line(&signal, self.presence.user()) {
                            return Some(line);
                        }
                    }
                },
                () = self.closing.reached() => return None,
                Some(heard) = OptionFuture::from(self.credential.as_mut().map(|c| c.next())), if has_credential => {
                    let line = match heard {
                        Heard::Ended(end) => {
                            let (_, reason) = end.close();
                            format!("{{\"{}\":{{\"reason\":\"{reason}\"}}}}\n", end.event())
                        }
                        Heard::Narrowed(room) => {
                            let Some(removed) = removed(self.credential.as_deref(), &self.subscription, room) else {
                                continue;
                            };
                            format!("{{\"left\":{}}}\n", json_text(&removed))
                        }
                    };
                    self.ended = true;
                    return Some(line.into());
                }
            }
        }
    }
}

/// `{"presence":{...}}` or `{"typing":{...}}` and a newline; `None` for a typing signal of
/// the stream's own user (never echoed).
fn signal_line(signal: &Signal, own: Option<&Arc<str>>) -> Option<Bytes> {
    if is_own_typing(signal, own) {
        return None;
    }
    let name = signal.name();
    let mut line = BytesMut::with_capacity(signal.json.len() + name.len() + 6);
    line.put_slice(b"{\"");
    line.put_slice(name.as_bytes());
    line.put_slice(b"\":");
    line.put_slice(&signal.json);
    line.put_slice(b"}\n");
    Some(line.freeze())
}

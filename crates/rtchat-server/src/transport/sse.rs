//! Server-Sent Events: `GET /events` (or `GET /msgs` with `Accept: text/event-stream`).
//!
//! Each message is one event, `id:` its position `EPOCH:ID` and `data:` the message as JSON. A
//! fresh client first gets the history (oldest first); a client that resumes (`Last-Event-ID`,
//! as `EventSource` sends by itself on reconnect, or `?since=ID&epoch=E`) gets exactly the
//! messages after that id, in order, then an `event: resumed`
//! (`data: {"after":ID,"count":K,"last":N,"epoch":E}`), then the live ones. A `retry:` hint
//! opens the stream, and a comment line every `--sse-heartbeat` keeps proxies from closing an
//! idle stream. If the position is from another epoch, or newer than anything this server
//! handed out (it restarted with an empty store), an `event: reset`
//! (`data: {"last":N,"epoch":E}`) comes first and then the whole history; if the messages
//! right after the id are no longer kept, an `event: truncated` comes first. The door
//! ([`rtchat_core::Hub::subscribe`]) makes that decision.
//!
//! `GET /rooms/{room}/events` is the same stream of any room (a join: it creates the room),
//! plus the room's `event: presence` (`data: {"room","joined","left"}`) and `event: typing`
//! (`data: {"room","user"}`; never the stream's own user's). `?user=U` names the stream in
//! the room's presence (unnamed without).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use rtchat_core::{
    check_room_name, Attendee, Delivery, Entry, Position, PresenceGuard, Signal, Snapshot, Start,
    Subscription,
};
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::{attendee, is_own_typing, json_text, query_user, removed, PositionQuery, Room, Who};
use crate::api::ApiError;
use crate::auth::lifetime::{Credential, Heard};
use crate::drain::Deadline;
use crate::metrics::{Counted, Metrics, Via};
use crate::state::AppState;
use axum::routing::get;
use axum::Router;
use futures_util::future::OptionFuture;
use rtchat_protocol::http::{sse_event, EVENTS};
use rtchat_protocol::shapes::MessageDeleted;

/// How long browsers wait before reconnecting, sent as the `retry:` hint.
const RETRY: &[u8] = b"retry: 2000\n\n";
const HEARTBEAT: &[u8] = b": keepalive\n\n";
/// Messages read from the store per step while catching up.
const PAGE: usize = 500;

/// True when the request's `Accept` asks for `text/event-stream`.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// `GET /events`.
pub fn routes() -> Router<AppState> {
    Router::new().route(EVENTS, get(get_events))
}

/// `GET /events`: the events of `general`.
pub async fn get_events(
    State(state): State<AppState>,
    who: Who,
    headers: HeaderMap,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Response {
    events(&state, Room::COURSE, who, headers, query).await
}

/// A room's event stream.
pub async fn events(
    state: &AppState,
    room: Room<'_>,
    who: Who,
    headers: HeaderMap,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Response {
    let opened = async {
        let (resume, user) = resume_point(&headers, query)?;
        check_room_name(room.name)?;
        let who = who.as_ref().map(|w| &*w.0);
        super::enter_room(state, who, room.name)?;
        let user = query_user(user.as_deref(), who, &state.hub.config().limits)?;
        let credential = who.map(|w| Box::new(state.auth.credential(w)));
        let user = attendee(who, user.as_deref());
        event_stream(state, room, resume, user, credential).await
    };
    match opened.await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// Where to start, and the `?user=` given. `Last-Event-ID` wins over `?since=`: on reconnect
/// `EventSource` repeats the original URL and adds the header with the newest id it saw. Its
/// form is `EPOCH:ID` (what rtchat sends as `id:`); a bare `ID` (from before epochs) is
/// judged by the id alone.
fn resume_point(
    headers: &HeaderMap,
    query: Result<Query<PositionQuery>, QueryRejection>,
) -> Result<(Option<Position>, Option<String>), ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        // The query is only read for the name here (as before rooms, a query that does not
        // parse does not stop a resume).
        let user = query.ok().and_then(|Query(q)| q.user);
        let text = value.to_str().unwrap_or("").trim();
        if text.is_empty() {
            return Ok((None, user));
        }
        let (epoch, id) = match text.split_once(':') {
            Some((epoch, id)) => (Some(epoch.to_owned()), id),
            None => (None, text),
        };
        return id
            .parse()
            .map(|id| (Some(Position::new(id, epoch)), user))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Last-Event-ID must be EPOCH:ID or a message id, got {text:?}"),
                )
            });
    }
    let query = PositionQuery::parse(query)?;
    Ok((query.position(), query.user))
}

async fn event_stream(
    state: &AppState,
    room: Room<'_>,
    resume: Option<Position>,
    user: Option<Attendee>,
    credential: Option<Box<Credential>>,
) -> Result<Response, ApiError> {
    let hub = &state.hub;
    let opened = hub.subscribe(room.name, resume.as_ref()).await?;
    let mut subscription = opened.subscription;
    if room.signals {
        subscription.with_signals();
    }
    let presence = hub.present_as(subscription.channel(), user);
    let snapshot = subscription.snapshot().clone();
    let mut pending = VecDeque::from([Bytes::from_static(RETRY)]);
    let mut catching_up = false;
    let mut resuming = None;
    match opened.start {
        Start::Resume { after } => {
            catching_up = true;
            resuming = Some((after, 0));
        }
        Start::Reset => pending.extend(reset_events(&snapshot)),
        Start::Fresh => pending.extend(history_events(&snapshot)),
    }
    let period = state.config.sse_heartbeat;
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream = EventStream {
        pending,
        catching_up,
        resuming,
        subscription,
        presence,
        heartbeat,
        closing: state.drain.deadline(),
        credential,
        ending: false,
        _open: state.metrics.client(Via::Sse),
        metrics: state.metrics.clone(),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|b| (Ok::<_, Infallible>(b), s))
    });
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// A message as one SSE event (the cache key of [`Entry::encoded`]).
#[derive(Clone)]
struct SseEvent(Bytes);

/// `id: EPOCH:N\ndata: {...}\n\n`, made once per message and shared by every SSE client.
fn encode_event(entry: &Entry, epoch: &str) -> Bytes {
    let SseEvent(bytes) = entry.encoded(|entry| {
        let id = entry.message.id.to_string();
        let mut out = BytesMut::with_capacity(entry.json.len() + epoch.len() + id.len() + 16);
        out.put_slice(b"id: ");
        out.put_slice(epoch.as_bytes());
        out.put_u8(b':');
        out.put_slice(id.as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(&entry.json);
        out.put_slice(b"\n\n");
        SseEvent(out.freeze())
    });
    bytes
}

/// `event: presence|typing\ndata: {...}\n\n`.
fn encode_signal(signal: &Signal) -> Bytes {
    let name = signal.name();
    let mut out = BytesMut::with_capacity(signal.json.len() + name.len() + 16);
    out.put_slice(b"event: ");
    out.put_slice(name.as_bytes());
    out.put_slice(b"\ndata: ");
    out.put_slice(&signal.json);
    out.put_slice(b"\n\n");
    out.freeze()
}

/// The state of one event stream; dropping it drops its subscription and its place in the
/// room's presence.
struct EventStream {
    pending: VecDeque<Bytes>,
    /// Reading missed messages from the store before going live.
    catching_up: bool,
    /// For a resuming client: the id it resumed after and how many messages it missed so
    /// far, announced by `event: resumed` once caught up.
    resuming: Option<(u64, usize)>,
    subscription: Subscription,
    /// In the room while the stream lives (and the name its own typing is not echoed to).
    presence: PresenceGuard,
    heartbeat: Interval,
    /// Once the server stops, the stream ends (cleanly) at this moment of the close window.
    closing: Deadline,
    /// With `--auth token`: the stream ends with a final `expired` or `revoked` event when
    /// its token does (the client reconnects with a fresh token).
    credential: Option<Box<Credential>>,
    /// The final event is queued: the stream ends after it.
    ending: bool,
    /// Counted in `rtchat_clients{transport="sse"}` while it lives.
    _open: Counted,
    metrics: Arc<Metrics>,
}

/// A history as events, oldest first.
fn history_events(snapshot: &Snapshot) -> impl Iterator<Item = Bytes> + '_ {
    snapshot
        .entries
        .iter()
        .rev()
        .map(|e| encode_event(e, &snapshot.epoch))
}

/// `event: reset` (the position meant nothing, or the room began a new epoch), then the
/// history.
fn reset_events(snapshot: &Snapshot) -> impl Iterator<Item = Bytes> + '_ {
    let reset = format!(
        "event: reset\ndata: {{\"last\":{},\"epoch\":\"{}\"}}\n\n",
        snapshot.last_id, snapshot.epoch
    );
    std::iter::once(Bytes::from(reset)).chain(history_events(snapshot))
}

impl EventStream {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some(bytes);
            }
            if self.ending {
                return None;
            }
            if self.catching_up {
                let from = self.subscription.last_seen();
                let page = match self.subscription.catch_up(PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        tracing::warn!(error = %e, "SSE catch-up failed; closing the stream");
                        return None;
                    }
                };
                if page.truncated {
                    let note = format!("event: truncated\ndata: {{\"after\":{from}}}\n\n");
                    self.pending.push_back(note.into());
                }
                let epoch = self.subscription.snapshot().epoch.clone();
                self.pending
                    .extend(page.entries.iter().map(|e| encode_event(e, &epoch)));
                self.catching_up = page.more;
                self.metrics.delivered_untimed(Via::Sse, page.entries.len());
                if let Some((after, count)) = &mut self.resuming {
                    *count += page.entries.len();
                    if !page.more {
                        let last = self.subscription.last_seen();
                        let epoch = &self.subscription.snapshot().epoch;
                        let note = format!(
                            "event: resumed\ndata: {{\"after\":{after},\"count\":{count},\"last\":{last},\"epoch\":\"{epoch}\"}}\n\n"
                        );
                        self.pending.push_back(note.into());
                        self.resuming = None;
                    }
                }
                continue;
            }
            let has_credential = self.credential.is_some();
            tokio::select! {
                delivery = self.subscription.recv() => match delivery? {
                    Delivery::Event(event) => {
                        // The heartbeat is for idle streams: a message is traffic enough.
                        self.heartbeat.reset();
                        self.metrics.delivered_now(Via::Sse, 1, &event.entry);
                        return Some(encode_event(&event.entry, &event.snapshot.epoch));
                    }
                    // Delta mode: re-read what was skipped from the store; nothing is lost.
                    Delivery::Lagged { .. } => self.catching_up = true,
                    Delivery::Deleted(deletion) => {
                        self.heartbeat.reset();
                        let deleted = MessageDeleted {
                            room: self.subscription.channel().name().to_string(),
                            id: deletion.id,
                        };
                        let event = format!("event: {}\ndata: {}\n\n", sse_event::DELETED, json_text(&deleted));
                        return Some(event.into());
                    }
                    // A new epoch: a reset notice and its history, as a reconnect would get.
                    Delivery::Reset(snapshot) => {
                        self.heartbeat.reset();
                        self.pending.extend(reset_events(&snapshot));
                        continue;
                    }
                    Delivery::Signal(signal) => {
                        if !is_own_typing(&signal, self.presence.user()) {
                            self.heartbeat.reset();
                            return Some(encode_signal(&signal));
                        }
                    }
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(HEARTBEAT)),
                () = self.closing.reached() => return None,
                Some(heard) = OptionFuture::from(self.credential.as_mut().map(|c| c.next())), if has_credential => {
                    let event = match heard {
                        Heard::Ended(end) => {
                            let (_, reason) = end.close();
                            format!("event: {}\ndata: {{\"reason\":\"{reason}\"}}\n\n", end.event())
                        }
                        Heard::Narrowed(room) => {
                            let Some(removed) = removed(self.credential.as_deref(), &self.subscription, room) else {
                                continue;
                            };
                            format!("event: {}\ndata: {}\n\n", sse_event::LEFT, json_text(&removed))
                        }
                    };
                    self.pending.push_back(event.into());
                    self.ending = true;
                }
            }
        }
    }
}

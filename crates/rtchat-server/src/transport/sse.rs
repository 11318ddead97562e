//! Server-Sent Events: `GET /events` (or `GET /msgs` with `Accept: text/event-stream`).
//!
//! Each message is one event, `id:` its message id and `data:` the message as JSON. A fresh
//! client first gets the history (oldest first); a client that resumes (`Last-Event-ID`, as
//! `EventSource` sends by itself on reconnect, or `?since=ID`) gets exactly the messages after
//! that id, in order, then an `event: resumed` (`data: {"after":ID,"count":K}`), then the live
//! ones. A `retry:` hint opens the stream, and a comment line
//! every `--sse-heartbeat` keeps proxies from closing an idle stream. If the id is newer than
//! anything this server handed out (it restarted with an empty store), an `event: reset` comes
//! first and then the whole history; if the messages right after the id are no longer kept,
//! an `event: truncated` comes first.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use rtchat_core::{Delivery, Entry, Subscription};
use serde::Deserialize;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::router::AppState;

/// How long browsers wait before reconnecting, sent as the `retry:` hint.
const RETRY: &[u8] = b"retry: 2000\n\n";
const HEARTBEAT: &[u8] = b": keepalive\n\n";
/// Messages read from the store per step while catching up.
const PAGE: usize = 500;

/// `?since=ID`, the resume point for clients that cannot set `Last-Event-ID`.
#[derive(Debug, Deserialize)]
pub struct SinceQuery {
    pub since: Option<u64>,
}

/// True when the request's `Accept` asks for `text/event-stream`.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("text/event-stream"))
}

/// `GET /events`.
pub async fn get_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SinceQuery>, QueryRejection>,
) -> Response {
    match resume_point(&headers, query) {
        Ok(resume) => event_stream(&state, resume),
        Err(e) => e.into_response(),
    }
}

/// `Last-Event-ID` wins over `?since=`: on reconnect `EventSource` repeats the original URL
/// and adds the header with the newest id it saw.
fn resume_point(
    headers: &HeaderMap,
    query: Result<Query<SinceQuery>, QueryRejection>,
) -> Result<Option<u64>, ApiError> {
    if let Some(value) = headers.get("last-event-id") {
        let text = value.to_str().unwrap_or("").trim();
        if text.is_empty() {
            return Ok(None);
        }
        return text.parse().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Last-Event-ID must be a message id, got {text:?}"),
            )
        });
    }
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad query: {}; expected since=<message id>", e.body_text()),
        )
    })?;
    Ok(query.since)
}

fn event_stream(state: &AppState, resume: Option<u64>) -> Response {
    let mut subscription = state.hub.subscribe();
    let snapshot = subscription.snapshot().clone();
    let mut pending = VecDeque::from([Bytes::from_static(RETRY)]);
    let mut catching_up = false;
    let mut resuming = None;
    match resume {
        Some(id) if id <= snapshot.last_id => {
            subscription.resume_after(id);
            catching_up = true;
            resuming = Some((id, 0));
        }
        other => {
            if other.is_some() {
                let reset = format!("event: reset\ndata: {{\"last\":{}}}\n\n", snapshot.last_id);
                pending.push_back(reset.into());
            }
            pending.extend(snapshot.entries.iter().rev().map(|e| encode_event(e)));
        }
    }
    let period = state.config.sse_heartbeat;
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream = EventStream {
        pending,
        catching_up,
        resuming,
        subscription,
        heartbeat,
        shutdown: state.shutdown.clone(),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|b| (Ok::<_, Infallible>(b), s))
    });
    (
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
        .into_response()
}

/// A message as one SSE event (the cache key of [`Entry::encoded`]).
#[derive(Clone)]
struct SseEvent(Bytes);

/// `id: N\ndata: {...}\n\n`, made once per message and shared by every SSE client.
fn encode_event(entry: &Entry) -> Bytes {
    let SseEvent(bytes) = entry.encoded(|entry| {
        let id = entry.message.id.to_string();
        let mut out = BytesMut::with_capacity(entry.json.len() + id.len() + 16);
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_slice(b"\ndata: ");
        out.put_slice(&entry.json);
        out.put_slice(b"\n\n");
        SseEvent(out.freeze())
    });
    bytes
}

/// The state of one event stream; dropping it drops its subscription.
struct EventStream {
    pending: VecDeque<Bytes>,
    /// Reading missed messages from the store before going live.
    catching_up: bool,
    /// For a resuming client: the id it resumed after and how many messages it missed so
    /// far, announced by `event: resumed` once caught up.
    resuming: Option<(u64, usize)>,
    subscription: Subscription,
    heartbeat: Interval,
    shutdown: CancellationToken,
}

impl EventStream {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some(bytes);
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
                self.pending
                    .extend(page.entries.iter().map(|e| encode_event(e)));
                self.catching_up = page.more;
                if let Some((after, count)) = &mut self.resuming {
                    *count += page.entries.len();
                    if !page.more {
                        let note = format!(
                            "event: resumed\ndata: {{\"after\":{after},\"count\":{count}}}\n\n"
                        );
                        self.pending.push_back(note.into());
                        self.resuming = None;
                    }
                }
                continue;
            }
            tokio::select! {
                delivery = self.subscription.recv() => match delivery? {
                    Delivery::Event(event) => return Some(encode_event(&event.entry)),
                    // Delta mode: re-read what was skipped from the store; nothing is lost.
                    Delivery::Lagged { .. } => self.catching_up = true,
                },
                _ = self.heartbeat.tick() => return Some(Bytes::from_static(HEARTBEAT)),
                () = self.shutdown.cancelled() => return None,
            }
        }
    }
}

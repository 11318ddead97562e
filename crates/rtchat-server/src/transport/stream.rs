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

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rtchat_core::{Delivery, Start, Subscription, GENERAL};

use super::{sse, PositionQuery};
use crate::api::ApiError;
use crate::drain::Deadline;
use crate::metrics::{Counted, Metrics, Via};
use crate::state::AppState;
use axum::routing::get;
use axum::Router;
use rtchat_protocol::http::MSGS;

/// `GET /msgs` (the stream, or SSE for `Accept: text/event-stream`) and `POST /msgs` (the
/// same post as `POST /poll`).
pub fn routes() -> Router<AppState> {
    Router::new().route(MSGS, get(get_msgs).post(super::poll::post_poll))
}

/// `GET /msgs`: the snapshot stream, or SSE when the client asks for `text/event-stream`.
pub async fn get_msgs(
    state: State<AppState>,
    headers: HeaderMap,
    query: Result<Query<PositionQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if sse::wants_event_stream(&headers) {
        return sse::get_events(state, headers, query).await;
    }
    let State(state) = state;
    let position = match query {
        Ok(Query(query)) => query.position(),
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "bad query: {}; expected since=<message id>&epoch=<epoch>",
                    e.body_text()
                ),
            )
            .into_response()
        }
    };
    let opened = match state.hub.subscribe(GENERAL, position.as_ref()).await {
        Ok(opened) => opened,
        Err(e) => {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    };
    let subscription = opened.subscription;
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
        closing: state.drain.deadline(),
        _open: state.metrics.client(Via::Stream),
        metrics: state.metrics.clone(),
    };
    let body = futures_util::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|b| (Ok::<_, Infallible>(b), s))
    });
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// The state of one `/msgs` stream; dropping it (the client went away) drops its
/// subscription at once.
struct SnapshotStream {
    first: Option<Bytes>,
    /// Sending what a resuming client missed, page by page, before the snapshots.
    catching_up: bool,
    subscription: Subscription,
    /// Once the server stops, the stream ends (cleanly) at this moment of the close window.
    closing: Deadline,
    /// Counted in `rtchat_clients{transport="stream"}` while it lives.
    _open: Counted,
    metrics: Arc<Metrics>,
}

impl SnapshotStream {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
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
        tokio::select! {
            delivery = self.subscription.recv() => match delivery? {
                Delivery::Event(event) => {
                    self.metrics.delivered_now(Via::Stream, 1, &event.entry);
                    Some(event.snapshot.json_line.clone())
                }
                // Snapshot mode: the current snapshot supersedes whatever was skipped.
                Delivery::Lagged { .. } => Some(self.subscription.current().json_line.clone()),
            },
            () = self.closing.reached() => None,
        }
    }
}

//! The course's HTTP/2 stream: `GET /msgs` answers with one never-ending `text/plain` body
//! that carries the history snapshot `{"msg":[...],"last":N}` at once and a fresh snapshot
//! after every new message, each in its own write and ending with a newline (so both a
//! client that parses each read and one that splits lines read it correctly).
//! `GET /msgs` with `Accept: text/event-stream` is Server-Sent Events instead (see [`super::sse`]).
//! `POST /msgs` posts exactly like `POST /poll`.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rtchat_core::{Delivery, Hub, Subscription};
use tokio_util::sync::CancellationToken;

use super::sse;
use crate::router::AppState;

/// `GET /msgs`: the snapshot stream, or SSE when the client asks for `text/event-stream`.
pub async fn get_msgs(
    state: State<AppState>,
    headers: HeaderMap,
    query: Result<Query<sse::SinceQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if sse::wants_event_stream(&headers) {
        return sse::get_events(state, headers, query).await;
    }
    let State(state) = state;
    let subscription = state.hub.subscribe();
    let first = subscription.snapshot().json_line.clone();
    let stream = SnapshotStream {
        first: Some(first),
        subscription,
        hub: state.hub.clone(),
        shutdown: state.shutdown.clone(),
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
    subscription: Subscription,
    hub: Hub,
    shutdown: CancellationToken,
}

impl SnapshotStream {
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        tokio::select! {
            delivery = self.subscription.recv() => match delivery? {
                Delivery::Event(event) => Some(event.snapshot.json_line.clone()),
                // Snapshot mode: the current snapshot supersedes whatever was skipped.
                Delivery::Lagged { .. } => Some(self.hub.snapshot().json_line.clone()),
            },
            () = self.shutdown.cancelled() => None,
        }
    }
}

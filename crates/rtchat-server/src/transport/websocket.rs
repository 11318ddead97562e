//! The chat over WebSockets, on rtchat's own RFC 6455 implementation ([`rtchat_ws`]).
//!
//! Upgrades are accepted at `/ws` and at `/` (the course's client connects to
//! `ws://localhost:8080`). Two subprotocols:
//!
//! * `json` (the course's; also what a client offering no subprotocol gets): on connect a text
//!   frame `{"msg":[...],"last":N}` with the history, newest first; the client sends
//!   `{"user":"...","text":"..."}`; after every new message every connection gets the new
//!   snapshot. An invalid post gets `{"error":"..."}` and is not stored.
//! * `rtchat.v1` (preferred when offered): only new messages travel. On connect
//!   `{"type":"history","msg":[...],"last":N}`; then `{"type":"msg","msg":{id,user,text,time}}`
//!   per message. The client posts `{"type":"post","user":"...","text":"...","ref":R}` and gets
//!   `{"type":"ack","ref":R,"id":N}` or `{"type":"error","ref":R,"error":"..."}` (`ref` is any
//!   JSON value of the client's, echoed back, optional). To resume, connect with `?since=ID`:
//!   the server sends exactly the messages after ID as `msg` frames, in order, then
//!   `{"type":"resumed","after":ID,"count":K,"last":N}`, then the live ones — no `history`. If ID is newer than anything this server handed out (it restarted
//!   with an empty memory store) it sends `{"type":"reset","last":N}` and then `history`; if
//!   the messages after ID are no longer kept, `{"type":"truncated","after":ID}` comes first.
//!
//! Binary messages close the connection with 1003; a bad frame closes it with the code RFC
//! 6455 names (1002, 1007, 1009), done by [`rtchat_ws`]. Frames of the fan-out are encoded once
//! per message and shared by all connections ([`rtchat_core::Entry::encoded`]).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use hyper_util::rt::TokioIo;
use rtchat_core::{Delivery, Entry, Hub, NewPost, PostError, Snapshot, Subscription};
use rtchat_ws::handshake::{
    select_subprotocol, switching_protocols, validate_request, HandshakeError,
};
use rtchat_ws::{CloseCode, EncodedFrame, Message, WebSocket};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::api::ApiError;
use crate::router::AppState;

/// The course's subprotocol: full snapshots.
pub const JSON: &str = "json";
/// rtchat's own subprotocol: deltas, acks, typed errors, resume.
pub const RTCHAT_V1: &str = "rtchat.v1";
/// Messages read from the store per step while catching up.
const PAGE: usize = 500;
/// Posts one connection may have waiting for the store before it stops reading more.
const MAX_IN_FLIGHT: usize = 256;

/// Which wire format a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Snapshots,
    Deltas,
}

/// `GET /ws` (any method reaches it, so non-GET gets the handshake's precise 405).
pub async fn upgrade(State(state): State<AppState>, req: Request) -> Response {
    accept(state, req).await
}

async fn accept(state: AppState, mut req: Request) -> Response {
    let validated = match validate_request(req.method(), req.version(), req.headers()) {
        Ok(v) => v,
        Err(e) => return handshake_error(&e),
    };
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    if let Err(origin) = state.origins.check(req.headers(), authority.as_deref()) {
        tracing::warn!(%origin, "WebSocket refused: foreign origin");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("origin {origin} may not open WebSockets here; start rtchat with --allow-origin {origin}"),
        )
        .into_response();
    }
    let protocol = select_subprotocol(req.headers(), &[RTCHAT_V1, JSON]);
    let mode = if protocol == Some(RTCHAT_V1) {
        Mode::Deltas
    } else {
        Mode::Snapshots
    };
    let since = match since_param(req.uri().query()) {
        Ok(since) => since,
        Err(e) => return e.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let config = state.config.websocket.clone();
    let hub = state.hub.clone();
    let shutdown = state.shutdown.clone();
    // Subscribe before answering 101, so no message posted after the handshake is missed.
    let subscription = hub.subscribe();
    state.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let ws = WebSocket::new(TokioIo::new(upgraded), config);
                let conn = Connection {
                    ws,
                    in_flight: FuturesOrdered::new(),
                    mode,
                    hub,
                    subscription,
                    shutdown,
                };
                conn.run(since).await;
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    switching_protocols(&validated, protocol).map(|()| Body::empty())
}

/// A handshake refusal as JSON, with the headers RFC 6455 asks for (e.g. the supported
/// `Sec-WebSocket-Version` with 426).
fn handshake_error(e: &HandshakeError) -> Response {
    let mut response = ApiError::new(e.status(), e.reason()).into_response();
    response.headers_mut().extend(e.response_headers());
    response
}

fn since_param(query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("since=") {
            return value.parse().map(Some).map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("since must be a message id, got {value:?}"),
                )
            });
        }
    }
    Ok(None)
}

/// Frame caches (keys of `Entry::encoded` / `Snapshot::encoded`).
#[derive(Clone)]
struct SnapshotFrame(EncodedFrame);
#[derive(Clone)]
struct HistoryFrame(EncodedFrame);
#[derive(Clone)]
struct DeltaFrame(EncodedFrame);

fn snapshot_frame(snapshot: &Snapshot) -> EncodedFrame {
    let SnapshotFrame(frame) =
        snapshot.encoded(|s| SnapshotFrame(EncodedFrame::text(s.json.clone())));
    frame
}

fn history_frame(snapshot: &Snapshot) -> EncodedFrame {
    let HistoryFrame(frame) = snapshot.encoded(|s| {
        let mut out = BytesMut::with_capacity(s.json.len() + 20);
        out.put_slice(b"{\"type\":\"history\",");
        out.put_slice(&s.json[1..]);
        HistoryFrame(EncodedFrame::text(out.freeze()))
    });
    frame
}

fn delta_frame(entry: &Entry) -> EncodedFrame {
    let DeltaFrame(frame) = entry.encoded(|e| {
        let mut out = BytesMut::with_capacity(e.json.len() + 24);
        out.put_slice(b"{\"type\":\"msg\",\"msg\":");
        out.put_slice(&e.json);
        out.put_u8(b'}');
        DeltaFrame(EncodedFrame::text(out.freeze()))
    });
    frame
}

fn text(value: Value) -> EncodedFrame {
    EncodedFrame::text(Bytes::from(value.to_string()))
}

/// Why a connection ends, for the close frame.
enum End {
    /// The peer closed, or the connection failed (the library already sent any close frame).
    Gone,
    Close(CloseCode, &'static str),
}

/// A post of this connection waiting for the store, with the client's `ref`.
type InFlight = BoxFuture<'static, (Option<Value>, Result<Arc<Entry>, PostError>)>;

struct Connection<S> {
    ws: WebSocket<S>,
    /// This connection's posts queued in the hub, oldest first.
    in_flight: FuturesOrdered<InFlight>,
    mode: Mode,
    hub: Hub,
    subscription: Subscription,
    shutdown: CancellationToken,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Connection<S> {
    async fn run(mut self, since: Option<u64>) {
        let end = match self.start(since).await {
            Ok(()) => self.serve().await,
            Err(end) => end,
        };
        if let End::Close(code, reason) = end {
            let _ = self.ws.close(code, reason).await;
        }
    }

    /// What a connection gets first: the history, or (rtchat.v1 with `since`) what it missed.
    async fn start(&mut self, since: Option<u64>) -> Result<(), End> {
        let snapshot = self.subscription.snapshot().clone();
        match (self.mode, since) {
            (Mode::Snapshots, _) => self.send(&snapshot_frame(&snapshot)).await,
            (Mode::Deltas, Some(id)) if id <= snapshot.last_id => {
                self.subscription.resume_after(id);
                let count = self.catch_up().await?;
                let last = self.subscription.last_seen();
                self.send(&text(
                    json!({"type": "resumed", "after": id, "count": count, "last": last}),
                ))
                .await
            }
            (Mode::Deltas, since) => {
                if since.is_some() {
                    self.send(&text(json!({"type": "reset", "last": snapshot.last_id})))
                        .await?;
                }
                self.send(&history_frame(&snapshot)).await
            }
        }
    }

    /// Sends every message after the subscription's position, from the store, in order;
    /// returns how many.
    async fn catch_up(&mut self) -> Result<usize, End> {
        let mut count = 0;
        loop {
            let after = self.subscription.last_seen();
            let page = self
                .subscription
                .catch_up(PAGE)
                .await
                .map_err(|_| End::Close(CloseCode::INTERNAL, "the message store failed"))?;
            if page.truncated {
                self.send(&text(json!({"type": "truncated", "after": after})))
                    .await?;
            }
            for entry in &page.entries {
                self.send(&delta_frame(entry)).await?;
            }
            count += page.entries.len();
            if !page.more {
                return Ok(count);
            }
        }
    }

    async fn serve(&mut self) -> End {
        loop {
            let step = tokio::select! {
                incoming = self.ws.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => match incoming {
                    Ok(Message::Text(text)) => self.on_post(text.as_bytes()).await,
                    Ok(Message::Binary(_)) => Err(End::Close(
                        CloseCode::UNSUPPORTED,
                        "binary messages are not supported; send JSON text",
                    )),
                    Ok(Message::Close(_)) | Err(_) => Err(End::Gone),
                },
                Some((reference, stored)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.reply(reference, stored.map_err(|e| e.to_string())).await
                }
                delivery = self.subscription.recv() => match delivery {
                    Some(Delivery::Event(event)) => match self.mode {
                        Mode::Snapshots => self.send(&snapshot_frame(&event.snapshot)).await,
                        Mode::Deltas => self.send(&delta_frame(&event.entry)).await,
                    },
                    // Slow consumer: a fresh snapshot supersedes what was skipped; deltas are
                    // re-read from the store so nothing is lost.
                    Some(Delivery::Lagged { .. }) => match self.mode {
                        Mode::Snapshots => self.send(&snapshot_frame(&self.hub.snapshot())).await,
                        Mode::Deltas => self.catch_up().await.map(drop),
                    },
                    None => Err(End::Close(CloseCode::GOING_AWAY, "server shutting down")),
                },
                () = self.shutdown.cancelled() => Err(End::Close(CloseCode::GOING_AWAY, "server shutting down")),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    async fn on_post(&mut self, body: &Bytes) -> Result<(), End> {
        let limits = self.hub.config().limits;
        let value: Result<Value, String> =
            serde_json::from_slice(body).map_err(|e| PostError::Json(e.to_string()).to_string());
        let reference = value.as_ref().ok().and_then(|v| v.get("ref").cloned());
        let post = value.and_then(|value| {
            if self.mode == Mode::Deltas
                && value.get("type").and_then(Value::as_str) != Some("post")
            {
                return Err("rtchat.v1 messages need \"type\":\"post\"".to_owned());
            }
            NewPost::from_value(&value, &limits).map_err(|e| e.to_string())
        });
        match post {
            // Queued in order; the ack follows once it is stored, while this loop goes on
            // reading (a client may have many posts in flight).
            Ok(post) => match self.hub.submit(post).await {
                Ok(ticket) => {
                    self.in_flight
                        .push_back(Box::pin(async move { (reference, ticket.await) }));
                    Ok(())
                }
                Err(e) => self.reply(reference, Err(e.to_string())).await,
            },
            Err(e) => self.reply(reference, Err(e)).await,
        }
    }

    /// Answers a post: rtchat.v1 acks or errors with the client's `ref`; the course's
    /// protocol only reports errors (the next snapshot shows a stored post).
    async fn reply(
        &mut self,
        reference: Option<Value>,
        result: Result<Arc<Entry>, String>,
    ) -> Result<(), End> {
        let reply = match (self.mode, result) {
            (Mode::Snapshots, Ok(_)) => return Ok(()),
            (Mode::Snapshots, Err(error)) => json!({ "error": error }),
            (Mode::Deltas, Ok(entry)) => {
                json!({"type": "ack", "ref": reference, "id": entry.message.id})
            }
            (Mode::Deltas, Err(error)) => {
                json!({"type": "error", "ref": reference, "error": error})
            }
        };
        self.send(&text(reply)).await
    }

    async fn send(&mut self, frame: &EncodedFrame) -> Result<(), End> {
        self.ws.send_encoded(frame).await.map_err(|e| {
            tracing::debug!(error = %e, "WebSocket send failed");
            End::Gone
        })
    }
}

#[cfg(test)]
mod tests {
    use super::since_param;

    #[test]
    fn since_is_read_from_the_query() {
        assert_eq!(since_param(None).unwrap(), None);
        assert_eq!(since_param(Some("a=1&since=42")).unwrap(), Some(42));
        assert!(since_param(Some("since=x")).is_err());
    }
}

//! The chat over WebSockets, on rtchat's own RFC 6455 implementation ([`rtchat_ws`]).
//!
//! Upgrades are accepted at `/ws` and at `/` (the course's client connects to
//! `ws://localhost:8080`). Two subprotocols:
//!
//! * `json` (the course's; also what a client offering no subprotocol gets): on connect a text
//!   frame `{"msg":[...],"last":N,"epoch":E}` with the history, newest first; the client sends
//!   `{"user":"...","text":"..."}`; after every new message every connection gets the new
//!   snapshot. An invalid post gets `{"error":"..."}` and is not stored.
//! * `rtchat.v1` (preferred when offered): only new messages travel. On connect
//!   `{"type":"history","msg":[...],"last":N,"epoch":E}`; then `{"type":"msg","msg":{id,user,text,time}}`
//!   per message. The client posts `{"type":"post","user":"...","text":"...","ref":R}` and gets
//!   `{"type":"ack","ref":R,"id":N}` or `{"type":"error","ref":R,"error":"..."}` (`ref` is any
//!   JSON value of the client's, echoed back, optional). To resume, connect with `?since=ID`:
//!   the server sends exactly the messages after ID as `msg` frames, in order, then
//!   `{"type":"resumed","after":ID,"count":K,"last":N,"epoch":E}`, then the live ones — no
//!   `history`. `?since=ID&epoch=E` names the epoch too; if it is another epoch, or ID is newer
//!   than anything this server handed out (it restarted with an empty memory store), it sends
//!   `{"type":"reset","last":N,"epoch":E}` and then `history`; if
//!   the messages after ID are no longer kept, `{"type":"truncated","after":ID}` comes first.
//!
//! Posts obey the post rate limits ([`crate::rate_limit`]): one refused gets an error frame
//! (with `retry_after_ms`); ten refused in a row close the connection with 1008.
//!
//! Binary messages close the connection with 1003; a bad frame closes it with the code RFC
//! 6455 names (1002, 1007, 1009), done by [`rtchat_ws`]. Frames of the fan-out are encoded once
//! per message and shared by all connections ([`rtchat_core::Entry::encoded`]).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::SEC_WEBSOCKET_EXTENSIONS;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{Either, FutureExt};
use hyper_util::rt::TokioIo;
use rtchat_core::{
    Delivery, Entry, NewPost, Position, PostError, Snapshot, Start, Subscription, Ticket,
    TrySubmitError, GENERAL,
};
use rtchat_ws::handshake::{select_subprotocol, validate, HandshakeError};
use rtchat_ws::{CloseCode, EncodedFrame, Message, SharedMessage, WebSocket};
use serde_json::Value;

use crate::admission::{Admission, Admitted};
use crate::api::ApiError;
use crate::drain::Deadline;
use crate::metrics::{Counted, PostRefusal, Via};
use crate::rate_limit::{ConnectionBucket, Refused, WS_CLOSE_REASON, WS_REFUSALS_BEFORE_CLOSE};
use crate::state::AppState;
use axum::routing::any;
use axum::Router;
use rtchat_protocol::http::WS;
use rtchat_protocol::shapes::{Reset, Resumed, Truncated};
use rtchat_protocol::v1::{self, ServerFrame};
use rtchat_protocol::ErrorBody;

/// The course's subprotocol: full snapshots.
pub const JSON: &str = v1::JSON_SUBPROTOCOL;
/// rtchat's own subprotocol: deltas, acks, typed errors, resume.
pub const RTCHAT_V1: &str = v1::SUBPROTOCOL;
/// Messages read from the store per step while catching up.
const PAGE: usize = 500;
/// Hub messages already waiting that one write may carry (see `send_encoded_batch`).
const MAX_BATCH: usize = 32;
/// Posts one connection may have waiting for the store before it stops reading more.
const MAX_IN_FLIGHT: usize = 256;

/// Which wire format a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Snapshots,
    Deltas,
}

/// `/ws`: the WebSocket upgrade (HTTP/1.1) or extended CONNECT (HTTP/2). `/` also leads
/// here for a client asking to upgrade (see the router).
pub fn routes() -> Router<AppState> {
    Router::new().route(WS, any(upgrade))
}

/// `GET /ws` (any method reaches it, so non-GET gets the handshake's precise 405).
pub async fn upgrade(State(state): State<AppState>, req: Request) -> Response {
    accept(state, req).await
}

async fn accept(state: AppState, mut req: Request) -> Response {
    // HTTP/1.1 upgrade, or HTTP/2 extended CONNECT (RFC 8441) with `:protocol` websocket.
    let connect_protocol = req.extensions().get::<hyper::ext::Protocol>();
    let connect_protocol = connect_protocol.map(|p| p.as_str().to_owned());
    let validated = match validate(
        req.method(),
        req.version(),
        req.headers(),
        connect_protocol.as_deref(),
    ) {
        Ok(v) => v,
        Err(e) => return handshake_error(&e),
    };
    if let Err(reason) = state.origins.check_for(&req, "open WebSockets") {
        tracing::warn!(%reason, "WebSocket refused: foreign origin");
        return ApiError::new(StatusCode::FORBIDDEN, reason).into_response();
    }
    let protocol = select_subprotocol(req.headers(), &[RTCHAT_V1, JSON]);
    // permessage-deflate (`--ws-deflate`): compressed frames of the fan-out are shared.
    let deflate = state.config.websocket.deflate.as_ref();
    let deflate = deflate.and_then(|d| rtchat_ws::deflate::negotiate(req.headers(), d));
    let mode = if protocol == Some(RTCHAT_V1) {
        Mode::Deltas
    } else {
        Mode::Snapshots
    };
    let position = match position_param(req.uri().query()) {
        // The course's `json` protocol has no resume: its first snapshot is the history.
        Ok(position) => position.filter(|_| mode == Mode::Deltas),
        Err(e) => return e.into_response(),
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // The upgraded connection keeps its place under the connection caps.
    let slot = upgraded_place(&state.admission, &req);
    let client = state.proxies.client(&req).map(|c| c.ip);
    let posts = PostGate::new(state.clone(), client);
    let config = state.config.websocket.clone();
    // Once the server stops, closed (1001) at this moment of the close window.
    let shutdown = state.drain.deadline();
    // Subscribe before answering 101, so no message posted after the handshake is missed.
    let opened = match state.hub.subscribe(GENERAL, position.as_ref()).await {
        Ok(opened) => opened,
        Err(e) => {
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    };
    let (start, subscription) = (opened.start, opened.subscription);
    // The task becomes the connection's future once the upgrade completes, so what was
    // captured for the upgrade is not kept next to it for the connection's life (one `async`
    // block doing both would keep its captures and the moved-from `Connection` in the task).
    let task = on_upgrade.then(move |upgraded| match upgraded {
        Ok(upgraded) => {
            let via = match mode {
                Mode::Snapshots => Via::WsJson,
                Mode::Deltas => Via::Ws,
            };
            let mut conn = Connection {
                ws: WebSocket::new(TokioIo::new(upgraded), config).with_deflate(deflate),
                in_flight: VecDeque::new(),
                mode,
                subscription,
                shutdown,
                _open: posts.state.metrics.client(via),
                posts,
                _slot: slot,
            };
            // Not an `async fn` of `Connection`: one taking `self` by value would hold it
            // twice, and its arguments would be copied next to the captures.
            Either::Left(async move {
                let end = match conn.start(start).await {
                    Ok(()) => conn.serve().await,
                    Err(end) => end,
                };
                if let End::Close(code, reason) = end {
                    let _ = conn.ws.close(code, reason).await;
                }
            })
        }
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket upgrade failed");
            Either::Right(std::future::ready(()))
        }
    });
    state.tasks.spawn(task);
    let mut response = validated.response(protocol).map(|()| Body::empty());
    if let Some(d) = &deflate {
        let headers = response.headers_mut();
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, d.response_header());
    }
    response
}

/// A handshake refusal as JSON, with the headers RFC 6455 asks for (e.g. the supported
/// `Sec-WebSocket-Version` with 426).
fn handshake_error(e: &HandshakeError) -> Response {
    let mut response = ApiError::new(e.status(), e.reason()).into_response();
    response.headers_mut().extend(e.response_headers());
    response
}

/// `?since=ID&epoch=E` on the upgrade URL: where a rtchat.v1 client resumes.
fn position_param(query: Option<&str>) -> Result<Option<Position>, ApiError> {
    let Some(query) = query else { return Ok(None) };
    let (mut since, mut epoch) = (None, None);
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("since=") {
            since = Some(value.parse().map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("since must be a message id, got {value:?}"),
                )
            })?);
        } else if let Some(value) = pair.strip_prefix("epoch=") {
            epoch = Some(value.to_owned());
        }
    }
    Ok(since.map(|after| Position::new(after, epoch)))
}

/// Frame caches (keys of `Entry::encoded` / `Snapshot::encoded`): each message's frame is
/// encoded once, and compressed once per window size connections agreed on (permessage-
/// deflate, [`SharedMessage`]); every connection sends the same bytes.
#[derive(Clone)]
struct SnapshotFrame(SharedMessage);
#[derive(Clone)]
struct HistoryFrame(SharedMessage);
#[derive(Clone)]
struct DeltaFrame(SharedMessage);

fn snapshot_frame(snapshot: &Snapshot) -> SharedMessage {
    let SnapshotFrame(frame) =
        snapshot.encoded(|s| SnapshotFrame(SharedMessage::text(s.json.clone())));
    frame
}

fn history_frame(snapshot: &Snapshot) -> SharedMessage {
    let HistoryFrame(frame) = snapshot.encoded(|s| {
        let mut out = BytesMut::with_capacity(s.json.len() + 20);
        out.put_slice(b"{\"type\":\"history\",");
        out.put_slice(&s.json[1..]);
        HistoryFrame(SharedMessage::text(out.freeze()))
    });
    frame
}

fn delta_frame(entry: &Entry) -> SharedMessage {
    let DeltaFrame(frame) = entry.encoded(|e| {
        let mut out = BytesMut::with_capacity(e.json.len() + 24);
        out.put_slice(b"{\"type\":\"msg\",\"msg\":");
        out.put_slice(&e.json);
        out.put_u8(b'}');
        DeltaFrame(SharedMessage::text(out.freeze()))
    });
    frame
}

fn text(frame: &impl serde::Serialize) -> EncodedFrame {
    EncodedFrame::text(Bytes::from(
        serde_json::to_vec(frame).expect("frames serialize"),
    ))
}

/// What one turn of [`Connection::serve`] does once something happened.
enum Step {
    Nothing,
    Send(EncodedFrame),
    /// A message of the hub for this connection (others may be waiting right behind it),
    /// and its commit time if it is sampled for the fan-out latency.
    Deliver(EncodedFrame, Option<Instant>),
    /// A post waiting for room in the hub's queue (boxed: rare, and this is kept small).
    Wait(Box<(Option<Value>, NewPost)>),
    /// Re-read what a lagging delta connection missed.
    CatchUp,
}

/// Why a post was not taken: the hub's reasons, a frame that is not a post at all, or a rate
/// limit.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    Post(PostError),
    #[error("rtchat.v1 messages need \"type\":\"post\"")]
    NotAPost,
    #[error("{0}")]
    RateLimited(Refused),
}

impl Refusal {
    fn retry_after_ms(&self) -> Option<u64> {
        match self {
            Refusal::RateLimited(refused) => Some(refused.retry_after_ms()),
            _ => None,
        }
    }
}

/// A connection's post rate limits: its own bucket (made on its first post) and its client
/// address's, and how many posts in a row they refused.
struct PostGate {
    state: AppState,
    client: Option<IpAddr>,
    bucket: Option<Box<ConnectionBucket>>,
    refused_in_a_row: u32,
}

impl PostGate {
    fn new(state: AppState, client: Option<IpAddr>) -> PostGate {
        PostGate {
            state,
            client,
            bucket: None,
            refused_in_a_row: 0,
        }
    }

    /// Takes a post, or refuses it; `Err(End)` once [`WS_REFUSALS_BEFORE_CLOSE`] posts in a
    /// row were refused (the client ignores its `error` frames).
    fn check(&mut self) -> Result<Result<(), Refused>, End> {
        if self.bucket.is_none() {
            self.bucket = self.state.posts.connection_bucket();
        }
        match self.state.posts.check(self.bucket.as_deref(), self.client) {
            Ok(()) => {
                self.refused_in_a_row = 0;
                Ok(Ok(()))
            }
            Err(refused) => {
                self.refused_in_a_row += 1;
                if self.refused_in_a_row >= WS_REFUSALS_BEFORE_CLOSE {
                    // Not answered (the connection closes): counted here.
                    self.state.metrics.rate_limited(&refused);
                    return Err(End::Close(CloseCode::POLICY, WS_CLOSE_REASON));
                }
                Ok(Err(refused))
            }
        }
    }
}

/// Why a connection ends, for the close frame.
enum End {
    /// The peer closed, or the connection failed (the library already sent any close frame).
    Gone,
    Close(CloseCode, &'static str),
}

/// A post of this connection waiting for the store, with the client's `ref`.
type InFlight = (Option<Value>, Ticket);

/// One WebSocket connection. It and its `start`/`serve` futures are the whole task of an
/// idle connection, so they are kept small: rarely taken paths that would widen every await
/// point (resuming, lag recovery, waiting for room in the hub's queue) are boxed, and
/// nothing is allocated before it is needed.
struct Connection<S> {
    ws: WebSocket<S>,
    /// This connection's posts queued in the hub, oldest first. The hub stores posts in the
    /// order they were submitted, so only the oldest ticket needs polling.
    in_flight: VecDeque<InFlight>,
    mode: Mode,
    subscription: Subscription,
    shutdown: Deadline,
    /// Counted in `rtchat_clients` while it lives.
    _open: Counted,
    posts: PostGate,
    /// The connection's place under the connection caps, kept after the upgrade.
    _slot: Option<Admitted>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Connection<S> {
    /// How the metrics name this connection's transport.
    fn via(&self) -> Via {
        match self.mode {
            Mode::Snapshots => Via::WsJson,
            Mode::Deltas => Via::Ws,
        }
    }

    /// What a connection gets first, as the door decided: the history, or (rtchat.v1 with
    /// `since`) what it missed, or a reset and then the history.
    async fn start(&mut self, start: Start) -> Result<(), End> {
        match start {
            // Rare (a reconnect) and wide: boxed so it does not widen this future.
            Start::Resume { after } => return Box::pin(self.resume(after)).await,
            Start::Reset => {
                let snapshot = self.subscription.snapshot();
                let reset = ServerFrame::Reset(Reset {
                    last: snapshot.last_id,
                    epoch: snapshot.epoch.to_string(),
                });
                self.send(&text(&reset)).await?;
            }
            Start::Fresh => {}
        }
        let history = match self.mode {
            Mode::Snapshots => snapshot_frame(self.subscription.snapshot()),
            Mode::Deltas => history_frame(self.subscription.snapshot()),
        };
        self.send(&self.ws.frame_for(&history)).await
    }

    /// rtchat.v1 with `?since=ID`: the messages after ID, then `resumed`.
    async fn resume(&mut self, id: u64) -> Result<(), End> {
        let count = self.catch_up().await?;
        let last = self.subscription.last_seen();
        let epoch = self.subscription.snapshot().epoch.clone();
        self.send(&text(&ServerFrame::Resumed(Resumed {
            after: id,
            count: count as u64,
            last,
            epoch: epoch.to_string(),
        })))
        .await
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
                self.send(&text(&ServerFrame::Truncated(Truncated { after })))
                    .await?;
            }
            for entry in &page.entries {
                let frame = self.ws.frame_for(&delta_frame(entry));
                self.send(&frame).await?;
            }
            count += page.entries.len();
            let metrics = &self.posts.state.metrics;
            metrics.delivered_untimed(self.via(), page.entries.len());
            if !page.more {
                return Ok(count);
            }
        }
    }

    /// The connection's life after `start`. The `select!` arms only decide what to do (its
    /// futures stay alive while an arm runs, so an `await` there would add to them); the
    /// awaits come after it. This future is most of an idle connection's task.
    async fn serve(&mut self) -> End {
        loop {
            let step = tokio::select! {
                incoming = self.ws.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => match incoming {
                    Ok(Message::Text(text)) => self.on_post(text.as_bytes()),
                    Ok(Message::Binary(_)) => Err(End::Close(
                        CloseCode::UNSUPPORTED,
                        "binary messages are not supported; send JSON text",
                    )),
                    Ok(Message::Close(_)) | Err(_) => Err(End::Gone),
                },
                stored = poll_fn(|cx| match self.in_flight.front_mut() {
                    Some((_, ticket)) => ticket.poll_unpin(cx),
                    None => Poll::Pending,
                }), if !self.in_flight.is_empty() => {
                    let (reference, _) = self.in_flight.pop_front().expect("polled the oldest post");
                    Ok(self.reply(reference, stored.map_err(Refusal::Post)).map_or(Step::Nothing, Step::Send))
                }
                delivery = self.subscription.recv() => match delivery {
                    Some(delivery) => Ok(self.on_delivery(delivery)),
                    None => Err(End::Close(CloseCode::GOING_AWAY, "server shutting down")),
                },
                () = self.shutdown.reached() => Err(End::Close(CloseCode::GOING_AWAY, "server shutting down")),
            };
            let frame = match step {
                Ok(Step::Send(frame)) => frame,
                // Under load several messages are often waiting already: they go out in one
                // write (a system call per message is what limits fan-out).
                Ok(Step::Deliver(first, mut sample)) => {
                    // Allocated only when a second message is waiting.
                    let mut more: Vec<EncodedFrame> = Vec::new();
                    let mut then = Step::Nothing;
                    while more.len() + 1 < MAX_BATCH {
                        match self.subscription.try_recv().map(|d| self.on_delivery(d)) {
                            Some(Step::Deliver(frame, sampled)) => {
                                if more.is_empty() {
                                    more.push(first.clone());
                                }
                                more.push(frame);
                                sample = sample.or(sampled);
                            }
                            Some(other) => {
                                then = other;
                                break;
                            }
                            None => break,
                        }
                    }
                    let sent = if more.is_empty() {
                        self.send(&first).await
                    } else {
                        self.send_batch(&more).await
                    };
                    if let Err(end) = sent {
                        return end;
                    }
                    let messages = more.len().max(1);
                    let metrics = &self.posts.state.metrics;
                    metrics.delivered(self.via(), messages, sample);
                    match then {
                        Step::Send(frame) => frame,
                        Step::CatchUp => match Box::pin(self.catch_up()).await {
                            Ok(_) => continue,
                            Err(end) => return end,
                        },
                        _ => continue,
                    }
                }
                Ok(Step::Nothing) => continue,
                // Rare and wide, so boxed: the hub's queue is full (the store lags behind),
                // or this delta connection fell behind the hub.
                Ok(Step::Wait(waiting)) => {
                    let (reference, post) = *waiting;
                    match Box::pin(self.submit_waiting(reference, post)).await {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
                Ok(Step::CatchUp) => match Box::pin(self.catch_up()).await {
                    Ok(_) => continue,
                    Err(end) => return end,
                },
                Err(end) => return end,
            };
            if let Err(end) = self.send(&frame).await {
                return end;
            }
        }
    }

    /// Handles a post: queues it (the ack follows once it is stored, while the connection
    /// goes on reading: a client may have many posts in flight) or answers the error. Every
    /// post frame counts against the rate limits, valid or not; too many refused in a row
    /// close the connection.
    fn on_post(&mut self, body: &Bytes) -> Result<Step, End> {
        // Every outcome is counted in `reply`, which answers it.
        let (reference, post) = self.parse_post(body);
        if let Err(refused) = self.posts.check()? {
            return Ok(self.queued(reference, Err(Refusal::RateLimited(refused))));
        }
        Ok(self.submit_post(reference, post))
    }

    fn submit_post(&mut self, reference: Option<Value>, post: Result<NewPost, Refusal>) -> Step {
        let submitted = match post {
            Ok(post) => match self.subscription.hub().try_submit(GENERAL, post) {
                Ok(ticket) => Ok(ticket),
                Err(TrySubmitError::Full(post)) => return Step::Wait(Box::new((reference, post))),
                Err(TrySubmitError::ShuttingDown) => Err(Refusal::Post(PostError::ShuttingDown)),
            },
            Err(e) => Err(e),
        };
        self.queued(reference, submitted)
    }

    /// [`Connection::on_post`] when the hub's queue is full: waits for room.
    async fn submit_waiting(
        &mut self,
        reference: Option<Value>,
        post: NewPost,
    ) -> Option<EncodedFrame> {
        let submitted = self
            .subscription
            .hub()
            .submit(GENERAL, post)
            .await
            .map_err(Refusal::Post);
        match self.queued(reference, submitted) {
            Step::Send(frame) => Some(frame),
            _ => None,
        }
    }

    /// Tracks a submitted post, or answers its error.
    fn queued(&mut self, reference: Option<Value>, submitted: Result<Ticket, Refusal>) -> Step {
        match submitted {
            Ok(ticket) => {
                self.in_flight.push_back((reference, ticket));
                Step::Nothing
            }
            Err(e) => self
                .reply(reference, Err(e))
                .map_or(Step::Nothing, Step::Send),
        }
    }

    /// A post's `ref` and the post, or why it is invalid.
    fn parse_post(&self, body: &Bytes) -> (Option<Value>, Result<NewPost, Refusal>) {
        let limits = self.subscription.hub().config().limits;
        let value: Result<Value, Refusal> =
            serde_json::from_slice(body).map_err(|e| Refusal::Post(PostError::Json(e.to_string())));
        let reference = value.as_ref().ok().and_then(|v| v.get("ref").cloned());
        let post = value.and_then(|value| {
            if self.mode == Mode::Deltas
                && value.get("type").and_then(Value::as_str) != Some(v1::POST_TYPE)
            {
                return Err(Refusal::NotAPost);
            }
            NewPost::from_value(&value, &limits).map_err(Refusal::Post)
        });
        (reference, post)
    }

    /// Answers a post: rtchat.v1 acks or errors with the client's `ref`; the course's
    /// protocol only reports errors (the next snapshot shows a stored post). A plain function
    /// building the frame, so awaiting its sending holds just the frame.
    fn reply(
        &self,
        reference: Option<Value>,
        result: Result<Arc<Entry>, Refusal>,
    ) -> Option<EncodedFrame> {
        let metrics = &self.posts.state.metrics;
        match &result {
            Ok(_) => metrics.post_accepted(self.via()),
            Err(Refusal::Post(e)) => metrics.post_refused(PostRefusal::of(e)),
            Err(Refusal::NotAPost) => metrics.post_refused(PostRefusal::Invalid),
            Err(Refusal::RateLimited(refused)) => metrics.rate_limited(refused),
        }
        let reply = match (self.mode, result) {
            (Mode::Snapshots, Ok(_)) => return None,
            (Mode::Snapshots, Err(error)) => {
                return Some(text(&ErrorBody {
                    error: error.to_string(),
                    retry_after_ms: error.retry_after_ms(),
                }))
            }
            (Mode::Deltas, Ok(entry)) => ServerFrame::Ack {
                reference: reference.unwrap_or_default(),
                id: entry.message.id,
            },
            (Mode::Deltas, Err(error)) => ServerFrame::Error {
                reference: reference.unwrap_or_default(),
                retry_after_ms: error.retry_after_ms(),
                error: error.to_string(),
            },
        };
        Some(text(&reply))
    }

    /// What to do with one delivery of the hub.
    fn on_delivery(&self, delivery: Delivery) -> Step {
        match delivery {
            Delivery::Event(event) => Step::Deliver(
                self.ws.frame_for(&match self.mode {
                    Mode::Snapshots => snapshot_frame(&event.snapshot),
                    Mode::Deltas => delta_frame(&event.entry),
                }),
                self.posts.state.metrics.sample(&event.entry),
            ),
            // Slow consumer: a fresh snapshot supersedes what was skipped; deltas are re-read
            // from the store so nothing is lost.
            Delivery::Lagged { .. } => match self.mode {
                Mode::Snapshots => Step::Send(
                    self.ws
                        .frame_for(&snapshot_frame(&self.subscription.current())),
                ),
                Mode::Deltas => Step::CatchUp,
            },
        }
    }

    async fn send_batch(&mut self, frames: &[EncodedFrame]) -> Result<(), End> {
        self.ws.send_encoded_batch(frames).await.map_err(|e| {
            tracing::debug!(error = %e, "WebSocket send failed");
            End::Gone
        })
    }

    async fn send(&mut self, frame: &EncodedFrame) -> Result<(), End> {
        self.ws.send_encoded(frame).await.map_err(|e| {
            tracing::debug!(error = %e, "WebSocket send failed");
            End::Gone
        })
    }
}

/// A place under the connection caps for an HTTP/1.1 connection about to become a
/// WebSocket: hyper's connection task, which holds the connection's own place, ends at the
/// upgrade. A WebSocket on an HTTP/2 stream (RFC 8441) needs none: its connection lives on.
pub(crate) fn upgraded_place<B>(
    admission: &Arc<Admission>,
    req: &axum::http::Request<B>,
) -> Option<Admitted> {
    if req.version() != axum::http::Version::HTTP_11 {
        return None;
    }
    let peer = req.extensions().get::<crate::client_addr::Peer>()?;
    Some(admission.keep(peer.addr.ip()))
}

#[cfg(test)]
mod tests {

    use super::position_param;
    use rtchat_core::Position;

    #[test]
    fn the_position_is_read_from_the_query() {
        assert_eq!(position_param(None).unwrap(), None);
        assert_eq!(
            position_param(Some("a=1&since=42")).unwrap(),
            Some(Position::new(42, None))
        );
        assert_eq!(
            position_param(Some("epoch=ab12cd34&since=7")).unwrap(),
            Some(Position::new(7, Some("ab12cd34".into())))
        );
        assert_eq!(position_param(Some("epoch=ab12cd34")).unwrap(), None);
        assert!(position_param(Some("since=x")).is_err());
    }
}

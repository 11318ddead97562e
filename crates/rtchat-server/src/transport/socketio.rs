//! Socket.IO (Engine.IO v4 / Socket.IO v5, the current official clients) through
//! [`socketioxide`], on the default namespace `/` at `/socket.io/`, over both Engine.IO
//! transports (HTTP long-polling and WebSocket, with the upgrade from one to the other).
//!
//! # Events
//! * server → client `msg:get` `{"msg":[...],"last":N,"epoch":E}` — the history, newest first (the
//!   course's event). Sent on connect, and after every new message to the sockets in the
//!   room `msg:get` (every socket unless its handshake says `snapshots: false`).
//! * server → client `msg:new` `{"id","user","text","time"}` — rtchat's own event: only the new
//!   message, to the sockets in the room `msg:new` (every socket).
//! * server → client `msg:since` `{"msg":[...],"last":N,"more":bool}` — on a resumed connection
//!   (handshake `auth: {last: ID, epoch: E}`; another epoch gets `msg:get` with `"reset":true`), exactly the messages after `ID`, in pages shaped like
//!   `GET /poll?since=ID` answers (the oldest page first, each newest first); every page but
//!   the last has `"more":true`. The last page comes even when nothing was missed.
//! * client → server `msg:post` `{user, text}` — validated like `POST /poll`, stored, then
//!   broadcast to every transport. With an acknowledgement callback the client gets
//!   `{"status":"ok","id":N}` or `{"error":"..."}`; without one, an error comes back as a
//!   `msg:error` `{"error":"..."}` event. Posts from one socket are stored in the order sent.
//!   Posts obey the post rate limits ([`crate::rate_limit`]): a refused one is answered at
//!   once, with `"retry_after_ms"`.
//!
//! # One subscription, encoded once
//! A single task (the broadcaster) holds the only hub subscription of the transport and turns
//! each new message into one `msg:get` and one `msg:new` broadcast: socketioxide encodes each
//! packet once and hands the same bytes to every socket in the room. The hub's pre-encoded JSON
//! is passed through as a raw value, never parsed or re-serialized.
//!
//! # Idle sockets
//! An idle socket costs what socketioxide's session needs and little more: rtchat keeps no task,
//! queue or extension per socket until it posts (see `PostChain`), and the request head
//! Engine.IO keeps per session is copied out of hyper's read buffer first (see
//! `detach_head`), so that buffer is freed once the WebSocket is up.
//!
//! # Resume
//! socketioxide does not implement Socket.IO's connection state recovery, so resume is built
//! on rtchat's message ids: clients pass the id of the newest message they hold in the
//! handshake's `auth` (`{last: ID}`; socket.io-client re-reads an `auth` callback on every
//! reconnection). Joining goes through the broadcaster, between two messages: it sends the
//! socket `msg:get`, then `msg:since` with everything after `ID` up to the last message it
//! broadcast, then puts the socket in the rooms, so the socket gets every message exactly once
//! and in order, whatever is posted meanwhile. Gaps are bounded by the store's `--retain`
//! (flag `"truncated":true`). An `ID` newer than anything this server knows (it restarted with
//! an empty memory store) gets `msg:get` with `"reset":true` instead: start over.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use rtchat_core::{
    decide, encode_list_with, page_flags, Delivery, Hub, Limits, NewPost, Position, PostError,
    Snapshot, Start, Subscription, GENERAL,
};
use rtchat_protocol::socketio as sio;
use rtchat_protocol::{ErrorBody, PostAck};
use rust_embed::RustEmbed;
use serde_json::value::RawValue;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, Value};
use socketioxide::socket::Socket;
use socketioxide::{ParserConfig, SocketIo};
use tokio::sync::{mpsc, oneshot};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::api::ApiError;
use crate::drain::Drain;
use crate::origin::OriginPolicy;
use crate::rate_limit::{ConnectionBucket, PostLimiter, Refused};
use crate::state::AppState;

/// Where Engine.IO listens (the official clients' default path).
pub const PATH: &str = rtchat_protocol::http::SOCKETIO;
/// Where the official browser client bundle is served.
pub const BUNDLE_PATH: &str = "/socket.io/socket.io.min.js";
/// The room (and event) of the course's history snapshots.
const ROOM_GET: &str = sio::MSG_GET;
/// The room (and event) of rtchat's one-message deltas.
const ROOM_NEW: &str = sio::MSG_NEW;
/// Packets a socket may have queued before emits to it fail. Broadcast packets share their
/// bytes, so this costs a few words per packet; a socket that falls this far behind is cut off
/// by the ping timeout long before memory matters.
const SOCKET_BUFFER: usize = 4096;
/// Initial read buffer of a WebSocket session (tungstenite's `read_buffer_size`, 4 KiB by
/// default). Every session holds one for its whole life, zero-filled, so it is most of an
/// idle socket's memory; client frames are small (pings, posts) and the buffer grows to fit a
/// bigger frame when one comes, so a small one costs nothing in speed.
const WS_READ_BUFFER: usize = 512;
/// The answer to a `msg:post` carrying binary attachments.
const BINARY_REFUSED: &str =
    "binary attachments are not accepted: \"user\" and \"text\" must be strings";
/// Posts one socket may have in flight (stored in order, one after the other).
const POSTS_IN_FLIGHT: usize = 64;

/// The official `socket.io-client` browser bundle, installed by npm into `vendor/web`
/// (`scripts/setup`) and embedded at build time when present. `build.rs` makes cargo rebuild
/// when `vendor/web` changes, so installing it later and rebuilding is enough.
#[derive(RustEmbed)]
#[folder = "../../vendor/web/node_modules/socket.io-client/dist/"]
#[include = "socket.io.min.js"]
#[include = "socket.io.min.js.map"]
#[allow_missing = true]
struct Bundle;

/// The routes of this transport, merged into the app by the router: Engine.IO at
/// [`PATH`] (behind the origin check, CORS for `--allow-origin` and the payload limit) and
/// the browser bundle. Starts the broadcaster; call once per process, inside the runtime.
pub fn routes(state: &AppState) -> Router<AppState> {
    let config = &state.config;
    let max_payload = config.sio_max_payload.max(1024);
    let (layer, io) = SocketIo::builder()
        .ping_interval(config.sio_ping_interval)
        .ping_timeout(config.sio_ping_timeout)
        .max_payload(max_payload as u64)
        .ws_max_message_size(max_payload)
        .ws_max_frame_size(max_payload)
        .max_buffer_size(SOCKET_BUFFER)
        .ws_read_buffer_size(WS_READ_BUFFER)
        .with_parser(
            ParserConfig::common()
                .max_incoming_binary_buf_size(max_payload)
                .max_incoming_binaries(16),
        )
        .build_layer();

    let hub = state.hub.clone();
    let (joins, joins_rx) = mpsc::channel::<Join>(1024);
    let chat = Chat {
        poster: Poster {
            hub: hub.clone(),
            limits: hub.config().limits,
            state: state.clone(),
        },
        joins,
    };
    let on_connect = {
        let chat = chat.clone();
        move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
            let chat = chat.clone();
            async move { chat.handshake(socket, auth) }
        }
    };
    let connected = {
        let chat = chat.clone();
        move |socket: SocketRef, TryData(auth): TryData<serde_json::Value>| {
            let chat = chat.clone();
            async move { chat.connected(socket, auth.ok()).await }
        }
    };
    io.ns("/", connected.with(on_connect));

    let drain = state.drain.clone();
    let internal = state.clone();
    // Tracked with the WebSockets, so shutdown waits for the sessions' close (see `run`).
    state.tasks.spawn(async move {
        // Sockets that connect meanwhile wait in `joins`.
        let subscription = match hub.subscribe(GENERAL, None).await {
            Ok(opened) => opened.subscription,
            Err(e) => return tracing::error!(error = %e, "Socket.IO cannot subscribe; no fan-out"),
        };
        // Not a client: `/stats` leaves it out of its subscriber count.
        internal
            .internal_subscriptions
            .fetch_add(1, Ordering::Relaxed);
        let broadcaster = Broadcaster {
            io,
            subscription,
            hub,
        };
        broadcaster.run(joins_rx, drain).await;
        internal
            .internal_subscriptions
            .fetch_sub(1, Ordering::Relaxed);
    });

    let guard = Guard {
        origins: state.origins.clone(),
        max_payload,
    };
    Router::new()
        .route(PATH, any(not_socketio))
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard.clone()),
            check_request,
        ))
        .layer(cors(&guard, &config.allow_origins))
        .route(BUNDLE_PATH, get(bundle))
        .route(&format!("{BUNDLE_PATH}.map"), get(bundle))
}

/// CORS for the polling transport of pages served from `--allow-origin` origins.
fn cors(guard: &Guard, origins: &[String]) -> CorsLayer {
    let allow = if guard.origins.allows_any() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// Only reached when socketioxide passes a request on, which it does not for its own path.
async fn not_socketio() -> Response {
    crate::assets::not_found(PATH)
}

/// Who may open sessions, and how big a posted payload may be.
#[derive(Clone)]
struct Guard {
    origins: OriginPolicy,
    max_payload: usize,
}

impl Guard {
    fn origin_allowed<B>(&self, req: &axum::http::Request<B>) -> Result<(), String> {
        self.origins.check_for(req, "open Socket.IO sessions")
    }
}

/// Refuses foreign origins (403) and oversized posted payloads (413) with a JSON reason,
/// before socketioxide sees the request.
async fn check_request(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    if let Err(reason) = guard.origin_allowed(&req) {
        tracing::warn!(%reason, "Socket.IO session refused");
        return ApiError::new(StatusCode::FORBIDDEN, reason).into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if req.method() == Method::POST && declared.is_some_and(|n| n > guard.max_payload as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Socket.IO payload is larger than {} bytes (--sio-max-payload)",
                guard.max_payload
            ),
        )
        .into_response();
    }
    // RFC 8441: a WebSocket over an HTTP/2 stream, translated for engineioxide.
    if super::extended_connect::is_websocket(&req) {
        let req = super::extended_connect::as_upgrade_request(detach_head(req));
        return super::extended_connect::as_connect_response(next.run(req).await);
    }
    next.run(detach_head(req)).await
}

/// The request with its URI and header values copied out of the connection's read buffer.
/// hyper hands them out as slices of that buffer (8-16 KiB), and Engine.IO keeps the request
/// head for the whole life of a session, which kept the whole buffer alive for every socket:
/// half of an idle socket's memory.
fn detach_head(req: Request) -> Request {
    let (mut parts, body) = req.into_parts();
    parts.uri = detach_uri(&parts.uri);
    if let Some(original) = parts.extensions.get_mut::<axum::extract::OriginalUri>() {
        original.0 = detach_uri(&original.0);
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
}

/// A copy of `uri` in an allocation of its own (see [`detach_head`]).
fn detach_uri(uri: &Uri) -> Uri {
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

/// `GET /socket.io/socket.io.min.js` (and its source map): the official browser client.
async fn bundle(req: Request<Body>) -> Response {
    let name = req.uri().path().rsplit('/').next().unwrap_or("");
    match Bundle::get(name) {
        Some(file) => {
            let mime = if name.ends_with(".map") {
                "application/json"
            } else {
                "text/javascript; charset=utf-8"
            };
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ],
                file.data,
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The Socket.IO browser client is not installed in this build of rtchat. \
             Install it with `scripts/setup` (or `npm ci` in vendor/web), then rebuild rtchat \
             (`cargo build`).\n",
        )
            .into_response(),
    }
}

/// What a client asked for in its handshake's `auth`.
#[derive(Debug, Clone)]
struct Handshake {
    /// Resume after this message id...
    last: Option<u64>,
    /// ...of this epoch (`auth.epoch`), when the client knows it.
    epoch: Option<String>,
    /// Receive a `msg:get` snapshot after every message (the course's behaviour).
    snapshots: bool,
}

impl Default for Handshake {
    /// No `auth`: a fresh connection with snapshots.
    fn default() -> Self {
        Handshake {
            last: None,
            epoch: None,
            snapshots: true,
        }
    }
}

impl Handshake {
    fn parse(auth: &serde_json::Value) -> Result<Handshake, String> {
        let Some(obj) = auth.as_object() else {
            return Ok(Handshake::default());
        };
        let last = match obj.get("last") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                format!("auth.last must be a message id (a whole number, 0 or more), got {v}")
            })?),
        };
        let epoch = match obj.get("epoch") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(e)) => Some(e.clone()),
            Some(v) => return Err(format!("auth.epoch must be a string, got {v}")),
        };
        let snapshots = match obj.get("snapshots") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(v) => return Err(format!("auth.snapshots must be true or false, got {v}")),
        };
        Ok(Handshake {
            last,
            epoch,
            snapshots,
        })
    }
}

/// A connected socket waiting for the broadcaster to let it in.
struct Join {
    socket: SocketRef,
    handshake: Handshake,
}

/// What the connect handlers share.
#[derive(Clone)]
struct Chat {
    poster: Poster,
    joins: mpsc::Sender<Join>,
}

impl Chat {
    /// Connect middleware: runs before the client is told it is connected, so `msg:post` is
    /// handled from the client's very first packet. A malformed `auth` is refused with a
    /// `connect_error` naming the problem.
    fn handshake(
        &self,
        socket: SocketRef,
        auth: Result<serde_json::Value, impl std::fmt::Display>,
    ) -> Result<(), String> {
        let auth = auth.map_err(|e| format!("auth must be a JSON object: {e}"))?;
        Handshake::parse(&auth)?;
        let poster = self.poster.clone();
        // The closure body runs as socketioxide reads the packet, in arrival order; only the
        // future it returns runs as a task of its own.
        socket.on(sio::MSG_POST, move |Enqueued(post): Enqueued| {
            poster.enqueue(post)
        });
        Ok(())
    }

    /// Connect handler: hands the socket to the broadcaster, which sends it the history (and
    /// what it missed) and then lets it into the rooms. `auth` passed the middleware, which
    /// parsed it already; parsing it again here keeps idle sockets free of extensions.
    async fn connected(&self, socket: SocketRef, auth: Option<serde_json::Value>) {
        let handshake = auth
            .and_then(|auth| Handshake::parse(&auth).ok())
            .unwrap_or_default();
        let _ = self.joins.send(Join { socket, handshake }).await;
    }
}

/// Stores `msg:post`s, each socket's in the order sent.
#[derive(Clone)]
struct Poster {
    hub: Hub,
    limits: Limits,
    /// The post rate limits and the trusted proxies.
    state: AppState,
}

impl Poster {
    /// Takes a post in arrival order: it gets its place in the socket's [`PostChain`] now, and
    /// the returned future (run as a task by socketioxide) stores and answers it once every
    /// earlier post of the socket has been answered.
    fn enqueue(&self, post: QueuedPost) -> impl std::future::Future<Output = ()> + Send + 'static {
        let chain = post
            .socket
            .extensions
            .get::<PostChain>()
            .unwrap_or_else(|| {
                let parts = post.socket.req_parts();
                let client = self
                    .state
                    .proxies
                    .client_of(&parts.extensions, &parts.headers);
                let chain =
                    PostChain::new(self.state.posts.connection_bucket(), client.map(|c| c.ip));
                post.socket.extensions.insert(chain.clone());
                chain
            });
        // Counted in arrival order; a refused post is answered at once, not after the posts
        // still waiting for the store.
        let refused = chain.check_rate(&self.state.posts).err();
        let place = refused.is_none().then(|| chain.take_place()).flatten();
        let (hub, limits) = (self.hub.clone(), self.limits);
        async move {
            if let Some(refused) = refused {
                reply(
                    post,
                    Err(ErrorBody {
                        error: refused.to_string(),
                        retry_after_ms: Some(refused.retry_after_ms()),
                    }),
                );
                return;
            }
            let Some((previous, done)) = place else {
                reply(
                    post,
                    Err(ErrorBody::new(format!(
                        "too many messages in flight (more than {POSTS_IN_FLIGHT}); wait for the acknowledgements"
                    ))),
                );
                return;
            };
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            store_post(&hub, &limits, post).await;
            chain.release(done);
        }
    }
}

/// A socket's posts in flight, chained so that each is stored and answered after the one sent
/// before it, and its post rate limits. Made on the socket's first post: an idle socket holds
/// no queue, no bucket and no task.
#[derive(Clone, Default)]
struct PostChain(Arc<std::sync::Mutex<ChainState>>);

#[derive(Default)]
struct ChainState {
    /// Completes (its sender is dropped) once the newest post taken so far is answered.
    tail: Option<oneshot::Receiver<()>>,
    /// Posts taken and not answered yet.
    in_flight: usize,
    /// The socket's own post bucket (`None`: posts are not limited per connection).
    bucket: Option<Box<ConnectionBucket>>,
    /// The socket's client address, for the per-address bucket.
    client: Option<IpAddr>,
}

impl PostChain {
    fn new(bucket: Option<Box<ConnectionBucket>>, client: Option<IpAddr>) -> PostChain {
        PostChain(Arc::new(std::sync::Mutex::new(ChainState {
            bucket,
            client,
            ..ChainState::default()
        })))
    }

    /// Takes one post from the socket's bucket and its address's, or says why not.
    fn check_rate(&self, limiter: &PostLimiter) -> Result<(), Refused> {
        let state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        limiter.check(state.bucket.as_deref(), state.client)
    }

    /// A place at the end of the chain: what to wait for first, and the signal to drop once
    /// answered. `None` when [`POSTS_IN_FLIGHT`] posts are already waiting.
    fn take_place(&self) -> Option<(Option<oneshot::Receiver<()>>, oneshot::Sender<()>)> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.in_flight >= POSTS_IN_FLIGHT {
            return None;
        }
        state.in_flight += 1;
        let (done, next) = oneshot::channel();
        Some((state.tail.replace(next), done))
    }

    /// Leaves the chain once answered, lets the next post go, and forgets the tail when
    /// nothing follows.
    fn release(&self, done: oneshot::Sender<()>) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.tail = None;
        }
        drop(done);
    }
}

struct QueuedPost {
    data: Result<serde_json::Value, String>,
    ack: AckSender,
    wants_ack: bool,
    socket: SocketRef,
}

/// The `msg:post` extractor: everything a post needs, including whether the client asked for
/// an acknowledgement (which [`AckSender`] does not tell).
struct Enqueued(QueuedPost);

impl FromMessageParts<LocalAdapter> for Enqueued {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let Ok(ack) = AckSender::from_message_parts(s, v, ack_id);
        let Ok(TryData(data)) = TryData::<serde_json::Value>::from_message_parts(s, v, ack_id);
        let Ok(socket) = SocketRef::from_message_parts(s, v, ack_id);
        Ok(Enqueued(QueuedPost {
            data: data.map_err(|e| e.to_string()),
            ack,
            wants_ack: ack_id.is_some(),
            socket,
        }))
    }
}

/// Validates, stores and answers one post.
async fn store_post(hub: &Hub, limits: &Limits, mut post: QueuedPost) {
    let data = std::mem::replace(&mut post.data, Ok(serde_json::Value::Null));
    let result = match data {
        Ok(value) => match NewPost::from_value(&value, limits) {
            Ok(new) => hub.post(GENERAL, new).await.map(|entry| entry.message.id),
            Err(e) => Err(e),
        },
        Err(e) if e.contains("byte array") => {
            reply(post, Err(ErrorBody::new(BINARY_REFUSED)));
            return;
        }
        Err(_) => Err(PostError::NotAnObject),
    };
    if let Err(e) = &result {
        if !e.is_client_error() {
            tracing::warn!(error = %e, "Socket.IO post not stored");
        }
    }
    reply(post, result.map_err(|e| ErrorBody::new(e.to_string())));
}

/// Acknowledges a post, or reports its error as `msg:error` when no ack was asked for.
fn reply(post: QueuedPost, result: Result<u64, ErrorBody>) {
    let QueuedPost {
        ack,
        wants_ack,
        socket,
        ..
    } = post;
    let body = match result {
        Ok(id) => serde_json::to_value(PostAck::ok(id)).expect("acks serialize"),
        Err(error) => {
            let body = serde_json::to_value(error).expect("errors serialize");
            if !wants_ack {
                let _ = socket.emit(sio::MSG_ERROR, &body);
            }
            body
        }
    };
    if wants_ack {
        let _ = ack.send(&body);
    }
}

/// The transport's one hub subscription, fanned out as room broadcasts.
struct Broadcaster {
    io: SocketIo,
    subscription: Subscription,
    hub: Hub,
}

impl Broadcaster {
    /// Fans out until the server stops; then, if sockets are open, goes on until the end of
    /// the close window (`--drain-seconds`), and closes every session at once: socketioxide
    /// offers no way to close one session but `disconnect`, whose packet tells the official
    /// clients not to reconnect.
    async fn run(mut self, mut joins: mpsc::Receiver<Join>, drain: Drain) {
        let mut current = self.subscription.snapshot().clone();
        loop {
            tokio::select! {
                delivery = self.subscription.recv() => match delivery {
                    Some(Delivery::Event(event)) => {
                        current = event.snapshot.clone();
                        self.broadcast(ROOM_GET, &current.json).await;
                        self.broadcast(ROOM_NEW, &event.entry.json).await;
                    }
                    Some(Delivery::Lagged { missed }) => {
                        tracing::warn!(missed, "Socket.IO fan-out lagged; catching up from the store");
                        current = self.catch_up().await;
                    }
                    None => break,
                },
                Some(join) = joins.recv() => self.join(join, &current).await,
                () = drain.stop_token().cancelled(), if !drain.stop_token().is_cancelled() => {
                    if self.io.sockets().is_empty() {
                        break;
                    }
                }
                () = drain.window_end(), if drain.stop_token().is_cancelled() => break,
            }
        }
        // Close every Engine.IO session without a Socket.IO disconnect packet, so the official
        // clients reconnect (and resume) by themselves once rtchat is back.
        self.io.close().await;
    }

    async fn broadcast(&self, room: &'static str, json: &Bytes) {
        let Some(raw) = raw(json) else { return };
        if let Err(e) = self.io.to(room).emit(room, raw).await {
            tracing::debug!(error = %e, room, "Socket.IO broadcast did not reach every socket");
        }
    }

    /// After a lag: the missed messages as `msg:new`, then a fresh `msg:get`.
    async fn catch_up(&mut self) -> Arc<Snapshot> {
        let page_size = self.hub.config().history;
        loop {
            match self.subscription.catch_up(page_size).await {
                Ok(page) => {
                    for entry in &page.entries {
                        self.broadcast(ROOM_NEW, &entry.json).await;
                    }
                    if !page.more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "Socket.IO catch-up failed");
                    break;
                }
            }
        }
        let snapshot = self.subscription.current();
        self.broadcast(ROOM_GET, &snapshot.json).await;
        snapshot
    }

    /// Lets a socket in between two messages: history, what it missed, then the rooms.
    async fn join(&self, join: Join, current: &Arc<Snapshot>) {
        let Join { socket, handshake } = join;
        if !socket.connected() {
            return;
        }
        let upto = self.subscription.last_seen();
        let position = handshake
            .last
            .map(|last| Position::new(last, handshake.epoch.clone()));
        match decide(current, position.as_ref()) {
            Start::Fresh => emit_raw(&socket, ROOM_GET, &current.json),
            // Another epoch, or ids this server never handed out: start over.
            Start::Reset => emit_raw(&socket, ROOM_GET, &current.reset_json("")),
            Start::Resume { after } => {
                emit_raw(&socket, ROOM_GET, &current.json);
                self.resume(&socket, after, upto, &current.epoch).await;
            }
        }
        let rooms: &'static [&'static str] = if handshake.snapshots {
            &[ROOM_GET, ROOM_NEW]
        } else {
            &[ROOM_NEW]
        };
        socket.join(rooms);
        if !socket.connected() {
            // It left while joining: make sure no room keeps it.
            socket.leave_all();
        }
    }

    /// `msg:since` pages with the messages after `last` up to `upto`, the oldest page first.
    async fn resume(&self, socket: &SocketRef, mut last: u64, upto: u64, epoch: &str) {
        let page_size = self.hub.config().history;
        loop {
            let (entries, more, truncated) = if last >= upto {
                (Vec::new(), false, false)
            } else {
                match self
                    .hub
                    .since(self.subscription.channel(), last, page_size)
                    .await
                {
                    Ok(page) => {
                        let entries: Vec<_> = page
                            .entries
                            .into_iter()
                            .filter(|e| e.message.id <= upto)
                            .collect();
                        let end = entries.last().map_or(upto, |e| e.message.id);
                        (entries, page.more && end < upto, page.truncated)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "Socket.IO resume failed");
                        let _ = socket.emit(
                            sio::MSG_ERROR,
                            &ErrorBody::new(format!("could not resume: {e}")),
                        );
                        return;
                    }
                }
            };
            if let Some(newest) = entries.last() {
                last = newest.message.id;
            }
            let flags = page_flags(more, truncated);
            let body = encode_list_with(entries.iter().rev(), last, epoch, flags, "");
            emit_raw(socket, sio::MSG_SINCE, &body);
            if !more {
                return;
            }
        }
    }
}

fn emit_raw(socket: &SocketRef, event: &str, json: &Bytes) {
    if let Some(raw) = raw(json) {
        if let Err(e) = socket.emit(event, raw) {
            tracing::debug!(error = %e, event, "Socket.IO emit failed");
        }
    }
}

/// The hub's JSON bytes as a value socketioxide writes out verbatim.
fn raw(json: &Bytes) -> Option<&RawValue> {
    match serde_json::from_slice::<&RawValue>(json) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::error!(error = %e, "hub JSON is not valid JSON");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_auth() {
        let h = Handshake::parse(&serde_json::json!({})).unwrap();
        assert_eq!((h.last, h.snapshots), (None, true));
        let h = Handshake::parse(&serde_json::json!({"last": 7, "snapshots": false})).unwrap();
        assert_eq!((h.last, h.snapshots), (Some(7), false));
        assert!(Handshake::parse(&serde_json::json!({"last": "7"})).is_err());
        assert!(Handshake::parse(&serde_json::json!({"last": -1})).is_err());
        assert!(Handshake::parse(&serde_json::json!({"snapshots": 1})).is_err());
        let h = Handshake::parse(&serde_json::json!({"last": 3, "epoch": "ab12cd34"})).unwrap();
        assert_eq!(h.epoch.as_deref(), Some("ab12cd34"));
        assert!(Handshake::parse(&serde_json::json!({"epoch": 5})).is_err());
    }

    #[test]
    fn raw_json_is_borrowed_verbatim() {
        let json =
            Bytes::from_static(br#"{"msg":[{"id":1,"user":"a","text":"\u00e9 \"q\""}],"last":1}"#);
        let raw = raw(&json).unwrap();
        assert_eq!(raw.get().as_bytes(), &json[..]);
        assert!(super::raw(&Bytes::from_static(b"{nope")).is_none());
    }

    #[test]
    fn refusals_name_the_flag_to_use() {
        let guard = Guard {
            origins: OriginPolicy::new(&[], Default::default()),
            max_payload: 1000,
        };
        let req = axum::http::Request::builder()
            .uri("/socket.io/")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, "http://evil.example")
            .body(())
            .unwrap();
        let err = guard.origin_allowed(&req).unwrap_err();
        assert!(err.contains("--allow-origin http://evil.example"), "{err}");
    }

    #[tokio::test]
    async fn post_chain_orders_and_limits() {
        let chain = PostChain::default();
        let mut places: Vec<_> = (0..POSTS_IN_FLIGHT)
            .map(|_| chain.take_place().expect("a place"))
            .collect();
        assert!(chain.take_place().is_none(), "more than POSTS_IN_FLIGHT");
        assert!(places[0].0.is_none(), "the first post waits for nothing");
        let (second_waits, second_done) = places.remove(1);
        let (_, first_done) = places.remove(0);
        let second_waits = second_waits.expect("the second waits for the first");
        chain.release(first_done);
        second_waits.await.unwrap_err();
        chain.release(second_done);
        assert!(
            chain.take_place().is_some(),
            "answered posts free their places"
        );
        for (_, done) in places {
            chain.release(done);
        }
        chain.release(oneshot::channel().0);
        let state = chain.0.lock().unwrap();
        assert_eq!(state.in_flight, 0);
        assert!(state.tail.is_none(), "an empty chain keeps no tail");
    }
}

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
//!   (handshake `auth: {last: ID, epoch: E}`; another epoch gets `msg:get` with
//!   `"reset":true`), exactly the messages after `ID` (at most `--max-resume` of them: further
//!   back, the newest that many, the first page saying `"truncated":true`), in pages shaped
//!   like `GET /poll?since=ID` answers (the oldest page first, each newest first, at most
//!   `--history` messages); every page but the last has `"more":true`. The last page comes
//!   even when nothing was missed.
//! * server → client `msg:error` `{"error":"..."}` — a refused post sent without an
//!   acknowledgement callback; a resume the store could not serve (`could not resume: ...`,
//!   then a disconnect); a socket that fell too far behind (`you fell too far behind: ...`,
//!   then a disconnect; see [Slow clients](#slow-clients)).
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
//! An idle socket costs what socketioxide's session needs and little more (about 8 KiB in all,
//! measured): rtchat keeps no task, queue or extension per socket until it posts (see
//! `PostChain`), the request head Engine.IO keeps per session is copied out of hyper's read
//! buffer first (see `detach_head`), so that buffer is freed once the WebSocket is up, and
//! rtchat's patch of engineioxide (`vendor/engineioxide/README-rtchat.md`) runs a WebSocket
//! session as one task whose packet buffer allocates nothing while empty.
//!
//! # Resume
//! socketioxide does not implement Socket.IO's connection state recovery, so resume is built
//! on rtchat's message ids: clients pass the id of the newest message they hold in the
//! handshake's `auth` (`{last: ID}`; socket.io-client re-reads an `auth` callback on every
//! reconnection). A resume is served off the broadcaster, by the socket's own connect task
//! (`Chat::resume`): it opens a subscription through the hub's door (which decides resume or
//! reset and caps how far back, `--max-resume`), sends `msg:get`, then pages through what was
//! missed with `catch_up`, one `msg:since` page (`"more":true`) at a time, each once the client
//! has read all but `PAGES_AHEAD` (4) of what was sent before (so a resume goes at its client's
//! pace and never fills its buffer), until the socket is within one history-sized page of the
//! newest message. Then it hands the socket to the broadcaster, which, between two messages,
//! sends the last page (from the position the socket reached up to the last message it
//! broadcast: one history-sized read, served from the cached history) and puts the socket in
//! the rooms; if the broadcasts ran more than a page ahead meanwhile, it sends the socket back
//! to page on, and if the socket's own pages went past the broadcasts, it waits for them. So
//! the socket gets every message exactly once and in order, whatever is posted meanwhile, and
//! the other sockets never wait for a resume. Gaps are bounded by the store's `--retain` and
//! by `--max-resume` (flag `"truncated":true`). An `ID` newer than anything this server knows
//! (it restarted with an empty memory store) gets `msg:get` with `"reset":true` instead: start
//! over.
//!
//! # Slow clients
//! A socket may have `--sio-buffer` packets (events) waiting to be written. A broadcast that
//! finds a socket's buffer full is never silently skipped: the socket leaves the rooms at once
//! (so it gets nothing after the message it missed), and once it has read what was queued
//! before (room for two packets, within `--sio-ping-timeout`) it gets `msg:error`
//! `{"error":"you fell too far behind: ..."}` and a Socket.IO disconnect, after which the
//! official client does not reconnect by itself: the application decides (it can reconnect
//! and resume from the last message it holds). One that does not read that far is closed
//! without them. Pings and the close packet are never refused for want of room.
//!
//! # Shutdown
//! Once the server stops accepting, every session is closed at its own moment within the
//! close window (`--drain-seconds`), like the other connections, with an Engine.IO close and
//! no Socket.IO disconnect, so the official clients reconnect (and resume) by themselves.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use bytes::Bytes;
use rtchat_core::{
    encode_list_with, page_flags, Delivery, Hub, Limits, NewPost, Opened, Position, PostError,
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
use socketioxide::{BroadcastError, ParserConfig, SocketError, SocketIo};
use tokio::sync::{mpsc, oneshot};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::admission::ConnectionSlot;
use crate::api::ApiError;
use crate::drain::Drain;
use crate::metrics::{Metrics, PostRefusal, Via};
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
/// `msg:since` pages (packets) a resuming socket's own task lets wait for the client before it
/// reads the next page: the resume goes at the client's pace and never fills its buffer.
const PAGES_AHEAD: usize = 4;
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
        .max_buffer_size(config.sio_buffer.max(2 * PAGES_AHEAD))
        .ws_read_buffer_size(WS_READ_BUFFER)
        .with_parser(
            ParserConfig::common()
                .max_incoming_binary_buf_size(max_payload)
                .max_incoming_binaries(16),
        )
        .build_layer();
    let sockets = io.clone();
    state
        .metrics
        .count_socketio_with(move || sockets.sockets().len());

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
        // Not a client: `rtchat_subscribers` leaves it out.
        internal
            .internal_subscriptions
            .fetch_add(1, Ordering::Relaxed);
        let broadcaster = Broadcaster {
            io,
            subscription,
            hub,
            pending: Vec::new(),
            last_word: internal.config.sio_ping_timeout,
            metrics: internal.metrics.clone(),
        };
        broadcaster.run(joins_rx, drain).await;
        internal
            .internal_subscriptions
            .fetch_sub(1, Ordering::Relaxed);
    });

    let guard = Guard {
        origins: state.origins.clone(),
        admission: state.admission.clone(),
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
    /// For the connection caps of WebSocket sessions (see [`check_request`]).
    admission: Arc<crate::admission::Admission>,
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
    // Engine.IO keeps a WebSocket session's request head for the session's life: a place
    // under the connection caps in its extensions lives as long (hyper's connection task, which
    // holds the connection's own place, ends at the upgrade).
    let mut req = req;
    if req.headers().contains_key(header::UPGRADE) {
        if let Some(place) = super::websocket::upgraded_place(&guard.admission, &req) {
            req.extensions_mut().insert(ConnectionSlot::new(place));
        }
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
    /// Whether it gets `msg:get` after every message (the room `msg:get`).
    snapshots: bool,
    start: JoinStart,
    /// Told when it joined (or, resuming, that it is still too far behind).
    reply: Option<oneshot::Sender<Handover>>,
}

/// What the broadcaster sends a socket before letting it into the rooms.
#[derive(Debug, Clone, Copy)]
enum JoinStart {
    /// `msg:get`.
    Fresh,
    /// `msg:get` with `"reset":true`.
    Reset,
    /// The socket's own task sent `msg:get` and what it missed up to `after`: the last
    /// `msg:since` page, from `after` to the last message broadcast.
    Resume { after: u64 },
}

/// The broadcaster's answer to a [`Join`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    /// In the rooms: every later message comes through the broadcasts.
    Joined,
    /// Resuming, and more than one history-sized page behind the broadcasts: the socket's own
    /// task pages on, then asks again.
    Behind,
}

impl Join {
    fn answer(self, handover: Handover) {
        if let Some(reply) = self.reply {
            let _ = reply.send(handover);
        }
    }
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

    /// Connect handler (a task of its own): a fresh socket is handed to the broadcaster,
    /// which sends it the history and lets it into the rooms; a resuming one first gets what
    /// it missed from this task ([`Chat::resume`]). `auth` passed the middleware, which parsed
    /// it already; parsing it again here keeps idle sockets free of extensions.
    async fn connected(&self, socket: SocketRef, auth: Option<serde_json::Value>) {
        let handshake = auth
            .and_then(|auth| Handshake::parse(&auth).ok())
            .unwrap_or_default();
        let snapshots = handshake.snapshots;
        match handshake.last {
            Some(last) => {
                let position = Position::new(last, handshake.epoch);
                self.resume(socket, snapshots, position).await;
            }
            None => {
                let join = Join {
                    socket,
                    snapshots,
                    start: JoinStart::Fresh,
                    reply: None,
                };
                let _ = self.joins.send(join).await;
            }
        }
    }

    /// A resuming socket, off the broadcaster: `msg:get`, then what it missed as `msg:since`
    /// pages read through its own subscription (the door caps how far back, `--max-resume`,
    /// and says `truncated`), each page sent once the client has read all but
    /// [`PAGES_AHEAD`] of what was sent before, until the socket is within one history-sized
    /// page of the newest message. Then the broadcaster sends the last page and lets it into
    /// the rooms between two messages (bounded work: one cached read); if the broadcasts ran
    /// ahead meanwhile it sends the socket back here to page on.
    async fn resume(&self, socket: SocketRef, snapshots: bool, position: Position) {
        let hub = &self.poster.hub;
        let mut subscription = match hub.subscribe(GENERAL, Some(&position)).await {
            Ok(Opened {
                start: Start::Resume { .. },
                subscription,
            }) => subscription,
            Ok(_) => {
                // Another epoch, or ids this server never handed out: start over.
                self.hand_over(socket, snapshots, JoinStart::Reset).await;
                return;
            }
            Err(e) => return resume_failed(&socket, &e),
        };
        emit_raw(&socket, ROOM_GET, &subscription.snapshot().json);
        let epoch = subscription.snapshot().epoch.clone();
        let history = hub.config().history;
        let cap = hub.config().max_resume;
        let mut read = false;
        let mut caught_up = false;
        loop {
            let behind = subscription
                .current()
                .last_id
                .saturating_sub(subscription.last_seen());
            // A resume the door caps starts with a read, which skips and says `truncated`.
            let capped = !read && cap > 0 && behind > cap;
            if caught_up || (!capped && behind <= history as u64) {
                let after = subscription.last_seen();
                let start = JoinStart::Resume { after };
                match self.hand_over(socket.clone(), snapshots, start).await {
                    Some(Handover::Behind) => {} // The broadcasts ran ahead: page on.
                    Some(Handover::Joined) | None => return,
                }
            }
            if socket.drained(PAGES_AHEAD).await.is_err() {
                return; // gone
            }
            let page = match subscription.catch_up(history).await {
                Ok(page) => page,
                Err(e) => return resume_failed(&socket, &e),
            };
            read = true;
            caught_up = !page.more;
            if page.entries.is_empty() && !page.truncated {
                continue;
            }
            // Never the last page: that one comes from the broadcaster.
            let flags = page_flags(true, page.truncated);
            let last = subscription.last_seen();
            let body = encode_list_with(page.entries.iter().rev(), last, &epoch, flags, "");
            emit_raw(&socket, sio::MSG_SINCE, &body);
        }
    }

    /// Hands a socket to the broadcaster and waits for its answer (`None`: the server stops).
    async fn hand_over(
        &self,
        socket: SocketRef,
        snapshots: bool,
        start: JoinStart,
    ) -> Option<Handover> {
        let (reply, answer) = oneshot::channel();
        let join = Join {
            socket,
            snapshots,
            start,
            reply: Some(reply),
        };
        self.joins.send(join).await.ok()?;
        answer.await.ok()
    }
}

/// A resume the store could not serve: the client is told why and disconnected, rather than
/// let in live with a gap; it may reconnect and resume from the same position.
fn resume_failed(socket: &SocketRef, error: &dyn std::fmt::Display) {
    tracing::error!(%error, "Socket.IO resume failed");
    let body = ErrorBody::new(format!("could not resume: {error}; reconnect to try again"));
    let _ = socket.emit(sio::MSG_ERROR, &body);
    let _ = socket.clone().disconnect();
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
    /// the returned future (run as a task by socketioxide) hands it to the hub once every
    /// earlier post of the socket has been handed over (the hub stores posts in the order
    /// they are handed to it), then answers it once stored. A socket's posts are thus stored
    /// in the order sent, and one slow commit does not hold up the next posts' way to the
    /// store.
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
        if let Some(refused) = &refused {
            self.state.metrics.rate_limited(refused);
        }
        let place = refused.is_none().then(|| chain.take_place()).flatten();
        let (hub, limits) = (self.hub.clone(), self.limits);
        let metrics = self.state.metrics.clone();
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
                metrics.post_refused(PostRefusal::InFlight);
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
            store_post(&hub, &limits, &metrics, post, done).await;
            chain.release();
        }
    }
}

/// A socket's posts in flight, chained so that each is handed to the hub after the one sent
/// before it, and its post rate limits. Made on the socket's first post: an idle socket holds
/// no queue, no bucket and no task.
#[derive(Clone, Default)]
struct PostChain(Arc<std::sync::Mutex<ChainState>>);

#[derive(Default)]
struct ChainState {
    /// Completes (its sender is dropped) once the newest post taken so far is handed to the
    /// hub (or refused before that).
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
    /// handed to the hub. `None` when [`POSTS_IN_FLIGHT`] posts are not answered yet.
    fn take_place(&self) -> Option<(Option<oneshot::Receiver<()>>, oneshot::Sender<()>)> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.in_flight >= POSTS_IN_FLIGHT {
            return None;
        }
        state.in_flight += 1;
        let (done, next) = oneshot::channel();
        Some((state.tail.replace(next), done))
    }

    /// Leaves the chain once answered (its signal was dropped before), and forgets the tail
    /// when nothing follows.
    fn release(&self) {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        state.in_flight -= 1;
        if state.in_flight == 0 {
            state.tail = None;
        }
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
/// `handed_over` is dropped as soon as the hub has the post (or it is refused), so that the
/// socket's next post may follow it.
async fn store_post(
    hub: &Hub,
    limits: &Limits,
    metrics: &Metrics,
    mut post: QueuedPost,
    handed_over: oneshot::Sender<()>,
) {
    let data = std::mem::replace(&mut post.data, Ok(serde_json::Value::Null));
    let result = match data {
        Ok(value) => match NewPost::from_value(&value, limits) {
            Ok(new) => match hub.submit(GENERAL, new).await {
                Ok(ticket) => {
                    drop(handed_over);
                    ticket.await.map(|entry| entry.message.id)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        },
        Err(e) if e.contains("byte array") => {
            metrics.post_refused(PostRefusal::Invalid);
            reply(post, Err(ErrorBody::new(BINARY_REFUSED)));
            return;
        }
        Err(_) => Err(PostError::NotAnObject),
    };
    metrics.post_result(Via::SocketIo, &result);
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
    metrics: Arc<Metrics>,
    /// Resuming sockets whose own pages went past the last message broadcast: they join once
    /// the broadcasts reach them.
    pending: Vec<Join>,
    /// How long a socket that fell behind has to make room for its `msg:error` and disconnect
    /// (`--sio-ping-timeout`).
    last_word: Duration,
}

impl Broadcaster {
    /// Fans out until the server stops; then closes the sessions spread over the close window
    /// (`--drain-seconds`), each at a moment of its own, without a Socket.IO disconnect packet
    /// (so the official clients reconnect, and resume, by themselves once rtchat is back),
    /// going on with the fan-out until the last is closed or the window ends.
    async fn run(mut self, mut joins: mpsc::Receiver<Join>, drain: Drain) {
        let mut current = self.subscription.snapshot().clone();
        let mut closers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                delivery = self.subscription.recv() => match delivery {
                    Some(Delivery::Event(event)) => {
                        current = event.snapshot.clone();
                        self.broadcast(ROOM_GET, &current.json).await;
                        self.broadcast(ROOM_NEW, &event.entry.json).await;
                        self.join_pending(&current).await;
                    }
                    Some(Delivery::Lagged { missed }) => {
                        tracing::warn!(missed, "Socket.IO fan-out lagged; catching up from the store");
                        current = self.catch_up().await;
                        self.join_pending(&current).await;
                    }
                    None => break,
                },
                Some(join) = joins.recv() => self.join(join, &current).await,
                () = drain.stop_token().cancelled(), if !drain.stop_token().is_cancelled() => {
                    for socket in self.io.sockets() {
                        let deadline = drain.deadline();
                        closers.spawn(async move {
                            deadline.reached().await;
                            socket.close_transport().await;
                        });
                    }
                    if closers.is_empty() {
                        break;
                    }
                }
                Some(_) = closers.join_next(), if !closers.is_empty() => {
                    if closers.is_empty() {
                        break;
                    }
                }
                () = drain.window_end(), if drain.stop_token().is_cancelled() => break,
            }
        }
        // What is still open (sessions opened during the window, on connections that were
        // already open), the same way.
        closers.abort_all();
        self.io.close().await;
    }

    /// One packet to every socket of the room, encoded once. A socket whose buffer is full
    /// missed it: it leaves the rooms at once (so it misses nothing silently: it gets
    /// nothing more), and gets `msg:error` and a disconnect once it has read what is queued.
    async fn broadcast(&self, room: &'static str, json: &Bytes) {
        let Some(raw) = raw(json) else { return };
        let via = if room == ROOM_GET {
            Via::SocketIoSnapshots
        } else {
            Via::SocketIo
        };
        self.metrics
            .delivered_to_room(via, || self.io.to(room).sockets().len());
        match self.io.to(room).emit(room, raw).await {
            Ok(()) => {}
            Err(BroadcastError::Socket(errors))
                if errors
                    .iter()
                    .any(|e| matches!(e, SocketError::InternalChannelFull)) =>
            {
                for socket in self.io.within(room).sockets() {
                    if socket.overflowed() {
                        socket.leave_all();
                        tokio::spawn(fell_behind(socket, self.last_word));
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, room, "Socket.IO broadcast did not reach every socket");
            }
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

    /// Lets a socket in between two messages: the history (or, resuming, the last page of
    /// what it missed), then the rooms. Bounded work: one emit, or one history-sized read.
    async fn join(&mut self, join: Join, current: &Arc<Snapshot>) {
        let socket = &join.socket;
        if !socket.connected() {
            return;
        }
        match join.start {
            JoinStart::Fresh => emit_raw(socket, ROOM_GET, &current.json),
            JoinStart::Reset => emit_raw(socket, ROOM_GET, &current.reset_json("")),
            JoinStart::Resume { after } => {
                if after > self.subscription.last_seen() {
                    self.pending.push(join);
                    return;
                }
                match self.finish_resume(socket, after, &current.epoch).await {
                    Ok(true) => {}
                    Ok(false) => return join.answer(Handover::Behind),
                    Err(e) => {
                        resume_failed(socket, &e);
                        return join.answer(Handover::Joined);
                    }
                }
            }
        }
        let rooms: &'static [&'static str] = if join.snapshots {
            &[ROOM_GET, ROOM_NEW]
        } else {
            &[ROOM_NEW]
        };
        socket.join(rooms);
        if !socket.connected() {
            // It left while joining: make sure no room keeps it.
            socket.leave_all();
        }
        join.answer(Handover::Joined);
    }

    /// Joins the pending resumes the broadcasts have reached.
    async fn join_pending(&mut self, current: &Arc<Snapshot>) {
        if self.pending.is_empty() {
            return;
        }
        let upto = self.subscription.last_seen();
        let (ready, waiting) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|join: &Join| match join.start {
                    JoinStart::Resume { after } => after <= upto,
                    _ => true,
                });
        self.pending = waiting;
        for join in ready {
            self.join(join, current).await;
        }
    }

    /// The last `msg:since` page of a resume: the messages after `after` up to the last one
    /// broadcast, from one history-sized read (the cached history, unless messages right
    /// after `after` were deleted). `Ok(false)`, sending nothing, when that read does not
    /// reach the last message broadcast.
    async fn finish_resume(
        &self,
        socket: &SocketRef,
        after: u64,
        epoch: &str,
    ) -> Result<bool, rtchat_core::StoreError> {
        let upto = self.subscription.last_seen();
        let (entries, truncated) = if after >= upto {
            (Vec::new(), false)
        } else {
            let history = self.hub.config().history;
            let page = self
                .hub
                .since(self.subscription.channel(), after, history)
                .await?;
            let reaches = !page.more || page.entries.last().is_some_and(|e| e.message.id >= upto);
            if !reaches {
                return Ok(false);
            }
            let entries: Vec<_> = page
                .entries
                .into_iter()
                .filter(|e| e.message.id <= upto)
                .collect();
            (entries, page.truncated)
        };
        let last = entries.last().map_or(after, |e| e.message.id);
        let flags = page_flags(false, truncated);
        let body = encode_list_with(entries.iter().rev(), last, epoch, flags, "");
        emit_raw(socket, sio::MSG_SINCE, &body);
        Ok(true)
    }
}

/// A socket that missed a broadcast because its buffer was full (it left the rooms): once it
/// has read all but two of the packets queued before the one it missed, it gets `msg:error`
/// saying why, then a Socket.IO disconnect (the official client does not reconnect by itself
/// after one: the application decides, and may resume from the last message it holds). A
/// client that does not read that far within `within` is closed without them.
async fn fell_behind(socket: SocketRef, within: Duration) {
    let size = socket.buffer_size();
    tracing::warn!(sid = %socket.id, buffer = size, "Socket.IO client fell too far behind; disconnecting it");
    let error = ErrorBody::new(format!(
        "you fell too far behind: more than {size} events were waiting to be sent to you \
         (--sio-buffer), so you missed some; reconnect to resume from the last message you have"
    ));
    match tokio::time::timeout(within, socket.drained(size.saturating_sub(2))).await {
        Ok(Err(_)) => {} // Closed already.
        Ok(Ok(())) => {
            let sent = socket.emit(sio::MSG_ERROR, &error).is_ok();
            if !sent || socket.clone().disconnect().is_err() {
                socket.close_transport().await;
            }
        }
        Err(_) => socket.close_transport().await,
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
            admission: crate::admission::Admission::new(
                10,
                0,
                Default::default(),
                Default::default(),
            ),
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
        // The first is handed to the hub: the second may follow, though the first is not
        // answered yet (its place stays taken until it is).
        drop(first_done);
        second_waits.await.unwrap_err();
        assert!(
            chain.take_place().is_none(),
            "handed over is still in flight"
        );
        chain.release();
        drop(second_done);
        chain.release();
        assert!(
            chain.take_place().is_some(),
            "answered posts free their places"
        );
        for (_, done) in places {
            drop(done);
            chain.release();
        }
        chain.release();
        let state = chain.0.lock().unwrap();
        assert_eq!(state.in_flight, 0);
        assert!(state.tail.is_none(), "an empty chain keeps no tail");
    }
}

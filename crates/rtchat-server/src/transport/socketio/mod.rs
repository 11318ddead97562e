//! Socket.IO (Engine.IO v4 / Socket.IO v5, the current official clients) through
//! [`socketioxide`], on the default namespace `/` at `/socket.io/`, over both Engine.IO
//! transports (HTTP long-polling and WebSocket, with the upgrade from one to the other).
//!
//! # Events
//! A socket starts in the room `general` (the course's chat) and may join others. Every event
//! about a room carries `"room"`, but the course's `msg:get`.
//! * server → client `msg:get` `{"msg":[...],"last":N,"epoch":E}` — the history of `general`,
//!   newest first (the course's event). Sent on connect, and after every new message of
//!   `general` to the sockets in it (unless its handshake says `snapshots: false`).
//! * server → client `msg:new` `{"id","user","text","time","room"}` — rtchat's own event: only
//!   the new message, to every socket in its room.
//! * server → client `msg:since` `{"msg":[...],"last":N,"more":bool,"room":R}` — a resume:
//!   `general`'s at connect (handshake `auth: {last: ID, epoch: E}`; another epoch gets
//!   `msg:get` with `"reset":true`), another room's after a `room:join` naming `last`:
//!   exactly the messages after `ID` (at most `--max-resume` of them: further back, the
//!   newest that many, the first page saying `"truncated":true`), in pages shaped like
//!   `GET /poll?since=ID` answers (the oldest page first, each newest first, at most
//!   `--history` messages); every page but the last has `"more":true`. The last page comes
//!   even when nothing was missed.
//! * client → server `room:join` `{room, last?, epoch?}` — acknowledged with
//!   `{"room","last","epoch"}` (or `{"error","room"}`), then `room:history`
//!   `{"room","msg","last","epoch"}` (or, with `last`, `msg:since` pages), before any
//!   `msg:new` of the room. `room:leave` `{room}` — acknowledged with `{"room"}`; nothing of
//!   the room follows. A socket is in at most `--max-joined-rooms` rooms (`general`
//!   included); a join that would create one room more than `--max-rooms` is refused.
//! * server → client `presence` `{"room","joined":[...],"left":[...]}` — who came into a room
//!   the socket is in and who left (names: `auth: {user}`; one user with several sockets
//!   counts once), at most 4 a second per room.
//! * client → server `typing` `{room}` — the other sockets of the room get `typing`
//!   `{"room","user"}` (not the typer's own sockets), at most once a second per user and
//!   room (extra ones dropped silently); never stored. It needs a name (`auth.user`, or
//!   `user` in the event for an unnamed socket).
//! * client → server `msg:post` `{room?, user, text, key?}` — validated like `POST /poll`,
//!   stored in its room (`general` when left out), then broadcast to every transport. With
//!   an acknowledgement callback the client gets `{"status":"ok","id":N}`; see `post`.
//! * server → client `msg:error` `{"error":"...","room"?}` — a request refused and sent
//!   without an acknowledgement callback (with an acknowledgement callback, the refusal is
//!   the acknowledgement); a resume of `general` the store could not serve (`could not
//!   resume: ...`, then a disconnect); a socket that fell too far behind (`you fell too far
//!   behind: ...`, then a disconnect; see [Slow clients](#slow-clients)). Refusals never
//!   close the socket.
//!
//! # One subscription per room, encoded once
//! Each room that has sockets on this node has one task (its broadcaster, `fanout`) holding
//! the transport's only hub subscription to it (`rooms`), which turns each new message into
//! one `msg:new` broadcast (and, for `general`, one `msg:get`), and each presence or typing
//! signal into one broadcast: socketioxide encodes each packet once and hands the same bytes
//! to every socket in the room. The hub's pre-encoded JSON is passed through as a raw value,
//! never parsed or re-serialized. A room's broadcaster stops when its last socket here leaves.
//!
//! # Idle sockets
//! An idle socket costs what socketioxide's session needs and little more (about 8 KiB in all,
//! measured): rtchat keeps no task or queue per socket until it posts or sends a room request,
//! only its rooms (`general`'s presence place; see `member`), the request head Engine.IO
//! keeps per session is copied out of hyper's read buffer first (see `gate::detach_head`), so
//! that buffer is freed once the WebSocket is up, and rtchat's patch of engineioxide
//! (`vendor/engineioxide/README-rtchat.md`) runs a WebSocket session as one task whose packet
//! buffer allocates nothing while empty.
//!
//! # Resume
//! socketioxide does not implement Socket.IO's connection state recovery, so resume is built
//! on rtchat's message ids: clients pass the id of the newest message they hold in the
//! handshake's `auth` (`{last: ID}`; socket.io-client re-reads an `auth` callback on every
//! reconnection) for `general`, and in `room:join` for the other rooms (a client joins its
//! rooms again after reconnecting). A resume is served off the broadcasters, by the socket's
//! own task, paced on its client (`resume`); the other sockets never wait for it. Gaps are
//! bounded by the store's `--retain` and by `--max-resume` (flag `"truncated":true`). An `ID`
//! newer than anything this server knows (it restarted with an empty memory store) gets the
//! history with `"reset":true` instead: start over.
//!
//! # Slow clients
//! A socket may have `--sio-buffer` packets (events) waiting to be written. A broadcast that
//! finds a socket's buffer full is never silently skipped: the socket leaves every room at
//! once (so it gets nothing after the message it missed), and once it has read what was
//! queued before (room for two packets, within `--sio-ping-timeout`) it gets `msg:error`
//! `{"error":"you fell too far behind: ..."}` and a Socket.IO disconnect, after which the
//! official client does not reconnect by itself: the application decides (it can reconnect
//! and resume from the last message it holds). One that does not read that far is closed
//! without them. Pings and the close packet are never refused for want of room.
//!
//! # Shutdown
//! Once the server stops accepting, every session is closed at its own moment within the
//! close window (`--drain-seconds`), like the other connections, with an Engine.IO close and
//! no Socket.IO disconnect, so the official clients reconnect (and resume) by themselves.

mod chain;
mod fanout;
mod gate;
mod handshake;
mod member;
pub mod owner;
mod post;
mod resume;
mod rooms;
mod session;
mod wire;

pub use gate::client_bundled;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::routing::{any, get};
use axum::Router;
use rtchat_core::{Position, GENERAL};
use rtchat_protocol::socketio as sio;
use rtchat_protocol::ErrorBody;
use socketioxide::extract::{SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::{ParserConfig, SocketIo};
use tokio::sync::mpsc;

use crate::state::AppState;
use fanout::{Broadcaster, Greeting, Join, JoinStart};
use handshake::Handshake;
use member::{Member, Membership};
use post::{Enqueued, Poster};
use resume::{hand_over, Resumed};
use rooms::Rooms;

/// Where Engine.IO listens (the official clients' default path).
pub const PATH: &str = rtchat_protocol::http::SOCKETIO;
/// Where the official browser client bundle is served.
pub const BUNDLE_PATH: &str = "/socket.io/socket.io.min.js";
/// The socketioxide room (and event) of `general`'s history snapshots, the course's.
const ROOM_GET: &str = sio::MSG_GET;
/// The socketioxide room of every socket in `general`.
const ROOM_NEW: &str = sio::MSG_NEW;
/// `msg:since` pages (packets) a resuming socket's own task lets wait for the client before it
/// reads the next page: the resume goes at the client's pace and never fills its buffer.
const PAGES_AHEAD: usize = 4;
/// Initial read buffer of a WebSocket session (tungstenite's `read_buffer_size`, 4 KiB by
/// default). Every session holds one for its whole life, zero-filled, so it is most of an
/// idle socket's memory; client frames are small (pings, posts) and the buffer grows to fit a
/// bigger frame when one comes, so a small one costs nothing in speed.
const WS_READ_BUFFER: usize = 512;
/// Sockets waiting to be let into `general` (at connect) by its broadcaster.
const GENERAL_JOIN_QUEUE: usize = 1024;

/// The routes of this transport, merged into the app by the router: Engine.IO at
/// [`PATH`] (behind the origin check, CORS for `--allow-origin` and the payload limit) and
/// the browser bundle. Starts `general`'s broadcaster; call once per process, inside the
/// runtime.
pub fn routes(state: &AppState) -> Router<AppState> {
    let config = &state.config;
    let max_payload = config.sio_max_payload.max(1024);
    let hub = state.hub.clone();
    let (joins, joins_rx) = mpsc::channel::<Join>(GENERAL_JOIN_QUEUE);
    let rooms = Rooms::new(state, joins);
    let chat = Chat(Arc::new(Shared {
        poster: Poster {
            hub: hub.clone(),
            limits: hub.config().limits,
            state: state.clone(),
        },
        rooms: rooms.clone(),
        max_joined: config.max_joined_rooms.max(1),
    }));
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
    rooms.set_io(io.clone());
    let sockets = io.clone();
    state
        .metrics
        .count_socketio_with(move || sockets.sockets().len());

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
        let mut subscription = match hub.subscribe(GENERAL, None).await {
            Ok(opened) => opened.subscription,
            Err(e) => return tracing::error!(error = %e, "Socket.IO cannot subscribe; no fan-out"),
        };
        subscription.with_signals();
        // Not a client: `rtchat_subscribers` leaves it out.
        internal
            .internal_subscriptions
            .fetch_add(1, Ordering::Relaxed);
        let general = rooms.general();
        let broadcaster = Broadcaster::new(
            io,
            subscription,
            general.room.clone(),
            general.target.clone(),
            Arc::downgrade(general),
            &internal,
        );
        broadcaster.run(joins_rx, drain, true).await;
        internal
            .internal_subscriptions
            .fetch_sub(1, Ordering::Relaxed);
    });

    let guard = gate::Guard {
        origins: state.origins.clone(),
        max_payload,
    };
    Router::new()
        .route(PATH, any(gate::not_socketio))
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(guard.clone()),
            gate::check_request,
        ))
        .layer(gate::cors(&guard, &config.allow_origins))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            owner::route,
        ))
        .route(BUNDLE_PATH, get(gate::bundle))
        .route(&format!("{BUNDLE_PATH}.map"), get(gate::bundle))
}

/// What the handlers share. One pointer: each socket's handlers hold a copy.
#[derive(Clone)]
struct Chat(Arc<Shared>);

struct Shared {
    poster: Poster,
    rooms: Arc<Rooms>,
    /// `--max-joined-rooms`.
    max_joined: usize,
}

impl std::ops::Deref for Chat {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Chat {
    /// Connect middleware: runs before the client is told it is connected, so `msg:post` and
    /// the room requests are handled from the client's very first packet. A malformed `auth`
    /// is refused with a `connect_error` naming the problem. The socket is in `general` (and
    /// present there) from now on.
    fn handshake(
        &self,
        socket: SocketRef,
        auth: Result<serde_json::Value, impl std::fmt::Display>,
    ) -> Result<(), String> {
        let auth = auth.map_err(|e| format!("auth must be a JSON object: {e}"))?;
        let mut handshake = Handshake::parse(&auth, &self.poster.limits)?;
        // `--auth token`: the token of `auth.token` (or the session cookie) says who the
        // socket is; it posts and is present under the token's name.
        let token = handshake
            .token
            .take()
            .or_else(|| crate::auth::gate::cookie(&socket.req_parts().headers));
        let identity = self
            .poster
            .state
            .auth
            .identify(token.as_deref())
            .map_err(|e| format!("{} ({})", e, e.code()))?;
        let mut in_general = true;
        if let Some(identity) = identity {
            session::watch(&socket, &self.poster.state.auth, &identity);
            // A token whose `rooms` claim leaves out `general` connects into no room.
            in_general = identity.may_enter(GENERAL).is_ok();
            match &handshake.user {
                Some(user) if **user != *identity.name => {
                    return Err(format!(
                        "auth.user must be your name {:?} (from your token), not {user:?} (not_your_name)",
                        identity.name
                    ))
                }
                _ => handshake.user = Some(Arc::from(identity.name.as_str())),
            }
            socket.extensions.insert(Arc::new(identity));
        }
        let member = Member::new(handshake.user.clone(), handshake.snapshots);
        if in_general {
            let general = self.rooms.general().clone();
            let who = socket.extensions.get::<Arc<crate::auth::Identity>>();
            let present = crate::transport::attendee(who.as_deref(), handshake.user.as_deref());
            member.add(Membership::new(self, general, present));
        }
        socket.extensions.insert(member);
        // The closure bodies run as socketioxide reads the packet, in arrival order; only the
        // futures they return run as tasks of their own.
        let chat = self.clone();
        socket.on(sio::MSG_POST, move |Enqueued(post): Enqueued| {
            chat.poster.enqueue(post)
        });
        let chat = self.clone();
        socket
            .on_fallback(move |request: member::Request| member::on_request(chat.clone(), request));
        socket.on_disconnect(member::on_disconnect);
        Ok(())
    }

    /// Connect handler (a task of its own): a fresh socket is handed to `general`'s
    /// broadcaster, which sends it the history and lets it into the room; a resuming one first
    /// gets what it missed from this task (`resume`). Room requests the client sent
    /// meanwhile wait until then. `auth` passed the middleware, which parsed it already.
    async fn connected(&self, socket: SocketRef, auth: Option<serde_json::Value>) {
        let handshake = auth
            .and_then(|auth| Handshake::parse(&auth, &self.poster.limits).ok())
            .unwrap_or_default();
        let Some(member) = Member::of(&socket) else {
            return;
        };
        let turn = member.connect_turn();
        if let Some(user) = member.user() {
            socket.join(member::user_room(user));
        }
        let general = self.rooms.general();
        if !member.is_in(GENERAL) {
            // Not let into `general` (its token's `rooms` claim): rooms by `room:join` only.
            if let Some(turn) = turn {
                member.done(turn);
            }
            return;
        }
        match handshake.last {
            Some(last) => {
                let position = Position::new(last, handshake.epoch);
                let hub = self.rooms.hub();
                let resumed =
                    resume::resume(hub, general, &socket, &member, Greeting::Connect, position)
                        .await;
                if let Resumed::Failed { error, .. } = resumed {
                    resume_failed(&socket, &error);
                }
            }
            None => {
                let start = JoinStart::Fresh;
                let _ = hand_over(general, &socket, &member, start, Greeting::Connect).await;
            }
        }
        if let Some(turn) = turn {
            member.done(turn);
        }
    }
}

/// A resume of `general` at connect the store could not serve: the client is told why and
/// disconnected, rather than let in live with a gap; it may reconnect and resume from the
/// same position.
fn resume_failed(socket: &SocketRef, error: &dyn std::fmt::Display) {
    tracing::error!(%error, "Socket.IO resume failed");
    let body = ErrorBody::new(format!("could not resume: {error}; reconnect to try again"));
    let _ = socket.emit(sio::MSG_ERROR, &body);
    let _ = socket.clone().disconnect();
}

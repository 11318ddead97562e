//! The chat over WebSockets, on rtchat's own RFC 6455 implementation ([`rtchat_ws`]).
//!
//! Upgrades are accepted at `/ws` and at `/` (the course's client connects to
//! `ws://localhost:8080`). Two subprotocols:
//!
//! * `json` (the course's; also what a client offering no subprotocol gets): the room
//!   `general` only. On connect a text frame `{"msg":[...],"last":N,"epoch":E}` with the
//!   history, newest first; the client sends `{"user":"...","text":"..."}`; after every new
//!   message every connection gets the new snapshot. An invalid post gets `{"error":"..."}`
//!   and is not stored.
//! * `rtchat.v1` (preferred when offered): only new messages travel, in any number of rooms.
//!   Every frame about a room names it in `"room"` (`general` too); a client frame without
//!   `"room"` means `general`. On connect `{"type":"history","room":"general","msg":[...],
//!   "last":N,"epoch":E}`; then `{"type":"msg","room":R,"msg":{id,user,text,time}}` per
//!   message. The client posts `{"type":"post","room":R,"user":"...","text":"...","ref":X}`
//!   and gets `{"type":"ack","ref":X,"room":R,"id":N}` or `{"type":"error","ref":X,"room":R,
//!   "error":"..."}` (`ref` is any JSON value of the client's, echoed back, optional). To
//!   resume, connect with `?since=ID`: the server sends exactly the messages after ID as `msg`
//!   frames, in order, then `{"type":"resumed","room":R,"after":ID,"count":K,"last":N,
//!   "epoch":E}`, then the live ones — no `history`. `?since=ID&epoch=E` names the epoch too;
//!   if it is another epoch, or ID is newer than anything this server handed out (it
//!   restarted with an empty memory store), it sends `{"type":"reset",...}` and then
//!   `history`; if the messages after ID are no longer kept, `{"type":"truncated",...}` comes
//!   first.
//!
//! Rooms (rtchat.v1): `?rooms=a,b` puts the connection in those rooms instead of `general`
//! (each gets `{"type":"joined","room","last","epoch"}` and then its history; `since`/`epoch`
//! then resume the one room named; `?rooms=` alone: no room); `{"type":"join","room",
//! "since"?,"epoch"?,"ref"?,"user"?}` and `{"type":"leave","room","ref"?}` change them on the
//! way (`joined` and the history or resume frames, before any live `msg` of the room; `left`).
//! Refused joins and leaves (bad names, `--max-rooms`, `--max-joined-rooms`, a room already
//! joined, one not joined) get an `error` frame with the room; the connection stays open. A post
//! may go to any room (a first post creates it). `?user=NAME`, or the `user` of a `join` or
//! `typing` frame (which renames it), names the connection for presence: each room's
//! `{"type":"presence","room","joined","left"}` frames list names. `{"type":"typing","room",
//! "user"?}` in a joined room tells the room's other connections `{"type":"typing","room",
//! "user"}` (at most once a second per user; never stored; never told to connections of the
//! same name). Join, leave and typing frames do not count against the post rate limits. An
//! upgrade whose `rooms`, `since` or `user` cannot be honoured is refused (`400`, or `403` past
//! `--max-rooms`) with `{"error":...}`; the course's `json` ignores `rooms` and `since` (and a
//! bad `user`).
//!
//! Posts obey the post rate limits ([`crate::rate_limit`]): one refused gets an error frame
//! (with `retry_after_ms`); ten refused in a row close the connection with 1008.
//!
//! Binary messages close the connection with 1003; a bad frame closes it with the code RFC
//! 6455 names (1002, 1007, 1009), done by [`rtchat_ws`]. Frames of the fan-out are encoded once
//! per message and shared by all connections ([`rtchat_core::Entry::encoded`]).
//!
//! A connection's first room is polled in place, as when there were no rooms: one room costs
//! what it always did. Rooms beyond it each wait in a future of their own
//! ([`FuturesUnordered`]), polled only when woken, so a connection in N rooms does not poll N
//! subscriptions on every wakeup.

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::header::SEC_WEBSOCKET_EXTENSIONS;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::auth::access::Denied;
use crate::auth::lifetime::{Credential, Heard};
use crate::auth::token::Identity;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::{Either, FutureExt, OptionFuture};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use rtchat_core::{
    check_room_name, Attendee, Delivery, Entry, Hub, Limits, NewPost, Position, PostError, Poster,
    PresenceGuard, Signal, Snapshot, Start, Subscription, Ticket, TrySubmitError, GENERAL,
};
use rtchat_ws::handshake::{select_subprotocol, validate, HandshakeError};
use rtchat_ws::{CloseCode, EncodedFrame, Message, SharedMessage, WebSocket};
use serde::Deserialize;
use serde_json::Value;

use crate::admission::ConnectionSlot;
use crate::api::ApiError;
use crate::drain::Deadline;
use crate::metrics::{Counted, PostRefusal, Via};
use crate::rate_limit::{ConnectionBucket, Refused, WS_CLOSE_REASON, WS_REFUSALS_BEFORE_CLOSE};
use crate::state::AppState;
use axum::routing::any;
use axum::Router;
use rtchat_protocol::http::WS;
use rtchat_protocol::shapes::{Reset, Resumed, Truncated};
use rtchat_protocol::v1::{self, ClientFrame, ServerFrame};
use rtchat_protocol::ErrorBody;

/// The course's subprotocol: full snapshots.
pub const JSON: &str = v1::JSON_SUBPROTOCOL;
/// rtchat's own subprotocol: deltas, acks, typed errors, resume, rooms.
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
    let query = match upgrade_query(req.uri()) {
        Ok(query) => query,
        Err(e) => return e.into_response(),
    };
    // `?user=` is rtchat's, not the course's (whose clients never send it): a bad name is
    // refused on both subprotocols, as `GET /poll?user=` refuses it.
    let user = match query
        .user
        .map(|u| (check_user(&u, &state.hub.config().limits), u))
    {
        Some((Ok(()), user)) => Some(Arc::<str>::from(user)),
        Some((Err(e), _)) => return ApiError::new(StatusCode::BAD_REQUEST, e).into_response(),
        None => None,
    };
    // With `--auth token` the connection is its token's user, present under its name, until
    // its token ends.
    let identity = req.extensions().get::<Arc<Identity>>().cloned();
    let credential = identity
        .as_ref()
        .map(|i| Box::new(state.auth.credential(i)));
    let poster = crate::auth::gate::poster_of(req.extensions());
    let user = match (&poster, user) {
        (None, user) => user,
        (Some(poster), Some(user)) if *user != *poster.name => {
            return not_your_name(&user, &poster.name).into_response()
        }
        (Some(poster), _) => Some(Arc::from(poster.name.as_str())),
    };
    // The course's `json` protocol is `general` only and has no resume: its first snapshot is
    // the history.
    let (position, rooms) = match mode {
        Mode::Deltas => (query.position, query.rooms),
        Mode::Snapshots => (None, None),
    };
    if let Some(rooms) = &rooms {
        if let Err(e) = check_upgrade_rooms(rooms, &position, state.config.max_joined_rooms) {
            return e.into_response();
        }
    }
    // A token's `rooms` claim: every room the upgrade enters.
    let general = [GENERAL.to_owned()];
    let entering: &[String] = rooms.as_deref().unwrap_or(&general);
    for room in entering {
        if let Err(e) = super::enter_room(&state, identity.as_deref(), room) {
            return e.into_response();
        }
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    // The upgraded connection keeps its place under the connection caps.
    let slot = upgraded_place(&req);
    let client = state.proxies.client(&req).map(|c| c.ip);
    let config = state.config.websocket.clone();
    // Once the server stops, closed (1001) at this moment of the close window.
    let shutdown = state.drain.deadline();
    // Subscribe before answering 101, so no message posted after the handshake is missed.
    let hub = &state.hub;
    let (rooms, starts) = match rooms {
        None => match hub.subscribe(GENERAL, position.as_ref()).await {
            Ok(opened) => {
                let present = super::attendee(identity.as_deref(), user.as_deref());
                let joined = Joined::enter(hub, opened.subscription, mode, present);
                (Rooms::One(joined), Starts::General(opened.start))
            }
            Err(e) => return ApiError::from(e).into_response(),
        },
        Some(names) => {
            let mut rooms = Vec::with_capacity(names.len());
            for name in &names {
                match hub.subscribe(name, position.as_ref()).await {
                    Ok(opened) => {
                        let present = super::attendee(identity.as_deref(), user.as_deref());
                        let joined = Joined::enter(hub, opened.subscription, mode, present);
                        rooms.push((opened.start, joined));
                    }
                    Err(e) => return ApiError::from(e).into_response(),
                }
            }
            (Rooms::Out(user), Starts::Rooms(Box::new(rooms)))
        }
    };
    let posts = PostGate::new(state.clone(), client, identity);
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
                _open: posts.state.metrics.client(via),
                out: Out {
                    ws: WebSocket::new(TokioIo::new(upgraded), config).with_deflate(deflate),
                    mode,
                    posts,
                },
                in_flight: VecDeque::new(),
                rooms,
                shutdown,
                credential,
                _slot: slot,
            };
            // Not an `async fn` of `Connection`: one taking `self` by value would hold it
            // twice, and its arguments would be copied next to the captures.
            Either::Left(async move {
                let end = match conn.start(starts).await {
                    Ok(()) => conn.serve().await,
                    Err(end) => end,
                };
                if let End::Close(code, reason) = end {
                    let _ = conn.out.ws.close(code, reason).await;
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

/// What the upgrade URL asks for.
#[derive(Debug, Default, PartialEq, Eq)]
struct UpgradeQuery {
    /// `?since=ID&epoch=E`: where a rtchat.v1 client resumes.
    position: Option<Position>,
    /// `?rooms=a,b`: in those rooms only (each once, in order); `None`: in `general`.
    rooms: Option<Vec<String>>,
    /// `?user=NAME`: who the connection is, for presence and typing.
    user: Option<String>,
}

/// With `--auth token`, a name other than the token's: `403`.
fn not_your_name(posted: &str, name: &str) -> ApiError {
    ApiError::from(PostError::NotYourName {
        posted: posted.to_owned(),
        name: name.to_owned(),
    })
}

fn bad_request(error: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, error)
}

/// Reads `since`, `epoch`, `rooms` and `user` from the upgrade URL (percent-decoded; the last
/// of a repeated key counts). An empty `user` names no one; an empty `rooms` names no room.
fn upgrade_query(uri: &Uri) -> Result<UpgradeQuery, ApiError> {
    if uri.query().is_none() {
        return Ok(UpgradeQuery::default());
    }
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| bad_request(format!("the query string cannot be read: {e}")))?;
    let (mut since, mut epoch, mut query) = (None, None, UpgradeQuery::default());
    for (key, value) in pairs {
        match key.as_str() {
            "since" => {
                since = Some(value.parse().map_err(|_| {
                    bad_request(format!("since must be a message id, got {value:?}"))
                })?)
            }
            "epoch" => epoch = Some(value),
            "rooms" => {
                let mut rooms: Vec<String> = Vec::new();
                for room in value.split(',').filter(|r| !r.is_empty()) {
                    if !rooms.iter().any(|r| r == room) {
                        rooms.push(room.to_owned());
                    }
                }
                query.rooms = Some(rooms);
            }
            "user" => query.user = Some(value).filter(|u| !u.is_empty()),
            _ => {}
        }
    }
    query.position = since.map(|after| Position::new(after, epoch));
    Ok(query)
}

/// `?rooms=` names only good rooms, no more than a connection may be in, and `since` only
/// with one of them.
fn check_upgrade_rooms(
    rooms: &[String],
    position: &Option<Position>,
    max_joined: usize,
) -> Result<(), ApiError> {
    if rooms.len() > max_joined {
        return Err(bad_request(format!(
            "?rooms= names {} rooms; a connection may be in at most {max_joined} (--max-joined-rooms)",
            rooms.len()
        )));
    }
    if position.is_some() && rooms.len() != 1 {
        return Err(bad_request(format!(
            "since and epoch resume one room, and ?rooms= names {}: name one, or resume each \
             with a join frame {{\"type\":\"join\",\"room\":R,\"since\":ID,\"epoch\":E}}",
            rooms.len()
        )));
    }
    for room in rooms {
        check_room_name(room)?;
    }
    Ok(())
}

/// A name for presence follows the rules of a post's `user` (the same error texts).
fn check_user(user: &str, limits: &Limits) -> Result<(), String> {
    let probe = serde_json::json!({ "user": user, "text": "-" });
    NewPost::from_value(&probe, limits)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Frame caches (keys of `Entry::encoded` / `Snapshot::encoded`): each message's frame is
/// encoded once, and compressed once per window size connections agreed on (permessage-
/// deflate, [`SharedMessage`]); every connection sends the same bytes. An entry and a snapshot
/// belong to one room, so its name is part of their frames.
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

/// `"room":"NAME",` (room names need no escaping, but are escaped anyway).
fn put_room(out: &mut BytesMut, room: &str) {
    out.put_slice(b"\"room\":");
    let mut writer = out.writer();
    serde_json::to_writer(&mut writer, room).expect("a string serializes");
    writer.into_inner().put_u8(b',');
}

fn history_frame(room: &str, snapshot: &Snapshot) -> SharedMessage {
    let HistoryFrame(frame) = snapshot.encoded(|s| {
        let mut out = BytesMut::with_capacity(s.json.len() + room.len() + 30);
        out.put_slice(b"{\"type\":\"history\",");
        put_room(&mut out, room);
        out.put_slice(&s.json[1..]);
        HistoryFrame(SharedMessage::text(out.freeze()))
    });
    frame
}

fn delta_frame(room: &str, entry: &Entry) -> SharedMessage {
    let DeltaFrame(frame) = entry.encoded(|e| {
        let mut out = BytesMut::with_capacity(e.json.len() + room.len() + 34);
        out.put_slice(b"{\"type\":\"msg\",");
        put_room(&mut out, room);
        out.put_slice(b"\"msg\":");
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

/// A presence or typing signal's frame, for a connection of `user`: typing is not told back
/// to its own user's connections.
fn signal_step(signal: &Signal, user: Option<&Arc<str>>) -> Step {
    let own = signal
        .typing_user()
        .is_some_and(|u| user.is_some_and(|own| **own == *u));
    if own {
        Step::Nothing
    } else {
        Step::Send(EncodedFrame::text(signal.frame.clone()))
    }
}

/// An rtchat.v1 `error` frame.
fn error_frame(reference: Value, room: Option<&str>, error: String) -> EncodedFrame {
    text(&ServerFrame::Error {
        reference,
        room: room.map(str::to_owned),
        error,
        retry_after_ms: None,
    })
}

/// What one turn of [`Connection::serve`] does once something happened.
enum Step {
    Nothing,
    Send(EncodedFrame),
    /// A message of the hub for this connection (others may be waiting right behind it),
    /// and its commit time if it is sampled for the fan-out latency.
    Deliver(EncodedFrame, Option<Instant>),
    /// A post waiting for room in the hub's queue, or for its room to be opened (boxed: rare,
    /// and this is kept small).
    Wait(Box<(Option<Value>, Arc<str>, NewPost)>),
    /// Re-read what the first room's delta subscription missed.
    CatchUp,
    /// The first room's history began again under a new epoch: `reset`, then `history`.
    Reset,
    /// Presence or typing of a room (see [`signal_step`]).
    Signal(Arc<Signal>),
    /// A room beyond the first has something.
    Woke(Box<Woke>),
    /// A `join` frame.
    Join(Box<JoinFrame>),
    /// A `typing` frame: the room, the frame's `user`, its `ref`.
    Typing(Box<(String, Option<String>, Value)>),
    /// A room's access narrowed (`None`: maybe several): leave those it may no longer be in.
    Narrowed(Option<Arc<str>>),
}

/// A `join` frame, read.
struct JoinFrame {
    room: String,
    position: Option<Position>,
    reference: Value,
    user: Option<String>,
}

/// Why a post was not taken: the hub's reasons, a frame that is not a post at all, or a rate
/// limit.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    #[error("{0}")]
    Post(PostError),
    #[error("rtchat.v1 frames need a \"type\": post, join, leave or typing")]
    NotAPost,
    #[error("{0}")]
    RateLimited(Refused),
    /// The token's `rooms` claim leaves the room out, or the room is private.
    #[error("{0}")]
    RoomNotAllowed(Denied),
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
    /// Who the connection's token says it is (`--auth token`): its posts are theirs.
    poster: Option<Box<Poster>>,
    /// The same token's identity, for its `rooms` claim.
    who: Option<Arc<Identity>>,
    bucket: Option<Box<ConnectionBucket>>,
    refused_in_a_row: u32,
}

impl PostGate {
    fn new(state: AppState, client: Option<IpAddr>, who: Option<Arc<Identity>>) -> PostGate {
        PostGate {
            state,
            client,
            poster: who.as_ref().map(|w| Box::new(w.poster())),
            who,
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

/// A post of this connection waiting for the store, with the client's `ref` and its room.
type InFlight = (Option<Value>, Arc<str>, Ticket);

/// A room the connection is in: its place in the room's stream and in its presence.
struct Joined {
    subscription: Subscription,
    presence: PresenceGuard,
}

impl Joined {
    /// In the room of `subscription` from now on; a delta connection hears its presence and
    /// typing too.
    fn enter(
        hub: &Hub,
        mut subscription: Subscription,
        mode: Mode,
        user: Option<Attendee>,
    ) -> Joined {
        if mode == Mode::Deltas {
            subscription.with_signals();
        }
        let presence = hub.present_as(subscription.channel(), user);
        Joined {
            subscription,
            presence,
        }
    }

    fn name(&self) -> &str {
        self.subscription.channel().name()
    }
}

/// How a connection starts; needed once, so not kept in [`Connection`].
enum Starts {
    /// No `?rooms=` (the course's way): `general`, already the connection's first room,
    /// starts so, with no `joined` frame.
    General(Start),
    /// `?rooms=a,b`: each room in turn gets `joined` and its start, then is joined. (A
    /// `Box<Vec>`: one word, so this is no wider than `Start`, and the task keeps it.)
    #[allow(clippy::box_collection)]
    Rooms(Box<Vec<(Start, Joined)>>),
}

/// Set when the connection leaves a room beyond its first: the room's waiting future ends at
/// once (dropping the subscription) instead of at the room's next delivery.
#[derive(Default)]
struct LeftFlag {
    left: AtomicBool,
    waker: AtomicWaker,
}

/// A room beyond the first. Its subscription is in its [`Waiting`] future meanwhile.
struct Extra {
    presence: PresenceGuard,
    left: Arc<LeftFlag>,
}

impl Extra {
    fn name(&self) -> &str {
        self.presence.channel().name()
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        self.left.left.store(true, Ordering::Release);
        self.left.waker.wake();
    }
}

/// What a room beyond the first delivered, with its subscription (back for the delivery to
/// be handled; then it waits again).
struct Woke {
    subscription: Subscription,
    delivery: Option<Delivery>,
}

/// A room beyond the first, waiting for its next delivery: owns the subscription meanwhile.
/// Ends with `None` once the room is left.
struct Waiting {
    left: Arc<LeftFlag>,
    recv: Pin<Box<dyn Future<Output = Woke> + Send>>,
}

impl Waiting {
    fn new(left: Arc<LeftFlag>, mut subscription: Subscription) -> Waiting {
        Waiting {
            left,
            recv: Box::pin(async move {
                let delivery = subscription.recv().await;
                Woke {
                    subscription,
                    delivery,
                }
            }),
        }
    }
}

impl Future for Waiting {
    type Output = Option<Woke>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Woke>> {
        let this = self.get_mut();
        if this.left.left.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        this.left.waker.register(cx.waker());
        if this.left.left.load(Ordering::Acquire) {
            return Poll::Ready(None);
        }
        this.recv.as_mut().poll(cx).map(Some)
    }
}

/// The rooms a connection is in, and who it is. One room (most connections) costs its
/// [`Joined`] and nothing more.
enum Rooms {
    /// In none (each left, or `?rooms=` named none): just the connection's name.
    Out(Option<Arc<str>>),
    /// In one: polled in place. The connection's name is its presence's.
    One(Joined),
    /// In several (or fewer, until the futures of rooms just left have ended).
    Many(Box<Many>),
}

/// The rooms of a connection in several.
struct Many {
    /// The first room, polled in place as [`Rooms::One`] is.
    first: Option<Joined>,
    /// The others, each waiting in a future of its own ...
    rooms: Vec<Extra>,
    /// ... here (with, briefly, those of rooms just left), polled only when woken.
    waiting: FuturesUnordered<Waiting>,
    user: Option<Arc<str>>,
}

impl Rooms {
    /// The room polled in place.
    fn first(&self) -> Option<&Joined> {
        match self {
            Rooms::One(joined) => Some(joined),
            Rooms::Many(many) => many.first.as_ref(),
            Rooms::Out(_) => None,
        }
    }

    fn first_mut(&mut self) -> Option<&mut Joined> {
        match self {
            Rooms::One(joined) => Some(joined),
            Rooms::Many(many) => many.first.as_mut(),
            Rooms::Out(_) => None,
        }
    }

    /// Who the connection is (`?user=`, or the latest `user` of a `join` or `typing`).
    fn user(&self) -> Option<&Arc<str>> {
        match self {
            Rooms::Out(user) => user.as_ref(),
            Rooms::One(joined) => joined.presence.user(),
            Rooms::Many(many) => many.user.as_ref(),
        }
    }

    /// How many rooms the connection is in.
    fn count(&self) -> usize {
        match self {
            Rooms::Out(_) => 0,
            Rooms::One(_) => 1,
            Rooms::Many(many) => usize::from(many.first.is_some()) + many.rooms.len(),
        }
    }

    /// The room polled in place and the futures of the others, apart.
    fn split(&mut self) -> (Option<&mut Joined>, Option<&mut FuturesUnordered<Waiting>>) {
        match self {
            Rooms::One(joined) => (Some(joined), None),
            Rooms::Many(many) => (many.first.as_mut(), Some(&mut many.waiting)),
            Rooms::Out(_) => (None, None),
        }
    }

    /// Whether rooms beyond the first have futures to poll.
    fn waiting(&self) -> bool {
        matches!(self, Rooms::Many(many) if !many.waiting.is_empty())
    }

    /// The connection's own handle on the name of `room`, if it is in it.
    fn find(&self, room: &str) -> Option<&Arc<str>> {
        if let Some(joined) = self.first().filter(|j| j.name() == room) {
            return Some(joined.subscription.channel().name());
        }
        let Rooms::Many(many) = self else {
            return None;
        };
        let extra = many.rooms.iter().find(|e| e.name() == room)?;
        Some(extra.presence.channel().name())
    }

    /// The names of the rooms the connection is in.
    fn names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self
            .first()
            .map(|j| j.subscription.channel().name().clone())
            .into_iter()
            .collect();
        if let Rooms::Many(many) = self {
            names.extend(
                many.rooms
                    .iter()
                    .map(|e| e.presence.channel().name().clone()),
            );
        }
        names
    }

    /// Adds a room whose start was sent: polled in place if it is the only one, else in a
    /// future of its own.
    fn install(&mut self, joined: Joined) {
        if let Rooms::Out(_) = self {
            *self = Rooms::One(joined);
            return;
        }
        if let Rooms::One(_) = self {
            let Rooms::One(first) = std::mem::replace(self, Rooms::Out(None)) else {
                unreachable!("matched just above");
            };
            let user = first.presence.user().cloned();
            *self = Rooms::Many(Box::new(Many {
                first: Some(first),
                rooms: Vec::new(),
                waiting: FuturesUnordered::new(),
                user,
            }));
        }
        let Rooms::Many(many) = self else {
            unreachable!("made just above");
        };
        if many.first.is_none() {
            many.first = Some(joined);
            return;
        }
        let left = Arc::new(LeftFlag::default());
        let Joined {
            subscription,
            presence,
        } = joined;
        many.waiting.push(Waiting::new(left.clone(), subscription));
        many.rooms.push(Extra { presence, left });
    }

    /// Leaves `room`; false if the connection is not in it.
    fn leave(&mut self, room: &str) -> bool {
        match self {
            Rooms::One(joined) if joined.name() == room => {
                let user = joined.presence.user().cloned();
                *self = Rooms::Out(user);
                true
            }
            Rooms::Many(many) => {
                if many.first.as_ref().is_some_and(|j| j.name() == room) {
                    many.first = None;
                } else if let Some(i) = many.rooms.iter().position(|e| e.name() == room) {
                    // Its waiting future ends at its next poll, dropping the subscription.
                    many.rooms.swap_remove(i);
                } else {
                    return false;
                }
                self.tidy();
                true
            }
            _ => false,
        }
    }

    /// Back to [`Rooms::One`] or [`Rooms::Out`] once nothing beyond the first is left.
    fn tidy(&mut self) {
        let Rooms::Many(many) = self else { return };
        if !many.rooms.is_empty() || !many.waiting.is_empty() {
            return;
        }
        *self = match many.first.take() {
            Some(first) => Rooms::One(first),
            None => Rooms::Out(many.user.take()),
        };
    }

    /// Names the connection: in each room's presence under `user` from now on.
    fn rename(&mut self, hub: &Hub, user: Arc<str>) {
        let enter = |joined: &mut Joined| {
            joined.presence = hub.present(joined.subscription.channel(), Some(&user));
        };
        match self {
            Rooms::Out(name) => *name = Some(user.clone()),
            Rooms::One(joined) => enter(joined),
            Rooms::Many(many) => {
                if let Some(first) = many.first.as_mut() {
                    enter(first);
                }
                for extra in &mut many.rooms {
                    let channel = extra.presence.channel().clone();
                    extra.presence = hub.present(&channel, Some(&user));
                }
                many.user = Some(user.clone());
            }
        }
    }
}

/// One WebSocket connection. It and its `start`/`serve` futures are the whole task of an
/// idle connection, so they are kept small: rarely taken paths that would widen every await
/// point (resuming, lag recovery, waiting for room in the hub's queue, joining, a room beyond
/// the first) are boxed, and nothing is allocated before it is needed.
struct Connection<S> {
    out: Out<S>,
    /// This connection's posts queued in the hub, oldest first. The hub stores posts in the
    /// order they were submitted, so only the oldest ticket needs polling.
    in_flight: VecDeque<InFlight>,
    rooms: Rooms,
    /// When the server stops: the moment this connection closes with 1001.
    shutdown: Deadline,
    /// With `--auth token`: when the connection's token ends (expiry past the grace, or
    /// revocation): it closes with 4001 or 4005.
    credential: Option<Box<Credential>>,
    /// Counted in `rtchat_clients` while it lives.
    _open: Counted,
    /// The connection's place under the connection caps, kept after the upgrade.
    _slot: Option<ConnectionSlot>,
}

/// The sending side of a connection and what it needs to build frames (apart from the
/// rooms, so a room's subscription can be borrowed beside it).
struct Out<S> {
    ws: WebSocket<S>,
    mode: Mode,
    posts: PostGate,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Connection<S> {
    /// What a connection gets first: its room's history, or (rtchat.v1 with `since`) what it
    /// missed, or a reset and then the history; each room of `?rooms=` after a `joined`.
    async fn start(&mut self, starts: Starts) -> Result<(), End> {
        match starts {
            Starts::General(start) => match self.rooms.first_mut() {
                Some(room) => self.out.start(&mut room.subscription, start).await,
                None => Ok(()),
            },
            Starts::Rooms(rooms) => Box::pin(self.start_rooms(*rooms)).await,
        }
    }

    async fn start_rooms(&mut self, rooms: Vec<(Start, Joined)>) -> Result<(), End> {
        for (start, mut joined) in rooms {
            self.out.joined(&joined.subscription, Value::Null).await?;
            self.out.start(&mut joined.subscription, start).await?;
            self.rooms.install(joined);
        }
        Ok(())
    }

    /// The connection's life after `start`. The `select!` arms only decide what to do; the
    /// awaits come after it. This future is most of an idle connection's task.
    async fn serve(&mut self) -> End {
        loop {
            let (in_one, in_more) = (self.rooms.first().is_some(), self.rooms.waiting());
            let has_credential = self.credential.is_some();
            let (first, mut more) = self.rooms.split();
            let step = tokio::select! {
                incoming = self.out.ws.recv(), if self.in_flight.len() < MAX_IN_FLIGHT => match incoming {
                    Ok(Message::Text(text)) => self.on_text(text.as_bytes()),
                    Ok(Message::Binary(_)) => Err(End::Close(
                        CloseCode::UNSUPPORTED,
                        "binary messages are not supported; send JSON text",
                    )),
                    Ok(Message::Close(_)) | Err(_) => Err(End::Gone),
                },
                stored = poll_fn(|cx| match self.in_flight.front_mut() {
                    Some((_, _, ticket)) => ticket.poll_unpin(cx),
                    None => Poll::Pending,
                }), if !self.in_flight.is_empty() => {
                    let (reference, room, _) = self.in_flight.pop_front().expect("polled the oldest post");
                    let reply = self.out.reply(reference, Some(room), stored.map_err(Refusal::Post));
                    Ok(reply.map_or(Step::Nothing, Step::Send))
                }
                // No wrapper of its own around the subscription's future (`OptionFuture` fits
                // in its niche): this arm is most of the future of an idle connection.
                delivery = OptionFuture::from(first.map(|room| room.subscription.recv())), if in_one => match (delivery.flatten(), self.rooms.first()) {
                    (Some(delivery), Some(room)) => Ok(match self.out.on_delivery(&room.subscription, delivery) {
                        Step::Signal(signal) => signal_step(&signal, room.presence.user()),
                        step => step,
                    }),
                    _ => Err(End::Close(CloseCode::GOING_AWAY, "server shutting down")),
                },
                woke = poll_fn(|cx| match more.as_mut() {
                    Some(waiting) => waiting.poll_next_unpin(cx),
                    None => Poll::Pending,
                }), if in_more => match woke {
                    Some(Some(woke)) => Ok(Step::Woke(Box::new(woke))),
                    // A room was left: its subscription is gone now.
                    _ => {
                        self.rooms.tidy();
                        Ok(Step::Nothing)
                    }
                },
                () = self.shutdown.reached() => Err(End::Close(CloseCode::GOING_AWAY, "server shutting down")),
                Some(heard) = OptionFuture::from(self.credential.as_mut().map(|c| c.next())), if has_credential => match heard {
                    Heard::Ended(ended) => {
                        let (code, reason) = ended.close();
                        Err(End::Close(CloseCode(code), reason))
                    }
                    Heard::Narrowed(room) => Ok(Step::Narrowed(room)),
                }
            };
            let frame = match step {
                Ok(Step::Send(frame)) => frame,
                Ok(Step::Deliver(first, sample)) => {
                    let Some(room) = self.rooms.first_mut() else {
                        continue;
                    };
                    match self
                        .out
                        .deliver(&mut room.subscription, first, sample)
                        .await
                    {
                        Ok(Step::Send(frame)) => frame,
                        Ok(Step::CatchUp) => {
                            match Box::pin(self.out.catch_up(&mut room.subscription)).await {
                                Ok(_) => continue,
                                Err(end) => return end,
                            }
                        }
                        Ok(Step::Reset) => {
                            match Box::pin(self.out.start(&mut room.subscription, Start::Reset))
                                .await
                            {
                                Ok(()) => continue,
                                Err(end) => return end,
                            }
                        }
                        Ok(Step::Signal(signal)) => match signal_step(&signal, self.rooms.user()) {
                            Step::Send(frame) => frame,
                            _ => continue,
                        },
                        Ok(_) => continue,
                        Err(end) => return end,
                    }
                }
                // (Signals were turned into frames above.)
                Ok(Step::Nothing | Step::Signal(_)) => continue,
                // Rare and wide, so boxed: the hub's queue is full (the store lags behind), a
                // post opens a room, this delta connection fell behind the hub, a room beyond
                // the first has something, a join, a typing frame.
                Ok(Step::Wait(waiting)) => {
                    let (reference, room, post) = *waiting;
                    match Box::pin(self.submit_waiting(reference, room, post)).await {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
                Ok(Step::CatchUp) => {
                    let Some(room) = self.rooms.first_mut() else {
                        continue;
                    };
                    match Box::pin(self.out.catch_up(&mut room.subscription)).await {
                        Ok(_) => continue,
                        Err(end) => return end,
                    }
                }
                Ok(Step::Reset) => {
                    let Some(room) = self.rooms.first_mut() else {
                        continue;
                    };
                    match Box::pin(self.out.start(&mut room.subscription, Start::Reset)).await {
                        Ok(()) => continue,
                        Err(end) => return end,
                    }
                }
                Ok(Step::Woke(woke)) => match Box::pin(self.on_woke(*woke)).await {
                    Ok(()) => continue,
                    Err(end) => return end,
                },
                Ok(Step::Join(join)) => match Box::pin(self.join(*join)).await {
                    Ok(()) => continue,
                    Err(end) => return end,
                },
                Ok(Step::Typing(typing)) => {
                    let (room, user, reference) = *typing;
                    match Box::pin(self.typing(room, user, reference)).await {
                        Some(frame) => frame,
                        None => continue,
                    }
                }
                Ok(Step::Narrowed(room)) => match Box::pin(self.narrowed(room)).await {
                    Ok(()) => continue,
                    Err(end) => return end,
                },
                Err(end) => return end,
            };
            if let Err(end) = self.out.send(&frame).await {
                return end;
            }
        }
    }

    /// A room's access narrowed (`None`: maybe several): the connection leaves each room it
    /// may no longer be in, with an unasked `left` saying why.
    async fn narrowed(&mut self, room: Option<Arc<str>>) -> Result<(), End> {
        let Some(credential) = &self.credential else {
            return Ok(());
        };
        let rooms = match room {
            Some(room) => self.rooms.find(&room).cloned().into_iter().collect(),
            None => self.rooms.names(),
        };
        for room in rooms {
            let Err(denied) = credential.may_stay(&room) else {
                continue;
            };
            self.rooms.leave(&room);
            let left = ServerFrame::Left {
                room: room.to_string(),
                reference: Value::Null,
                reason: Some(denied.to_string()),
            };
            self.out.send(&text(&left)).await?;
        }
        Ok(())
    }

    /// A text frame: a post (queued: the ack follows once it is stored, while the connection
    /// goes on reading: a client may have many posts in flight), or (rtchat.v1) a join, leave
    /// or typing. Every frame that is not a join, leave or typing counts against the post
    /// rate limits, valid or not; too many refused in a row close the connection.
    fn on_text(&mut self, body: &Bytes) -> Result<Step, End> {
        let value: Result<Value, Refusal> =
            serde_json::from_slice(body).map_err(|e| Refusal::Post(PostError::Json(e.to_string())));
        if self.out.mode == Mode::Deltas {
            if let Ok(value) = &value {
                let kind = value.get("type").and_then(Value::as_str);
                if let Some(v1::JOIN_TYPE | v1::LEAVE_TYPE | v1::TYPING_TYPE | v1::REFRESH_TYPE) =
                    kind
                {
                    return Ok(self.on_room_frame(value));
                }
            }
        }
        // Every outcome is counted in `reply`, which answers it.
        let (reference, room, post) = self.parse_post(value);
        if let Err(refused) = self.out.posts.check()? {
            return Ok(self.queued(reference, room, Err(Refusal::RateLimited(refused))));
        }
        Ok(self.submit_post(reference, room, post))
    }

    /// A `join`, `leave` or `typing` frame.
    fn on_room_frame(&mut self, value: &Value) -> Step {
        let reference = value.get("ref").cloned().unwrap_or_default();
        let frame = match ClientFrame::deserialize(value) {
            Ok(frame) => frame,
            Err(e) => {
                let room = value.get("room").and_then(Value::as_str);
                return Step::Send(error_frame(reference, room, e.to_string()));
            }
        };
        let general = || GENERAL.to_owned();
        match frame {
            ClientFrame::Join {
                room,
                since,
                epoch,
                reference,
                user,
            } => Step::Join(Box::new(JoinFrame {
                room: room.unwrap_or_else(general),
                position: since.map(|after| Position::new(after, epoch)),
                reference,
                user: user.filter(|u| !u.is_empty()),
            })),
            ClientFrame::Leave { room, reference } => {
                Step::Send(self.leave(room.as_deref().unwrap_or(GENERAL), reference))
            }
            ClientFrame::Typing { room, user } => Step::Typing(Box::new((
                room.unwrap_or_else(general),
                user.filter(|u| !u.is_empty()),
                reference,
            ))),
            ClientFrame::Refresh { token, reference } => {
                Step::Send(self.refresh(&token, reference))
            }
            // Not reached: posts are read by `parse_post`.
            ClientFrame::Post { .. } => Step::Nothing,
        }
    }

    /// A `refresh` (`--auth token`): a newer token of the connection's user pushes its end
    /// back; answered `refreshed`, or an `error` (the current token still holds until it
    /// ends).
    fn refresh(&mut self, token: &str, reference: Value) -> EncodedFrame {
        let auth = &self.out.posts.state.auth;
        let refreshed = match (&mut self.credential, auth.identify(Some(token))) {
            (None, _) => Err(
                "this connection has no token to refresh (the server runs with --auth off)"
                    .to_owned(),
            ),
            (Some(_), Err(e)) => Err(format!("{e} ({})", e.code())),
            (Some(_), Ok(None)) => Err("no token".to_owned()),
            (Some(credential), Ok(Some(identity))) => {
                credential.refresh(&identity).map(|()| identity.expires)
            }
        };
        match refreshed {
            Ok(expires) => text(&ServerFrame::Refreshed { reference, expires }),
            Err(error) => error_frame(reference, None, error),
        }
    }

    /// The connection's own handle on the name of `room` if it is in it, else a new one.
    fn room_name(&self, room: &str) -> Arc<str> {
        self.rooms
            .find(room)
            .cloned()
            .unwrap_or_else(|| Arc::from(room))
    }

    /// Names the connection `user` (`user` of a `join` or `typing`): its rooms' presence lists
    /// it from now on (a new name renames it: the old one leaves them, the new one comes in).
    fn name(&mut self, user: &str) -> Result<(), String> {
        if self.rooms.user().is_some_and(|name| **name == *user) {
            return Ok(());
        }
        if let Some(poster) = &self.out.posts.poster {
            return Err(not_your_name(user, &poster.name).message);
        }
        let hub = &self.out.posts.state.hub;
        check_user(user, &hub.config().limits)?;
        self.rooms.rename(hub, Arc::from(user));
        Ok(())
    }

    /// A `join`: `joined` and the room's history (or what was missed), before any live message
    /// of it; or an `error` frame.
    async fn join(&mut self, join: JoinFrame) -> Result<(), End> {
        let JoinFrame {
            room,
            position,
            reference,
            user,
        } = join;
        let refused = match self.may_join(&room, user.as_deref()) {
            Ok(()) => {
                let hub = self.out.posts.state.hub.clone();
                match hub.subscribe(&room, position.as_ref()).await {
                    Ok(opened) => {
                        let user = self.rooms.user().map(|u| &**u);
                        let present = super::attendee(self.out.posts.who.as_deref(), user);
                        let mut joined =
                            Joined::enter(&hub, opened.subscription, self.out.mode, present);
                        self.out.joined(&joined.subscription, reference).await?;
                        self.out
                            .start(&mut joined.subscription, opened.start)
                            .await?;
                        self.rooms.install(joined);
                        return Ok(());
                    }
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e,
        };
        self.out
            .send(&error_frame(reference, Some(&room), refused))
            .await
    }

    /// Why the connection may not join `room` (with `user`), if it may not.
    fn may_join(&mut self, room: &str, user: Option<&str>) -> Result<(), String> {
        check_room_name(room).map_err(|e| e.to_string())?;
        let access = self.out.posts.state.auth.access();
        access
            .enter(self.out.posts.who.as_deref(), room)
            .map_err(|e| e.to_string())?;
        if self.rooms.find(room).is_some() {
            return Err(format!("this connection is already in room {room:?}"));
        }
        let max = self.out.posts.state.config.max_joined_rooms;
        if self.rooms.count() >= max {
            return Err(super::too_many_joined(max));
        }
        if let Some(user) = user {
            self.name(user)?;
        }
        Ok(())
    }

    /// A `leave`: `left`, or an `error` frame for a room the connection is not in.
    fn leave(&mut self, room: &str, reference: Value) -> EncodedFrame {
        if !self.rooms.leave(room) {
            let error = match check_room_name(room) {
                Err(e) => e.to_string(),
                Ok(()) => format!("this connection is not in room {room:?}"),
            };
            return error_frame(reference, Some(room), error);
        }
        text(&ServerFrame::Left {
            room: room.to_owned(),
            reference,
            reason: None,
        })
    }

    /// A `typing` frame: told to the room's others (at most once a second, by the hub), or an
    /// `error` frame.
    async fn typing(
        &mut self,
        room: String,
        user: Option<String>,
        reference: Value,
    ) -> Option<EncodedFrame> {
        let refused = match self.may_type(&room, user.as_deref()) {
            Ok(user) => {
                let hub = &self.out.posts.state.hub;
                match hub.typing(&room, &user).await {
                    // Dropped when too soon after the last: silently.
                    Ok(_) => return None,
                    Err(e) => e.to_string(),
                }
            }
            Err(e) => e,
        };
        Some(error_frame(reference, Some(&room), refused))
    }

    /// Who is typing in `room`, if the connection may say so there.
    fn may_type(&mut self, room: &str, user: Option<&str>) -> Result<Arc<str>, String> {
        check_room_name(room).map_err(|e| e.to_string())?;
        if let Some(user) = user {
            self.name(user)?;
        }
        if self.rooms.find(room).is_none() {
            return Err(format!(
                "this connection is not in room {room:?}; join it before typing there"
            ));
        }
        self.rooms.user().cloned().ok_or_else(|| {
            "typing needs a name: connect with ?user=NAME, or send \"user\"".to_owned()
        })
    }

    /// What a room beyond the first delivered: handled like the first room's, then it waits
    /// again.
    async fn on_woke(&mut self, woke: Woke) -> Result<(), End> {
        let Woke {
            mut subscription,
            delivery,
        } = woke;
        let Some(delivery) = delivery else {
            return Err(End::Close(CloseCode::GOING_AWAY, "server shutting down"));
        };
        let user = self.rooms.user().cloned();
        let mut step = self.out.on_delivery(&subscription, delivery);
        loop {
            step = match step {
                Step::Deliver(first, sample) => {
                    self.out.deliver(&mut subscription, first, sample).await?
                }
                Step::Signal(signal) => signal_step(&signal, user.as_ref()),
                Step::Send(frame) => {
                    self.out.send(&frame).await?;
                    break;
                }
                Step::CatchUp => {
                    self.out.catch_up(&mut subscription).await?;
                    break;
                }
                Step::Reset => {
                    self.out.start(&mut subscription, Start::Reset).await?;
                    break;
                }
                _ => break,
            };
        }
        if let Rooms::Many(many) = &mut self.rooms {
            let name = subscription.channel().name();
            if let Some(extra) = many.rooms.iter().find(|e| e.name() == &**name) {
                let left = extra.left.clone();
                many.waiting.push(Waiting::new(left, subscription));
            }
        }
        Ok(())
    }

    fn submit_post(
        &mut self,
        reference: Option<Value>,
        room: Option<Arc<str>>,
        post: Result<NewPost, Refusal>,
    ) -> Step {
        let (room, post) = match (room, post) {
            (Some(room), Ok(post)) => (room, post),
            (room, Err(e)) => return self.queued(reference, room, Err(e)),
            (None, Ok(_)) => return self.queued(reference, None, Err(Refusal::NotAPost)),
        };
        let submitted = match self.out.posts.state.hub.try_submit(&room, post) {
            Ok(ticket) => Ok(ticket),
            Err(TrySubmitError::Full(post)) => {
                return Step::Wait(Box::new((reference, room, post)))
            }
            Err(TrySubmitError::ShuttingDown) => Err(Refusal::Post(PostError::ShuttingDown)),
        };
        self.queued(reference, Some(room), submitted)
    }

    /// [`Connection::on_text`] when the hub's queue is full or the room is not open here yet:
    /// waits for room (opening the room, which may refuse).
    async fn submit_waiting(
        &mut self,
        reference: Option<Value>,
        room: Arc<str>,
        post: NewPost,
    ) -> Option<EncodedFrame> {
        let submitted = self
            .out
            .posts
            .state
            .hub
            .submit(&room, post)
            .await
            .map_err(Refusal::Post);
        match self.queued(reference, Some(room), submitted) {
            Step::Send(frame) => Some(frame),
            _ => None,
        }
    }

    /// Tracks a submitted post, or answers its error.
    fn queued(
        &mut self,
        reference: Option<Value>,
        room: Option<Arc<str>>,
        submitted: Result<Ticket, Refusal>,
    ) -> Step {
        match (submitted, room) {
            (Ok(ticket), Some(room)) => {
                self.in_flight.push_back((reference, room, ticket));
                Step::Nothing
            }
            (Ok(_), None) => Step::Nothing,
            (Err(e), room) => self
                .out
                .reply(reference, room, Err(e))
                .map_or(Step::Nothing, Step::Send),
        }
    }

    /// A post's `ref`, its room (`general` unless a rtchat.v1 frame names another) and the
    /// post, or why it is invalid.
    fn parse_post(
        &self,
        value: Result<Value, Refusal>,
    ) -> (Option<Value>, Option<Arc<str>>, Result<NewPost, Refusal>) {
        let limits = self.out.posts.state.hub.config().limits;
        let reference = value.as_ref().ok().and_then(|v| v.get("ref").cloned());
        let room: Result<Arc<str>, Refusal> = match (&value, self.out.mode) {
            (Ok(value), Mode::Deltas) => match value.get("room") {
                None | Some(Value::Null) => Ok(self.room_name(GENERAL)),
                Some(Value::String(room)) => Ok(self.room_name(room)),
                Some(_) => Err(Refusal::Post(PostError::NotAString("room"))),
            },
            (Ok(_), Mode::Snapshots) => Ok(self.room_name(GENERAL)),
            (Err(_), _) => Err(Refusal::NotAPost),
        };
        let room_name = room.as_ref().ok().cloned();
        let post = value.and_then(|value| {
            if self.out.mode == Mode::Deltas
                && value.get("type").and_then(Value::as_str) != Some(v1::POST_TYPE)
            {
                return Err(Refusal::NotAPost);
            }
            let room = room?;
            let auth = &self.out.posts.state.auth;
            auth.may_post(self.out.posts.who.as_deref(), &room)
                .map_err(Refusal::RoomNotAllowed)?;
            let poster = self.out.posts.poster.as_deref();
            NewPost::from_value_by(&value, &limits, poster).map_err(Refusal::Post)
        });
        (reference, room_name, post)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Out<S> {
    /// How the metrics name this connection's transport.
    fn via(&self) -> Via {
        match self.mode {
            Mode::Snapshots => Via::WsJson,
            Mode::Deltas => Via::Ws,
        }
    }

    /// The `"room"` of a frame about the room of `subscription`.
    fn room(subscription: &Subscription) -> Option<String> {
        Some(subscription.channel().name().to_string())
    }

    /// `joined`: the answer to a join (or to a room of `?rooms=`), with the room's position.
    async fn joined(&mut self, subscription: &Subscription, reference: Value) -> Result<(), End> {
        let snapshot = subscription.snapshot();
        let frame = ServerFrame::Joined {
            room: subscription.channel().name().to_string(),
            reference,
            last: snapshot.last_id,
            epoch: snapshot.epoch.to_string(),
        };
        self.send(&text(&frame)).await
    }

    /// What a room's subscriber gets first, as the door decided: the history, or (rtchat.v1
    /// with `since`) what it missed, or a reset and then the history.
    async fn start(&mut self, subscription: &mut Subscription, start: Start) -> Result<(), End> {
        match start {
            // Rare (a reconnect) and wide: boxed so it does not widen this future.
            Start::Resume { after } => return Box::pin(self.resume(subscription, after)).await,
            Start::Reset => {
                let snapshot = subscription.snapshot();
                let reset = ServerFrame::Reset {
                    room: Self::room(subscription),
                    reset: Reset {
                        last: snapshot.last_id,
                        epoch: snapshot.epoch.to_string(),
                    },
                };
                self.send(&text(&reset)).await?;
            }
            Start::Fresh => {}
        }
        let history = match self.mode {
            Mode::Snapshots => snapshot_frame(subscription.snapshot()),
            Mode::Deltas => history_frame(subscription.channel().name(), subscription.snapshot()),
        };
        self.send(&self.ws.frame_for(&history)).await
    }

    /// rtchat.v1 with `since`: the messages after it, then `resumed`.
    async fn resume(&mut self, subscription: &mut Subscription, id: u64) -> Result<(), End> {
        let count = self.catch_up(subscription).await?;
        let last = subscription.last_seen();
        let epoch = subscription.snapshot().epoch.clone();
        self.send(&text(&ServerFrame::Resumed {
            room: Self::room(subscription),
            resumed: Resumed {
                after: id,
                count: count as u64,
                last,
                epoch: epoch.to_string(),
            },
        }))
        .await
    }

    /// Sends every message after the subscription's position, from the store, in order;
    /// returns how many.
    async fn catch_up(&mut self, subscription: &mut Subscription) -> Result<usize, End> {
        let mut count = 0;
        loop {
            let after = subscription.last_seen();
            let page = subscription
                .catch_up(PAGE)
                .await
                .map_err(|_| End::Close(CloseCode::INTERNAL, "the message store failed"))?;
            if page.truncated {
                self.send(&text(&ServerFrame::Truncated {
                    room: Self::room(subscription),
                    truncated: Truncated { after },
                }))
                .await?;
            }
            let room = subscription.channel().name();
            for entry in &page.entries {
                let frame = self.ws.frame_for(&delta_frame(room, entry));
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

    /// Sends `first`, a message of `subscription`, with the ones already waiting behind it:
    /// under load several often are, and they go out in one write (a system call per message
    /// is what limits fan-out). Returns what came after them.
    async fn deliver(
        &mut self,
        subscription: &mut Subscription,
        first: EncodedFrame,
        mut sample: Option<Instant>,
    ) -> Result<Step, End> {
        // Allocated only when a second message is waiting.
        let mut more: Vec<EncodedFrame> = Vec::new();
        let mut then = Step::Nothing;
        while more.len() + 1 < MAX_BATCH {
            match subscription
                .try_recv()
                .map(|d| self.on_delivery(subscription, d))
            {
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
        if more.is_empty() {
            self.send(&first).await?;
        } else {
            self.send_batch(&more).await?;
        }
        let messages = more.len().max(1);
        let metrics = &self.posts.state.metrics;
        metrics.delivered(self.via(), messages, sample);
        Ok(then)
    }

    /// Answers a post: rtchat.v1 acks or errors with the client's `ref` and the post's room;
    /// the course's protocol only reports errors (the next snapshot shows a stored post). A
    /// plain function building the frame, so awaiting its sending holds just the frame.
    fn reply(
        &self,
        reference: Option<Value>,
        room: Option<Arc<str>>,
        result: Result<Arc<Entry>, Refusal>,
    ) -> Option<EncodedFrame> {
        let metrics = &self.posts.state.metrics;
        match &result {
            Ok(_) => metrics.post_accepted(self.via()),
            Err(Refusal::Post(e)) => metrics.post_refused(PostRefusal::of(e)),
            Err(Refusal::NotAPost) => metrics.post_refused(PostRefusal::Invalid),
            Err(Refusal::RateLimited(refused)) => metrics.rate_limited(refused),
            Err(Refusal::RoomNotAllowed(_)) => metrics.post_refused(PostRefusal::Unauthorized),
        }
        let room = room.map(|r| r.to_string());
        let reply = match (self.mode, result) {
            (Mode::Snapshots, Ok(_)) => return None,
            (Mode::Snapshots, Err(error)) => {
                return Some(text(&ErrorBody {
                    error: error.to_string(),
                    retry_after_ms: error.retry_after_ms(),
                    code: None,
                }))
            }
            (Mode::Deltas, Ok(entry)) => ServerFrame::Ack {
                reference: reference.unwrap_or_default(),
                room,
                id: entry.message.id,
            },
            (Mode::Deltas, Err(error)) => ServerFrame::Error {
                reference: reference.unwrap_or_default(),
                room,
                retry_after_ms: error.retry_after_ms(),
                error: error.to_string(),
            },
        };
        Some(text(&reply))
    }

    /// What to do with one delivery of `subscription`.
    fn on_delivery(&self, subscription: &Subscription, delivery: Delivery) -> Step {
        match delivery {
            Delivery::Event(event) => Step::Deliver(
                self.ws.frame_for(&match self.mode {
                    Mode::Snapshots => snapshot_frame(&event.snapshot),
                    Mode::Deltas => delta_frame(subscription.channel().name(), &event.entry),
                }),
                self.posts.state.metrics.sample(&event.entry),
            ),
            // Slow consumer: a fresh snapshot supersedes what was skipped; deltas are re-read
            // from the store so nothing is lost.
            Delivery::Lagged { .. } => match self.mode {
                Mode::Snapshots => {
                    Step::Send(self.ws.frame_for(&snapshot_frame(&subscription.current())))
                }
                Mode::Deltas => Step::CatchUp,
            },
            // A new epoch: the course's clients get its history; rtchat.v1 ones are told to
            // start over with it (`Step::Reset`).
            Delivery::Reset(snapshot) => match self.mode {
                Mode::Snapshots => Step::Send(self.ws.frame_for(&snapshot_frame(&snapshot))),
                Mode::Deltas => Step::Reset,
            },
            // Presence and typing (delta connections only ask for them), for `signal_step`.
            Delivery::Signal(signal) => match self.mode {
                Mode::Snapshots => Step::Nothing,
                Mode::Deltas => Step::Signal(signal),
            },
            // The course's clients get the history without it; rtchat.v1 ones are told.
            Delivery::Deleted(deletion) => Step::Send(match self.mode {
                Mode::Snapshots => self.ws.frame_for(&snapshot_frame(&deletion.snapshot)),
                Mode::Deltas => text(&ServerFrame::Deleted {
                    room: subscription.channel().name().to_string(),
                    id: deletion.id,
                }),
            }),
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

/// The place under the connection caps of the HTTP/1.1 connection `req` came on (the
/// listener puts it in its requests' extensions), for the WebSocket it is upgraded to: the
/// same place, so an upgraded connection never counts twice. None on HTTP/2 (an extended
/// CONNECT is a stream of a connection that stays open) and HTTP/3.
pub(crate) fn upgraded_place<B>(req: &axum::http::Request<B>) -> Option<ConnectionSlot> {
    if req.version() != axum::http::Version::HTTP_11 {
        return None;
    }
    req.extensions().get::<ConnectionSlot>().cloned()
}

#[cfg(test)]
mod tests {
    use super::{check_upgrade_rooms, upgrade_query, UpgradeQuery};
    use axum::http::Uri;
    use rtchat_core::Position;

    fn query(q: &str) -> Result<UpgradeQuery, String> {
        let uri: Uri = format!("/ws{q}").parse().unwrap();
        upgrade_query(&uri).map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn the_position_is_read_from_the_query() {
        let position = |q| query(q).unwrap().position;
        assert_eq!(position(""), None);
        assert_eq!(position("?a=1&since=42"), Some(Position::new(42, None)));
        assert_eq!(
            position("?epoch=ab12cd34&since=7"),
            Some(Position::new(7, Some("ab12cd34".into())))
        );
        assert_eq!(position("?epoch=ab12cd34"), None);
        assert!(query("?since=x").is_err());
    }

    #[test]
    fn rooms_and_user_are_read_from_the_query() {
        let q = query("?rooms=a,b%2Cc,,a&user=ann%20b").unwrap();
        assert_eq!(
            q.rooms,
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert_eq!(q.user.as_deref(), Some("ann b"));
        let q = query("?rooms=&user=").unwrap();
        assert_eq!(q.rooms, Some(vec![]));
        assert_eq!(q.user, None);
        assert_eq!(query("?since=1").unwrap().rooms, None);
    }

    #[test]
    fn upgrade_rooms_are_checked() {
        let rooms = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let since = Some(Position::new(1, None));
        assert!(check_upgrade_rooms(&rooms(&["a", "b"]), &None, 2).is_ok());
        assert!(check_upgrade_rooms(&rooms(&["a", "b"]), &None, 1).is_err());
        assert!(check_upgrade_rooms(&rooms(&["a"]), &since, 1).is_ok());
        assert!(check_upgrade_rooms(&rooms(&["a", "b"]), &since, 5).is_err());
        assert!(check_upgrade_rooms(&rooms(&["Foo!"]), &None, 5).is_err());
    }
}

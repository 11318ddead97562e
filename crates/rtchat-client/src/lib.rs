//! A client for rtchat over every transport it serves, behind one small interface.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rtchat_client::Error> {
//! use rtchat_client::{Client, Event, Options, Transport};
//! let mut client = Client::connect(Transport::Ws, "http://127.0.0.1:8080", Options::default()).await?;
//! for m in client.history().iter().rev() {
//!     println!("{}: {}", m.user, m.text);
//! }
//! client.poster().post("ann", "hi").await?;
//! loop {
//!     match client.next().await? {
//!         Event::Message(m) => println!("{}: {}", m.user, m.text),
//!         Event::State(s) => println!("* {s}"),
//!         Event::Deleted { id } => println!("(message #{id} was deleted)"),
//!     }
//! }
//! # }
//! ```
//!
//! Each [`Transport`] speaks its wire contract (see the README): polling and long polling
//! (`/poll`), the `/msgs` snapshot stream, Server-Sent Events (`/events`), WebSockets with the
//! course's `json` or rtchat's `rtchat.v1` subprotocol (`/ws`), and Socket.IO (Engine.IO v4 over
//! a WebSocket). A background task keeps the connection: when it drops, it reconnects with
//! exponential backoff and jitter ([`backon`]) and resumes after the newest message it
//! delivered, naming the epoch of the history it came from (so a server that restarted with
//! an empty store and handed out the same ids again answers with a reset, reported as
//! [`State::Reset`]), and every message comes out of [`Client::next`] exactly once and in id
//! order. Posts carry an idempotency key each and are sent again when their answer was lost
//! with a connection: the server stores them once (see [`Poster::post`]). A message the server
//! deletes after it was handed out (its author, a moderator: see the server's tombstones)
//! comes out as [`Event::Deleted`].
//!
//! For a server run with `rtchat serve --auth token`, [`Options::credentials`] gives a token
//! or an account to log in with ([`Credentials`]): every request and handshake carries the
//! token, the client gets a fresh one before it expires and hands it to the live connection,
//! and a token that no longer holds ends the client with a precise error
//! ([`Error::TokenExpired`], [`Error::TokenRevoked`], [`Error::Unauthorized`]).
//!
//! [`Options::room`] chats in another room than the course's `general` (a direct message's
//! `dm:...` included) through the room endpoints of each transport; a room the server does
//! not (or no longer) let the client into ends it ([`Error::Forbidden`],
//! [`Error::RoomRefused`], [`Error::Removed`]).

#![warn(missing_docs)]

mod auth;
mod driver;
mod h3;
mod http;
mod socketio;
pub mod terminal;
mod tls;
mod ws;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use auth::{Credentials, Identity};
/// One chat message, as every transport carries it.
pub use rtchat_protocol::Message;
/// The transports rtchat serves, by the names `--transport` takes.
pub use rtchat_protocol::Transport;
pub(crate) use rtchat_protocol::{valid_epoch, Page};

/// How long to wait between reconnection attempts: exponential, with jitter (via [`backon`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The delay stops growing here.
    pub max: Duration,
    /// Each delay is this many times the previous one.
    pub factor: f32,
    /// Add a random part (up to the delay itself), so clients spread out after an outage.
    pub jitter: bool,
    /// Give up after this many failed attempts in a row ([`Client::next`] then fails);
    /// `None` retries forever.
    pub max_attempts: Option<usize>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: true,
            max_attempts: None,
        }
    }
}

impl Backoff {
    /// The delays of one reconnection episode.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> {
        use backon::BackoffBuilder;
        let mut builder = backon::ExponentialBuilder::default()
            .with_min_delay(self.min)
            .with_max_delay(self.max)
            .with_factor(self.factor);
        builder = match self.max_attempts {
            Some(n) => builder.with_max_times(n),
            None => builder.without_max_times(),
        };
        if self.jitter {
            builder = builder.with_jitter();
        }
        builder.build()
    }
}

/// How a [`Client`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// Accept any HTTPS certificate (development only).
    pub insecure: bool,
    /// Also trust the certificates in this PEM file (e.g. rtchat's generated one).
    pub ca_file: Option<PathBuf>,
    /// Reconnection delays.
    pub backoff: Backoff,
    /// Time between two requests of [`Transport::Poll`].
    pub poll_interval: Duration,
    /// How long [`Transport::LongPoll`] asks the server to hold a request.
    pub long_poll_timeout: Duration,
    /// Limit for a connection attempt, a handshake and every short request (posts included).
    pub request_timeout: Duration,
    /// Start after this message id instead of fetching the history: the messages after it
    /// come out of [`Client::next`] and [`Client::history`] is empty.
    pub resume_after: Option<u64>,
    /// Speak HTTP/3 (QUIC, on the HTTPS port's number over UDP) instead of HTTP/1.1 or
    /// HTTP/2: one connection carries the transport's stream or polls and the posts. Needs an
    /// `https://` URL and an HTTP transport (poll, longpoll, stream, sse).
    pub http3: bool,
    /// For a server run with `rtchat serve --auth token`: a token, or an account to log in
    /// with (see [`Credentials`]). Every request, WebSocket and Socket.IO handshake carries
    /// the token; the client refreshes it by itself. `None` (the default): no token is sent,
    /// as before.
    pub credentials: Option<Credentials>,
    /// The room to chat in: `None` (or `general`) is the course's room `general`, on the
    /// course's endpoints exactly as before; another name (e.g. a direct message's
    /// `dm:1cb15457d1ddab60`, from `POST /me/dm/{uid}`) uses the room endpoints:
    /// `/rooms/{room}/poll`, `/rooms/{room}/msgs`, `/rooms/{room}/events`, rtchat.v1's
    /// `/ws?rooms={room}`, Socket.IO's `room:join`. The course's general-only protocols
    /// ([`Transport::WsJson`], [`Transport::SocketIoSnapshots`]) refuse another room
    /// ([`Error::Unsupported`]). Taken out of the room by the server (it turned private, the
    /// user was removed from it), the client ends with [`Error::Removed`]; not let in, with
    /// [`Error::Forbidden`] (`not_a_member`, `room_not_allowed`) or, on Socket.IO,
    /// [`Error::RoomRefused`].
    pub room: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            insecure: false,
            ca_file: None,
            backoff: Backoff::default(),
            poll_interval: Duration::from_secs(1),
            long_poll_timeout: Duration::from_secs(25),
            request_timeout: Duration::from_secs(10),
            resume_after: None,
            http3: false,
            credentials: None,
            room: None,
        }
    }
}

/// What [`Client::next`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message, each exactly once and in id order.
    Message(Message),
    /// A change of the connection's state.
    State(State),
    /// A message handed out earlier (by [`Client::next`] or in [`Client::history`]) was
    /// deleted: drop it. Told by rtchat.v1's `deleted` frame, SSE's `event: deleted` and
    /// Socket.IO's `msg:deleted`; on the snapshot transports ([`Transport::Stream`],
    /// [`Transport::WsJson`]) when a fresh snapshot no longer holds a message within its
    /// range (from its oldest message on) that was handed out. Polling cannot tell (its pages
    /// only hold newer messages), nor can any transport for a message deleted while the
    /// client was disconnected, except the snapshot ones. Each id at most once.
    Deleted {
        /// The deleted message's id.
        id: u64,
    },
}

/// Connection state changes, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// A connection is up; `via` names the transport and protocol, e.g. `ws (rtchat.v1)`.
    Connected {
        /// Transport and protocol details.
        via: String,
    },
    /// The connection was lost.
    Disconnected {
        /// What happened.
        reason: String,
    },
    /// The next connection attempt comes after `delay`.
    Reconnecting {
        /// 1 for the first attempt after a disconnection.
        attempt: u32,
        /// How long until that attempt.
        delay: Duration,
    },
    /// A reconnection caught up: `count` messages after `#after` were missed and have been
    /// delivered (just before this event).
    Resumed {
        /// The newest message id delivered before the connection was lost.
        after: u64,
        /// How many messages came in while away.
        count: usize,
    },
    /// The ids this client knows mean nothing to the server any more (their epoch is not the
    /// server's: it restarted with an empty memory store): message ids start over, and the
    /// server's current messages follow.
    Reset {
        /// The newest id on the server now.
        last: u64,
    },
    /// The server no longer keeps some of the messages after `#after`; they are lost.
    Truncated {
        /// The newest id delivered before the gap.
        after: u64,
    },
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Connected { via } => write!(f, "connected via {via}"),
            State::Disconnected { reason } => write!(f, "disconnected: {reason}"),
            State::Reconnecting { attempt, delay } => write!(
                f,
                "reconnecting in {:.1}s (attempt {attempt})",
                delay.as_secs_f64()
            ),
            State::Resumed { after, count } => write!(f, "resumed after #{after}: {count} missed"),
            State::Reset { last } => write!(
                f,
                "the server has forgotten its messages (restarted?); ids start over (newest now #{last})"
            ),
            State::Truncated { after } => write!(
                f,
                "some messages after #{after} are no longer kept by the server and were missed"
            ),
        }
    }
}

/// What can go wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The options ask for something the transport cannot do (e.g. [`Options::room`] on one
    /// of the course's general-only protocols, or a room name no server could have).
    #[error("{0}")]
    Unsupported(String),
    /// The URL cannot be used.
    #[error("bad URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The HTTPS settings cannot be used (e.g. an unreadable CA file).
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting or talking to the server failed.
    #[error("{0}")]
    Connection(String),
    /// The server answered with an HTTP error.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// The server's `error` text, or the body.
        message: String,
    },
    /// The server said something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused a post (`{"error": ...}`); nothing was stored.
    #[error("{0}")]
    Rejected(String),
    /// The server refused a post for now: it came faster than the server's post rate limits
    /// allow. Nothing was stored; the same post (same key) may be sent again after
    /// `retry_after`.
    #[error("{message}")]
    RateLimited {
        /// The server's reason.
        message: String,
        /// How long the server asked to wait.
        retry_after: Duration,
    },
    /// The connection was lost after a post was sent, and sending it again (with the same
    /// idempotency key) got no answer within [`Options::request_timeout`] either: it may or
    /// may not have been stored.
    #[error("the connection was lost before the server acknowledged the post")]
    Unacknowledged,
    /// A request took longer than [`Options::request_timeout`].
    #[error("timed out")]
    Timeout,
    /// Reconnecting failed [`Backoff::max_attempts`] times in a row.
    #[error("gave up after {attempts} reconnection attempts: {reason}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The client's background task has stopped.
    #[error("the client is closed")]
    Closed,
    /// The server wants a (good) token: HTTP `401`, a Socket.IO `connect_error` naming a
    /// token code. `code` is the server's reason (`token_missing`, `token_malformed`,
    /// `token_bad_signature`, `token_expired`, `token_not_yet_valid`, `token_unknown_key`,
    /// `token_bad_claims`, `token_revoked`, and from `/auth/login` e.g. `bad_credentials`).
    #[error("HTTP 401: {message}{}", code_suffix(code.as_deref()))]
    Unauthorized {
        /// The server's machine-readable reason, when it gave one.
        code: Option<String>,
        /// The server's words.
        message: String,
    },
    /// The server refused a post under another name than the token's (`403`,
    /// `not_your_name`), or another action the token does not allow; `banned`: an
    /// administrator banned the user (also a Socket.IO `connect_error` ending `(banned)`).
    #[error("HTTP 403: {message} ({code})")]
    Forbidden {
        /// The server's machine-readable reason.
        code: String,
        /// The server's words.
        message: String,
    },
    /// The token expired and could not be refreshed: the server ended the connection
    /// (WebSocket close 4001, Socket.IO `auth:expired`, SSE `expired`, `/msgs`).
    #[error("the token expired and could not be refreshed ({0}); get a new token or log in again")]
    TokenExpired(String),
    /// The token was revoked (a logout, an administrator): WebSocket close 4005, Socket.IO
    /// `auth:revoked`, SSE `revoked`. The same token is never tried again; with a login the
    /// client logs in again once before it reports this.
    #[error("the token was revoked ({0}); log in again")]
    TokenRevoked(String),
    /// The server took the client out of its room ([`Options::room`]): the room turned
    /// private, or the user was removed from its members (rtchat.v1 `left` with a reason, SSE
    /// `event: left`, the `/msgs` line `{"left":...}`, Socket.IO `room:left`). Not retried.
    #[error("removed from room {room:?}: {reason}")]
    Removed {
        /// The room.
        room: String,
        /// The server's words.
        reason: String,
    },
    /// Socket.IO refused to let the client into its room ([`Options::room`]): `room:join`
    /// was answered with an error (a private room the user is not a member of, a token whose
    /// `rooms` claim leaves it out, a bad name...). Over HTTP and rtchat.v1 the same refusal
    /// is [`Error::Forbidden`] (`not_a_member`, `room_not_allowed`) or [`Error::Status`].
    #[error("cannot join room {room:?}: {reason}")]
    RoomRefused {
        /// The room.
        room: String,
        /// The server's words.
        reason: String,
    },
}

fn code_suffix(code: Option<&str>) -> String {
    code.map(|c| format!(" ({c})")).unwrap_or_default()
}

/// A post the server refused: [`Error::RateLimited`] when it said how long to wait
/// (`"retry_after_ms"`), else [`Error::Rejected`].
pub(crate) fn refusal(message: String, retry_after_ms: Option<u64>) -> Error {
    match retry_after_ms {
        Some(ms) => Error::RateLimited {
            message,
            retry_after: Duration::from_millis(ms),
        },
        None => Error::Rejected(message),
    }
}

/// A post waiting for the connection's driver (WebSocket and Socket.IO transports).
pub(crate) struct PostCmd {
    pub user: String,
    pub text: String,
    /// The post's idempotency key, the same every time it is sent.
    pub key: String,
    /// Set once the post has gone out on a connection (a lost answer then means "maybe
    /// stored", [`Error::Unacknowledged`]).
    pub sent: Arc<AtomicBool>,
    /// The course's `json` protocol: where the chat stood (epoch, newest id) when the post
    /// was last sent, to recognise it in the first snapshot after a reconnect.
    pub sent_at: Option<(Option<String>, u64)>,
    pub reply: oneshot::Sender<Result<u64, Error>>,
}

/// A fresh idempotency key: 16 random letters and digits.
pub(crate) fn new_key() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..16)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// Posts messages; cheap to clone and usable while another task awaits [`Client::next`].
#[derive(Clone)]
pub struct Poster {
    inner: PosterInner,
    /// With credentials: the token to send, and the name posts without one are made under.
    auth: Option<Arc<auth::Auth>>,
    timeout: Duration,
    /// Delays between attempts of an HTTP post.
    backoff: Backoff,
}

#[derive(Clone)]
enum PosterInner {
    /// `POST` to this URL.
    Http(http::Http, reqwest::Url),
    /// Through the connection (WebSocket, Socket.IO), waiting for it while reconnecting.
    Driver(mpsc::Sender<PostCmd>),
}

impl Poster {
    /// Posts a message and returns its id once the server has stored it.
    ///
    /// Every post carries an idempotency key of its own (`"key"`, 16 random characters), and
    /// a post whose answer is lost with the connection is sent again with the same key: the
    /// server stores it once and answers every sending with the same id. Over HTTP a post
    /// that fails to reach the server is tried again after the backoff's delays; on the
    /// WebSocket and Socket.IO transports a post made while reconnecting, or whose answer a
    /// dropped connection took, waits for the next connection. Either way for up to
    /// [`Options::request_timeout`]; after that it fails with the last error (a WebSocket or
    /// Socket.IO post that was sent but never answered: [`Error::Unacknowledged`]).
    ///
    /// With [`Options::credentials`] the post carries the client's token, and an empty `user`
    /// stands for the token's name (a server run with `--auth token` refuses a post under
    /// another name: [`Error::Forbidden`] over HTTP, [`Error::Rejected`] with the server's
    /// words on a WebSocket or Socket.IO).
    pub async fn post(&self, user: &str, text: &str) -> Result<u64, Error> {
        self.post_with_key(user, text, new_key()).await
    }

    /// Who the client's token says it is (with [`Options::credentials`]).
    pub fn identity(&self) -> Option<Identity> {
        self.auth.as_ref().and_then(|a| a.identity())
    }

    /// [`Poster::post`] with the idempotency key given: a post tried again later with the
    /// same key (after a timeout, on the next connection) is stored once.
    pub(crate) async fn post_with_key(
        &self,
        user: &str,
        text: &str,
        key: String,
    ) -> Result<u64, Error> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let name;
        let user = match (&self.auth, user.is_empty()) {
            (Some(_), true) => {
                name = self.identity().map(|i| i.name).unwrap_or_default();
                name.as_str()
            }
            _ => user,
        };
        match &self.inner {
            PosterInner::Http(client, url) => {
                let mut delays = self.backoff.delays();
                let mut renewed = false;
                loop {
                    let token = self.auth.as_ref().and_then(|a| a.jwt());
                    let attempt = http::post(client, url, token.as_deref(), user, text, &key);
                    let error = match tokio::time::timeout_at(deadline, attempt).await {
                        Ok(Err(Error::Connection(e))) => Error::Connection(e),
                        // The token expired under the post: once with a fresh one.
                        Ok(Err(Error::Unauthorized { code, message }))
                            if !renewed
                                && code.as_deref() == Some("token_expired")
                                && self.auth.is_some() =>
                        {
                            renewed = true;
                            let auth = self.auth.as_ref().expect("checked");
                            let fresh = tokio::time::timeout_at(deadline, auth.renew()).await;
                            if matches!(fresh, Ok(Ok(Some(_)))) {
                                continue;
                            }
                            return Err(Error::Unauthorized { code, message });
                        }
                        Ok(answer) => return answer,
                        Err(_) => return Err(Error::Timeout),
                    };
                    match delays.next() {
                        Some(delay) if tokio::time::Instant::now() + delay < deadline => {
                            tokio::time::sleep(delay).await;
                        }
                        _ => return Err(error),
                    }
                }
            }
            PosterInner::Driver(tx) => {
                let (reply, answer) = oneshot::channel();
                let sent = Arc::new(AtomicBool::new(false));
                let cmd = PostCmd {
                    user: user.to_owned(),
                    text: text.to_owned(),
                    key,
                    sent: sent.clone(),
                    sent_at: None,
                    reply,
                };
                let work = async {
                    tx.send(cmd).await.map_err(|_| Error::Closed)?;
                    answer.await.map_err(|_| Error::Closed)?
                };
                match tokio::time::timeout_at(deadline, work).await {
                    Ok(answer) => answer,
                    Err(_) if sent.load(Ordering::SeqCst) => Err(Error::Unacknowledged),
                    Err(_) => Err(Error::Timeout),
                }
            }
        }
    }
}

/// A chat connection that keeps itself up: see the [crate docs](crate).
pub struct Client {
    transport: Transport,
    /// Keeps the token fresh (with credentials).
    refresher: Option<JoinHandle<()>>,
    history: Vec<Message>,
    events: mpsc::Receiver<Result<Event, Error>>,
    poster: Poster,
    task: JoinHandle<()>,
    failed: Option<Error>,
}

impl Client {
    /// Connects (one attempt; errors are returned, not retried) and receives the history.
    /// From then on a background task keeps the connection, reconnecting and resuming.
    ///
    /// `url` is the server's base URL (`http://host:port`, `https://...`; `ws://`/`wss://`
    /// work too); the transport picks its path (`/poll`, `/msgs`, `/events`, `/ws`,
    /// `/socket.io/`; in a room of [`Options::room`], `/rooms/{room}/poll`,
    /// `/rooms/{room}/msgs`, `/rooms/{room}/events`, `/ws?rooms={room}`).
    pub async fn connect(
        transport: Transport,
        url: &str,
        options: Options,
    ) -> Result<Client, Error> {
        let ctx = driver::Ctx::new(transport, url, options)?;
        // With a login, log in first; the token is kept fresh from then on.
        let refresher = match &ctx.auth {
            Some(auth) => {
                auth.start().await?;
                Some(tokio::spawn(auth::keep_fresh(auth.clone())))
            }
            None => None,
        };
        let (post_tx, post_rx) = mpsc::channel(64);
        let inner = match ctx.post_url() {
            Some(url) => PosterInner::Http(ctx.http.clone(), url),
            None => PosterInner::Driver(post_tx),
        };
        let poster = Poster {
            inner,
            auth: ctx.auth.clone(),
            timeout: ctx.options.request_timeout,
            backoff: ctx.options.backoff,
        };
        let (events_tx, events) = mpsc::channel(1024);
        let (start_tx, start_rx) = oneshot::channel();
        let task = tokio::spawn(driver::run(ctx, events_tx, post_rx, start_tx));
        let started = start_rx.await.unwrap_or(Err(Error::Closed));
        match started {
            Ok(history) => Ok(Client {
                transport,
                refresher,
                history,
                events,
                poster,
                task,
                failed: None,
            }),
            Err(e) => {
                task.abort();
                if let Some(refresher) = refresher {
                    refresher.abort();
                }
                Err(e)
            }
        }
    }

    /// The transport this client speaks.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The history received on connect, newest first (empty with [`Options::resume_after`]).
    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Who the client's current token says it is (with [`Options::credentials`]; after a
    /// refresh, the fresh token's).
    pub fn identity(&self) -> Option<Identity> {
        self.poster.identity()
    }

    /// A handle that posts messages.
    pub fn poster(&self) -> Poster {
        self.poster.clone()
    }

    /// Posts a message; see [`Poster::post`].
    pub async fn post(&self, user: &str, text: &str) -> Result<u64, Error> {
        self.poster.post(user, text).await
    }

    /// The next message or state change. Fails only when the client gave up reconnecting
    /// ([`Error::GaveUp`]), with [`Options::credentials`] when its token no longer
    /// holds and no fresh one could be had ([`Error::TokenExpired`], [`Error::TokenRevoked`],
    /// [`Error::Unauthorized`]), or, in a room ([`Options::room`]), when the server took it
    /// out of the room or no longer lets it in ([`Error::Removed`], [`Error::Forbidden`],
    /// [`Error::RoomRefused`]), or when an administrator banned the user ([`Error::Forbidden`]
    /// with `code` `banned`: the client tries once more at once, and the server's refusal
    /// says why and until when; a kicked user's client just reconnects); after that it keeps
    /// failing.
    pub async fn next(&mut self) -> Result<Event, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.events.recv().await {
            Some(Ok(event)) => Ok(event),
            Some(Err(e)) => {
                self.failed = Some(e.clone());
                Err(e)
            }
            None => {
                self.failed = Some(Error::Closed);
                Err(Error::Closed)
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(refresher) = &self.refresher {
            refresher.abort();
        }
    }
}

/// A page's epoch, if it names one this client can send back (see [`valid_epoch`]).
pub(crate) fn page_epoch(page: &Page) -> Option<String> {
    page.epoch.clone().filter(|e| valid_epoch(e))
}

/// An epoch as the server sent it (`"epoch":"..."`), if it is one this client can send back
/// in a query string or a `Last-Event-ID`: 1 to 64 letters, digits, `-` or `_` (rtchat's are
/// 8 of `[a-z0-9]`). Anything else is ignored, as if the server had sent none.
pub(crate) fn epoch_of(value: &Value) -> Option<String> {
    value.as_str().filter(|e| valid_epoch(e)).map(str::to_owned)
}

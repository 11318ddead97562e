//! The background task behind a [`Client`](crate::Client): one connection at a time,
//! reconnection with backoff, and the delivery rule (each message once, in id order).

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use reqwest::Url;
use rtchat_protocol::http::{room, room_path, EVENTS, MSGS, POLL, WS};
use rtchat_protocol::v1::GENERAL;
use tokio::sync::{mpsc, oneshot};

use crate::auth::Auth;
use crate::{
    http, socketio, tls, ws, Error, Event, Message, Options, Page, PostCmd, State, Transport,
};

/// What every connection of one client shares.
pub(crate) struct Ctx {
    pub transport: Transport,
    /// `http(s)://host:port[/prefix]`, without a trailing slash.
    base: String,
    /// The HTTP transports' requests: reqwest, or HTTP/3 with [`Options::http3`].
    pub http: http::Http,
    /// For `wss://` (no ALPN).
    pub tls: Arc<rustls::ClientConfig>,
    pub options: Options,
    /// The credentials and current token, with [`Options::credentials`].
    pub auth: Option<Arc<Auth>>,
    /// [`Options::room`] when it is not `general`: the room endpoints. `None`: the course's.
    pub room: Option<String>,
}

impl Ctx {
    pub fn new(transport: Transport, url: &str, options: Options) -> Result<Ctx, Error> {
        let base = base_url(url)?;
        let room = chosen_room(transport, options.room.as_deref())?;
        let tls = tls::config(&options)?;
        let mut http_tls = tls.clone();
        http_tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = if options.http3 {
            if matches!(
                transport,
                Transport::Ws
                    | Transport::WsJson
                    | Transport::SocketIo
                    | Transport::SocketIoSnapshots
            ) {
                return Err(Error::Url {
                    url: url.to_owned(),
                    reason: format!(
                        "the {transport} transport runs over a WebSocket, which rtchat does not serve over HTTP/3; HTTP/3 carries poll, longpoll, stream and sse"
                    ),
                });
            }
            let base = Url::parse(&base).map_err(|e| Error::Url {
                url: base.clone(),
                reason: e.to_string(),
            })?;
            let client = crate::h3::H3Client::new(&base, &tls, options.request_timeout)?;
            http::Http::H3(Arc::new(client))
        } else {
            let client = reqwest::Client::builder()
                .use_preconfigured_tls(http_tls)
                .connect_timeout(options.request_timeout)
                .build()
                .map_err(|e| Error::Tls(describe(&e)))?;
            http::Http::Tcp(client)
        };
        let mut ctx = Ctx {
            transport,
            base,
            http,
            tls: Arc::new(tls),
            options,
            auth: None,
            room,
        };
        if let Some(credentials) = ctx.options.credentials.clone() {
            ctx.auth = Some(Arc::new(Auth::new(
                credentials,
                ctx.http.clone(),
                ctx.url(crate::auth::LOGIN)?,
                ctx.url(crate::auth::REFRESH)?,
                ctx.options.request_timeout,
            )));
        }
        Ok(ctx)
    }

    /// The current token, with credentials.
    pub fn jwt(&self) -> Option<String> {
        self.auth.as_ref().and_then(|a| a.jwt())
    }

    /// `base + path` (path starts with `/`, may carry a query).
    pub fn url(&self, path: &str) -> Result<Url, Error> {
        let url = format!("{}{path}", self.base);
        Url::parse(&url).map_err(|e| Error::Url {
            url,
            reason: e.to_string(),
        })
    }

    /// `ws(s)://host:port[/prefix] + path`.
    pub fn ws_url(&self, path: &str) -> String {
        let rest = self
            .base
            .strip_prefix("http")
            .expect("the base URL is http or https");
        format!("ws{rest}{path}")
    }

    /// The path of an HTTP endpoint: the course's `general` (`course`: `/poll`, `/msgs`,
    /// `/events`), or `/rooms/{room}/{leaf}` in the client's room.
    pub fn endpoint(&self, course: &str, leaf: &str) -> String {
        match &self.room {
            None => course.to_owned(),
            Some(name) => room_path(name, leaf),
        }
    }

    /// `/poll` or `/rooms/{room}/poll`.
    pub fn poll_path(&self) -> String {
        self.endpoint(POLL, room::POLL)
    }

    /// `/msgs` or `/rooms/{room}/msgs`.
    pub fn msgs_path(&self) -> String {
        self.endpoint(MSGS, room::MSGS)
    }

    /// `/events` or `/rooms/{room}/events`.
    pub fn events_path(&self) -> String {
        self.endpoint(EVENTS, room::EVENTS)
    }

    /// Where posts go for the HTTP transports; `None` when posts travel on the connection.
    pub fn post_url(&self) -> Option<Url> {
        let path = match self.transport {
            Transport::Poll | Transport::LongPoll | Transport::Sse => self.poll_path(),
            Transport::Stream => self.msgs_path(),
            Transport::Ws
            | Transport::WsJson
            | Transport::SocketIo
            | Transport::SocketIoSnapshots => return None,
        };
        self.url(&path).ok()
    }
}

/// [`Options::room`] as the client uses it: `None` for `general` (the course's endpoints,
/// unchanged), else the room's name, refused at once where it cannot work: on the course's
/// general-only protocols, or with characters no room name has (they would change the URL).
fn chosen_room(transport: Transport, room: Option<&str>) -> Result<Option<String>, Error> {
    let Some(room) = room.filter(|r| *r != GENERAL) else {
        return Ok(None);
    };
    if matches!(transport, Transport::WsJson | Transport::SocketIoSnapshots) {
        return Err(Error::Unsupported(format!(
            "--room needs one of poll, longpoll, stream, sse, ws, socketio: {transport} is the course's protocol, which chats only in general (asked for room {room:?})"
        )));
    }
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ':');
    if room.is_empty() || !room.chars().all(plain) {
        return Err(Error::Unsupported(format!(
            "room names are 1 to 64 characters of a-z, 0-9, - and _ (or a direct message's dm:...); got {room:?}"
        )));
    }
    Ok(Some(room.to_owned()))
}

/// The server's base URL from what the user typed: `ws`/`wss` become `http`/`https`, and a
/// trailing transport path (`/ws`, `/poll`, ...) is dropped.
fn base_url(input: &str) -> Result<String, Error> {
    let bad = |reason: &str| Error::Url {
        url: input.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(input).map_err(|e| bad(&e.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "http",
        "https" | "wss" => "https",
        other => {
            return Err(bad(&format!(
                "unsupported scheme {other:?}; use http:// or https://"
            )))
        }
    };
    let host = url.host_str().ok_or_else(|| bad("no host"))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let mut path = url.path().trim_end_matches('/').to_owned();
    for endpoint in [POLL, MSGS, EVENTS, WS, "/socket.io"] {
        if let Some(prefix) = path.strip_suffix(endpoint) {
            path = prefix.to_owned();
            break;
        }
    }
    Ok(format!("{scheme}://{host}{port}{path}"))
}

/// An error and its sources, as one line.
pub(crate) fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// Where a client stands in the chat: after message `after` of the history `epoch` (when
/// the server named one). Every transport resumes from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Position {
    pub after: u64,
    pub epoch: Option<String>,
}

impl Position {
    /// `since=ID[&epoch=E]`, for a query string (epochs are URL-safe, see
    /// [`crate::valid_epoch`]).
    pub fn query(&self) -> String {
        match &self.epoch {
            Some(epoch) => format!("since={}&epoch={epoch}", self.after),
            None => format!("since={}", self.after),
        }
    }

    /// As an SSE `Last-Event-ID`: `E:ID`, or a bare `ID` without an epoch.
    pub fn event_id(&self) -> String {
        match &self.epoch {
            Some(epoch) => format!("{epoch}:{}", self.after),
            None => self.after.to_string(),
        }
    }
}

/// The history received on a fresh connection.
pub(crate) struct History {
    /// Newest first.
    pub msg: Vec<Message>,
    pub last: u64,
    pub epoch: Option<String>,
}

impl From<Page> for History {
    fn from(page: Page) -> History {
        let last = page
            .last()
            .max(page.msg.iter().map(|m| m.id).max().unwrap_or(0));
        History {
            epoch: crate::page_epoch(&page),
            msg: page.msg,
            last,
        }
    }
}

/// How a resumed connection tells that it has caught up: every transport marks the end
/// itself (a page without `more`, the first snapshot, SSE `event: resumed`, rtchat.v1
/// `resumed`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum CatchUpEnd {
    /// The end is marked in the stream.
    Marker,
}

/// A new connection.
pub(crate) struct Opened {
    pub session: Session,
    /// Present exactly when the connection did not resume.
    pub history: Option<History>,
    /// For [`State::Connected`].
    pub via: String,
    pub catch_up: CatchUpEnd,
}

/// One live connection, whatever the transport.
pub(crate) enum Session {
    Poll(http::PollSession),
    Stream(http::StreamSession),
    Sse(http::SseSession),
    Ws(ws::WsSession),
    SocketIo(socketio::SioSession),
}

/// The client was dropped: stop.
#[derive(Debug)]
pub(crate) struct Closed;

/// `--auth token`: why the server ended a connection for its token (WebSocket close 4001 or
/// 4005, Socket.IO `auth:expired` or `auth:revoked`, SSE `expired` or `revoked`, the last
/// `/msgs` line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthEnd {
    /// The token expired and was not refreshed in time.
    Expired(String),
    /// The token was revoked (a logout, an administrator).
    Revoked(String),
    /// An administrator banned the user (WebSocket close 4003, Socket.IO `auth:banned`, SSE
    /// `banned`, the `/msgs` line `{"banned":...}`): the client tries again at once, and the
    /// server's refusal (`403 banned`, with its reason and how long) ends it.
    Banned(String),
}

impl std::fmt::Display for AuthEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, reason) = match self {
            AuthEnd::Expired(reason) => ("the token expired", reason),
            AuthEnd::Revoked(reason) => ("the token was revoked", reason),
            AuthEnd::Banned(reason) => ("an administrator banned the user", reason),
        };
        if reason.is_empty() {
            write!(f, "{what}")
        } else {
            write!(f, "{what} ({reason})")
        }
    }
}

impl Session {
    /// Connects; `resume` is where the client stands (then there is no history).
    async fn open(ctx: &Ctx, resume: Option<&Position>) -> Result<Opened, Error> {
        let open = async {
            match ctx.transport {
                Transport::Poll | Transport::LongPoll => http::open_poll(ctx, resume).await,
                Transport::Stream => http::open_stream(ctx, resume).await,
                Transport::Sse => http::open_sse(ctx, resume).await,
                Transport::Ws | Transport::WsJson => ws::open(ctx, resume).await,
                Transport::SocketIo | Transport::SocketIoSnapshots => {
                    socketio::open(ctx, resume).await
                }
            }
        };
        tokio::time::timeout(ctx.options.request_timeout, open)
            .await
            .map_err(|_| Error::Connection("timed out connecting".into()))?
    }

    /// Serves the connection until it is lost; returns why.
    async fn run(
        &mut self,
        ctx: &Ctx,
        sink: &mut Sink,
        posts: &mut Outbox,
    ) -> Result<String, Closed> {
        match self {
            Session::Poll(s) => s.run(ctx, sink).await,
            Session::Stream(s) => s.run(sink).await,
            Session::Sse(s) => s.run(sink).await,
            Session::Ws(s) => s.run(sink, posts).await,
            Session::SocketIo(s) => s.run(sink, posts).await,
        }
    }
}

/// Posts on their way to a connection (WebSocket and Socket.IO): new ones from
/// [`crate::Poster`], and those whose answer a lost connection took, sent again first.
pub(crate) struct Outbox {
    rx: mpsc::Receiver<PostCmd>,
    again: VecDeque<PostCmd>,
}

impl Outbox {
    pub fn new(rx: mpsc::Receiver<PostCmd>) -> Outbox {
        Outbox {
            rx,
            again: VecDeque::new(),
        }
    }

    /// The next post to send: those to send again first (in the order they were first sent),
    /// then new ones; `None` once the client is gone. Posts whose caller stopped waiting are
    /// dropped, never sent late. Cancel-safe.
    pub async fn next(&mut self) -> Option<PostCmd> {
        while let Some(cmd) = self.again.pop_front() {
            if !cmd.reply.is_closed() {
                return Some(cmd);
            }
        }
        self.rx.recv().await
    }

    /// A post sent on a connection that was lost before its answer came: it goes out again,
    /// with the same key, on the next connection.
    pub fn send_again(&mut self, cmd: PostCmd) {
        if !cmd.reply.is_closed() {
            self.again.push_back(cmd);
        }
    }
}

/// Where events go; holds where the client stands and the catch-up in progress.
pub(crate) struct Sink {
    tx: mpsc::Sender<Result<Event, Error>>,
    /// The newest message id delivered (0: none).
    pub last: u64,
    /// The epoch of the history `last` belongs to, once the server named it.
    pub epoch: Option<String>,
    catch_up: Option<CatchUp>,
    /// Set by a session the server ended because of its token.
    pub auth_end: Option<AuthEnd>,
    /// Set by a session the server ended for good: it took the client out of its room
    /// ([`Error::Removed`]). Ends the client; not retried.
    pub fatal: Option<Error>,
    /// The newest ids handed out (at most [`TRACKED`]): a snapshot without one of them that
    /// still covers it means the message was deleted.
    handed_out: BTreeSet<u64>,
    /// The ids reported as [`Event::Deleted`] (at most [`TRACKED`], the newest): each once.
    deleted: BTreeSet<u64>,
}

/// How many ids [`Sink`] remembers as handed out, and as reported deleted: far more than a
/// snapshot holds (the server's `--history`, 50 by default).
const TRACKED: usize = 4096;

/// Adds `id` to `set`, forgetting the oldest beyond [`TRACKED`].
fn remember(set: &mut BTreeSet<u64>, id: u64) {
    set.insert(id);
    while set.len() > TRACKED {
        set.pop_first();
    }
}

struct CatchUp {
    after: u64,
    count: usize,
}

impl Sink {
    pub(crate) async fn emit(&self, event: Result<Event, Error>) -> Result<(), Closed> {
        self.tx.send(event).await.map_err(|_| Closed)
    }

    /// Reports a state change.
    pub async fn state(&self, state: State) -> Result<(), Closed> {
        self.emit(Ok(Event::State(state))).await
    }

    /// Where the client stands: what a reconnection resumes from.
    pub fn position(&self) -> Position {
        Position {
            after: self.last,
            epoch: self.epoch.clone(),
        }
    }

    /// Learns the epoch of the history being followed, when it was not known yet (a
    /// resume from a bare id, an SSE event id `E:ID`).
    pub fn adopt_epoch(&mut self, epoch: Option<String>) {
        if self.epoch.is_none() {
            self.epoch = epoch;
        }
    }

    /// Delivers the messages newer than the last one delivered, oldest first, each once.
    pub async fn deliver(&mut self, msgs: impl IntoIterator<Item = Message>) -> Result<(), Closed> {
        let mut fresh: Vec<Message> = msgs.into_iter().filter(|m| m.id > self.last).collect();
        fresh.sort_by_key(|m| m.id);
        fresh.dedup_by_key(|m| m.id);
        for m in fresh {
            self.last = m.id;
            remember(&mut self.handed_out, m.id);
            if let Some(c) = &mut self.catch_up {
                c.count += 1;
            }
            self.emit(Ok(Event::Message(m))).await?;
        }
        Ok(())
    }

    /// A connection resumed after `self.last`; `end` says how its catch-up finishes.
    fn begin_catch_up(&mut self, end: CatchUpEnd) {
        match end {
            CatchUpEnd::Marker => {
                self.catch_up = Some(CatchUp {
                    after: self.last,
                    count: 0,
                })
            }
        }
    }

    /// The resumed connection has delivered everything that was missed.
    pub async fn catch_up_done(&mut self) -> Result<(), Closed> {
        match self.catch_up.take() {
            Some(c) => {
                self.state(State::Resumed {
                    after: c.after,
                    count: c.count,
                })
                .await
            }
            None => Ok(()),
        }
    }

    /// The position means nothing to the server (its history has another epoch: it
    /// restarted with an empty store): ids start over, in `epoch`, up to `last`.
    pub async fn reset(&mut self, last: u64, epoch: Option<String>) -> Result<(), Closed> {
        self.catch_up = None;
        self.last = 0;
        self.epoch = epoch;
        self.handed_out.clear();
        self.deleted.clear();
        self.state(State::Reset { last }).await
    }

    /// The message `id` was deleted (rtchat.v1 `deleted`, SSE `event: deleted`, Socket.IO
    /// `msg:deleted`, or gone from a snapshot): [`Event::Deleted`], once, if it was handed
    /// out (an id not newer than the newest delivered: ids the client skipped with
    /// [`crate::Options::resume_after`] count as handed out).
    pub async fn deleted(&mut self, id: u64) -> Result<(), Closed> {
        if id == 0 || id > self.last || self.deleted.contains(&id) {
            return Ok(());
        }
        self.handed_out.remove(&id);
        remember(&mut self.deleted, id);
        self.emit(Ok(Event::Deleted { id })).await
    }

    /// The ids handed out that a snapshot (`msg`, up to `last`) no longer holds although
    /// it covers them (they are not older than its oldest message): deleted. A page after a
    /// position holds only newer ids than the ones handed out, so it finds none; an empty
    /// snapshot cannot be told from an empty page and finds none either.
    fn vanished(&self, msg: &[Message], last: u64) -> Vec<u64> {
        let Some(oldest) = msg.iter().map(|m| m.id).min() else {
            return Vec::new();
        };
        let top = last.min(self.last);
        if oldest > top {
            return Vec::new();
        }
        let held: HashSet<u64> = msg.iter().map(|m| m.id).collect();
        self.handed_out
            .range(oldest..=top)
            .filter(|id| !held.contains(id))
            .copied()
            .collect()
    }

    /// Messages right after the newest delivered one are lost.
    pub async fn truncated(&self) -> Result<(), Closed> {
        self.state(State::Truncated { after: self.last }).await
    }

    /// Applies a page or snapshot (`/poll`, `/msgs`, `json` snapshots, `msg:since`).
    pub async fn apply_page(&mut self, page: Page) -> Result<(), Closed> {
        let last = page.last();
        let epoch = crate::page_epoch(&page);
        // A history of another epoch (the course's json snapshots have no resume to be told
        // so; the other transports say `reset` themselves), or ids gone back (a server
        // before epochs that restarted empty): start over.
        let other_epoch =
            matches!((&self.epoch, &epoch), (Some(ours), Some(theirs)) if ours != theirs);
        if page.reset || other_epoch || (last < self.last && !page.more) {
            self.reset(last, epoch).await?;
        } else {
            self.adopt_epoch(epoch);
        }
        if page.truncated {
            self.truncated().await?;
        }
        for id in self.vanished(&page.msg, last) {
            self.deleted(id).await?;
        }
        let more = page.more;
        self.deliver(page.msg).await?;
        if !more {
            self.catch_up_done().await?;
        }
        Ok(())
    }
}

/// The task: connects, reports the first result on `started`, then keeps the connection.
pub(crate) async fn run(
    ctx: Ctx,
    tx: mpsc::Sender<Result<Event, Error>>,
    posts: mpsc::Receiver<PostCmd>,
    started: oneshot::Sender<Result<Vec<Message>, Error>>,
) {
    let mut posts = Outbox::new(posts);
    let resume = ctx
        .options
        .resume_after
        .map(|after| Position { after, epoch: None });
    let mut sink = Sink {
        tx,
        last: ctx.options.resume_after.unwrap_or(0),
        epoch: None,
        catch_up: None,
        auth_end: None,
        fatal: None,
        handed_out: BTreeSet::new(),
        deleted: BTreeSet::new(),
    };
    let opened = match Session::open(&ctx, resume.as_ref()).await {
        Ok(opened) => opened,
        Err(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let history = match opened.history {
        Some(h) => {
            sink.last = h.last;
            sink.epoch = h.epoch;
            for m in &h.msg {
                remember(&mut sink.handed_out, m.id);
            }
            h.msg
        }
        None => Vec::new(),
    };
    if started.send(Ok(history)).is_err() {
        return;
    }
    let mut session = opened.session;
    if connected(&mut sink, opened.via, resume.map(|_| opened.catch_up))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let Ok(reason) = session.run(&ctx, &mut sink, &mut posts).await else {
            return;
        };
        // Taken out of the room: reconnecting would only be refused.
        if let Some(e) = sink.fatal.take() {
            let _ = sink.state(State::Disconnected { reason }).await;
            let _ = sink.emit(Err(e)).await;
            return;
        }
        // The server ended the connection for its token: go on with a fresh one at once,
        // or tell the caller why not.
        let immediate = match sink.auth_end.take() {
            None => false,
            Some(end) => match after_auth_end(&ctx, end).await {
                Ok(()) => true,
                Err(e) => {
                    let _ = sink.state(State::Disconnected { reason }).await;
                    let _ = sink.emit(Err(e)).await;
                    return;
                }
            },
        };
        match reconnect(&ctx, &mut sink, reason, immediate).await {
            Ok(Some(next)) => session = next,
            Ok(None) | Err(Closed) => return,
        }
    }
}

async fn connected(
    sink: &mut Sink,
    via: String,
    catch_up: Option<CatchUpEnd>,
) -> Result<(), Closed> {
    sink.state(State::Connected { via }).await?;
    if let Some(end) = catch_up {
        sink.begin_catch_up(end);
    }
    Ok(())
}

/// A connection ended for its token: `Ok` when the client holds (or got) a token to go on
/// with, else the error for the caller.
async fn after_auth_end(ctx: &Ctx, end: AuthEnd) -> Result<(), Error> {
    // Banned: the reconnection is refused with the server's words (`403 banned`), which end
    // the client; if the ban was lifted meanwhile, it goes on.
    if matches!(end, AuthEnd::Banned(_)) {
        return Ok(());
    }
    let Some(auth) = &ctx.auth else {
        return Ok(()); // no token of ours: not ours to judge
    };
    match end {
        AuthEnd::Expired(reason) => {
            if auth.token().is_some_and(|t| !t.expired()) {
                return Ok(()); // refreshed meanwhile
            }
            match auth.renew().await {
                Ok(Some(_)) => Ok(()),
                _ => Err(Error::TokenExpired(reason)),
            }
        }
        AuthEnd::Revoked(reason) => match auth.after_revocation().await {
            Ok(true) => Ok(()),
            _ => Err(Error::TokenRevoked(reason)),
        },
        AuthEnd::Banned(_) => Ok(()),
    }
}

/// Reports the loss, then tries again after each backoff delay (the first at once when
/// `immediate`) until a connection resumes; `None` when the backoff gave up (reported as
/// [`Error::GaveUp`]) or the server refused the client's token (reported as it is).
async fn reconnect(
    ctx: &Ctx,
    sink: &mut Sink,
    reason: String,
    immediate: bool,
) -> Result<Option<Session>, Closed> {
    sink.state(State::Disconnected {
        reason: reason.clone(),
    })
    .await?;
    let mut last_error = reason;
    let mut attempt = 0u32;
    let mut renewed = false;
    let first = immediate.then_some(std::time::Duration::ZERO);
    for delay in first.into_iter().chain(ctx.options.backoff.delays()) {
        attempt += 1;
        sink.state(State::Reconnecting { attempt, delay }).await?;
        tokio::time::sleep(delay).await;
        match Session::open(ctx, Some(&sink.position())).await {
            Ok(opened) => {
                connected(sink, opened.via, Some(opened.catch_up)).await?;
                return Ok(Some(opened.session));
            }
            // The token is refused (or, in a room, the room is closed to it): trying it
            // again will not help. A fresh one, once.
            Err(
                e @ (Error::Unauthorized { .. }
                | Error::Forbidden { .. }
                | Error::RoomRefused { .. }),
            ) => {
                let auth = ctx.auth.as_ref().filter(|_| !renewed);
                let fresh = match auth {
                    Some(auth) => matches!(auth.renew().await, Ok(Some(_))),
                    None => false,
                };
                if !fresh {
                    sink.emit(Err(e)).await?;
                    return Ok(None);
                }
                renewed = true;
                last_error = e.to_string();
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    sink.emit(Err(Error::GaveUp {
        attempts: attempt,
        reason: last_error,
    }))
    .await?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::{base_url, chosen_room, Sink};
    use crate::{Error, Event, Message, Page, Transport};
    use std::collections::BTreeSet;
    use tokio::sync::mpsc;

    fn msg(id: u64) -> Message {
        Message {
            id,
            user: "ann".into(),
            text: format!("#{id}"),
            time: 0,
            uid: None,
        }
    }

    /// A snapshot holding `ids` (newest first), up to `last`.
    fn snapshot(ids: &[u64], last: u64) -> Page {
        Page {
            msg: ids.iter().rev().map(|&id| msg(id)).collect(),
            last: Some(last),
            epoch: Some("e1".into()),
            ..Page::default()
        }
    }

    #[tokio::test]
    async fn snapshots_without_a_message_handed_out_tell_its_deletion() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut sink = Sink {
            tx,
            last: 0,
            epoch: None,
            catch_up: None,
            auth_end: None,
            fatal: None,
            handed_out: BTreeSet::new(),
            deleted: BTreeSet::new(),
        };
        let mut events = Vec::new();
        let mut drain = |rx: &mut mpsc::Receiver<_>| {
            while let Ok(Ok(e)) = rx.try_recv() {
                events.push(e);
            }
            std::mem::take(&mut events)
        };
        sink.apply_page(snapshot(&[1, 2, 3, 4], 4)).await.unwrap();
        assert_eq!(drain(&mut rx).len(), 4);
        // #3 vanished from within the range; #1 fell out of it (older than its oldest).
        sink.apply_page(snapshot(&[2, 4, 5], 5)).await.unwrap();
        assert_eq!(
            drain(&mut rx),
            [Event::Deleted { id: 3 }, Event::Message(msg(5))]
        );
        // Each id once, whether by a snapshot or a notice; ids never handed out: never.
        sink.apply_page(snapshot(&[2, 4, 5], 5)).await.unwrap();
        sink.deleted(3).await.unwrap();
        sink.deleted(9).await.unwrap();
        assert_eq!(drain(&mut rx), []);
        sink.deleted(4).await.unwrap();
        assert_eq!(drain(&mut rx), [Event::Deleted { id: 4 }]);
        // A page after the position (a resume, polling) holds only newer ids: nothing.
        let page = Page {
            msg: vec![msg(7), msg(6)],
            last: Some(7),
            ..Page::default()
        };
        sink.apply_page(page).await.unwrap();
        assert_eq!(
            drain(&mut rx),
            [Event::Message(msg(6)), Event::Message(msg(7))]
        );
        // An empty snapshot cannot be told from an empty page: nothing.
        sink.apply_page(snapshot(&[], 7)).await.unwrap();
        assert_eq!(drain(&mut rx), []);
        // After a reset (another epoch), the ids handed out before mean nothing.
        let mut other = snapshot(&[1], 1);
        other.epoch = Some("e2".into());
        sink.apply_page(other).await.unwrap();
        let events = drain(&mut rx);
        assert!(matches!(
            events[0],
            Event::State(crate::State::Reset { last: 1 })
        ));
        assert_eq!(events[1..], [Event::Message(msg(1))]);
    }

    #[test]
    fn rooms() {
        assert_eq!(chosen_room(Transport::Ws, None).unwrap(), None);
        assert_eq!(
            chosen_room(Transport::WsJson, Some("general")).unwrap(),
            None
        );
        assert_eq!(
            chosen_room(Transport::Sse, Some("dm:1cb15457d1ddab60")).unwrap(),
            Some("dm:1cb15457d1ddab60".to_owned())
        );
        for t in [Transport::WsJson, Transport::SocketIoSnapshots] {
            let e = chosen_room(t, Some("r1")).unwrap_err();
            assert!(matches!(e, Error::Unsupported(_)), "{e:?}");
            assert!(e.to_string().contains("--room needs one of"), "{e}");
        }
        for bad in ["", "a/b", "a,b", "a?b", "a b"] {
            assert!(chosen_room(Transport::Poll, Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("http://127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("ws://localhost:8080/ws").unwrap(),
            "http://localhost:8080"
        );
        assert_eq!(base_url("wss://h/chat/ws?x=1").unwrap(), "https://h/chat");
        assert_eq!(base_url("https://h:8443/msgs").unwrap(), "https://h:8443");
        assert_eq!(base_url("http://[::1]:80/").unwrap(), "http://[::1]");
        assert!(base_url("ftp://h").is_err());
        assert!(base_url("not a url").is_err());
    }
}

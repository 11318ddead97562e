//! `GET /metrics`: what rtchat is doing, for Prometheus, on a listener of its own
//! (`--metrics-listen ADDR`: off by default, and never on the public ports, whose clients have
//! no business reading it).
//!
//! The answer is the Prometheus text format (version 0.0.4), or OpenMetrics for a scraper
//! whose `Accept` asks for `application/openmetrics-text` (Prometheus itself does). The
//! families, all prefixed `rtchat_` (label values of `transport` are the protocol crate's
//! [`Transport`] names, plus `http` for posts made with `POST /poll` or `POST /msgs`):
//!
//! | family | type | what |
//! | --- | --- | --- |
//! | `rtchat_clients{transport}` | gauge | clients following the chat now: parked long polls (`longpoll`), `/msgs` streams (`stream`), SSE streams, WebSockets (`ws`: rtchat.v1, `ws-json`: the course's), Socket.IO sockets |
//! | `rtchat_connections{protocol}` | gauge | connections open on the public listeners: `http1`, `http2` (TCP, TLS or not), `h3` (QUIC) |
//! | `rtchat_subscribers` | gauge | hub subscriptions held by clients (not rtchat's own Socket.IO fan-out) |
//! | `rtchat_channels` | gauge | channels (rooms) this node holds |
//! | `rtchat_posts_accepted_total{transport}` | counter | posts stored (a repeated idempotency key counts again) |
//! | `rtchat_posts_refused_total{reason}` | counter | posts refused, by [`PostRefusal`] |
//! | `rtchat_deliveries_total{transport}` | counter | messages sent to clients as they arrive or as a resume / long poll catches up (history snapshots on connect are not counted) |
//! | `rtchat_fanout_latency_seconds{transport}` | histogram | from a message's commit to its write to a client, sampled (see below) |
//! | `rtchat_store_commit_seconds` | histogram | one commit of the writer (a SQLite transaction and its fsync) |
//! | `rtchat_store_batch_size` | histogram | posts per commit |
//! | `rtchat_lagged_subscribers_total`, `rtchat_lagged_events_total` | counter | subscribers that fell behind the hub's queue, and the events dropped for them |
//! | `rtchat_rate_limited_total{scope}` | counter | posts refused by a post rate limit: `connection` or `address` bucket |
//! | `rtchat_connections_refused_total{reason}` | counter | connections turned away at accept: `max_connections`, `max_connections_per_ip` |
//! | `rtchat_process_resident_memory_bytes` | gauge | the process's resident memory (`VmRSS`), read at each scrape |
//!
//! # What the fan-out latency measures
//! From [`Entry::created`] (right after the store committed the message) to the moment the
//! write carrying it finished (WebSockets: the frame is in the socket; `/msgs` and SSE: the
//! chunk is handed to hyper, which writes it at once; long polls: the answer is handed to
//! hyper, for polls that were parked when the message came). Socket.IO is not measured:
//! socketioxide queues the packet to each socket's task and tells nothing of the write. The
//! delivery path must stay cheap, so one delivery in [`FANOUT_SAMPLE_EVERY`] on each thread
//! is observed (the first on each thread always; a write of several messages observes the
//! first sampled one): the histogram's count is the number of samples, not of deliveries.
//! Every delivery costs a thread-local increment, and every write one relaxed atomic add
//! (the deliveries counter).

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::{Registry, Unit};
use rtchat_core::RoomError;
use rtchat_core::{Entry, HubObserver, PostError, StoreErrorKind};
use rtchat_protocol::http::METRICS;
use rtchat_protocol::Transport;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::ApiError;
use crate::state::AppState;

/// One delivery in this many, on each thread, is observed by the fan-out latency histogram.
pub const FANOUT_SAMPLE_EVERY: u32 = 64;
/// How often, at most, a Socket.IO room is re-counted for `rtchat_deliveries_total`.
pub const ROOM_RECOUNT: Duration = Duration::from_secs(1);
/// How long the metrics listener gives a scraper to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the metrics listener waits for its open connections once the server is done.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How a client follows the chat or posts to it: the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `POST /poll` and `POST /msgs`: how every HTTP transport posts (posts only).
    Http,
    /// A long poll (`GET /poll?since=`) while it is parked, and its answers.
    LongPoll,
    /// The course's `GET /msgs` stream.
    Stream,
    /// Server-Sent Events.
    Sse,
    /// WebSocket, `rtchat.v1`.
    Ws,
    /// WebSocket, the course's `json`.
    WsJson,
    /// Socket.IO (deliveries: its `msg:new` room).
    SocketIo,
    /// Socket.IO's `msg:get` snapshots (deliveries only: its sockets are counted as `socketio`).
    SocketIoSnapshots,
}

const VIAS: usize = 8;

impl Via {
    const ALL: [Via; VIAS] = [
        Via::Http,
        Via::LongPoll,
        Via::Stream,
        Via::Sse,
        Via::Ws,
        Via::WsJson,
        Via::SocketIo,
        Via::SocketIoSnapshots,
    ];

    /// The label value: the protocol crate's transport name, `http` for HTTP posts.
    pub fn label(self) -> &'static str {
        match self {
            Via::Http => "http",
            Via::LongPoll => Transport::LongPoll.name(),
            Via::Stream => Transport::Stream.name(),
            Via::Sse => Transport::Sse.name(),
            Via::Ws => Transport::Ws.name(),
            Via::WsJson => Transport::WsJson.name(),
            Via::SocketIo => Transport::SocketIo.name(),
            Via::SocketIoSnapshots => Transport::SocketIoSnapshots.name(),
        }
    }

    /// Ways a client stays connected (`rtchat_clients`).
    fn listens(self) -> bool {
        !matches!(self, Via::Http | Via::SocketIoSnapshots)
    }

    /// Ways messages reach clients (`rtchat_deliveries_total`).
    fn delivers(self) -> bool {
        self != Via::Http
    }

    /// Ways clients post (`rtchat_posts_accepted_total`).
    fn posts(self) -> bool {
        matches!(self, Via::Http | Via::Ws | Via::WsJson | Via::SocketIo)
    }

    /// Ways whose fan-out latency is measured.
    fn timed(self) -> bool {
        matches!(
            self,
            Via::LongPoll | Via::Stream | Via::Sse | Via::Ws | Via::WsJson
        )
    }
}

/// The protocol of a connection on a public listener: the `protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1, TLS or not (until an upgrade hands the connection to a WebSocket).
    Http1,
    /// HTTP/2 over TCP (TLS or prior knowledge).
    Http2,
    /// HTTP/3 over QUIC.
    Http3,
}

impl HttpVersion {
    const ALL: [HttpVersion; 3] = [HttpVersion::Http1, HttpVersion::Http2, HttpVersion::Http3];

    fn label(self) -> &'static str {
        match self {
            HttpVersion::Http1 => "http1",
            HttpVersion::Http2 => "http2",
            HttpVersion::Http3 => "h3",
        }
    }
}

/// Why a post was refused: the `reason` label of `rtchat_posts_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostRefusal {
    /// Not JSON, not a post, a missing or malformed field, a bad key, a wrong content type.
    Invalid,
    /// A body above `--max-body`, or a field above `--max-user` / `--max-text`.
    TooLarge,
    /// A body that did not arrive within `--body-timeout`.
    Timeout,
    /// A post rate limit (see `rtchat_rate_limited_total` for which).
    RateLimited,
    /// Too many posts of one Socket.IO socket waiting for the store.
    InFlight,
    /// An idempotency key reused for another text.
    Conflict,
    /// A foreign `Origin`.
    Origin,
    /// The store is full (the disk, or `--db-max-mb`).
    StoreFull,
    /// The store failed otherwise, or the server is shutting down.
    Unavailable,
    /// A first post in a room beyond `--max-rooms`.
    MaxRooms,
    /// With `--auth token`: no usable token, or a post under another name than the token's.
    Unauthorized,
}

const REASONS: usize = 11;

impl PostRefusal {
    const ALL: [PostRefusal; REASONS] = [
        PostRefusal::Invalid,
        PostRefusal::TooLarge,
        PostRefusal::Timeout,
        PostRefusal::RateLimited,
        PostRefusal::InFlight,
        PostRefusal::Conflict,
        PostRefusal::Origin,
        PostRefusal::StoreFull,
        PostRefusal::Unavailable,
        PostRefusal::MaxRooms,
        PostRefusal::Unauthorized,
    ];

    fn label(self) -> &'static str {
        match self {
            PostRefusal::Invalid => "invalid",
            PostRefusal::TooLarge => "too_large",
            PostRefusal::Timeout => "timeout",
            PostRefusal::RateLimited => "rate_limited",
            PostRefusal::InFlight => "in_flight",
            PostRefusal::Conflict => "conflict",
            PostRefusal::Origin => "origin",
            PostRefusal::StoreFull => "store_full",
            PostRefusal::Unavailable => "unavailable",
            PostRefusal::MaxRooms => "max_rooms",
            PostRefusal::Unauthorized => "unauthorized",
        }
    }

    /// The reason the hub refused a post for.
    pub fn of(e: &PostError) -> PostRefusal {
        match e {
            PostError::TooLong { .. } => PostRefusal::TooLarge,
            PostError::KeyConflict { .. } => PostRefusal::Conflict,
            PostError::NotYourName { .. } => PostRefusal::Unauthorized,
            PostError::Store(e) if e.kind() == StoreErrorKind::Full => PostRefusal::StoreFull,
            PostError::Store(_) | PostError::ShuttingDown => PostRefusal::Unavailable,
            PostError::Room(RoomError::TooMany { .. }) => PostRefusal::MaxRooms,
            PostError::Room(RoomError::Store(_)) => PostRefusal::Unavailable,
            _ => PostRefusal::Invalid,
        }
    }

    /// The reason an HTTP post's body was refused for, by its status (`413` too large, `408`
    /// too slow, anything else invalid).
    pub fn of_status(status: StatusCode) -> PostRefusal {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => PostRefusal::TooLarge,
            StatusCode::REQUEST_TIMEOUT => PostRefusal::Timeout,
            _ => PostRefusal::Invalid,
        }
    }
}

type Labels = [(&'static str, &'static str); 1];

/// Every metric of the server, registered once; the hot paths hold plain atomics (a labelled
/// metric is looked up once, here, never per event).
pub struct Metrics {
    registry: Registry,
    clients: [Gauge; VIAS],
    connections: [Gauge; 3],
    subscribers: Gauge,
    channels: Gauge,
    posts_accepted: [Counter; VIAS],
    posts_refused: [Counter; REASONS],
    deliveries: [Counter; VIAS],
    fanout: [Histogram; VIAS],
    commit_seconds: Histogram,
    batch_size: Histogram,
    lagged_subscribers: Counter,
    lagged_events: Counter,
    rate_limited: [Counter; 2],
    connections_refused: [Counter; 2],
    resident_memory: Gauge,
    /// Counts the Socket.IO sockets at scrape time (socketioxide keeps the list).
    socketio_sockets: OnceLock<Box<dyn Fn() -> usize + Send + Sync>>,
    /// The Socket.IO rooms' sizes (`msg:new`, `msg:get`), re-counted at most once per
    /// [`ROOM_RECOUNT`] (counting walks the room).
    rooms: [RoomSize; 2],
    started: Instant,
}

/// A Socket.IO room's size as last counted.
#[derive(Default)]
struct RoomSize {
    sockets: AtomicU64,
    /// Milliseconds since [`Metrics::started`], plus one (0: never counted).
    counted_at: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn fanout_histogram() -> Histogram {
    // 50 µs to ~3.3 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

fn commit_histogram() -> Histogram {
    // 100 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_1, 2.0, 15))
}

/// Registers a family with one label, and returns its member for each of `values` (a
/// detached metric where the value is `None`, never shown).
fn labelled<M, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    make: fn() -> M,
    key: &'static str,
    values: [Option<&'static str>; N],
) -> [M; N]
where
    M: EncodeMetric + TypedMetric + Clone + Send + Sync + std::fmt::Debug + 'static,
{
    let family = Family::<Labels, M, fn() -> M>::new_with_constructor(make);
    let members = values.map(|value| match value {
        Some(value) => family.get_or_create_owned(&[(key, value)]),
        None => make(),
    });
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family),
        None => registry.register(name, help, family),
    }
    members
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every family, registered with all its label values (so each shows from the first
    /// scrape, at 0).
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let vias = |keep: fn(Via) -> bool| Via::ALL.map(|v| keep(v).then(|| v.label()));
        let clients = labelled(
            &mut r,
            "rtchat_clients",
            "Clients following the chat now, by transport: parked long polls, /msgs streams, SSE streams, WebSockets (ws: rtchat.v1, ws-json: the course's json), Socket.IO sockets",
            None,
            Gauge::default,
            "transport",
            vias(Via::listens),
        );
        let connections = labelled(
            &mut r,
            "rtchat_connections",
            "Connections open on the public listeners, by protocol (http1, http2 over TCP, h3 over QUIC)",
            None,
            Gauge::default,
            "protocol",
            HttpVersion::ALL.map(|v| Some(v.label())),
        );
        let subscribers = Gauge::default();
        r.register(
            "rtchat_subscribers",
            "Hub subscriptions held by clients (streams, SSE, WebSockets; not the Socket.IO fan-out's own)",
            subscribers.clone(),
        );
        let channels = Gauge::default();
        r.register(
            "rtchat_channels",
            "Channels (rooms) this node holds",
            channels.clone(),
        );
        let posts_accepted = labelled(
            &mut r,
            "rtchat_posts_accepted",
            "Posts stored, by transport (http: POST /poll and POST /msgs)",
            None,
            Counter::default,
            "transport",
            vias(Via::posts),
        );
        let posts_refused = labelled(
            &mut r,
            "rtchat_posts_refused",
            "Posts refused, by reason",
            None,
            Counter::default,
            "reason",
            PostRefusal::ALL.map(|p| Some(p.label())),
        );
        let deliveries = labelled(
            &mut r,
            "rtchat_deliveries",
            "Messages sent to clients live or as a catch-up, by transport (history snapshots on connect not counted)",
            None,
            Counter::default,
            "transport",
            vias(Via::delivers),
        );
        let fanout = labelled(
            &mut r,
            "rtchat_fanout_latency",
            "From a message's commit to its write to a client, by transport; sampled, one delivery in 64 per thread",
            Some(Unit::Seconds),
            fanout_histogram,
            "transport",
            vias(Via::timed),
        );
        let commit_seconds = commit_histogram();
        r.register_with_unit(
            "rtchat_store_commit",
            "How long one commit of the writer takes (one SQLite transaction and its fsync)",
            Unit::Seconds,
            commit_seconds.clone(),
        );
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        r.register(
            "rtchat_store_batch_size",
            "Posts stored per commit",
            batch_size.clone(),
        );
        let lagged_subscribers = Counter::default();
        r.register(
            "rtchat_lagged_subscribers",
            "Times a subscriber fell further behind than the hub's queue",
            lagged_subscribers.clone(),
        );
        let lagged_events = Counter::default();
        r.register(
            "rtchat_lagged_events",
            "Events dropped for lagging subscribers (re-read from the store, or superseded by a snapshot)",
            lagged_events.clone(),
        );
        let rate_limited = labelled(
            &mut r,
            "rtchat_rate_limited",
            "Posts refused by a post rate limit, by the bucket that refused them (connection or address)",
            None,
            Counter::default,
            "scope",
            [Some("connection"), Some("address")],
        );
        let connections_refused = labelled(
            &mut r,
            "rtchat_connections_refused",
            "Connections turned away at accept, by the cap that refused them",
            None,
            Counter::default,
            "reason",
            [Some("max_connections"), Some("max_connections_per_ip")],
        );
        let resident_memory = Gauge::default();
        r.register_with_unit(
            "rtchat_process_resident_memory",
            "Resident memory of the process (VmRSS), read at each scrape",
            Unit::Bytes,
            resident_memory.clone(),
        );
        Metrics {
            registry: r,
            clients,
            connections,
            subscribers,
            channels,
            posts_accepted,
            posts_refused,
            deliveries,
            fanout,
            commit_seconds,
            batch_size,
            lagged_subscribers,
            lagged_events,
            rate_limited,
            connections_refused,
            resident_memory,
            socketio_sockets: OnceLock::new(),
            rooms: Default::default(),
            started: Instant::now(),
        }
    }

    /// Counts a client of `via` in `rtchat_clients` for as long as the returned guard lives.
    pub fn client(&self, via: Via) -> Counted {
        Counted::new(&self.clients[via as usize])
    }

    /// Counts a connection in `rtchat_connections` for as long as the returned guard lives.
    pub fn connection(&self, version: HttpVersion) -> Counted {
        Counted::new(&self.connections[version as usize])
    }

    /// How `rtchat_clients{transport="socketio"}` is counted at scrape time (Socket.IO's
    /// sockets live in socketioxide); set once, by the Socket.IO transport.
    pub fn count_socketio_with(&self, count: impl Fn() -> usize + Send + Sync + 'static) {
        let _ = self.socketio_sockets.set(Box::new(count));
    }

    /// A post of `via` was stored.
    pub fn post_accepted(&self, via: Via) {
        self.posts_accepted[via as usize].inc();
    }

    /// A post was refused.
    pub fn post_refused(&self, reason: PostRefusal) {
        self.posts_refused[reason as usize].inc();
    }

    /// A post of `via` the hub stored or refused.
    pub fn post_result<T>(&self, via: Via, result: &Result<T, PostError>) {
        match result {
            Ok(_) => self.post_accepted(via),
            Err(e) => self.post_refused(PostRefusal::of(e)),
        }
    }

    /// A post refused by a rate limit: counted by scope, and as a refused post.
    pub fn rate_limited(&self, refused: &crate::rate_limit::Refused) {
        let scope = match refused.scope {
            crate::rate_limit::Scope::Connection => 0,
            crate::rate_limit::Scope::Address => 1,
        };
        self.rate_limited[scope].inc();
        self.post_refused(PostRefusal::RateLimited);
    }

    /// A connection turned away at accept.
    pub fn connection_refused(&self, why: crate::admission::Refused) {
        let reason = match why {
            crate::admission::Refused::Total(_) => 0,
            crate::admission::Refused::PerIp(_) => 1,
        };
        self.connections_refused[reason].inc();
    }

    /// Whether the delivery of `entry` about to be written is sampled for the fan-out
    /// latency: if so, when it was committed, for [`Metrics::delivered`]. The first delivery
    /// on each thread is, then one in [`FANOUT_SAMPLE_EVERY`].
    pub fn sample(&self, entry: &Entry) -> Option<Instant> {
        thread_local! {
            static WRITES: Cell<u32> = const { Cell::new(0) };
        }
        let sampled = WRITES.with(|writes| {
            let n = writes.get();
            writes.set(n.wrapping_add(1));
            n % FANOUT_SAMPLE_EVERY == 0
        });
        sampled.then_some(entry.created)
    }

    /// A write of `messages` messages to a client of `via` finished; `sample` is what
    /// [`Metrics::sample`] said before it.
    pub fn delivered(&self, via: Via, messages: usize, sample: Option<Instant>) {
        self.deliveries[via as usize].inc_by(messages as u64);
        if let Some(committed) = sample {
            self.fanout[via as usize].observe(committed.elapsed().as_secs_f64());
        }
    }

    /// A write carrying `messages` messages, the oldest `first`, handed on now: sampled and
    /// counted at once (HTTP bodies, whose chunks hyper writes as soon as they are handed).
    pub fn delivered_now(&self, via: Via, messages: usize, first: &Entry) {
        let sample = self.sample(first);
        self.delivered(via, messages, sample);
    }

    /// Messages sent to clients without a latency worth measuring (Socket.IO broadcasts,
    /// long polls answered at once with what was already there).
    pub fn delivered_untimed(&self, via: Via, messages: usize) {
        self.deliveries[via as usize].inc_by(messages as u64);
    }

    /// A Socket.IO broadcast to the room of `via` (`socketio`: `msg:new`,
    /// `socketio-snapshots`: `msg:get`): one delivery per socket in it. socketioxide does
    /// not say how many it reached, and counting a room walks it, so the size is re-counted
    /// by `count_room` at most once per [`ROOM_RECOUNT`]; a socket that joined or left since
    /// is counted from the next recount on.
    pub fn delivered_to_room(&self, via: Via, count_room: impl FnOnce() -> usize) {
        let room = &self.rooms[usize::from(via == Via::SocketIoSnapshots)];
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let at = room.counted_at.load(Ordering::Relaxed);
        let sockets = if at == 0 || now - at >= ROOM_RECOUNT.as_millis() as u64 {
            let sockets = count_room() as u64;
            room.sockets.store(sockets, Ordering::Relaxed);
            room.counted_at.store(now, Ordering::Relaxed);
            sockets
        } else {
            room.sockets.load(Ordering::Relaxed)
        };
        self.deliveries[via as usize].inc_by(sockets);
    }

    /// `rtchat_clients` as a scrape would read it now, for the admin overview: each way a
    /// client follows the chat (its `transport` label) and how many do (Socket.IO's sockets
    /// counted now).
    pub fn clients_by_transport(&self) -> Vec<(&'static str, u64)> {
        Via::ALL
            .into_iter()
            .filter(|via| via.listens())
            .map(|via| {
                let n = match (via, self.socketio_sockets.get()) {
                    (Via::SocketIo, Some(count)) => count() as i64,
                    _ => self.clients[via as usize].get(),
                };
                (via.label(), n.max(0) as u64)
            })
            .collect()
    }

    /// The exposition: the scrape-time gauges are read first. The Prometheus text format
    /// (0.0.4), or OpenMetrics 1.0 when `openmetrics`.
    pub fn render(&self, state: &AppState, openmetrics: bool) -> String {
        let internal = state.internal_subscriptions.load(Ordering::Relaxed);
        let subscribers = state.hub.subscribers().saturating_sub(internal);
        self.subscribers.set(subscribers as i64);
        self.channels.set(state.hub.channel_count() as i64);
        if let Some(count) = self.socketio_sockets.get() {
            self.clients[Via::SocketIo as usize].set(count() as i64);
        }
        self.resident_memory
            .set(resident_bytes().unwrap_or(0) as i64);
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        if openmetrics {
            out
        } else {
            to_prometheus_text(&out)
        }
    }
}

impl HubObserver for Metrics {
    fn committed(&self, posts: usize, took: Duration) {
        self.batch_size.observe(posts as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    fn lagged(&self, missed: u64) {
        self.lagged_subscribers.inc();
        self.lagged_events.inc_by(missed);
    }
}

/// One client or connection counted in a gauge; dropping it takes it off.
pub struct Counted(Gauge);

impl Counted {
    fn new(gauge: &Gauge) -> Counted {
        gauge.inc();
        Counted(gauge.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's resident memory, from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// OpenMetrics text (what `prometheus-client` writes) as the Prometheus text format 0.0.4:
/// a counter's `HELP` and `TYPE` name its samples' `_total` name, and the `# UNIT` and
/// `# EOF` lines go (Prometheus' text parsers take them for comments, others do not).
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap_or("");
            let counter = format!("# TYPE {name} counter");
            if lines.peek() == Some(&counter.as_str()) {
                let text = &help[name.len()..];
                let _ = writeln!(out, "# HELP {name}_total{text}");
                let _ = writeln!(out, "# TYPE {name}_total counter");
                lines.next();
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `Content-Type` of the Prometheus text format.
const PROMETHEUS_TEXT: HeaderValue =
    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
/// `Content-Type` of OpenMetrics.
const OPENMETRICS_TEXT: HeaderValue =
    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8");

/// `GET /metrics`.
async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = state.metrics.render(&state, openmetrics);
    let content_type = if openmetrics {
        OPENMETRICS_TEXT
    } else {
        PROMETHEUS_TEXT
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no such endpoint: {}; this listener serves only GET {METRICS}",
            req.uri().path()
        ),
    )
    .into_response()
}

async fn method_not_allowed(method: Method) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {METRICS}; use GET"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// The metrics listener's application: `GET /metrics` and JSON 404s.
fn app(state: AppState) -> Router {
    Router::new()
        .route(METRICS, get(scrape))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(state)
}

/// Serves the metrics listener (plain HTTP/1.1; its connections are not admitted against
/// the connection caps and not counted in `rtchat_connections`) until `stop` fires, then
/// closes its connections (a scrape in flight is answered first).
pub async fn serve(listener: TcpListener, state: AppState, stop: CancellationToken) {
    let app = app(state);
    let connections = TaskTracker::new();
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics listener: accept failed");
                    // Out of file descriptors: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let service = TowerToHyperService::new(app.clone());
        let conn = http1.serve_connection(TokioIo::new(stream), service);
        let stop = stop.clone();
        connections.spawn(async move {
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "metrics connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    let _ = tokio::time::timeout(CLOSE_GRACE, connections.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_total_in_the_prometheus_text_format() {
        let openmetrics = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total{x=\"1\"} 2\n\
                           # HELP b_secs Time.\n# TYPE b_secs histogram\n# UNIT b_secs seconds\nb_secs_count 1\n\
                           # HELP c Now.\n# TYPE c gauge\nc 3\n# EOF\n";
        assert_eq!(
            to_prometheus_text(openmetrics),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total{x=\"1\"} 2\n\
             # HELP b_secs Time.\n# TYPE b_secs histogram\nb_secs_count 1\n\
             # HELP c Now.\n# TYPE c gauge\nc 3\n"
        );
    }

    #[test]
    fn refusals_are_named_by_reason() {
        assert_eq!(
            PostRefusal::of(&PostError::Json("x".into())),
            PostRefusal::Invalid
        );
        let long = PostError::TooLong {
            field: "text",
            len: 3,
            max: 2,
        };
        assert_eq!(PostRefusal::of(&long), PostRefusal::TooLarge);
        let full = rtchat_core::StoreError::new(StoreErrorKind::Full, "full");
        assert_eq!(
            PostRefusal::of(&PostError::Store(full)),
            PostRefusal::StoreFull
        );
        assert_eq!(
            PostRefusal::of_status(StatusCode::PAYLOAD_TOO_LARGE),
            PostRefusal::TooLarge
        );
    }

    #[test]
    fn the_first_delivery_on_a_thread_is_sampled_then_one_in_n() {
        let metrics = Metrics::new();
        std::thread::spawn(move || {
            let entry = Entry::new(rtchat_core::Message {
                id: 1,
                user: "u".into(),
                text: "t".into(),
                time: 0,
                uid: None,
            });
            let sampled = (0..FANOUT_SAMPLE_EVERY * 2)
                .filter(|_| metrics.sample(&entry).is_some())
                .count();
            assert_eq!(sampled, 2);
        })
        .join()
        .unwrap();
    }
}

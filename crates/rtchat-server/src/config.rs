//! Server settings, filled in by the CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::CertSource;

/// Everything the server shell and the transports need to know besides the hub.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the plain HTTP listener.
    pub listen: SocketAddr,
    /// The HTTPS listener, if any.
    pub tls: Option<TlsListen>,
    /// Serve this folder instead of the embedded front end.
    pub web_root: Option<PathBuf>,
    /// Origins (besides the page's own) allowed to post, open WebSockets and Socket.IO
    /// sessions (see [`crate::origin`]).
    pub allow_origins: Vec<String>,
    /// The `Host` names served (`--allowed-hosts`); others get 421.
    pub allowed_hosts: crate::origin::AllowedHosts,
    /// Fraction (0..=1) of `GET /poll` requests answered with 500, to demonstrate backoff.
    pub fail_rate: f64,
    /// How long a long poll is held when it names no `timeout`.
    pub poll_timeout: Duration,
    /// The most a client may ask a long poll to be held.
    pub poll_timeout_max: Duration,
    /// How long after posting an author may delete their own message (`--edit-window`).
    pub edit_window: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Concurrent streams allowed on one HTTP/2 connection.
    pub h2_max_streams: u32,
    /// Limits and timers of each WebSocket connection.
    pub websocket: Arc<rtchat_ws::Config>,
    /// Serve the echo WebSocket at `/ws/echo` (`--ws-echo`, for Autobahn|Testsuite).
    pub ws_echo: bool,
    /// How often an idle Server-Sent Events stream gets a comment line, to keep proxies from
    /// closing it.
    pub sse_heartbeat: Duration,
    /// How often Socket.IO (Engine.IO) pings its clients.
    pub sio_ping_interval: Duration,
    /// How long a Socket.IO client may take to answer a ping before it is dropped.
    pub sio_ping_timeout: Duration,
    /// Largest Socket.IO payload accepted, in bytes (one polling request or WebSocket message).
    pub sio_max_payload: usize,
    /// Packets a Socket.IO socket may have waiting to be written (each event is one); a socket
    /// that falls further behind gets `msg:error` and is disconnected.
    pub sio_buffer: usize,
    /// How long each phase of a connection may take.
    pub timeouts: Timeouts,
    /// How many connections rtchat holds, and who counts as a reverse proxy.
    pub connections: ConnectionLimits,
    /// How fast one connection, and one client address, may post (`--post-rate`...).
    pub posts: PostLimits,
    /// HTTP/3 over QUIC next to the HTTPS listener (`None`: `--no-h3`). Served only when
    /// HTTPS is.
    pub h3: Option<H3Listen>,
    /// Where `GET /metrics` is served (`--metrics-listen`): a plain HTTP listener of its own,
    /// so the public ports never expose it; `None` (the default): nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The most rooms one WebSocket connection or Socket.IO socket may be in
    /// (`--max-joined-rooms`).
    pub max_joined_rooms: usize,
    /// The built-in accounts' token lifetimes, login queue and login rate limits.
    pub accounts: crate::auth::accounts::AccountSettings,
}

/// Where to serve HTTP/3, and its flow-control windows (what a QUIC connection may make
/// rtchat hold).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H3Listen {
    /// The UDP address (`--h3-listen`); `None`: the HTTPS listener's address and port. An
    /// explicit address that cannot be bound stops the start; the default only warns.
    pub addr: Option<SocketAddr>,
    /// Bytes a client may send ahead on one request stream (`--h3-stream-window`).
    pub stream_window: u32,
    /// Bytes a client may send ahead on one connection, all streams together
    /// (`--h3-connection-window`).
    pub connection_window: u32,
    /// Bytes rtchat sends on one connection before they are acknowledged: what a client
    /// that stops reading can make rtchat hold (`--h3-send-window`).
    pub send_window: u64,
    /// QUIC congestion control of rtchat's sending side (`--h3-congestion`).
    pub congestion: Congestion,
}

/// QUIC congestion controllers (quinn's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Congestion {
    /// BBR, rtchat's default (quinn marks its BBR experimental). Unlike the loss-based
    /// controllers it does not shrink its window on random loss: a chat's flows are small and
    /// app-limited, and quinn's CUBIC and NewReno never grow back what each loss took, so on a
    /// lossy link every burst ends up waiting for acknowledgements (see the README's HTTP/3
    /// measurements).
    #[default]
    Bbr,
    /// CUBIC, quinn's own default.
    Cubic,
    /// NewReno.
    NewReno,
}

impl Default for H3Listen {
    fn default() -> Self {
        H3Listen {
            addr: None,
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            send_window: 512 * 1024,
            congestion: Congestion::Bbr,
        }
    }
}

/// How long each phase of a connection may take before rtchat gives up on it, so a client
/// that opens connections and then says nothing, or says it very slowly, or stops reading,
/// holds nothing for long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Plain listener: the first bytes, which tell HTTP/1.1 from HTTP/2 (`--sniff-timeout`).
    pub sniff: Duration,
    /// TLS listener: the whole handshake (`--tls-handshake-timeout`).
    pub tls_handshake: Duration,
    /// HTTP/1.1: a request's head, counted from when the server starts waiting for it (the
    /// connection's start, or the end of the previous response): hyper times both with one
    /// timer, so this is also how long a kept-alive HTTP/1.1 connection may idle
    /// (`--header-timeout`).
    pub header: Duration,
    /// HTTP/2: how long a connection with no open stream is kept (`--idle-timeout`).
    pub idle: Duration,
    /// A posted body, from the end of the head (`--body-timeout`).
    pub body: Duration,
    /// A write that cannot make progress because the client does not read: the connection
    /// is dropped (`--write-timeout`; WebSockets use it too).
    pub write: Duration,
    /// HTTP/2: ping a connection this long silent (`--h2-keepalive-interval`)...
    pub h2_keepalive_interval: Duration,
    /// ...and close it if the ping is not answered within this (`--h2-keepalive-timeout`).
    pub h2_keepalive_timeout: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            sniff: Duration::from_secs(10),
            tls_handshake: Duration::from_secs(10),
            header: Duration::from_secs(15),
            idle: Duration::from_secs(60),
            body: Duration::from_secs(30),
            write: Duration::from_secs(10),
            h2_keepalive_interval: Duration::from_secs(20),
            h2_keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Connection caps and reverse proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, in all (`--max-connections`).
    pub max_total: usize,
    /// Connections open at once from one address; 0 for no cap (`--max-connections-per-ip`).
    /// Trusted proxies are exempt.
    pub max_per_ip: usize,
    /// Peers whose `Forwarded`/`X-Forwarded-*` headers are believed (`--trusted-proxy`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_total: 10_000,
            max_per_ip: 256,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Post rate limits: a token bucket per connection (WebSocket, Socket.IO socket) and one per
/// client address (every transport's posts together), see [`crate::rate_limit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PostLimits {
    /// Posts a second one connection may keep up (`--post-rate`); 0 turns every post rate
    /// limit off, the per-address one included.
    pub rate: f64,
    /// Posts one connection may send at once before the rate applies (`--post-burst`).
    pub burst: u32,
    /// Posts a second one client address may keep up, all its connections and requests
    /// together (`--post-rate-per-ip`); 0 turns the per-address limit off.
    pub rate_per_ip: f64,
    /// Posts one client address may send at once (`--post-burst-per-ip`).
    pub burst_per_ip: u32,
}

impl PostLimits {
    /// No post rate limits at all (`--post-rate 0`).
    pub const OFF: PostLimits = PostLimits {
        rate: 0.0,
        burst: 1,
        rate_per_ip: 0.0,
        burst_per_ip: 1,
    };
}

impl Default for PostLimits {
    fn default() -> Self {
        PostLimits {
            rate: 5.0,
            burst: 20,
            rate_per_ip: 20.0,
            burst_per_ip: 100,
        }
    }
}

/// Where and how to serve HTTPS.
#[derive(Debug, Clone)]
pub struct TlsListen {
    pub addr: SocketAddr,
    /// False for the built-in default address: if it is taken, rtchat warns and serves plain
    /// HTTP only instead of refusing to start.
    pub explicit: bool,
    pub cert: CertSource,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls: None,
            web_root: None,
            allow_origins: Vec::new(),
            allowed_hosts: crate::origin::AllowedHosts::loopback(),
            fail_rate: 0.0,
            poll_timeout: Duration::from_secs(25),
            poll_timeout_max: Duration::from_secs(120),
            edit_window: Duration::from_secs(15 * 60),
            max_body: 64 * 1024,
            h2_max_streams: 1024,
            sse_heartbeat: Duration::from_secs(15),
            websocket: Arc::new(rtchat_ws::Config::default()),
            ws_echo: false,
            sio_ping_interval: Duration::from_secs(25),
            sio_ping_timeout: Duration::from_secs(20),
            sio_max_payload: 100_000,
            sio_buffer: 4096,
            timeouts: Timeouts::default(),
            connections: ConnectionLimits::default(),
            posts: PostLimits::default(),
            h3: Some(H3Listen::default()),
            metrics_listen: None,
            max_joined_rooms: 100,
            accounts: Default::default(),
        }
    }
}

/// rtchat's per-user data folder: `$XDG_DATA_HOME/rtchat`, else `~/.local/share/rtchat`,
/// else `./rtchat-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("rtchat");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(home).join(".local/share/rtchat");
    }
    PathBuf::from("rtchat-data")
}

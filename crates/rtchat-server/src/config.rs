//! Server settings, filled in by the CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Origins (besides the page's own) allowed to open WebSockets and Socket.IO sessions.
    pub allow_origins: Vec<String>,
    /// Fraction (0..=1) of `GET /poll` requests answered with 500, to demonstrate backoff.
    pub fail_rate: f64,
    /// How long a long poll is held when it names no `timeout`.
    pub poll_timeout: Duration,
    /// The most a client may ask a long poll to be held.
    pub poll_timeout_max: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Concurrent streams allowed on one HTTP/2 connection.
    pub h2_max_streams: u32,
    /// Limits and timers of each WebSocket connection.
    pub websocket: rtchat_ws::Config,
    /// How often an idle Server-Sent Events stream gets a comment line, to keep proxies from
    /// closing it.
    pub sse_heartbeat: Duration,
    /// How often Socket.IO (Engine.IO) pings its clients.
    pub sio_ping_interval: Duration,
    /// How long a Socket.IO client may take to answer a ping before it is dropped.
    pub sio_ping_timeout: Duration,
    /// Largest Socket.IO payload accepted, in bytes (one polling request or WebSocket message).
    pub sio_max_payload: usize,
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
            fail_rate: 0.0,
            poll_timeout: Duration::from_secs(25),
            poll_timeout_max: Duration::from_secs(120),
            max_body: 64 * 1024,
            h2_max_streams: 1024,
            sse_heartbeat: Duration::from_secs(15),
            websocket: rtchat_ws::Config::default(),
            sio_ping_interval: Duration::from_secs(25),
            sio_ping_timeout: Duration::from_secs(20),
            sio_max_payload: 100_000,
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

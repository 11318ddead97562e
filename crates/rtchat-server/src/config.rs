//! Server settings, filled in by the CLI.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server shell and the transports need to know besides the hub.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address of the plain HTTP listener.
    pub listen: SocketAddr,
    /// Serve this folder instead of the embedded front end.
    pub web_root: Option<PathBuf>,
    /// Fraction (0..=1) of `GET /poll` requests answered with 500, to demonstrate backoff.
    pub fail_rate: f64,
    /// How long a long poll is held when it names no `timeout`.
    pub poll_timeout: Duration,
    /// The most a client may ask a long poll to be held.
    pub poll_timeout_max: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            web_root: None,
            fail_rate: 0.0,
            poll_timeout: Duration::from_secs(25),
            poll_timeout_max: Duration::from_secs(120),
            max_body: 64 * 1024,
        }
    }
}

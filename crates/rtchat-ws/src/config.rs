//! Per-connection limits and timers.

use std::time::Duration;

use crate::deflate::DeflateConfig;

/// Limits and timeouts of a [`WebSocket`](crate::WebSocket) connection.
///
/// Exists so a server can bound memory (message/frame size), detect dead
/// peers (ping interval + pong timeout) and never hang on a peer that stops
/// reading (write timeout) or never answers a close (close timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest reassembled message accepted; larger ones fail with close 1009.
    /// Default 1 MiB.
    pub max_message_size: usize,
    /// Largest single frame accepted (close 1009). Default 1 MiB.
    pub max_frame_size: usize,
    /// Send a ping after this long without receiving anything. `None`
    /// disables keepalive. Default 30 s.
    pub ping_interval: Option<Duration>,
    /// After a keepalive ping, fail the connection (close 1011, then
    /// [`Error::Timeout`](crate::Error::Timeout)) if nothing at all arrives
    /// within this time. Default 20 s.
    pub pong_timeout: Duration,
    /// Fail a send (and the connection) that cannot complete within this
    /// time because the peer does not read. `None` = wait forever. Default 10 s.
    pub write_timeout: Option<Duration>,
    /// Upper bound for the closing handshake (flushing our close, waiting for
    /// the peer's close / EOF) before the TCP stream is dropped. Default 5 s.
    pub close_timeout: Duration,
    /// permessage-deflate (RFC 7692): offered by the client, agreed in the handshake.
    /// `None` turns it off. Default: on, with [`DeflateConfig::default`].
    pub deflate: Option<DeflateConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: 1 << 20,
            max_frame_size: 1 << 20,
            ping_interval: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(20),
            write_timeout: Some(Duration::from_secs(10)),
            close_timeout: Duration::from_secs(5),
            deflate: Some(DeflateConfig::default()),
        }
    }
}

impl Config {
    /// Sets both the message and the frame size limit.
    pub fn with_max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n;
        self.max_frame_size = n;
        self
    }
}

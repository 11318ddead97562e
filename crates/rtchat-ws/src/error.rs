//! Connection error type.

use std::io;

use crate::frame::{CloseCode, ProtocolError};

/// Which timer expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// A send did not complete within `write_timeout` (peer not reading).
    Write,
    /// Nothing was received within `pong_timeout` after a keepalive ping.
    DeadPeer,
    /// The closing handshake did not complete within `close_timeout`.
    Close,
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TimeoutKind::Write => "write timed out (peer not reading)",
            TimeoutKind::DeadPeer => "peer did not respond to keepalive ping",
            TimeoutKind::Close => "closing handshake timed out",
        })
    }
}

/// Why a [`WebSocket`](crate::WebSocket) operation failed.
///
/// For the protocol variants the connection has already sent the matching
/// Close frame (1002 / 1007 / 1009, with the reason) and shut the stream down
/// before the error is returned; callers only need to drop the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer violated RFC 6455 framing; close `code` (1002) was sent.
    #[error("protocol error ({code}): {reason}")]
    Protocol {
        /// Close code sent to the peer.
        code: CloseCode,
        /// What was wrong.
        reason: &'static str,
    },
    /// A text message or close reason was not UTF-8; close 1007 was sent.
    #[error("invalid UTF-8: {0}")]
    Utf8(&'static str),
    /// A compressed message (permessage-deflate) did not inflate; close 1007 was sent.
    #[error("invalid compressed data")]
    Decompress,
    /// A frame or message (after decompression) exceeded the configured limit; close 1009
    /// was sent.
    #[error("message too big")]
    TooBig,
    /// The underlying stream failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// A timer expired (the connection is unusable afterwards).
    #[error("timeout: {0}")]
    Timeout(TimeoutKind),
    /// The peer closed the TCP connection without a Close frame (1006).
    #[error("connection lost without a close frame")]
    ConnectionLost,
    /// The connection is closed (after a close handshake or a failure);
    /// nothing more can be sent or received.
    #[error("connection closed")]
    Closed,
}

impl Error {
    /// The close code this side sent because of the error, if any.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            Error::Protocol { code, .. } => Some(*code),
            Error::Utf8(_) | Error::Decompress => Some(CloseCode::INVALID_DATA),
            Error::TooBig => Some(CloseCode::TOO_BIG),
            Error::Timeout(TimeoutKind::DeadPeer) => Some(CloseCode::INTERNAL),
            _ => None,
        }
    }
}

impl From<ProtocolError> for Error {
    fn from(e: ProtocolError) -> Self {
        match e.code {
            CloseCode::INVALID_DATA if e.reason == crate::frame::INVALID_COMPRESSED => {
                Error::Decompress
            }
            CloseCode::INVALID_DATA => Error::Utf8(e.reason),
            CloseCode::TOO_BIG => Error::TooBig,
            code => Error::Protocol {
                code,
                reason: e.reason,
            },
        }
    }
}

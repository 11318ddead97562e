//! One module per transport, each a thin adapter from its wire format to the hub.

pub mod extended_connect;
pub mod poll;
pub mod socketio;
pub mod sse;
pub mod stream;
pub mod websocket;
pub mod ws_echo;

use rtchat_core::Position;
use serde::Deserialize;

/// `?since=ID&epoch=E`: where a client says it is in a channel, on every HTTP transport.
#[derive(Debug, Default, Deserialize)]
pub struct PositionQuery {
    pub since: Option<u64>,
    pub epoch: Option<String>,
}

impl PositionQuery {
    /// The position, if the client named one (an epoch alone names none).
    pub fn position(&self) -> Option<Position> {
        self.since
            .map(|after| Position::new(after, self.epoch.clone()))
    }
}

//! One module per transport, each a thin adapter from its wire format to the hub.

pub mod extended_connect;
pub mod poll;
pub mod socketio;
pub mod sse;
pub mod stream;
pub mod websocket;
pub mod ws_echo;

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Json};
use rtchat_core::Position;
use serde::Deserialize;

use crate::state::AppState;

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

/// `GET /stats`: live counters, for operators and tests. `subscribers` counts clients only.
pub async fn stats(State(state): State<AppState>) -> impl IntoResponse {
    let internal = state.internal_subscriptions.load(Ordering::Relaxed);
    Json(serde_json::json!({
        "last_id": state.hub.general().snapshot().last_id,
        "subscribers": state.hub.subscribers().saturating_sub(internal),
        "parked_polls": state.parked_polls.load(Ordering::Relaxed),
    }))
}

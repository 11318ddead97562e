//! One module per transport, each a thin adapter from its wire format to the hub.

pub mod poll;
pub mod socketio;
pub mod sse;
pub mod stream;
pub mod websocket;

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Json};

use crate::router::AppState;

/// `GET /stats`: live counters, for operators and tests.
pub async fn stats(State(state): State<AppState>) -> impl IntoResponse {
    Json(serde_json::json!({
        "last_id": state.hub.snapshot().last_id,
        "subscribers": state.hub.subscribers(),
        "parked_polls": state.parked_polls.load(Ordering::Relaxed),
    }))
}

//! Health probes for orchestrators and load balancers.
//!
//! * `GET /healthz` (liveness): `200 {"status":"ok"}` whenever the process answers HTTP at
//!   all, draining or not; it touches nothing else, so a slow store never gets a live server
//!   restarted.
//! * `GET /readyz` (readiness): `200 {"status":"ready"}` when the store answers a cheap read
//!   ([`rtchat_core::Hub::ping`]) within [`STORE_TIMEOUT`] and the server is not draining;
//!   otherwise `503` with `{"status":"draining","error":...}` (from the first SIGTERM or
//!   SIGINT on, see [`crate::drain`]) or `{"status":"unavailable","error":...}` (the store
//!   failed or did not answer in time). Draining is checked first: it costs no store call.
//!
//! Both answer `Cache-Control: no-store`, so no cache between a probe and rtchat keeps an
//! old answer.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rtchat_protocol::http::{HEALTHZ, READYZ};
use serde_json::json;

use crate::state::AppState;

/// How long `/readyz` waits for the store before answering 503.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz` and `GET /readyz`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
}

async fn healthz() -> Response {
    answer(StatusCode::OK, json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.drain.is_draining() {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining", "error": "the server is shutting down: send new clients elsewhere"}),
        );
    }
    let error = match tokio::time::timeout(STORE_TIMEOUT, state.hub.ping()).await {
        Ok(Ok(())) => return answer(StatusCode::OK, json!({"status": "ready"})),
        Ok(Err(e)) => format!("the message store does not answer: {e}"),
        Err(_) => format!(
            "the message store did not answer within {} s",
            STORE_TIMEOUT.as_secs()
        ),
    };
    answer(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "unavailable", "error": error}),
    )
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

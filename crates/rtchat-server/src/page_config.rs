//! `GET /config`: the few settings rtchat's own pages read before they draw themselves.
//!
//! ```json
//! {"max_text":2000,"max_user":64,"history":50,"https_port":8443,"h3":true,"socketio_client":true,"auth":"off"}
//! ```
//!
//! * `max_text`, `max_user`: the longest text and user name a post may have, in characters
//!   (Unicode scalar values; `--max-text`, `--max-user`), so the composer can count and stop
//!   an over-long message before the server refuses it.
//! * `history`: how many of the newest messages clients get (`--history`).
//! * `https_port`: the port the HTTPS listener really bound (`null` with `--no-tls`, or when
//!   the default port was taken and rtchat serves plain HTTP only), so links to the HTTP/2
//!   page point where it is served.
//! * `h3`: whether HTTP/3 is served (on UDP, next to HTTPS).
//! * `socketio_client`: whether the official Socket.IO browser bundle is embedded in this
//!   build (`/socket.io/socket.io.min.js`).
//! * `auth`: `"off"` (anyone posts under any name) or `"token"` (`--auth token`: the pages
//!   log in first, see `/auth/login`).
//!
//! Answered with `Cache-Control: no-store`: the values follow the running server.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

/// The path of the page settings.
pub const PATH: &str = "/config";

/// What only the bound listeners know (set once, right after binding, by
/// [`crate::Server::bind`]).
#[derive(Debug, Default)]
pub struct Listening(OnceLock<Bound>);

#[derive(Debug, Clone, Copy)]
struct Bound {
    https_port: Option<u16>,
    h3: bool,
}

impl Listening {
    /// Records the HTTPS port actually bound (if HTTPS is served) and whether HTTP/3 is.
    pub fn set(&self, https_port: Option<u16>, h3: bool) {
        let _ = self.0.set(Bound { https_port, h3 });
    }

    fn get(&self) -> Bound {
        self.0.get().copied().unwrap_or(Bound {
            https_port: None,
            h3: false,
        })
    }
}

/// `GET /config`.
pub fn routes() -> Router<AppState> {
    Router::new().route(PATH, get(config))
}

async fn config(State(state): State<AppState>) -> Response {
    let hub = state.hub.config();
    let bound = state.listening.get();
    let body = json!({
        "max_text": hub.limits.max_text,
        "max_user": hub.limits.max_user,
        "history": hub.history,
        "https_port": bound.https_port,
        "h3": bound.h3,
        "socketio_client": crate::transport::socketio::client_bundled(),
        "auth": if state.auth.enabled() { "token" } else { "off" },
    });
    let mut res = Json(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

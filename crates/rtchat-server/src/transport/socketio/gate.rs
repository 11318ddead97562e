//! The HTTP side of the transport: who may open sessions (the origin check, CORS for
//! `--allow-origin` pages, the payload limit, the connection caps of WebSocket sessions),
//! request heads detached from hyper's read buffer, and the official browser bundle.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::PATH;
use crate::api::ApiError;
use crate::origin::OriginPolicy;

/// The official `socket.io-client` browser bundle, installed by npm into `vendor/web`
/// (`scripts/setup`) and embedded at build time when present. `build.rs` makes cargo rebuild
/// when `vendor/web` changes, so installing it later and rebuilding is enough.
#[derive(RustEmbed)]
#[folder = "../../vendor/web/node_modules/socket.io-client/dist/"]
#[include = "socket.io.min.js"]
#[include = "socket.io.min.js.map"]
#[allow_missing = true]
struct Bundle;

/// Is the official browser bundle embedded in this build (`GET /config`'s `socketio_client`)?
pub fn client_bundled() -> bool {
    Bundle::get("socket.io.min.js").is_some()
}

/// The routes of this transport, merged into the app by the router: Engine.IO at
/// [`PATH`] (behind the origin check, CORS for `--allow-origin` and the payload limit) and
/// CORS for the polling transport of pages served from `--allow-origin` origins.
pub(super) fn cors(guard: &Guard, origins: &[String]) -> CorsLayer {
    let allow = if guard.origins.allows_any() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim().trim_end_matches('/')).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// Only reached when socketioxide passes a request on, which it does not for its own path.
pub(super) async fn not_socketio() -> Response {
    crate::assets::not_found(PATH)
}

/// Who may open sessions, and how big a posted payload may be.
#[derive(Clone)]
pub(super) struct Guard {
    pub origins: OriginPolicy,
    pub max_payload: usize,
}

impl Guard {
    fn origin_allowed<B>(&self, req: &axum::http::Request<B>) -> Result<(), String> {
        self.origins.check_for(req, "open Socket.IO sessions")
    }
}

/// Refuses foreign origins (403) and oversized posted payloads (413) with a JSON reason,
/// before socketioxide sees the request.
pub(super) async fn check_request(
    State(guard): State<Arc<Guard>>,
    req: Request,
    next: Next,
) -> Response {
    if let Err(reason) = guard.origin_allowed(&req) {
        tracing::warn!(%reason, "Socket.IO session refused");
        return ApiError::new(StatusCode::FORBIDDEN, reason).into_response();
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if req.method() == Method::POST && declared.is_some_and(|n| n > guard.max_payload as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Socket.IO payload is larger than {} bytes (--sio-max-payload)",
                guard.max_payload
            ),
        )
        .into_response();
    }
    // RFC 8441: a WebSocket over an HTTP/2 stream, translated for engineioxide.
    if crate::transport::extended_connect::is_websocket(&req) {
        let req = crate::transport::extended_connect::as_upgrade_request(detach_head(req));
        return crate::transport::extended_connect::as_connect_response(next.run(req).await);
    }
    // Engine.IO keeps a WebSocket session's request head for the session's life: a place
    // under the connection caps in its extensions lives as long (hyper's connection task, which
    // holds the connection's own place, ends at the upgrade).
    let mut req = req;
    if req.headers().contains_key(header::UPGRADE) {
        if let Some(place) = crate::transport::websocket::upgraded_place(&req) {
            req.extensions_mut().insert(place);
        }
    }
    next.run(detach_head(req)).await
}

/// The request with its URI and header values copied out of the connection's read buffer.
/// hyper hands them out as slices of that buffer (8-16 KiB), and Engine.IO keeps the request
/// head for the whole life of a session, which kept the whole buffer alive for every socket:
/// half of an idle socket's memory.
fn detach_head(req: Request) -> Request {
    let (mut parts, body) = req.into_parts();
    parts.uri = detach_uri(&parts.uri);
    if let Some(original) = parts.extensions.get_mut::<axum::extract::OriginalUri>() {
        original.0 = detach_uri(&original.0);
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
}

/// A copy of `uri` in an allocation of its own (see [`detach_head`]).
fn detach_uri(uri: &Uri) -> Uri {
    Uri::try_from(uri.to_string()).unwrap_or_else(|_| uri.clone())
}

/// `GET /socket.io/socket.io.min.js` (and its source map): the official browser client.
pub(super) async fn bundle(req: Request<Body>) -> Response {
    let name = req.uri().path().rsplit('/').next().unwrap_or("");
    match Bundle::get(name) {
        Some(file) => {
            let mime = if name.ends_with(".map") {
                "application/json"
            } else {
                "text/javascript; charset=utf-8"
            };
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "public, max-age=3600"),
                ],
                file.data,
            )
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The Socket.IO browser client is not installed in this build of rtchat. \
             Install it with `scripts/setup` (or `npm ci` in vendor/web), then rebuild rtchat \
             (`cargo build`).\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_flag_to_use() {
        let guard = Guard {
            origins: OriginPolicy::new(&[], Default::default()),
            max_payload: 1000,
        };
        let req = axum::http::Request::builder()
            .uri("/socket.io/")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, "http://evil.example")
            .body(())
            .unwrap();
        let err = guard.origin_allowed(&req).unwrap_err();
        assert!(err.contains("--allow-origin http://evil.example"), "{err}");
    }
}

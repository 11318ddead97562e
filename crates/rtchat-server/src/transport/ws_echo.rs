//! `/ws/echo`, served only with `--ws-echo`: every message comes back as it was sent, through
//! the same handshake (HTTP/1.1 upgrade or HTTP/2 extended CONNECT), origin check, limits,
//! keepalive, write timeout and permessage-deflate as the chat's `/ws`. It exists so that
//! Autobahn|Testsuite, which needs an echo peer, tests the server's own WebSocket stack (see
//! `scripts/autobahn`). Without the flag the path answers 404.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::SEC_WEBSOCKET_EXTENSIONS;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use rtchat_ws::handshake::{validate, HandshakeError};
use rtchat_ws::{CloseCode, Message, WebSocket};

use crate::api::ApiError;
use crate::state::AppState;
use axum::routing::any;
use axum::Router;
use rtchat_protocol::http::WS_ECHO;

/// `/ws/echo`: the Autobahn echo peer (refused unless `--ws-echo`).
pub fn routes() -> Router<AppState> {
    Router::new().route(WS_ECHO, any(upgrade))
}

/// `/ws/echo` (any method, so a wrong one gets the handshake's precise answer).
pub async fn upgrade(State(state): State<AppState>, mut req: Request) -> Response {
    if !state.config.ws_echo {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no echo endpoint here; start rtchat with --ws-echo",
        )
        .into_response();
    }
    let connect_protocol = req
        .extensions()
        .get::<hyper::ext::Protocol>()
        .map(|p| p.as_str().to_owned());
    let handshake = match validate(
        req.method(),
        req.version(),
        req.headers(),
        connect_protocol.as_deref(),
    ) {
        Ok(h) => h,
        Err(e) => return handshake_error(&e),
    };
    if let Err(reason) = state.origins.check_for(&req, "open WebSockets") {
        return ApiError::new(StatusCode::FORBIDDEN, reason).into_response();
    }
    let deflate = state.config.websocket.deflate.as_ref();
    let deflate = deflate.and_then(|d| rtchat_ws::deflate::negotiate(req.headers(), d));
    let on_upgrade = hyper::upgrade::on(&mut req);
    // The upgraded connection keeps its place under the connection caps.
    let slot = super::websocket::upgraded_place(&req);
    let config = state.config.websocket.clone();
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        let _slot = slot;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(error = %e, "WebSocket upgrade failed"),
        };
        let mut ws = WebSocket::new(TokioIo::new(upgraded), config).with_deflate(deflate);
        loop {
            let incoming = tokio::select! {
                m = ws.recv() => m,
                () = shutdown.cancelled() => {
                    let _ = ws.close(CloseCode::GOING_AWAY, "server shutting down").await;
                    return;
                }
            };
            let sent = match incoming {
                Ok(Message::Text(t)) => ws.send_text(t.into_bytes()).await,
                Ok(Message::Binary(b)) => ws.send_binary(b).await,
                Ok(Message::Close(_)) | Err(_) => return,
            };
            if sent.is_err() {
                return;
            }
        }
    });
    let mut response = handshake.response(None).map(|()| Body::empty());
    if let Some(d) = &deflate {
        let headers = response.headers_mut();
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, d.response_header());
    }
    response
}

fn handshake_error(e: &HandshakeError) -> Response {
    let mut response = ApiError::new(e.status(), e.reason()).into_response();
    response.headers_mut().extend(e.response_headers());
    response
}

//! WebSockets over HTTP/2 (RFC 8441) for Socket.IO.
//!
//! Once the listeners advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL`, Chromium opens every
//! `wss:` WebSocket to the origin on its existing HTTP/2 connection, as an extended CONNECT
//! (`:method CONNECT`, `:protocol websocket`), Socket.IO's included. `/ws` and `/ws/echo`
//! accept those themselves ([`rtchat_ws::handshake::validate`]); engineioxide only knows the
//! HTTP/1.1 upgrade (a `GET` with `Sec-WebSocket-Key`, answered `101`). So its requests are
//! translated at the door: the CONNECT is handed to engineioxide as the `GET` upgrade it
//! expects, and its `101` goes back as the `200` RFC 8441 asks for. hyper resolves the upgrade
//! of an HTTP/2 CONNECT once a 2xx answer is sent, so engineioxide's `hyper::upgrade::on`
//! then yields the stream, and the WebSocket frames flow inside it unchanged.

use axum::extract::Request;
use axum::http::header::{CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use axum::http::{HeaderValue, Method, StatusCode, Version};
use axum::response::Response;

/// Whether `req` is an RFC 8441 WebSocket request (HTTP/2 CONNECT with `:protocol websocket`).
pub fn is_websocket(req: &Request) -> bool {
    req.version() == Version::HTTP_2
        && req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// The extended CONNECT as the HTTP/1.1 upgrade request an RFC 6455 server expects. The key
/// is a fixed valid one: RFC 8441 has no key, and the `Sec-WebSocket-Accept` derived from it
/// is dropped by [`as_connect_response`]. The request's extensions (hyper's pending upgrade of
/// the stream among them) are kept.
pub fn as_upgrade_request(req: Request) -> Request {
    let (mut parts, body) = req.into_parts();
    parts.method = Method::GET;
    parts.version = Version::HTTP_11;
    let h = &mut parts.headers;
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        SEC_WEBSOCKET_KEY,
        HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
    );
    Request::from_parts(parts, body)
}

/// The upgrade's `101` as RFC 8441's `200`, without the HTTP/1.1-only headers. Any other
/// answer (a refusal) goes back as it is.
pub fn as_connect_response(mut res: Response) -> Response {
    if res.status() == StatusCode::SWITCHING_PROTOCOLS {
        *res.status_mut() = StatusCode::OK;
        let h = res.headers_mut();
        h.remove(UPGRADE);
        h.remove(CONNECTION);
        h.remove(SEC_WEBSOCKET_ACCEPT);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn translates_both_ways() {
        let mut req = Request::builder()
            .method(Method::CONNECT)
            .version(Version::HTTP_2)
            .uri("https://localhost/socket.io/?EIO=4&transport=websocket")
            .body(Body::empty())
            .unwrap();
        assert!(!is_websocket(&req));
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        assert!(is_websocket(&req));
        let up = as_upgrade_request(req);
        assert_eq!(
            (up.method(), up.version()),
            (&Method::GET, Version::HTTP_11)
        );
        assert_eq!(up.headers()[UPGRADE], "websocket");
        assert!(up.extensions().get::<hyper::ext::Protocol>().is_some());
        let res = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(UPGRADE, "websocket")
            .header(SEC_WEBSOCKET_ACCEPT, "x")
            .body(Body::empty())
            .unwrap();
        let res = as_connect_response(res);
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().is_empty());
        let refused = Response::builder().status(400).body(Body::empty()).unwrap();
        assert_eq!(
            as_connect_response(refused).status(),
            StatusCode::BAD_REQUEST
        );
    }
}

//! Socket.IO without sticky sessions (`--store redis://`).
//!
//! An Engine.IO session lives in the process that opened it, and its HTTP long-polling
//! transport sends every poll and post as a new request, which a round-robin balancer spreads
//! over every node. So each node notes in Redis which node owns each session it opens (the
//! `sid` of its polling handshake → its `--cluster-addr`), and a request naming a session
//! this node does not own is forwarded to the owner over plain HTTP, the WebSocket upgrade of
//! such a session included (the upgraded bytes are then relayed both ways). A forwarded
//! request carries `x-rtchat-hop`, so it is never forwarded twice, and the client's address
//! in `X-Forwarded-For` (the nodes list each other as `--trusted-proxy`).

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

use crate::api::ApiError;
use crate::state::{AppState, Cluster};

/// Marks a request one node forwarded to another.
const HOP: HeaderName = HeaderName::from_static("x-rtchat-hop");

/// How long a session's owner is remembered without a request for it (each lookup renews
/// it): longer than any Engine.IO session stays without a poll.
const OWNER_TTL: Duration = Duration::from_secs(3600);

/// The largest handshake answer read to find its `sid` (an open packet is ~150 bytes).
const MAX_HANDSHAKE: usize = 16 * 1024;

/// The middleware in front of the Socket.IO routes; does nothing outside a cluster.
pub async fn route(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = state.cluster.get() else {
        return next.run(req).await;
    };
    if req.headers().contains_key(&HOP) {
        return next.run(req).await;
    }
    let sid = sid_of(req.uri().query().unwrap_or(""));
    match sid {
        Some(sid) => match cluster.store.session_owner(&sid, OWNER_TTL).await {
            Ok(Some(owner)) if owner != cluster.addr => forward(&state, &owner, req).await,
            Ok(_) => next.run(req).await,
            Err(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot find which node holds this Socket.IO session: {e}"),
            )
            .into_response(),
        },
        None => {
            let polling = query_has(req.uri().query().unwrap_or(""), "transport", "polling");
            let response = next.run(req).await;
            if polling && response.status() == StatusCode::OK {
                register(cluster, response).await
            } else {
                response
            }
        }
    }
}

/// The `sid` query parameter, if any.
fn sid_of(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "sid")
        .map(|(_, v)| v.into_owned())
}

fn query_has(query: &str, key: &str, value: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, v)| k == key && v == value)
}

/// A polling handshake's answer, after noting this node as its session's owner.
async fn register(cluster: &Cluster, response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let bytes = match http_body_util::Limited::new(body, MAX_HANDSHAKE)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the Socket.IO handshake could not be read",
            )
            .into_response()
        }
    };
    if let Some(sid) = handshake_sid(&bytes) {
        if let Err(e) = cluster
            .store
            .own_session(&sid, &cluster.addr, OWNER_TTL)
            .await
        {
            // Without the note the session only works where it was opened: refuse it, so the
            // client opens another instead of failing on its next request.
            tracing::warn!(error = %e, "cannot note a Socket.IO session's node");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot note this Socket.IO session in the shared store: {e}"),
            )
            .into_response();
        }
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The `sid` of an Engine.IO open packet (`0{"sid":"...",...}`, possibly length-prefixed).
fn handshake_sid(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find('{')?;
    let open: serde_json::Value = serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<serde_json::Value>()
        .next()?
        .ok()?;
    open.get("sid")?.as_str().map(str::to_owned)
}

/// Sends `req` to the node at `owner` and relays its answer (and, for a WebSocket upgrade,
/// the upgraded connection).
async fn forward(state: &AppState, owner: &str, mut req: Request) -> Response {
    let failed = |e: &dyn std::fmt::Display| {
        tracing::warn!(error = %e, owner, "cannot reach the node that holds a Socket.IO session");
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "the node holding this Socket.IO session does not answer; connect again",
        )
        .into_response()
    };
    let stream = match tokio::net::TcpStream::connect(owner).await {
        Ok(stream) => stream,
        Err(e) => return failed(&e),
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => return failed(&e),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "a forwarded Socket.IO connection ended");
        }
    });
    let client_upgrade = req
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let client = state.proxies.client(&req).map(|c| c.ip);
    let (mut parts, body) = req.into_parts();
    parts.headers.insert(HOP, HeaderValue::from_static("1"));
    if let Some(ip) = client {
        // The owner trusts this node as a proxy: it sees the client's own address.
        parts.headers.remove("forwarded");
        if let Ok(v) = HeaderValue::from_str(&ip.to_string()) {
            parts.headers.insert("x-forwarded-for", v);
        }
    }
    // HTTP/1.1 to the owner whatever the client spoke.
    parts.version = axum::http::Version::HTTP_11;
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(e) => return failed(&e),
    };
    if !parts.headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(owner) {
            parts.headers.insert(header::HOST, v);
        }
    }
    let mut response = match sender.send_request(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(e) => return failed(&e),
    };
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut response);
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream) {
                    Ok((client, upstream)) => {
                        let _ = tokio::io::copy_bidirectional(
                            &mut TokioIo::new(client),
                            &mut TokioIo::new(upstream),
                        )
                        .await;
                    }
                    Err(e) => tracing::debug!(error = %e, "a forwarded upgrade failed"),
                }
            });
        }
    }
    response.map(Body::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sid_is_found_in_either_open_packet_form() {
        let v4 = br#"0{"sid":"abc-_1","upgrades":["websocket"],"pingInterval":25000}"#;
        assert_eq!(handshake_sid(v4).as_deref(), Some("abc-_1"));
        let v3 = br#"96:0{"sid":"xyz","upgrades":[]}2:40"#;
        assert_eq!(handshake_sid(v3).as_deref(), Some("xyz"));
        assert_eq!(handshake_sid(b"not a handshake"), None);
        assert_eq!(
            sid_of("EIO=4&transport=polling&sid=a%2Bb"),
            Some("a+b".into())
        );
        assert_eq!(sid_of("EIO=4&transport=polling"), None);
    }
}

//! Opening handshake (RFC 6455 §4.2), server side.
//!
//! Two ways in:
//! * [`validate_request`] + [`response_headers`] / [`switching_protocols`] for
//!   use inside hyper/axum, which own the HTTP/1.1 parsing and the upgrade;
//! * [`accept`] / [`accept_with`] that run the whole HTTP/1.1 exchange over any
//!   `AsyncRead + AsyncWrite` stream (bounded size, timeout, 4xx answers), for
//!   use without an HTTP server.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::BytesMut;
use http::header::{
    HeaderName, HeaderValue, ALLOW, CONNECTION, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, Method, StatusCode, Version};
use sha1::{Digest, Sha1};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::Config;
use crate::connection::WebSocket;

/// The GUID appended to the client key before hashing (§1.3).
pub const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake was refused; each maps to a precise HTTP status via
/// [`status`](Self::status) and to extra response headers via
/// [`response_headers`](Self::response_headers).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Method is not GET (405, `Allow: GET`).
    #[error("WebSocket handshake must use GET")]
    MethodNotAllowed,
    /// HTTP/1.0 or HTTP/2+ (400): only the HTTP/1.1 upgrade is supported.
    #[error("WebSocket handshake requires HTTP/1.1")]
    HttpVersion,
    /// No `Host` header on an HTTP/1.1 request (400).
    #[error("missing Host header")]
    MissingHost,
    /// `Upgrade` header absent or without the `websocket` token (400).
    #[error("missing or invalid Upgrade header (expected \"websocket\")")]
    MissingUpgrade,
    /// `Connection` header absent or without the `Upgrade` token (400).
    #[error("Connection header does not contain \"Upgrade\"")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` absent or not 13 (426 with
    /// `Sec-WebSocket-Version: 13`).
    #[error("unsupported or missing Sec-WebSocket-Version (only 13 is supported)")]
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` absent (400).
    #[error("missing Sec-WebSocket-Key header")]
    MissingKey,
    /// `Sec-WebSocket-Key` repeated, or not base64 of exactly 16 bytes (400).
    #[error("Sec-WebSocket-Key must be base64 of exactly 16 bytes")]
    InvalidKey,
    /// Standalone accept: request head larger than the limit, or too many
    /// header lines (431).
    #[error("request header too large")]
    HeaderTooLarge,
    /// Standalone accept: not parseable as HTTP/1.x (400).
    #[error("malformed HTTP request: {0}")]
    Malformed(&'static str),
    /// Standalone accept: the request did not arrive in time (408).
    #[error("handshake timed out")]
    Timeout,
    /// HTTP/2 `CONNECT` without `:protocol = websocket` (400; RFC 8441 §4).
    #[error("HTTP/2 WebSocket requests must be extended CONNECT with :protocol websocket")]
    NotWebSocketConnect,
    /// Standalone accept: the stream failed or closed (no response possible).
    #[error("I/O error during handshake: {0}")]
    Io(#[from] io::Error),
}

impl HandshakeError {
    /// The HTTP status that answers this error.
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HandshakeError::Timeout => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Short human-readable reason, suitable as a response body.
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// Headers the error response must carry (`Sec-WebSocket-Version: 13`
    /// for 426, `Allow: GET` for 405).
    pub fn response_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        match self {
            HandshakeError::UnsupportedVersion => {
                h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
            }
            HandshakeError::MethodNotAllowed => {
                h.insert(ALLOW, HeaderValue::from_static("GET"));
            }
            _ => {}
        }
        h
    }

    /// A complete error response (status, headers, plain-text body) for
    /// hyper/axum: `err.to_response().map(Body::from)`.
    pub fn to_response(&self) -> http::Response<String> {
        let mut res = http::Response::new(format!("{}\n", self.reason()));
        *res.status_mut() = self.status();
        let h = res.headers_mut();
        h.extend(self.response_headers());
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res
    }
}

/// The result of a successful validation: what the 101 response needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedRequest {
    /// `Sec-WebSocket-Accept` value computed from the client key.
    pub accept: String,
}

/// Computes `Sec-WebSocket-Accept`: base64(SHA-1(key ++ GUID)).
pub fn accept_key(key: impl AsRef<[u8]>) -> String {
    let mut h = Sha1::new();
    h.update(key.as_ref());
    h.update(WS_GUID.as_bytes());
    B64.encode(h.finalize())
}

/// Iterates the comma-separated, trimmed, non-empty tokens of every
/// occurrence of header `name` (headers may repeat and carry lists).
fn tokens<'a>(headers: &'a HeaderMap, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + 'a {
    headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// Checks that a request is a valid WebSocket opening handshake (§4.2.1):
/// GET, HTTP/1.1, `Host`, `Upgrade: websocket`, `Connection: upgrade`
/// (token lists, case-insensitive), `Sec-WebSocket-Version: 13` and a
/// `Sec-WebSocket-Key` that is base64 of 16 bytes. Works directly on what
/// hyper/axum hand out (`req.method()`, `req.version()`, `req.headers()`).
pub fn validate_request(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
) -> Result<ValidatedRequest, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if version != Version::HTTP_11 {
        return Err(HandshakeError::HttpVersion);
    }
    if !headers.contains_key(HOST) {
        return Err(HandshakeError::MissingHost);
    }
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION).iter();
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.as_bytes().trim_ascii() == b"13" => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let mut keys = headers.get_all(SEC_WEBSOCKET_KEY).iter();
    let key = match (keys.next(), keys.next()) {
        (None, _) => return Err(HandshakeError::MissingKey),
        (Some(k), None) => k.as_bytes().trim_ascii(),
        (Some(_), Some(_)) => return Err(HandshakeError::InvalidKey),
    };
    if key.len() != 24 {
        return Err(HandshakeError::InvalidKey);
    }
    match B64.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::InvalidKey),
    }
    Ok(ValidatedRequest {
        accept: accept_key(key),
    })
}

/// How a request asks for a WebSocket: the HTTP/1.1 upgrade (RFC 6455 §4) or an HTTP/2
/// extended CONNECT (RFC 8441), which has no key to answer and is accepted with `200`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// `GET` with `Upgrade: websocket`; answered with `101` and `Sec-WebSocket-Accept`.
    Http1(ValidatedRequest),
    /// `CONNECT` with `:protocol = websocket` on an HTTP/2 stream; answered with `200`, after
    /// which the stream carries the WebSocket frames.
    Http2,
}

/// Validates either kind of opening handshake. `protocol` is the `:protocol` pseudo-header
/// of an HTTP/2 extended CONNECT (hyper: `req.extensions().get::<hyper::ext::Protocol>()`).
/// For HTTP/2 it checks RFC 8441 §5: `CONNECT`, `:protocol` `websocket` and
/// `Sec-WebSocket-Version: 13`; anything else goes through [`validate_request`].
pub fn validate(
    method: &Method,
    version: Version,
    headers: &HeaderMap,
    protocol: Option<&str>,
) -> Result<Handshake, HandshakeError> {
    if version == Version::HTTP_2 && method == Method::CONNECT {
        if !protocol.is_some_and(|p| p.eq_ignore_ascii_case("websocket")) {
            return Err(HandshakeError::NotWebSocketConnect);
        }
        let mut versions = headers.get_all(SEC_WEBSOCKET_VERSION).iter();
        return match (versions.next(), versions.next()) {
            (Some(v), None) if v.as_bytes().trim_ascii() == b"13" => Ok(Handshake::Http2),
            _ => Err(HandshakeError::UnsupportedVersion),
        };
    }
    validate_request(method, version, headers).map(Handshake::Http1)
}

impl Handshake {
    /// The success response: `101` with the upgrade headers, or (HTTP/2) `200`; both with
    /// the chosen subprotocol, if any.
    pub fn response(&self, protocol: Option<&str>) -> http::Response<()> {
        match self {
            Handshake::Http1(v) => switching_protocols(v, protocol),
            Handshake::Http2 => {
                let mut res = http::Response::new(());
                if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
                    res.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, p);
                }
                res
            }
        }
    }
}

/// Picks the subprotocol: the first entry of `supported` (server preference
/// order) that the client offered in any `Sec-WebSocket-Protocol` header.
/// Returns `None` if there is no overlap; never returns a protocol the client
/// did not offer. Matching is exact (subprotocol tokens are case-sensitive).
pub fn select_subprotocol<'a>(headers: &HeaderMap, supported: &[&'a str]) -> Option<&'a str> {
    supported
        .iter()
        .find(|s| tokens(headers, &SEC_WEBSOCKET_PROTOCOL).any(|t| t == s.as_bytes()))
        .copied()
}

/// Headers of the `101 Switching Protocols` response: `Upgrade`,
/// `Connection`, `Sec-WebSocket-Accept` and, if chosen, `Sec-WebSocket-Protocol`.
pub fn response_headers(accept: &str, protocol: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(4);
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol.and_then(|p| HeaderValue::from_str(p).ok()) {
        h.insert(SEC_WEBSOCKET_PROTOCOL, p);
    }
    h
}

/// A complete empty-bodied `101 Switching Protocols` response, for
/// hyper/axum: `switching_protocols(&v, proto).map(|()| Body::empty())`.
pub fn switching_protocols(req: &ValidatedRequest, protocol: Option<&str>) -> http::Response<()> {
    let mut res = http::Response::new(());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *res.headers_mut() = response_headers(&req.accept, protocol);
    res
}

/// Options of the standalone handshake ([`accept_with`]).
#[derive(Debug, Clone)]
pub struct AcceptOptions {
    /// Supported subprotocols in preference order.
    pub protocols: Vec<String>,
    /// Largest request head (request line + headers) accepted; 431 beyond.
    /// Default 8 KiB.
    pub max_request_bytes: usize,
    /// Most header lines accepted; 431 beyond. Default 64.
    pub max_headers: usize,
    /// The whole request must arrive within this time; 408 otherwise.
    /// Default 10 s.
    pub timeout: Duration,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        AcceptOptions {
            protocols: Vec::new(),
            max_request_bytes: 8 * 1024,
            max_headers: 64,
            timeout: Duration::from_secs(10),
        }
    }
}

/// What the standalone handshake learned about the request.
#[derive(Debug)]
pub struct Accepted {
    /// The request (method, URI, version, headers; no body).
    pub request: http::Request<()>,
    /// The negotiated subprotocol, if any.
    pub protocol: Option<String>,
    /// The agreed permessage-deflate parameters, if any (see [`Config::deflate`]).
    pub deflate: Option<crate::deflate::Deflate>,
}

/// Runs the server handshake over `stream` with default options and returns
/// a connected [`WebSocket`]. On a bad request a 4xx response with a short
/// plain-text body is written before the error is returned.
pub async fn accept<S>(stream: S, config: Config) -> Result<WebSocket<S>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    accept_with(stream, &AcceptOptions::default(), config)
        .await
        .map(|(ws, _)| ws)
}

/// Like [`accept`], with options; also returns the parsed request (path,
/// headers) and the negotiated subprotocol.
pub async fn accept_with<S>(
    mut stream: S,
    opts: &AcceptOptions,
    config: Config,
) -> Result<(WebSocket<S>, Accepted), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let parsed = tokio::time::timeout(opts.timeout, read_request(&mut stream, opts)).await;
    let result = match parsed {
        Err(_) => Err(HandshakeError::Timeout),
        Ok(r) => r,
    };
    let (request, leftover) = match result {
        Ok(v) => v,
        Err(HandshakeError::Io(e)) => return Err(HandshakeError::Io(e)),
        Err(e) => {
            write_error(&mut stream, &e).await;
            return Err(e);
        }
    };
    let validated = match validate_request(request.method(), request.version(), request.headers()) {
        Ok(v) => v,
        Err(e) => {
            write_error(&mut stream, &e).await;
            return Err(e);
        }
    };
    let supported: Vec<&str> = opts.protocols.iter().map(String::as_str).collect();
    let protocol = select_subprotocol(request.headers(), &supported).map(str::to_owned);
    let deflate = config
        .deflate
        .as_ref()
        .and_then(|d| crate::deflate::negotiate(request.headers(), d));
    let mut head = String::with_capacity(160);
    head.push_str("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    head.push_str(&validated.accept);
    head.push_str("\r\n");
    if let Some(p) = &protocol {
        head.push_str("Sec-WebSocket-Protocol: ");
        head.push_str(p);
        head.push_str("\r\n");
    }
    if let Some(d) = &deflate {
        head.push_str("Sec-WebSocket-Extensions: ");
        head.push_str(&d.response_value());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await
    };
    match tokio::time::timeout(opts.timeout, write).await {
        Err(_) => return Err(HandshakeError::Timeout),
        Ok(Err(e)) => return Err(HandshakeError::Io(e)),
        Ok(Ok(())) => {}
    }
    let ws = WebSocket::from_parts(stream, config, leftover).with_deflate(deflate);
    Ok((
        ws,
        Accepted {
            request,
            protocol,
            deflate,
        },
    ))
}

/// Reads and parses the request head; returns it plus any bytes that
/// followed it (early frames), which belong to the WebSocket stream.
async fn read_request<S>(
    stream: &mut S,
    opts: &AcceptOptions,
) -> Result<(http::Request<()>, BytesMut), HandshakeError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(1024.min(opts.max_request_bytes.max(1)));
    loop {
        if buf.len() >= opts.max_request_bytes {
            return Err(HandshakeError::HeaderTooLarge);
        }
        let room = opts.max_request_bytes - buf.len();
        if buf.capacity() == buf.len() {
            buf.reserve(room.min(1024));
        }
        let n = {
            let mut limited = (&mut *stream).take(room as u64);
            limited.read_buf(&mut buf).await?
        };
        if n == 0 {
            return Err(HandshakeError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during handshake",
            )));
        }
        if let Some((req, used)) = parse_request(&buf, opts.max_headers)? {
            let _ = buf.split_to(used);
            return Ok((req, buf));
        }
    }
}

/// Parses an HTTP/1.x request head with httparse. `Ok(None)` = incomplete.
/// Public so the fuzzer and tests can drive it directly.
pub fn parse_request(
    buf: &[u8],
    max_headers: usize,
) -> Result<Option<(http::Request<()>, usize)>, HandshakeError> {
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers.clamp(1, 1024)];
    let mut req = httparse::Request::new(&mut storage);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::HeaderTooLarge),
        Err(_) => return Err(HandshakeError::Malformed("invalid request line or header")),
    };
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes())
        .map_err(|_| HandshakeError::Malformed("invalid method"))?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HandshakeError::Malformed("invalid HTTP version")),
    };
    let uri: http::Uri = req
        .path
        .unwrap_or("")
        .parse()
        .map_err(|_| HandshakeError::Malformed("invalid request target"))?;
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HandshakeError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| HandshakeError::Malformed("invalid header value"))?;
        headers.append(name, value);
    }
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(Some((request, used)))
}

/// Best-effort error response; bounded in time, errors ignored.
async fn write_error<S: AsyncWrite + Unpin>(stream: &mut S, e: &HandshakeError) {
    let status = e.status();
    let body = format!("{}\n", e.reason());
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    for (k, v) in e.response_headers().iter() {
        head.push_str(k.as_str());
        head.push_str(": ");
        head.push_str(v.to_str().unwrap_or(""));
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head.push_str(&body);
    let fut = async {
        stream.write_all(head.as_bytes()).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), fut).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("example.com"));
        h.insert(UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        h.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid() {
        let v = validate_request(&Method::GET, Version::HTTP_11, &good()).unwrap();
        assert_eq!(v.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rejections() {
        let st = |m: Method, v: Version, h: HeaderMap| {
            validate_request(&m, v, &h).unwrap_err().status().as_u16()
        };
        assert_eq!(st(Method::POST, Version::HTTP_11, good()), 405);
        assert_eq!(st(Method::GET, Version::HTTP_10, good()), 400);
        let mut h = good();
        h.insert(UPGRADE, HeaderValue::from_static("h2c"));
        assert_eq!(st(Method::GET, Version::HTTP_11, h), 400);
        let mut h = good();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(st(Method::GET, Version::HTTP_11, h), 400);
        let mut h = good();
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let e = validate_request(&Method::GET, Version::HTTP_11, &h).unwrap_err();
        assert_eq!(e.status().as_u16(), 426);
        assert_eq!(e.response_headers()[SEC_WEBSOCKET_VERSION], "13");
        let mut h = good();
        h.remove(SEC_WEBSOCKET_VERSION);
        assert_eq!(st(Method::GET, Version::HTTP_11, h), 426);
        let mut h = good();
        h.remove(SEC_WEBSOCKET_KEY);
        assert_eq!(st(Method::GET, Version::HTTP_11, h), 400);
        for bad in [
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZXg=",
            "!!!!!!!!!!!!!!!!!!!!!!==",
        ] {
            let mut h = good();
            h.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_static(bad));
            assert!(matches!(
                validate_request(&Method::GET, Version::HTTP_11, &h),
                Err(HandshakeError::InvalidKey)
            ));
        }
        let mut h = good();
        h.append(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        assert_eq!(st(Method::GET, Version::HTTP_11, h), 400);
    }

    #[test]
    fn extended_connect() {
        let mut h = HeaderMap::new();
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        let v = validate(&Method::CONNECT, Version::HTTP_2, &h, Some("websocket")).unwrap();
        assert_eq!(v, Handshake::Http2);
        let res = v.response(Some("json"));
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[SEC_WEBSOCKET_PROTOCOL], "json");
        let e = validate(&Method::CONNECT, Version::HTTP_2, &h, None).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = validate(&Method::CONNECT, Version::HTTP_2, &h, Some("h3")).unwrap_err();
        assert!(matches!(e, HandshakeError::NotWebSocketConnect));
        let e = validate(
            &Method::CONNECT,
            Version::HTTP_2,
            &HeaderMap::new(),
            Some("websocket"),
        );
        assert_eq!(e.unwrap_err().status(), StatusCode::UPGRADE_REQUIRED);
        // HTTP/1.1 goes through the RFC 6455 checks.
        let v = validate(&Method::GET, Version::HTTP_11, &good(), None).unwrap();
        assert_eq!(v.response(None).status(), StatusCode::SWITCHING_PROTOCOLS);
        let e = validate(&Method::GET, Version::HTTP_2, &good(), None).unwrap_err();
        assert!(matches!(e, HandshakeError::HttpVersion));
    }

    #[test]
    fn token_lists() {
        let mut h = good();
        h.remove(CONNECTION);
        h.append(CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append(CONNECTION, HeaderValue::from_static(" foo ,UPGRADE"));
        h.insert(UPGRADE, HeaderValue::from_static("h2c, websocket"));
        assert!(validate_request(&Method::GET, Version::HTTP_11, &h).is_ok());
    }

    #[test]
    fn subprotocols() {
        let mut h = HeaderMap::new();
        h.append(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("chat.v1, chat.v2"),
        );
        h.append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("json"));
        assert_eq!(select_subprotocol(&h, &["json", "chat.v2"]), Some("json"));
        assert_eq!(
            select_subprotocol(&h, &["chat.v2", "json"]),
            Some("chat.v2")
        );
        assert_eq!(select_subprotocol(&h, &["xml", "CHAT.V1"]), None);
        assert_eq!(select_subprotocol(&HeaderMap::new(), &["json"]), None);
    }

    #[test]
    fn parse() {
        let raw = b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\nrest";
        let (req, n) = parse_request(raw, 16).unwrap().unwrap();
        assert_eq!(req.uri().path(), "/ws");
        assert_eq!(&raw[n..], b"rest");
        assert!(parse_request(&raw[..20], 16).unwrap().is_none());
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\nA: b\r\nC: d\r\n\r\n", 1),
            Err(HandshakeError::HeaderTooLarge)
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\n\x01: b\r\n\r\n", 4),
            Err(HandshakeError::Malformed(_))
        ));
    }
}

//! Handshake over real TCP: rejections with exact statuses (raw requests) and
//! acceptance by a real client (tokio-tungstenite).

mod common;

use rtchat_ws::{accept_with, AcceptOptions, Config, HandshakeError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tungstenite::client::IntoClientRequest;

const GOOD: &str = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends `request` raw, returns (response head+body, server-side error).
async fn raw(request: Vec<u8>, opts: AcceptOptions) -> (String, Option<HandshakeError>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept_with(tcp, &opts, Config::default()).await.err()
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&request).await.unwrap();
    let err = server.await.unwrap();
    let mut resp = Vec::new();
    let _ = c.read_to_end(&mut resp).await;
    (String::from_utf8_lossy(&resp).into_owned(), err)
}

fn replace(from: &str, to: &str) -> Vec<u8> {
    assert!(GOOD.contains(from));
    GOOD.replacen(from, to, 1).into_bytes()
}

#[tokio::test]
async fn rejections_have_precise_statuses() {
    let cases: Vec<(&str, Vec<u8>, u16, Option<&str>)> = vec![
        ("POST", replace("GET", "POST"), 405, Some("Allow: GET")),
        ("HTTP/1.0", replace("HTTP/1.1", "HTTP/1.0"), 400, None),
        ("no Host", replace("Host: x\r\n", ""), 400, None),
        (
            "no Upgrade",
            replace("Upgrade: websocket\r\n", ""),
            400,
            None,
        ),
        (
            "Upgrade h2c",
            replace("Upgrade: websocket", "Upgrade: h2c"),
            400,
            None,
        ),
        (
            "no Connection",
            replace("Connection: Upgrade\r\n", ""),
            400,
            None,
        ),
        (
            "Connection close",
            replace("Connection: Upgrade", "Connection: close"),
            400,
            None,
        ),
        (
            "version 8",
            replace("Version: 13", "Version: 8"),
            426,
            Some("sec-websocket-version: 13"),
        ),
        (
            "no version",
            replace("Sec-WebSocket-Version: 13\r\n", ""),
            426,
            Some("sec-websocket-version: 13"),
        ),
        (
            "no key",
            replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
            None,
        ),
        (
            "short key",
            replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ=="),
            400,
            None,
        ),
        (
            "non-base64 key",
            replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ!!"),
            400,
            None,
        ),
        (
            "garbage",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
            400,
            None,
        ),
        (
            "huge header",
            replace(
                "Host: x\r\n",
                &format!("Host: x\r\nX-Big: {}\r\n", "a".repeat(10_000)),
            ),
            431,
            None,
        ),
    ];
    for (name, req, status, header) in cases {
        let (resp, err) = raw(req, AcceptOptions::default()).await;
        let err = err.unwrap_or_else(|| panic!("{name}: accepted"));
        assert_eq!(err.status().as_u16(), status, "{name}: {err}");
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status} ")),
            "{name}: {resp}"
        );
        assert!(
            resp.contains(&err.reason()),
            "{name}: body missing reason: {resp}"
        );
        if let Some(h) = header {
            assert!(
                resp.to_ascii_lowercase().contains(&h.to_ascii_lowercase()),
                "{name}: {resp}"
            );
        }
    }
}

#[tokio::test]
async fn too_many_headers_and_timeout() {
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    let (resp, err) = raw(
        replace("Host: x\r\n", &format!("Host: x\r\n{many}")),
        AcceptOptions::default(),
    )
    .await;
    assert!(matches!(err, Some(HandshakeError::HeaderTooLarge)));
    assert!(resp.starts_with("HTTP/1.1 431 "), "{resp}");

    let opts = AcceptOptions {
        timeout: Duration::from_millis(100),
        ..AcceptOptions::default()
    };
    let (resp, err) = raw(b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec(), opts).await;
    assert!(matches!(err, Some(HandshakeError::Timeout)));
    assert!(resp.starts_with("HTTP/1.1 408 "), "{resp}");
}

#[tokio::test]
async fn tungstenite_client_negotiates_subprotocol() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let opts = AcceptOptions {
            protocols: vec!["chat.v2".into(), "chat.v1".into()],
            ..AcceptOptions::default()
        };
        let (_ws, accepted) = accept_with(tcp, &opts, Config::default()).await.unwrap();
        (accepted.request.uri().path().to_string(), accepted.protocol)
    });
    let mut req = format!("ws://{addr}/room/1").into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chat.v1, chat.v2, other".parse().unwrap(),
    );
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (_c, resp) = tokio_tungstenite::client_async(req, tcp).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat.v2");
    let (path, proto) = server.await.unwrap();
    assert_eq!(path, "/room/1");
    assert_eq!(proto.as_deref(), Some("chat.v2"));
}

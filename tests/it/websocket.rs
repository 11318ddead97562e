//! The chat over WebSockets (course `json` subprotocol and rtchat.v1) against a real rtchat
//! process, with tokio-tungstenite as the client.

use crate::common;

use std::time::Duration;

use common::{
    client, get_json, post, spawn_poll, stat, texts, wait_for_stat, ws_connect as connect,
    ws_connect_with as connect_with, ws_json as next_json, ws_url, Server, Ws,
};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

/// The close frame the server sends next (skipping anything else).
async fn next_close(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a close within 10 s");
        match msg {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

#[tokio::test]
async fn course_contract_at_root_and_ws_with_the_json_protocol() {
    let server = Server::start(&[]);
    post(&server, "ann", "before").await;
    let (mut a, protocol) = connect_with(&server, "/", &["json"], None).await;
    assert_eq!(protocol.as_deref(), Some("json"));
    let mut b = connect(&server, "/ws", &["json"]).await;
    for ws in [&mut a, &mut b] {
        let first = next_json(ws).await;
        assert_eq!(
            texts(&first),
            ["before"],
            "history on connect, as /poll has it"
        );
        assert_eq!(first["last"], 1);
    }
    send_json(&mut a, json!({"user": "ann", "text": "hello"})).await;
    for ws in [&mut a, &mut b] {
        assert_eq!(texts(&next_json(ws).await), ["hello", "before"]);
    }
    assert_eq!(get_json(&server, "/poll").await["msg"][0]["text"], "hello");
}

#[tokio::test]
async fn no_subprotocol_gets_json_behaviour_and_none_is_echoed() {
    let server = Server::start(&[]);
    let (mut ws, protocol) = connect_with(&server, "/ws", &[], None).await;
    assert_eq!(
        protocol, None,
        "never echo a protocol the client did not offer"
    );
    assert_eq!(next_json(&mut ws).await["msg"], json!([]));
    let (_, protocol) = connect_with(&server, "/ws", &["chat", "json"], None).await;
    assert_eq!(protocol.as_deref(), Some("json"));
    let (_, protocol) = connect_with(&server, "/ws", &["json", "rtchat.v1"], None).await;
    assert_eq!(
        protocol.as_deref(),
        Some("rtchat.v1"),
        "rtchat's own protocol is preferred"
    );
}

#[tokio::test]
async fn invalid_posts_get_an_error_frame_and_are_not_stored() {
    let server = Server::start(&[]);
    let mut ws = connect(&server, "/ws", &["json"]).await;
    next_json(&mut ws).await;
    ws.send(Message::text("{not json")).await.unwrap();
    assert!(next_json(&mut ws).await["error"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    send_json(&mut ws, json!({"user": "ann", "text": ""})).await;
    assert_eq!(
        next_json(&mut ws).await["error"],
        "\"text\" must not be empty"
    );
    send_json(&mut ws, json!({"user": "x".repeat(65), "text": "hi"})).await;
    assert!(next_json(&mut ws).await["error"]
        .as_str()
        .unwrap()
        .contains("at most 64"));
    assert_eq!(get_json(&server, "/poll").await["msg"], json!([]));
    // The connection stays usable.
    send_json(&mut ws, json!({"user": "ann", "text": "fine"})).await;
    assert_eq!(texts(&next_json(&mut ws).await), ["fine"]);
}

#[tokio::test]
async fn rtchat_v1_sends_deltas_acks_and_typed_errors() {
    let server = Server::start(&[]);
    post(&server, "ann", "old").await;
    let mut ws = connect(&server, "/ws", &["rtchat.v1"]).await;
    let history = next_json(&mut ws).await;
    assert_eq!(history["type"], "history");
    assert_eq!(texts(&history), ["old"]);
    send_json(
        &mut ws,
        json!({"type": "post", "user": "bob", "text": "new", "ref": 7}),
    )
    .await;
    // The ack and the message itself, in either order.
    let mut got = [next_json(&mut ws).await, next_json(&mut ws).await];
    got.sort_by_key(|v| v["type"].as_str().unwrap().to_owned());
    assert_eq!(
        got[0],
        json!({"type": "ack", "ref": 7, "room": "general", "id": 2})
    );
    assert_eq!(got[1]["type"], "msg");
    assert_eq!(got[1]["msg"]["text"], "new");
    assert_eq!(got[1]["msg"]["id"], 2);
    send_json(&mut ws, json!({"type": "post", "user": "bob", "ref": "r2"})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "error", "ref": "r2", "room": "general", "error": "\"text\" is missing"})
    );
    send_json(&mut ws, json!({"user": "bob", "text": "no type"})).await;
    assert_eq!(next_json(&mut ws).await["type"], "error");
    post(&server, "cy", "from polling").await;
    let delta = next_json(&mut ws).await;
    assert_eq!(delta["msg"]["text"], "from polling");
    assert_eq!(delta["msg"]["user"], "cy");
}

#[tokio::test]
async fn rtchat_v1_resumes_with_exactly_the_missed_messages() {
    let server = Server::start(&["--history", "5"]);
    for i in 1..=12 {
        post(&server, "u", &format!("m{i}")).await;
    }
    // 9 missed, more than the 5 of history: the rest come from the store.
    let mut ws = connect(&server, "/ws?since=3", &["rtchat.v1"]).await;
    for want in 4..=12 {
        let frame = next_json(&mut ws).await;
        assert_eq!(frame["type"], "msg", "{frame}");
        assert_eq!(frame["msg"]["id"], want);
    }
    let epoch = get_json(&server, "/poll").await["epoch"].clone();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "resumed", "room": "general", "after": 3, "count": 9, "last": 12, "epoch": epoch}),
        "the end of the catch-up is announced"
    );
    post(&server, "u", "m13").await;
    assert_eq!(
        next_json(&mut ws).await["msg"]["id"],
        13,
        "then live, no duplicate"
    );
}

#[tokio::test]
async fn rtchat_v1_tells_about_reset_and_truncation() {
    let server = Server::start(&["--history", "2", "--retain", "3"]);
    for i in 1..=6 {
        post(&server, "u", &format!("m{i}")).await;
    }
    let epoch = get_json(&server, "/poll").await["epoch"].clone();
    let mut ws = connect(&server, "/ws?since=99", &["rtchat.v1"]).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "reset", "room": "general", "last": 6, "epoch": epoch})
    );
    assert_eq!(next_json(&mut ws).await["type"], "history");
    // A known id from another epoch is a reset too; the right epoch resumes.
    let mut ws = connect(&server, "/ws?since=5&epoch=zzzzzzzz", &["rtchat.v1"]).await;
    assert_eq!(next_json(&mut ws).await["type"], "reset");
    assert_eq!(next_json(&mut ws).await["type"], "history");
    let url = format!("/ws?since=5&epoch={}", epoch.as_str().unwrap());
    let mut ws = connect(&server, &url, &["rtchat.v1"]).await;
    assert_eq!(next_json(&mut ws).await["msg"]["id"], 6);

    let mut ws = connect(&server, "/ws?since=1", &["rtchat.v1"]).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "truncated", "room": "general", "after": 1})
    );
    for want in 4..=6 {
        assert_eq!(next_json(&mut ws).await["msg"]["id"], want);
    }
}

#[tokio::test]
async fn a_resume_further_back_than_max_resume_gets_the_newest_and_truncated() {
    let server = Server::start(&["--max-resume", "3"]);
    for i in 1..=8 {
        post(&server, "u", &format!("m{i}")).await;
    }
    let mut ws = connect(&server, "/ws?since=1", &["rtchat.v1"]).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "truncated", "room": "general", "after": 1}),
        "the client is told from where it was skipped"
    );
    for want in 6..=8 {
        assert_eq!(next_json(&mut ws).await["msg"]["id"], want);
    }
    let resumed = next_json(&mut ws).await;
    assert_eq!(
        (resumed["type"].as_str(), resumed["count"].as_u64()),
        (Some("resumed"), Some(3))
    );
    // Within the cap: everything, no notice.
    let mut ws = connect(&server, "/ws?since=5", &["rtchat.v1"]).await;
    assert_eq!(next_json(&mut ws).await["msg"]["id"], 6);
}

#[tokio::test]
async fn foreign_origins_are_refused_unless_allowed() {
    let server = Server::start(&["--allow-origin", "http://friend.test"]);
    let mut req = ws_url(&server, "/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "http://evil.test".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403);
            let body = String::from_utf8(res.body().clone().unwrap()).unwrap();
            assert!(body.contains("--allow-origin http://evil.test"), "{body}");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    connect_with(&server, "/ws", &["json"], Some("http://friend.test")).await;
    let same = server.base.clone();
    connect_with(&server, "/ws", &["json"], Some(&same)).await;
}

/// Sends a raw request and returns the status line and the whole answer.
async fn raw_request(server: &Server, request: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if n == 0 || (text.contains("\r\n\r\n") && text.contains("}")) {
            return text.into_owned();
        }
    }
}

#[tokio::test]
async fn malformed_handshakes_get_precise_statuses() {
    let server = Server::start(&[]);
    let base = "Host: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n";
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let answer = raw_request(
        &server,
        &format!("GET /ws HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 12\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 426"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{answer}"
    );
    let answer = raw_request(
        &server,
        &format!("GET /ws HTTP/1.1\r\n{base}Sec-WebSocket-Version: 13\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"error\""), "{answer}");
    let answer = raw_request(&server, &format!("GET /ws HTTP/1.1\r\n{base}Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n")).await;
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a key of fewer than 16 bytes: {answer}"
    );
    let answer = raw_request(&server, &format!("POST /ws HTTP/1.1\r\n{base}{key}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let res = client().get(server.url("/ws")).send().await.unwrap();
    assert_eq!(res.status(), 400, "a plain GET on /ws is not an upgrade");
}

#[tokio::test]
async fn binary_messages_close_with_1003_and_oversized_with_1009() {
    let server = Server::start(&["--ws-max-message", "1024"]);
    let mut ws = connect(&server, "/ws", &["json"]).await;
    next_json(&mut ws).await;
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(next_close(&mut ws).await.0, CloseCode::Unsupported);

    let mut ws = connect(&server, "/ws", &["json"]).await;
    next_json(&mut ws).await;
    ws.send(Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(next_close(&mut ws).await.0, CloseCode::Size);
}

#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_keepalive_timeout() {
    let server = Server::start(&["--ws-ping-interval", "0.2", "--ws-pong-timeout", "0.3"]);
    let before = stat(&server, "subscribers").await;
    // A raw client that completes the handshake and then never answers anything.
    let mut tcp = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    tcp.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    wait_for_stat(&server, "subscribers", before + 1).await;
    // Read everything the server sends until it closes: a ping, then close 1011.
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut received))
        .await
        .expect("the server hangs up");
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 101"));
    let frames = &received[received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert!(frames.windows(1).any(|w| w[0] == 0x89), "a ping was sent");
    let close = frames
        .windows(4)
        .any(|w| w[0] == 0x88 && w[2..4] == 1011u16.to_be_bytes());
    assert!(close, "closed with 1011: {frames:?}");
    wait_for_stat(&server, "subscribers", before).await;
}

#[tokio::test]
async fn a_peer_that_never_reads_does_not_hold_up_the_others() {
    // Post rate limits off: the test posts 200 messages as fast as it can.
    let server = Server::start(&["--post-rate", "0"]);
    // Never reads: its socket buffers fill up while the server keeps publishing.
    let mut stuck = tokio::net::TcpStream::connect(server.base.trim_start_matches("http://"))
        .await
        .unwrap();
    stuck.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut reader = connect(&server, "/ws", &["json"]).await;
    next_json(&mut reader).await;
    let text = "y".repeat(1900);
    for i in 0..200 {
        post(&server, "ann", &format!("{i} {text}")).await;
        let snapshot = next_json(&mut reader).await;
        assert!(snapshot["msg"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{i} ")));
    }
}

#[tokio::test]
async fn messages_cross_between_websocket_and_polling() {
    let server = Server::start(&[]);
    let mut ws = connect(&server, "/ws", &["json"]).await;
    next_json(&mut ws).await;
    let url = server.url("/poll?since=0&timeout=30");
    let parked = spawn_poll(url);
    wait_for_stat(&server, "parked_polls", 1).await;
    send_json(&mut ws, json!({"user": "ws", "text": "to the pollers"})).await;
    assert_eq!(parked.await.unwrap()["msg"][0]["text"], "to the pollers");
    assert_eq!(texts(&next_json(&mut ws).await), ["to the pollers"]);
    post(&server, "poll", "to the sockets").await;
    assert_eq!(
        texts(&next_json(&mut ws).await),
        ["to the sockets", "to the pollers"]
    );
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let mut server = Server::start(&[]);
    let mut ws = connect(&server, "/ws", &["json"]).await;
    next_json(&mut ws).await;
    let stopping = tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(5)));
    let (code, reason) = next_close(&mut ws).await;
    assert_eq!(code, CloseCode::Away);
    assert!(reason.contains("shutting down"), "{reason}");
    let status = stopping.await.unwrap().expect("exits");
    assert!(status.success());
}

#[tokio::test]
async fn every_post_read_before_a_close_is_stored() {
    // A client that fires many posts and closes without waiting for acks: the server keeps
    // reading while earlier posts commit, and stores everything it read. Post rate limits
    // off: 500 posts at once is far past the burst.
    let server = Server::start(&["--post-rate", "0"]);
    let ws = connect(&server, "/ws", &["rtchat.v1"]).await;
    let (mut sink, mut stream) = ws.split();
    for i in 0..500 {
        let post = json!({"type": "post", "user": "burst", "text": format!("{i}"), "ref": i});
        sink.send(Message::text(post.to_string())).await.unwrap();
    }
    sink.close().await.unwrap();
    while let Some(Ok(_)) = stream.next().await {}
    let mut since = 0;
    let mut texts = Vec::new();
    while texts.len() < 500 {
        let body = get_json(&server, &format!("/poll?since={since}&timeout=10")).await;
        let mut page: Vec<Value> = body["msg"].as_array().unwrap().clone();
        page.reverse();
        texts.extend(page.iter().map(|m| m["text"].as_str().unwrap().to_owned()));
        since = body["last"].as_u64().unwrap();
    }
    let want: Vec<String> = (0..500).map(|i| i.to_string()).collect();
    assert_eq!(texts, want, "all stored, in the order sent");
}

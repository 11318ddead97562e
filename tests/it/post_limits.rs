//! Post rate limits (`--post-rate`, `--post-burst`, `--post-rate-per-ip`,
//! `--post-burst-per-ip`) on every transport but Socket.IO (tests/socketio covers it with the
//! official client): posts past the burst are refused with the precise answer, nothing refused
//! is stored, another connection or address is unaffected, a WebSocket that keeps posting is
//! closed with 1008, and after the announced wait the client posts again.
//!
//! Each test names the limits it runs with: a small burst and a slow rate, so that refusals
//! come after a few posts and the refill takes about a second. A second client address is
//! 127.0.0.2 (the client binds its socket to it; the whole of 127.0.0.0/8 is loopback).

use crate::common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{client, get_json, ws_connect, ws_json, Server, Ws};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const SECOND_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// The start of a refusal by a connection's bucket with `--post-burst B --post-rate R`.
fn per_connection(burst: u32, rate: &str) -> String {
    format!(
        "posting too fast: at most {burst} posts at once on one connection, then {rate} a second (--post-burst, --post-rate); the post was not stored, try again in "
    )
}

/// The start of a refusal by an address's bucket.
fn per_address(burst: u32, rate: &str) -> String {
    format!(
        "posting too fast: at most {burst} posts at once from one address, then {rate} a second (--post-burst-per-ip, --post-rate-per-ip); the post was not stored, try again in "
    )
}

/// An HTTP client whose connections come from `addr`.
fn client_from(addr: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn post_to(
    http: &reqwest::Client,
    server: &Server,
    path: &str,
    text: &str,
) -> reqwest::Response {
    http.post(server.url(path))
        .json(&json!({ "user": "rate", "text": text }))
        .send()
        .await
        .unwrap()
}

/// The texts of the chat's history, newest first.
async fn stored_texts(server: &Server) -> Vec<String> {
    let snapshot = get_json(server, "/poll").await;
    snapshot["msg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// The wait a refusal announces, checked to be within `(0, max]`.
fn retry_after(body: &Value, max: Duration) -> Duration {
    let ms = body["retry_after_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no retry_after_ms: {body}"));
    let wait = Duration::from_millis(ms);
    assert!(
        wait > Duration::ZERO && wait <= max,
        "retry_after_ms {ms} not within {max:?}: {body}"
    );
    wait
}

/// A WebSocket to `path` from `addr`, offering `protocols`.
async fn ws_from(server: &Server, addr: IpAddr, path: &str, protocols: &str) -> Ws {
    let mut req = common::ws_url(server, path).into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocols.parse().unwrap());
    let target: SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("the plain address");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(addr, 0)).unwrap();
    let stream = socket.connect(target).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async_tls(req, stream)
        .await
        .expect("handshake");
    ws
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// rtchat.v1: posts `texts` with refs 1, 2, ... after `first_ref - 1`, and returns the answer
/// to each (`ack` or `error`), by ref, skipping the `msg` frames.
async fn v1_post_all(ws: &mut Ws, first_ref: u64, texts: &[&str]) -> Vec<Value> {
    for (i, text) in texts.iter().enumerate() {
        send(
            ws,
            json!({"type": "post", "user": "rate", "text": text, "ref": first_ref + i as u64}),
        )
        .await;
    }
    let mut answers = vec![Value::Null; texts.len()];
    let mut missing = texts.len();
    while missing > 0 {
        let frame = ws_json(ws).await;
        if frame["type"] == "ack" || frame["type"] == "error" {
            let i = (frame["ref"].as_u64().unwrap() - first_ref) as usize;
            assert!(answers[i].is_null(), "two answers for one ref: {frame}");
            answers[i] = frame;
            missing -= 1;
        }
    }
    answers
}

/// Opens a rtchat.v1 connection and reads its `history`.
async fn v1(server: &Server) -> Ws {
    let mut ws = ws_connect(server, "/ws", &["rtchat.v1"]).await;
    assert_eq!(ws_json(&mut ws).await["type"], "history");
    ws
}

#[tokio::test]
async fn http_posts_past_the_address_burst_get_429_with_retry_after() {
    // Only the per-address limit applies to HTTP posts: 3 at once, then one a second.
    let server = Server::start(&[
        "--no-tls",
        "--post-rate-per-ip",
        "1",
        "--post-burst-per-ip",
        "3",
    ]);
    let http = client();
    // POST /poll and POST /msgs share the address's bucket.
    for (i, path) in ["/poll", "/msgs", "/poll"].iter().enumerate() {
        let res = post_to(&http, &server, path, &format!("ok {i}")).await;
        assert_eq!(res.status(), 200, "post {i} within the burst");
    }
    for path in ["/poll", "/msgs"] {
        let res = post_to(&http, &server, path, "refused").await;
        assert_eq!(res.status(), 429, "{path}");
        assert_eq!(res.headers()["content-type"], "application/json", "{path}");
        let retry_header: u64 = res.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(retry_header, 1, "whole seconds, rounded up");
        let body: Value = res.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.starts_with(&per_address(3, "1")), "{error}");
        retry_after(&body, Duration::from_secs(1));
    }
    // Nothing refused was stored.
    assert_eq!(stored_texts(&server).await, ["ok 2", "ok 1", "ok 0"]);

    // Another address has its own bucket.
    let other = client_from(SECOND_ADDRESS);
    let res = post_to(&other, &server, "/poll", "from 127.0.0.2").await;
    assert_eq!(res.status(), 200);

    // After the announced wait, the first address posts again.
    let res = post_to(&http, &server, "/poll", "refused").await;
    assert_eq!(res.status(), 429);
    let wait = retry_after(&res.json().await.unwrap(), Duration::from_secs(1));
    tokio::time::sleep(wait).await;
    let res = post_to(&http, &server, "/poll", "after the wait").await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let texts = stored_texts(&server).await;
    assert_eq!(texts[..2], ["after the wait", "from 127.0.0.2"]);
    assert!(!texts.iter().any(|t| t == "refused"), "{texts:?}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_limited() {
    let server = Server::start(&[
        "--no-tls",
        "--trusted-proxy",
        "127.0.0.1",
        "--post-rate-per-ip",
        "0.5",
        "--post-burst-per-ip",
        "1",
    ]);
    let http = client();
    let post_as = |forwarded: &'static str| {
        http.post(server.url("/poll"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "user": "rate", "text": forwarded }))
            .send()
    };
    assert_eq!(post_as("203.0.113.1").await.unwrap().status(), 200);
    let refused = post_as("203.0.113.1").await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "2");
    // The proxy carries other clients, each with its own bucket.
    assert_eq!(post_as("203.0.113.2").await.unwrap().status(), 200);
    // A client that is not a trusted proxy cannot pick its address with the header.
    let direct = client_from(SECOND_ADDRESS);
    let spoof = |text: &'static str| {
        direct
            .post(server.url("/poll"))
            .header("x-forwarded-for", "198.51.100.1")
            .json(&json!({ "user": "rate", "text": text }))
            .send()
    };
    assert_eq!(spoof("one").await.unwrap().status(), 200);
    assert_eq!(spoof("two").await.unwrap().status(), 429);
}

#[tokio::test]
async fn ws_json_refusals_are_error_frames_and_connections_are_apart() {
    // 3 posts at once per connection, then one a second; no per-address limit.
    let server = Server::start(&[
        "--no-tls",
        "--post-rate",
        "1",
        "--post-burst",
        "3",
        "--post-rate-per-ip",
        "0",
    ]);
    let mut a = ws_connect(&server, "/ws", &["json"]).await;
    assert!(ws_json(&mut a).await["msg"].is_array(), "the snapshot");
    for i in 0..4 {
        send(&mut a, json!({"user": "rate", "text": format!("a{i}")})).await;
    }
    // Three snapshots (one per stored post) and one error, in some order.
    let (mut snapshots, mut error) = (0, None);
    while snapshots < 3 || error.is_none() {
        let frame = ws_json(&mut a).await;
        if frame.get("error").is_some() {
            assert!(error.is_none(), "one refusal only: {frame}");
            error = Some(frame);
        } else {
            snapshots += 1;
        }
    }
    let error = error.unwrap();
    let text = error["error"].as_str().unwrap();
    assert!(text.starts_with(&per_connection(3, "1")), "{text}");
    let wait = retry_after(&error, Duration::from_secs(1));

    // Another connection from the same address is not affected.
    let mut b = ws_connect(&server, "/ws", &["json"]).await;
    ws_json(&mut b).await;
    send(&mut b, json!({"user": "rate", "text": "b0"})).await;
    loop {
        let frame = ws_json(&mut b).await;
        assert!(frame.get("error").is_none(), "{frame}");
        if frame["msg"][0]["text"] == "b0" {
            break;
        }
    }
    assert_eq!(stored_texts(&server).await, ["b0", "a2", "a1", "a0"]);

    // After the announced wait, `a` posts again.
    tokio::time::sleep(wait).await;
    send(&mut a, json!({"user": "rate", "text": "a again"})).await;
    loop {
        let frame = ws_json(&mut a).await;
        assert!(frame.get("error").is_none(), "{frame}");
        if frame["msg"][0]["text"] == "a again" {
            break;
        }
    }
}

#[tokio::test]
async fn ws_v1_refusals_carry_the_ref_and_sustained_abuse_closes_with_1008() {
    let server = Server::start(&[
        "--no-tls",
        "--post-rate",
        "1",
        "--post-burst",
        "3",
        "--post-rate-per-ip",
        "0",
    ]);
    let mut a = v1(&server).await;
    let answers = v1_post_all(&mut a, 1, &["a1", "a2", "a3", "a4"]).await;
    for ack in &answers[..3] {
        assert_eq!(ack["type"], "ack", "{ack}");
    }
    let error = &answers[3];
    assert_eq!(error["type"], "error");
    assert_eq!(error["ref"], 4);
    let text = error["error"].as_str().unwrap();
    assert!(text.starts_with(&per_connection(3, "1")), "{text}");
    let wait = retry_after(error, Duration::from_secs(1));

    // Another connection is not affected...
    let mut b = v1(&server).await;
    let answers = v1_post_all(&mut b, 1, &["b1"]).await;
    assert_eq!(answers[0]["type"], "ack", "{}", answers[0]);

    // ...and `a` posts again once its bucket has refilled (one refused post does not count
    // towards closing it).
    tokio::time::sleep(wait).await;
    let answers = v1_post_all(&mut a, 5, &["a5"]).await;
    assert_eq!(answers[0]["type"], "ack", "{}", answers[0]);

    // A connection that keeps posting through its refusals: 3 taken, 9 refused with error
    // frames, and the 10th refusal in a row closes it with 1008.
    let mut abuser = v1(&server).await;
    for i in 0..20 {
        send(
            &mut abuser,
            json!({"type": "post", "user": "flood", "text": format!("f{i}"), "ref": i}),
        )
        .await;
    }
    let (mut acks, mut errors) = (0, 0);
    let close = loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), abuser.next())
            .await
            .expect("frames within 10 s")
            .expect("the socket is closed with a close frame")
            .expect("a valid frame");
        match msg {
            Message::Text(t) => {
                let frame: Value = serde_json::from_str(t.as_str()).unwrap();
                match frame["type"].as_str() {
                    Some("ack") => acks += 1,
                    Some("error") => {
                        assert!(
                            frame["error"]
                                .as_str()
                                .unwrap()
                                .starts_with(&per_connection(3, "1")),
                            "{frame}"
                        );
                        errors += 1;
                    }
                    _ => {}
                }
            }
            Message::Close(frame) => break frame.expect("a close code"),
            _ => {}
        }
    };
    assert_eq!(close.code, CloseCode::Policy);
    assert_eq!(
        close.reason.as_str(),
        "posting too fast: 10 posts in a row refused by the rate limit (--post-rate)"
    );
    // The 9 error frames went out before the close; acks of the burst may not have (the
    // connection closed before the store answered), but its 3 posts were stored.
    assert_eq!(errors, 9);
    assert!(acks <= 3, "{acks} acks");
    // The burst may still be on its way to the store: `b` sees it delivered, then nothing
    // more is stored.
    let mut delivered = Vec::new();
    while delivered.len() < 3 {
        let frame = ws_json(&mut b).await;
        if frame["type"] == "msg" && frame["msg"]["user"] == "flood" {
            delivered.push(frame["msg"]["text"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(delivered, ["f0", "f1", "f2"]);
    let texts = stored_texts(&server).await;
    let flood: Vec<_> = texts.iter().filter(|t| t.starts_with('f')).collect();
    assert_eq!(flood, ["f2", "f1", "f0"], "only the burst was stored");
}

#[tokio::test]
async fn an_address_bucket_is_shared_by_its_connections_and_no_other() {
    // Connections may post freely; an address 2 at once, then one a second.
    let server = Server::start(&[
        "--no-tls",
        "--post-rate",
        "100",
        "--post-burst",
        "100",
        "--post-rate-per-ip",
        "1",
        "--post-burst-per-ip",
        "2",
    ]);
    let mut a = v1(&server).await;
    let answers = v1_post_all(&mut a, 1, &["a1", "a2", "a3"]).await;
    assert_eq!(answers[0]["type"], "ack");
    assert_eq!(answers[1]["type"], "ack");
    let text = answers[2]["error"].as_str().unwrap();
    assert!(text.starts_with(&per_address(2, "1")), "{text}");
    // A second connection from the same address shares its bucket, and so does HTTP.
    let mut b = v1(&server).await;
    let answers = v1_post_all(&mut b, 1, &["b1"]).await;
    assert_eq!(answers[0]["type"], "error", "{}", answers[0]);
    assert_eq!(
        post_to(&client(), &server, "/poll", "http").await.status(),
        429
    );
    // A connection from another address does not.
    let mut c = ws_from(&server, SECOND_ADDRESS, "/ws", "rtchat.v1").await;
    assert_eq!(ws_json(&mut c).await["type"], "history");
    let answers = v1_post_all(&mut c, 1, &["c1", "c2"]).await;
    assert!(answers.iter().all(|a| a["type"] == "ack"), "{answers:?}");
    // After the wait the first address posts again.
    let wait = retry_after(&answers_error(&mut b).await, Duration::from_secs(1));
    tokio::time::sleep(wait).await;
    let answers = v1_post_all(&mut b, 10, &["b again"]).await;
    assert_eq!(answers[0]["type"], "ack", "{}", answers[0]);
    assert_eq!(
        stored_texts(&server).await,
        ["b again", "c2", "c1", "a2", "a1"]
    );
}

/// One more refused post on `ws` (its address's bucket is empty): the error frame.
async fn answers_error(ws: &mut Ws) -> Value {
    let answers = v1_post_all(ws, 99, &["refused"]).await;
    assert_eq!(answers[0]["type"], "error", "{}", answers[0]);
    answers[0].clone()
}

#[tokio::test]
async fn the_defaults_never_refuse_a_person() {
    // rtchat's defaults: a person sending a burst of 20 (an outbox replayed after a
    // reconnect) and then chatting fast, on one connection, is never refused.
    let server = Server::start(&["--no-tls"]);
    let mut ws = v1(&server).await;
    let burst: Vec<String> = (0..20).map(|i| format!("queued {i}")).collect();
    let burst: Vec<&str> = burst.iter().map(String::as_str).collect();
    let answers = v1_post_all(&mut ws, 1, &burst).await;
    assert!(answers.iter().all(|a| a["type"] == "ack"), "{answers:?}");
    for i in 0..5 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let answers = v1_post_all(&mut ws, 100 + i, &["typing fast"]).await;
        assert_eq!(answers[0]["type"], "ack", "{}", answers[0]);
    }
}

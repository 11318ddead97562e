//! Connections nobody can hold hostage: every phase of a connection is timed, connections are
//! capped in all and per address, the accept loop survives running out of file descriptors,
//! and a reader that stops reading is dropped. Each attack runs against a real server while
//! an ordinary client keeps chatting through it.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{client, get_json, post, stat, Server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The server's plain address.
fn addr(server: &Server) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port))
}

/// Connects from a chosen local address (127.0.0.x), so one test can be several clients.
async fn connect_from(server: &Server, local: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((local, 0))).unwrap();
    socket.connect(addr(server)).await.unwrap()
}

/// Reads until the server closes the connection (EOF or reset), failing after `within`.
/// Returns everything read and how long it took.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(start.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => panic!(
                "the server kept the connection open for {within:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, start.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One HTTP/1.1 response read off a raw connection: status, head, body (Content-Length).
async fn read_response(stream: &mut TcpStream) -> (u16, String, String) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .expect("read");
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while raw.len() < head_end + len {
        let n = stream.read(&mut buf).await.expect("read body");
        assert!(n > 0, "closed in the body");
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end..head_end + len]).to_string();
    (status, head, body)
}

/// `GET path` on a kept-alive raw connection.
async fn get_on(stream: &mut TcpStream, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    read_response(stream).await
}

/// `POST /poll` on a kept-alive raw connection; returns the status and the answer as JSON.
async fn post_on(stream: &mut TcpStream, user: &str, text: &str) -> (u16, Value) {
    let body = serde_json::json!({ "user": user, "text": text }).to_string();
    let req = format!(
        "POST /poll HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let (status, _, body) = read_response(stream).await;
    (status, serde_json::from_str(&body).unwrap())
}

/// An ordinary client chatting: posts one message and sees it in the history.
async fn ordinary_client_chats(server: &Server, text: &str) {
    let res = post(server, "ann", text).await;
    assert_eq!(res.status(), 200, "an ordinary post is acknowledged");
    let id = res.json::<Value>().await.unwrap()["id"].as_u64().unwrap();
    let history = get_json(server, "/poll").await;
    assert_eq!(history["msg"][0]["id"], id, "and delivered: {history}");
    assert_eq!(history["msg"][0]["text"], text);
}

#[tokio::test]
async fn an_unfinished_request_head_is_closed_within_the_header_timeout() {
    let server = Server::start(&["--no-tls", "--store", "memory", "--header-timeout", "1"]);
    let slow = TcpStream::connect(addr(&server)).await.unwrap();
    let (mut read, mut write) = slow.into_split();
    // Half a head, then a header line every 200 ms: never finished, never silent.
    write
        .write_all(b"GET /poll HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    tokio::spawn(async move {
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write
                .write_all(format!("x-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut got = Vec::new();
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let (closed, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), closed),
        ordinary_client_chats(&server, "during a slow head")
    );
    closed.expect("the trickling client is cut off within 5 s, though it keeps sending");
    assert!(start.elapsed() >= Duration::from_millis(900));
    assert!(
        got.is_empty(),
        "closed without an answer: {:?}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn a_kept_alive_http1_connection_that_idles_is_closed_after_the_header_timeout() {
    let server = Server::start(&["--no-tls", "--store", "memory", "--header-timeout", "1"]);
    let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
    let (status, _, _) = get_on(&mut conn, "/poll").await;
    assert_eq!(status, 200);
    let (rest, idle) = read_until_closed(&mut conn, Duration::from_secs(5)).await;
    assert!(rest.is_empty());
    assert!(idle >= Duration::from_millis(900), "closed after {idle:?}");
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_after_the_sniff_timeout() {
    let server = Server::start(&["--store", "memory", "--sniff-timeout", "1"]);
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    let chat = ordinary_client_chats(&server, "during a silent connection");
    let (closed, ()) = tokio::join!(read_until_closed(&mut silent, Duration::from_secs(5)), chat);
    assert!(closed.0.is_empty(), "closed without an answer");
    assert!(
        closed.1 >= Duration::from_millis(900),
        "closed after {:?}",
        closed.1
    );
}

#[tokio::test]
async fn a_tls_handshake_that_never_comes_is_closed_after_its_timeout() {
    let server = Server::start(&["--store", "memory", "--tls-handshake-timeout", "1"]);
    let tls_port: u16 = server
        .tls_base
        .as_ref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut silent = TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
    let (got, took) = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(got.is_empty());
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    ordinary_client_chats(&server, "after a silent TLS client").await;
}

#[tokio::test]
async fn a_trickled_body_gets_408_after_the_body_timeout() {
    let server = Server::start(&["--no-tls", "--store", "memory", "--body-timeout", "1"]);
    let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
    conn.write_all(
        b"POST /poll HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"user\":",
    )
    .await
    .unwrap();
    let (status, _, body) = read_response(&mut conn).await;
    assert_eq!(status, 408, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("--body-timeout"),
        "{body}"
    );
    assert_eq!(common::last_id(&server).await, 0, "nothing stored");
}

#[tokio::test]
async fn a_flood_from_one_address_is_refused_while_others_are_served() {
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--max-connections-per-ip",
        "4",
    ]);
    // Four kept-alive connections from 127.0.0.3: the cap.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = connect_from(&server, [127, 0, 0, 3]).await;
        assert_eq!(get_on(&mut conn, "/poll").await.0, 200);
        held.push(conn);
    }
    // The flood: each further connection from that address gets a quick 503 and is closed.
    for _ in 0..20 {
        let mut extra = connect_from(&server, [127, 0, 0, 3]).await;
        let _ = extra
            .write_all(b"GET /poll HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await;
        let (status, head, body) = read_response(&mut extra).await;
        assert_eq!(status, 503, "{head}{body}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: "),
            "{head}"
        );
        let reason: Value = serde_json::from_str(&body).unwrap();
        assert!(
            reason["error"]
                .as_str()
                .unwrap()
                .contains("--max-connections-per-ip"),
            "{reason}"
        );
    }
    // An ordinary HTTP client from that address reads the refusal as an answer.
    let refused = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 3]))
        .build()
        .unwrap()
        .get(server.url("/poll"))
        .send()
        .await
        .expect("a 503 answer, not a broken connection");
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    let reason: Value = refused.json().await.unwrap();
    assert!(reason["error"]
        .as_str()
        .unwrap()
        .contains("too many connections"));
    // Another address is served as usual, and the connections already open are untouched.
    let mut other = connect_from(&server, [127, 0, 0, 4]).await;
    let (status, _) = post_on(&mut other, "bob", "from another address").await;
    assert_eq!(status, 200);
    for conn in &mut held {
        let (status, _, body) = get_on(conn, "/poll").await;
        assert_eq!(status, 200);
        assert!(body.contains("from another address"));
    }
    // Closing one frees its place.
    drop(held.pop());
    place_comes_back(&server, [127, 0, 0, 3]).await;
}

/// Upgrades `conn` to a WebSocket at `path` and reads the 101.
async fn upgrade_on(conn: &mut TcpStream, path: &str, protocol: Option<&str>) {
    let protocol = protocol.map_or(String::new(), |p| {
        format!("sec-websocket-protocol: {p}\r\n")
    });
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n{protocol}\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            conn.read(&mut byte).await.unwrap(),
            1,
            "closed during the upgrade"
        );
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
}

/// A fresh connection from `local` asking for `/poll`: its status.
async fn status_from(server: &Server, local: [u8; 4]) -> u16 {
    let mut conn = connect_from(server, local).await;
    let _ = conn
        .write_all(b"GET /poll HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    read_response(&mut conn).await.0
}

/// Waits (up to 5 s) until a new connection from `local` is served again: a closed
/// connection's place under the per-address cap is given back once the server has seen the
/// close, which a client cannot await.
async fn place_comes_back(server: &Server, local: [u8; 4]) {
    let start = Instant::now();
    while status_from(server, local).await != 200 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn upgraded_websockets_keep_counting_against_the_connection_caps() {
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--max-connections-per-ip",
        "2",
    ]);
    // An rtchat WebSocket and a Socket.IO WebSocket session: both places taken, for as long
    // as the sockets live (hyper's own connection task ends at the upgrade).
    let mut ws = connect_from(&server, [127, 0, 0, 5]).await;
    upgrade_on(&mut ws, "/ws", Some("rtchat.v1")).await;
    let mut sio = connect_from(&server, [127, 0, 0, 5]).await;
    upgrade_on(&mut sio, "/socket.io/?EIO=4&transport=websocket", None).await;
    assert_eq!(
        status_from(&server, [127, 0, 0, 5]).await,
        503,
        "a third connection is over the cap"
    );
    let refused = [("reason", "max_connections_per_ip")];
    assert_eq!(
        common::metric(&server, "rtchat_connections_refused_total", &refused).await,
        1.0
    );
    // Closing the WebSocket gives its place back.
    drop(ws);
    place_comes_back(&server, [127, 0, 0, 5]).await;
    drop(sio);
}

#[tokio::test]
async fn trusted_proxies_are_not_capped_per_address_and_forward_the_client_address() {
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--max-connections-per-ip",
        "2",
        "--trusted-proxy",
        "127.0.0.5/32",
    ]);
    // The proxy carries many clients: more connections than the per-address cap.
    let mut proxied = Vec::new();
    for i in 0..5 {
        let mut conn = connect_from(&server, [127, 0, 0, 5]).await;
        let req = format!(
            "GET /poll HTTP/1.1\r\nhost: localhost\r\nx-forwarded-for: 203.0.113.{i}\r\nx-forwarded-proto: https\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut conn).await.0, 200);
        proxied.push(conn);
    }
    server.wait_for_log("client=203.0.113.4");
    // Anyone else's forwarded headers are ignored: the log names the real peer.
    let mut direct = connect_from(&server, [127, 0, 0, 6]).await;
    direct
        .write_all(
            b"GET /poll?from=direct HTTP/1.1\r\nhost: localhost\r\nx-forwarded-for: 198.51.100.77\r\n\r\n",
        )
        .await
        .unwrap();
    assert_eq!(read_response(&mut direct).await.0, 200);
    server.wait_for_log("client=127.0.0.6");
    assert!(
        !server.stderr().contains("198.51.100.77"),
        "a client cannot pick its address"
    );
}

#[tokio::test]
async fn the_total_cap_defaults_from_the_open_file_limit() {
    // 64 open files: the default cap is 32 connections (half, leaving room for the server's
    // own files).
    let server = Server::start_with(
        &[
            "--no-tls",
            "--store",
            "memory",
            "--max-connections-per-ip",
            "0",
        ],
        &[],
        |cmd| nofile_limit(cmd, 64),
    );
    server.wait_for_log("max_connections=32");
    let mut held = Vec::new();
    for _ in 0..32 {
        let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
        assert_eq!(get_on(&mut conn, "/poll").await.0, 200);
        held.push(conn);
    }
    let mut extra = TcpStream::connect(addr(&server)).await.unwrap();
    let _ = extra
        .write_all(b"GET /poll HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    let (status, _, body) = read_response(&mut extra).await;
    assert_eq!(status, 503);
    assert!(body.contains("--max-connections"), "{body}");
    // The held connections still chat.
    let (status, _) = post_on(&mut held[0], "ann", "still here").await;
    assert_eq!(status, 200);
}

/// Lowers the server's open-file limit (soft and hard) before it starts.
fn nofile_limit(cmd: &mut std::process::Command, n: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setrlimit is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, n, n));
    }
}

#[tokio::test]
async fn running_out_of_file_descriptors_backs_off_and_recovers() {
    // A cap above what the open-file limit allows, so accept itself fails with EMFILE.
    let server = Server::start_with(
        &[
            "--no-tls",
            "--store",
            "memory",
            "--max-connections",
            "1000",
            "--max-connections-per-ip",
            "0",
        ],
        &[],
        |cmd| nofile_limit(cmd, 48),
    );
    // An ordinary client connected before the flood keeps its connection.
    let mut ordinary = TcpStream::connect(addr(&server)).await.unwrap();
    assert_eq!(post_on(&mut ordinary, "ann", "before").await.0, 200);
    // The flood: more connections than the server has descriptors for. The kernel completes
    // them all (backlog); the server accepts what it can.
    let mut flood = Vec::new();
    for _ in 0..80 {
        flood.push(TcpStream::connect(addr(&server)).await.unwrap());
    }
    server.wait_for_log("cannot accept connections");
    // Through it all, the ordinary client chats on.
    for i in 0..5 {
        let (status, answer) = post_on(&mut ordinary, "ann", &format!("during {i}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    let (status, _, body) = get_on(&mut ordinary, "/poll").await;
    assert_eq!(status, 200);
    assert!(body.contains("during 4"));
    // The server kept failing to accept all along, and said so once.
    let log = server.stderr();
    assert_eq!(
        log.matches("cannot accept connections").count(),
        1,
        "one line per burst, not one per failure:\n{log}"
    );
    assert!(!log.contains("accepting connections again"), "{log}");
    // The flood goes away; the server accepts again.
    drop(flood);
    let start = Instant::now();
    loop {
        if let Ok(res) = client().get(server.url("/poll")).send().await {
            if res.status() == 200 {
                break;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(10), "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.wait_for_log("accepting connections again");
}

/// Opens a stream with a tiny receive buffer, reads its answer head and then stops reading.
async fn stalled_reader(server: &Server, path: &str, accept: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut conn = socket.connect(addr(server)).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\naccept: {accept}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 512];
    let n = conn.read(&mut head).await.unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    conn
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap()
}

/// A reader that stops reading a stream is dropped once the server's writes to it stall for
/// `--write-timeout`, while a reader that keeps reading gets every message.
async fn a_stalled_reader_is_dropped(path: &str, accept: &str) {
    // Post rate limits off: the test posts up to 3,000 messages as fast as it can.
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--write-timeout",
        "1",
        "--post-rate",
        "0",
    ]);
    let mut stalled = stalled_reader(&server, path, accept).await;
    // An ordinary SSE reader alongside.
    let mut events = client()
        .get(server.url("/events"))
        .send()
        .await
        .unwrap()
        .bytes_stream();
    // The stalled reader and the SSE reader (`rtchat_subscribers` counts clients only).
    common::wait_for_stat(&server, "subscribers", 2).await;
    let rss_before = rss_kib(server.pid());
    // Posts of 2,000 characters until the stalled stream is gone (at most 3,000).
    let text = "x".repeat(1990);
    let mut posted = 0;
    let start = Instant::now();
    while stat(&server, "subscribers").await > 1 {
        assert!(
            posted < 3000 && start.elapsed() < Duration::from_secs(60),
            "the stalled reader was never dropped ({posted} posts)"
        );
        let texts: Vec<String> = (0..20).map(|i| format!("{posted} {i} {text}")).collect();
        let batch: Vec<_> = texts.iter().map(|t| post(&server, "ann", t)).collect();
        for res in futures::future::join_all(batch).await {
            assert_eq!(res.status(), 200);
        }
        posted += 20;
    }
    let rss_after = rss_kib(server.pid());
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory grew from {rss_before} to {rss_after} KiB"
    );
    // Its connection is closed: what it reads now ends.
    read_until_closed(&mut stalled, Duration::from_secs(10)).await;
    // The ordinary reader got every message, the last one included.
    use futures::StreamExt;
    let last = format!("{} 19 ", posted - 20);
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.contains(&last) {
        let chunk = tokio::time::timeout_at(deadline.into(), events.next())
            .await
            .expect("the ordinary reader gets the last message")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.len() > 64 * 1024 {
            seen.drain(..seen.len() - 8 * 1024);
        }
    }
}

#[tokio::test]
async fn a_stalled_sse_reader_is_dropped_after_the_write_timeout() {
    a_stalled_reader_is_dropped("/events", "text/event-stream").await;
}

#[tokio::test]
async fn a_stalled_msgs_reader_is_dropped_after_the_write_timeout() {
    a_stalled_reader_is_dropped("/msgs", "*/*").await;
}

#[tokio::test]
async fn the_overflowing_long_poll_timeout_is_answered_not_a_panic() {
    let server = Server::start(&["--no-tls", "--store", "memory"]);
    post(&server, "ann", "one").await;
    post(&server, "ann", "two").await;
    // Past what a Duration holds: clamped to the maximum, and answered at once here since a
    // message newer than 1 exists.
    let res = client()
        .get(server.url("/poll?since=1&timeout=1e20"))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["msg"][0]["text"], "two");
    for bad in ["-1", "nan", "inf", "-inf", "1e400", "x"] {
        let res = client()
            .get(server.url(&format!("/poll?since=1&timeout={bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "timeout={bad}");
        let body: Value = res.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let server = Server::start(&["--no-tls", "--store", "memory", "--idle-timeout", "1"]);
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(addr(&server)).await.unwrap());
    let (mut send, conn) = hyper::client::conn::http2::handshake::<
        _,
        _,
        http_body_util::Empty<bytes::Bytes>,
    >(hyper_util::rt::TokioExecutor::new(), io)
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let res = send
        .send_request(
            hyper::Request::get(format!("http://127.0.0.1:{}/poll", server.port))
                .body(http_body_util::Empty::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    drop(res);
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the server closes the idle connection")
        .unwrap()
        .ok();
    assert!(start.elapsed() >= Duration::from_millis(800));
}

#[tokio::test]
async fn an_http2_client_that_never_answers_pings_is_closed() {
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--h2-keepalive-interval",
        "1",
        "--h2-keepalive-timeout",
        "1",
    ]);
    let mut conn = TcpStream::connect(addr(&server)).await.unwrap();
    // The preface and an empty SETTINGS frame, then silence: no ACKs, no PING answers.
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    conn.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let (got, took) = read_until_closed(&mut conn, Duration::from_secs(10)).await;
    // Walk the frames the server sent: a PING (type 6) among them.
    let mut i = 0;
    let mut types = Vec::new();
    while i + 9 <= got.len() {
        let len =
            (usize::from(got[i]) << 16) | (usize::from(got[i + 1]) << 8) | usize::from(got[i + 2]);
        types.push(got[i + 3]);
        i += 9 + len;
    }
    assert!(
        types.contains(&6),
        "a keepalive PING was sent: frame types {types:?}"
    );
    assert!(took >= Duration::from_millis(1500), "closed after {took:?}");
}

#[tokio::test]
async fn a_second_server_on_the_same_database_refuses_to_start_naming_the_first() {
    let first = Server::start(&["--no-tls"]);
    let data_dir = first.data_dir.to_str().unwrap().to_owned();
    let out = common::rtchat(
        &[
            "serve",
            "--no-tls",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &data_dir,
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("in use by another rtchat (pid {})", first.pid())),
        "{err}"
    );
    // The same file named with --db is the same database.
    let db = first.data_dir.join("rtchat.db");
    let other_dir = common::temp_dir("other");
    let out = common::rtchat(
        &[
            "serve",
            "--no-tls",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            other_dir.to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another rtchat"));
    // Once the first is gone, the database is free.
    drop(first);
    let second = Server::start(&["--no-tls", "--data-dir", &data_dir]);
    ordinary_client_chats(&second, "the second server took over").await;
}

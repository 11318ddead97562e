//! Health, readiness, the graceful drain on SIGTERM, the fast stop on SIGINT, and the
//! default database cap.

use crate::common;

use std::time::{Duration, Instant};

use common::{client, wait_for_stat, ws_connect, Server, Ws};
use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

async fn probe(server: &Server, path: &str) -> (u16, Value) {
    let res = client().get(server.url(path)).send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(
        res.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "{path}"
    );
    (status, res.json().await.unwrap())
}

/// Reads `ws` until the server closes it; returns when (after `since`) and with what code.
async fn close_of(mut ws: Ws, since: Instant) -> (Duration, Option<CloseCode>) {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(frame))) => {
                return (since.elapsed(), frame.map(|f| f.code));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return (since.elapsed(), None),
        }
    }
}

/// The close window (`--drain-seconds`) of the tests that watch closes spread over it.
const WINDOW: f64 = 3.0;

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    for store in ["sqlite", "memory"] {
        let server = Server::start(&["--no-tls", "--store", store]);
        let (status, body) = probe(&server, "/healthz").await;
        assert_eq!(
            (status, &body["status"]),
            (200, &Value::from("ok")),
            "{body}"
        );
        let (status, body) = probe(&server, "/readyz").await;
        assert_eq!(
            (status, &body["status"]),
            (200, &Value::from("ready")),
            "{store}: {body}"
        );
    }
}

/// SIGTERM: readiness fails at once while the server goes on accepting for --drain-delay;
/// then the WebSockets are closed with 1001, at moments spread over --drain-seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_then_spreads_the_closes() {
    const DELAY: f64 = 1.5;
    const SOCKETS: usize = 20;
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--drain-delay",
        &DELAY.to_string(),
        "--drain-seconds",
        &WINDOW.to_string(),
    ]);
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        let mut ws = ws_connect(&server, "/ws", &["json"]).await;
        ws.next().await.unwrap().unwrap(); // the history
        sockets.push(ws);
    }
    // `rtchat_subscribers` counts clients only (not Socket.IO's own fan-out subscription).
    wait_for_stat(&server, "subscribers", SOCKETS as u64).await;

    server.signal("TERM");
    server.wait_for_log("SIGTERM: draining");
    let (status, body) = probe(&server, "/readyz").await;
    assert_eq!(
        (status, &body["status"]),
        (503, &Value::from("draining")),
        "{body}"
    );
    let (status, _) = probe(&server, "/healthz").await;
    assert_eq!(status, 200, "alive while draining");
    // Still accepting: a new connection, a post, a new WebSocket.
    let post = common::post(&server, "late", "still here").await;
    assert_eq!(post.status(), 200);
    let mut late = ws_connect(&server, "/ws", &["json"]).await;
    late.next().await.unwrap().unwrap();
    sockets.push(late);

    // Every socket, read from now on; times are measured from the end of the delay as the
    // server logs it.
    server.wait_for_log("shutting down: no new connections");
    let stopped = Instant::now();
    let closes: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(close_of(ws, stopped)))
        .collect();
    let mut at = Vec::new();
    for close in closes {
        let (when, code) = close.await.unwrap();
        assert_eq!(code, Some(CloseCode::Away), "closed with 1001 going away");
        at.push(when.as_secs_f64());
    }
    spread_over_the_window_then_exits(at, server).await;
}

/// SIGINT stays the fast path: open WebSockets, a stream and a parked poll are closed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_with_open_connections_exits_promptly() {
    let mut server = Server::start(&[
        "--store",
        "memory",
        // Ignored on SIGINT: shown to be.
        "--drain-delay",
        "30",
        "--drain-seconds",
        "30",
    ]);
    let mut sockets = Vec::new();
    for _ in 0..5 {
        let mut ws = ws_connect(&server, "/ws", &["json"]).await;
        ws.next().await.unwrap().unwrap();
        sockets.push(tokio::spawn(close_of(ws, Instant::now())));
    }
    let poll = client().get(server.url("/poll?since=0&timeout=60")).send();
    let poll = tokio::spawn(poll);
    wait_for_stat(&server, "parked_polls", 1).await;
    let start = Instant::now();
    server.signal("INT");
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("exits");
    let took = start.elapsed();
    assert!(status.success());
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    for ws in sockets {
        assert_eq!(ws.await.unwrap().1, Some(CloseCode::Away));
    }
    let answer = poll.await.unwrap().expect("the parked poll is answered");
    assert_eq!(answer.status(), 200);
}

/// A server with nothing open exits at once on SIGINT. Before, shutdown could wait for its
/// fixed 2 s drain; what is asked for is an exit as soon as nothing is open, so the bound is
/// generous (1.5 s) for a slow machine, not a measurement.
#[tokio::test]
async fn an_idle_server_exits_at_once_on_sigint() {
    let mut server = Server::start(&["--drain-delay", "30", "--drain-seconds", "30"]);
    let start = Instant::now();
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    let took = start.elapsed();
    assert!(took < Duration::from_millis(1500), "took {took:?}");
}

/// On SIGTERM an idle server still keeps --drain-delay (a balancer may be about to send
/// someone), but then does not wait out --drain-seconds with nothing open.
#[tokio::test]
async fn an_idle_server_exits_right_after_the_drain_delay_on_sigterm() {
    let mut server = Server::start(&["--drain-delay", "0.5", "--drain-seconds", "60"]);
    let start = Instant::now();
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "kept the delay: {took:?}"
    );
    assert!(took < Duration::from_millis(2000), "took {took:?}");
}

/// A second signal during the drain closes everything at once.
#[tokio::test]
async fn a_second_signal_cuts_the_drain_short() {
    let mut server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--drain-delay",
        "30",
        "--drain-seconds",
        "30",
    ]);
    let mut ws = ws_connect(&server, "/ws", &["json"]).await;
    ws.next().await.unwrap().unwrap();
    server.signal("TERM");
    server.wait_for_log("SIGTERM: draining");
    let start = Instant::now();
    server.signal("INT");
    let (_, code) = close_of(ws, start).await;
    assert_eq!(code, Some(CloseCode::Away));
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("exits");
    assert!(status.success());
    assert!(start.elapsed() < Duration::from_secs(3));
}

// `/readyz` answering 503 when the store fails is not tested here: nothing cheap from
// outside makes an open SQLite connection fail its read (it keeps its file descriptors and
// its cached pages when the file is overwritten or removed). The check itself is
// `Store::ping`, with the handler's 2 s timeout around it.

/// `--db-max-mb` defaults to 1024, and the start-up log says so and how to change it; `0`
/// turns the cap off, and the log says that too.
#[tokio::test]
async fn the_database_cap_is_on_by_default_and_logged() {
    let server = Server::start(&["--no-tls"]);
    let log = server.wait_for_log("the database is capped at 1024 MiB");
    assert!(log.contains("--db-max-mb"), "{log}");
    drop(server);
    let server = Server::start(&["--no-tls", "--db-max-mb", "0"]);
    server.wait_for_log("the database has no size cap (--db-max-mb 0)");
}

/// Reads a Socket.IO session (raw Engine.IO over WebSocket) until it ends; returns when (after
/// `since`) and the last packet before the end (`1`: an Engine.IO close, `41`: a Socket.IO
/// disconnect).
async fn sio_end_of(mut ws: Ws, since: Instant) -> (Duration, Option<String>) {
    use futures::SinkExt;
    let mut last = None;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                if text.as_str() == "2" {
                    let _ = ws.send(Message::text("3")).await;
                }
                last = Some(text.as_str().to_owned());
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return (since.elapsed(), last),
            Some(Ok(_)) => {}
        }
    }
}

/// SIGTERM closes Socket.IO sessions like the other connections: each at its own moment
/// within --drain-seconds, with an Engine.IO close (the official clients reconnect by
/// themselves), not a Socket.IO disconnect (after which they would not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_spreads_the_socketio_closes_too() {
    use futures::SinkExt;
    const SOCKETS: usize = 20;
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--drain-delay",
        "0",
        "--drain-seconds",
        &WINDOW.to_string(),
    ]);
    let mut sockets = Vec::new();
    for _ in 0..SOCKETS {
        let mut ws = ws_connect(&server, "/socket.io/?EIO=4&transport=websocket", &[]).await;
        let open = ws.next().await.unwrap().unwrap();
        assert!(open.to_text().unwrap().starts_with("0{"), "{open:?}");
        ws.send(Message::text("40")).await.unwrap();
        loop {
            let packet = ws.next().await.unwrap().unwrap();
            if packet.to_text().unwrap().starts_with("42[\"msg:get\"") {
                break; // connected and in the rooms
            }
        }
        sockets.push(ws);
    }
    server.signal("TERM");
    server.wait_for_log("shutting down: no new connections");
    let stopped = Instant::now();
    let ends: Vec<_> = sockets
        .into_iter()
        .map(|ws| tokio::spawn(sio_end_of(ws, stopped)))
        .collect();
    let mut at = Vec::new();
    for end in ends {
        let (when, last) = end.await.unwrap();
        assert_eq!(last.as_deref(), Some("1"), "an Engine.IO close packet last");
        at.push(when.as_secs_f64());
    }
    spread_over_the_window_then_exits(at, server).await;
}

/// The moments (seconds after the signal) connections were closed at: all within the drain
/// window and spread over it, not all in one instant (behaviour, not performance); then the
/// server exits cleanly, having nothing left open.
async fn spread_over_the_window_then_exits(mut at: Vec<f64>, mut server: Server) {
    at.sort_by(f64::total_cmp);
    let (first, last) = (at[0], at[at.len() - 1]);
    assert!(last <= WINDOW + 1.0, "all closed within the window: {at:?}");
    assert!(
        last - first > WINDOW / 3.0,
        "closes spread over more than a third of the {WINDOW} s window: {at:?}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(5));
        (status, server)
    });
    let (status, server) = status.await.unwrap();
    let status = status.expect("exits once every connection is closed");
    assert!(status.success(), "{status:?}: {}", server.stderr());
}

//! `GET /metrics` on `--metrics-listen`: parsed by Prometheus' own Python client (both the
//! Prometheus text format and OpenMetrics, see tests/pyclients/prom_metrics.py), its counters
//! moving with posts, refusals, deliveries and connections on every transport; off by
//! default, never on the public port, gone with the server; and `/stats` retired.

use crate::common;

use std::time::Duration;

use common::{client, metric, post, run_py, wait_for_metric, ws_connect, ws_json, Server};
use futures::SinkExt;
use rtchat_client::{Client, Event, Options, Transport};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Scrapes the server with tests/pyclients/prom_metrics.py: both formats, parsed.
fn scrape(server: &Server) -> Value {
    run_py("prom_metrics.py", &[server.metrics_url()])
}

/// The family `name` of a parsed scrape, checking its type.
fn family<'a>(scraped: &'a Value, name: &str, kind: &str) -> &'a Value {
    let family = &scraped["families"][name];
    assert_eq!(family["type"], kind, "{name}: {family}");
    assert!(
        !family["help"].as_str().unwrap_or("").is_empty(),
        "{name} has no HELP"
    );
    family
}

/// The value of the sample `sample{labels}` in a parsed family (exact label set).
fn value(family: &Value, sample: &str, labels: &[(&str, &str)]) -> f64 {
    let want: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    family["samples"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s[0] == sample && s[1].as_object() == Some(&want))
        .and_then(|s| s[2].as_f64())
        .unwrap_or_else(|| panic!("no {sample} {labels:?} in {family}"))
}

#[tokio::test]
async fn prometheus_parses_metrics_and_the_counters_move() {
    let server = Server::start(&["--no-tls"]);
    let mut ws = ws_connect(&server, "/ws", &["rtchat.v1"]).await;
    assert_eq!(ws_json(&mut ws).await["type"], "history");
    wait_for_metric(&server, "rtchat_clients", &[("transport", "ws")], 1.0).await;

    // A post over HTTP, one over the WebSocket, and a refused one (not JSON).
    assert_eq!(post(&server, "ann", "over http").await.status(), 200);
    let frame = json!({"type": "post", "user": "bob", "text": "over ws", "ref": 1});
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let refused = client()
        .post(server.url("/poll"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    // Both messages reach the WebSocket (and the ack).
    let mut msgs = 0;
    while msgs < 2 {
        if ws_json(&mut ws).await["type"] == "msg" {
            msgs += 1;
        }
    }

    // Counted once each write is done, which may be a moment after the client read it.
    wait_for_metric(
        &server,
        "rtchat_deliveries_total",
        &[("transport", "ws")],
        2.0,
    )
    .await;
    let scraped = scrape(&server);
    assert_eq!(
        scraped["content_type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        scraped["openmetrics_content_type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let names = |format: &str| -> Vec<String> {
        let mut names: Vec<String> = scraped[format]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    };
    assert_eq!(names("families"), names("openmetrics"), "the same families");

    let posts = family(&scraped, "rtchat_posts_accepted", "counter");
    let total = "rtchat_posts_accepted_total";
    assert_eq!(value(posts, total, &[("transport", "http")]), 1.0);
    assert_eq!(value(posts, total, &[("transport", "ws")]), 1.0);
    assert_eq!(value(posts, total, &[("transport", "socketio")]), 0.0);
    let refused = family(&scraped, "rtchat_posts_refused", "counter");
    let total = "rtchat_posts_refused_total";
    assert_eq!(value(refused, total, &[("reason", "invalid")]), 1.0);
    assert_eq!(value(refused, total, &[("reason", "rate_limited")]), 0.0);
    let deliveries = family(&scraped, "rtchat_deliveries", "counter");
    let ws_deliveries = value(
        deliveries,
        "rtchat_deliveries_total",
        &[("transport", "ws")],
    );
    assert_eq!(ws_deliveries, 2.0);

    let clients = family(&scraped, "rtchat_clients", "gauge");
    assert_eq!(
        value(clients, "rtchat_clients", &[("transport", "ws")]),
        1.0
    );
    assert_eq!(
        value(clients, "rtchat_clients", &[("transport", "sse")]),
        0.0
    );
    let subscribers = family(&scraped, "rtchat_subscribers", "gauge");
    assert_eq!(value(subscribers, "rtchat_subscribers", &[]), 1.0);
    let channels = family(&scraped, "rtchat_channels", "gauge");
    assert_eq!(value(channels, "rtchat_channels", &[]), 1.0);
    let rss = family(&scraped, "rtchat_process_resident_memory_bytes", "gauge");
    assert!(value(rss, "rtchat_process_resident_memory_bytes", &[]) > 1e6);
    for name in [
        "rtchat_lagged_subscribers",
        "rtchat_lagged_events",
        "rtchat_rate_limited",
        "rtchat_connections_refused",
    ] {
        family(&scraped, name, "counter");
    }
    family(&scraped, "rtchat_connections", "gauge");

    // The histograms observed something: the two commits (one post each, or both in one
    // batch), and the WebSocket's first delivery (the first on its thread is always sampled).
    let commits = family(&scraped, "rtchat_store_commit_seconds", "histogram");
    assert!(value(commits, "rtchat_store_commit_seconds_count", &[]) >= 1.0);
    let batches = family(&scraped, "rtchat_store_batch_size", "histogram");
    assert_eq!(value(batches, "rtchat_store_batch_size_sum", &[]), 2.0);
    let fanout = family(&scraped, "rtchat_fanout_latency_seconds", "histogram");
    let count = "rtchat_fanout_latency_seconds_count";
    assert!(
        value(fanout, count, &[("transport", "ws")]) >= 1.0,
        "{fanout}"
    );
    let inf = [("transport", "ws"), ("le", "+Inf")];
    let bucket = "rtchat_fanout_latency_seconds_bucket";
    assert_eq!(
        value(fanout, bucket, &inf),
        value(fanout, count, &[("transport", "ws")])
    );

    // The WebSocket closes: the gauges follow.
    ws.close(None).await.unwrap();
    wait_for_metric(&server, "rtchat_clients", &[("transport", "ws")], 0.0).await;
    wait_for_metric(&server, "rtchat_subscribers", &[], 0.0).await;
}

/// A client of `transport` connected to `server`, its history read.
async fn follow(server: &Server, transport: Transport) -> Client {
    let options = Options {
        long_poll_timeout: Duration::from_secs(20),
        request_timeout: Duration::from_secs(30),
        ..Options::default()
    };
    Client::connect(transport, &server.base, options)
        .await
        .unwrap_or_else(|e| panic!("{transport}: {e}"))
}

/// Waits (15 s at most) for the message `text` on `client`.
async fn receive(client: &mut Client, text: &str) {
    let transport = client.transport();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(15), client.next())
            .await
            .unwrap_or_else(|_| panic!("{transport}: nothing within 15 s"))
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        if let Event::Message(m) = event {
            if m.text == text {
                return;
            }
        }
    }
}

#[tokio::test]
async fn every_transport_counts_its_clients_posts_and_deliveries() {
    let server = Server::start(&["--no-tls"]);
    let following = [
        (Transport::LongPoll, "longpoll"),
        (Transport::Stream, "stream"),
        (Transport::Sse, "sse"),
        (Transport::Ws, "ws"),
        (Transport::WsJson, "ws-json"),
        (Transport::SocketIo, "socketio"),
    ];
    let mut clients = Vec::new();
    for (transport, label) in following {
        clients.push(follow(&server, transport).await);
        wait_for_metric(&server, "rtchat_clients", &[("transport", label)], 1.0).await;
    }
    // The long poll is parked before anything is posted.
    wait_for_metric(&server, "rtchat_clients", &[("transport", "longpoll")], 1.0).await;
    let socketio = clients.last().unwrap();
    socketio.post("ann", "over socket.io").await.unwrap();
    for client in &mut clients {
        receive(client, "over socket.io").await;
    }
    let accepted = &[("transport", "socketio")];
    assert_eq!(
        metric(&server, "rtchat_posts_accepted_total", accepted).await,
        1.0
    );
    for label in ["longpoll", "stream", "sse", "ws", "ws-json", "socketio"] {
        let delivered = metric(&server, "rtchat_deliveries_total", &[("transport", label)]).await;
        assert!(delivered >= 1.0, "{label}: {delivered}");
    }
    // Socket.IO's `msg:get` snapshots go to the socket too (the client asked for deltas only).
    let snapshots = &[("transport", "socketio-snapshots")];
    assert_eq!(
        metric(&server, "rtchat_deliveries_total", snapshots).await,
        0.0
    );
    drop(clients);
    for label in ["stream", "sse", "ws", "ws-json", "socketio"] {
        wait_for_metric(&server, "rtchat_clients", &[("transport", label)], 0.0).await;
    }
}

#[tokio::test]
async fn refusals_are_counted_by_reason_and_scope() {
    let server = Server::start(&["--no-tls", "--post-rate", "1", "--post-burst", "1"]);
    let mut ws = ws_connect(&server, "/ws", &["rtchat.v1"]).await;
    ws_json(&mut ws).await;
    for i in 0..2 {
        let frame = json!({"type": "post", "user": "bob", "text": format!("t{i}"), "ref": i});
        ws.send(Message::text(frame.to_string())).await.unwrap();
    }
    let refused = loop {
        let frame = ws_json(&mut ws).await;
        if frame["type"] == "error" {
            break frame;
        }
    };
    assert!(refused["retry_after_ms"].as_u64().is_some(), "{refused}");
    let too_large = client()
        .post(server.url("/poll"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"user":"a","text":"{}"}}"#, "x".repeat(70_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(too_large.status(), 413);
    let foreign = client()
        .post(server.url("/poll"))
        .header("origin", "http://evil.example")
        .json(&json!({"user": "a", "text": "b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);

    let connection = &[("scope", "connection")];
    assert_eq!(
        metric(&server, "rtchat_rate_limited_total", connection).await,
        1.0
    );
    for (reason, want) in [("rate_limited", 1.0), ("too_large", 1.0), ("origin", 1.0)] {
        let labels = &[("reason", reason)];
        assert_eq!(
            metric(&server, "rtchat_posts_refused_total", labels).await,
            want,
            "{reason}"
        );
    }
}

#[tokio::test]
async fn connection_cap_refusals_are_counted_and_scrapes_do_not_count_against_the_caps() {
    let server = Server::start(&["--no-tls", "--max-connections-per-ip", "1"]);
    // One connection holds the address's only place (it says nothing yet).
    let _held = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let res = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    // The scrapes themselves go to the metrics listener, which has no cap.
    let per_ip = &[("reason", "max_connections_per_ip")];
    for _ in 0..3 {
        assert_eq!(
            metric(&server, "rtchat_connections_refused_total", per_ip).await,
            1.0
        );
    }
}

#[tokio::test]
async fn metrics_are_never_served_on_the_public_port() {
    let server = Server::start(&["--no-tls"]);
    let public = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
    // `/stats` is retired: the normal 404.
    let stats = client().get(server.url("/stats")).send().await.unwrap();
    assert_eq!(stats.status(), 404);
    // The metrics listener serves nothing else.
    let other = server.metrics_url().replace("/metrics", "/poll");
    let res = client().get(&other).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("/metrics"),
        "{body}"
    );
    let post = client().post(server.metrics_url()).send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(post.headers()["allow"], "GET, HEAD");
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let server = Server::start_without_metrics(&["--no-tls"]);
    assert!(server.metrics_url.is_none());
    let res = client().get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // Every ready line is out before the server answers; give the reader a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!server.stdout().contains("metrics"), "{}", server.stdout());
}

#[tokio::test]
async fn the_metrics_listener_stops_with_the_server() {
    let mut server = Server::start(&["--no-tls"]);
    let addr = server
        .metrics_url()
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .to_owned();
    // A scraper's kept-alive connection does not hold the server up either.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let status = server.terminate(Duration::from_secs(5)).expect("exits");
    assert!(status.success());
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

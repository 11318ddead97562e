//! `--redis-wait-replicas N`: a post is acknowledged only once N Redis replicas have it; one
//! that does not reach them in time is refused (503), and its retry with the same idempotency
//! key lands once.

use std::time::{Duration, Instant};

use crate::cluster::{history, http, post_msg, Redis};
use crate::common::Server;

/// `INFO replication` of `redis` says `field:value`.
fn replication_says(redis: &Redis, field: &str, value: &str) -> bool {
    redis
        .cmd(&["INFO", "replication"])
        .text()
        .lines()
        .any(|l| l.trim() == format!("{field}:{value}"))
}

/// Makes `replica` follow `primary` and waits until the link is up.
fn follow(replica: &Redis, primary: &Redis) {
    let port = primary.port.to_string();
    replica.cmd(&["REPLICAOF", "127.0.0.1", &port]);
    let start = Instant::now();
    while !replication_says(replica, "master_link_status", "up") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the replica never synced"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn a_post_is_acknowledged_only_once_the_replicas_have_it() {
    let primary = Redis::start();
    let mut replica = Redis::start_volatile();
    follow(&replica, &primary);
    let node = Server::start(&[
        "--no-tls",
        "--store",
        &primary.url(),
        "--redis-wait-replicas",
        "1",
        "--redis-wait-timeout",
        "0.5",
    ]);
    let http = http();
    let (status, body) = post_msg(&http, &node.base, "/msgs", "ann", "replicated", Some("k1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], 1);

    // The replica is gone: posts are refused, with the reason, after the timeout.
    replica.kill();
    let start = Instant::now();
    while !replication_says(&primary, "connected_slaves", "0") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the primary never noticed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = post_msg(&http, &node.base, "/msgs", "ann", "alone", Some("k2"))
        .await
        .unwrap();
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("0 of the 1 Redis replicas"), "{error}");

    // Back: the retry with the same key is acknowledged, and the post is there once.
    replica.restart();
    follow(&replica, &primary);
    let (status, body) = post_msg(&http, &node.base, "/msgs", "ann", "alone", Some("k2"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["id"], 2,
        "the refused post was stored; its retry finds it"
    );
    let (all, _) = history(&node.base).await;
    assert_eq!(all, [(1, "replicated".to_owned()), (2, "alone".to_owned())]);
}

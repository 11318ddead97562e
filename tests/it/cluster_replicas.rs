//! `--redis-wait-replicas N`: a post is acknowledged only once N Redis replicas have it; one
//! that does not reach them in time is refused (503), and its retry with the same idempotency
//! key lands once. The directory's changes (a ban here) wait for the replicas the same way.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::auth::{admin, call, secret_file};
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

/// Makes `replica` follow `primary` and waits until the primary has heard it acknowledge
/// everything so far: only then does `WAIT` count it (right after a full sync the primary
/// holds the replica's command stream until its first acknowledgement, up to a second later).
fn follow(replica: &Redis, primary: &Redis) {
    let port = primary.port.to_string();
    replica.cmd(&["REPLICAOF", "127.0.0.1", &port]);
    let caught_up = || {
        let info = primary.cmd(&["INFO", "replication"]).text();
        let field = |prefix: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
        };
        let (Some(replica), Some(offset)) = (field("slave0:"), field("master_repl_offset:")) else {
            return false;
        };
        replica.contains("state=online") && replica.contains(&format!("offset={offset},"))
    };
    until("the replica syncs", || {
        replication_says(replica, "master_link_status", "up") && caught_up()
    });
}

/// Polls `done` (Redis's own view of its replication; it tells no one) until it holds,
/// failing after 20 s.
fn until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what}: not after 20 s"
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
    alone(&primary);
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

/// Waits until `primary` sees no replica.
fn alone(primary: &Redis) {
    until("the primary notices its replica is gone", || {
        replication_says(primary, "connected_slaves", "0")
    });
}

#[tokio::test]
async fn a_directory_change_is_confirmed_only_once_the_replicas_have_it() {
    let primary = Redis::start();
    let mut replica = Redis::start_volatile();
    follow(&replica, &primary);
    let secret = secret_file();
    let node = Server::start(&[
        "--no-tls",
        "--store",
        &primary.url(),
        "--auth",
        "token",
        "--jwt-secret-file",
        secret.to_str().unwrap(),
        "--redis-wait-replicas",
        "1",
        "--redis-wait-timeout",
        "2",
    ]);
    let root = admin();
    let ban = |uid: &str| format!("/admin/users/{uid}/ban");
    let reason = json!({"reason": "spam", "for": "1h"});
    let (status, body) = call(&node, "POST", &ban("u-bob"), &root, reason.clone()).await;
    assert_eq!(status, 200, "{body}");
    // Confirmed: the replica has it already.
    let on_replica = replica.cmd(&["HEXISTS", "rtchat:bans", "u-bob"]);
    assert!(
        matches!(on_replica, crate::cluster::Resp::Int(1)),
        "the replica holds the ban once it is confirmed: {on_replica:?}"
    );

    // Without the replica: refused with the reason.
    replica.kill();
    alone(&primary);
    let (status, body) = call(&node, "POST", &ban("u-eve"), &root, reason.clone()).await;
    assert_eq!(status, 503, "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("0 of the 1 Redis replicas") && error.contains("not confirmed"),
        "{body}"
    );
    // Back: the retry is confirmed, and the ban is on the replica and in force.
    replica.restart();
    follow(&replica, &primary);
    let (status, body) = call(&node, "POST", &ban("u-eve"), &root, reason).await;
    assert_eq!(status, 200, "{body}");
    let on_replica = replica.cmd(&["HEXISTS", "rtchat:bans", "u-eve"]);
    assert!(
        matches!(on_replica, crate::cluster::Resp::Int(1)),
        "{on_replica:?}"
    );
    let (status, bans) = call(&node, "GET", "/admin/bans", &root, Value::Null).await;
    assert_eq!(status, 200, "{bans}");
    let banned: Vec<&str> = bans["sanctions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["uid"].as_str().unwrap())
        .collect();
    assert_eq!(banned, ["u-bob", "u-eve"], "{bans}");
}

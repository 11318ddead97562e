//! A cluster's nodes act as one on who is who: a ban, kick, revocation, mute or deletion made
//! through one node reaches the user's connections on every other node within 1 s; presence
//! lists everyone on every node and forgets a dead node's users; Socket.IO's HTTP long-polling
//! works through a round-robin balancer with no sticky sessions (the official client).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::auth::{admin, call, secret_file, skip_presence, token, until_closed, v1_connect};
use crate::cluster::Cluster;
use crate::moderation::{all_end, everywhere, post};

/// Three nodes with `--auth token`, sharing one `--jwt-secret-file`.
fn cluster() -> Cluster {
    let file = secret_file();
    Cluster::start(
        3,
        true,
        &[
            "--auth",
            "token",
            "--jwt-secret-file",
            file.to_str().unwrap(),
        ],
    )
}

#[tokio::test]
async fn a_ban_or_kick_on_one_node_ends_the_users_connections_on_the_others_within_1_s() {
    let c = cluster();
    let (bob, cy, root) = (token("u-bob", "Bob"), token("u-cy", "Cy"), admin());
    let on_1 = everywhere(&c.nodes[1], &bob).await;
    let on_2 = everywhere(&c.nodes[2], &bob).await;
    let (status, done) = call(
        &c.nodes[0],
        "POST",
        "/admin/users/u-bob/ban",
        &root,
        json!({"reason": "spam", "for": "1h"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    tokio::join!(all_end(on_1, "banned", 4003), all_end(on_2, "banned", 4003));
    // Refused on every node, not only the one that banned.
    for node in &c.nodes {
        let (status, body) = post(node, &bob, "hall", "still me").await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("banned")),
            "{body}"
        );
    }
    // Lifted on one node: back everywhere (each node's mirror re-read within 1 s).
    let (status, _) = call(
        &c.nodes[2],
        "DELETE",
        "/admin/users/u-bob/ban",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let lifted = Instant::now();
    for node in &c.nodes {
        // Not in `lobby`, where the kick below parks a long poll from the start.
        while post(node, &bob, "hall", "back").await.0 != 200 {
            assert!(lifted.elapsed() < Duration::from_secs(1), "{}", c.logs());
            tokio::task::yield_now().await;
        }
    }

    let on_0 = everywhere(&c.nodes[0], &cy).await;
    let on_2 = everywhere(&c.nodes[2], &cy).await;
    let (status, _) = call(
        &c.nodes[1],
        "POST",
        "/admin/users/u-cy/kick",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    tokio::join!(all_end(on_0, "kicked", 4004), all_end(on_2, "kicked", 4004));
    assert_eq!(post(&c.nodes[0], &cy, "lobby", "back again").await.0, 200);
}

#[tokio::test]
async fn a_revocation_mute_or_deletion_on_one_node_holds_on_the_others_within_1_s() {
    let c = cluster();
    let (ann, root) = (token("u-ann", "Ann"), admin());
    // Revoked through node 0: Ann's socket on node 2 closes, her token is refused on node 1.
    let mut ws = v1_connect(&c.nodes[2], &format!("/ws?token={ann}")).await;
    assert_eq!(skip_presence(&mut ws).await["type"], "history");
    let (status, _) = call(
        &c.nodes[0],
        "POST",
        "/admin/tokens/j-u-ann/revoke",
        &root,
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    let (code, reason, _) = tokio::time::timeout(Duration::from_secs(1), until_closed(&mut ws))
        .await
        .expect("closed within 1 s");
    assert_eq!((code, reason.as_str()), (4005, "token revoked"));
    assert_eq!(post(&c.nodes[1], &ann, "general", "x").await.0, 401);

    // Muted through node 1: Bob's posts through node 2 are refused within 1 s.
    let bob = token("u-bob", "Bob");
    assert_eq!(post(&c.nodes[2], &bob, "quiet", "before").await.0, 200);
    let (status, _) = call(
        &c.nodes[1],
        "POST",
        "/admin/rooms/quiet/mutes/u-bob",
        &root,
        json!({"reason": "calm down"}),
    )
    .await;
    assert_eq!(status, 200);
    let muted = Instant::now();
    loop {
        let (status, body) = post(&c.nodes[2], &bob, "quiet", "during").await;
        if status == 403 {
            assert_eq!(body["code"], "muted", "{body}");
            break;
        }
        assert!(
            muted.elapsed() < Duration::from_secs(1),
            "not muted on node 2 within 1 s"
        );
    }

    // Deleted through node 0: a reader on node 1 is told, and no node serves it again.
    let carol = token("u-carol", "Carol");
    let mut reader = v1_connect(&c.nodes[1], &format!("/ws?token={carol}")).await;
    assert_eq!(skip_presence(&mut reader).await["type"], "history");
    let (status, sent) = post(&c.nodes[2], &carol, "general", "regret").await;
    assert_eq!(status, 200, "{sent}");
    let id = sent["id"].as_u64().unwrap();
    let heard = skip_presence(&mut reader).await;
    assert_eq!(heard["msg"]["id"], id, "{heard}");
    let path = format!("/rooms/general/msgs/{id}");
    let (status, _) = call(&c.nodes[0], "DELETE", &path, &root, Value::Null).await;
    assert_eq!(status, 200);
    let told = tokio::time::timeout(Duration::from_secs(1), skip_presence(&mut reader))
        .await
        .expect("told within 1 s");
    assert_eq!(
        told,
        json!({"type": "deleted", "room": "general", "id": id})
    );
    for node in &c.nodes {
        let (_, page) = call(node, "GET", "/rooms/general/poll", &carol, Value::Null).await;
        let ids: Vec<u64> = page["msg"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_u64().unwrap())
            .collect();
        assert!(!ids.contains(&id), "{page}");
    }
}

/// The users `GET /rooms/general/presence` lists on `node`.
async fn present(node: &crate::common::Server, token: &str) -> Vec<String> {
    let (status, body) = call(node, "GET", "/rooms/general/presence", token, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let mut users: Vec<String> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["uid"].as_str().unwrap().to_owned())
        .collect();
    users.sort();
    users
}

/// The next presence frame on `ws` (skipping anything else), failing at `deadline`.
async fn presence_frame(ws: &mut crate::common::Ws, deadline: Instant, what: &str) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, ws.next())
            .await
            .unwrap_or_else(|_| panic!("in time: {what}"))
            .expect("the socket stays open")
            .expect("a valid frame");
        if let Message::Text(t) = frame {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "presence" {
                return v;
            }
        }
    }
}

/// Who `ws` has been told is present, after reading presence frames until `want` is (every
/// frame checked: nobody joins twice or leaves without having joined); the frames read.
async fn told_until(
    ws: &mut crate::common::Ws,
    told: &mut Vec<String>,
    want: &[&str],
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut frames = Vec::new();
    while told.iter().map(String::as_str).collect::<Vec<_>>() != want {
        let frame = presence_frame(ws, deadline, &format!("{want:?} present")).await;
        for name in frame["joined"].as_array().unwrap() {
            let name = name.as_str().unwrap().to_owned();
            assert!(!told.contains(&name), "{name} joined twice: {frame}");
            told.push(name);
        }
        for name in frame["left"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            let at = told.iter().position(|n| n == name);
            told.remove(at.unwrap_or_else(|| panic!("{name} left unseen: {frame}")));
        }
        told.sort();
        frames.push(frame);
    }
    frames
}

#[tokio::test]
async fn presence_is_one_room_across_nodes_and_a_dead_nodes_users_leave_within_the_ttl() {
    let mut c = cluster();
    let token_of = |name: &str| token(&format!("u-{}", name.to_lowercase()), name);
    // Bob watches from node 2.
    let mut bob = v1_connect(&c.nodes[2], &format!("/ws?token={}", token_of("Bob"))).await;
    assert_eq!(skip_presence(&mut bob).await["type"], "history");
    let mut told = Vec::new();
    told_until(&mut bob, &mut told, &["Bob"], Duration::from_secs(5)).await;

    // Ann has a tab on node 0 and one on node 1; Carol is on node 1: Ann joined once.
    let ann = token_of("Ann");
    let mut ann_0 = v1_connect(&c.nodes[0], &format!("/ws?token={ann}")).await;
    assert_eq!(skip_presence(&mut ann_0).await["type"], "history");
    let mut ann_1 = v1_connect(&c.nodes[1], &format!("/ws?token={ann}")).await;
    assert_eq!(skip_presence(&mut ann_1).await["type"], "history");
    let mut carol = v1_connect(&c.nodes[1], &format!("/ws?token={}", token_of("Carol"))).await;
    assert_eq!(skip_presence(&mut carol).await["type"], "history");
    let wait = Duration::from_secs(5);
    told_until(&mut bob, &mut told, &["Ann", "Bob", "Carol"], wait).await;

    // Ann closes her tab on node 0 (node 0 has let it go), then Dave comes to node 0: Ann
    // never left, since she is still on node 1.
    drop(ann_0);
    crate::common::wait_for_stat(&c.nodes[0], "subscribers", 0).await;
    let mut dave = v1_connect(&c.nodes[0], &format!("/ws?token={}", token_of("Dave"))).await;
    assert_eq!(skip_presence(&mut dave).await["type"], "history");
    let frames = told_until(&mut bob, &mut told, &["Ann", "Bob", "Carol", "Dave"], wait).await;
    assert!(
        frames.iter().all(|f| f["left"] == json!([])),
        "nobody left: {frames:?}"
    );
    let everyone = ["u-ann", "u-bob", "u-carol", "u-dave"];
    assert_eq!(present(&c.nodes[2], &ann).await, everyone);
    assert_eq!(present(&c.nodes[0], &ann).await, everyone);

    // Node 1 dies without a word: Ann and Carol leave, told as leaving, within the presence
    // TTL and a check (30 s); every list forgets them.
    c.nodes[1].kill();
    let frames = told_until(
        &mut bob,
        &mut told,
        &["Bob", "Dave"],
        Duration::from_secs(30),
    )
    .await;
    assert!(
        frames.iter().all(|f| f["joined"] == json!([])),
        "nobody joined: {frames:?}"
    );
    assert_eq!(present(&c.nodes[2], &ann).await, ["u-bob", "u-dave"]);
    assert_eq!(present(&c.nodes[0], &ann).await, ["u-bob", "u-dave"]);
    drop((ann_1, carol, dave));
}

#[tokio::test]
async fn socketio_long_polling_needs_no_sticky_sessions() {
    let c = Cluster::start(3, true, &[]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio/cluster_client.mjs");
    for transports in ["polling", "polling,websocket", "websocket"] {
        let out = std::process::Command::new("node")
            .arg(&script)
            .arg(c.lb())
            .arg(transports)
            .arg("20")
            .output()
            .expect("node must be installed (scripts/setup)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{transports}: {text}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        let report: Value = serde_json::from_str(text.trim()).unwrap();
        let want: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        assert_eq!(report["got"], json!(want), "{transports}: {report}");
        assert_eq!(report["errors"], json!([]), "{transports}: {report}");
    }
}

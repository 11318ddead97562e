//! Epochs (a resume from another history is a reset, never a silent mix-up of ids) and
//! idempotency keys (the same post twice is one message), against the real server.

use crate::common;

use common::{client, get_json, ws_connect, ws_json, Server};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

async fn post_json(server: &Server, path: &str, body: Value) -> (u16, Value) {
    let res = client()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn a_memory_restart_is_a_new_epoch_and_old_positions_get_a_reset() {
    let data = common::temp_dir("epoch-mem");
    let data = data.to_str().unwrap();
    let first = Server::start(&["--no-tls", "--store", "memory", "--data-dir", data]);
    for i in 0..3 {
        post_json(
            &first,
            "/poll",
            json!({"user": "ann", "text": format!("old {i}")}),
        )
        .await;
    }
    let old = get_json(&first, "/poll").await;
    let old_epoch = old["epoch"].as_str().unwrap().to_owned();
    drop(first);
    let second = Server::start(&["--no-tls", "--store", "memory", "--data-dir", data]);
    for i in 0..5 {
        post_json(
            &second,
            "/poll",
            json!({"user": "bob", "text": format!("new {i}")}),
        )
        .await;
    }
    let now = get_json(&second, "/poll").await;
    assert_ne!(
        now["epoch"], old["epoch"],
        "each memory start is a new epoch"
    );
    // Id 2 exists in both lives: with the old epoch it is a reset, not "messages 3-5".
    let answer = get_json(
        &second,
        &format!("/poll?since=2&epoch={old_epoch}&timeout=0"),
    )
    .await;
    assert_eq!(answer["reset"], true, "{answer}");
    assert_eq!(answer["msg"].as_array().unwrap().len(), 5);
    assert_eq!(answer["epoch"], now["epoch"]);
    // The same on the /msgs stream.
    let mut msgs = client()
        .get(second.url(&format!("/msgs?since=2&epoch={old_epoch}")))
        .send()
        .await
        .unwrap();
    let line = String::from_utf8(msgs.chunk().await.unwrap().unwrap().to_vec()).unwrap();
    let line: Value = serde_json::from_str(line.trim()).unwrap();
    assert_eq!(line["reset"], true, "{line}");
    // The current epoch resumes.
    let epoch = now["epoch"].as_str().unwrap();
    let answer = get_json(&second, &format!("/poll?since=2&epoch={epoch}&timeout=0")).await;
    assert_eq!(answer["reset"], Value::Null);
    assert_eq!(answer["msg"][0]["id"], 5);
}

#[tokio::test]
async fn a_sqlite_restart_keeps_the_epoch_and_positions_resume() {
    let data = common::temp_dir("epoch-sqlite");
    let data = data.to_str().unwrap();
    let first = Server::start(&["--no-tls", "--data-dir", data]);
    for i in 0..3 {
        post_json(
            &first,
            "/poll",
            json!({"user": "ann", "text": format!("m{i}")}),
        )
        .await;
    }
    let epoch = get_json(&first, "/poll").await["epoch"].clone();
    drop(first);
    let second = Server::start(&["--no-tls", "--data-dir", data]);
    assert_eq!(get_json(&second, "/poll").await["epoch"], epoch);
    let e = epoch.as_str().unwrap();
    let answer = get_json(&second, &format!("/poll?since=1&epoch={e}&timeout=0")).await;
    assert_eq!(answer["reset"], Value::Null, "{answer}");
    assert_eq!(answer["msg"][0]["text"], "m2");
}

#[tokio::test]
async fn the_same_key_twice_is_one_message_on_every_transport() {
    let server = Server::start(&["--no-tls", "--store", "memory"]);
    let post = json!({"user": "ann", "text": "once", "key": "k-1"});
    let (status, first) = post_json(&server, "/poll", post.clone()).await;
    assert_eq!(status, 200);
    let (status, again) = post_json(&server, "/msgs", post.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(again["id"], first["id"], "the first post's id");
    // rtchat.v1: the same key acknowledged with the same id.
    let mut ws = ws_connect(&server, "/ws", &["rtchat.v1"]).await;
    ws_json(&mut ws).await; // history
    let mut frame = post.clone();
    frame["type"] = json!("post");
    frame["ref"] = json!("r");
    ws.send(Message::text(frame.to_string())).await.unwrap();
    let ack = ws_json(&mut ws).await;
    assert_eq!(
        ack,
        json!({"type": "ack", "ref": "r", "room": "general", "id": first["id"]})
    );
    // Another text under the key: refused.
    let (status, refused) = post_json(
        &server,
        "/poll",
        json!({"user": "ann", "text": "changed", "key": "k-1"}),
    )
    .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("already used"));
    // Bad keys are refused plainly.
    let (status, _) = post_json(
        &server,
        "/poll",
        json!({"user": "ann", "text": "x", "key": "k".repeat(65)}),
    )
    .await;
    assert_eq!(status, 422);
    // One message in all.
    let history = get_json(&server, "/poll").await;
    assert_eq!(history["msg"].as_array().unwrap().len(), 1, "{history}");
}

#[tokio::test]
async fn a_retry_after_kill_9_that_followed_the_commit_gets_the_first_id() {
    let data = common::temp_dir("keys-kill");
    let data = data.to_str().unwrap();
    let mut first = Server::start(&["--no-tls", "--data-dir", data]);
    let post = json!({"user": "ann", "text": "survives", "key": "retry-me"});
    let (status, acked) = post_json(&first, "/poll", post.clone()).await;
    assert_eq!(status, 200);
    first.kill();
    let second = Server::start(&["--no-tls", "--data-dir", data]);
    let (status, retried) = post_json(&second, "/poll", post).await;
    assert_eq!(status, 200);
    assert_eq!(retried["id"], acked["id"]);
    assert_eq!(
        get_json(&second, "/poll").await["msg"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

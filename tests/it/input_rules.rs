//! The input rules every transport applies to a post: no NUL or other control characters
//! (newline and tab are fine in text), no bidirectional overrides or isolates in names, and
//! text of only invisible characters counts as blank. Each refusal is precise, and nothing of
//! a refused post is stored.

use crate::common;

use common::{client, get_json, ws_connect, ws_json, Server};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Bad posts and the reason each must be refused with.
fn bad_posts() -> Vec<(Value, &'static str)> {
    vec![
        (
            json!({"user": "ann", "text": "nul\u{0}byte"}),
            "\"text\" contains the control character U+0000 at character 4; only newline and tab are allowed",
        ),
        (
            json!({"user": "ann", "text": "escape \u{1b}[31m red"}),
            "\"text\" contains the control character U+001B at character 8",
        ),
        (
            json!({"user": "ann\nadmin", "text": "hi"}),
            "\"user\" contains the control character U+000A at character 4; none are allowed in a name",
        ),
        (
            json!({"user": "ann\u{202E}nimda", "text": "hi"}),
            "\"user\" contains the bidirectional control U+202E at character 4",
        ),
        (
            json!({"user": "\u{2067}bob", "text": "hi"}),
            "\"user\" contains the bidirectional control U+2067 at character 1",
        ),
        (
            json!({"user": "ann", "text": "\u{200B}\u{200D} \u{FEFF}"}),
            "\"text\" has only invisible characters",
        ),
        (
            json!({"user": "\u{200B}", "text": "hi"}),
            "\"user\" has only invisible characters",
        ),
    ]
}

/// Posts that look odd but are fine.
fn good_posts() -> Vec<Value> {
    vec![
        json!({"user": "ann", "text": "two\nlines\tand a tab"}),
        json!({"user": "ann", "text": "quoting \u{202E}reversed\u{202C} text"}),
        json!({"user": "سارة", "text": "👩\u{200D}💻"}),
    ]
}

async fn last_id(server: &Server) -> u64 {
    get_json(server, "/poll").await["last"].as_u64().unwrap()
}

#[tokio::test]
async fn http_posts_are_refused_with_422_and_a_plain_reason() {
    let server = Server::start(&["--no-tls", "--store", "memory"]);
    for path in ["/poll", "/msgs"] {
        for (post, reason) in bad_posts() {
            let res = client()
                .post(server.url(path))
                .json(&post)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 422, "POST {path} {post}");
            let body: Value = res.json().await.unwrap();
            let error = body["error"].as_str().unwrap();
            assert!(error.starts_with(reason), "POST {path} {post}: {error}");
        }
        assert_eq!(last_id(&server).await, 0, "nothing stored");
    }
    for post in good_posts() {
        let res = client()
            .post(server.url("/poll"))
            .json(&post)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{post}");
    }
    let history = get_json(&server, "/poll").await;
    assert_eq!(history["msg"][2]["text"], "two\nlines\tand a tab");
    assert_eq!(history["msg"][0]["user"], "سارة");
}

#[tokio::test]
async fn websocket_posts_are_refused_on_both_subprotocols() {
    let server = Server::start(&["--no-tls", "--store", "memory"]);
    let mut course = ws_connect(&server, "/ws", &["json"]).await;
    ws_json(&mut course).await; // the history
    let mut v1 = ws_connect(&server, "/ws", &["rtchat.v1"]).await;
    ws_json(&mut v1).await; // the history
    for (i, (post, reason)) in bad_posts().into_iter().enumerate() {
        course.send(Message::text(post.to_string())).await.unwrap();
        let answer = ws_json(&mut course).await;
        let error = answer["error"].as_str().unwrap();
        assert!(error.starts_with(reason), "json {post}: {answer}");

        let mut typed = post.clone();
        typed["type"] = json!("post");
        typed["ref"] = json!(i);
        v1.send(Message::text(typed.to_string())).await.unwrap();
        let answer = ws_json(&mut v1).await;
        assert_eq!(answer["type"], "error", "{answer}");
        assert_eq!(answer["ref"], i);
        assert!(
            answer["error"].as_str().unwrap().starts_with(reason),
            "rtchat.v1 {post}: {answer}"
        );
    }
    assert_eq!(last_id(&server).await, 0, "nothing stored");
    // Both connections stay usable.
    course
        .send(Message::text(good_posts()[0].to_string()))
        .await
        .unwrap();
    assert_eq!(
        ws_json(&mut course).await["msg"][0]["text"],
        "two\nlines\tand a tab"
    );
}

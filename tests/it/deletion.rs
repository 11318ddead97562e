//! Deleting a message (`DELETE /rooms/{room}/msgs/{id}`, `--auth token`): it vanishes from
//! every history and resume without a gap being reported, clients that hold it are told on
//! every transport (snapshot clients get the history without it), and only an admin, the
//! room's owner or (within `--edit-window`) its author may delete it. (Socket.IO:
//! tests/socketio/auth.test.mjs.)

use serde_json::{json, Value};

use crate::auth::{admin, call, server, skip_presence, token, v1_connect};
use crate::common::{client, ids, ws_json, Server, Sse};

async fn post(server: &Server, token: &str, room: &str, text: &str) -> u64 {
    let path = format!("/rooms/{room}/msgs");
    let (status, body) = call(server, "POST", &path, token, json!({ "text": text })).await;
    assert_eq!(status, 200, "{body}");
    body["id"].as_u64().unwrap()
}

/// The next line of a `/msgs` stream, as JSON.
async fn next_line(res: &mut reqwest::Response, buffer: &mut String) -> Value {
    loop {
        if let Some(i) = buffer.find('\n') {
            let line: String = buffer.drain(..=i).collect();
            return serde_json::from_str(line.trim()).unwrap();
        }
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), res.chunk())
            .await
            .expect("a line within 20 s")
            .unwrap()
            .expect("the stream goes on");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn a_deleted_message_vanishes_everywhere_and_every_transport_is_told() {
    let server = server(&[]);
    let http = client();
    let (ann, bob) = (token("u-ann", "Ann"), token("u-bob", "Bob"));
    for text in ["one", "two", "three"] {
        post(&server, &ann, "general", text).await;
    }
    // Bob holds the history on every transport.
    let mut v1 = v1_connect(&server, &format!("/ws?token={bob}")).await;
    assert_eq!(skip_presence(&mut v1).await["type"], "history");
    let mut course =
        crate::common::ws_connect(&server, &format!("/ws?token={bob}"), &["json"]).await;
    assert_eq!(ids(&ws_json(&mut course).await), [3, 2, 1]);
    let mut sse = Sse::open(http.get(server.url("/events")).bearer_auth(&bob)).await;
    for _ in 0..3 {
        sse.message().await;
    }
    let mut msgs = http
        .get(server.url("/msgs"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let mut buffer = String::new();
    assert_eq!(ids(&next_line(&mut msgs, &mut buffer).await), [3, 2, 1]);

    // Ann deletes her own message, within the edit window.
    let (status, answer) = call(
        &server,
        "DELETE",
        "/rooms/general/msgs/2",
        &ann,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["room"].as_str(), answer["id"].as_u64()),
        (Some("general"), Some(2))
    );

    let told = skip_presence(&mut v1).await;
    assert_eq!(told, json!({"type": "deleted", "room": "general", "id": 2}));
    assert_eq!(
        ids(&ws_json(&mut course).await),
        [3, 1],
        "the course's client gets the history without it"
    );
    assert_eq!(
        sse.named("deleted").await,
        json!({"room": "general", "id": 2})
    );
    assert_eq!(ids(&next_line(&mut msgs, &mut buffer).await), [3, 1]);

    // Gone from every history and resume, without a gap reported.
    let (_, page) = call(&server, "GET", "/poll", &bob, Value::Null).await;
    assert_eq!(ids(&page), [3, 1]);
    let (_, page) = call(&server, "GET", "/poll?since=1&timeout=0", &bob, Value::Null).await;
    assert_eq!(ids(&page), [3]);
    assert!(page.get("truncated").is_none(), "{page}");
    let mut resumed = v1_connect(&server, &format!("/ws?token={bob}&since=1")).await;
    let mut seen = Vec::new();
    loop {
        let frame = skip_presence(&mut resumed).await;
        assert_ne!(frame["type"], "truncated", "{frame}");
        if frame["type"] == "msg" {
            seen.push(frame["msg"]["id"].as_u64().unwrap());
        }
        if frame["type"] == "resumed" {
            break;
        }
    }
    assert_eq!(seen, [3]);
    // A message that does not exist (any more) is a 404.
    let (status, body) = call(
        &server,
        "DELETE",
        "/rooms/general/msgs/2",
        &ann,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("no_such_message"))
    );
    let (status, _) = call(
        &server,
        "DELETE",
        "/rooms/general/msgs/99",
        &ann,
        Value::Null,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn who_may_delete_what() {
    let server = server(&[]);
    let (ann, bob, root) = (token("u-ann", "Ann"), token("u-bob", "Bob"), admin());
    let annes = post(&server, &ann, "general", "Ann's").await;
    // Someone else's message: refused.
    let (status, body) = call(
        &server,
        "DELETE",
        &format!("/rooms/general/msgs/{annes}"),
        &bob,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_allowed")),
        "{body}"
    );
    // An admin: any message, recorded in the audit log.
    let (status, body) = call(
        &server,
        "DELETE",
        &format!("/rooms/general/msgs/{annes}"),
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["audit"].as_u64().is_some(), "{body}");
    let (_, log) = call(&server, "GET", "/admin/audit", &root, Value::Null).await;
    assert_eq!(log["entries"][0]["action"], "delete");
    assert_eq!(log["entries"][0]["target"], format!("general/{annes}"));
    // A room's owner: any message of their room.
    post(&server, &ann, "club", "founded").await;
    let bobs = post(&server, &bob, "club", "Bob's").await;
    let (status, body) = call(
        &server,
        "DELETE",
        &format!("/rooms/club/msgs/{bobs}"),
        &ann,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Past the edit window, an author may not.
    let strict = crate::auth::server(&["--edit-window", "0s"]);
    let mine = post(&strict, &ann, "general", "too late").await;
    let (status, body) = call(
        &strict,
        "DELETE",
        &format!("/rooms/general/msgs/{mine}"),
        &ann,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_allowed")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("--edit-window"),
        "{body}"
    );

    // Moderation needs users.
    let anonymous = Server::start(&[]);
    let res = client()
        .delete(anonymous.url("/rooms/general/msgs/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

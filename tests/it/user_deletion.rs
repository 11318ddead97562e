//! Deleting a user (`DELETE /admin/users/{uid}?messages=delete|keep`, `rtchat admin
//! delete-user`): their live connections end (4003), their tokens and logins are refused,
//! their account and room memberships go (the name is free again), and their messages are
//! tombstoned or kept under "deleted user" — also after a restart.

use std::time::Duration;

use serde_json::{json, Value};

use crate::auth::{admin, call, server, skip_presence, token, until_closed, v1_connect};
use crate::common::{client, rtchat, temp_dir, Server};

const PASSWORD: &str = "correct horse battery";

async fn post(server: &Server, token: &str, room: &str, text: &str) {
    let path = format!("/rooms/{room}/msgs");
    let (status, body) = call(server, "POST", &path, token, json!({ "text": text })).await;
    assert_eq!(status, 200, "{room}: {body}");
}

/// `POST /auth/{what}` (signup, login) with a name and the password: status and body.
async fn account(server: &Server, what: &str, user: &str) -> (u16, Value) {
    let res = client()
        .post(server.url(&format!("/auth/{what}")))
        .json(&json!({ "user": user, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

/// The messages of a room as `token`'s user sees them: (user, uid, text).
async fn shown(server: &Server, token: &str, room: &str) -> Vec<(String, Option<String>, String)> {
    let (status, page) = call(
        server,
        "GET",
        &format!("/rooms/{room}/poll"),
        token,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page["msg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["user"].as_str().unwrap().to_owned(),
                m["uid"].as_str().map(str::to_owned),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits (at most 5 s) until `room` shows exactly `want` texts: a deletion reloads the
/// history in the background.
async fn until_texts(server: &Server, token: &str, room: &str, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let texts: Vec<String> = shown(server, token, room)
            .await
            .into_iter()
            .map(|(_, _, t)| t)
            .collect();
        if texts == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{room} shows {texts:?}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn deleting_a_user_and_their_messages_ends_them_everywhere() {
    let server = server(&[]);
    let (ann, root) = (token("u-ann", "Ann"), admin());
    let (status, dee) = account(&server, "signup", "dee").await;
    assert_eq!(status, 201, "{dee}");
    let (dee_uid, dee_token) = (
        dee["uid"].as_str().unwrap().to_owned(),
        dee["token"].as_str().unwrap().to_owned(),
    );

    // Ann owns the private room club, Dee is a member; both post there and in lobby.
    post(&server, &ann, "club", "founded").await;
    let members = format!("/rooms/club/members/{dee_uid}");
    let (status, body) = call(&server, "POST", &members, &ann, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(
        &server,
        "PUT",
        "/rooms/club",
        &ann,
        json!({"private": true}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut want = vec!["u-ann".to_owned(), dee_uid.clone()];
    want.sort();
    assert_eq!(body["members"], json!(want), "{body}");
    post(&server, &dee_token, "club", "dee in club").await;
    post(&server, &ann, "lobby", "ann in lobby").await;
    post(&server, &dee_token, "lobby", "dee in lobby").await;
    post(&server, &dee_token, "lobby", "dee again").await;
    let (status, dm) = call(&server, "POST", "/me/dm/u-ann", &dee_token, Value::Null).await;
    assert_eq!(status, 200, "{dm}");
    let dm = dm["room"].as_str().unwrap().to_owned();
    post(&server, &dee_token, &dm, "dee in the dm").await;
    let mut ws = v1_connect(&server, &format!("/ws?token={dee_token}")).await;
    assert_eq!(skip_presence(&mut ws).await["type"], "history");

    // Refused: not an admin, no choice, a wrong choice.
    let path = format!("/admin/users/{dee_uid}");
    let (status, body) = call(&server, "DELETE", &path, &ann, Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("admin_only")));
    let (status, body) = call(&server, "DELETE", &path, &root, Value::Null).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("messages=delete"),
        "{body}"
    );
    let (status, body) = call(
        &server,
        "DELETE",
        &format!("{path}?messages=shred"),
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &server,
        "DELETE",
        "/admin/users/u-root?messages=keep",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 400, "not themself: {body}");
    assert_eq!(
        shown(&server, &ann, "lobby").await.len(),
        3,
        "nothing happened"
    );

    let (status, done) = call(
        &server,
        "DELETE",
        &format!("{path}?messages=delete"),
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "ok");
    assert_eq!(done["messages"], 4, "{done}");
    let audit = done["audit"].as_u64().unwrap();

    // Their WebSocket ends at once; their token and their login are refused.
    let (code, reason, _) = until_closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4003, "banned"));
    let (status, body) = call(&server, "GET", "/rooms/lobby/poll", &dee_token, Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("banned")));
    assert!(
        body["error"].as_str().unwrap().contains("account deleted"),
        "{body}"
    );
    let (status, body) = account(&server, "login", "dee").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("bad_credentials"))
    );

    // Their messages are gone from both rooms; Ann's stay.
    until_texts(&server, &ann, "lobby", &["ann in lobby"]).await;
    until_texts(&server, &ann, "club", &["founded"]).await;
    until_texts(&server, &ann, &dm, &[]).await;

    // No member of club any more; the name is free for a new account (a new user id).
    let (_, settings) = call(&server, "GET", "/rooms/club", &ann, Value::Null).await;
    assert_eq!(settings["members"], json!(["u-ann"]), "{settings}");
    // Ann keeps her direct message with the deleted user (its members are the pair).
    let (_, mine) = call(&server, "GET", "/me/rooms", &ann, Value::Null).await;
    let rooms = mine["rooms"].as_array().unwrap();
    let kept = rooms.iter().find(|r| r["room"] == dm.as_str());
    assert_eq!(
        kept.map(|r| r["with"]["uid"].clone()),
        Some(json!(dee_uid)),
        "{mine}"
    );
    assert!(rooms.iter().any(|r| r["room"] == "club"), "{mine}");
    let (status, again) = account(&server, "signup", "dee").await;
    assert_eq!(status, 201, "{again}");
    assert_ne!(again["uid"], dee_uid.as_str());
    let (status, body) = call(
        &server,
        "GET",
        "/rooms/club",
        again["token"].as_str().unwrap(),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("not_a_member")),
        "the new dee is someone else: {body}"
    );

    // The audit log says what happened.
    let (_, log) = call(&server, "GET", "/admin/audit", &root, Value::Null).await;
    let entry = &log["entries"][0];
    assert_eq!(entry["id"], audit, "{log}");
    assert_eq!(entry["action"], "delete-user");
    assert_eq!(entry["target"], dee_uid.as_str());
    assert_eq!(entry["actor"], "u-root");
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("messages=delete: 4"),
        "{entry}"
    );
}

#[tokio::test]
async fn kept_messages_show_under_deleted_user_also_after_a_restart() {
    let dir = temp_dir("user-deletion-keep");
    let data = ["--data-dir", dir.to_str().unwrap()];
    let mut first = server(&data);
    let (ann, root) = (token("u-ann", "Ann"), admin());
    let (status, eve) = account(&first, "signup", "eve").await;
    assert_eq!(status, 201, "{eve}");
    let (eve_uid, eve_token) = (
        eve["uid"].as_str().unwrap().to_owned(),
        eve["token"].as_str().unwrap().to_owned(),
    );
    post(&first, &eve_token, "lobby", "one").await;
    post(&first, &ann, "lobby", "two").await;
    post(&first, &eve_token, "lobby", "three").await;
    // Ann is in the room (its history is held in memory while she is).
    let mut anns = v1_connect(&first, &format!("/ws?token={ann}&rooms=lobby")).await;
    while skip_presence(&mut anns).await["type"] != "history" {}

    let (status, done) = call(
        &first,
        "DELETE",
        &format!("/admin/users/{eve_uid}?messages=keep"),
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["messages"], 2, "{done}");
    let (_, log) = call(&first, "GET", "/admin/audit", &root, Value::Null).await;
    assert_eq!(log["entries"][0]["action"], "delete-user", "{log}");
    assert!(
        log["entries"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("messages=keep"),
        "{log}"
    );

    // Newest first.
    let want = vec![
        ("deleted user".to_owned(), None, "three".to_owned()),
        ("Ann".to_owned(), Some("u-ann".to_owned()), "two".to_owned()),
        ("deleted user".to_owned(), None, "one".to_owned()),
    ];
    // The room's held history is read again: renamed at once, for a new client too.
    assert_eq!(shown(&first, &ann, "lobby").await, want);
    drop(anns);

    first.terminate(Duration::from_secs(5)).expect("stops");
    let second = server(&data);
    assert_eq!(shown(&second, &ann, "lobby").await, want);
    // Still out after the restart: the ban is kept in the database.
    let (status, body) = call(&second, "GET", "/rooms/lobby/poll", &eve_token, Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("banned")));
    let (status, _) = account(&second, "login", "eve").await;
    assert_eq!(status, 401);
    let (_, bans) = call(&second, "GET", "/admin/bans", &root, Value::Null).await;
    assert_eq!(bans["sanctions"][0]["uid"], eve_uid.as_str(), "{bans}");
    assert_eq!(bans["sanctions"][0]["reason"], "account deleted");
    assert_eq!(bans["sanctions"][0]["until"], Value::Null);
}

#[tokio::test]
async fn rtchat_admin_delete_user() {
    let server = server(&[]);
    let cy = token("u-cy", "Cy");
    post(&server, &cy, "general", "bye").await;
    post(&server, &token("u-ann", "Ann"), "general", "stays").await;
    let root = admin();
    let run = |args: &[&str]| {
        let mut all = vec![
            "admin",
            "--url",
            server.base.as_str(),
            "--token",
            root.as_str(),
        ];
        all.extend_from_slice(args);
        rtchat(&all, &[]).output().unwrap()
    };

    let out = run(&["delete-user", "u-cy"]);
    assert!(!out.status.success(), "--messages is required");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--messages"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&["delete-user", "u-cy", "--messages", "delete"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(answer["messages"], 1, "{answer}");
    until_texts(&server, &root, "general", &["stays"]).await;
    let (status, _) = call(&server, "GET", "/poll", &cy, Value::Null).await;
    assert_eq!(status, 403);
    let out = run(&["audit", "--limit", "1"]);
    let log: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["entries"][0]["action"], "delete-user", "{log}");
    assert_eq!(log["entries"][0]["target"], "u-cy", "{log}");
}

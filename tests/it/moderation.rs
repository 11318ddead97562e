//! Moderation with `--auth token`: an admin bans, kicks, mutes and revokes through the admin
//! API; a ban or a kick ends the user's live connections on every transport at once with its
//! documented reason; the audit log lists every action. (Socket.IO:
//! tests/socketio/auth.test.mjs.)

use std::time::Duration;

use serde_json::{json, Value};

use crate::auth::{
    admin, call, now, send, server, skip_presence, token, until_closed, v1_connect, ws_status,
};
use crate::common::{client, Server, Sse, Ws};

pub(crate) async fn post(server: &Server, token: &str, room: &str, text: &str) -> (u16, Value) {
    let path = format!("/rooms/{room}/msgs");
    call(server, "POST", &path, token, json!({ "text": text })).await
}

/// Bob on every streaming transport and in a held long poll: (WebSocket, SSE, `/msgs`, the
/// long poll's answer).
pub(crate) struct Everywhere {
    ws: Ws,
    sse: Sse,
    msgs: reqwest::Response,
    parked: tokio::task::JoinHandle<(u16, Value)>,
}

pub(crate) async fn everywhere(server: &Server, token: &str) -> Everywhere {
    let http = client();
    let mut ws = v1_connect(server, &format!("/ws?token={token}")).await;
    assert_eq!(skip_presence(&mut ws).await["type"], "history");
    let sse = Sse::open(
        http.get(server.url("/rooms/lobby/events"))
            .bearer_auth(token)
            .header("accept", "text/event-stream"),
    )
    .await;
    let msgs = http
        .get(server.url("/rooms/lobby/msgs"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(msgs.status(), 200);
    let before =
        crate::common::metric(server, "rtchat_clients", &[("transport", "longpoll")]).await;
    let parked = {
        let req = http
            .get(server.url("/rooms/lobby/poll?since=0&timeout=30"))
            .bearer_auth(token);
        tokio::spawn(async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        })
    };
    crate::common::wait_for_metric(
        server,
        "rtchat_clients",
        &[("transport", "longpoll")],
        before + 1.0,
    )
    .await;
    Everywhere {
        ws,
        sse,
        msgs,
        parked,
    }
}

/// Reads a `/msgs` stream to its end: its last line.
async fn last_line(mut res: reqwest::Response) -> Value {
    let mut body = String::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    serde_json::from_str(body.lines().last().unwrap()).unwrap()
}

/// Every connection of `e` ends with `event` (`banned`, `kicked`) and WebSocket close `code`,
/// within a second of the admin's answer.
pub(crate) async fn all_end(e: Everywhere, event: &str, code: u16) {
    let Everywhere {
        mut ws,
        mut sse,
        msgs,
        parked,
    } = e;
    let ends = async {
        let (closed, reason, _) = until_closed(&mut ws).await;
        assert_eq!((closed, reason.as_str()), (code, event));
        assert_eq!(sse.named(event).await["reason"], event);
        sse.end().await;
        let last = last_line(msgs).await;
        assert_eq!(last[event]["reason"], event, "{last}");
        let (status, body) = parked.await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some(event)),
            "{body}"
        );
    };
    tokio::time::timeout(Duration::from_secs(1), ends)
        .await
        .unwrap_or_else(|_| panic!("every {event} connection ended within 1 s"));
}

#[tokio::test]
async fn a_ban_ends_every_connection_and_refuses_the_user_until_lifted() {
    let server = server(&[]);
    let (bob, root) = (token("u-bob", "Bob"), admin());
    let mut carol = v1_connect(&server, &format!("/ws?token={}", token("u-carol", "Carol"))).await;
    assert_eq!(skip_presence(&mut carol).await["type"], "history");
    let bobs = everywhere(&server, &bob).await;

    let (status, done) = call(
        &server,
        "POST",
        "/admin/users/u-bob/ban",
        &root,
        json!({"reason": "spam", "for": "1h"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    all_end(bobs, "banned", 4003).await;

    // Refused everywhere, with the reason; his token is no longer any use.
    let (status, body) = post(&server, &bob, "lobby", "still me").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("banned")),
        "{body}"
    );
    assert!(body["error"].as_str().unwrap().contains("spam"), "{body}");
    let (status, _) = call(&server, "GET", "/poll", &bob, Value::Null).await;
    assert_eq!(status, 403);
    assert_eq!(ws_status(&server, &format!("/ws?token={bob}")).await, 403);
    // Carol is untouched.
    let (status, _) = post(&server, &token("u-carol", "Carol"), "general", "hi").await;
    assert_eq!(status, 200);
    assert_eq!(skip_presence(&mut carol).await["msg"]["text"], "hi");

    let (_, bans) = call(&server, "GET", "/admin/bans", &root, Value::Null).await;
    assert_eq!(bans["sanctions"][0]["uid"], "u-bob", "{bans}");
    assert_eq!(bans["sanctions"][0]["reason"], "spam");
    assert!(bans["sanctions"][0]["until"].as_u64().unwrap() > now() + 3500);

    // Lifted: Bob is back.
    let (status, _) = call(
        &server,
        "DELETE",
        "/admin/users/u-bob/ban",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(post(&server, &bob, "lobby", "back").await.0, 200);
    let (status, body) = call(
        &server,
        "DELETE",
        "/admin/users/u-bob/ban",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_banned")));
}

#[tokio::test]
async fn a_kick_ends_every_connection_but_the_user_may_come_back() {
    let server = server(&[]);
    let (bob, root) = (token("u-bob", "Bob"), admin());
    let bobs = everywhere(&server, &bob).await;
    let (status, done) = call(
        &server,
        "POST",
        "/admin/users/u-bob/kick",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{done}");
    all_end(bobs, "kicked", 4004).await;
    // He reconnects with the same token.
    let mut again = v1_connect(&server, &format!("/ws?token={bob}")).await;
    assert_eq!(skip_presence(&mut again).await["type"], "history");
    assert_eq!(post(&server, &bob, "general", "back").await.0, 200);
}

#[tokio::test]
async fn a_muted_user_reads_but_cannot_post_in_that_room() {
    let server = server(&[]);
    let (bob, root) = (token("u-bob", "Bob"), admin());
    assert_eq!(post(&server, &bob, "quiet", "before").await.0, 200);
    let (status, done) = call(
        &server,
        "POST",
        "/admin/rooms/quiet/mutes/u-bob",
        &root,
        json!({"reason": "flooding"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let (status, body) = post(&server, &bob, "quiet", "during").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("muted")),
        "{body}"
    );
    assert!(
        body["error"].as_str().unwrap().contains("flooding"),
        "{body}"
    );
    // Another room, and reading the muted one, are fine.
    assert_eq!(post(&server, &bob, "loud", "elsewhere").await.0, 200);
    let (status, page) = call(&server, "GET", "/rooms/quiet/poll", &bob, Value::Null).await;
    assert_eq!(
        (status, crate::common::texts(&page)),
        (200, vec!["before".to_owned()])
    );
    // On a WebSocket too: an error frame, the connection stays.
    let mut ws = v1_connect(&server, &format!("/ws?token={bob}&rooms=quiet")).await;
    while skip_presence(&mut ws).await["type"] != "history" {}
    send(
        &mut ws,
        json!({"type": "post", "room": "quiet", "text": "ws", "ref": 7}),
    )
    .await;
    let answer = skip_presence(&mut ws).await;
    assert_eq!(
        (&answer["type"], &answer["ref"]),
        (&json!("error"), &json!(7)),
        "{answer}"
    );
    assert!(
        answer["error"].as_str().unwrap().contains("muted"),
        "{answer}"
    );

    let (_, mutes) = call(&server, "GET", "/admin/mutes", &root, Value::Null).await;
    assert_eq!(mutes["sanctions"][0]["room"], "quiet", "{mutes}");
    let (status, _) = call(
        &server,
        "DELETE",
        "/admin/rooms/quiet/mutes/u-bob",
        &root,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    send(
        &mut ws,
        json!({"type": "post", "room": "quiet", "text": "ws again", "ref": 8}),
    )
    .await;
    // The message itself may come before its ack.
    let mut answer = skip_presence(&mut ws).await;
    while answer["type"] == "msg" {
        answer = skip_presence(&mut ws).await;
    }
    assert_eq!(
        (&answer["type"], &answer["ref"]),
        (&json!("ack"), &json!(8)),
        "{answer}"
    );
}

#[tokio::test]
async fn an_admin_revokes_a_token_by_its_id_and_the_audit_log_lists_every_action() {
    let server = server(&[]);
    let (bob, root) = (token("u-bob", "Bob"), admin());
    let mut ws = v1_connect(&server, &format!("/ws?token={bob}")).await;
    assert_eq!(skip_presence(&mut ws).await["type"], "history");
    let (status, _) = call(
        &server,
        "POST",
        "/admin/tokens/j-u-bob/revoke",
        &root,
        json!({"reason": "leaked"}),
    )
    .await;
    assert_eq!(status, 200);
    let (code, reason, _) = until_closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4005, "token revoked"));
    let (status, body) = post(&server, &bob, "general", "x").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_revoked"))
    );

    // Not an admin, or bad bodies: refused precisely.
    let carol = token("u-carol", "Carol");
    let (status, body) = call(
        &server,
        "POST",
        "/admin/users/u-bob/kick",
        &carol,
        Value::Null,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (403, Some("admin_only")));
    let (status, _) = call(&server, "GET", "/admin/audit", &carol, Value::Null).await;
    assert_eq!(status, 403);
    for bad in [
        json!({"for": "soon"}),
        json!({"until": 5}),
        json!({"until": now() + 60, "for": "1h"}),
        json!({"reason": "x", "colour": "red"}),
    ] {
        let (status, body) = call(
            &server,
            "POST",
            "/admin/users/u-bob/ban",
            &root,
            bad.clone(),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    call(
        &server,
        "POST",
        "/admin/users/u-carol/kick",
        &root,
        json!({"reason": "test"}),
    )
    .await;
    call(
        &server,
        "POST",
        "/admin/rooms/a/mutes/u-carol",
        &root,
        Value::Null,
    )
    .await;
    let (status, log) = call(&server, "GET", "/admin/audit?limit=10", &root, Value::Null).await;
    assert_eq!(status, 200);
    let actions: Vec<(&str, &str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["target"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("mute", "u-carol", "u-root"),
            ("kick", "u-carol", "u-root"),
            ("revoke", "j-u-bob", "u-root"),
        ],
        "{log}"
    );
    assert_eq!(log["entries"][2]["reason"], "leaked");
    assert_eq!(log["entries"][0]["room"], "a");
}

#[tokio::test]
async fn moderation_needs_auth_token() {
    let server = Server::start(&[]);
    let res = client()
        .post(server.url("/admin/users/u-bob/kick"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "auth_off", "{body}");
}

#[tokio::test]
async fn a_banned_account_cannot_log_in() {
    let server = server(&[]);
    let http = client();
    let account = json!({"user": "dora", "password": "correct horse battery"});
    let res = http
        .post(server.url("/auth/signup"))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let uid = res.json::<Value>().await.unwrap()["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/admin/users/{uid}/ban");
    let (status, _) = call(&server, "POST", &path, &admin(), json!({"reason": "abuse"})).await;
    assert_eq!(status, 200);
    let res = http
        .post(server.url("/auth/login"))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "banned", "{body}");
    assert!(body["error"].as_str().unwrap().contains("abuse"), "{body}");
}

#[tokio::test]
async fn rtchat_admin_wraps_the_api() {
    let server = server(&[]);
    let root = admin();
    let bob = token("u-bob", "Bob");
    let mut ws = v1_connect(&server, &format!("/ws?token={bob}")).await;
    assert_eq!(skip_presence(&mut ws).await["type"], "history");
    let url = server.url("");
    let run = move |args: Vec<String>, token: &str| {
        let mut all: Vec<String> = vec!["admin".into(), "--url".into(), url.clone()];
        all.extend(args);
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let out = crate::common::rtchat(&refs, &[("RTCHAT_TOKEN", token)])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let args = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let (ok, out, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        let root = root.clone();
        move || run(args("ban u-bob --for 1h --reason spamming"), &root)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["status"],
        "ok",
        "{out}"
    );
    let (code, reason, _) = until_closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4003, "banned"));
    let (ok, out, err) = tokio::task::spawn_blocking({
        let run = run.clone();
        let root = root.clone();
        move || run(args("audit --limit 5"), &root)
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    let log: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(log["entries"][0]["action"], "ban", "{log}");
    assert_eq!(log["entries"][0]["reason"], "spamming");
    // Not an admin: exit 1 with the server's words.
    let carol = token("u-carol", "Carol");
    let (ok, _, err) = tokio::task::spawn_blocking(move || run(args("kick u-bob"), &carol))
        .await
        .unwrap();
    assert!(!ok);
    assert!(err.contains("only an administrator"), "{err}");
}

#[tokio::test]
async fn the_admin_overview_shows_who_is_where() {
    let server = server(&[]);
    let root = admin();
    let bob = token("u-bob", "Bob");
    let mut ws = v1_connect(&server, &format!("/ws?token={bob}&rooms=lobby")).await;
    while skip_presence(&mut ws).await["type"] != "history" {}
    call(
        &server,
        "POST",
        "/admin/rooms/lobby/mutes/u-bob",
        &root,
        Value::Null,
    )
    .await;
    let (status, overview) = call(&server, "GET", "/admin/overview", &root, Value::Null).await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["you"]["uid"], "u-root");
    let ws_clients = overview["transports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["transport"] == "ws")
        .map(|t| t["clients"].as_u64().unwrap());
    assert_eq!(ws_clients, Some(1), "{overview}");
    let lobby = overview["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "lobby")
        .cloned()
        .unwrap_or_else(|| panic!("lobby listed: {overview}"));
    assert_eq!(lobby["users"][0]["uid"], "u-bob", "{lobby}");
    assert_eq!(overview["mutes"][0]["uid"], "u-bob");
    assert_eq!(overview["audit"][0]["action"], "mute");
    let (status, body) = call(&server, "GET", "/admin/overview", &bob, Value::Null).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("admin_only")));
}

//! Private conversations with `--auth token`: a direct message is readable and writable by
//! its two users only, on every transport (resume and the room list included); a room its
//! owner turns private removes the connected non-members at once (`left`), and stays private
//! across a restart. (Socket.IO: tests/socketio/auth.test.mjs.)

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::auth::{admin, call, send, server, skip_presence, token, v1_connect};
use crate::common::{client, temp_dir, ws_url, Server, Sse, Ws};

/// `dm:` and the first 16 hex digits of SHA-256 over the two ids, sorted and joined by a
/// newline, computed by `sha256sum` (not by rtchat's code).
fn expected_dm(a: &str, b: &str) -> String {
    let mut ids = [a, b];
    ids.sort();
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    let input = format!("{}\n{}", ids[0], ids[1]);
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!("dm:{}", &String::from_utf8(out.stdout).unwrap()[..16])
}

/// Posts `text` to `room` as `token`'s user; returns the message id.
async fn post_in(server: &Server, token: &str, room: &str, text: &str) -> u64 {
    let (status, body) = call(
        server,
        "POST",
        &format!("/rooms/{room}/msgs"),
        token,
        json!({ "text": text }),
    )
    .await;
    assert_eq!(status, 200, "post to {room}: {body}");
    body["id"].as_u64().unwrap()
}

/// The room names `GET /rooms` shows `token`'s user.
async fn listed(server: &Server, token: &str) -> Vec<String> {
    let (status, list) = call(server, "GET", "/rooms", token, Value::Null).await;
    assert_eq!(status, 200);
    list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

/// An rtchat.v1 WebSocket as `token`'s user in `rooms`, their histories read.
async fn in_rooms(server: &Server, token: &str, rooms: &str) -> Ws {
    let mut ws = v1_connect(server, &format!("/ws?token={token}&rooms={rooms}")).await;
    let mut histories = 0;
    while histories < rooms.split(',').count() {
        if skip_presence(&mut ws).await["type"] == "history" {
            histories += 1;
        }
    }
    ws
}

/// The next frame on `ws` that is neither presence nor typing.
async fn next_frame(ws: &mut Ws) -> Value {
    skip_presence(ws).await
}

/// Every HTTP door of `room`, each of which must refuse `token` with `status` and `code`.
async fn every_http_door_refuses(server: &Server, room: &str, token: &str, code: &str) {
    let doors = [
        ("GET", format!("/rooms/{room}/poll")),
        ("GET", format!("/rooms/{room}/poll?since=1&timeout=0")),
        ("GET", format!("/rooms/{room}/msgs")),
        ("GET", format!("/rooms/{room}/msgs?since=1")),
        ("GET", format!("/rooms/{room}/events")),
        ("GET", format!("/rooms/{room}/events?since=1")),
        ("GET", format!("/rooms/{room}/presence")),
        ("GET", format!("/rooms/{room}")),
        ("POST", format!("/rooms/{room}/msgs")),
        ("POST", format!("/rooms/{room}/poll")),
        ("POST", format!("/rooms/{room}/typing")),
    ];
    for (method, path) in doors {
        let body = json!({"text": "let me in", "user": "Carol"});
        let (status, answer) = call(server, method, &path, token, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(answer["code"], code, "{method} {path}: {answer}");
    }
    for path in [
        format!("/ws?token={token}&rooms={room}"),
        format!("/ws?token={token}&rooms={room}&since=1"),
    ] {
        assert_eq!(v1_status(server, &path).await, 403, "upgrade {path}");
    }
}

/// The answer status of an rtchat.v1 WebSocket upgrade at `path`.
async fn v1_status(server: &Server, path: &str) -> u16 {
    let mut req = ws_url(server, path).into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "rtchat.v1".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(WsError::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("upgrade {path}: {e}"),
    }
}

/// In `general` on `ws`: a `join` of `room` (with and without a position) and a post to it are
/// refused with `error` frames, and the connection stays open.
async fn ws_doors_refuse(ws: &mut Ws, room: &str) {
    for (n, frame) in [
        json!({"type": "join", "room": room, "ref": "j1"}),
        json!({"type": "join", "room": room, "since": 1, "ref": "j2"}),
        json!({"type": "post", "room": room, "text": "let me in", "ref": "p1"}),
    ]
    .into_iter()
    .enumerate()
    {
        let reference = frame["ref"].clone();
        send(ws, frame).await;
        let answer = next_frame(ws).await;
        assert_eq!(answer["type"], "error", "frame {n}: {answer}");
        assert_eq!(answer["ref"], reference, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("private"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_direct_message_is_its_two_users_only_on_every_transport() {
    let server = server(&[]);
    let (ann, bob, carol) = (
        token("u-ann", "Ann"),
        token("u-bob", "Bob"),
        token("u-carol", "Carol"),
    );
    let (status, opened) = call(&server, "POST", "/me/dm/u-bob", &ann, Value::Null).await;
    assert_eq!(status, 200, "{opened}");
    let room = opened["room"].as_str().unwrap().to_owned();
    assert_eq!(room, expected_dm("u-ann", "u-bob"));
    assert_eq!(opened["with"]["uid"], "u-bob");
    // Bob finds the same room, and learns Ann's name (her token showed it).
    let (status, found) = call(&server, "POST", "/me/dm/u-ann", &bob, Value::Null).await;
    assert_eq!((status, found["room"].as_str()), (200, Some(room.as_str())));
    assert_eq!(found["with"], json!({"uid": "u-ann", "name": "Ann"}));
    let (_, mine) = call(&server, "GET", "/me/rooms", &ann, Value::Null).await;
    assert_eq!(
        mine["rooms"],
        json!([{"room": room, "private": true, "with": {"uid": "u-bob", "name": "Bob"}}]),
        "{mine}"
    );
    // Nobody opens a DM with themselves.
    let (status, _) = call(&server, "POST", "/me/dm/u-ann", &ann, Value::Null).await;
    assert_eq!(status, 400);

    // The two write and read it on HTTP and WebSockets.
    let mut bobs = in_rooms(&server, &bob, &room).await;
    let first = post_in(&server, &ann, &room, "just us").await;
    let got = next_frame(&mut bobs).await;
    assert_eq!(
        (&got["type"], &got["room"], &got["msg"]["text"]),
        (&json!("msg"), &json!(room), &json!("just us")),
        "{got}"
    );
    assert_eq!(got["msg"]["uid"], "u-ann");

    // Carol: every door refused, resume and room list included.
    every_http_door_refuses(&server, &room, &carol, "not_a_member").await;
    let mut carols = in_rooms(&server, &carol, "general").await;
    ws_doors_refuse(&mut carols, &room).await;
    assert!(listed(&server, &ann).await.contains(&room));
    assert!(listed(&server, &bob).await.contains(&room));
    assert!(!listed(&server, &carol).await.contains(&room));
    let (_, carols_rooms) = call(&server, "GET", "/me/rooms", &carol, Value::Null).await;
    assert_eq!(carols_rooms["rooms"], json!([]));
    // Nor can she open it: her DM with Ann is another room.
    let (_, hers) = call(&server, "POST", "/me/dm/u-ann", &carol, Value::Null).await;
    assert_ne!(hers["room"], json!(room));
    // Nothing she tried got in: the DM holds Ann's one message.
    let (_, page) = call(
        &server,
        "GET",
        &format!("/rooms/{room}/poll"),
        &bob,
        Value::Null,
    )
    .await;
    assert_eq!(crate::common::ids(&page), [first], "{page}");
}

#[tokio::test]
async fn direct_message_names_exist_only_with_auth_token() {
    let server = Server::start(&[]);
    let room = expected_dm("a", "b");
    let http = client();
    for path in [
        format!("/rooms/{room}/poll"),
        format!("/rooms/{room}/msgs?since=0"),
    ] {
        let res = http.get(server.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 400, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "bad_room", "{body}");
    }
    let res = http
        .post(server.url(&format!("/rooms/{room}/msgs")))
        .json(&json!({"user": "a", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http.post(server.url("/me/dm/b")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "auth_off", "{body}");
}

/// Reads a `/msgs` stream to its end; returns everything it sent.
async fn read_to_end(mut res: reqwest::Response) -> String {
    let mut body = String::new();
    while let Some(chunk) = tokio::time::timeout(std::time::Duration::from_secs(20), res.chunk())
        .await
        .expect("the stream ends within 20 s")
        .unwrap()
    {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    body
}

#[tokio::test]
async fn a_room_turned_private_removes_connected_non_members() {
    let server = server(&[]);
    let http = client();
    let (ann, bob, carol) = (
        token("u-ann", "Ann"),
        token("u-bob", "Bob"),
        token("u-carol", "Carol"),
    );
    // Ann makes the room (her first post): she owns it.
    post_in(&server, &ann, "club", "founded").await;
    let (status, added) = call(
        &server,
        "POST",
        "/rooms/club/members/u-carol",
        &ann,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{added}");
    // Not the owner: Bob may not change it.
    for (method, path, body) in [
        ("PUT", "/rooms/club", json!({"private": true})),
        ("POST", "/rooms/club/members/u-bob", Value::Null),
        ("DELETE", "/rooms/club/members/u-carol", Value::Null),
    ] {
        let (status, answer) = call(&server, method, path, &bob, body).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (403, Some("not_owner")),
            "{method} {path}"
        );
    }

    // Bob is in the room on every streaming transport, and waits in a long poll.
    let mut bobs_ws = in_rooms(&server, &bob, "club,general").await;
    let mut carols_ws = in_rooms(&server, &carol, "club").await;
    let mut bobs_sse = Sse::open(
        http.get(server.url("/rooms/club/events"))
            .bearer_auth(&bob)
            .header("accept", "text/event-stream"),
    )
    .await;
    let bobs_msgs = http
        .get(server.url("/rooms/club/msgs"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(bobs_msgs.status(), 200);
    let parked = {
        let req = http
            .get(server.url("/rooms/club/poll?since=1&timeout=30"))
            .bearer_auth(&bob);
        tokio::spawn(async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        })
    };
    crate::common::wait_for_metric(&server, "rtchat_clients", &[("transport", "longpoll")], 1.0)
        .await;

    let (status, settings) = call(
        &server,
        "PUT",
        "/rooms/club",
        &ann,
        json!({"private": true}),
    )
    .await;
    assert_eq!(status, 200, "{settings}");
    assert_eq!(
        settings,
        json!({"room": "club", "private": true, "owner": "u-ann", "members": ["u-ann", "u-carol"]})
    );

    // Bob is out of it everywhere, told why.
    let left = next_frame(&mut bobs_ws).await;
    assert_eq!(
        (&left["type"], &left["room"]),
        (&json!("left"), &json!("club")),
        "{left}"
    );
    assert!(
        left["reason"].as_str().unwrap().contains("private"),
        "{left}"
    );
    let left = bobs_sse.named("left").await;
    assert_eq!(left["room"], "club", "{left}");
    bobs_sse.end().await;
    let body = read_to_end(bobs_msgs).await;
    let last: Value = serde_json::from_str(body.lines().last().unwrap()).unwrap();
    assert_eq!(last["left"]["room"], "club", "{body}");
    let (status, answer) = parked.await.unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("not_a_member")),
        "{answer}"
    );

    // Nothing more of it reaches him; Carol, a member, stays and reads on.
    post_in(&server, &ann, "club", "members only").await;
    post_in(&server, &ann, "general", "for everyone").await;
    let next = next_frame(&mut bobs_ws).await;
    assert_eq!(
        (&next["room"], &next["msg"]["text"]),
        (&json!("general"), &json!("for everyone")),
        "Bob's next message is general's, not the private room's: {next}"
    );
    let got = next_frame(&mut carols_ws).await;
    assert_eq!(got["msg"]["text"], "members only", "{got}");
    every_http_door_refuses(&server, "club", &bob, "not_a_member").await;
    ws_doors_refuse(&mut bobs_ws, "club").await;
    assert!(!listed(&server, &bob).await.contains(&"club".to_owned()));
    let (_, carols_rooms) = call(&server, "GET", "/me/rooms", &carol, Value::Null).await;
    assert_eq!(
        carols_rooms["rooms"],
        json!([{"room": "club", "private": true}])
    );
    let (_, anns_rooms) = call(&server, "GET", "/me/rooms", &ann, Value::Null).await;
    assert_eq!(
        anns_rooms["rooms"],
        json!([{"room": "club", "private": true, "owner": true}])
    );

    // Removing a member takes her out too.
    let (status, _) = call(
        &server,
        "DELETE",
        "/rooms/club/members/u-carol",
        &ann,
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let left = next_frame(&mut carols_ws).await;
    assert_eq!(
        (&left["type"], &left["room"]),
        (&json!("left"), &json!("club")),
        "{left}"
    );

    // An admin may change any room: public again, Bob joins and resumes.
    let admin = admin();
    let (status, settings) = call(
        &server,
        "PUT",
        "/rooms/club",
        &admin,
        json!({"private": false}),
    )
    .await;
    assert_eq!(
        (status, settings["private"].as_bool()),
        (200, Some(false)),
        "{settings}"
    );
    send(
        &mut bobs_ws,
        json!({"type": "join", "room": "club", "since": 1, "ref": "back"}),
    )
    .await;
    let joined = next_frame(&mut bobs_ws).await;
    assert_eq!(joined["type"], "joined", "{joined}");

    // `general` and direct messages have fixed rules.
    let (status, answer) = call(
        &server,
        "PUT",
        "/rooms/general",
        &admin,
        json!({"private": true}),
    )
    .await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("room_fixed")),
        "{answer}"
    );
    let dm = expected_dm("u-ann", "u-bob");
    let (status, _) = call(
        &server,
        "PUT",
        &format!("/rooms/{dm}"),
        &admin,
        json!({"private": false}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = call(
        &server,
        "PUT",
        "/rooms/club",
        &ann,
        json!({"private": "yes"}),
    )
    .await;
    assert_eq!(status, 400, "a body that is not {{\"private\": bool}}");
}

#[tokio::test]
async fn private_rooms_and_direct_messages_stay_private_after_a_restart() {
    let dir = temp_dir("private-restart");
    let data_dir = dir.to_str().unwrap();
    let (ann, bob, carol) = (
        token("u-ann", "Ann"),
        token("u-bob", "Bob"),
        token("u-carol", "Carol"),
    );
    let dm = {
        let mut first = server(&["--data-dir", data_dir]);
        post_in(&first, &ann, "club", "founded").await;
        let (status, _) = call(&first, "PUT", "/rooms/club", &ann, json!({"private": true})).await;
        assert_eq!(status, 200);
        let (_, opened) = call(&first, "POST", "/me/dm/u-bob", &ann, Value::Null).await;
        post_in(&first, &ann, opened["room"].as_str().unwrap(), "psst").await;
        first.terminate(std::time::Duration::from_secs(10));
        opened["room"].as_str().unwrap().to_owned()
    };
    let mut second = server(&["--data-dir", data_dir]);
    every_http_door_refuses(&second, "club", &carol, "not_a_member").await;
    every_http_door_refuses(&second, &dm, &carol, "not_a_member").await;
    let (status, page) = call(
        &second,
        "GET",
        &format!("/rooms/{dm}/poll"),
        &bob,
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, crate::common::texts(&page)),
        (200, vec!["psst".to_owned()])
    );
    second.terminate(std::time::Duration::from_secs(10));
    // The cap on private rooms counts those kept.
    let capped = server(&["--data-dir", data_dir, "--max-private-rooms", "2"]);
    let (status, answer) = call(&capped, "POST", "/me/dm/u-carol", &ann, Value::Null).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (403, Some("too_many_private_rooms")),
        "{answer}"
    );
}

#[tokio::test]
async fn presence_counts_users_by_id_not_by_name() {
    let server = server(&[]);
    // Two users who chose the same display name, and one of them twice.
    let (al1, al2) = (token("u-al-1", "Al"), token("u-al-2", "Al"));
    let mut watcher = in_rooms(&server, &token("u-w", "Watcher"), "lobby").await;
    let _first = in_rooms(&server, &al1, "lobby").await;
    let _again = in_rooms(&server, &al1, "lobby").await;
    let _other = in_rooms(&server, &al2, "lobby").await;
    // The presence events name both Als (coalesced or not): wait until two have joined.
    let mut joined = Vec::new();
    while joined.len() < 2 {
        let frame = crate::common::ws_json(&mut watcher).await;
        if frame["type"] == "presence" {
            for name in frame["joined"].as_array().unwrap() {
                if name != "Watcher" {
                    joined.push(name.as_str().unwrap().to_owned());
                }
            }
        }
    }
    assert_eq!(joined, ["Al", "Al"]);
    let (status, presence) = call(&server, "GET", "/rooms/lobby/presence", &al1, Value::Null).await;
    assert_eq!(status, 200);
    let mut users: Vec<(String, String)> = presence["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["user"].as_str().unwrap().into(),
                u["uid"].as_str().unwrap().into(),
            )
        })
        .collect();
    users.sort();
    assert_eq!(
        users,
        [
            ("Al".to_owned(), "u-al-1".to_owned()),
            ("Al".to_owned(), "u-al-2".to_owned()),
            ("Watcher".to_owned(), "u-w".to_owned()),
        ],
        "{presence}"
    );
    assert_eq!(
        presence["online"], 3,
        "u-al-1's two connections count once: {presence}"
    );
}

//! The client library and `rtchat client` in a room other than `general` (`Options::room`,
//! `--room`), on every transport that has rooms (poll, longpoll, stream, sse, ws, socketio):
//! the room's messages and none of `general`'s (presence and typing skipped), posts that land
//! in the room, resume in the room; with `--auth token` a direct message chatted in by its two
//! users and refused to a third (an error, not retries), and a client taken out of a room that
//! turned private ending with the server's reason; the course's general-only protocols refuse
//! a room at start.

use crate::auth;
use crate::common::{self, client, Server};

use std::process::Stdio;
use std::time::Duration;

use rtchat_client::{
    Backoff, Client, Credentials, Error, Event, Message, Options, State, Transport,
};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// Every transport that can chat in another room than `general`.
const ROOM_TRANSPORTS: [Transport; 6] = [
    Transport::Poll,
    Transport::LongPoll,
    Transport::Stream,
    Transport::Sse,
    Transport::Ws,
    Transport::SocketIo,
];

/// Fast reconnection and polling, in `room`.
fn options(room: &str) -> Options {
    Options {
        backoff: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(400),
            ..Backoff::default()
        },
        poll_interval: Duration::from_millis(50),
        long_poll_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        room: Some(room.to_owned()),
        ..Options::default()
    }
}

/// [`options`] with a token.
fn with_token(room: &str, token: &str) -> Options {
    Options {
        credentials: Some(Credentials::Token(token.to_owned())),
        ..options(room)
    }
}

/// The next event, failing the test after 15 s.
async fn next(client: &mut Client) -> Event {
    match tokio::time::timeout(Duration::from_secs(15), client.next()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("{}: the client failed: {e}", client.transport()),
        Err(_) => panic!("{}: no event within 15 s", client.transport()),
    }
}

/// The next message. The connection must hold meanwhile: a presence or typing signal the
/// client cannot read (it would reconnect) fails the test.
async fn next_message(client: &mut Client) -> Message {
    loop {
        match next(client).await {
            Event::Message(m) => return m,
            Event::State(State::Connected { .. } | State::Resumed { .. }) => {}
            other => panic!("{}: expected a message, got {other:?}", client.transport()),
        }
    }
}

fn texts(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.text.as_str()).collect()
}

/// `POST /rooms/{room}/msgs` (with `token`, without a `user`: the token's name); the id.
async fn post_in(server: &Server, room: &str, token: Option<&str>, user: &str, text: &str) -> u64 {
    let mut body = json!({ "text": text });
    if token.is_none() {
        body["user"] = json!(user);
    }
    let mut req = client()
        .post(server.url(&format!("/rooms/{room}/msgs")))
        .json(&body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "post to {room}: {body}");
    body["id"].as_u64().unwrap()
}

/// `GET path` as JSON with `token`, asserting a 200.
async fn get_with(server: &Server, path: &str, token: Option<&str>) -> Value {
    let mut req = client().get(server.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// `(id, text)` of every message of a `/poll` answer, newest first.
fn ids_and_texts(page: &Value) -> Vec<(u64, String)> {
    page["msg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A transport other than `t`, for a second client of the room.
fn other(t: Transport) -> Transport {
    match t {
        Transport::SocketIo => Transport::Ws,
        _ => Transport::SocketIo,
    }
}

/// A client of `t` in room `r1`: r1's history and messages (from HTTP and from another client
/// of the room), never `general`'s; its own posts stored in r1; presence and typing skipped; a
/// resume (`resume_after`) in r1.
async fn keeps_to_its_room(t: Transport) {
    let server = Server::start(&["--no-tls"]);
    // `general` runs ahead of r1 in ids: one of its messages let through would be delivered
    // in r1's place (and r1's next ones dropped as already seen).
    for text in ["g1", "g2", "g3"] {
        assert_eq!(common::post(&server, "gina", text).await.status(), 200);
    }
    let first = post_in(&server, "r1", None, "rob", "r1 first").await;
    let mut chat = Client::connect(t, &server.base, options("r1"))
        .await
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    assert_eq!(texts(chat.history()), ["r1 first"], "{t}: r1's history");
    match next(&mut chat).await {
        Event::State(State::Connected { .. }) => {}
        other => panic!("{t}: expected Connected, got {other:?}"),
    }

    // Presence and typing in r1 (streams carry them), then a message to general, then r1's.
    get_with(&server, "/rooms/r1/poll?user=pam", None).await;
    let typing = client()
        .post(server.url("/rooms/r1/typing"))
        .json(&json!({"user": "tina"}))
        .send()
        .await
        .unwrap();
    assert_eq!(typing.status(), 200);
    assert_eq!(
        common::post(&server, "gina", "to general").await.status(),
        200
    );
    let id = post_in(&server, "r1", None, "rob", "to r1").await;
    let m = next_message(&mut chat).await;
    assert_eq!((m.id, m.text.as_str()), (id, "to r1"), "{t}");

    // Another client of r1 (another transport) posts: it arrives.
    let other_t = other(t);
    let olga = Client::connect(other_t, &server.base, options("r1"))
        .await
        .unwrap_or_else(|e| panic!("{other_t}: {e}"));
    let id = olga.post("olga", "from another client").await.unwrap();
    let m = next_message(&mut chat).await;
    assert_eq!(
        (m.id, m.user.as_str(), m.text.as_str()),
        (id, "olga", "from another client"),
        "{t}"
    );

    // Its own post lands in r1, and comes back.
    let mine = chat.post("ann", &format!("mine over {t}")).await.unwrap();
    let m = next_message(&mut chat).await;
    assert_eq!((m.id, m.user.as_str()), (mine, "ann"), "{t}");
    let r1 = ids_and_texts(&get_with(&server, "/rooms/r1/poll", None).await);
    assert_eq!(r1[0], (mine, format!("mine over {t}")), "{t}: {r1:?}");
    let general = ids_and_texts(&get_with(&server, "/poll", None).await);
    assert_eq!(
        general
            .iter()
            .map(|(_, text)| text.as_str())
            .collect::<Vec<_>>(),
        ["to general", "g3", "g2", "g1"],
        "{t}: nothing of r1 in general"
    );
    // Another message of general, then one of r1: still only r1's.
    assert_eq!(
        common::post(&server, "gina", "general again")
            .await
            .status(),
        200
    );
    let id = post_in(&server, "r1", None, "rob", "r1 again").await;
    let m = next_message(&mut chat).await;
    assert_eq!((m.id, m.text.as_str()), (id, "r1 again"), "{t}");

    // Resuming after r1's first message: exactly r1's messages after it, then `Resumed`.
    let resumed = Options {
        resume_after: Some(first),
        ..options("r1")
    };
    let mut late = Client::connect(t, &server.base, resumed)
        .await
        .unwrap_or_else(|e| panic!("{t} resume: {e}"));
    assert!(late.history().is_empty(), "{t}");
    let mut got = Vec::new();
    let count = loop {
        match next(&mut late).await {
            Event::Message(m) => got.push(m.text),
            Event::State(State::Resumed { after, count }) => {
                assert_eq!(after, first, "{t}");
                break count;
            }
            Event::State(State::Connected { .. }) => {}
            other => panic!("{t} resume: unexpected {other:?}"),
        }
    };
    let want = [
        "to r1".to_owned(),
        "from another client".to_owned(),
        format!("mine over {t}"),
        "r1 again".to_owned(),
    ];
    assert_eq!(got, want, "{t}: resumed in r1");
    assert_eq!(count, want.len(), "{t}");
}

#[tokio::test]
async fn poll_keeps_to_its_room() {
    keeps_to_its_room(Transport::Poll).await;
}

#[tokio::test]
async fn longpoll_keeps_to_its_room() {
    keeps_to_its_room(Transport::LongPoll).await;
}

#[tokio::test]
async fn stream_keeps_to_its_room() {
    keeps_to_its_room(Transport::Stream).await;
}

#[tokio::test]
async fn sse_keeps_to_its_room() {
    keeps_to_its_room(Transport::Sse).await;
}

#[tokio::test]
async fn ws_keeps_to_its_room() {
    keeps_to_its_room(Transport::Ws).await;
}

#[tokio::test]
async fn socketio_keeps_to_its_room() {
    keeps_to_its_room(Transport::SocketIo).await;
}

/// `POST /me/dm/{uid}` as `token`'s user: the direct message's room.
async fn open_dm(server: &Server, token: &str, with: &str) -> String {
    let res = client()
        .post(server.url(&format!("/me/dm/{with}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let room = body["room"].as_str().unwrap().to_owned();
    assert!(room.starts_with("dm:"), "{room}");
    room
}

#[tokio::test]
async fn a_direct_message_is_chatted_in_by_its_two_users_only() {
    let server = auth::server(&[]);
    let (ann, bob, carol) = (
        auth::token("u-ann", "Ann"),
        auth::token("u-bob", "Bob"),
        auth::token("u-carol", "Carol"),
    );
    let room = open_dm(&server, &ann, "u-bob").await;
    for t in ROOM_TRANSPORTS {
        // Bob chats in it: Ann's messages arrive, his own land in it under his name.
        let mut bobs = Client::connect(t, &server.base, with_token(&room, &bob))
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        let text = format!("ann to bob, {t}");
        let id = post_in(&server, &room, Some(&ann), "", &text).await;
        let m = next_message(&mut bobs).await;
        assert_eq!(
            (m.id, m.text.as_str(), m.uid.as_deref()),
            (id, text.as_str(), Some("u-ann")),
            "{t}"
        );
        let text = format!("bob to ann, {t}");
        let id = bobs.post("", &text).await.unwrap();
        let m = next_message(&mut bobs).await;
        assert_eq!(
            (m.id, m.user.as_str(), m.uid.as_deref()),
            (id, "Bob", Some("u-bob")),
            "{t}"
        );
        let seen_by_ann = get_with(&server, &format!("/rooms/{room}/poll"), Some(&ann)).await;
        assert_eq!(ids_and_texts(&seen_by_ann)[0], (id, text), "{t}");

        // Carol may not: refused at once with the server's reason, not retried.
        let refused = tokio::time::timeout(
            Duration::from_secs(15),
            Client::connect(t, &server.base, with_token(&room, &carol)),
        )
        .await
        .unwrap_or_else(|_| panic!("{t}: Carol's connect neither failed nor succeeded"));
        let Err(e) = refused else {
            panic!("{t}: Carol got into Ann and Bob's direct message");
        };
        assert!(e.to_string().contains("is private"), "{t}: {e}");
        match (&e, t) {
            (Error::RoomRefused { room: r, .. }, Transport::SocketIo) => assert_eq!(r, &room),
            (Error::Forbidden { code, .. }, _) if t != Transport::SocketIo => {
                assert_eq!(code, "not_a_member", "{t}: {e}")
            }
            _ => panic!("{t}: unexpected error {e:?}"),
        }
    }
    // Nothing of it in general.
    let general = get_with(&server, "/poll", Some(&ann)).await;
    assert_eq!(ids_and_texts(&general), [], "{general}");
}

#[tokio::test]
async fn taken_out_of_a_room_the_client_ends_with_the_reason() {
    let server = auth::server(&[]);
    let (ann, bob) = (auth::token("u-ann", "Ann"), auth::token("u-bob", "Bob"));
    // Ann owns the (public) room "club".
    let http = client();
    let settings = |private: bool| {
        http.put(server.url("/rooms/club"))
            .bearer_auth(&ann)
            .json(&json!({ "private": private }))
            .send()
    };
    let res = settings(false).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    post_in(&server, "club", Some(&ann), "", "welcome").await;

    // Bob is in it on every transport.
    let mut bobs = Vec::new();
    for t in ROOM_TRANSPORTS {
        let mut chat = Client::connect(t, &server.base, with_token("club", &bob))
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        assert_eq!(texts(chat.history()), ["welcome"], "{t}");
        match next(&mut chat).await {
            Event::State(State::Connected { .. }) => {}
            other => panic!("{t}: expected Connected, got {other:?}"),
        }
        bobs.push(chat);
    }

    // Ann makes it private: every client of Bob's ends, saying why, and stays ended.
    let res = settings(true).await.unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    for mut chat in bobs {
        let t = chat.transport();
        let e = loop {
            match tokio::time::timeout(Duration::from_secs(20), chat.next()).await {
                Ok(Ok(Event::State(_))) => {}
                Ok(Ok(other)) => panic!("{t}: unexpected {other:?}"),
                Ok(Err(e)) => break e,
                Err(_) => panic!("{t}: still going 20 s after the room turned private"),
            }
        };
        match (&e, t) {
            // The polls learn it from their next request: 403.
            (Error::Forbidden { code, .. }, Transport::Poll | Transport::LongPoll) => {
                assert_eq!(code, "not_a_member", "{t}: {e}")
            }
            // The streams from the server's `left` notice.
            (Error::Removed { room, reason }, _) => {
                assert_eq!(room, "club", "{t}");
                assert!(reason.contains("private"), "{t}: {reason}");
            }
            _ => panic!("{t}: unexpected error {e:?}"),
        }
        assert!(e.to_string().contains("private"), "{t}: {e}");
        assert_eq!(chat.next().await, Err(e), "{t}: it keeps failing");
    }
}

#[tokio::test]
async fn the_courses_general_only_protocols_refuse_a_room_at_start() {
    let server = Server::start(&["--no-tls"]);
    for t in [Transport::WsJson, Transport::SocketIoSnapshots] {
        let e = Client::connect(t, &server.base, options("r1"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{t} connected in room r1"));
        assert!(matches!(e, Error::Unsupported(_)), "{t}: {e:?}");
        assert!(
            e.to_string()
                .contains("--room needs one of poll, longpoll, stream, sse, ws, socketio"),
            "{t}: {e}"
        );
        // `general` named is the course's room: fine.
        let mut chat = Client::connect(t, &server.base, options("general"))
            .await
            .unwrap_or_else(|e| panic!("{t} in general: {e}"));
        let id = chat.post("ann", &format!("{t} in general")).await.unwrap();
        assert_eq!(next_message(&mut chat).await.id, id, "{t}");
    }
    let general = ids_and_texts(&get_with(&server, "/poll", None).await);
    assert_eq!(general.len(), 2, "{general:?}");
}

/// Runs `rtchat client ARGS` with `input` on stdin (then its end): exit success and stdout.
async fn run_cli(args: &[&str], input: &str) -> (bool, String) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtchat"))
        .arg("client")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("RTCHAT_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rtchat client");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("rtchat client exits at the end of its input")
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn the_terminal_chat_posts_into_its_room() {
    let server = Server::start(&["--no-tls"]);
    post_in(&server, "r1", None, "rob", "r1 before").await;
    for t in ["ws", "socketio", "sse"] {
        let text = format!("hi r1 over {t}");
        let (ok, out) = run_cli(
            &["--room", "r1", "-t", t, "--user", "bob", &server.base],
            &format!("{text}\n"),
        )
        .await;
        assert!(ok, "{t}: {out}");
        assert!(out.contains("rob: r1 before"), "{t}: r1's history: {out}");
        let r1 = ids_and_texts(&get_with(&server, "/rooms/r1/poll", None).await);
        assert_eq!(r1[0].1, text, "{t}: {r1:?}");
    }
    let general = get_with(&server, "/poll", None).await;
    assert_eq!(ids_and_texts(&general), [], "nothing in general: {general}");

    // The course's json WebSocket cannot: exit 1, saying which transports can.
    let (ok, out) = run_cli(&["--room", "r1", "-t", "ws-json", &server.base], "x\n").await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("--room needs one of poll, longpoll, stream, sse, ws, socketio"),
        "{out}"
    );
}

#[tokio::test]
async fn the_terminal_chat_in_a_direct_message() {
    let server = auth::server(&[]);
    let (ann, bob, carol) = (
        auth::token("u-ann", "Ann"),
        auth::token("u-bob", "Bob"),
        auth::token("u-carol", "Carol"),
    );
    let room = open_dm(&server, &ann, "u-bob").await;
    let (ok, out) = run_cli(
        &[
            "--token",
            &bob,
            "--room",
            &room,
            "-t",
            "longpoll",
            &server.base,
        ],
        "hello ann\n",
    )
    .await;
    assert!(ok, "{out}");
    let page = get_with(&server, &format!("/rooms/{room}/poll"), Some(&ann)).await;
    assert_eq!(page["msg"][0]["text"], "hello ann", "{page}");
    assert_eq!(page["msg"][0]["uid"], "u-bob", "{page}");

    // Carol: refused, exit 1, with the reason (not retried forever).
    let (ok, out) = run_cli(
        &["--token", &carol, "--room", &room, "-t", "ws", &server.base],
        "let me in\n",
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("! error: ") && out.contains("is private"),
        "{out}"
    );
    assert!(out.contains("not_a_member"), "{out}");
}

#[tokio::test]
async fn http3_uses_the_rooms_paths() {
    let server = Server::start(&["--store", "memory"]);
    assert_eq!(common::post(&server, "gina", "g1").await.status(), 200);
    post_in(&server, "r1", None, "rob", "r1 first").await;
    let url = server.tls_url("").replace("127.0.0.1", "localhost");
    let ca = server.data_dir.join("tls/cert.pem");
    for t in [
        Transport::Poll,
        Transport::LongPoll,
        Transport::Stream,
        Transport::Sse,
    ] {
        let options = Options {
            http3: true,
            ca_file: Some(ca.clone()),
            ..options("r1")
        };
        let mut chat = Client::connect(t, &url, options)
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        // r1's history, oldest first "r1 first", and none of general's.
        let history = texts(chat.history());
        assert_eq!(history.last(), Some(&"r1 first"), "{t}: {history:?}");
        assert!(
            history
                .iter()
                .all(|text| !text.contains("general") && *text != "g1"),
            "{t}: {history:?}"
        );
        match next(&mut chat).await {
            Event::State(State::Connected { via }) => assert!(via.contains("HTTP/3"), "{t}: {via}"),
            other => panic!("{t}: expected Connected, got {other:?}"),
        }
        assert_eq!(
            common::post(&server, "gina", "to general").await.status(),
            200
        );
        let mine = chat.post("ann", &format!("h3 {t}")).await.unwrap();
        let m = next_message(&mut chat).await;
        assert_eq!((m.id, m.text.clone()), (mine, format!("h3 {t}")), "{t}");
        let r1 = ids_and_texts(&get_with(&server, "/rooms/r1/poll", None).await);
        assert_eq!(r1[0], (mine, format!("h3 {t}")), "{t}");
    }
}

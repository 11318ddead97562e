//! Rooms, presence and typing over rtchat.v1 WebSockets (issue 13), against a real rtchat
//! process with tokio-tungstenite (and, for today's clients, rtchat's client library and
//! Python's `websockets`): rooms are isolated, joins answer `joined` and the history before any
//! live message, each room resumes on its own (across a restart), presence counts a user once,
//! typing reaches the others only, refusals are error frames, and clients that know nothing of
//! rooms — rtchat.v1 and the course's `json` — see what they always saw.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};

use common::{run_py, temp_dir, wait_for_stat, ws_connect, ws_json, ws_url, Server, Ws};
use futures::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const V1: &[&str] = &["rtchat.v1"];

async fn open(server: &Server, path: &str) -> Ws {
    ws_connect(server, path, V1).await
}

async fn send(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// The next frame that is not a presence frame (presence comes whenever named users come and
/// go; tests that look at it read it with [`wait_presence`]).
async fn next(ws: &mut Ws) -> Value {
    loop {
        let frame = ws_json(ws).await;
        if frame["type"] != "presence" {
            return frame;
        }
    }
}

/// The frames a room's start brings after `joined`: its history.
async fn history(ws: &mut Ws, room: &str) -> Value {
    let history = next(ws).await;
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(history["room"], room, "{history}");
    history
}

/// `joined` for `room` (checked), then its history; returns both.
async fn started(ws: &mut Ws, room: &str) -> (Value, Value) {
    let joined = next(ws).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["room"], room, "{joined}");
    let history = history(ws, room).await;
    assert_eq!(history["last"], joined["last"]);
    assert_eq!(history["epoch"], joined["epoch"]);
    (joined, history)
}

/// Sends a join for `room` (its name as `ref`) and reads `joined` and the history.
async fn join(ws: &mut Ws, room: &str) -> (Value, Value) {
    send(ws, json!({"type": "join", "room": room, "ref": room})).await;
    let (joined, history) = started(ws, room).await;
    assert_eq!(joined["ref"], room);
    (joined, history)
}

/// Posts `text` to `room` from a connection that is in no room, and returns its id.
async fn post_to(poster: &mut Ws, room: &str, text: &str) -> u64 {
    send(
        poster,
        json!({"type": "post", "room": room, "user": "poster", "text": text, "ref": text}),
    )
    .await;
    let ack = next(poster).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["ref"], text);
    assert_eq!(ack["room"], room);
    ack["id"].as_u64().unwrap()
}

/// A connection in no room, for posting.
async fn poster(server: &Server) -> Ws {
    open(server, "/ws?rooms=").await
}

/// The message of a `msg` frame of `room`: (id, text).
fn msg_of(frame: &Value, room: &str) -> (u64, String) {
    assert_eq!(frame["type"], "msg", "{frame}");
    assert_eq!(frame["room"], room, "{frame}");
    (
        frame["msg"]["id"].as_u64().unwrap(),
        frame["msg"]["text"].as_str().unwrap().to_owned(),
    )
}

fn texts(history: &Value) -> Vec<&str> {
    history["msg"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn each_room_gets_exactly_its_messages_in_order_with_its_own_ids() {
    let server = Server::start(&["--post-rate", "0"]);
    let mut a1 = open(&server, "/ws?rooms=a").await;
    let mut a2 = open(&server, "/ws?rooms=a").await;
    let mut b1 = open(&server, "/ws?rooms=b").await;
    let mut both = open(&server, "/ws?rooms=a,b").await;
    let mut general = open(&server, "/ws").await;
    for ws in [&mut a1, &mut a2] {
        let (joined, _) = started(ws, "a").await;
        assert_eq!(joined["last"], 0);
    }
    started(&mut b1, "b").await;
    started(&mut both, "a").await;
    started(&mut both, "b").await;
    history(&mut general, "general").await;

    // Pipelined: every post is sent before any ack is read.
    let mut poster = poster(&server).await;
    const N: u64 = 40;
    for i in 0..N {
        for room in ["a", "b"] {
            let post = json!({"type": "post", "room": room, "user": "p", "text": format!("{room}{i}"), "ref": format!("{room}{i}")});
            send(&mut poster, post).await;
        }
    }
    let mut acked: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..2 * N {
        let ack = next(&mut poster).await;
        assert_eq!(ack["type"], "ack", "{ack}");
        let room = ack["room"].as_str().unwrap().to_owned();
        assert!(ack["ref"].as_str().unwrap().starts_with(&room));
        acked
            .entry(room)
            .or_default()
            .push(ack["id"].as_u64().unwrap());
    }
    let ids: Vec<u64> = (1..=N).collect();
    assert_eq!(acked["a"], ids, "each room numbers its own messages");
    assert_eq!(acked["b"], ids);

    for (ws, room) in [(&mut a1, "a"), (&mut a2, "a"), (&mut b1, "b")] {
        for i in 0..N {
            let (id, text) = msg_of(&next(ws).await, room);
            assert_eq!((id, text), (i + 1, format!("{room}{i}")));
        }
    }
    let mut per_room: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..2 * N {
        let frame = next(&mut both).await;
        let room = frame["room"].as_str().unwrap().to_owned();
        let (id, text) = msg_of(&frame, &room);
        assert_eq!(text, format!("{room}{}", id - 1));
        per_room.entry(room).or_default().push(id);
    }
    assert_eq!(per_room["a"], ids, "in order, once each");
    assert_eq!(per_room["b"], ids);

    // Nothing of a or b reached `general`, nor anything of general the rooms: each one's next
    // frame is its own room's next message.
    post_to(&mut poster, "general", "g").await;
    assert_eq!(
        msg_of(&next(&mut general).await, "general"),
        (1, "g".into())
    );
    post_to(&mut poster, "b", "b-last").await;
    post_to(&mut poster, "a", "a-last").await;
    assert_eq!(msg_of(&next(&mut a1).await, "a").1, "a-last");
    assert_eq!(msg_of(&next(&mut b1).await, "b").1, "b-last");
    assert_eq!(msg_of(&next(&mut both).await, "b").1, "b-last");
    assert_eq!(msg_of(&next(&mut both).await, "a").1, "a-last");
}

#[tokio::test]
async fn join_and_leave_answer_by_ref_and_the_history_comes_after_joined() {
    let server = Server::start(&[]);
    let mut poster = poster(&server).await;
    for i in 1..=3 {
        assert_eq!(
            post_to(&mut poster, "r", &format!("r{i}")).await,
            i,
            "a post creates r"
        );
    }
    let mut ws = open(&server, "/ws").await;
    let start = history(&mut ws, "general").await;
    let epoch = start["epoch"].as_str().unwrap().to_owned();

    send(&mut ws, json!({"type": "join", "room": "r", "ref": "j1"})).await;
    let joined = next(&mut ws).await;
    let r_epoch = joined["epoch"].clone();
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "r", "ref": "j1", "last": 3, "epoch": r_epoch})
    );
    assert_ne!(r_epoch, epoch, "each room has its epoch");
    let history = next(&mut ws).await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["room"], "r");
    assert_eq!(history["last"], 3);
    assert_eq!(texts(&history), ["r3", "r2", "r1"]);

    post_to(&mut poster, "r", "r4").await;
    assert_eq!(msg_of(&next(&mut ws).await, "r"), (4, "r4".into()));

    send(&mut ws, json!({"type": "leave", "room": "r", "ref": 7})).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "left", "room": "r", "ref": 7})
    );
    post_to(&mut poster, "r", "r5").await;
    post_to(&mut poster, "general", "g1").await;
    assert_eq!(
        msg_of(&next(&mut ws).await, "general"),
        (1, "g1".into()),
        "nothing of r after left"
    );

    // A frame without a room is about general; a join without ref gets none back.
    send(&mut ws, json!({"type": "leave"})).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "left", "room": "general"})
    );
    send(&mut ws, json!({"type": "join"})).await;
    let (joined, history) = started(&mut ws, "general").await;
    assert_eq!(joined.get("ref"), None);
    assert_eq!(joined["epoch"], epoch.as_str());
    assert_eq!(texts(&history), ["g1"]);
    send(&mut ws, json!({"type": "join", "room": "r"})).await;
    let (_, history) = started(&mut ws, "r").await;
    assert_eq!(texts(&history), ["r5", "r4", "r3", "r2", "r1"]);
}

#[tokio::test]
async fn a_join_while_messages_flow_gets_each_later_message_once_after_its_history() {
    let server = Server::start(&["--post-rate", "0", "--history", "20"]);
    let mut poster = poster(&server).await;
    post_to(&mut poster, "busy", "first").await;
    const TOTAL: u64 = 400;
    // The poster pipelines the rest while three clients join.
    let posting = tokio::spawn(async move {
        for i in 2..=TOTAL {
            let post = json!({"type": "post", "room": "busy", "user": "p", "text": format!("m{i}"), "ref": i});
            send(&mut poster, post).await;
        }
        for _ in 2..=TOTAL {
            assert_eq!(next(&mut poster).await["type"], "ack");
        }
    });
    let mut joiners = Vec::new();
    for k in 0..3 {
        let mut ws = if k == 0 {
            open(&server, "/ws?rooms=busy").await
        } else {
            let mut ws = open(&server, "/ws?rooms=").await;
            send(&mut ws, json!({"type": "join", "room": "busy"})).await;
            ws
        };
        joiners.push(tokio::spawn(async move {
            let (joined, history) = started(&mut ws, "busy").await;
            let last = joined["last"].as_u64().unwrap();
            let newest = history["msg"][0]["id"].as_u64().unwrap();
            assert_eq!(newest, last, "the history ends where joined says");
            for want in last + 1..=TOTAL {
                let (id, text) = msg_of(&next(&mut ws).await, "busy");
                assert_eq!((id, text), (want, format!("m{want}")), "after {last}");
            }
            last
        }));
    }
    posting.await.unwrap();
    for joiner in joiners {
        joiner.await.unwrap();
    }
}

#[tokio::test]
async fn joins_resume_each_room_exactly_once_across_a_restart() {
    let dir = temp_dir("rooms-ws-resume");
    let dir = dir.to_str().unwrap().to_owned();
    let args = ["--data-dir", dir.as_str(), "--store", "sqlite"];
    let mut server = Server::start(&args);
    let mut poster_ws = poster(&server).await;
    for i in 1..=5 {
        post_to(&mut poster_ws, "a", &format!("a{i}")).await;
    }
    for i in 1..=3 {
        post_to(&mut poster_ws, "b", &format!("b{i}")).await;
    }
    let mut ws = open(&server, "/ws?rooms=a,b").await;
    let (a, _) = started(&mut ws, "a").await;
    let (b, _) = started(&mut ws, "b").await;
    assert_eq!((a["last"].as_u64(), b["last"].as_u64()), (Some(5), Some(3)));
    let (epoch_a, epoch_b) = (a["epoch"].clone(), b["epoch"].clone());
    drop(ws);
    drop(poster_ws);
    server
        .terminate(std::time::Duration::from_secs(10))
        .expect("stops");

    let server = Server::start(&args);
    let mut poster_ws = poster(&server).await;
    for i in 6..=8 {
        assert_eq!(post_to(&mut poster_ws, "a", &format!("a{i}")).await, i);
    }
    for i in 4..=5 {
        assert_eq!(post_to(&mut poster_ws, "b", &format!("b{i}")).await, i);
    }
    let mut ws = open(&server, "/ws?rooms=").await;
    send(
        &mut ws,
        json!({"type": "join", "room": "a", "since": 5, "epoch": epoch_a, "ref": 1}),
    )
    .await;
    send(
        &mut ws,
        json!({"type": "join", "room": "b", "since": 3, "epoch": epoch_b, "ref": 2}),
    )
    .await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "joined", "room": "a", "ref": 1, "last": 8, "epoch": epoch_a}),
        "a SQLite room keeps its epoch across a restart"
    );
    for want in 6..=8 {
        assert_eq!(
            msg_of(&next(&mut ws).await, "a"),
            (want, format!("a{want}"))
        );
    }
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "resumed", "room": "a", "after": 5, "count": 3, "last": 8, "epoch": epoch_a})
    );
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "joined", "room": "b", "ref": 2, "last": 5, "epoch": epoch_b})
    );
    for want in 4..=5 {
        assert_eq!(
            msg_of(&next(&mut ws).await, "b"),
            (want, format!("b{want}"))
        );
    }
    assert_eq!(next(&mut ws).await["type"], "resumed");
    // Then live, no repeats.
    post_to(&mut poster_ws, "a", "a9").await;
    assert_eq!(msg_of(&next(&mut ws).await, "a"), (9, "a9".into()));

    // The upgrade resumes the one room it names.
    let url = format!("/ws?rooms=b&since=4&epoch={}", epoch_b.as_str().unwrap());
    let mut one = open(&server, &url).await;
    let joined = next(&mut one).await;
    assert_eq!(
        (joined["type"].as_str(), joined["last"].as_u64()),
        (Some("joined"), Some(5))
    );
    assert_eq!(msg_of(&next(&mut one).await, "b"), (5, "b5".into()));
    assert_eq!(next(&mut one).await["type"], "resumed");

    // Another epoch (or an id never handed out) resets that room: reset, then its history.
    send(&mut ws, json!({"type": "leave", "room": "b"})).await;
    assert_eq!(next(&mut ws).await["type"], "left");
    send(
        &mut ws,
        json!({"type": "join", "room": "b", "since": 2, "epoch": "zzzzzzzz"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "joined");
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "reset", "room": "b", "last": 5, "epoch": epoch_b})
    );
    assert_eq!(
        texts(&history(&mut ws, "b").await),
        ["b5", "b4", "b3", "b2", "b1"]
    );
    let mut late = open(&server, "/ws?rooms=").await;
    send(
        &mut late,
        json!({"type": "join", "room": "a", "since": 99, "epoch": epoch_a}),
    )
    .await;
    assert_eq!(next(&mut late).await["type"], "joined");
    assert_eq!(next(&mut late).await["type"], "reset");
    history(&mut late, "a").await;
}

/// Reads presence frames of `room` (skipping anything else), applying them to `present`, until
/// it is `want`; returns them.
async fn wait_presence(
    ws: &mut Ws,
    room: &str,
    present: &mut BTreeSet<String>,
    want: &[&str],
) -> Vec<Value> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let mut seen = Vec::new();
    while *present != want {
        let frame = ws_json(ws).await;
        if frame["type"] != "presence" {
            continue;
        }
        assert_eq!(frame["room"], room, "{frame}");
        let names = |key: &str| -> Vec<String> {
            frame[key]
                .as_array()
                .unwrap_or_else(|| panic!("{frame}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        for user in names("joined") {
            assert!(present.insert(user.clone()), "{user} joined twice: {frame}");
        }
        for user in names("left") {
            assert!(
                present.remove(&user),
                "{user} left without joining: {frame}"
            );
        }
        seen.push(frame);
    }
    seen
}

fn mentions(frames: &[Value], user: &str) -> bool {
    frames.iter().any(|f| {
        ["joined", "left"]
            .iter()
            .any(|k| f[k].as_array().unwrap().iter().any(|u| u == user))
    })
}

#[tokio::test]
async fn presence_tells_who_comes_and_goes_counting_a_user_once() {
    let server = Server::start(&[]);
    let mut ann = open(&server, "/ws?rooms=p&user=ann").await;
    started(&mut ann, "p").await;
    let mut present = BTreeSet::new();
    wait_presence(&mut ann, "p", &mut present, &["ann"]).await;

    let mut bob1 = open(&server, "/ws?rooms=p&user=bob").await;
    started(&mut bob1, "p").await;
    let seen = wait_presence(&mut ann, "p", &mut present, &["ann", "bob"]).await;
    assert!(
        seen.iter().all(|f| f.as_object().unwrap().len() == 4),
        "{{type, room, joined, left}}: {seen:?}"
    );
    // A second connection of bob, and an unnamed one: no change, so nothing to tell. Carol
    // (named by her join frame) then shows that nothing was.
    let mut bob2 = open(&server, "/ws?rooms=p&user=bob").await;
    started(&mut bob2, "p").await;
    let mut nobody = open(&server, "/ws?rooms=p").await;
    started(&mut nobody, "p").await;
    let mut carol = open(&server, "/ws?rooms=").await;
    send(
        &mut carol,
        json!({"type": "join", "room": "p", "user": "carol"}),
    )
    .await;
    started(&mut carol, "p").await;
    let seen = wait_presence(&mut ann, "p", &mut present, &["ann", "bob", "carol"]).await;
    assert!(!mentions(&seen, "bob"), "bob's second connection: {seen:?}");

    // bob's first connection goes (the server has let it go once its subscription is gone):
    // bob is still in through the second.
    let subscribers = common::stat(&server, "subscribers").await;
    drop(bob1);
    wait_for_stat(&server, "subscribers", subscribers - 1).await;
    let mut dave = open(&server, "/ws?rooms=p&user=dave").await;
    started(&mut dave, "p").await;
    let seen = wait_presence(
        &mut ann,
        "p",
        &mut present,
        &["ann", "bob", "carol", "dave"],
    )
    .await;
    assert!(
        !mentions(&seen, "bob"),
        "bob has a connection left: {seen:?}"
    );

    // His last one leaves the room: now he is gone.
    send(&mut bob2, json!({"type": "leave", "room": "p"})).await;
    assert_eq!(next(&mut bob2).await["type"], "left");
    let seen = wait_presence(&mut ann, "p", &mut present, &["ann", "carol", "dave"]).await;
    assert!(seen.iter().any(|f| f["left"] == json!(["bob"])), "{seen:?}");

    // A join (or typing) naming someone else renames the connection, in all its rooms.
    send(
        &mut carol,
        json!({"type": "join", "room": "q", "user": "zed"}),
    )
    .await;
    started(&mut carol, "q").await;
    let seen = wait_presence(&mut ann, "p", &mut present, &["ann", "dave", "zed"]).await;
    assert!(mentions(&seen, "carol"), "{seen:?}");
}

#[tokio::test]
async fn typing_reaches_the_others_not_the_typer_at_most_once_a_second_and_is_not_stored() {
    let server = Server::start(&[]);
    let mut ann = open(&server, "/ws?rooms=t&user=ann").await;
    let mut ann2 = open(&server, "/ws?rooms=t&user=ann").await;
    let mut bob = open(&server, "/ws?rooms=t&user=bob").await;
    for ws in [&mut ann, &mut ann2, &mut bob] {
        started(ws, "t").await;
    }
    // Twice at once: the second is dropped (one a second per user and room), silently.
    send(&mut ann, json!({"type": "typing", "room": "t"})).await;
    send(&mut ann, json!({"type": "typing", "room": "t"})).await;
    send(
        &mut ann,
        json!({"type": "post", "room": "t", "user": "ann", "text": "after typing", "ref": 1}),
    )
    .await;
    // (Signals and messages are two streams: between them, no order.)
    let mut got = [next(&mut bob).await, next(&mut bob).await];
    got.sort_by_key(|f| f["type"].as_str().unwrap().to_owned());
    assert_eq!(msg_of(&got[0], "t").1, "after typing");
    assert_eq!(
        got[1],
        json!({"type": "typing", "room": "t", "user": "ann"})
    );
    send(&mut bob, json!({"type": "typing", "room": "t"})).await;
    // ann's connections did not hear their own typing: the message, then bob's.
    assert_eq!(msg_of(&next(&mut ann2).await, "t").1, "after typing");
    assert_eq!(
        next(&mut ann2).await,
        json!({"type": "typing", "room": "t", "user": "bob"})
    );
    // ann's own connection: the ack, the message and bob's typing (the ack may come last).
    let mut got = [
        next(&mut ann).await,
        next(&mut ann).await,
        next(&mut ann).await,
    ];
    got.sort_by_key(|f| f["type"].as_str().unwrap().to_owned());
    assert_eq!(got[0]["type"], "ack");
    assert_eq!(msg_of(&got[1], "t").1, "after typing");
    assert_eq!(
        got[2],
        json!({"type": "typing", "room": "t", "user": "bob"})
    );

    // ann's second typing was dropped: nothing of it before bob's next message.
    send(
        &mut bob,
        json!({"type": "post", "room": "t", "user": "bob", "text": "sync", "ref": 1}),
    )
    .await;
    let (mut acked, mut heard) = (false, false);
    while !(acked && heard) {
        let frame = next(&mut bob).await;
        assert_ne!(frame["type"], "typing", "typed once: {frame}");
        if frame["type"] == "msg" {
            assert_eq!(msg_of(&frame, "t").1, "sync");
            heard = true;
        } else {
            assert_eq!(frame["type"], "ack", "{frame}");
            acked = true;
        }
    }

    // Never stored: a newcomer's history has the messages only.
    let mut newcomer = open(&server, "/ws?rooms=t").await;
    let (_, history) = started(&mut newcomer, "t").await;
    assert_eq!(texts(&history), ["sync", "after typing"]);

    // Typing needs a name, and a room the connection is in.
    send(
        &mut newcomer,
        json!({"type": "typing", "room": "t", "ref": "x"}),
    )
    .await;
    let error = next(&mut newcomer).await;
    assert_eq!(
        (error["type"].as_str(), error["ref"].as_str()),
        (Some("error"), Some("x"))
    );
    assert!(
        error["error"].as_str().unwrap().contains("needs a name"),
        "{error}"
    );
    send(&mut bob, json!({"type": "typing", "room": "elsewhere"})).await;
    let error = next(&mut bob).await;
    assert_eq!(
        (error["type"].as_str(), error["room"].as_str()),
        (Some("error"), Some("elsewhere"))
    );
    // A `user` in the frame names an unnamed connection; the others hear it.
    send(
        &mut newcomer,
        json!({"type": "typing", "room": "t", "user": "cy"}),
    )
    .await;
    assert_eq!(
        next(&mut bob).await,
        json!({"type": "typing", "room": "t", "user": "cy"})
    );
}

/// The next frame, checked to be an error about `room` with `ref` and `text`.
async fn refused(ws: &mut Ws, reference: Value, room: &str, text: &str) {
    assert_eq!(
        next(ws).await,
        json!({"type": "error", "ref": reference, "room": room, "error": text})
    );
}

#[tokio::test]
async fn refusals_are_error_frames_and_the_connection_stays_usable() {
    let server = Server::start(&["--max-rooms", "3", "--max-joined-rooms", "2"]);
    let mut ws = open(&server, "/ws").await;
    history(&mut ws, "general").await;
    let bad = "room names are 1 to 64 characters of a-z, 0-9, - and _ (or a direct message's dm:<16 hex digits>); got \"Foo!\"";
    send(&mut ws, json!({"type": "join", "room": "Foo!", "ref": 1})).await;
    refused(&mut ws, json!(1), "Foo!", bad).await;
    send(
        &mut ws,
        json!({"type": "join", "room": "general", "ref": 2}),
    )
    .await;
    refused(
        &mut ws,
        json!(2),
        "general",
        "this connection is already in room \"general\"",
    )
    .await;
    send(&mut ws, json!({"type": "leave", "room": "x", "ref": 3})).await;
    refused(
        &mut ws,
        json!(3),
        "x",
        "this connection is not in room \"x\"",
    )
    .await;
    send(&mut ws, json!({"type": "leave", "room": "Foo!", "ref": 4})).await;
    refused(&mut ws, json!(4), "Foo!", bad).await;

    join(&mut ws, "a").await;
    let mut poster = poster(&server).await;
    post_to(&mut poster, "a", "keeps a").await;
    assert_eq!(msg_of(&next(&mut ws).await, "a").1, "keeps a");
    let max_joined =
        "this connection is already in 2 rooms, its maximum (--max-joined-rooms); leave one first";
    send(&mut ws, json!({"type": "join", "room": "b", "ref": 5})).await;
    refused(&mut ws, json!(5), "b", max_joined).await;
    send(&mut ws, json!({"type": "leave", "room": "a", "ref": 6})).await;
    assert_eq!(
        next(&mut ws).await,
        json!({"type": "left", "room": "a", "ref": 6})
    );
    join(&mut ws, "b").await;
    post_to(&mut poster, "b", "keeps b").await;
    assert_eq!(msg_of(&next(&mut ws).await, "b").1, "keeps b");

    // general, a and b: a fourth room is one too many, to join or to post in.
    let max_rooms = "this server already holds its maximum of 3 rooms (--max-rooms); join or post in an existing room";
    send(&mut ws, json!({"type": "leave", "room": "b"})).await;
    assert_eq!(next(&mut ws).await["type"], "left");
    send(&mut ws, json!({"type": "join", "room": "c", "ref": 7})).await;
    refused(&mut ws, json!(7), "c", max_rooms).await;
    send(
        &mut ws,
        json!({"type": "post", "room": "c", "user": "u", "text": "t", "ref": 8}),
    )
    .await;
    refused(&mut ws, json!(8), "c", max_rooms).await;
    send(
        &mut ws,
        json!({"type": "post", "room": "Foo!", "user": "u", "text": "t", "ref": 9}),
    )
    .await;
    refused(&mut ws, json!(9), "Foo!", bad).await;
    send(
        &mut ws,
        json!({"type": "post", "room": 5, "user": "u", "text": "t", "ref": 10}),
    )
    .await;
    let error = next(&mut ws).await;
    assert_eq!(error["error"], "\"room\" must be a string", "{error}");
    send(&mut ws, json!({"type": "join", "room": ["a"], "ref": 11})).await;
    let error = next(&mut ws).await;
    assert_eq!(
        (error["type"].as_str(), error["ref"].as_i64()),
        (Some("error"), Some(11))
    );
    send(&mut ws, json!({"type": "wave", "ref": 12})).await;
    let error = next(&mut ws).await;
    assert_eq!(error["ref"], 12);
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("post, join, leave or typing"));

    // Still usable: posts, joins.
    send(
        &mut ws,
        json!({"type": "post", "user": "u", "text": "still here", "ref": 13}),
    )
    .await;
    let mut got = [next(&mut ws).await, next(&mut ws).await];
    got.sort_by_key(|f| f["type"].as_str().unwrap().to_owned());
    assert_eq!(
        got[0],
        json!({"type": "ack", "ref": 13, "room": "general", "id": 1})
    );
    assert_eq!(msg_of(&got[1], "general").1, "still here");
    join(&mut ws, "a").await;

    // Upgrades that cannot be honoured are refused with a JSON body.
    for (path, protocol, status, text) in [
        ("/ws?rooms=Foo!", "rtchat.v1", 400, bad),
        (
            "/ws?rooms=a,b,general",
            "rtchat.v1",
            400,
            "a connection may be in at most 2",
        ),
        (
            "/ws?rooms=a,b&since=1",
            "rtchat.v1",
            400,
            "since and epoch resume one room",
        ),
        ("/ws?rooms=d", "rtchat.v1", 403, max_rooms),
        (
            "/ws?since=x",
            "rtchat.v1",
            400,
            "since must be a message id",
        ),
        (
            "/ws?user=%E2%80%AEevil",
            "rtchat.v1",
            400,
            "bidirectional control",
        ),
        // `?user=` is rtchat's on the course's subprotocol too: refused the same way.
        (
            "/ws?user=%E2%80%AEevil",
            "json",
            400,
            "bidirectional control",
        ),
    ] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = ws_url(&server, path).into_client_request().unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
                assert_eq!(res.status(), status, "{path}");
                let body: Value = serde_json::from_slice(res.body().as_ref().unwrap()).unwrap();
                let error = body["error"].as_str().unwrap();
                assert!(error.contains(text), "{path}: {error}");
            }
            other => panic!("{path}: expected {status}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn one_connection_in_many_rooms_hears_each_until_it_leaves() {
    let server = Server::start(&["--post-rate", "0", "--max-joined-rooms", "30"]);
    let mut ws = open(&server, "/ws?rooms=").await;
    let rooms: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
    for room in &rooms {
        join(&mut ws, room).await;
    }
    let mut poster = poster(&server).await;
    for round in 0..3 {
        for room in &rooms {
            post_to(&mut poster, room, &format!("{room}-{round}")).await;
        }
    }
    let mut heard: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for _ in 0..3 * rooms.len() {
        let frame = next(&mut ws).await;
        let room = frame["room"].as_str().unwrap().to_owned();
        let (id, text) = msg_of(&frame, &room);
        assert_eq!(text, format!("{room}-{}", id - 1));
        heard.entry(room).or_default().push(id);
    }
    assert_eq!(heard.len(), rooms.len());
    assert!(heard.values().all(|ids| ids == &[1, 2, 3]), "{heard:?}");

    // Leave the first room (polled in place) and one of the others.
    for room in ["r0", "r7"] {
        send(&mut ws, json!({"type": "leave", "room": room})).await;
        assert_eq!(next(&mut ws).await, json!({"type": "left", "room": room}));
    }
    post_to(&mut poster, "r0", "gone").await;
    post_to(&mut poster, "r7", "gone").await;
    post_to(&mut poster, "r19", "still").await;
    assert_eq!(msg_of(&next(&mut ws).await, "r19").1, "still");
    // Back in r7 (now the room polled in place) and r0.
    for room in ["r7", "r0"] {
        let (_, history) = join(&mut ws, room).await;
        assert_eq!(texts(&history)[0], "gone");
        post_to(&mut poster, room, "back").await;
        assert_eq!(msg_of(&next(&mut ws).await, room).1, "back");
    }
}

#[tokio::test]
async fn a_room_beyond_the_first_that_falls_behind_catches_up_from_the_store() {
    let server = Server::start(&["--post-rate", "0", "--history", "10"]);
    // `x` is polled in place; `y` waits in a future of its own.
    let mut ws = open(&server, "/ws?rooms=x,y").await;
    started(&mut ws, "x").await;
    started(&mut ws, "y").await;
    // It reads nothing while 6,000 messages of about 2 KB go to y: the socket's buffers fill
    // and its place in y's stream is overtaken.
    let mut poster = poster(&server).await;
    const N: u64 = 6000;
    let text = "z".repeat(1900);
    for i in 1..=N {
        let post = json!({"type": "post", "room": "y", "user": "p", "text": format!("{i} {text}"), "ref": i});
        send(&mut poster, post).await;
    }
    for _ in 1..=N {
        assert_eq!(next(&mut poster).await["type"], "ack");
    }
    for want in 1..=N {
        let (id, text) = msg_of(&next(&mut ws).await, "y");
        assert_eq!(id, want);
        assert!(text.starts_with(&format!("{want} ")));
    }
    let lagged = common::metric(&server, "rtchat_lagged_subscribers_total", &[]).await;
    assert!(lagged > 0.0, "the test made it fall behind");
    post_to(&mut poster, "x", "x after").await;
    assert_eq!(msg_of(&next(&mut ws).await, "x").1, "x after");
}

#[tokio::test]
async fn a_client_that_knows_no_rooms_sees_general_as_before() {
    use rtchat_client::{Client, Event, Options, Transport};
    let server = Server::start(&[]);
    let mut client = Client::connect(Transport::Ws, &server.base, Options::default())
        .await
        .unwrap();
    // Meanwhile, in general: a named user comes in (presence), types, posts in another room.
    let mut ann = open(&server, "/ws?user=ann").await;
    history(&mut ann, "general").await;
    send(&mut ann, json!({"type": "typing"})).await;
    send(
        &mut ann,
        json!({"type": "post", "room": "other", "user": "ann", "text": "elsewhere", "ref": 1}),
    )
    .await;
    assert_eq!(next(&mut ann).await["type"], "ack");
    send(
        &mut ann,
        json!({"type": "post", "user": "ann", "text": "hello", "ref": 2}),
    )
    .await;
    let id = client.post("bob", "hi").await.unwrap();
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match tokio::time::timeout(std::time::Duration::from_secs(15), client.next())
            .await
            .expect("an event within 15 s")
            .expect("the client runs")
        {
            Event::Message(m) => texts.push((m.id, m.text)),
            Event::State(_) => {}
            Event::Deleted { id } => panic!("unexpected deletion of #{id}"),
        }
    }
    texts.sort();
    let mut want = [(id, "hi".to_owned()), (3 - id, "hello".to_owned())];
    want.sort();
    assert_eq!(texts, want, "general's two messages, once each");

    // Python's `websockets` as an rtchat.v1 client: history first, its post comes back.
    let out = run_py("ws_chat.py", &[&ws_url(&server, "/ws"), "rtchat.v1", "py"]);
    assert_eq!(out["subprotocol"], "rtchat.v1");
    assert_eq!(out["first_type"], "history");
    assert_eq!(out["first_count"], 2);
}

#[tokio::test]
async fn the_course_json_protocol_is_general_only_and_unchanged() {
    let server = Server::start(&[]);
    // `rooms`, `user` and `since` mean nothing to it.
    let mut course = ws_connect(&server, "/ws?rooms=a&user=x&since=1", &["json"]).await;
    let first = ws_json(&mut course).await;
    let epoch = first["epoch"].clone();
    assert_eq!(first, json!({"msg": [], "last": 0, "epoch": epoch}));
    let mut ann = open(&server, "/ws?rooms=a,general&user=ann").await;
    started(&mut ann, "a").await;
    started(&mut ann, "general").await;
    send(&mut ann, json!({"type": "typing", "room": "general"})).await;
    send(
        &mut ann,
        json!({"type": "post", "room": "a", "user": "ann", "text": "in a", "ref": 1}),
    )
    .await;
    send(
        &mut ann,
        json!({"type": "post", "user": "ann", "text": "in general", "ref": 2}),
    )
    .await;
    // No presence, typing or room a: the next frame is general's snapshot.
    let snapshot = ws_json(&mut course).await;
    assert_eq!(snapshot.as_object().unwrap().len(), 3, "{snapshot}");
    assert_eq!(snapshot["last"], 1);
    assert_eq!(snapshot["msg"][0]["text"], "in general");
    send(
        &mut course,
        json!({"user": "x", "text": "from the course", "room": "a"}),
    )
    .await;
    let snapshot = ws_json(&mut course).await;
    assert_eq!(
        snapshot["msg"][0]["text"], "from the course",
        "posted in general"
    );
    send(&mut course, json!({"user": "x", "text": ""})).await;
    assert_eq!(
        ws_json(&mut course).await,
        json!({"error": "\"text\" must not be empty"})
    );
}

//! Rooms, presence and typing over HTTP (`/rooms`, `/rooms/{room}/poll|msgs|events|presence|
//! typing`) against a real rtchat process. Waits are on events the server sends (or on its
//! own counts), never on sleeps.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{
    client, fetch_json, get_json, ids, spawn_poll, temp_dir, texts, wait_for_stat, Server, Sse,
};
use serde_json::{json, Value};

const BAD_NAME: &str = "room names are 1 to 64 characters of a-z, 0-9, - and _ (or a direct message's dm:<16 hex digits>); got";

fn bad_name(name: &str) -> String {
    format!("{BAD_NAME} {name:?}")
}

fn max_rooms(n: usize) -> String {
    format!("this server already holds its maximum of {n} rooms (--max-rooms); join or post in an existing room")
}

/// `POST /rooms/{room}/{leaf}` a message, asserting a 200; its id.
async fn post_in(server: &Server, room: &str, leaf: &str, user: &str, text: &str) -> u64 {
    let res = client()
        .post(server.url(&format!("/rooms/{room}/{leaf}")))
        .json(&json!({ "user": user, "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "post in {room}");
    let ack: Value = res.json().await.unwrap();
    assert_eq!(ack["status"], "ok");
    ack["id"].as_u64().unwrap()
}

/// `POST /rooms/{room}/typing` as `user`, asserting `200 {"status":"ok"}`.
async fn type_in(server: &Server, room: &str, user: &str) {
    let res = client()
        .post(server.url(&format!("/rooms/{room}/typing")))
        .json(&json!({ "user": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap(), json!({"status": "ok"}));
}

/// The status and JSON body of a request.
async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    exec(req.build().unwrap()).await
}

async fn exec(req: reqwest::Request) -> (u16, Value) {
    let res = client().execute(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.text().await.unwrap();
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    (status, body)
}

/// `curl -s URL` with extra arguments: the status and the JSON body.
fn curl(args: &[&str]) -> (u16, Value) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
    )
}

/// Reads a `/msgs` stream line by line.
struct Lines {
    res: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    async fn get(server: &Server, path: &str) -> Lines {
        let res = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
        Lines {
            res,
            buf: Vec::new(),
        }
    }

    async fn next(&mut self) -> Value {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return serde_json::from_slice(&line[..end]).unwrap();
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.res.chunk())
                .await
                .expect("a line within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.extend_from_slice(&chunk);
        }
    }

    /// The next line that is not a presence or typing line.
    async fn snapshot(&mut self) -> Value {
        loop {
            let line = self.next().await;
            if line.get("msg").is_some() {
                return line;
            }
            assert!(
                line.get("presence").is_some() || line.get("typing").is_some(),
                "{line}"
            );
        }
    }

    /// The next `{"<name>":{...}}` line's object (skipping other lines).
    async fn signal(&mut self, name: &str) -> Value {
        loop {
            let line = self.next().await;
            if let Some(inner) = line.get(name) {
                assert_eq!(line.as_object().unwrap().len(), 1, "{line}");
                return inner.clone();
            }
        }
    }
}

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

/// The names in a `/rooms/{room}/presence` answer, in its order.
fn present_users(presence: &Value) -> Vec<&str> {
    presence["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["user"].as_str().unwrap())
        .collect()
}

/// The room names of a `/rooms` answer, in its order.
fn room_names(rooms: &Value) -> Vec<&str> {
    rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

/// Presence events of an SSE stream until one says `user` joined (or left: `joined` false).
async fn wait_presence(sse: &mut Sse, user: &str, joined: bool) -> Vec<Value> {
    let key = if joined { "joined" } else { "left" };
    let mut seen = Vec::new();
    loop {
        let event = sse.named("presence").await;
        let hit = names(&event[key]).contains(user);
        seen.push(event);
        if hit {
            return seen;
        }
    }
}

#[tokio::test]
async fn each_message_reaches_exactly_its_room_over_poll_msgs_and_events() {
    let server = Server::start(&[]);
    let mut sse_a = Sse::get(&server, "/rooms/a/events").await;
    let mut sse_b = Sse::get(&server, "/rooms/b/events").await;
    let mut msgs_a = Lines::get(&server, "/rooms/a/msgs").await;
    let mut msgs_b = Lines::get(&server, "/rooms/b/msgs").await;
    assert_eq!(ids(&msgs_a.snapshot().await), Vec::<u64>::new());
    assert_eq!(ids(&msgs_b.snapshot().await), Vec::<u64>::new());

    // Ids are per room: a and b both start at 1. Both post endpoints take posts.
    assert_eq!(post_in(&server, "a", "poll", "ann", "a1").await, 1);
    assert_eq!(post_in(&server, "b", "msgs", "bob", "b1").await, 1);
    assert_eq!(post_in(&server, "a", "msgs", "ann", "a2").await, 2);
    common::post(&server, "gus", "g1").await;
    assert_eq!(post_in(&server, "b", "poll", "bob", "b2").await, 2);

    let a = get_json(&server, "/rooms/a/poll").await;
    let b = get_json(&server, "/rooms/b/poll").await;
    assert_eq!(texts(&a), ["a2", "a1"]);
    assert_eq!(texts(&b), ["b2", "b1"]);
    assert_ne!(a["epoch"], b["epoch"], "each room has its own epoch");
    assert_eq!(texts(&get_json(&server, "/poll").await), ["g1"]);
    assert_eq!(
        get_json(&server, "/rooms/general/poll").await,
        get_json(&server, "/poll").await
    );

    // Streams: exactly their room's messages, in order.
    for (sse, room, want) in [
        (&mut sse_a, &a, ["a1", "a2"]),
        (&mut sse_b, &b, ["b1", "b2"]),
    ] {
        for (i, text) in want.iter().enumerate() {
            let (id, epoch, msg) = sse.message().await;
            assert_eq!((id, msg["text"].as_str().unwrap()), (i as u64 + 1, *text));
            assert_eq!(epoch, room["epoch"].as_str().unwrap());
        }
    }
    assert_eq!(texts(&msgs_a.snapshot().await), ["a1"]);
    assert_eq!(texts(&msgs_a.snapshot().await), ["a2", "a1"]);
    assert_eq!(texts(&msgs_b.snapshot().await), ["b1"]);
    assert_eq!(texts(&msgs_b.snapshot().await), ["b2", "b1"]);

    // A long poll of a is woken by a's next post only: b's post in between is not in it.
    let url = server.url("/rooms/a/poll?since=2&timeout=30");
    let parked = spawn_poll(url);
    wait_for_stat(&server, "parked_polls", 1).await;
    post_in(&server, "b", "poll", "bob", "b3").await;
    post_in(&server, "a", "poll", "ann", "a3").await;
    let answer = parked.await.unwrap();
    assert_eq!(texts(&answer), ["a3"]);
    assert_eq!(
        (answer["last"].as_u64(), &answer["epoch"]),
        (Some(3), &a["epoch"])
    );

    // Nothing else came to either room's streams: the next event is that room's next post.
    assert_eq!(sse_a.message().await.2["text"], "a3");
    assert_eq!(sse_b.message().await.2["text"], "b3");
    assert_eq!(texts(&msgs_b.snapshot().await), ["b3", "b2", "b1"]);
    assert_eq!(texts(&msgs_a.snapshot().await), ["a3", "a2", "a1"]);
    // Long polls page per room too.
    let page = get_json(&server, "/rooms/b/poll?since=1&timeout=0").await;
    assert_eq!(ids(&page), [3, 2]);
    assert_eq!(page["epoch"], b["epoch"]);
}

#[tokio::test]
async fn resume_per_room_over_sse_and_msgs_across_a_restart() {
    let dir = temp_dir("rooms-restart");
    let dir_arg = dir.to_str().unwrap().to_owned();
    let mut first = Server::start(&["--data-dir", &dir_arg]);
    post_in(&first, "a", "poll", "ann", "a1").await;
    post_in(&first, "a", "poll", "ann", "a2").await;
    post_in(&first, "b", "poll", "bob", "b1").await;
    // A client of a holds everything up to a2 (its SSE id), one of b up to b1.
    let mut sse = Sse::get(&first, "/rooms/a/events").await;
    sse.message().await;
    let held_a = sse.event().await.id.unwrap();
    let mut lines = Lines::get(&first, "/rooms/b/msgs").await;
    let held_b = lines.snapshot().await;
    assert_eq!(ids(&held_b), [1]);
    let (ea, eb) = (
        held_a.split_once(':').unwrap().0.to_owned(),
        held_b["epoch"].as_str().unwrap().to_owned(),
    );
    assert_ne!(ea, eb);
    assert_eq!(held_a, format!("{ea}:2"));
    // More while they are not reading, then the server restarts, then more again.
    post_in(&first, "a", "poll", "ann", "a3").await;
    post_in(&first, "b", "poll", "bob", "b2").await;
    drop((sse, lines));
    first.terminate(Duration::from_secs(10)).expect("stops");
    let second = Server::start(&["--data-dir", &dir_arg]);
    post_in(&second, "a", "poll", "ann", "a4").await;
    post_in(&second, "b", "poll", "bob", "b3").await;

    // SSE: exactly a3 and a4, once each, then `resumed`, then live messages.
    let mut sse = Sse::open(
        client()
            .get(second.url("/rooms/a/events"))
            .header("last-event-id", &held_a),
    )
    .await;
    for (want, text) in [(3, "a3"), (4, "a4")] {
        let (id, epoch, msg) = sse.message().await;
        assert_eq!(
            (id, epoch.as_str(), msg["text"].as_str().unwrap()),
            (want, ea.as_str(), text)
        );
    }
    let resumed = sse.event().await;
    assert_eq!(resumed.event.as_deref(), Some("resumed"));
    assert_eq!(
        resumed.json(),
        json!({"after": 2, "count": 2, "last": 4, "epoch": ea})
    );
    post_in(&second, "a", "poll", "ann", "a5").await;
    assert_eq!(sse.message().await.0, 5);

    // /msgs?since: one page with b2 and b3, then snapshots.
    let mut lines = Lines::get(&second, &format!("/rooms/b/msgs?since=1&epoch={eb}")).await;
    let page = lines.snapshot().await;
    assert_eq!(ids(&page), [3, 2]);
    assert_eq!(page["last"], 3);
    assert_eq!(page["epoch"], eb.as_str());
    assert!(
        page.get("more").is_none() && page.get("reset").is_none(),
        "{page}"
    );
    post_in(&second, "b", "msgs", "bob", "b4").await;
    assert_eq!(ids(&lines.snapshot().await), [4, 3, 2, 1]);

    // Epochs are per room: a's position in b (and b's in a) is a reset.
    let crossed = Lines::get(&second, &format!("/rooms/b/msgs?since=1&epoch={ea}"))
        .await
        .snapshot()
        .await;
    assert_eq!(crossed["reset"], true);
    assert_eq!(ids(&crossed), [4, 3, 2, 1]);
    let mut crossed = Sse::open(
        client()
            .get(second.url("/rooms/a/events"))
            .header("last-event-id", format!("{eb}:1")),
    )
    .await;
    let reset = crossed.event().await;
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert_eq!(reset.json(), json!({"last": 5, "epoch": ea}));
    // Both rooms kept their epochs across the restart.
    let rooms = get_json(&second, "/rooms").await;
    let epoch_of = |name: &str| {
        rooms["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["epoch"]
            .clone()
    };
    assert_eq!((epoch_of("a"), epoch_of("b")), (json!(ea), json!(eb)));
}

#[tokio::test]
async fn an_sse_client_sees_a_streaming_user_join_and_leave() {
    let server = Server::start(&[]);
    let mut ann = Sse::get(&server, "/rooms/p/events?user=ann").await;
    assert_eq!(
        wait_presence(&mut ann, "ann", true).await.last().unwrap(),
        &json!({"room": "p", "joined": ["ann"], "left": []})
    );
    // bob comes by another transport: the /msgs stream.
    let mut bob = Lines::get(&server, "/rooms/p/msgs?user=bob").await;
    bob.snapshot().await;
    let seen = wait_presence(&mut ann, "bob", true).await;
    assert_eq!(seen, [json!({"room": "p", "joined": ["bob"], "left": []})]);
    let presence = get_json(&server, "/rooms/p/presence").await;
    assert_eq!(presence["room"], "p");
    assert_eq!(presence["online"], 2);
    let users = present_users(&presence);
    assert_eq!(users, ["ann", "bob"], "earliest first");
    assert!(
        presence["users"][0]["since"].as_i64().unwrap() > 1_600_000_000_000,
        "ms since the epoch"
    );
    assert_eq!(
        (
            presence["last"].as_u64(),
            presence["epoch"].as_str().map(str::len)
        ),
        (Some(0), Some(8))
    );
    drop(bob);
    let seen = wait_presence(&mut ann, "bob", false).await;
    assert_eq!(seen, [json!({"room": "p", "joined": [], "left": ["bob"]})]);
    assert_eq!(get_json(&server, "/rooms/p/presence").await["online"], 1);
}

#[tokio::test]
async fn one_user_on_two_connections_counts_once() {
    let server = Server::start(&[]);
    let mut ann = Sse::get(&server, "/rooms/two/events?user=ann").await;
    wait_presence(&mut ann, "ann", true).await;
    let mut bob_sse = Sse::get(&server, "/rooms/two/events?user=bob").await;
    bob_sse.named("presence").await;
    wait_presence(&mut ann, "bob", true).await;
    let mut bob_msgs = Lines::get(&server, "/rooms/two/msgs?user=bob").await;
    bob_msgs.snapshot().await;
    // A third user as a marker: the next presence event (which would carry a second join of
    // bob, coalesced or before it) names cy alone.
    get_json(&server, "/rooms/two/poll?user=cy").await;
    let seen = wait_presence(&mut ann, "cy", true).await;
    assert_eq!(seen, [json!({"room": "two", "joined": ["cy"], "left": []})]);
    let presence = get_json(&server, "/rooms/two/presence").await;
    assert_eq!(presence["online"], 3, "{presence}");
    let users = present_users(&presence);
    assert_eq!(users, ["ann", "bob", "cy"]);
    let rooms = get_json(&server, "/rooms").await;
    assert_eq!(rooms["rooms"][0]["name"], "general");
    assert_eq!(
        rooms["rooms"][1],
        json!({"name": "two", "last": 0, "epoch": presence["epoch"], "online": 3})
    );

    // One of bob's connections goes: he is still in.
    wait_for_stat(&server, "subscribers", 3).await;
    drop(bob_sse);
    wait_for_stat(&server, "subscribers", 2).await;
    let presence = get_json(&server, "/rooms/two/presence").await;
    assert_eq!(presence["online"], 3, "{presence}");
    // The last one goes: he leaves (and the next event says only that).
    drop(bob_msgs);
    let seen = wait_presence(&mut ann, "bob", false).await;
    assert_eq!(
        seen,
        [json!({"room": "two", "joined": [], "left": ["bob"]})]
    );
    assert_eq!(get_json(&server, "/rooms/two/presence").await["online"], 2);
}

#[tokio::test]
async fn a_polling_user_is_present_for_the_window_after_each_poll() {
    let server = Server::start(&["--presence-window", "1"]);
    let mut ann = Sse::get(&server, "/rooms/w/events?user=ann").await;
    wait_presence(&mut ann, "ann", true).await;
    let polled = Instant::now();
    let snapshot = get_json(&server, "/rooms/w/poll?user=dan").await;
    assert_eq!(ids(&snapshot), Vec::<u64>::new());
    let seen = wait_presence(&mut ann, "dan", true).await;
    assert_eq!(seen, [json!({"room": "w", "joined": ["dan"], "left": []})]);
    let users = get_json(&server, "/rooms/w/presence").await["users"].clone();
    assert!(
        users.as_array().unwrap().iter().any(|u| u["user"] == "dan"),
        "{users}"
    );
    let seen = wait_presence(&mut ann, "dan", false).await;
    assert_eq!(seen, [json!({"room": "w", "joined": [], "left": ["dan"]})]);
    assert!(
        polled.elapsed() >= Duration::from_millis(950),
        "left after the 1 s window, not before: {:?}",
        polled.elapsed()
    );
    assert_eq!(
        get_json(&server, "/rooms/w/presence").await["users"],
        json!([{"user": "ann", "since": users[0]["since"]}])
    );

    // A long poll held longer than the window keeps its user present until it answers.
    let url = server.url("/rooms/w/poll?since=0&timeout=2&user=eve");
    let long_poll = tokio::spawn(async move {
        let body = fetch_json(client().get(url)).await;
        (body, Instant::now())
    });
    wait_presence(&mut ann, "eve", true).await;
    let seen = wait_presence(&mut ann, "eve", false).await;
    let left_at = Instant::now();
    assert_eq!(seen, [json!({"room": "w", "joined": [], "left": ["eve"]})]);
    let (body, answered_at) = long_poll.await.unwrap();
    assert_eq!(ids(&body), Vec::<u64>::new(), "timed out empty");
    assert!(
        left_at > answered_at,
        "eve left only after her long poll answered"
    );
}

#[tokio::test]
async fn a_thousand_joins_within_a_second_make_at_most_four_presence_events() {
    let server = Server::start(&[]);
    let mut ann = Sse::get(&server, "/rooms/crowd/events?user=ann").await;
    wait_presence(&mut ann, "ann", true).await;
    // 1,000 users poll the room once each, over one HTTP/2 connection, as fast as it goes.
    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let polls = (0..1000).map(|i| {
        let req = h2c.get(server.url(&format!("/rooms/crowd/poll?user=u{i}")));
        async move { assert_eq!(req.send().await.unwrap().status(), 200) }
    });
    futures::future::join_all(polls).await;
    let took = started.elapsed();
    let mut joined = BTreeSet::new();
    let mut arrivals = Vec::new();
    while joined.len() < 1000 {
        let event = ann.named("presence").await;
        arrivals.push(Instant::now());
        assert_eq!(event["left"], json!([]));
        let names = names(&event["joined"]);
        assert!(names.is_disjoint(&joined), "each join told once");
        joined.extend(names);
    }
    assert_eq!(joined.len(), 1000);
    let events = arrivals.len();
    // Events of a room are 250 ms apart at least: no second holds more than 4.
    for w in arrivals.windows(5) {
        assert!(
            w[4] - w[0] >= Duration::from_millis(900),
            "5 presence events within {:?}",
            w[4] - w[0]
        );
    }
    // Joins within 750 ms (as on any usual machine) make at most 4 events: the first at
    // once or 250 ms after the previous one, then one per 250 ms. A machine too loaded to
    // send 1,000 requests that fast gets the same bound for the time it took.
    let bound = if took < Duration::from_millis(750) {
        4
    } else {
        1 + took.as_millis().div_ceil(250) as usize
    };
    assert!(
        events <= bound,
        "{events} presence events for 1,000 joins within {took:?}"
    );
    assert_eq!(
        get_json(&server, "/rooms/crowd/presence").await["online"],
        1001
    );
}

#[tokio::test]
async fn typing_reaches_others_once_a_second_and_is_never_stored() {
    let server = Server::start(&[]);
    let mut ann = Sse::get(&server, "/rooms/t/events?user=ann").await;
    let mut bob = Lines::get(&server, "/rooms/t/msgs?user=bob").await;
    bob.snapshot().await;
    post_in(&server, "t", "poll", "ann", "hello").await;
    let before = get_json(&server, "/rooms/t/poll").await;

    // bob twice within a second: one event; then cy, the marker.
    type_in(&server, "t", "bob").await;
    type_in(&server, "t", "bob").await;
    type_in(&server, "t", "cy").await;
    assert_eq!(
        ann.named("typing").await,
        json!({"room": "t", "user": "bob"})
    );
    assert_eq!(
        ann.named("typing").await,
        json!({"room": "t", "user": "cy"}),
        "the second bob was dropped"
    );
    // Nobody is told their own typing: ann's comes to bob, not to ann (dee is the marker).
    type_in(&server, "t", "ann").await;
    type_in(&server, "t", "dee").await;
    assert_eq!(
        ann.named("typing").await,
        json!({"room": "t", "user": "dee"})
    );
    assert_eq!(
        bob.signal("typing").await,
        json!({"room": "t", "user": "cy"}),
        "bob's own typing is not echoed"
    );
    assert_eq!(
        bob.signal("typing").await,
        json!({"room": "t", "user": "ann"})
    );
    assert_eq!(
        bob.signal("typing").await,
        json!({"room": "t", "user": "dee"})
    );

    // Never stored: the history, the long poll and the room list are unchanged.
    assert_eq!(get_json(&server, "/rooms/t/poll").await, before);
    assert_eq!(
        ids(&get_json(&server, "/rooms/t/poll?since=1&timeout=0").await),
        Vec::<u64>::new()
    );
    post_in(&server, "t", "poll", "ann", "next").await;
    assert_eq!(
        ann.message().await.0,
        2,
        "typing took no id, and nothing else came"
    );

    // Refusals: a bad user, or a body that is no object.
    let url = server.url("/rooms/t/typing");
    let (status, body) = call(client().post(&url).json(&json!({"user": ""}))).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (422, "\"user\" must not be empty")
    );
    let (status, body) = call(client().post(&url).json(&json!({}))).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (422, "\"user\" is missing")
    );
    let (status, _) = call(client().post(&url).json(&json!(["ann"]))).await;
    assert_eq!(status, 400);
    let (status, _) = call(client().post(&url).body("{\"user\":\"ann\"}")).await;
    assert_eq!(status, 415, "a JSON content type, like posts");
}

#[tokio::test]
async fn the_course_paths_are_general_without_presence_or_typing() {
    let server = Server::start(&[]);
    let mut room_sse = Sse::get(&server, "/rooms/general/events?user=zed").await;
    wait_presence(&mut room_sse, "zed", true).await;
    // The course's streams are in general too (named with ?user=, or not).
    let mut course_sse = Sse::get(&server, "/events?user=ann").await;
    let mut course_msgs = Lines::get(&server, "/msgs").await;
    course_msgs.next().await;
    wait_presence(&mut room_sse, "ann", true).await;
    assert_eq!(
        get_json(&server, "/rooms/general/presence").await["online"],
        3
    );
    type_in(&server, "general", "bob").await;
    assert_eq!(room_sse.named("typing").await["user"], "bob");
    let id = post_in(&server, "general", "msgs", "bob", "hi").await;
    // The course's streams: the message next, no presence or typing before it.
    let next = course_sse.event().await;
    assert_eq!(
        (
            next.event,
            next.id
                .unwrap()
                .split_once(':')
                .unwrap()
                .1
                .parse::<u64>()
                .unwrap()
        ),
        (None, id)
    );
    let line = course_msgs.next().await;
    assert_eq!(texts(&line), ["hi"], "{line}");
    assert_eq!(
        get_json(&server, "/poll").await,
        get_json(&server, "/rooms/general/poll").await
    );
}

#[tokio::test]
async fn a_long_poll_on_a_room_that_does_not_exist_waits_for_it() {
    let server = Server::start(&[]);
    let url = server.url("/rooms/later/poll?since=0&timeout=30");
    let parked = spawn_poll(url);
    wait_for_stat(&server, "parked_polls", 1).await;
    let rooms = get_json(&server, "/rooms").await;
    assert_eq!(
        rooms["rooms"].as_array().unwrap().len(),
        1,
        "not created by the wait: {rooms}"
    );
    post_in(&server, "later", "poll", "ann", "first").await;
    let answer = parked.await.unwrap();
    assert_eq!(texts(&answer), ["first"]);
    assert_eq!(answer["last"], 1);
    assert_eq!(
        answer["epoch"],
        get_json(&server, "/rooms/later/poll").await["epoch"]
    );
}

#[tokio::test]
async fn reading_a_room_that_does_not_exist_does_not_create_it() {
    let server = Server::start(&["--presence-window", "1"]);
    let empty = json!({"msg": [], "last": 0, "epoch": ""});
    assert_eq!(get_json(&server, "/rooms/ghost/poll").await, empty);
    assert_eq!(get_json(&server, "/rooms/ghost/poll?user=ann").await, empty);
    assert_eq!(
        get_json(&server, "/rooms/ghost/poll?since=0&timeout=0.2").await,
        empty
    );
    // Any other position means nothing in an empty room: a reset, at once.
    let started = Instant::now();
    let reset = get_json(&server, "/rooms/ghost/poll?since=4&epoch=abc&timeout=30").await;
    assert_eq!(
        reset,
        json!({"msg": [], "last": 0, "epoch": "", "reset": true})
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        get_json(&server, "/rooms/ghost/presence").await,
        json!({"room": "ghost", "online": 0, "users": [], "last": 0, "epoch": ""})
    );
    type_in(&server, "ghost", "ann").await;
    let (status, body) = curl(&[&server.url("/rooms")]);
    assert_eq!(status, 200);
    assert_eq!(room_names(&body), ["general"]);
}

#[tokio::test]
async fn rooms_lists_every_room_by_name_with_last_epoch_and_online() {
    let server = Server::start(&[]);
    post_in(&server, "zeta", "poll", "ann", "z1").await;
    post_in(&server, "zeta", "poll", "ann", "z2").await;
    post_in(&server, "mid-1", "msgs", "bob", "m1").await;
    get_json(&server, "/rooms/mid-1/poll?user=carol").await;
    let mut joined = Lines::get(&server, "/rooms/a_s/msgs?user=dan").await;
    joined.snapshot().await;
    let mut unnamed = Sse::get(&server, "/rooms/a_s/events").await;
    unnamed.block().await;
    let rooms = get_json(&server, "/rooms").await["rooms"].clone();
    let mut want = Vec::new();
    for (name, last, online) in [
        ("a_s", 0, 2),
        ("general", 0, 0),
        ("mid-1", 1, 1),
        ("zeta", 2, 0),
    ] {
        let epoch = get_json(&server, &format!("/rooms/{name}/poll")).await["epoch"].clone();
        want.push(json!({"name": name, "last": last, "epoch": epoch, "online": online}));
    }
    assert_eq!(rooms, json!(want));
}

#[tokio::test]
async fn bad_room_names_are_400_on_every_endpoint() {
    let server = Server::start(&[]);
    let post = json!({"user": "ann", "text": "hi"});
    for (path_name, name) in [
        ("Foo!", "Foo!"),
        ("a%20b", "a b"),
        ("%C3%A9t%C3%A9", "été"),
        ("", ""),
        (&"x".repeat(65), &"x".repeat(65)),
    ] {
        let want = bad_name(name);
        let url = |leaf: &str| server.url(&format!("/rooms/{path_name}/{leaf}"));
        let requests = [
            client().get(url("poll")),
            client().get(url("poll?since=0&timeout=5&user=ann")),
            client().post(url("poll")).json(&post),
            // The room is checked before the body.
            client().post(url("poll")).body("not json"),
            client().get(url("msgs?user=ann")),
            client()
                .get(url("msgs"))
                .header("accept", "text/event-stream"),
            client().post(url("msgs")).json(&post),
            client().get(url("events?since=1")),
            client().get(url("events")).header("last-event-id", "abc:1"),
            client().get(url("presence")),
            client().post(url("typing")).json(&json!({"user": "ann"})),
        ];
        for req in requests {
            let req = req.build().unwrap();
            let what = format!("{} {}", req.method(), req.url());
            let (status, body) = exec(req).await;
            assert_eq!(status, 400, "{what}: {body}");
            assert_eq!(body, json!({"error": want}), "{what}");
        }
        let (status, body) = curl(&["-N", &url("events")]);
        assert_eq!((status, body), (400, json!({"error": want})), "curl");
    }
    // Nothing was created.
    assert_eq!(
        get_json(&server, "/rooms").await["rooms"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn max_rooms_refuses_a_room_more_on_every_endpoint_that_would_create_it() {
    // general is one of the 2.
    let server = Server::start(&["--max-rooms", "2"]);
    post_in(&server, "a", "poll", "ann", "in a").await;
    let want = json!({"error": max_rooms(2)});
    let post = json!({"user": "ann", "text": "hi"});
    let url = |leaf: &str| server.url(&format!("/rooms/b/{leaf}"));
    for req in [
        client().post(url("poll")).json(&post),
        client().post(url("msgs")).json(&post),
        client().get(url("msgs?user=ann")),
        client()
            .get(url("msgs"))
            .header("accept", "text/event-stream"),
        client().get(url("events?user=ann")),
    ] {
        let req = req.build().unwrap();
        let what = format!("{} {}", req.method(), req.url());
        let (status, body) = exec(req).await;
        assert_eq!((status, &body), (403, &want), "{what}");
    }
    let (status, body) = curl(&["-N", &url("events")]);
    assert_eq!((status, body), (403, want.clone()), "curl");
    // Reads never create, so they are not refused: b reads as empty.
    assert_eq!(
        get_json(&server, "/rooms/b/poll?user=ann").await,
        json!({"msg": [], "last": 0, "epoch": ""})
    );
    assert_eq!(
        get_json(&server, "/rooms/b/poll?since=0&timeout=0.1").await["msg"],
        json!([])
    );
    assert_eq!(get_json(&server, "/rooms/b/presence").await["online"], 0);
    type_in(&server, "b", "ann").await;
    // The rooms that exist go on.
    post_in(&server, "a", "msgs", "ann", "still").await;
    let mut stream = Lines::get(&server, "/rooms/a/msgs").await;
    assert_eq!(texts(&stream.snapshot().await), ["still", "in a"]);
    Sse::get(&server, "/rooms/general/events").await;
    let rooms = get_json(&server, "/rooms").await;
    assert_eq!(room_names(&rooms), ["a", "general"]);
}

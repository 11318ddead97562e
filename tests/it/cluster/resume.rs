//! Resume across nodes: a client leaves node A, messages are posted on node B, it comes
//! back on node C with its position and gets exactly what it missed, in order, once.

use super::*;

/// The next text frame of `ws` as JSON (failing after 10 s, or if the socket ends).
async fn frame(ws: &mut common::Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket stays open")
            .expect("a valid frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The next frame that is not presence or typing.
async fn chat_frame(ws: &mut common::Ws) -> Value {
    loop {
        let f = frame(ws).await;
        if !matches!(f["type"].as_str(), Some("presence" | "typing")) {
            return f;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_websocket_resumes_on_another_node_with_exactly_the_missed_messages() {
    let cluster = Cluster::start(3, true, &[]);
    let [a, b, c] = [0, 1, 2].map(|i| cluster.nodes[i].base.clone());
    for i in 0..3 {
        post_ok(&a, "ann", &format!("before {i}")).await;
    }
    // On node A: the history, then two live messages.
    let mut ws = ws_open(&a, "").await;
    let history = chat_frame(&mut ws).await;
    assert_eq!(history["type"], "history", "{history}");
    assert_eq!(history["msg"].as_array().unwrap().len(), 3);
    let epoch = history["epoch"].as_str().unwrap().to_owned();
    let mut last = history["last"].as_u64().unwrap();
    for i in 0..2 {
        let id = post_ok(&b, "bob", &format!("live {i}")).await;
        let f = chat_frame(&mut ws).await;
        assert_eq!(f["type"], "msg", "{f}");
        assert_eq!(f["msg"]["id"], id, "{f}");
        last = id;
    }
    ws.close(None).await.unwrap();
    drop(ws);
    // Missed while away, posted on node B.
    let mut missed = Vec::new();
    for i in 0..7 {
        let text = format!("missed {i}");
        missed.push((post_ok(&b, "bob", &text).await, text));
    }
    // Back on node C from (last, epoch).
    let mut ws = ws_open(&c, &format!("since={last}&epoch={epoch}")).await;
    let mut got = Vec::new();
    let resumed = loop {
        let f = chat_frame(&mut ws).await;
        match f["type"].as_str().unwrap() {
            "msg" => got.push((
                f["msg"]["id"].as_u64().unwrap(),
                f["msg"]["text"].as_str().unwrap().to_owned(),
            )),
            "resumed" => break f,
            _ => panic!("unexpected frame while resuming: {f}"),
        }
    };
    assert_eq!(got, missed, "exactly the missed messages, in order, once");
    assert_eq!(resumed["after"], last, "{resumed}");
    assert_eq!(resumed["count"], 7, "{resumed}");
    assert_eq!(resumed["epoch"], epoch.as_str(), "{resumed}");
    // And live again: a post on node A reaches it once.
    let id = post_ok(&a, "ann", "after").await;
    let f = chat_frame(&mut ws).await;
    assert_eq!(f["type"], "msg", "{f}");
    assert_eq!(f["msg"]["id"], id, "{f}");
    assert_eq!(f["msg"]["text"], "after", "{f}");
    // Nothing more (no repeat of anything): the next thing is a later post.
    let id2 = post_ok(&b, "bob", "after 2").await;
    let f = chat_frame(&mut ws).await;
    assert_eq!(f["msg"]["id"], id2, "nothing between: {f}");
}

/// The next SSE block of `res` as (event, id, data), skipping comments and `retry:`.
async fn sse_event(
    res: &mut reqwest::Response,
    buf: &mut String,
) -> (Option<String>, Option<String>, Value) {
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (None, None, None);
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "event" => event = Some(value),
                    "id" => id = Some(value),
                    "data" => data = Some(value),
                    _ => {}
                }
            }
            if let Some(data) = data {
                return (event, id, serde_json::from_str(&data).unwrap());
            }
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sse_resumes_on_another_node_with_last_event_id() {
    let cluster = Cluster::start(3, true, &[]);
    let [a, b, c] = [0, 1, 2].map(|i| cluster.nodes[i].base.clone());
    post_ok(&a, "ann", "before").await;
    let mut res = http().get(format!("{a}/events")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut buf = String::new();
    let (event, id, m) = sse_event(&mut res, &mut buf).await;
    assert_eq!((event, m["text"].as_str()), (None, Some("before")));
    let live = post_ok(&b, "bob", "live").await;
    let (event, id2, m) = sse_event(&mut res, &mut buf).await;
    assert_eq!((event, m["id"].as_u64()), (None, Some(live)));
    let last_event_id = id2.expect("message events carry id:");
    assert!(id.unwrap().ends_with(":1"));
    drop(res);
    let mut missed = Vec::new();
    for i in 0..6 {
        let text = format!("missed {i}");
        missed.push((post_ok(&b, "bob", &text).await, text));
    }
    // EventSource reconnects with the id of the last event it got.
    let mut res = http()
        .get(format!("{c}/events"))
        .header("last-event-id", &last_event_id)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut buf = String::new();
    let mut got = Vec::new();
    let resumed = loop {
        let (event, id, data) = sse_event(&mut res, &mut buf).await;
        match event.as_deref() {
            None => {
                let (epoch, _) = last_event_id.split_once(':').unwrap();
                assert_eq!(id.unwrap(), format!("{epoch}:{}", data["id"]));
                got.push((
                    data["id"].as_u64().unwrap(),
                    data["text"].as_str().unwrap().to_owned(),
                ));
            }
            Some("resumed") => break data,
            Some(other) => panic!("unexpected event {other} while resuming: {data}"),
        }
    };
    assert_eq!(got, missed, "exactly the missed messages, in order, once");
    assert_eq!(resumed["count"], 6, "{resumed}");
    let id = post_ok(&a, "ann", "after").await;
    let (event, _, m) = sse_event(&mut res, &mut buf).await;
    assert_eq!((event, m["id"].as_u64()), (None, Some(id)));
}

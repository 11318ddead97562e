//! Durable history (SQLite, the default store) and resume without loss, against real rtchat
//! processes that are restarted, killed and loaded.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    client, fetch_json, get_json, ids, post, rtchat, temp_dir, ws_connect, ws_json, Server,
};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Every message after `since`, oldest first, read by paging `GET /poll?since=`.
async fn all_after(server: &Server, mut since: u64) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let body = get_json(server, &format!("/poll?since={since}&timeout=0")).await;
        let mut page: Vec<Value> = body["msg"].as_array().unwrap().clone();
        page.reverse();
        out.extend(page);
        since = body["last"].as_u64().unwrap();
        if body.get("more").is_none() {
            return out;
        }
    }
}

fn data_args(dir: &std::path::Path) -> Vec<String> {
    vec!["--data-dir".into(), dir.to_str().unwrap().into()]
}

fn start_on(dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut args: Vec<String> = data_args(dir);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start(&args)
}

#[tokio::test]
async fn history_and_ids_survive_a_restart_on_every_transport() {
    let dir = temp_dir("restart");
    let mut first = start_on(&dir, &[]);
    let log = first.wait_for_log("store=sqlite");
    assert!(
        log.contains("created the database") && !log.contains("migrated"),
        "a brand-new database is created, not migrated: {log}"
    );
    for i in 1..=3 {
        post(&first, "ann", &format!("m{i}")).await;
    }
    let mut ws = ws_connect(&first, "/ws", &["json"]).await;
    ws_json(&mut ws).await;
    ws.send(WsMessage::text(
        json!({"user": "ws", "text": "m4"}).to_string(),
    ))
    .await
    .unwrap();
    ws_json(&mut ws).await;
    let before = get_json(&first, "/poll").await;
    assert_eq!(ids(&before), [4, 3, 2, 1]);
    first.terminate(Duration::from_secs(5)).expect("stops");

    let second = start_on(&dir, &[]);
    let log = second.wait_for_log("store=sqlite");
    assert!(
        !log.contains("created the database") && !log.contains("migrated"),
        "an up-to-date database is neither created nor migrated: {log}"
    );
    assert_eq!(
        get_json(&second, "/poll").await,
        before,
        "the same history after a restart"
    );
    let res = post(&second, "bob", "m5").await;
    assert_eq!(res.json::<Value>().await.unwrap()["id"], 5, "ids continue");
    // The stream, SSE and WebSockets serve the same history.
    let mut stream = client().get(second.url("/msgs")).send().await.unwrap();
    let line: Value =
        serde_json::from_slice(stream.chunk().await.unwrap().unwrap().as_ref()).unwrap();
    assert_eq!(ids(&line), [5, 4, 3, 2, 1]);
    let mut ws = ws_connect(&second, "/ws", &["json"]).await;
    assert_eq!(ids(&ws_json(&mut ws).await), [5, 4, 3, 2, 1]);
    let mut v1 = ws_connect(&second, "/ws", &["rtchat.v1"]).await;
    assert_eq!(ids(&ws_json(&mut v1).await), [5, 4, 3, 2, 1]);
    let sse = client().get(second.url("/events")).send().await.unwrap();
    let mut body = String::new();
    let mut sse = sse;
    while body.matches("id: ").count() < 5 {
        body.push_str(std::str::from_utf8(&sse.chunk().await.unwrap().unwrap()).unwrap());
    }
    // SSE ids are EPOCH:ID, and a SQLite database keeps its epoch across restarts.
    let epoch = get_json(&second, "/poll").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let sse_ids: Vec<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = (1..=5).map(|i| format!("{epoch}:{i}")).collect();
    assert_eq!(sse_ids, want);
}

#[tokio::test]
async fn resume_across_a_restart_delivers_exactly_the_missed_messages() {
    let dir = temp_dir("resume-restart");
    let mut first = start_on(&dir, &["--history", "3"]);
    for i in 1..=2 {
        post(&first, "u", &format!("seen {i}")).await;
    }
    first.terminate(Duration::from_secs(5)).expect("stops");
    let second = start_on(&dir, &["--history", "3"]);
    for i in 3..=9 {
        post(&second, "u", &format!("missed {i}")).await;
    }
    // More missed (7) than the history holds (3), after a restart: each transport resumes from 2.
    let want: Vec<u64> = (3..=9).collect();
    let poll: Vec<u64> = all_after(&second, 2)
        .await
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(poll, want, "polling");

    let mut v1 = ws_connect(&second, "/ws?since=2", &["rtchat.v1"]).await;
    let mut got = Vec::new();
    for _ in 3..=9 {
        got.push(ws_json(&mut v1).await["msg"]["id"].as_u64().unwrap());
    }
    assert_eq!(got, want, "WebSocket rtchat.v1");

    let mut stream = client()
        .get(second.url("/msgs?since=2"))
        .send()
        .await
        .unwrap();
    let mut lines = String::new();
    let mut got = Vec::new();
    loop {
        while !lines.contains('\n') {
            lines.push_str(std::str::from_utf8(&stream.chunk().await.unwrap().unwrap()).unwrap());
        }
        let end = lines.find('\n').unwrap();
        let page: Value = serde_json::from_str(&lines[..end]).unwrap();
        lines.drain(..=end);
        let mut page_ids = ids(&page);
        page_ids.reverse();
        got.extend(page_ids);
        if page.get("more").is_none() {
            break;
        }
    }
    assert_eq!(got, want, "/msgs?since");

    let mut sse = client()
        .get(second.url("/events"))
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    while body.matches("id: ").count() < 7 {
        body.push_str(std::str::from_utf8(&sse.chunk().await.unwrap().unwrap()).unwrap());
    }
    let sse_ids: Vec<u64> = body
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|s| s.rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(sse_ids, want, "SSE");
}

/// The server's start-up line (`rtchat ready store=...`) shows the SQLite settings its own
/// connection reports: WAL, and `synchronous=2` (FULL: a commit returns after the fsync).
fn assert_durable_settings(server: &Server) {
    let log = server.wait_for_log("rtchat ready");
    let line = log.lines().find(|l| l.contains("rtchat ready")).unwrap();
    assert!(line.contains("store=sqlite "), "{line}");
    assert!(
        line.contains("(journal_mode=wal, synchronous=2;"),
        "the database must run with journal_mode=wal and synchronous=2 (FULL): {line}"
    );
}

/// What one poster sent: the text, and the id it was acknowledged with (`None`: no answer,
/// the server was killed first).
type Sent = Vec<(String, Option<u64>)>;

/// Posts with `POST /poll`, one after the other, until a post gets no answer.
async fn http_poster(
    base: String,
    tag: String,
    acked: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
) -> Sent {
    let c = client();
    let mut sent = Sent::new();
    for i in 0.. {
        let text = format!("{tag} post {i}");
        in_flight.fetch_add(1, Ordering::SeqCst);
        let res = c
            .post(format!("{base}/poll"))
            .json(&json!({"user": "crash", "text": text}))
            .send()
            .await;
        let reply = match res {
            Ok(res) => {
                let status = res.status();
                res.json::<Value>().await.ok().map(|body| (status, body))
            }
            Err(_) => None,
        };
        in_flight.fetch_sub(1, Ordering::SeqCst);
        match reply {
            Some((status, body)) => {
                assert_eq!(status, 200, "{text}: {body}");
                sent.push((text, Some(body["id"].as_u64().expect("an id"))));
                acked.fetch_add(1, Ordering::SeqCst);
            }
            None => {
                sent.push((text, None));
                return sent;
            }
        }
    }
    unreachable!()
}

/// Posts over WebSocket `rtchat.v1`, keeping `WINDOW` posts unacknowledged at all times,
/// until the connection drops.
async fn ws_poster(
    server: &Server,
    tag: String,
    acked: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
) -> impl std::future::Future<Output = Sent> {
    const WINDOW: usize = 32;
    let mut ws = ws_connect(server, "/ws", &["rtchat.v1"]).await;
    assert_eq!(ws_json(&mut ws).await["type"], "history");
    async move {
        let mut sent = Sent::new();
        let mut outstanding = 0;
        'outer: loop {
            while outstanding < WINDOW {
                let i = sent.len();
                let text = format!("{tag} post {i}");
                let post = json!({"type": "post", "user": "crash", "text": text, "ref": i});
                sent.push((text, None));
                if ws.send(WsMessage::text(post.to_string())).await.is_err() {
                    break 'outer;
                }
                outstanding += 1;
                in_flight.fetch_add(1, Ordering::SeqCst);
            }
            let Some(Ok(frame)) = ws.next().await else {
                break;
            };
            let WsMessage::Text(t) = frame else { continue };
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            match v["type"].as_str() {
                Some("ack") => {
                    let i = v["ref"].as_u64().unwrap() as usize;
                    assert_eq!(sent[i].1, None, "one ack per post: {v}");
                    sent[i].1 = Some(v["id"].as_u64().unwrap());
                    outstanding -= 1;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Some("msg") => {}
                _ => panic!("unexpected frame {v}"),
            }
        }
        in_flight.fetch_sub(outstanding, Ordering::SeqCst);
        sent
    }
}

#[tokio::test]
async fn every_acknowledged_post_survives_sigkill_with_posts_in_flight() {
    const ROUNDS: usize = 6;
    const HTTP_POSTERS: usize = 6;
    const WS_POSTERS: usize = 2;
    /// Acknowledged posts per round before the kill.
    const ACKED: usize = 150;
    let dir = temp_dir("crash");
    let mut sent: Vec<(String, Option<u64>)> = Vec::new();
    for round in 0..ROUNDS {
        // Post rate limits off: 8 posters post as fast as the server answers.
        let server = start_on(&dir, &["--post-rate", "0"]);
        assert_durable_settings(&server);
        let acked = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let mut posters = Vec::new();
        for p in 0..HTTP_POSTERS {
            let tag = format!("round {round} http {p}");
            let fut = http_poster(server.base.clone(), tag, acked.clone(), in_flight.clone());
            posters.push(tokio::spawn(fut));
        }
        for p in 0..WS_POSTERS {
            let tag = format!("round {round} ws {p}");
            let fut = ws_poster(&server, tag, acked.clone(), in_flight.clone()).await;
            posters.push(tokio::spawn(fut));
        }
        // Kill -9 while posts are on their way: once enough were acknowledged, at a moment
        // when posters are waiting for answers (the WebSocket posters always keep 32 waiting).
        let deadline = Instant::now() + Duration::from_secs(60);
        while acked.load(Ordering::SeqCst) < ACKED || in_flight.load(Ordering::SeqCst) < 8 {
            assert!(
                Instant::now() < deadline,
                "round {round}: only {} posts acknowledged within 60 s",
                acked.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let waiting = in_flight.load(Ordering::SeqCst);
        drop(server); // SIGKILL, and wait for the process to be gone
        let mut unanswered = 0;
        for poster in posters {
            let out = tokio::time::timeout(Duration::from_secs(30), poster)
                .await
                .expect("every poster notices the kill")
                .unwrap();
            unanswered += out.iter().filter(|(_, id)| id.is_none()).count();
            sent.extend(out);
        }
        assert!(
            waiting >= 8 && unanswered >= waiting.min(HTTP_POSTERS + WS_POSTERS),
            "round {round}: {waiting} posts were waiting at the kill, {unanswered} got no answer"
        );
    }

    let server = start_on(&dir, &[]);
    assert_durable_settings(&server);
    let stored = all_after(&server, 0).await;
    let mut by_text: std::collections::HashMap<&str, u64> = Default::default();
    let mut last = 0;
    for m in &stored {
        let id = m["id"].as_u64().unwrap();
        assert!(id > last, "ids increase: {id} after {last}");
        last = id;
        assert_eq!(m["user"], "crash");
        let text = m["text"].as_str().unwrap();
        let earlier = by_text.insert(text, id);
        assert!(
            earlier.is_none(),
            "{text:?} stored twice (ids {earlier:?} and {id})"
        );
    }
    let mut acked_ids = BTreeSet::new();
    let (mut acked, mut unacked_stored, mut unacked) = (0, 0, 0);
    for (text, id) in &sent {
        match id {
            Some(id) => {
                acked += 1;
                assert!(acked_ids.insert(*id), "id {id} acknowledged twice");
                assert_eq!(
                    by_text.get(text.as_str()),
                    Some(id),
                    "{text:?} was acknowledged with id {id}: after SIGKILL and a restart it must be there, with that id"
                );
            }
            None => {
                unacked += 1;
                unacked_stored += usize::from(by_text.contains_key(text.as_str()));
            }
        }
    }
    let ours: std::collections::HashSet<&str> = sent.iter().map(|(t, _)| t.as_str()).collect();
    for text in by_text.keys() {
        assert!(ours.contains(text), "stored but never posted: {text:?}");
    }
    assert!(acked >= ROUNDS * ACKED);
    eprintln!(
        "{ROUNDS} kills: {acked} posts acknowledged, all kept; {unacked} unanswered, {unacked_stored} of them stored"
    );
}

#[tokio::test]
async fn concurrent_posters_on_mixed_transports_lose_nothing_and_everyone_sees_one_order() {
    const POSTERS: usize = 50;
    const EACH: usize = 200;
    const TOTAL: usize = POSTERS * EACH;
    let dir = temp_dir("concurrent");
    // Post rate limits off: 50 posters from one address post 10,000 messages at full speed.
    let server = start_on(&dir, &["--post-rate", "0"]);

    // Subscribers: SSE, WebSocket rtchat.v1, and a long-poll loop, each collecting ids.
    let start = std::time::Instant::now();
    let sse = {
        // No overall timeout: this stream lives as long as the test.
        let res = reqwest::get(server.url("/events")).await.unwrap();
        tokio::spawn(async move {
            let mut res = res;
            let (mut buf, mut got) = (String::new(), Vec::new());
            while got.len() < TOTAL {
                buf.push_str(std::str::from_utf8(&res.chunk().await.unwrap().unwrap()).unwrap());
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")) {
                        got.push(id.rsplit(':').next().unwrap().parse::<u64>().unwrap());
                    }
                }
            }
            got
        })
    };
    let v1 = {
        let mut ws = ws_connect(&server, "/ws", &["rtchat.v1"]).await;
        ws_json(&mut ws).await; // empty history
        tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < TOTAL {
                let frame = ws_json(&mut ws).await;
                got.push(frame["msg"]["id"].as_u64().unwrap());
            }
            got
        })
    };
    let poller = {
        let base = server.base.clone();
        tokio::spawn(async move {
            let c = reqwest::Client::new();
            let (mut since, mut got) = (0u64, Vec::new());
            while got.len() < TOTAL {
                let body = fetch_json(c.get(format!("{base}/poll?since={since}&timeout=20"))).await;
                let mut page = ids(&body);
                page.reverse();
                got.extend(page);
                since = body["last"].as_u64().unwrap();
            }
            got
        })
    };

    // Posters: a quarter each on POST /poll, POST /msgs, WebSocket json, WebSocket rtchat.v1.
    let mut posters = Vec::new();
    for p in 0..POSTERS {
        let base = server.base.clone();
        let ws_base = server.url("/ws").replacen("http://", "ws://", 1);
        posters.push(tokio::spawn(async move {
            match p % 4 {
                0 | 1 => {
                    let path = if p % 4 == 0 { "/poll" } else { "/msgs" };
                    let c = client();
                    for i in 0..EACH {
                        let res = c
                            .post(format!("{base}{path}"))
                            .json(&json!({"user": format!("p{p}"), "text": format!("{i}")}))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(res.status(), 200);
                    }
                }
                kind => {
                    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
                    let protocol = if kind == 2 { "json" } else { "rtchat.v1" };
                    let mut req = ws_base.as_str().into_client_request().unwrap();
                    req.headers_mut()
                        .insert("sec-websocket-protocol", protocol.parse().unwrap());
                    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
                    let (mut sink, mut stream) = ws.split();
                    // Like a real client, read what the server sends meanwhile (the course's
                    // protocol sends every connection a snapshot per message). The rtchat.v1
                    // poster is done once every ack came; the course's protocol has no acks,
                    // so that poster closes after its last post: the server stores every post
                    // it read before the close (the totals below check that).
                    let reader = tokio::spawn(async move {
                        let mut acks = 0;
                        while let Some(Ok(frame)) = stream.next().await {
                            let WsMessage::Text(t) = frame else { continue };
                            let v: Value = serde_json::from_str(t.as_str()).unwrap();
                            if v["type"] == "ack" {
                                acks += 1;
                                if acks == EACH {
                                    break;
                                }
                            }
                        }
                        acks
                    });
                    for i in 0..EACH {
                        let mut post = json!({"user": format!("p{p}"), "text": format!("{i}")});
                        if kind == 3 {
                            post["type"] = json!("post");
                            post["ref"] = json!(i);
                        }
                        sink.send(WsMessage::text(post.to_string())).await.unwrap();
                    }
                    if kind == 3 {
                        let acks = tokio::time::timeout(Duration::from_secs(120), reader)
                            .await
                            .expect("every ack within 2 minutes")
                            .unwrap();
                        assert_eq!(acks, EACH);
                        let _ = sink.close().await;
                    } else {
                        let _ = sink.close().await;
                        // Read until the server completes the close handshake.
                        tokio::time::timeout(Duration::from_secs(120), reader)
                            .await
                            .expect("the server closes within 2 minutes")
                            .unwrap();
                    }
                }
            }
        }));
    }
    for p in posters {
        p.await.unwrap();
    }
    let want: Vec<u64> = (1..=TOTAL as u64).collect();
    let within = |task| tokio::time::timeout(Duration::from_secs(60), task);
    let seen = within(sse).await.expect("SSE got everything").unwrap();
    assert_eq!(seen, want, "SSE saw every message once, in id order");
    let seen = within(v1).await.expect("rtchat.v1 got everything").unwrap();
    assert_eq!(
        seen, want,
        "WebSocket rtchat.v1 saw every message once, in id order"
    );
    let seen = within(poller)
        .await
        .expect("long polling got everything")
        .unwrap();
    assert_eq!(
        seen, want,
        "long polling saw every message once, in id order"
    );
    let stored = all_after(&server, 0).await;
    assert_eq!(stored.len(), TOTAL, "nothing lost");
    eprintln!(
        "{TOTAL} posts from {POSTERS} posters seen by 3 subscribers in {:?}",
        start.elapsed()
    );
}

#[test]
fn a_bad_database_file_is_a_clear_error() {
    let dir = temp_dir("bad-db");
    std::fs::write(dir.join("rtchat.db"), vec![b'#'; 10_000]).unwrap();
    let out = rtchat(
        &[
            "serve",
            "--no-tls",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a readable rtchat database") && stderr.contains("rtchat.db"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn an_unwritable_data_dir_is_a_clear_error() {
    let dir = temp_dir("ro-data");
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    // Below a regular file nothing can be created, whoever runs the test (even root).
    let data = file.join("data");
    let out = rtchat(
        &[
            "serve",
            "--no-tls",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot create the folder"), "{stderr}");
}

#[tokio::test]
async fn a_full_database_turns_posts_into_errors_and_keeps_what_was_acknowledged() {
    let dir = temp_dir("full");
    // Post rate limits off: the test fills a 1 MiB database as fast as it can.
    let server = start_on(&dir, &["--db-max-mb", "1", "--post-rate", "0"]);
    let text = "z".repeat(2000);
    let mut acked = Vec::new();
    let error = loop {
        let res = post(&server, "filler", &text).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        if status != 200 {
            assert_eq!(status, 503);
            break body["error"].as_str().unwrap().to_owned();
        }
        acked.push(body["id"].as_u64().unwrap());
        assert!(acked.len() < 5_000, "the cap never bit");
    };
    assert!(error.contains("disk is full"), "{error}");
    let stored: Vec<u64> = all_after(&server, 0)
        .await
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        stored, acked,
        "everything acknowledged is still there, nothing else"
    );
    assert_eq!(
        get_json(&server, "/poll").await["msg"][0]["id"],
        *acked.last().unwrap()
    );
}

#[tokio::test]
async fn memory_store_forgets_on_restart_as_the_course_did() {
    let dir = temp_dir("memory");
    let mut first = start_on(&dir, &["--store", "memory"]);
    first.wait_for_log("store=memory");
    post(&first, "ann", "gone").await;
    first.terminate(Duration::from_secs(5)).unwrap();
    let second = start_on(&dir, &["--store", "memory"]);
    assert_eq!(get_json(&second, "/poll").await["msg"], json!([]));
    assert!(!dir.join("rtchat.db").exists(), "memory writes no database");
}

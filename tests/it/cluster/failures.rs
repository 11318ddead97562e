//! Redis trouble: a node's pub/sub connection killed while posts flow, Redis killed and
//! restarted with and without persistence.

use super::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Readers of every streaming kind and long polling on `base`, subscribed.
async fn readers_on(
    base: &str,
    kinds: &[Kind],
    target: &watch::Receiver<u64>,
    within: Duration,
) -> Vec<Reader> {
    let mut readers = Vec::new();
    for (i, kind) in kinds.iter().enumerate() {
        let mut r = Reader::spawn(
            *kind,
            format!("{kind:?} {i} on {base}"),
            base.to_owned(),
            From::default(),
            target.clone(),
            within,
        );
        tokio::time::timeout(Duration::from_secs(10), &mut r.ready)
            .await
            .unwrap_or_else(|_| panic!("{kind:?} subscribed within 10 s"))
            .unwrap();
        readers.push(r);
    }
    readers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_a_nodes_pubsub_connection_loses_nothing() {
    let cluster = Cluster::start(3, true, &["--history", "500"]);
    let a = &cluster.nodes[0];
    let b = cluster.nodes[1].base.clone();
    let (target_tx, target) = watch::channel(0u64);
    let within = Duration::from_secs(60);
    let readers = readers_on(
        &a.base,
        &[Kind::Ws, Kind::Ws, Kind::Sse, Kind::Stream, Kind::LongPoll],
        &target,
        within,
    )
    .await;
    let first = pubsub_client_of(&cluster.redis, a.pid())
        .unwrap_or_else(|| panic!("node A has a pub/sub connection: {}", cluster.logs()));
    // Posts flow through node B while A's subscription is killed, three times.
    let posted = Arc::new(AtomicUsize::new(0));
    let poster = {
        let posted = posted.clone();
        tokio::spawn(async move {
            let http = http();
            let mut acks = Vec::new();
            for n in 0..300 {
                let text = format!("flow {n}");
                let (status, body) = post_msg(&http, &b, "/msgs", "bob", &text, None)
                    .await
                    .unwrap();
                assert_eq!(status, 200, "{body}");
                acks.push((body["id"].as_u64().unwrap(), text));
                posted.fetch_add(1, Ordering::SeqCst);
            }
            acks
        })
    };
    let mut killed = vec![first.clone()];
    let mut current = first;
    for at in [40, 120, 200] {
        wait_until(Duration::from_secs(30), "posts flow", || {
            let posted = posted.clone();
            async move { posted.load(Ordering::SeqCst) >= at }
        })
        .await;
        let answer = cluster.redis.cmd(&["CLIENT", "KILL", "ID", &current]);
        assert_eq!(answer, Resp::Int(1), "killed client {current}");
        // The broker connects again: a new pub/sub connection of node A.
        let redis = &cluster.redis;
        let pid = a.pid();
        let start = Instant::now();
        current = loop {
            match pubsub_client_of(redis, pid) {
                Some(id) if !killed.contains(&id) => break id,
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "node A never subscribed again after its pub/sub connection was killed: {}",
                cluster.logs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        killed.push(current.clone());
    }
    let acks = poster.await.unwrap();
    eprintln!(
        "killed node A's pub/sub connection {} times; node A said:\n{}",
        killed.len() - 1,
        warnings(&a.stderr())
    );
    target_tx.send(acks.last().unwrap().0).unwrap();
    let (want, _) = history(&cluster.lb()).await;
    assert_eq!(want, acks);
    let mut failures = Vec::new();
    for r in readers {
        let out = r.task.await.unwrap();
        if let Err(e) = compare(&out, &want) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "after killing node A's pub/sub connection {} times, its clients saw something else:\n{}\n{}",
        killed.len() - 1,
        failures.join("\n"),
        cluster.logs()
    );
}

/// What a poster saw: acknowledged posts (id, text), and every refusal.
#[derive(Debug, Default)]
struct Posted {
    acks: Vec<(u64, String)>,
    refusals: Vec<String>,
    /// Refusals that were not `503 {"error"}` (a bug), and acknowledgements of a retried key
    /// with another id than the first.
    wrong: Vec<String>,
}

/// Posts `user`'s messages one after another to `base`, each with its own key, retrying a
/// refused one with the same key, until `stop` (then finishes the post in hand).
fn spawn_poster(
    base: String,
    user: String,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Posted> {
    tokio::spawn(async move {
        let http = http();
        let mut out = Posted::default();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(90);
        while !stop.load(Ordering::SeqCst) {
            let text = format!("{user} post {n}");
            let key = format!("{user}-{n}");
            loop {
                assert!(
                    Instant::now() < deadline,
                    "{user}: post {n} never acknowledged"
                );
                match post_msg(&http, &base, "/poll", &user, &text, Some(&key)).await {
                    Ok((200, body)) => {
                        out.acks.push((body["id"].as_u64().unwrap(), text.clone()));
                        acked.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Ok((status, body)) => {
                        let refusal = format!("{status} {body}");
                        if status != 503 || !body["error"].is_string() {
                            out.wrong.push(refusal.clone());
                        }
                        out.refusals.push(refusal);
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        out.wrong.push(format!("no answer: {e}"));
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                }
                // A client's back-off before it tries again.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            n += 1;
        }
        out
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_with_persistence_keeps_every_acknowledged_post_once() {
    let mut cluster = Cluster::start(3, true, &["--history", "1000"]);
    let bases: Vec<String> = cluster.nodes.iter().map(|n| n.base.clone()).collect();
    let (target_tx, target) = watch::channel(0u64);
    let within = Duration::from_secs(90);
    // Live subscriptions on two nodes, kept open across the outage.
    let mut readers = readers_on(&bases[0], &[Kind::Ws, Kind::Sse], &target, within).await;
    readers.extend(readers_on(&bases[1], &[Kind::Ws, Kind::Stream], &target, within).await);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let posters: Vec<_> = (0..6)
        .map(|p| {
            spawn_poster(
                bases[p % 3].clone(),
                format!("u{p}"),
                stop.clone(),
                acked.clone(),
                refused.clone(),
            )
        })
        .collect();
    let wait_acks = |n: usize| {
        let acked = acked.clone();
        async move {
            wait_until(Duration::from_secs(30), "posts acknowledged", || {
                let acked = acked.clone();
                async move { acked.load(Ordering::SeqCst) >= n }
            })
            .await
        }
    };
    wait_acks(60).await;
    cluster.redis.kill();
    let killed_at = acked.load(Ordering::SeqCst);
    // Readiness goes off while Redis is down, and posts are refused.
    let node0 = bases[0].clone();
    wait_until(
        Duration::from_secs(10),
        "/readyz answers 503 while Redis is down",
        || {
            let node0 = node0.clone();
            async move { readyz(&node0).await == 503 }
        },
    )
    .await;
    let ready_body: Value = http()
        .get(format!("{node0}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(15),
        "posts are refused while Redis is down",
        || {
            let refused = refused.clone();
            async move { refused.load(Ordering::SeqCst) >= 6 }
        },
    )
    .await;
    let during_outage = acked.load(Ordering::SeqCst) - killed_at;
    cluster.redis.restart();
    for base in &bases {
        let base = base.clone();
        wait_until(
            Duration::from_secs(20),
            "/readyz answers 200 once Redis is back",
            || {
                let base = base.clone();
                async move { readyz(&base).await == 200 }
            },
        )
        .await;
    }
    let now = acked.load(Ordering::SeqCst);
    wait_acks(now + 60).await;
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    let mut refusals = Vec::new();
    let mut wrong = Vec::new();
    for p in posters {
        let p = p.await.unwrap();
        all.extend(p.acks);
        refusals.extend(p.refusals);
        wrong.extend(p.wrong);
    }
    all.sort();
    target_tx.send(all.last().unwrap().0).unwrap();
    let (want, _) = history(&bases[2]).await;
    // Every acknowledged post exactly once, under the id it was acknowledged with; nothing
    // else (every refused post was retried with its key until acknowledged).
    assert_eq!(
        want,
        all,
        "the history is exactly the acknowledged posts (ack ids), once each\n{}",
        cluster.logs()
    );
    assert!(
        wrong.is_empty(),
        "refusals other than 503 with a JSON error: {wrong:?}"
    );
    assert!(!refusals.is_empty());
    assert!(
        during_outage <= 6,
        "{during_outage} posts acknowledged after Redis was killed and before it was back"
    );
    assert_eq!(ready_body["status"], "unavailable", "{ready_body}");
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in &refusals {
        *kinds.entry(r.as_str()).or_default() += 1;
    }
    eprintln!(
        "{} posts acknowledged ({killed_at} before the kill, {during_outage} during the outage); \
         refusals while Redis was down: {kinds:?}; /readyz said {ready_body}",
        all.len()
    );
    let mut failures = Vec::new();
    for r in readers {
        let out = r.task.await.unwrap();
        if let Err(e) = compare(&out, &want) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "live subscriptions across the Redis restart saw something else:\n{}\n{}",
        failures.join("\n"),
        cluster.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restarted_empty_is_a_new_epoch_and_old_positions_get_a_reset() {
    let mut cluster = Cluster::start(3, false, &[]);
    let bases: Vec<String> = cluster.nodes.iter().map(|n| n.base.clone()).collect();
    for i in 0..5 {
        post_ok(&bases[0], "ann", &format!("old {i}")).await;
    }
    let (old, old_epoch) = history(&bases[0]).await;
    assert_eq!(old.len(), 5);
    let old_last = old.last().unwrap().0;
    // A live WebSocket on node 1, a live SSE stream on node 2, a live `/msgs` on node 0.
    let (target_tx, target) = watch::channel(0u64);
    let live_ws = readers_on(&bases[1], &[Kind::Ws], &target, Duration::from_secs(20)).await;
    let live_sse = readers_on(&bases[2], &[Kind::Sse], &target, Duration::from_secs(20)).await;
    let live_msgs = readers_on(&bases[0], &[Kind::Stream], &target, Duration::from_secs(20)).await;
    // And the official Socket.IO client on node 1.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/socketio/cluster_reset.mjs");
    let mut sio = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&bases[1])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node must be installed (scripts/setup)");
    let mut sio_out =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(sio.stdout.take().unwrap()));
    let line = tokio::time::timeout(Duration::from_secs(10), sio_out.next_line()).await;
    assert_eq!(
        line.expect("the Socket.IO client connects within 10 s")
            .unwrap()
            .as_deref(),
        Some("ready")
    );
    cluster.redis.kill();
    cluster.redis.restart();
    for base in &bases {
        let base = base.clone();
        wait_until(
            Duration::from_secs(20),
            "/readyz answers 200 once Redis is back",
            || {
                let base = base.clone();
                async move { readyz(&base).await == 200 }
            },
        )
        .await;
    }
    // The first post after the loss makes a new epoch; ids go on past what the nodes saw.
    let new_id = post_ok(&bases[0], "bob", "new 0").await;
    // The live readers stop once they see it (or are closed, or after 20 s).
    target_tx.send(new_id).unwrap();
    // Read right away, on the node that acknowledged the post and on another one.
    let mut reads = Vec::new();
    for base in [&bases[0], &bases[1]] {
        reads.push(
            http()
                .get(format!("{base}/poll"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
    }
    eprintln!(
        "right after node 0 acknowledged id {new_id}: GET /poll on node 0: {}\non node 1: {}",
        reads[0], reads[1]
    );
    let (new, new_epoch) = history(&bases[0]).await;
    let own: Value = serde_json::from_str(&reads[0]).unwrap();
    assert!(
        own["epoch"] != old_epoch.as_str() && own["last"] == new_id && new_epoch != old_epoch,
        "a Redis that lost everything is a new epoch: node 0 acknowledged id {new_id} in it, \
         yet a read on node 0 right after still answers the old epoch and its messages, which \
         Redis no longer has.\nGET /poll on node 0: {}\nGET /poll on node 1: {}\n{}",
        reads[0],
        reads[1],
        cluster.logs()
    );
    for base in &bases {
        let base = base.clone();
        let new_epoch = new_epoch.clone();
        wait_until(
            Duration::from_secs(5),
            "every node knows the new epoch",
            || {
                let (base, new_epoch) = (base.clone(), new_epoch.clone());
                async move { history(&base).await.1 == new_epoch }
            },
        )
        .await;
    }
    assert_eq!(new, vec![(new_id, "new 0".to_owned())]);
    assert!(
        new_id > old_last,
        "ids are never handed out again: {new_id} after {old_last}"
    );
    // Old positions: a reset on /poll (every node), /msgs, SSE and the WebSocket.
    for base in &bases {
        let page: Value = http()
            .get(format!(
                "{base}/poll?since={old_last}&epoch={old_epoch}&timeout=0"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["reset"], true, "{base}: {page}");
        assert_eq!(page["epoch"], new_epoch.as_str(), "{page}");
        assert_eq!(
            oldest_first(&page),
            vec![(new_id, "new 0".to_owned())],
            "{page}"
        );
    }
    let mut ws = ws_open(&bases[2], &format!("since={old_last}&epoch={old_epoch}")).await;
    let mut frames = Vec::new();
    while frames.len() < 2 {
        let f = common::ws_json(&mut ws).await;
        if f["type"] != "presence" {
            frames.push(f);
        }
    }
    assert_eq!(frames[0]["type"], "reset", "{frames:?}");
    assert_eq!(frames[0]["epoch"], new_epoch.as_str(), "{frames:?}");
    assert_eq!(frames[1]["type"], "history", "{frames:?}");
    assert_eq!(oldest_first(&frames[1]), new, "{frames:?}");
    let mut res = http()
        .get(format!("{}/events", bases[0]))
        .header("last-event-id", format!("{old_epoch}:{old_last}"))
        .send()
        .await
        .unwrap();
    let mut body = String::new();
    while !body.contains("event: reset") || !body.contains("new 0") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
            .await
            .expect("SSE answers a stale position within 10 s")
            .unwrap()
            .expect("the stream stays open");
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        body.contains(&format!("\"epoch\":\"{new_epoch}\"")),
        "{body}"
    );
    // The live subscriptions opened in the old epoch stay open and are told to start over
    // (`reset` with the new epoch, then its history): never an id again, never a message of
    // the new epoch skipped. What they did is printed.
    let ws_out = live_ws.into_iter().next().unwrap().task;
    let sse_out = live_sse.into_iter().next().unwrap().task;
    let msgs_out = live_msgs.into_iter().next().unwrap().task;
    let outs = [
        ws_out.await.unwrap(),
        sse_out.await.unwrap(),
        msgs_out.await.unwrap(),
    ];
    let report: Vec<String> = ["WebSocket (node 1)", "SSE (node 2)", "/msgs (node 0)"]
        .iter()
        .zip(&outs)
        .map(|(what, out)| {
            format!(
                "live {what}: saw {:?}, ended {}, epoch {:?}, notes {:?}",
                out.got, out.ended, out.epoch, out.notes
            )
        })
        .collect();
    let report = report.join("\n");
    eprintln!("{report}");
    for (i, node) in cluster.nodes.iter().enumerate() {
        let log = node.stderr();
        let log: Vec<&str> = log.lines().filter(|l| !l.contains("answered")).collect();
        eprintln!("node {i}:\n{}", log.join("\n"));
    }
    // The Socket.IO client got the new history as a reset, still connected.
    let line = tokio::time::timeout(Duration::from_secs(25), sio_out.next_line())
        .await
        .expect("the Socket.IO client reports within 25 s")
        .unwrap()
        .unwrap_or_default();
    let report_sio: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
    assert_eq!(report_sio["connected"], true, "{report_sio}");
    assert_eq!(
        report_sio["reset"]["epoch"],
        new_epoch.as_str(),
        "{report_sio}"
    );
    assert_eq!(oldest_first(&report_sio["reset"]), new, "{report_sio}");
    for out in &outs {
        let told = out
            .notes
            .iter()
            .any(|n| n.contains("reset") && n.contains(new_epoch.as_str()));
        assert!(
            told && !out.ended,
            "{}: a live subscription is told `reset` with the new epoch, and stays open\n{report}\n{}",
            out.name,
            cluster.logs()
        );
        let before: Vec<Seen> = out
            .got
            .iter()
            .filter(|m| m.0 <= old_last)
            .cloned()
            .collect();
        let after: Vec<Seen> = out.got.iter().filter(|m| m.0 > old_last).cloned().collect();
        assert_eq!(
            before, old,
            "{}: the old epoch's messages, once\n{report}",
            out.name
        );
        assert_eq!(
            (after.as_slice(), out.epoch.as_str()),
            (new.as_slice(), new_epoch.as_str()),
            "{}: after the reset, exactly the new epoch's messages\n{report}",
            out.name
        );
        assert!(
            out.notes.iter().all(|n| !n.contains(" after ")),
            "{}: an id again or out of order\n{report}",
            out.name
        );
    }
}

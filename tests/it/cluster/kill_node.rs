//! `kill -9` of one node under load: 120 clients posting through the balancer (retrying with
//! the same key until acknowledged) and reading through it; afterwards the history holds every
//! acknowledged post once, and every client that stayed on a surviving node saw exactly it.

use super::*;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

const CLIENTS: usize = 120;
const POSTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn kill_9_of_a_node_under_load_loses_and_repeats_nothing() {
    let mut cluster = Cluster::start(3, true, &["--history", "1000"]);
    let lb = cluster.lb();
    let (target_tx, target) = watch::channel(0u64);
    let within = Duration::from_secs(90);
    let mut readers = Vec::new();
    for i in 0..CLIENTS {
        let mut r = Reader::spawn(
            Kind::Ws,
            format!("ws {i}"),
            lb.clone(),
            From::default(),
            target.clone(),
            within,
        );
        tokio::time::timeout(Duration::from_secs(10), &mut r.ready)
            .await
            .unwrap_or_else(|_| panic!("reader {i} subscribed within 10 s"))
            .unwrap();
        readers.push(r);
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let posters: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let lb = lb.clone();
            let acked = acked.clone();
            tokio::spawn(async move {
                let http = http();
                let mut acks = Vec::new();
                // Failed attempts by what they got.
                let mut failed: BTreeMap<String, usize> = BTreeMap::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                for n in 0..POSTS {
                    let text = format!("client {c} post {n}");
                    let key = format!("c{c}-{n}");
                    loop {
                        assert!(Instant::now() < deadline, "{text} never acknowledged");
                        match post_msg(&http, &lb, "/msgs", &format!("c{c}"), &text, Some(&key))
                            .await
                        {
                            Ok((200, body)) => {
                                acks.push((body["id"].as_u64().unwrap(), text.clone()));
                                acked.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Ok((status, body)) => {
                                let what = match body.get("error") {
                                    Some(_) => format!("{status} {}", body["error"]),
                                    None => format!("{status} (no JSON error)"),
                                };
                                *failed.entry(what).or_default() += 1;
                            }
                            Err(e) => {
                                let what = if e.contains("Connect") {
                                    "connection failed".to_owned()
                                } else if e.contains("IncompleteMessage") {
                                    "connection closed before an answer".to_owned()
                                } else {
                                    format!("no answer: {}", &e[..e.len().min(160)])
                                };
                                *failed.entry(what).or_default() += 1;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                (acks, failed)
            })
        })
        .collect();
    wait_until(Duration::from_secs(30), "posts acknowledged", || {
        let acked = acked.clone();
        async move { acked.load(Ordering::SeqCst) >= CLIENTS * POSTS / 4 }
    })
    .await;
    let victim_pid = cluster.nodes[1].pid();
    cluster.nodes[1].kill();
    let killed_at = acked.load(Ordering::SeqCst);
    let mut all = Vec::new();
    let mut failed: BTreeMap<String, usize> = BTreeMap::new();
    for p in posters {
        let (acks, f) = p.await.unwrap();
        all.extend(acks);
        for (k, v) in f {
            *failed.entry(k).or_default() += v;
        }
    }
    eprintln!(
        "kill -9 of node 1 (pid {victim_pid}) after {killed_at} of {} posts acknowledged; failed attempts, retried: {failed:?}",
        CLIENTS * POSTS
    );
    all.sort();
    assert_eq!(all.len(), CLIENTS * POSTS);
    target_tx.send(all.last().unwrap().0).unwrap();
    let (want, _) = history(&lb).await;
    let mut texts: Vec<&String> = want.iter().map(|m| &m.1).collect();
    texts.sort();
    let n = texts.len();
    texts.dedup();
    assert_eq!(
        n - texts.len(),
        0,
        "posts stored more than once despite their keys\n{}",
        cluster.logs()
    );
    assert_eq!(
        want, all,
        "the history is every acknowledged post once, under its acknowledged id"
    );
    let mut ended = 0;
    let mut failures = Vec::new();
    for r in readers {
        let out = r.task.await.unwrap();
        if out.ended {
            // On the node that died.
            ended += 1;
            if let Some(i) = out.got.iter().zip(&want).position(|(a, b)| a != b) {
                failures.push(format!(
                    "{} (cut off) diverged at {i}: {:?}",
                    out.name, out.notes
                ));
            }
            continue;
        }
        if let Err(e) = compare(&out, &want) {
            failures.push(e);
        }
    }
    eprintln!("{ended} of {CLIENTS} readers were cut off by the kill");
    assert!(
        ended <= CLIENTS / 3 + 1,
        "{ended} readers cut off: more than the dead node held"
    );
    assert!(
        failures.is_empty(),
        "{} readers on surviving nodes saw something else:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        cluster.logs()
    );
}

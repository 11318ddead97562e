//! Every transport through the balancer: clients of each kind spread over three nodes,
//! posts through the balancer (each may land on any node): every client sees every message
//! once, in one and the same order.

use super::*;

use common::{metrics_text, sample};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_transport_through_the_balancer_sees_every_message_once_in_one_order() {
    // --history 200: the /msgs stream's snapshots then hold every message of the test.
    let cluster = Cluster::start(3, true, &["--history", "200"]);
    let lb = cluster.lb();
    let (target_tx, target) = watch::channel(0u64);
    let within = Duration::from_secs(60);
    let mut readers = Vec::new();
    // Streaming clients opened one at a time with nothing else in between: round robin puts
    // consecutive ones on consecutive nodes.
    for kind in [Kind::Ws, Kind::Sse, Kind::Stream] {
        for i in 0..3 {
            let mut r = Reader::spawn(
                kind,
                format!("{kind:?} {i}"),
                lb.clone(),
                From::default(),
                target.clone(),
                within,
            );
            tokio::time::timeout(Duration::from_secs(10), &mut r.ready)
                .await
                .unwrap_or_else(|_| panic!("{kind:?} {i} subscribed within 10 s"))
                .unwrap();
            readers.push(r);
        }
    }
    for kind in [Kind::LongPoll, Kind::ShortPoll] {
        for i in 0..3 {
            let mut r = Reader::spawn(
                kind,
                format!("{kind:?} {i}"),
                lb.clone(),
                From::default(),
                target.clone(),
                within,
            );
            tokio::time::timeout(Duration::from_secs(10), &mut r.ready)
                .await
                .unwrap()
                .unwrap();
            readers.push(r);
        }
    }
    // Each node holds one client of each streaming kind.
    for (i, node) in cluster.nodes.iter().enumerate() {
        let text = metrics_text(node).await;
        for transport in ["ws", "sse", "stream"] {
            assert_eq!(
                sample(&text, "rtchat_clients", &[("transport", transport)]),
                Some(1.0),
                "node {i} holds one {transport} client"
            );
        }
    }
    // Three posters, 30 posts each, through the balancer, at once.
    let posters: Vec<_> = (0..3)
        .map(|p| {
            let lb = lb.clone();
            tokio::spawn(async move {
                let http = http();
                let mut acks = Vec::new();
                for n in 0..30 {
                    let text = format!("poster {p} post {n}");
                    let key = format!("k{p}-{n}");
                    let (status, body) =
                        post_msg(&http, &lb, "/msgs", &format!("p{p}"), &text, Some(&key))
                            .await
                            .unwrap();
                    assert_eq!(status, 200, "{text}: {body}");
                    acks.push((body["id"].as_u64().unwrap(), text));
                }
                acks
            })
        })
        .collect();
    let mut acked = Vec::new();
    for p in posters {
        acked.extend(p.await.unwrap());
    }
    acked.sort();
    let top = acked.last().unwrap().0;
    target_tx.send(top).unwrap();
    let (want, _) = history(&lb).await;
    assert_eq!(want, acked, "the history is exactly the acknowledged posts");
    let mut failures = Vec::new();
    for r in readers {
        let out = r.task.await.unwrap();
        if let Err(e) = compare(&out, &want) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} readers saw something else:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        cluster.logs()
    );
}

/// A client's next request may land on another node than its previous one: a position one
/// node just handed out must resume on every node, never be taken for a position "above the
/// room's last" (a reset: the client is shown the history again). Node B is made to lag
/// behind by killing its pub/sub connection before each post, so it has not heard of the
/// post when the client arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_position_one_node_handed_out_resumes_on_a_node_that_lags_behind() {
    let cluster = Cluster::start(2, true, &[]);
    let [a, b] = [0, 1].map(|i| cluster.nodes[i].base.clone());
    let pid_b = cluster.nodes[1].pid();
    let http = http();
    let mut wrong = Vec::new();
    let mut killed = Vec::new();
    for i in 0..20 {
        // Node B's subscription is down while the post is made on node A.
        let id = loop {
            match pubsub_client_of(&cluster.redis, pid_b) {
                Some(id) if !killed.contains(&id) => break id,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        cluster.redis.cmd(&["CLIENT", "KILL", "ID", &id]);
        killed.push(id);
        let last = post_ok(&a, "ann", &format!("m {i}")).await;
        let page: Value = http
            .get(format!("{a}/poll"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page["last"], last);
        let epoch = page["epoch"].as_str().unwrap().to_owned();
        // Long polling: the next poll is answered by node B.
        let next: Value = http
            .get(format!("{b}/poll?since={last}&epoch={epoch}&timeout=0"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if next["reset"] == true || next["last"].as_u64() != Some(last) {
            wrong.push(format!(
                "poll since={last}: last {} reset {} with {} messages",
                next["last"],
                next["reset"],
                next["msg"].as_array().map_or(0, Vec::len)
            ));
        }
        // A WebSocket resuming on node B.
        let mut ws = ws_open(&b, &format!("since={last}&epoch={epoch}")).await;
        let f = loop {
            let f = common::ws_json(&mut ws).await;
            if f["type"] != "presence" {
                break f;
            }
        };
        if f["type"] != "resumed" || f["count"] != 0 {
            wrong.push(format!("ws since={last}: {f}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} resumes on node B from a position node A had just handed out were not resumed there: {:?}\n{}",
        wrong.len(),
        &wrong[..wrong.len().min(10)],
        cluster.logs()
    );
}

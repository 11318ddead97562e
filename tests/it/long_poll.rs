//! Long polling (`GET /poll?since=ID`) against a real rtchat process.

use crate::common;

use std::time::{Duration, Instant};

use common::{client, fetch_json, get_json, ids, post, spawn_poll, wait_for_stat, Server};

#[tokio::test]
async fn answers_at_once_when_newer_messages_exist() {
    let server = Server::start(&[]);
    for i in 0..4 {
        post(&server, "u", &format!("m{i}")).await;
    }
    // A 60 s timeout: only an immediate answer lets this test finish.
    let body = get_json(&server, "/poll?since=2&timeout=60").await;
    assert_eq!(ids(&body), [4, 3], "newer messages, newest first");
    assert_eq!(body["last"], 4);
}

#[tokio::test]
async fn wakes_on_a_post() {
    let server = Server::start(&[]);
    post(&server, "u", "before").await;
    let url = server.url("/poll?since=1&timeout=60");
    let parked = spawn_poll(url);
    wait_for_stat(&server, "parked_polls", 1).await;
    post(&server, "ann", "wake up").await;
    let body = parked.await.unwrap();
    assert_eq!(ids(&body), [2]);
    assert_eq!(body["msg"][0]["text"], "wake up");
    assert_eq!(body["last"], 2);
}

#[tokio::test]
async fn times_out_with_an_empty_list() {
    let server = Server::start(&[]);
    post(&server, "u", "old").await;
    let start = Instant::now();
    let body = get_json(&server, "/poll?since=1&timeout=0.3").await;
    let took = start.elapsed();
    assert_eq!(body["msg"], serde_json::json!([]));
    assert_eq!(body["last"], 1, "last stays where the client was");
    assert_within(took, Duration::from_millis(300));
}

/// A long poll that times out answers after its timeout, and not much later: within
/// `timeout` + 600 ms (so a timeout rounded up to whole seconds, or ignored, fails).
fn assert_within(took: Duration, timeout: Duration) {
    assert!(
        took >= timeout,
        "answered after {took:?}, before the {timeout:?} timeout"
    );
    assert!(
        took < timeout + Duration::from_millis(600),
        "answered after {took:?}, long after the {timeout:?} timeout"
    );
}

#[tokio::test]
async fn default_timeout_is_configurable() {
    let server = Server::start(&["--poll-timeout", "1"]);
    let start = Instant::now();
    let body = get_json(&server, "/poll?since=0").await;
    let took = start.elapsed();
    assert_eq!(body["msg"], serde_json::json!([]));
    assert_within(took, Duration::from_secs(1));
}

#[tokio::test]
async fn a_thousand_parked_polls_all_wake_on_one_post() {
    // A thousand connections from one address: past the default per-address cap.
    let server = Server::start(&["--max-connections-per-ip", "0"]);
    let client = client();
    let mut polls = Vec::new();
    for _ in 0..1000 {
        let req = client.get(server.url("/poll?since=0&timeout=60"));
        polls.push(tokio::spawn(fetch_json(req)));
    }
    wait_for_stat(&server, "parked_polls", 1000).await;
    post(&server, "ann", "everyone").await;
    for poll in polls {
        let body = poll.await.unwrap();
        assert_eq!(ids(&body), [1]);
        assert_eq!(body["msg"][0]["text"], "everyone");
    }
    wait_for_stat(&server, "parked_polls", 0).await;
}

#[tokio::test]
async fn a_gap_larger_than_the_history_is_paged_oldest_first_without_loss() {
    let server = Server::start(&["--history", "5"]);
    for i in 1..=12 {
        post(&server, "u", &format!("m{i}")).await;
    }
    let mut since = 0;
    let mut seen: Vec<u64> = Vec::new();
    loop {
        let body = get_json(&server, &format!("/poll?since={since}&timeout=0")).await;
        let mut page = ids(&body);
        assert!(
            page.windows(2).all(|w| w[0] > w[1]),
            "each page newest first: {page:?}"
        );
        page.reverse();
        seen.extend(&page);
        since = body["last"].as_u64().unwrap();
        if body.get("more").is_none() {
            break;
        }
        assert_eq!(body["more"], true);
    }
    assert_eq!(seen, (1..=12).collect::<Vec<u64>>());
}

#[tokio::test]
async fn an_id_from_a_previous_server_life_gets_the_whole_history_back() {
    let server = Server::start(&[]);
    post(&server, "u", "fresh").await;
    let body = get_json(&server, "/poll?since=500&timeout=60").await;
    assert_eq!(body["reset"], true);
    assert_eq!(ids(&body), [1]);
    assert_eq!(body["last"], 1);
}

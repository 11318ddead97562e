//! Server-Sent Events (`GET /events`) against a real rtchat process.

use crate::common;

use common::{client, get_json, post, stat, wait_for_stat, Server, Sse};
use serde_json::Value;

#[tokio::test]
async fn history_then_live_events_with_a_retry_hint() {
    let server = Server::start(&[]);
    post(&server, "ann", "one").await;
    post(&server, "bob", "two").await;
    let mut sse = Sse::open(client().get(server.url("/events"))).await;
    assert_eq!(sse.block().await.retry.as_deref(), Some("2000"));
    let (id, _, m) = sse.message().await;
    assert_eq!(
        (id, m["text"].as_str().unwrap()),
        (1, "one"),
        "history oldest first"
    );
    assert_eq!(sse.message().await.0, 2);
    post(&server, "cy", "live").await;
    let (id, _, m) = sse.message().await;
    assert_eq!(id, 3);
    assert_eq!(m["user"], "cy");
    assert_eq!(m["text"], "live");
}

#[tokio::test]
async fn last_event_id_resumes_with_exactly_the_missed_messages() {
    let server = Server::start(&["--history", "3"]);
    for i in 1..=10 {
        post(&server, "u", &format!("m{i}")).await;
    }
    // More missed (8) than the history holds (3): the rest come from the store.
    let mut sse = Sse::open(
        client()
            .get(server.url("/events"))
            .header("last-event-id", "2"),
    )
    .await;
    sse.block().await; // retry
    for want in 3..=10 {
        assert_eq!(sse.message().await.0, want);
    }
    let resumed = sse.block().await;
    assert_eq!(resumed.event.as_deref(), Some("resumed"), "{resumed:?}");
    let epoch = get_json(&server, "/poll").await["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    let want = format!(r#"{{"after":2,"count":8,"last":10,"epoch":"{epoch}"}}"#);
    assert_eq!(resumed.data.as_deref(), Some(want.as_str()));
    post(&server, "u", "m11").await;
    // Resuming with the epoch (as EventSource repeats the `id:` it saw) works the same; a
    // position from another epoch starts over.
    let mut again = Sse::open(
        client()
            .get(server.url("/events"))
            .header("last-event-id", format!("{epoch}:10")),
    )
    .await;
    again.block().await; // retry
    assert_eq!(again.message().await.0, 11);
    let mut other = Sse::open(
        client()
            .get(server.url("/events"))
            .header("last-event-id", "zzzzzzzz:10"),
    )
    .await;
    other.block().await; // retry
    assert_eq!(other.block().await.event.as_deref(), Some("reset"));
    assert_eq!(sse.message().await.0, 11, "then live, with no duplicate");
}

#[tokio::test]
async fn since_query_resumes_and_last_event_id_wins_over_it() {
    let server = Server::start(&[]);
    for i in 1..=5 {
        post(&server, "u", &format!("m{i}")).await;
    }
    let mut sse = Sse::open(client().get(server.url("/events?since=3"))).await;
    sse.block().await;
    assert_eq!(sse.message().await.0, 4);
    assert_eq!(sse.message().await.0, 5);

    let mut sse = Sse::open(
        client()
            .get(server.url("/events?since=1"))
            .header("last-event-id", "4"),
    )
    .await;
    sse.block().await;
    assert_eq!(sse.message().await.0, 5);
}

#[tokio::test]
async fn a_resume_further_back_than_max_resume_gets_the_newest_after_a_truncated_event() {
    let server = Server::start(&["--max-resume", "2"]);
    for i in 1..=6 {
        post(&server, "u", &format!("m{i}")).await;
    }
    let mut sse = Sse::open(
        client()
            .get(server.url("/events"))
            .header("last-event-id", "1"),
    )
    .await;
    assert!(sse.block().await.retry.is_some());
    let note = sse.block().await;
    assert_eq!(note.event.as_deref(), Some("truncated"), "{note:?}");
    assert_eq!(note.json()["after"], 1);
    assert_eq!(sse.message().await.0, 5);
    assert_eq!(sse.message().await.0, 6);
    let resumed = sse.block().await;
    assert_eq!(resumed.event.as_deref(), Some("resumed"));
    assert_eq!(resumed.json()["count"], 2);
}

#[tokio::test]
async fn msgs_with_accept_event_stream_is_sse() {
    let server = Server::start(&[]);
    post(&server, "ann", "hello").await;
    let mut sse = Sse::open(
        client()
            .get(server.url("/msgs"))
            .header("accept", "text/event-stream"),
    )
    .await;
    sse.block().await;
    assert_eq!(sse.message().await.2["text"], "hello");
}

#[tokio::test]
async fn heartbeat_comments_arrive_on_an_idle_stream() {
    let server = Server::start(&["--sse-heartbeat", "0.2"]);
    let mut sse = Sse::open(client().get(server.url("/events"))).await;
    sse.block().await;
    let block = sse.block().await;
    assert_eq!(block.comment.as_deref(), Some("keepalive"), "{block:?}");
    assert_eq!(sse.block().await.comment.as_deref(), Some("keepalive"));
}

#[tokio::test]
async fn an_id_this_server_never_gave_gets_a_reset_then_the_history() {
    let server = Server::start(&[]);
    post(&server, "ann", "new life").await;
    let mut sse = Sse::open(
        client()
            .get(server.url("/events"))
            .header("last-event-id", "99"),
    )
    .await;
    sse.block().await;
    let reset = sse.block().await;
    assert_eq!(reset.event.as_deref(), Some("reset"));
    assert_eq!(reset.json()["last"], 1);
    assert_eq!(sse.message().await.2["text"], "new life");
}

#[tokio::test]
async fn bad_resume_ids_are_400() {
    let server = Server::start(&[]);
    let res = client()
        .get(server.url("/events"))
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("Last-Event-ID"));
    let res = client()
        .get(server.url("/events?since=-4"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn closing_the_event_stream_unsubscribes() {
    let server = Server::start(&[]);
    let before = stat(&server, "subscribers").await;
    let mut sse = Sse::open(client().get(server.url("/events"))).await;
    sse.block().await;
    wait_for_stat(&server, "subscribers", before + 1).await;
    drop(sse);
    wait_for_stat(&server, "subscribers", before).await;
}

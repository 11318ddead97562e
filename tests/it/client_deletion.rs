//! The client library against deletions and moderation (`--auth token`): a message its author
//! deletes comes out of every client as `Event::Deleted` (rtchat.v1 `deleted`, SSE `event:
//! deleted`, Socket.IO `msg:deleted`, and on the snapshot transports a fresh snapshot without
//! it); a banned user's client ends with `403 banned` instead of reconnecting forever; a
//! kicked one reconnects and goes on posting.

use std::time::Duration;

use rtchat_client::{Backoff, Client, Credentials, Error, Event, Options, State, Transport};
use serde_json::{json, Value};

use crate::auth::{admin, call, server, token};
use crate::common::Server;

/// How long any one awaited event may take.
const PATIENCE: Duration = Duration::from_secs(20);

/// Fast reconnection and polling, as `token`'s user.
fn options(token: &str) -> Options {
    Options {
        backoff: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(400),
            ..Backoff::default()
        },
        poll_interval: Duration::from_millis(50),
        long_poll_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        credentials: Some(Credentials::Token(token.to_owned())),
        ..Options::default()
    }
}

/// Posts `text` to `general` over HTTP as `token`'s user: the id.
async fn post(server: &Server, token: &str, text: &str) -> u64 {
    let (status, body) = call(
        server,
        "POST",
        "/rooms/general/msgs",
        token,
        json!({ "text": text }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["id"].as_u64().unwrap()
}

/// The client's next event (or error), within [`PATIENCE`].
async fn next(client: &mut Client) -> Result<Event, Error> {
    match tokio::time::timeout(PATIENCE, client.next()).await {
        Ok(event) => event,
        Err(_) => panic!("{}: no event within {PATIENCE:?}", client.transport()),
    }
}

/// Events until the message `id`; the connection must hold meanwhile.
async fn until_message(client: &mut Client, id: u64) {
    let t = client.transport();
    loop {
        match next(client).await {
            Ok(Event::Message(m)) if m.id == id => return,
            Ok(Event::Message(m)) if m.id < id => {}
            Ok(Event::State(State::Connected { .. } | State::Resumed { .. })) => {}
            other => panic!("{t}: waiting for message #{id}, got {other:?}"),
        }
    }
}

async fn connect(server: &Server, t: Transport, token: &str) -> Client {
    Client::connect(t, &server.base, options(token))
        .await
        .unwrap_or_else(|e| panic!("{t}: {e}"))
}

/// Deleted by its author: every client that handed the message out says so, once, and the
/// message kept is not reported (nor is anything else).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_message_comes_out_as_deleted_on_every_pushing_transport() {
    let server = server(&[]);
    let ann = token("u-ann", "ann");
    let bob = token("u-bob", "bob");
    let transports = [
        Transport::Ws,
        Transport::Sse,
        Transport::SocketIo,
        Transport::SocketIoSnapshots,
        Transport::Stream,
        Transport::WsJson,
    ];
    let mut clients = Vec::new();
    for t in transports {
        clients.push(connect(&server, t, &bob).await);
    }
    // The snapshot transports tell a deletion by a snapshot that covers the id and lacks it:
    // an older message keeps the snapshot's range reaching back past it.
    let kept = post(&server, &ann, "this stays").await;
    let doomed = post(&server, &ann, "this goes").await;
    for c in &mut clients {
        until_message(c, kept).await;
        until_message(c, doomed).await;
    }
    let path = format!("/rooms/general/msgs/{doomed}");
    let (status, body) = call(&server, "DELETE", &path, &ann, Value::Null).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    for c in &mut clients {
        let t = c.transport();
        match next(c).await {
            Ok(Event::Deleted { id }) => assert_eq!(id, doomed, "{t}"),
            other => panic!("{t}: expected Deleted {{ id: {doomed} }}, got {other:?}"),
        }
    }
    // Nothing more about it: the next event of each is the next message.
    let after = post(&server, &ann, "after").await;
    for c in &mut clients {
        let t = c.transport();
        match next(c).await {
            Ok(Event::Message(m)) => assert_eq!(m.id, after, "{t}"),
            other => panic!("{t}: expected message #{after}, got {other:?}"),
        }
    }
}

/// A client that joins after the deletion gets a history without it, and no `Deleted`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_without_the_deleted_message_is_no_deletion() {
    let server = server(&[]);
    let ann = token("u-ann", "ann");
    let first = post(&server, &ann, "one").await;
    let doomed = post(&server, &ann, "two").await;
    // The server answers the DELETE before its cached history has forgotten the message; it
    // tells the live clients once it has: a watcher's `Deleted` is the signal.
    let mut watcher = connect(&server, Transport::Ws, &ann).await;
    let path = format!("/rooms/general/msgs/{doomed}");
    let (status, body) = call(&server, "DELETE", &path, &ann, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    loop {
        match next(&mut watcher).await {
            Ok(Event::Deleted { id }) if id == doomed => break,
            Ok(Event::State(State::Connected { .. })) => {}
            other => panic!("watcher: expected Deleted {{ id: {doomed} }}, got {other:?}"),
        }
    }
    for t in [Transport::Stream, Transport::WsJson, Transport::Ws] {
        let mut c = connect(&server, t, &ann).await;
        let ids: Vec<u64> = c.history().iter().map(|m| m.id).collect();
        assert_eq!(ids.last(), Some(&first), "{t}: {ids:?}");
        assert!(!ids.contains(&doomed), "{t}: {ids:?}");
        let next_id = post(&server, &ann, &format!("three via {t}")).await;
        until_message(&mut c, next_id).await;
    }
}

/// Banned: each client ends with the server's `403 banned`, not retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_banned_users_client_ends_with_an_error() {
    let server = server(&[]);
    let bob = token("u-bob", "bob");
    let transports = [
        Transport::Ws,
        Transport::WsJson,
        Transport::Sse,
        Transport::Stream,
        Transport::SocketIo,
        Transport::SocketIoSnapshots,
        Transport::LongPoll,
        Transport::Poll,
    ];
    let mut clients = Vec::new();
    for t in transports {
        let mut c = connect(&server, t, &bob).await;
        match next(&mut c).await {
            Ok(Event::State(State::Connected { .. })) => {}
            other => panic!("{t}: expected Connected, got {other:?}"),
        }
        clients.push(c);
    }
    let (status, body) = call(
        &server,
        "POST",
        "/admin/users/u-bob/ban",
        &admin(),
        json!({"reason": "spam"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for mut c in clients {
        let t = c.transport();
        let e = loop {
            match next(&mut c).await {
                Ok(Event::State(_)) => {}
                Ok(other) => panic!("{t}: unexpected {other:?}"),
                Err(e) => break e,
            }
        };
        match &e {
            Error::Forbidden { code, message } => {
                assert_eq!(code, "banned", "{t}: {e}");
                assert!(message.contains("spam"), "{t}: {e}");
            }
            other => panic!("{t}: expected Forbidden banned, got {other:?}"),
        }
        // And it stays ended.
        assert_eq!(c.next().await.unwrap_err(), e, "{t}");
    }
}

/// Kicked: each client reconnects by itself, and its next post is stored and comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kicked_users_client_reconnects() {
    let server = server(&[]);
    let bob = token("u-bob", "bob");
    // Not polling: only a held long poll is answered by a kick (a short poll never notices).
    let transports = [
        Transport::Ws,
        Transport::WsJson,
        Transport::Sse,
        Transport::Stream,
        Transport::SocketIo,
        Transport::SocketIoSnapshots,
    ];
    let mut clients = Vec::new();
    for t in transports {
        let mut c = connect(&server, t, &bob).await;
        match next(&mut c).await {
            Ok(Event::State(State::Connected { .. })) => {}
            other => panic!("{t}: expected Connected, got {other:?}"),
        }
        clients.push(c);
    }
    let (status, body) = call(
        &server,
        "POST",
        "/admin/users/u-bob/kick",
        &admin(),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for c in &mut clients {
        let t = c.transport();
        let mut disconnected = false;
        loop {
            match next(c).await {
                Ok(Event::State(State::Disconnected { .. })) => disconnected = true,
                Ok(Event::State(State::Connected { .. })) if disconnected => break,
                // The others' posts of this test, as they come.
                Ok(Event::State(_) | Event::Message(_)) => {}
                other => panic!("{t}: expected a reconnection, got {other:?}"),
            }
        }
        let id = c
            .post("", &format!("back via {t}"))
            .await
            .unwrap_or_else(|e| panic!("{t}: {e}"));
        until_message(c, id).await;
    }
}

/// `rtchat client` says which message was deleted (its lines show no ids: the line it showed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_terminal_chat_says_which_message_was_deleted() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, BufReader};

    let server = server(&[]);
    let ann = token("u-ann", "ann");
    let doomed = post(&server, &ann, "a message to regret").await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtchat"))
        .args(["client", "--token", &ann, "--transport", "ws", &server.base])
        .env("RUST_LOG", "warn")
        .env_remove("RTCHAT_TOKEN")
        .env_remove("RTCHAT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let mut until = async |want: &str| {
        let read = async {
            while let Ok(Some(line)) = out.next_line().await {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(want) {
                    return;
                }
            }
        };
        if tokio::time::timeout(PATIENCE, read).await.is_err() || !seen.contains(want) {
            panic!("rtchat client never printed {want:?}:\n{seen}");
        }
    };
    until("* connected via ws").await;
    let path = format!("/rooms/general/msgs/{doomed}");
    let (status, body) = call(&server, "DELETE", &path, &ann, Value::Null).await;
    assert_eq!(status, 200, "{body}");
    until(&format!("* (message #{doomed} was deleted: [")).await;
    assert!(
        seen.lines()
            .last()
            .unwrap()
            .ends_with("] ann: a message to regret)"),
        "{seen}"
    );
    drop(stdin);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("rtchat client ends with its input")
        .unwrap();
    assert!(status.success(), "{seen}");
}

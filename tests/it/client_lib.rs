//! The client library (`rtchat-client`) against a real server, for every transport: history,
//! posts and their errors, messages from other transports, resume after a dropped connection
//! (through a TCP proxy the test cuts) without gaps or duplicates, reconnection with a reset
//! after a real restart (also when the restarted `--store memory` server has handed out the
//! client's ids again: epochs), and posts whose answer was lost, sent again with the same
//! idempotency key and stored once.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use rtchat_client::{Backoff, Client, Error, Event, Message, Options, State, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Fast reconnection and polling, so tests do not wait long.
fn options() -> Options {
    Options {
        backoff: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(400),
            ..Backoff::default()
        },
        poll_interval: Duration::from_millis(50),
        long_poll_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

/// The next event, failing the test after 15 s.
async fn next(client: &mut Client) -> Event {
    match tokio::time::timeout(Duration::from_secs(15), client.next()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("{}: the client failed: {e}", client.transport()),
        Err(_) => panic!("{}: no event within 15 s", client.transport()),
    }
}

/// The next message, failing on anything else.
async fn next_message(client: &mut Client) -> Message {
    match next(client).await {
        Event::Message(m) => m,
        other => panic!("{}: expected a message, got {other:?}", client.transport()),
    }
}

/// Events up to and including the first that `stop` accepts.
async fn events_until(client: &mut Client, stop: impl Fn(&Event) -> bool) -> Vec<Event> {
    let mut events = Vec::new();
    loop {
        let event = next(client).await;
        let done = stop(&event);
        events.push(event);
        if done {
            return events;
        }
    }
}

fn texts(msgs: &[Message]) -> Vec<&str> {
    msgs.iter().map(|m| m.text.as_str()).collect()
}

/// Posts over HTTP and returns the id.
async fn post(server: &Server, user: &str, text: &str) -> u64 {
    let res = common::post(server, user, text).await;
    assert_eq!(res.status(), 200);
    res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap()
}

/// A transport other than `t`, to check that messages cross transports.
fn other(t: Transport) -> Transport {
    match t {
        Transport::SocketIo => Transport::Ws,
        _ => Transport::SocketIo,
    }
}

async fn connected(client: &mut Client) -> String {
    match next(client).await {
        Event::State(State::Connected { via }) => via,
        other => panic!("expected Connected first, got {other:?}"),
    }
}

async fn history_post_and_live(t: Transport) {
    let server = Server::start(&["--no-tls", "--max-text", "20"]);
    for text in ["one", "two", "three"] {
        post(&server, "seed", text).await;
    }
    let mut client = Client::connect(t, &server.base, options()).await.unwrap();
    assert_eq!(
        texts(client.history()),
        ["three", "two", "one"],
        "{t}: history, newest first"
    );
    let via = connected(&mut client).await;
    let want = match t {
        Transport::Poll => "polling",
        Transport::LongPoll => "long polling",
        Transport::Stream => "stream (HTTP/1.1)",
        Transport::Sse => "SSE (HTTP/1.1)",
        Transport::Ws => "ws (rtchat.v1)",
        Transport::WsJson => "ws (json)",
        Transport::SocketIo => "Socket.IO (websocket)",
        Transport::SocketIoSnapshots => "Socket.IO (websocket, snapshots)",
    };
    assert_eq!(via, want);

    // A post is acknowledged with its id and comes back like any message.
    let id = client.post("ann", "hello").await.unwrap();
    assert_eq!(id, 4);
    let m = next_message(&mut client).await;
    assert_eq!(
        (m.id, m.user.as_str(), m.text.as_str()),
        (4, "ann", "hello")
    );

    // A refused post says why, and nothing is stored.
    let err = client
        .post("ann", "this text is far too long")
        .await
        .unwrap_err();
    match &err {
        Error::Rejected(why) => assert!(why.contains("too long"), "{t}: {why}"),
        other => panic!("{t}: expected Rejected, got {other:?}"),
    }
    assert!(
        matches!(client.post(" ", "x").await, Err(Error::Rejected(_))),
        "{t}"
    );

    // A message posted through another transport arrives, once.
    let sender = Client::connect(other(t), &server.base, options())
        .await
        .unwrap();
    assert_eq!(sender.post("zed", "elsewhere").await.unwrap(), 5);
    let m = next_message(&mut client).await;
    assert_eq!(
        (m.id, m.user.as_str(), m.text.as_str()),
        (5, "zed", "elsewhere")
    );
    // Posts from one client are stored and delivered in order.
    let poster = client.poster();
    for i in 0..5 {
        poster.post("ann", &format!("n{i}")).await.unwrap();
    }
    for i in 0..5 {
        let m = next_message(&mut client).await;
        assert_eq!((m.id, m.text.clone()), (6 + i, format!("n{i}")), "{t}");
    }
    // Each post has an idempotency key of its own: the same text twice is two messages.
    let first = poster.post("ann", "same again").await.unwrap();
    let second = poster.post("ann", "same again").await.unwrap();
    assert_eq!((first, second), (11, 12), "{t}");
    for id in [first, second] {
        let m = next_message(&mut client).await;
        assert_eq!((m.id, m.text.as_str()), (id, "same again"), "{t}");
    }
}

/// A TCP proxy in front of the server whose connections the test can cut, and which then
/// refuses new ones until it is opened again; it can also lose one answer of the server.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
    lose: Arc<Lose>,
}

/// The answer the proxy is to lose: the next bytes the server sends (on the HTTP
/// transports: on a connection whose last request was a `POST`), dropped together with
/// their connection.
#[derive(Default)]
struct Lose {
    armed: AtomicBool,
    only_posts: AtomicBool,
    lost: AtomicUsize,
}

impl Proxy {
    async fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let lose: Arc<Lose> = Arc::default();
        let (o, c, l) = (open.clone(), conns.clone(), lose.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(relay(inbound, target, l.clone()));
                c.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            port,
            open,
            conns,
            accept,
            lose,
        }
    }

    /// Loses the next answer: on the HTTP transports (`only_posts`) the next bytes answering
    /// a `POST`, on the others the next bytes of any connection (the one the post went out
    /// on). The connection goes with them.
    fn lose_next_answer(&self, only_posts: bool) {
        self.lose.only_posts.store(only_posts, Ordering::SeqCst);
        self.lose.armed.store(true, Ordering::SeqCst);
    }

    /// How many answers were lost.
    fn lost(&self) -> usize {
        self.lose.lost.load(Ordering::SeqCst)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn reopen(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Relays one connection, both ways, until either side closes (or an answer is lost).
async fn relay(mut inbound: TcpStream, target: u16, lose: Arc<Lose>) {
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut from_client, mut to_client) = inbound.split();
    let (mut from_server, mut to_server) = outbound.split();
    // Whether the client's last request on this connection was a POST (HTTP/1.1 only).
    let posting = AtomicBool::new(false);
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_client.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            if buf[..n].starts_with(b"POST ") {
                posting.store(true, Ordering::SeqCst);
            } else if buf[..n].starts_with(b"GET ") {
                posting.store(false, Ordering::SeqCst);
            }
            to_server.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = from_server.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            let eligible =
                posting.load(Ordering::SeqCst) || !lose.only_posts.load(Ordering::SeqCst);
            if eligible && lose.armed.swap(false, Ordering::SeqCst) {
                lose.lost.fetch_add(1, Ordering::SeqCst);
                return Ok(()); // these bytes never reach the client; the connection closes
            }
            to_client.write_all(&buf[..n]).await?;
        }
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Drops the connection, posts while the client is away, and checks that the reconnection
/// delivers exactly the missed messages, in order, then goes on live.
async fn resume_after_drop(t: Transport, history: usize, missed: usize) {
    let history_arg = history.to_string();
    let server = Server::start(&["--no-tls", "--history", &history_arg]);
    let proxy = Proxy::start(server.port).await;
    let mut client = Client::connect(t, &proxy.url(), options()).await.unwrap();
    connected(&mut client).await;
    let before = post(&server, "seed", "before").await;
    assert_eq!(next_message(&mut client).await.id, before);

    proxy.cut();
    let events = events_until(&mut client, |e| {
        matches!(e, Event::State(State::Disconnected { .. }))
    })
    .await;
    assert_eq!(events.len(), 1, "{t}: {events:?}");
    let mut away = Vec::new();
    for i in 0..missed {
        away.push(post(&server, "seed", &format!("away {i}")).await);
    }
    // While the server is unreachable the client keeps trying, with growing delays.
    let mut delays = Vec::new();
    while delays.len() < 3 {
        match next(&mut client).await {
            Event::State(State::Reconnecting { attempt, delay }) => {
                assert_eq!(attempt as usize, delays.len() + 1, "{t}");
                delays.push(delay);
            }
            other => panic!("{t}: expected Reconnecting, got {other:?}"),
        }
    }
    assert!(
        delays
            .iter()
            .all(|d| *d >= Duration::from_millis(50) && *d <= Duration::from_millis(800)),
        "{t}: {delays:?}"
    );
    proxy.reopen();

    let events = events_until(&mut client, |e| {
        matches!(e, Event::State(State::Resumed { .. }))
    })
    .await;
    let connected_at = events
        .iter()
        .position(|e| matches!(e, Event::State(State::Connected { .. })))
        .unwrap_or_else(|| panic!("{t}: no Connected in {events:?}"));
    assert!(
        events[..connected_at]
            .iter()
            .all(|e| matches!(e, Event::State(State::Reconnecting { .. }))),
        "{t}: {events:?}"
    );
    let got: Vec<u64> = events[connected_at + 1..events.len() - 1]
        .iter()
        .map(|e| match e {
            Event::Message(m) => m.id,
            other => panic!("{t}: expected only messages while catching up, got {other:?}"),
        })
        .collect();
    assert_eq!(got, away, "{t}: exactly the missed messages, in order");
    assert_eq!(
        events.last(),
        Some(&Event::State(State::Resumed {
            after: before,
            count: missed
        })),
        "{t}"
    );

    // Live again: the next posts arrive once each, through the client's own post too.
    let a = post(&server, "seed", "after").await;
    assert_eq!(next_message(&mut client).await.id, a, "{t}");
    let b = client.post("ann", "me again").await.unwrap();
    assert_eq!(next_message(&mut client).await.id, b, "{t}");
}

/// A real restart: the in-memory ids start over; the client reconnects by itself, reports the
/// reset and goes on with the new server's messages.
async fn reset_after_restart(t: Transport) {
    let mut server = Server::start(&["--no-tls", "--store", "memory"]);
    let port = server.port;
    let mut client = Client::connect(t, &server.base, options()).await.unwrap();
    connected(&mut client).await;
    for text in ["a", "b", "c"] {
        post(&server, "seed", text).await;
    }
    for id in 1..=3 {
        assert_eq!(next_message(&mut client).await.id, id, "{t}");
    }
    server
        .terminate(Duration::from_secs(5))
        .expect("the server stops");
    let events = events_until(&mut client, |e| {
        matches!(e, Event::State(State::Reconnecting { .. }))
    })
    .await;
    assert!(
        matches!(events[0], Event::State(State::Disconnected { .. })),
        "{t}: {events:?}"
    );

    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&["--no-tls", "--store", "memory", "--listen", &listen]);
    let fresh = post(&server, "new", "after restart").await;
    assert_eq!(fresh, 1, "a fresh store starts over");
    let events = events_until(&mut client, |e| matches!(e, Event::Message(_))).await;
    let n = events.len();
    assert!(n >= 3, "{t}: {events:?}");
    assert!(
        matches!(events[n - 3], Event::State(State::Connected { .. })),
        "{t}: {events:?}"
    );
    assert!(
        matches!(events[n - 2], Event::State(State::Reset { .. })),
        "{t}: {events:?}"
    );
    match &events[n - 1] {
        Event::Message(m) => assert_eq!((m.id, m.text.as_str()), (1, "after restart"), "{t}"),
        _ => unreachable!(),
    }
    let id = client.post("ann", "still here").await.unwrap();
    assert_eq!(id, 2);
    assert_eq!(next_message(&mut client).await.text, "still here", "{t}");
}

/// The answer to a post is lost with its connection: the client sends the post again with
/// the same idempotency key, the server stores it once and answers with its id, and the
/// message is delivered once.
async fn lost_answer_post_is_stored_once(t: Transport) {
    let server = Server::start(&["--no-tls"]);
    let proxy = Proxy::start(server.port).await;
    let mut client = Client::connect(t, &proxy.url(), options()).await.unwrap();
    connected(&mut client).await;
    let before = post(&server, "seed", "before").await;
    assert_eq!(next_message(&mut client).await.id, before, "{t}");

    let http = matches!(
        t,
        Transport::Poll | Transport::LongPoll | Transport::Stream | Transport::Sse
    );
    proxy.lose_next_answer(http);
    let id = client
        .post("ann", "only once")
        .await
        .unwrap_or_else(|e| panic!("{t}: the post is sent again and answered: {e:?}"));
    assert_eq!(proxy.lost(), 1, "{t}: the first answer was lost");
    assert_eq!(id, before + 1, "{t}");
    let stored = common::get_json(&server, "/poll").await;
    let copies = stored["msg"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["text"] == "only once")
        .count();
    assert_eq!(copies, 1, "{t}: stored once: {stored}");

    // Delivered once, and the chat goes on with the next id.
    let after = post(&server, "seed", "after").await;
    assert_eq!(after, id + 1, "{t}: nothing else was stored");
    let events = events_until(
        &mut client,
        |e| matches!(e, Event::Message(m) if m.id == after),
    )
    .await;
    let ids: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [id, after], "{t}: {events:?}");
}

macro_rules! per_transport {
    ($($name:ident: $t:expr),* $(,)?) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            async fn history_posts_and_live_messages() {
                history_post_and_live($t).await;
            }

            #[tokio::test]
            async fn resumes_after_a_dropped_connection_without_gaps_or_duplicates() {
                resume_after_drop($t, 50, 3).await;
            }

            #[tokio::test]
            async fn resumes_more_than_a_history_worth() {
                // The course's json snapshots only ever hold the history: no deeper resume.
                if $t != Transport::WsJson {
                    resume_after_drop($t, 5, 12).await;
                }
            }

            #[tokio::test]
            async fn reconnects_after_a_restart_and_reports_the_reset() {
                reset_after_restart($t).await;
            }

            #[tokio::test]
            async fn a_post_whose_answer_was_lost_is_sent_again_and_stored_once() {
                lost_answer_post_is_stored_once($t).await;
            }
        }
    )*};
}

per_transport! {
    poll: Transport::Poll,
    long_poll: Transport::LongPoll,
    stream: Transport::Stream,
    sse: Transport::Sse,
    ws: Transport::Ws,
    ws_json: Transport::WsJson,
    socket_io: Transport::SocketIo,
}

#[tokio::test]
async fn resume_from_an_id_skips_the_history() {
    let server = Server::start(&["--no-tls"]);
    for text in ["one", "two", "three"] {
        post(&server, "seed", text).await;
    }
    for t in Transport::ALL {
        let opts = Options {
            resume_after: Some(1),
            ..options()
        };
        let mut client = Client::connect(t, &server.base, opts).await.unwrap();
        assert!(client.history().is_empty(), "{t}");
        connected(&mut client).await;
        assert_eq!(next_message(&mut client).await.id, 2, "{t}");
        assert_eq!(next_message(&mut client).await.id, 3, "{t}");
        assert_eq!(
            next(&mut client).await,
            Event::State(State::Resumed { after: 1, count: 2 }),
            "{t}"
        );
    }
}

#[tokio::test]
async fn https_with_the_servers_certificate_or_insecure() {
    let server = Server::start(&[]);
    let base = server
        .tls_base
        .clone()
        .unwrap()
        .replace("127.0.0.1", "localhost");
    let ca = server.data_dir.join("tls/cert.pem");
    for t in Transport::ALL {
        let opts = Options {
            ca_file: Some(ca.clone()),
            ..options()
        };
        let mut client = Client::connect(t, &base, opts).await.unwrap();
        let via = connected(&mut client).await;
        if matches!(t, Transport::Stream | Transport::Sse) {
            assert!(via.contains("HTTP/2"), "{t}: {via}");
        }
        let id = client.post("tls", t.name()).await.unwrap();
        assert_eq!(next_message(&mut client).await.id, id, "{t}");
    }
    // Without trusting it the connection fails, and says why; --insecure accepts it.
    let err = Client::connect(Transport::Ws, &base, options())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let err = Client::connect(Transport::Poll, &base, options())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    let insecure = Options {
        insecure: true,
        ..options()
    };
    let client = Client::connect(Transport::Sse, &base, insecure)
        .await
        .unwrap();
    assert_eq!(
        client.history().len(),
        Transport::ALL.len(),
        "one post per transport"
    );
}

#[tokio::test]
async fn gives_up_after_the_configured_attempts() {
    let server = Server::start(&["--no-tls"]);
    let proxy = Proxy::start(server.port).await;
    let opts = Options {
        backoff: Backoff {
            max_attempts: Some(2),
            ..options().backoff
        },
        ..options()
    };
    let mut client = Client::connect(Transport::Ws, &proxy.url(), opts)
        .await
        .unwrap();
    connected(&mut client).await;
    proxy.cut();
    let events = events_until(&mut client, |e| {
        matches!(e, Event::State(State::Reconnecting { attempt: 2, .. }))
    })
    .await;
    assert_eq!(events.len(), 3, "{events:?}");
    let err = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::GaveUp { attempts: 2, .. }), "{err:?}");
    assert!(client.next().await.is_err(), "it stays failed");
}

#[tokio::test]
async fn connecting_to_nothing_fails_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    for t in Transport::ALL {
        let err = Client::connect(t, &url, options()).await.err().unwrap();
        assert!(matches!(err, Error::Connection(_)), "{t}: {err:?}");
    }
    assert!(matches!(
        Client::connect(Transport::Ws, "ftp://x", options())
            .await
            .err()
            .unwrap(),
        Error::Url { .. }
    ));
}

/// A `--store memory` server restarts and hands out the clients' ids again (more messages
/// than they had seen) before they reconnect: resuming with the old epoch, every client is
/// told to start over and gets the new server's messages, none skipped, none mixed up with
/// the old ones, then follows the new ids. (Judged by the id alone, the resume would have
/// looked valid and the clients would have skipped the new server's first messages.)
#[tokio::test]
async fn every_transport_starts_over_when_a_memory_server_restarts_and_reuses_the_ids() {
    let mut server = Server::start(&["--no-tls", "--store", "memory"]);
    let port = server.port;
    let proxy = Proxy::start(port).await;
    let mut clients = Vec::new();
    for t in Transport::ALL {
        let mut client = Client::connect(t, &proxy.url(), options()).await.unwrap();
        connected(&mut client).await;
        clients.push(client);
    }
    for text in ["old 1", "old 2", "old 3"] {
        post(&server, "seed", text).await;
    }
    for client in &mut clients {
        for id in 1..=3 {
            assert_eq!(next_message(client).await.id, id, "{}", client.transport());
        }
    }
    proxy.cut();
    server
        .terminate(Duration::from_secs(5))
        .expect("the server stops");
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&["--no-tls", "--store", "memory", "--listen", &listen]);
    let mut fresh = Vec::new();
    for i in 1..=5 {
        fresh.push(post(&server, "seed", &format!("new {i}")).await);
    }
    assert_eq!(
        fresh,
        [1, 2, 3, 4, 5],
        "the new server hands out the same ids again"
    );
    proxy.reopen();

    let want: Vec<(u64, String)> = (1..=5).map(|i| (i, format!("new {i}"))).collect();
    for client in &mut clients {
        let t = client.transport();
        let events = events_until(client, |e| matches!(e, Event::Message(m) if m.id == 5)).await;
        let connected_at = events
            .iter()
            .rposition(|e| matches!(e, Event::State(State::Connected { .. })))
            .unwrap_or_else(|| panic!("{t}: no Connected in {events:?}"));
        assert_eq!(
            events.get(connected_at + 1),
            Some(&Event::State(State::Reset { last: 5 })),
            "{t}: {events:?}"
        );
        let got: Vec<(u64, String)> = events[connected_at + 2..]
            .iter()
            .map(|e| match e {
                Event::Message(m) => (m.id, m.text.clone()),
                other => panic!("{t}: expected only the new history, got {other:?} in {events:?}"),
            })
            .collect();
        assert_eq!(got, want, "{t}: {events:?}");
    }
    // Then the new ids, each once, whoever posts.
    for (i, client) in clients.iter().enumerate() {
        let id = client.post("ann", &format!("live {i}")).await.unwrap();
        assert_eq!(id, 6 + i as u64, "{}", client.transport());
    }
    for client in &mut clients {
        for i in 0..Transport::ALL.len() {
            let m = next_message(client).await;
            assert_eq!(
                (m.id, m.text),
                (6 + i as u64, format!("live {i}")),
                "{}",
                client.transport()
            );
        }
    }
}

/// With the durable store a restarted server keeps its ids: every client resumes where it
/// was, with exactly the messages posted after the restart and no reset.
#[tokio::test]
async fn every_transport_resumes_across_a_restart_of_a_durable_server() {
    let dir = common::temp_dir("durable-client");
    let dir_arg = dir.to_str().unwrap();
    let mut server = Server::start(&["--no-tls", "--store", "sqlite", "--data-dir", dir_arg]);
    let port = server.port;
    let proxy = Proxy::start(port).await;
    let mut clients = Vec::new();
    for t in Transport::ALL {
        let mut client = Client::connect(t, &proxy.url(), options()).await.unwrap();
        connected(&mut client).await;
        clients.push(client);
    }
    let before = post(&server, "seed", "before").await;
    for client in &mut clients {
        assert_eq!(next_message(client).await.id, before);
    }
    proxy.cut();
    server
        .terminate(Duration::from_secs(5))
        .expect("the server stops");
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "sqlite",
        "--data-dir",
        dir_arg,
        "--listen",
        &listen,
    ]);
    let missed = [
        post(&server, "seed", "x").await,
        post(&server, "seed", "y").await,
    ];
    assert_eq!(
        missed,
        [before + 1, before + 2],
        "ids go on after a restart"
    );
    proxy.reopen();
    for client in &mut clients {
        let t = client.transport();
        let events =
            events_until(client, |e| matches!(e, Event::State(State::Resumed { .. }))).await;
        let got: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.id),
                Event::State(State::Reset { .. }) => panic!("{t}: no reset expected: {events:?}"),
                _ => None,
            })
            .collect();
        assert_eq!(got, missed, "{t}: {events:?}");
        assert_eq!(
            events.last(),
            Some(&Event::State(State::Resumed {
                after: before,
                count: 2
            })),
            "{t}"
        );
    }
}

//! One small client per transport: subscribers that record what they receive, and
//! publishers that post bench texts.

pub mod http;
pub mod ws;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::record::{bench_text, Receiver, Shared};
use crate::target::Target;
use http::HttpConn;
use ws::WsConn;

use rtchat_protocol::http::{MSGS, WS};
use rtchat_protocol::v1::{JSON_SUBPROTOCOL, SUBPROTOCOL};
pub use rtchat_protocol::Transport;

/// The token every connection and post of this process carries (`rtchat bench fanout
/// --token`, for a server with `--auth token`).
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Makes every following connection and post carry `token` (set once).
pub fn use_token(token: String) {
    let _ = TOKEN.set(token);
}

/// `Authorization: Bearer TOKEN\r\n` when a token is in use, else nothing.
pub fn auth_header() -> String {
    TOKEN
        .get()
        .map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"))
}

/// The transports the bench measures: all but short polling (its interval, not the server,
/// would set the latency).
pub const MEASURED: [Transport; 7] = [
    Transport::LongPoll,
    Transport::Stream,
    Transport::Sse,
    Transport::Ws,
    Transport::WsJson,
    Transport::SocketIo,
    Transport::SocketIoSnapshots,
];

/// `--transport`'s parser: one of [`MEASURED`].
pub fn parse(s: &str) -> Result<Transport, String> {
    Transport::parse_among(s, &MEASURED)
}

/// Whether `transport` needs the server's newest id before subscribing.
pub fn needs_last(transport: Transport) -> bool {
    matches!(transport, Transport::Sse | Transport::LongPoll)
}

/// The rooms run `run` uses over `transport`: a room of its own, `bench-<run>`, or with
/// `rooms` > 1 `bench-<run>-0` ... `bench-<run>-<rooms - 1>`, so that a benchmark never posts
/// into the chat's `general`. Empty (the course's paths, room `general`) with `general` (the
/// `--general` option), and for the course's snapshot transports, which are `general` only.
pub fn run_rooms(run: u32, rooms: usize, transport: Transport, general: bool) -> Vec<String> {
    if general || !has_rooms(transport) {
        Vec::new()
    } else if rooms <= 1 {
        vec![format!("bench-{run}")]
    } else {
        (0..rooms).map(|k| format!("bench-{run}-{k}")).collect()
    }
}

/// The room of subscriber (or message) number `index` when a run spreads over `rooms`
/// (`index % rooms.len()`), or `None` for none: the course's paths, room `general`.
pub fn room_of(rooms: &[String], index: usize) -> Option<&str> {
    (!rooms.is_empty()).then(|| rooms[index % rooms.len()].as_str())
}

/// A fresh id for a run (in its bench texts and its rooms' names).
pub fn new_run_id() -> u32 {
    (crate::sys::unix_nanos() as u32 ^ std::process::id().rotate_left(16)) % 1_000_000_000
}

/// The one-line warning for a run that posts into the chat's `general`: asked for
/// (`--general`), or the course's snapshot transports, which can only use it.
pub fn general_warning(transport: Transport, general: bool) -> Option<String> {
    if general {
        Some("warning: --general: this benchmark posts into the chat's general room".to_owned())
    } else {
        (!has_rooms(transport)).then(|| {
            format!(
                "warning: {} is the course's room general only: this benchmark posts into the chat's general room",
                transport.name()
            )
        })
    }
}

/// `transport` can spread over rooms (the course's snapshot transports cannot: they are the
/// room `general`).
pub fn has_rooms(transport: Transport) -> bool {
    !matches!(
        transport,
        Transport::WsJson | Transport::SocketIoSnapshots | Transport::Poll
    )
}

/// What every subscriber of a run shares.
#[derive(Debug)]
pub struct SubscriberSetup {
    /// The server.
    pub target: Target,
    /// The figures.
    pub shared: Arc<Shared>,
    /// This run's id (in every bench text).
    pub run: u32,
    /// The server's newest id (and its epoch) when the run started (for `since`).
    pub last: Since,
    /// How long a long poll is held.
    pub poll_timeout: u32,
    /// The rooms subscribers spread over ([`run_rooms`]; none: the course's paths).
    pub rooms: Vec<String>,
}

/// Runs subscriber `index` until its connection fails (or its task is aborted).
pub async fn subscribe(setup: Arc<SubscriberSetup>, transport: Transport, index: usize) {
    let shared = setup.shared.clone();
    if let Err(e) = subscribe_inner(&setup, transport, index).await {
        shared.error(format!("subscriber {index}: {e}"));
    }
}

async fn subscribe_inner(
    setup: &SubscriberSetup,
    transport: Transport,
    index: usize,
) -> io::Result<()> {
    let shared = &*setup.shared;
    let mut rx = Receiver::new(setup.run, index);
    let stream = setup.target.connect(index).await?;
    let host = &setup.target.host;
    let room = room_of(&setup.rooms, index);
    match transport {
        Transport::WsJson | Transport::Ws => {
            let (proto, snapshot) = match transport {
                Transport::WsJson => (JSON_SUBPROTOCOL, true),
                _ => (SUBPROTOCOL, false),
            };
            let path = match &room {
                Some(room) => format!("{WS}?rooms={room}"),
                None => WS.to_owned(),
            };
            let mut conn = WsConn::connect(stream, host, &path, Some(proto)).await?;
            let first = conn.next_message().await?;
            rx.receive(shared, first, snapshot);
            shared.ready();
            loop {
                let data = conn.next_message().await?;
                rx.receive(shared, data, snapshot);
            }
        }
        Transport::SocketIoSnapshots | Transport::SocketIo => {
            let delta = transport == Transport::SocketIo;
            let mut conn = sio_connect(stream, host, delta).await?;
            if let Some(room) = &room {
                let join = format!(r#"42["room:join",{{"room":"{room}"}}]"#);
                conn.send_text(join.as_bytes()).await?;
            }
            let mut ready = delta;
            if delta {
                shared.ready();
            }
            loop {
                let data = conn.next_message().await?;
                if data == b"2" {
                    conn.send_text(b"3").await?;
                } else if let Some(rest) = data.strip_prefix(b"42[\"msg:get\"") {
                    rx.receive(shared, rest, true);
                    if !ready {
                        shared.ready();
                        ready = true;
                    }
                } else if data.starts_with(b"42[\"msg:new\"") {
                    rx.receive(shared, data, false);
                } else if data.starts_with(b"41") || data.starts_with(b"44") {
                    return Err(io::Error::other(format!(
                        "Socket.IO: {}",
                        String::from_utf8_lossy(data)
                    )));
                }
            }
        }
        Transport::Stream | Transport::Sse => {
            let (path, snapshot) = match (transport, &room) {
                (Transport::Stream, None) => (MSGS.to_owned(), true),
                (Transport::Stream, Some(room)) => (format!("/rooms/{room}/msgs"), true),
                (_, None) => (format!("/events?{}", setup.last.query()), false),
                // A fresh room stream starts with the room's history, which holds no message
                // of this run.
                (_, Some(room)) => (format!("/rooms/{room}/events"), false),
            };
            let mut conn = HttpConn::new(stream);
            conn.send(&http::get(&path, host)).await?;
            let head = conn.read_head().await?;
            if head.status != 200 || !head.chunked {
                return Err(io::Error::other(format!(
                    "GET {path}: status {} (chunked: {})",
                    head.status, head.chunked
                )));
            }
            if !snapshot {
                shared.ready();
            }
            let mut ready = !snapshot;
            loop {
                let chunk = conn.next_chunk().await?;
                if chunk.is_empty() {
                    return Err(io::Error::other(format!("GET {path}: the stream ended")));
                }
                rx.receive(shared, chunk, snapshot);
                if !ready {
                    shared.ready();
                    ready = true;
                }
            }
        }
        Transport::Poll => Err(io::Error::other(
            "short polling is not benchmarked (its interval sets the latency); use longpoll",
        )),
        Transport::LongPoll => {
            let mut conn = HttpConn::new(stream);
            let (mut at, prefix) = match &room {
                None => (setup.last.clone(), String::new()),
                Some(room) => (Since::default(), format!("/rooms/{room}")),
            };
            let mut ready = false;
            loop {
                let path = format!(
                    "{prefix}/poll?{}&timeout={}",
                    at.query(),
                    setup.poll_timeout
                );
                conn.send(&http::get(&path, host)).await?;
                if !ready {
                    shared.ready();
                    ready = true;
                }
                let (status, newest, epoch, reset) = conn
                    .read_response_with(|status, body| {
                        if status == 200 {
                            rx.receive(shared, body, false);
                        }
                        let reset = memchr::memmem::find(body, b"\"reset\":true").is_some();
                        (status, http::json_last(body), http::json_epoch(body), reset)
                    })
                    .await?;
                if status != 200 {
                    return Err(io::Error::other(format!("GET /poll: status {status}")));
                }
                // A reset (the server's history has another epoch now) starts over from its
                // `last`; otherwise ids only go up.
                let newest = newest.unwrap_or(at.last);
                at.last = if reset { newest } else { newest.max(at.last) };
                at.epoch = epoch.or(at.epoch);
            }
        }
    }
}

/// Opens a Socket.IO session over WebSocket: Engine.IO open, then the namespace connect.
async fn sio_connect(stream: tokio::net::TcpStream, host: &str, delta: bool) -> io::Result<WsConn> {
    let mut conn =
        WsConn::connect(stream, host, "/socket.io/?EIO=4&transport=websocket", None).await?;
    let open = conn.next_message().await?;
    if !open.starts_with(b"0{") {
        return Err(io::Error::other("Socket.IO: no Engine.IO open packet"));
    }
    let token = TOKEN
        .get()
        .map_or_else(String::new, |t| format!(",\"token\":\"{t}\""));
    let connect = format!("40{{\"snapshots\":{}{token}}}", !delta);
    conn.send_text(connect.as_bytes()).await?;
    // Events sent before the namespace answered are not ours to send yet.
    loop {
        let packet = conn.next_message().await?;
        if packet.starts_with(b"40") {
            return Ok(conn);
        }
        if packet.starts_with(b"44") {
            return Err(io::Error::other(format!(
                "Socket.IO connect refused: {}",
                String::from_utf8_lossy(packet)
            )));
        }
        if packet == b"2" {
            conn.send_text(b"3").await?;
        }
    }
}

/// A position in the chat: after message `last` of the history `epoch` (when the server
/// names one; a bare id is judged by the id alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Since {
    /// The message id.
    pub last: u64,
    /// The epoch of the history it belongs to.
    pub epoch: Option<String>,
}

impl Since {
    /// `since=ID[&epoch=E]`, for a query string.
    pub fn query(&self) -> String {
        match &self.epoch {
            Some(epoch) => format!("since={}&epoch={epoch}", self.last),
            None => format!("since={}", self.last),
        }
    }
}

/// The server's newest message id and its epoch (`last` and `epoch` of `GET /poll`).
pub async fn fetch_last(target: &Target) -> io::Result<Since> {
    let mut conn = HttpConn::new(target.connect(0).await?);
    conn.send(&http::get("/poll", &target.host)).await?;
    let (status, last, epoch) = conn
        .read_response_with(|status, body| (status, http::json_last(body), http::json_epoch(body)))
        .await?;
    match (status, last) {
        (200, Some(last)) => Ok(Since { last, epoch }),
        _ => Err(io::Error::other(format!(
            "GET /poll answered {status} without \"last\""
        ))),
    }
}

/// One post's JSON for the given transport's publisher.
fn post_json(text: &str) -> String {
    format!(r#"{{"user":"bench","text":"{text}"}}"#)
}

/// Posts `messages` bench texts at `rate` per second over `transport`'s own way of posting
/// (WebSocket frames, Socket.IO `msg:post`, else `POST /poll`), message `seq` to room
/// [`room_of`]`(rooms, seq - 1)`; `posted` counts them.
pub async fn publish(
    target: &Target,
    transport: Transport,
    run: u32,
    (messages, rooms): (u64, &[String]),
    rate: f64,
    posted: &std::sync::atomic::AtomicU64,
) -> io::Result<()> {
    use std::sync::atomic::Ordering;
    let stream = target.connect(0).await?;
    let host = &target.host;
    let start = Instant::now();
    let due = |seq: u64| start + Duration::from_secs_f64((seq - 1) as f64 / rate.max(0.001));
    match transport {
        Transport::WsJson | Transport::Ws | Transport::SocketIoSnapshots | Transport::SocketIo => {
            let mut conn = match transport {
                Transport::WsJson => {
                    WsConn::connect(stream, host, WS, Some(JSON_SUBPROTOCOL)).await?
                }
                Transport::Ws => WsConn::connect(stream, host, WS, Some(SUBPROTOCOL)).await?,
                _ => sio_connect(stream, host, true).await?,
            };
            for seq in 1..=messages {
                // Drain what the server sends (answering pings) until the post is due, and
                // always what is already there: a publisher that stops reading would stall
                // the server's writes to it, and with them its posts.
                let when = due(seq);
                loop {
                    tokio::select! {
                        biased;
                        got = conn.next_message() => {
                            if got? == b"2" {
                                conn.send_text(b"3").await?;
                            }
                        }
                        _ = tokio::time::sleep_until(when) => break,
                    }
                }
                let text = bench_text(run, seq);
                let room = room_of(rooms, seq as usize - 1)
                    .map_or_else(String::new, |r| format!(r#""room":"{r}","#));
                let frame = match transport {
                    Transport::WsJson => post_json(&text),
                    Transport::Ws => format!(
                        r#"{{"type":"post",{room}"user":"bench","text":"{text}","ref":{seq}}}"#
                    ),
                    _ => format!(r#"42["msg:post",{{{room}"user":"bench","text":"{text}"}}]"#),
                };
                conn.send_text(frame.as_bytes()).await?;
                posted.fetch_add(1, Ordering::Relaxed);
            }
            // Keep reading a moment so the server is not cut off mid-broadcast.
            let _ = tokio::time::timeout(Duration::from_millis(200), async {
                loop {
                    conn.next_message().await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), io::Error>(())
            })
            .await;
            Ok(())
        }
        Transport::Stream | Transport::Sse | Transport::LongPoll | Transport::Poll => {
            let mut conn = HttpConn::new(stream);
            for seq in 1..=messages {
                tokio::time::sleep_until(due(seq)).await;
                let body = post_json(&bench_text(run, seq));
                let path = match room_of(rooms, seq as usize - 1) {
                    Some(room) => format!("/rooms/{room}/poll"),
                    None => "/poll".to_owned(),
                };
                conn.send(&http::post_json(&path, host, &body)).await?;
                let status = conn.read_response_with(|status, _| status).await?;
                if status != 200 {
                    return Err(io::Error::other(format!("POST {path}: status {status}")));
                }
                posted.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }
    }
}

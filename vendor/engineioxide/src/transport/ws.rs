//! The ws transport module is responsible for handling websocket connections
//! The only public function is [`new_req`] which is used to upgrade a http request to a websocket connection
//!
//! Other functions are used internally to handle the websocket connection through tasks and channels
//! and to handle upgrade from polling to ws

use std::sync::Arc;

use std::future::Future;
use std::task::Poll;

use futures_util::{FutureExt, SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, request::Parts};
use smallvec::smallvec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::{
    WebSocketStream,
    tungstenite::{
        self, Message,
        handshake::derive_accept_key,
        protocol::{Role, WebSocketConfig},
    },
};
use tokio_util::future::FutureExt as _;

use engineioxide_core::{Packet, PacketBuf, ProtocolVersion, Sid, Str, TransportType};

use crate::{
    DisconnectReason, Socket, body::ResponseBody, config::EngineIoConfig, engine::EngineIo,
    errors::Error, handler::EngineIoHandler, transport::make_open_packet,
};

/// Create a response for websocket upgrade
fn ws_response<B>(ws_key: &HeaderValue) -> Response<ResponseBody<B>> {
    let derived = derive_accept_key(ws_key.as_bytes());
    let sec = derived.parse::<HeaderValue>().unwrap();
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::UPGRADE, HeaderValue::from_static("websocket"))
        .header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )
        .header(http::header::SEC_WEBSOCKET_ACCEPT, sec)
        .body(ResponseBody::empty_response())
        .unwrap() // we are only using constants
}

/// Upgrade a websocket request to create a websocket connection.
///
/// If a sid is provided in the query it means that is is upgraded from an existing HTTP polling request.
/// In this case the http polling request is closed and the SID is kept for the websocket
pub fn new_req<R: Send + 'static, B, H: EngineIoHandler>(
    engine: Arc<EngineIo<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req: Request<R>,
) -> Result<Response<ResponseBody<B>>, Error> {
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts.clone(), body);

    let ws_key = parts
        .headers
        .get("Sec-WebSocket-Key")
        .ok_or(Error::InvalidWebSocketKey)?
        .clone();

    // Boxed: the request and the handshake's state are freed once the session runs.
    let handshake = Box::pin(async move {
        let conn = match hyper::upgrade::on(req).await {
            Ok(conn) => hyper_util::rt::TokioIo::new(conn),
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!("ws upgrade error: {}", _e);
                return Err(Error::Upgrade);
            }
        };
        let opened = open(engine.clone(), conn, protocol, sid, parts).await;
        match &opened {
            Ok(_) | Err(Error::MultipleWebsocketRequests) => {}
            Err(_e) => {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, "ws closed with error: {_e}");
                if let Some(sid) = sid {
                    engine.close_session(sid, DisconnectReason::TransportError);
                }
            }
        }
        opened
    });
    tokio::spawn(run(handshake));

    Ok(ws_response(&ws_key))
}

/// Handle a websocket connection upgrade
///
/// Sends an open packet if it is not an upgrade from a polling request
///
/// Then runs the session in this one task, until the connection is closed: it reads the
/// client's packets, writes the socket's and (for a session that starts on a websocket) keeps
/// the heartbeat. One task rather than three (a reader, a writer and a heartbeat job), and the
/// handshake in a future of its own, so an idle session costs little more than its websocket.
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", name = "init_websocket", skip(engine, conn, req_data))
)]
pub fn on_init<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> impl Future<Output = Result<(), Error>> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Boxed: the handshake's state (and the request head) is freed once it is done, and the
    // session's task keeps only what the session needs.
    run(Box::pin(open(engine, conn, protocol, sid, req_data)))
}

/// A websocket once its handshake is done.
struct Opened<H: EngineIoHandler, S> {
    engine: Arc<EngineIo<H>>,
    socket: Arc<Socket<H::Data>>,
    ws: WebSocketStream<S>,
    /// The session keeps its own heartbeat.
    heartbeat: bool,
}

/// Runs a websocket session once `handshake` is done, until it ends.
async fn run<H: EngineIoHandler, S, F>(handshake: std::pin::Pin<Box<F>>) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = Result<Opened<H, S>, Error>>,
{
    let Opened {
        engine,
        socket,
        ws,
        heartbeat,
    } = handshake.await?;
    match session(&engine, &socket, ws, heartbeat).await {
        Ended::Failed(ref e) => {
            let reason =
                Option::<DisconnectReason>::from(e).unwrap_or(DisconnectReason::TransportError);

            #[cfg(feature = "tracing")]
            tracing::debug!("error when handling packet: {:?}", e);
            engine.close_session(socket.id, reason);
        }
        Ended::ByClient => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "ws transport was closed");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
        }
        Ended::Closing => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = %socket.id, "socket is closing");
        }
    }
    Ok(())
}

/// The websocket handshake, or the upgrade of a polling session: the socket, its websocket,
/// and whether the session keeps its own heartbeat (a session upgraded from polling has its
/// heartbeat job already; so does the v3 protocol, where the client pings).
async fn open<H: EngineIoHandler, S>(
    engine: Arc<EngineIo<H>>,
    conn: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    req_data: Parts,
) -> Result<Opened<H, S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(engine.config.ws_read_buffer_size)
        .max_message_size(Some(engine.config.ws_max_message_size))
        .max_frame_size(Some(engine.config.ws_max_frame_size));

    let ws_init = move || WebSocketStream::from_raw_socket(conn, Role::Server, Some(ws_config));
    if let Some(sid) = sid {
        match engine.get_socket(sid) {
            None => Err(Error::UnknownSessionID(sid)),
            Some(socket) if socket.is_ws() => Err(Error::MultipleWebsocketRequests),
            Some(socket) => {
                let mut ws = ws_init().await;

                let upgrade_fut = upgrade_handshake::<H, S>(&socket, &mut ws);
                match tokio::time::timeout(engine.config.upgrade_timeout, upgrade_fut)
                    .with_cancellation_token(&socket.cancellation_token)
                    .await
                {
                    Some(Ok(res)) => res?,
                    Some(Err(_)) => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "ws upgrade timed out, closing session");
                        engine.close_session(socket.id, DisconnectReason::TransportError);
                        return Err(Error::Upgrade);
                    }
                    None => {
                        #[cfg(feature = "tracing")]
                        tracing::debug!(?sid, "socket is being closed");
                        return Err(Error::Upgrade);
                    }
                }
                Ok(Opened {
                    engine,
                    socket,
                    ws,
                    heartbeat: false,
                })
            }
        }
    } else {
        let socket = engine.create_session(protocol, TransportType::Websocket, req_data, false);

        #[cfg(feature = "tracing")]
        tracing::debug!("new websocket connection");

        let mut ws = ws_init().await;
        init_handshake(socket.id, &mut ws, &engine.config).await?;
        let own_heartbeat = socket.protocol == ProtocolVersion::V4;
        if !own_heartbeat {
            socket
                .clone()
                .spawn_heartbeat(engine.config.ping_interval, engine.config.ping_timeout);
        }
        Ok(Opened {
            engine,
            socket,
            ws,
            heartbeat: own_heartbeat,
        })
    }
}

/// How a websocket session ended.
enum Ended {
    /// The client closed it (a close packet or frame, or the end of the stream).
    ByClient,
    /// The socket is being closed by the server (its session is already being removed).
    Closing,
    /// A transport, protocol or heartbeat error.
    Failed(Error),
}

/// Runs a websocket session until it ends: writes the packets of the socket's buffer as far as
/// the connection takes them, reads and handles the client's packets and, with `heartbeat`
/// (v4), sends a ping every `ping_interval` and fails the session when the pong does not come
/// within `ping_timeout`. Then writes what is left and closes the websocket, within
/// `ping_timeout`.
async fn session<H: EngineIoHandler, S>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    mut ws: WebSocketStream<S>,
    heartbeat: bool,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // A polling request that was in progress during the upgrade may still hold the lock: the
    // holder of the lock is the only reader of the buffer.
    let lock = socket.internal_rx.lock();
    let Some(_reader) = lock
        .with_cancellation_token(&socket.cancellation_token)
        .await
    else {
        #[cfg(feature = "tracing")]
        tracing::debug!(sid = %socket.id, "session closed before starting the ws writer");
        return Ended::Closing;
    };
    let (interval, timeout) = (engine.config.ping_interval, engine.config.ping_timeout);
    let cancelled = socket.cancellation_token.cancelled();
    let timer = tokio::time::sleep(interval);
    // Some clients send the pong packet in first. If that happens, we should consume it.
    let _ = socket.heartbeat.notified().now_or_never();
    let pong = socket.heartbeat.notified();
    tokio::pin!(cancelled, timer, pong);
    let mut awaiting_pong = false;
    let mut group = PacketBuf::new().into_iter();
    let mut unflushed = false;

    let ended = std::future::poll_fn(|cx| {
        // Write what waits, as far as the connection takes it.
        loop {
            if group.as_slice().is_empty() {
                match socket.queue.poll_recv(cx) {
                    Poll::Ready(Some(packets)) => group = packets.into_iter(),
                    Poll::Ready(None) => return Poll::Ready(Ended::Closing),
                    Poll::Pending => break,
                }
                continue;
            }
            match ws.poll_ready_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    let packet = group.next().expect("not empty");
                    if let Some(msg) = to_message(socket.protocol, packet) {
                        if let Err(e) = ws.start_send_unpin(msg) {
                            return Poll::Ready(Ended::Failed(Box::new(e).into()));
                        }
                        unflushed = true;
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Ended::Failed(Box::new(e).into())),
                Poll::Pending => break,
            }
        }
        if unflushed {
            match ws.poll_flush_unpin(cx) {
                Poll::Ready(Ok(())) => unflushed = false,
                Poll::Ready(Err(e)) => return Poll::Ready(Ended::Failed(Box::new(e).into())),
                Poll::Pending => {}
            }
        }
        // Read what the client sent.
        loop {
            match ws.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(msg))) => match on_message(engine, socket, msg) {
                    Ok(true) => {}
                    Ok(false) => return Poll::Ready(Ended::ByClient),
                    Err(e) => return Poll::Ready(Ended::Failed(e)),
                },
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Ended::Failed(Box::new(e).into()));
                }
                Poll::Ready(None) => return Poll::Ready(Ended::ByClient),
                Poll::Pending => break,
            }
        }
        // The heartbeat: a ping every interval, its pong within the timeout.
        if heartbeat {
            if awaiting_pong && pong.as_mut().poll(cx).is_ready() {
                awaiting_pong = false;
                pong.set(socket.heartbeat.notified());
                let next = timer.deadline() - timeout + interval;
                timer.as_mut().reset(next);
            }
            if timer.as_mut().poll(cx).is_ready() {
                if awaiting_pong {
                    socket.close(DisconnectReason::HeartbeatTimeout);
                    return Poll::Ready(Ended::Closing);
                }
                #[cfg(feature = "tracing")]
                tracing::trace!(sid = ?socket.id, "emitting ping");
                if socket.queue.force_send(smallvec![Packet::Ping]).is_err() {
                    return Poll::Ready(Ended::Closing);
                }
                awaiting_pong = true;
                timer.as_mut().reset(tokio::time::Instant::now() + timeout);
                // Poll again: the ping is to be written, the new deadline to be registered.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ended::Closing);
        }
        Poll::Pending
    })
    .await;

    // The packets left (a close packet, say), then the closing handshake.
    let last = async {
        for packet in group {
            if let Some(msg) = to_message(socket.protocol, packet) {
                ws.feed(msg).await?;
            }
        }
        while let Some(packets) = socket.queue.try_recv() {
            for packet in packets {
                if let Some(msg) = to_message(socket.protocol, packet) {
                    ws.feed(msg).await?;
                }
            }
        }
        ws.close(None).await
    };
    let _ = tokio::time::timeout(timeout, last).await;
    ended
}

/// A packet as a websocket message (`None` for a noop: sent by the server to end a polling
/// request during an upgrade, it may remain in the buffer and is discarded here).
fn to_message(protocol: ProtocolVersion, packet: Packet) -> Option<Message> {
    match packet {
        Packet::Binary(bin) | Packet::BinaryV3(bin) => {
            if protocol == ProtocolVersion::V3 {
                // v3 protocol requires packet type as the first byte.
                let mut buff = Vec::with_capacity(bin.len() + 1);
                buff.push(0x04);
                buff.extend(bin);
                Some(Message::Binary(buff.into()))
            } else {
                Some(Message::Binary(bin))
            }
        }
        Packet::Noop => None,
        packet => {
            let packet: String = packet.into();
            Some(Message::Text(packet.into()))
        }
    }
}

/// Handles one message of the client. `Ok(false)` when it closed the session.
fn on_message<H: EngineIoHandler>(
    engine: &Arc<EngineIo<H>>,
    socket: &Arc<Socket<H::Data>>,
    msg: Message,
) -> Result<bool, Error> {
    match msg {
        Message::Text(msg) => match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
            Packet::Close => {
                #[cfg(feature = "tracing")]
                tracing::debug!("[sid={}] closing session", socket.id);
                engine.close_session(socket.id, DisconnectReason::TransportClose);
                Ok(false)
            }
            Packet::Pong | Packet::Ping => {
                // A client already known to be alive needs no second notification.
                socket.heartbeat.notify_one();
                Ok(true)
            }
            Packet::Message(msg) => {
                engine.handler.on_message(msg, socket.clone());
                Ok(true)
            }
            p => Err(Error::BadPacket(p)),
        },
        Message::Binary(mut data) => {
            if socket.protocol == ProtocolVersion::V3 && !data.is_empty() {
                // The first byte is the message type, which we don't need.
                data = data.split_off(1);
            }
            engine.handler.on_binary(data, socket.clone());
            Ok(true)
        }
        Message::Close(_) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("websocket closed, closing session");
            engine.close_session(socket.id, DisconnectReason::TransportClose);
            Ok(false)
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!(sid = ?socket.id, "unexpected ws message");
            Ok(true)
        }
    }
}

/// Send a Engine.IO [`OpenPacket`] to initiate a websocket connection
async fn init_handshake<S>(
    sid: Sid,
    ws: &mut WebSocketStream<S>,
    config: &EngineIoConfig,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let packet = Packet::Open(make_open_packet(TransportType::Websocket, sid, config));
    let packet: String = packet.into();
    ws.send(Message::Text(packet.into())).await?;
    Ok(())
}

/// Upgrade a session from a polling request to a websocket request.
///
/// Before upgrading the session the server should send a NOOP packet to any pending polling request.
///
/// ## Handshake :
/// ```text
/// CLIENT                                                 SERVER
///│                                                      │
///│   GET /engine.io/?EIO=4&transport=websocket&sid=...  │
///│ ───────────────────────────────────────────────────► │
///│  ◄─────────────────────────────────────────────────┘ │
///│            HTTP 101 (WebSocket handshake)            │
///│                                                      │
///│            -----  WebSocket frames -----             │
///│  ─────────────────────────────────────────────────►  │
///│                         2probe                       │ (ping packet)
///│  ◄─────────────────────────────────────────────────  │
///│                         3probe                       │ (pong packet)
///│  ─────────────────────────────────────────────────►  │
///│                         5                            │ (upgrade packet)
///│                                                      │
///│            -----  WebSocket frames -----             │
/// ```
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(level = "trace", skip(socket, ws))
)]
async fn upgrade_handshake<H: EngineIoHandler, S>(
    socket: &Arc<Socket<H::Data>>,
    ws: &mut WebSocketStream<S>,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    #[cfg(feature = "tracing")]
    tracing::debug!("starting websocket connection upgrade");

    // The socket is upgrading, from now on all polling
    // request will return a `Packet::Noop`
    socket.start_upgrade();

    // We send a last Noop request to close a potential waiting polling request.
    socket
        .queue
        .force_send(smallvec![Packet::Noop])
        .map_err(|_| Error::Upgrade)?;

    // wait for any current polling connection to finish by waiting for the socket to be unlocked
    // All other polling connection will be immediately closed with a NOOP packet.
    let _lock = socket.internal_rx.lock().await;

    // Fetch the next packet from the ws stream, it should be a PingUpgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        _ => Err(Error::Upgrade)?,
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::PingUpgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("received first ping upgrade");
            // Respond with a PongUpgrade packet
            ws.send(Message::Text(String::from(Packet::PongUpgrade).into()))
                .await?;
        }
        p => Err(Error::BadPacket(p))?,
    };

    // Fetch the next packet from the ws stream, it should be an Upgrade packet
    let msg = match ws.next().await {
        Some(Ok(Message::Text(d))) => d,
        Some(Ok(Message::Close(_))) => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws stream closed before upgrade");
            Err(Error::Upgrade)?
        }
        _ => {
            #[cfg(feature = "tracing")]
            tracing::debug!("unexpected ws message before upgrade");
            Err(Error::Upgrade)?
        }
    };
    match Packet::parse(socket.protocol, ws_bytes_to_str(msg))? {
        Packet::Upgrade => {
            #[cfg(feature = "tracing")]
            tracing::debug!("ws upgraded successfully")
        }
        p => Err(Error::BadPacket(p))?,
    };

    socket.upgrade_to_websocket();
    Ok(())
}

fn ws_bytes_to_str(bytes: tungstenite::Utf8Bytes) -> Str {
    // SAFETY: the bytes are guaranteed to be valid UTF-8 by the tungstenite parser
    unsafe { Str::from_bytes_unchecked(bytes.into()) }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use futures_util::StreamExt;
    use http::Request;
    use tokio::io::DuplexStream;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    #[derive(Debug)]
    struct StubHandler;
    impl EngineIoHandler for StubHandler {
        type Data = ();
        fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
        fn on_disconnect(&self, _: Arc<Socket<()>>, _: DisconnectReason) {}
        fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
        fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
    }

    fn socket() -> Arc<Socket<()>> {
        Arc::new(Socket::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &EngineIoConfig::default(),
            Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ))
    }

    /// A websocket session of `socket` on `ws`, without a heartbeat.
    async fn run(socket: Arc<Socket<()>>, ws: WebSocketStream<DuplexStream>) {
        let engine = Arc::new(EngineIo::new(Arc::new(StubHandler), EngineIoConfig::default()));
        session(&engine, &socket, ws, false).await;
    }

    async fn ws_pair() -> (WebSocketStream<DuplexStream>, WebSocketStream<DuplexStream>) {
        let (server, client) = tokio::io::duplex(1024);
        (
            WebSocketStream::from_raw_socket(server, Role::Server, None).await,
            WebSocketStream::from_raw_socket(client, Role::Client, None).await,
        )
    }

    /// A polling request can still hold the lock at the end of an upgrade.
    #[tokio::test]
    async fn writer_waits_for_the_lock_of_a_polling_request() {
        let socket = socket();
        let (server, mut client) = ws_pair().await;

        let polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(run(socket.clone(), server));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!writer.is_finished(), "the writer should wait for the lock");

        drop(polling);
        socket.emit(Str::from("hello")).unwrap();
        let msg = tokio::time::timeout(TIMEOUT, client.next())
            .await
            .expect("the writer should send the packet")
            .unwrap()
            .unwrap();
        assert_eq!(msg, Message::text("4hello"));
    }

    #[tokio::test]
    async fn writer_waiting_for_the_lock_stops_with_the_session() {
        let socket = socket();
        let (server, _client) = ws_pair().await;

        let _polling = socket.internal_rx.lock().await;
        let writer = tokio::spawn(run(socket.clone(), server));
        tokio::time::sleep(Duration::from_millis(20)).await;

        socket.cancellation_token.cancel();
        tokio::time::timeout(TIMEOUT, writer)
            .await
            .expect("the writer should stop")
            .unwrap();
    }
}

//! WebSockets at `/ws` (tokio-tungstenite): rtchat's `rtchat.v1` subprotocol (deltas, acks,
//! `?since=ID&epoch=E` resume) and the course's `json` (a snapshot after every message).
//! Posts carry their idempotency key (`"key"`), and are sent again on the next connection
//! when the answer was lost with this one. In a room other than `general`
//! ([`crate::Options::room`]), rtchat.v1 connects to `/ws?rooms={room}` (its `joined` frame,
//! then its history), posts carry `"room"`, and an unasked `left` of the room ends the client
//! ([`Error::Removed`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::auth::Token;
use crate::driver::{
    describe, AuthEnd, CatchUpEnd, Closed, Ctx, History, Opened, Outbox, Position, Session, Sink,
};
use crate::{valid_epoch, Error, Message, Page, PostCmd, Transport};
use rtchat_protocol::http::WS;
use rtchat_protocol::v1::{self, ClientFrame, ServerFrame};
use serde::Deserialize;
use tokio::sync::watch;

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const RTCHAT_V1: &str = v1::SUBPROTOCOL;
const JSON: &str = v1::JSON_SUBPROTOCOL;

/// Opens `ws(s)://.../path`, offering `protocol`; returns the socket and the chosen protocol.
pub(crate) async fn connect(
    ctx: &Ctx,
    path: &str,
    protocol: Option<&str>,
) -> Result<(Socket, Option<String>), Error> {
    let url = ctx.ws_url(path);
    let mut request = url.as_str().into_client_request().map_err(|e| Error::Url {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    if let Some(protocol) = protocol {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(protocol).map_err(|e| Error::Protocol(e.to_string()))?,
        );
    }
    // `--auth token`: the upgrade carries the token (as a header, kept out of URLs and logs).
    if let Some(token) = ctx.jwt() {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::Protocol("the token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", value);
    }
    let connector = Connector::Rustls(ctx.tls.clone());
    let (socket, response) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(res) => {
                    let status = res.status().as_u16();
                    let body = res.body().as_deref().unwrap_or_default();
                    crate::http::auth_refusal(status, body).unwrap_or_else(|| Error::Status {
                        status,
                        message: String::from_utf8_lossy(body).into_owned(),
                    })
                }
                e => Error::Connection(describe(&e)),
            })?;
    let chosen = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((socket, chosen))
}

/// Why the peer closed, for [`crate::State::Disconnected`].
pub(crate) fn close_reason(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(f) if !f.reason.is_empty() => {
            format!("closed by the server ({} {})", u16::from(f.code), f.reason)
        }
        Some(f) => format!("closed by the server ({})", u16::from(f.code)),
        None => "closed by the server".to_owned(),
    }
}

/// Answers the peer's close frame before the connection is dropped (RFC 6455 §5.5.1): on
/// reading a close frame, tungstenite queues the reply (echoing the status code) but writes
/// it only on the next flush, so flush it now, or the server waits for a handshake that never
/// completes. Bounded, so a peer that stopped reading cannot hold the client up.
pub(crate) async fn answer_close(socket: &mut Socket) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), socket.flush()).await;
}

/// `--auth token`: a close for the connection's token (4001 "token expired", 4005 "token
/// revoked") or its user (4003 "banned"; 4004 "kicked" is an ordinary close: the client
/// connects again).
pub(crate) fn auth_end(frame: Option<&CloseFrame>) -> Option<AuthEnd> {
    let frame = frame?;
    let reason = frame.reason.to_string();
    match u16::from(frame.code) {
        4001 => Some(AuthEnd::Expired(reason)),
        4005 => Some(AuthEnd::Revoked(reason)),
        4003 => Some(AuthEnd::Banned(reason)),
        _ => None,
    }
}

/// Resolves with each new token of the client (never without credentials). Cancel-safe.
pub(crate) async fn next_token(tokens: &mut Option<watch::Receiver<Option<Token>>>) -> String {
    if let Some(rx) = tokens {
        while rx.changed().await.is_ok() {
            if let Some(token) = rx.borrow_and_update().as_ref() {
                return token.jwt.clone();
            }
        }
    }
    std::future::pending().await
}

/// The next text frame; `Err` with a reason when the connection ends.
pub(crate) async fn next_text(socket: &mut Socket) -> Result<String, String> {
    loop {
        match socket.next().await {
            Some(Ok(Frame::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Frame::Close(frame))) => {
                answer_close(socket).await;
                return Err(close_reason(frame));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(describe(&e)),
            None => return Err("connection closed".to_owned()),
        }
    }
}

pub(crate) async fn open(ctx: &Ctx, resume: Option<&Position>) -> Result<Opened, Error> {
    let v1 = ctx.transport == Transport::Ws;
    // rtchat.v1 resumes (its catch-up ends with a `resumed` frame); the course's json
    // protocol starts with a snapshot every time (an epoch other than ours in it: a reset).
    // In a room (rtchat.v1 only: the course's json is `general` only), `?rooms={room}`.
    let room = ctx.room.clone().filter(|_| v1);
    let path = match (resume, &room) {
        (Some(position), None) if v1 => format!("{WS}?{}", position.query()),
        (Some(position), Some(room)) => format!("{WS}?rooms={room}&{}", position.query()),
        (None, Some(room)) => format!("{WS}?rooms={room}"),
        _ => WS.to_owned(),
    };
    let offer = if v1 { RTCHAT_V1 } else { JSON };
    // rtchat.v1 hands each fresh token to the connection (`refresh`); the course's json
    // protocol cannot: the server closes it when the token expires, and the client
    // reconnects with the fresh one.
    let tokens = ctx
        .auth
        .as_ref()
        .filter(|_| v1)
        .map(|auth| auth.subscribe());
    let (mut socket, chosen) = connect(ctx, &path, Some(offer)).await?;
    if v1 && chosen.as_deref() != Some(RTCHAT_V1) {
        return Err(Error::Protocol(format!(
            "the server did not accept the rtchat.v1 subprotocol (chose {chosen:?})"
        )));
    }
    let history: Option<History> = match (resume, &room) {
        (Some(_), _) => None,
        (None, None) => {
            let text = next_text(&mut socket).await.map_err(Error::Connection)?;
            let page: Page = serde_json::from_str(&text)
                .map_err(|e| Error::Protocol(format!("expected the history ({e}): {text}")))?;
            Some(page.into())
        }
        // The room's `joined`, then its `history` (presence may come in between).
        (None, Some(room)) => Some(room_history(&mut socket, room).await?),
    };
    Ok(Opened {
        session: Session::Ws(WsSession {
            socket,
            v1,
            room,
            pending: BTreeMap::new(),
            next_ref: 1,
            outstanding: None,
            latest: history.as_ref().map(|h| h.msg.clone()),
            tokens,
        }),
        history,
        via: format!("ws ({offer})"),
        catch_up: CatchUpEnd::Marker,
    })
}

/// rtchat.v1 in a room named by `?rooms=`: the frames up to the room's `history`.
async fn room_history(socket: &mut Socket, room: &str) -> Result<History, Error> {
    loop {
        let text = next_text(socket).await.map_err(Error::Connection)?;
        let frame: ServerFrame = match serde_json::from_str(&text) {
            Ok(frame) => frame,
            Err(_) => continue, // a frame type this client does not know
        };
        match frame {
            ServerFrame::History {
                room: of,
                msg,
                last,
                epoch,
            } if of.as_deref() == Some(room) => {
                let page = Page {
                    msg,
                    last: Some(last),
                    epoch,
                    ..Page::default()
                };
                return Ok(page.into());
            }
            ServerFrame::Left {
                room: of, reason, ..
            } if of == room => {
                return Err(Error::Removed {
                    room: of,
                    reason: reason.unwrap_or_default(),
                })
            }
            ServerFrame::Error { error, .. } => {
                return Err(Error::RoomRefused {
                    room: room.to_owned(),
                    reason: error,
                })
            }
            _ => {}
        }
    }
}

/// One WebSocket connection.
pub(crate) struct WsSession {
    socket: Socket,
    v1: bool,
    /// rtchat.v1 in a room other than `general` ([`crate::Options::room`]).
    room: Option<String>,
    /// rtchat.v1: posts sent, by `ref` (the order sent), waiting for `ack` or `error`.
    pending: BTreeMap<u64, PostCmd>,
    next_ref: u64,
    /// json: the one post in flight (the protocol has no acks: a snapshot holding the message,
    /// or an `error`, answers it).
    outstanding: Option<PostCmd>,
    /// json: the messages of the newest snapshot of this connection; posting waits for the
    /// first, which may show that a post sent before a reconnect was stored.
    latest: Option<Vec<Message>>,
    /// rtchat.v1 with credentials: each fresh token, to send as a `refresh`.
    tokens: Option<watch::Receiver<Option<Token>>>,
}

/// Resolves when the caller of the outstanding post has given up on it.
async fn abandoned(outstanding: &mut Option<PostCmd>) {
    match outstanding {
        Some(cmd) => cmd.reply.closed().await,
        None => std::future::pending().await,
    }
}

impl WsSession {
    pub(crate) async fn run(
        &mut self,
        sink: &mut Sink,
        posts: &mut Outbox,
    ) -> Result<String, Closed> {
        let mut posts_open = true;
        loop {
            let can_post =
                posts_open && (self.v1 || (self.outstanding.is_none() && self.latest.is_some()));
            tokio::select! {
                frame = self.socket.next() => {
                    let reason = match frame {
                        Some(Ok(Frame::Text(text))) => match self.on_text(text.as_str(), sink).await? {
                            Ok(()) => continue,
                            Err(reason) => reason,
                        },
                        Some(Ok(Frame::Close(frame))) => {
                            answer_close(&mut self.socket).await;
                            sink.auth_end = auth_end(frame.as_ref());
                            close_reason(frame)
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => describe(&e),
                        None => "connection closed".to_owned(),
                    };
                    return Ok(self.lost(reason, posts));
                }
                // A fresh token: this connection now lasts as long as it does.
                token = next_token(&mut self.tokens) => {
                    let r = self.next_ref;
                    self.next_ref += 1;
                    let frame = ClientFrame::Refresh {
                        token,
                        reference: format!("refresh-{r}").into(),
                    };
                    let frame = serde_json::to_string(&frame).expect("frames serialize");
                    if let Err(e) = self.socket.send(Frame::text(frame)).await {
                        return Ok(self.lost(describe(&e), posts));
                    }
                }
                // json: a post whose caller stopped waiting no longer holds up the next one.
                () = abandoned(&mut self.outstanding) => self.outstanding = None,
                cmd = posts.next(), if can_post => match cmd {
                    Some(cmd) => if let Err(e) = self.send_post(cmd, sink).await {
                        return Ok(self.lost(e, posts));
                    },
                    None => posts_open = false,
                },
            }
        }
    }

    /// Hands the posts that were sent but not answered back to `posts`, to go out again
    /// (same key) on the next connection, and passes `reason` on.
    fn lost(&mut self, reason: String, posts: &mut Outbox) -> String {
        for (_, cmd) in std::mem::take(&mut self.pending) {
            posts.send_again(cmd);
        }
        if let Some(cmd) = self.outstanding.take() {
            posts.send_again(cmd);
        }
        reason
    }

    async fn send_post(&mut self, mut cmd: PostCmd, sink: &Sink) -> Result<(), String> {
        if cmd.reply.is_closed() {
            return Ok(()); // the caller gave up waiting: never send it late
        }
        let frame = if self.v1 {
            let r = self.next_ref;
            self.next_ref += 1;
            let frame = ClientFrame::Post {
                room: self.room.clone(),
                user: cmd.user.clone(),
                text: cmd.text.clone(),
                reference: r.into(),
                key: Some(cmd.key.clone()),
            };
            let frame = serde_json::to_value(frame).expect("frames serialize");
            cmd.sent.store(true, Ordering::SeqCst);
            self.pending.insert(r, cmd);
            frame
        } else {
            // Sent before the last connection was lost: stored already if this connection's
            // first snapshot shows it (the protocol answers a repeated key with nothing).
            if let Some(id) = self.already_stored(&cmd, sink) {
                let _ = cmd.reply.send(Ok(id));
                return Ok(());
            }
            let frame = json!({"user": cmd.user, "text": cmd.text, "key": cmd.key});
            cmd.sent_at = Some((sink.epoch.clone(), sink.last));
            cmd.sent.store(true, Ordering::SeqCst);
            self.outstanding = Some(cmd);
            frame
        };
        self.socket
            .send(Frame::text(frame.to_string()))
            .await
            .map_err(|e| describe(&e))
    }

    /// json: the id of a post sent on an earlier connection, if the newest snapshot holds a
    /// message like it, newer than what the client had then, in the same history.
    fn already_stored(&self, cmd: &PostCmd, sink: &Sink) -> Option<u64> {
        let (epoch, after) = cmd.sent_at.as_ref()?;
        if *epoch != sink.epoch {
            return None;
        }
        self.latest
            .iter()
            .flatten()
            .filter(|m| m.id > *after && m.user == cmd.user && m.text == cmd.text)
            .map(|m| m.id)
            .min()
    }

    /// One text frame; the inner `Err` is a protocol error that ends the connection.
    async fn on_text(&mut self, text: &str, sink: &mut Sink) -> Result<Result<(), String>, Closed> {
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Ok(Err(format!("protocol error: bad JSON ({e}): {text}"))),
        };
        if self.v1 {
            self.on_v1(value, sink).await
        } else {
            self.on_json(value, sink).await
        }
    }

    async fn on_v1(&mut self, value: Value, sink: &mut Sink) -> Result<Result<(), String>, Closed> {
        let frame = match ServerFrame::deserialize(&value) {
            Ok(frame) => frame,
            // A frame type this client does not know (a newer server's): not for us.
            Err(_)
                if !ServerFrame::TYPES
                    .contains(&value.get("type").and_then(Value::as_str).unwrap_or("")) =>
            {
                return Ok(Ok(()));
            }
            Err(e) => return Ok(Err(format!("protocol error: bad frame ({e}): {value}"))),
        };
        let usable = |epoch: String| Some(epoch).filter(|e| valid_epoch(e));
        // This client is in one room (`general`, or the one it named): frames of another
        // room are not for it.
        let mine = self.room.as_deref().unwrap_or(v1::GENERAL);
        if frame.room().is_some_and(|room| room != mine) {
            return Ok(Ok(()));
        }
        match frame {
            ServerFrame::Msg { msg, .. } => sink.deliver([msg]).await?,
            // After a reset, the new history.
            ServerFrame::History {
                msg, last, epoch, ..
            } => {
                let page = Page {
                    msg,
                    last: Some(last),
                    epoch,
                    ..Page::default()
                };
                sink.apply_page(page).await?
            }
            // The position meant nothing here.
            ServerFrame::Reset { reset, .. } => sink.reset(reset.last, usable(reset.epoch)).await?,
            // Caught up.
            ServerFrame::Resumed { resumed, .. } => {
                sink.adopt_epoch(usable(resumed.epoch));
                sink.catch_up_done().await?;
            }
            ServerFrame::Truncated { .. } => sink.truncated().await?,
            ServerFrame::Ack { reference, id, .. } => {
                if let Some(cmd) = reference.as_u64().and_then(|r| self.pending.remove(&r)) {
                    let _ = cmd.reply.send(Ok(id));
                }
            }
            ServerFrame::Error {
                reference,
                error,
                retry_after_ms,
                ..
            } => {
                if let Some(cmd) = reference.as_u64().and_then(|r| self.pending.remove(&r)) {
                    let _ = cmd.reply.send(Err(crate::refusal(error, retry_after_ms)));
                }
            }
            // A message of the room was deleted: drop it.
            ServerFrame::Deleted { id, .. } => sink.deleted(id).await?,
            // This client never leaves its room: a `left` of it is the server taking it out
            // (the room turned private, the user was removed from it). Not retried.
            ServerFrame::Left { room, reason, .. } => {
                let e = Error::Removed {
                    room,
                    reason: reason.unwrap_or_default(),
                };
                let reason = e.to_string();
                sink.fatal = Some(e);
                return Ok(Err(reason));
            }
            // Rooms, presence and typing: not shown by this client.
            ServerFrame::Joined { .. }
            | ServerFrame::Presence(_)
            | ServerFrame::Typing(_)
            | ServerFrame::Refreshed { .. } => {}
        }
        Ok(Ok(()))
    }

    async fn on_json(
        &mut self,
        value: Value,
        sink: &mut Sink,
    ) -> Result<Result<(), String>, Closed> {
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            if let Some(cmd) = self.outstanding.take() {
                let retry_after_ms = value.get("retry_after_ms").and_then(Value::as_u64);
                let _ = cmd
                    .reply
                    .send(Err(crate::refusal(error.to_owned(), retry_after_ms)));
            }
            return Ok(Ok(()));
        }
        let page: Page = match serde_json::from_value(value) {
            Ok(page) => page,
            Err(e) => return Ok(Err(format!("protocol error: bad snapshot: {e}"))),
        };
        // Our post is answered by the first snapshot that holds a new message just like it.
        let mine = self.outstanding.as_ref().and_then(|cmd| {
            page.msg
                .iter()
                .filter(|m| m.id > sink.last && m.user == cmd.user && m.text == cmd.text)
                .map(|m| m.id)
                .min()
        });
        self.latest = Some(page.msg.clone());
        sink.apply_page(page).await?;
        if let Some(id) = mine {
            if let Some(cmd) = self.outstanding.take() {
                let _ = cmd.reply.send(Ok(id));
            }
        }
        Ok(Ok(()))
    }
}

//! Socket.IO v5 over Engine.IO v4's WebSocket transport, the few packets rtchat needs, on
//! tokio-tungstenite: the open packet `0{...}` and heartbeat (`2` → `3`), connect `40{auth}`,
//! events `42["name",data]`, acks `42N[...]` → `43N[...]`.
//!
//! The handshake's `auth` is `{"snapshots": false}` (rtchat's `msg:new` carries each message,
//! so the course's `msg:get` after every message is not needed) and, to resume, `"last": ID`
//! with `"epoch": E`: the server then answers with `msg:since` pages holding exactly what was
//! missed (or, for another epoch, a `msg:get` with `"reset": true`). Posts (`msg:post`) carry
//! their idempotency key and are sent again on the next connection when the ack was lost.
//!
//! In a room other than `general` ([`crate::Options::room`]) the socket joins it after the
//! connect (`room:join {room}`, with `last` and `epoch` to resume: acknowledged, then the
//! room's `room:history`, or its `msg:since` pages) and leaves `general`; it keeps only the
//! room's `msg:new`, posts carry `"room"`, and `room:left` (the server took it out of the
//! room) ends the client ([`Error::Removed`]).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::auth::Token;
use crate::driver::{
    describe, AuthEnd, CatchUpEnd, Closed, Ctx, Opened, Outbox, Position, Session, Sink,
};
use crate::ws::{answer_close, close_reason, connect, next_text, next_token, Socket};
use crate::{Error, Message, Page, PostCmd, Transport};
use rtchat_protocol::shapes::Removed;
use rtchat_protocol::socketio::{
    Auth, JoinRequest, RoomName, MSG_DELETED, MSG_GET, MSG_NEW, MSG_POST, MSG_SINCE, ROOM_HISTORY,
    ROOM_JOIN, ROOM_LEAVE, ROOM_LEFT,
};
use rtchat_protocol::v1::GENERAL;
use tokio::sync::watch;

/// `--auth token`: client → server, a fresh token for the socket (`{token}`, acknowledged).
const REFRESH: &str = "auth:refresh";
/// Server → client: the token expired and was not refreshed (`{reason}`); a disconnect
/// follows.
const EXPIRED: &str = "auth:expired";
/// Server → client: the token was revoked (`{reason}`); a disconnect follows.
const REVOKED: &str = "auth:revoked";
/// Server → client: an administrator banned the user (`{reason}`); a disconnect follows.
const BANNED: &str = "auth:banned";
/// Server → client: an administrator kicked the user (`{reason}`); a disconnect follows.
/// They may connect again.
const KICKED: &str = "auth:kicked";

/// The ack id of the connection's `room:join` (in a room other than `general`); the
/// `room:leave` of `general` takes the next one, the posts those after.
const JOIN_ACK: u64 = 1;

/// A Socket.IO packet on the default namespace, as this client needs it.
#[derive(Debug, PartialEq)]
enum Packet {
    /// Engine.IO open `0{...}`: the heartbeat window.
    Open {
        ping_interval: u64,
        ping_timeout: u64,
    },
    /// Engine.IO ping `2`.
    Ping,
    /// Engine.IO close `1`, or Socket.IO disconnect `41`.
    Close,
    /// Socket.IO connect `40{...}`.
    Connected,
    /// Socket.IO connect error `44{"message":...}`.
    ConnectError(String),
    /// Socket.IO event `42["name", data]`.
    Event(String, Value),
    /// Socket.IO ack `43N[args...]`.
    Ack(u64, Value),
    /// Anything else (pong, noop, other namespaces).
    Other,
}

fn parse(text: &str) -> Result<Packet, String> {
    let bad =
        |e: &dyn std::fmt::Display| format!("protocol error: bad Socket.IO packet ({e}): {text}");
    let Some(kind) = text.chars().next() else {
        return Err(bad(&"empty"));
    };
    let rest = &text[1..];
    Ok(match kind {
        '0' => {
            let open: Value = serde_json::from_str(rest).map_err(|e| bad(&e))?;
            Packet::Open {
                ping_interval: open["pingInterval"].as_u64().unwrap_or(25_000),
                ping_timeout: open["pingTimeout"].as_u64().unwrap_or(20_000),
            }
        }
        '1' => Packet::Close,
        '2' => Packet::Ping,
        '4' => {
            let Some(sio) = rest.chars().next() else {
                return Err(bad(&"empty message"));
            };
            let body = &rest[1..];
            if body.starts_with('/') {
                return Ok(Packet::Other); // another namespace
            }
            let digits = body.bytes().take_while(u8::is_ascii_digit).count();
            let ack_id = body[..digits].parse::<u64>().ok();
            let json = &body[digits..];
            match sio {
                '0' => Packet::Connected,
                '1' => Packet::Close,
                '2' => {
                    let args: Vec<Value> = serde_json::from_str(json).map_err(|e| bad(&e))?;
                    let mut args = args.into_iter();
                    match args.next() {
                        Some(Value::String(name)) => {
                            Packet::Event(name, args.next().unwrap_or(Value::Null))
                        }
                        _ => return Err(bad(&"an event needs a name")),
                    }
                }
                '3' => {
                    let args: Value = serde_json::from_str(json).map_err(|e| bad(&e))?;
                    Packet::Ack(ack_id.ok_or_else(|| bad(&"an ack needs an id"))?, args)
                }
                '4' => {
                    let error: Value = serde_json::from_str(json).unwrap_or(Value::Null);
                    let message = error["message"]
                        .as_str()
                        .map_or_else(|| json.to_owned(), str::to_owned);
                    Packet::ConnectError(message)
                }
                _ => Packet::Other,
            }
        }
        _ => Packet::Other,
    })
}

pub(crate) async fn open(ctx: &Ctx, resume: Option<&Position>) -> Result<Opened, Error> {
    let (mut socket, _) = connect(ctx, "/socket.io/?EIO=4&transport=websocket", None).await?;
    let text = next_text(&mut socket).await.map_err(Error::Connection)?;
    let Packet::Open {
        ping_interval,
        ping_timeout,
    } = parse(&text).map_err(Error::Protocol)?
    else {
        return Err(Error::Protocol(format!(
            "expected the Engine.IO open packet, got {text}"
        )));
    };
    // `socketio` follows `msg:new` alone; `socketio-snapshots` also gets the course's
    // `msg:get` after every message (and ignores it: `msg:new` has the news).
    // In a room, `last` and `epoch` go with its `room:join` (the handshake's are general's).
    let room = ctx.room.clone();
    let general_resume = resume.filter(|_| room.is_none());
    let auth = Auth {
        last: general_resume.map(|p| p.after),
        epoch: general_resume.and_then(|p| p.epoch.clone()),
        snapshots: (ctx.transport == Transport::SocketIo).then_some(false),
        ..Auth::default()
    };
    let mut auth = serde_json::to_value(&auth).expect("auth serializes");
    // `--auth token`: the token goes in the handshake's `auth`.
    let tokens = ctx.auth.as_ref().map(|a| a.subscribe());
    if let Some(token) = ctx.jwt() {
        auth["token"] = Value::String(token);
    }
    send(&mut socket, format!("40{auth}"))
        .await
        .map_err(Error::Connection)?;
    let mut connected = false;
    let mut history = None;
    // In a room: whether its `room:join` was acknowledged, and the events of the room that
    // came meanwhile (for the session).
    let mut joined = room.is_none();
    let mut early = Vec::new();
    while !connected || !joined || (resume.is_none() && history.is_none()) {
        let text = next_text(&mut socket).await.map_err(Error::Connection)?;
        match parse(&text).map_err(Error::Protocol)? {
            Packet::Ping => send(&mut socket, "3".into())
                .await
                .map_err(Error::Connection)?,
            Packet::Connected => {
                connected = true;
                if let Some(room) = &room {
                    let join = JoinRequest {
                        room: room.clone(),
                        last: resume.map(|p| p.after),
                        epoch: resume.and_then(|p| p.epoch.clone()),
                    };
                    let leave = RoomName {
                        room: GENERAL.to_owned(),
                    };
                    // Out of `general` (its answer does not matter: a token whose `rooms`
                    // claim leaves `general` out connects into no room).
                    for (id, args) in [
                        (JOIN_ACK, json!([ROOM_JOIN, join])),
                        (JOIN_ACK + 1, json!([ROOM_LEAVE, leave])),
                    ] {
                        send(&mut socket, format!("42{id}{args}"))
                            .await
                            .map_err(Error::Connection)?;
                    }
                }
            }
            Packet::Ack(JOIN_ACK, args) if !joined => {
                let answer = &args[0];
                if let Some(error) = answer["error"].as_str() {
                    // The store failed to resume: worth another try. Anything else (a
                    // private room, the token's `rooms` claim, a bad name) is final.
                    if error.starts_with("could not resume") {
                        return Err(Error::Connection(error.to_owned()));
                    }
                    return Err(Error::RoomRefused {
                        room: room.clone().unwrap_or_default(),
                        reason: error.to_owned(),
                    });
                }
                joined = true;
            }
            Packet::Event(name, data)
                if name == ROOM_HISTORY
                    && room.is_some()
                    && resume.is_none()
                    && history.is_none()
                    && data["room"].as_str() == room.as_deref() =>
            {
                let page: Page = serde_json::from_value(data)
                    .map_err(|e| Error::Protocol(format!("bad room:history: {e}")))?;
                history = Some(page.into());
            }
            Packet::Event(name, data) if name == ROOM_LEFT => {
                let removed: Removed = serde_json::from_value(data)
                    .map_err(|e| Error::Protocol(format!("bad room:left: {e}")))?;
                if Some(&removed.room) == room.as_ref() {
                    return Err(crate::http::removed_error(removed));
                }
            }
            Packet::Event(name, data) if room.is_some() => early.push((name, data)),
            Packet::ConnectError(message) => return Err(connect_refusal(message)),
            Packet::Close => return Err(Error::Connection("closed during the handshake".into())),
            Packet::Event(name, data) if name == MSG_GET && resume.is_none() && room.is_none() => {
                let page: Page = serde_json::from_value(data)
                    .map_err(|e| Error::Protocol(format!("bad msg:get: {e}")))?;
                history = Some(page.into());
            }
            _ => {}
        }
    }
    let window = Duration::from_millis(ping_interval + ping_timeout);
    Ok(Opened {
        session: Session::SocketIo(SioSession {
            socket,
            window,
            pending: BTreeMap::new(),
            next_ack: JOIN_ACK + 2,
            tokens,
            room,
            early,
        }),
        history,
        via: if ctx.transport == Transport::SocketIo {
            "Socket.IO (websocket)"
        } else {
            "Socket.IO (websocket, snapshots)"
        }
        .to_owned(),
        catch_up: CatchUpEnd::Marker,
    })
}

async fn send(socket: &mut Socket, text: String) -> Result<(), String> {
    socket
        .send(Frame::text(text))
        .await
        .map_err(|e| describe(&e))
}

/// One Socket.IO connection.
pub(crate) struct SioSession {
    socket: Socket,
    /// The server pings at least this often (interval + timeout), or it is gone.
    window: Duration,
    /// Posts sent, by ack id (the order sent).
    pending: BTreeMap<u64, PostCmd>,
    next_ack: u64,
    /// With credentials: each fresh token, to send as `auth:refresh`.
    tokens: Option<watch::Receiver<Option<Token>>>,
    /// The room other than `general` the socket joined ([`crate::Options::room`]).
    room: Option<String>,
    /// Events that came while joining it, not handled yet.
    early: Vec<(String, Value)>,
}

/// A `connect_error`: for its token ([`Error::Unauthorized`]) or its user's ban
/// ([`Error::Forbidden`] `banned`, as `403 banned` over HTTP), with the code in parentheses at
/// the end of the message; else a connection error.
fn connect_refusal(message: String) -> Error {
    if let Some(code) = token_code(&message) {
        return Error::Unauthorized {
            code: Some(code),
            message,
        };
    }
    if let Some(words) = message.trim_end().strip_suffix("(banned)") {
        return Error::Forbidden {
            code: "banned".to_owned(),
            message: words.trim_end().to_owned(),
        };
    }
    Error::Connection(format!("Socket.IO refused the connection: {message}"))
}

/// The code at the end of a `connect_error` message, `... (token_expired)`, when it is
/// about the token.
fn token_code(message: &str) -> Option<String> {
    let inner = message.trim_end().strip_suffix(')')?;
    let code = &inner[inner.rfind('(')? + 1..];
    let token =
        code.starts_with("token_") && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    token.then(|| code.to_owned())
}

impl SioSession {
    pub(crate) async fn run(
        &mut self,
        sink: &mut Sink,
        posts: &mut Outbox,
    ) -> Result<String, Closed> {
        let mut posts_open = true;
        let mut deadline = Instant::now() + self.window;
        for (name, data) in std::mem::take(&mut self.early) {
            if let Err(reason) = self.on_event(&name, data, sink).await? {
                return Ok(self.lost(reason, posts));
            }
        }
        loop {
            tokio::select! {
                frame = self.socket.next() => {
                    deadline = Instant::now() + self.window;
                    let reason = match frame {
                        Some(Ok(Frame::Text(text))) => match self.on_text(text.as_str(), sink).await? {
                            Ok(()) => continue,
                            Err(reason) => reason,
                        },
                        Some(Ok(Frame::Close(frame))) => {
                            answer_close(&mut self.socket).await;
                            close_reason(frame)
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => describe(&e),
                        None => "connection closed".to_owned(),
                    };
                    return Ok(self.lost(reason, posts));
                }
                // A fresh token: `auth:refresh`, acknowledged (the answer only matters when
                // it is refused, and then the server's `auth:expired` says so).
                token = next_token(&mut self.tokens) => {
                    let id = self.next_ack;
                    self.next_ack += 1;
                    let args = json!([REFRESH, {"token": token}]);
                    if let Err(e) = send(&mut self.socket, format!("42{id}{args}")).await {
                        return Ok(self.lost(e, posts));
                    }
                }
                cmd = posts.next(), if posts_open => match cmd {
                    Some(cmd) => if let Err(e) = self.send_post(cmd).await {
                        return Ok(self.lost(e, posts));
                    },
                    None => posts_open = false,
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Ok(self.lost("no ping from the server in time".to_owned(), posts));
                }
            }
        }
    }

    /// Hands the posts that were sent but not acknowledged back to `posts`, to go out again
    /// (same key) on the next connection, and passes `reason` on.
    fn lost(&mut self, reason: String, posts: &mut Outbox) -> String {
        for (_, cmd) in std::mem::take(&mut self.pending) {
            posts.send_again(cmd);
        }
        reason
    }

    async fn send_post(&mut self, cmd: PostCmd) -> Result<(), String> {
        if cmd.reply.is_closed() {
            return Ok(());
        }
        let id = self.next_ack;
        self.next_ack += 1;
        let mut post = json!({"user": cmd.user, "text": cmd.text, "key": cmd.key});
        if let Some(room) = &self.room {
            post["room"] = Value::String(room.clone());
        }
        let args = json!([MSG_POST, post]);
        cmd.sent.store(true, Ordering::SeqCst);
        self.pending.insert(id, cmd);
        send(&mut self.socket, format!("42{id}{args}")).await
    }

    async fn on_text(&mut self, text: &str, sink: &mut Sink) -> Result<Result<(), String>, Closed> {
        let packet = match parse(text) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        match packet {
            Packet::Ping => {
                if let Err(e) = send(&mut self.socket, "3".into()).await {
                    return Ok(Err(e));
                }
            }
            Packet::Close => return Ok(Err("disconnected by the server".to_owned())),
            Packet::Event(name, data) => return self.on_event(&name, data, sink).await,
            Packet::Ack(id, args) => {
                if let Some(PostCmd { reply, .. }) = self.pending.remove(&id) {
                    let answer = &args[0];
                    let result = match (answer["id"].as_u64(), answer["error"].as_str()) {
                        (Some(id), _) => Ok(id),
                        (None, Some(error)) => Err(crate::refusal(
                            error.to_owned(),
                            answer["retry_after_ms"].as_u64(),
                        )),
                        (None, None) => Err(Error::Protocol(format!("unexpected ack {args}"))),
                    };
                    let _ = reply.send(result);
                }
            }
            _ => {}
        }
        Ok(Ok(()))
    }

    async fn on_event(
        &mut self,
        name: &str,
        data: Value,
        sink: &mut Sink,
    ) -> Result<Result<(), String>, Closed> {
        // Events of another room than the client's (`msg:new` and `msg:since` name theirs;
        // none means `general`) are not for it.
        let mine = self.room.as_deref().unwrap_or(GENERAL);
        let of_room = |data: &Value| data["room"].as_str().unwrap_or(GENERAL) == mine;
        match name {
            MSG_NEW | MSG_SINCE | ROOM_HISTORY | ROOM_LEFT | MSG_DELETED if !of_room(&data) => {}
            MSG_NEW => match serde_json::from_value::<Message>(data) {
                Ok(m) => sink.deliver([m]).await?,
                Err(e) => return Ok(Err(format!("protocol error: bad msg:new: {e}"))),
            },
            MSG_SINCE => match serde_json::from_value::<Page>(data) {
                Ok(page) => sink.apply_page(page).await?,
                Err(e) => return Ok(Err(format!("protocol error: bad msg:since: {e}"))),
            },
            // On a resumed connection the history only matters when the server starts over;
            // otherwise `msg:since` has exactly what was missed.
            // `--auth token`: the token no longer holds; the server disconnects next.
            // Banned: likewise (the reconnection is refused, which ends the client).
            EXPIRED | REVOKED | BANNED => {
                let reason = data["reason"].as_str().unwrap_or_default().to_owned();
                let end = match name {
                    EXPIRED => AuthEnd::Expired(reason),
                    REVOKED => AuthEnd::Revoked(reason),
                    _ => AuthEnd::Banned(reason),
                };
                let reason = end.to_string();
                sink.auth_end = Some(end);
                return Ok(Err(reason));
            }
            // An administrator kicked the user; the server disconnects next. They may
            // connect again.
            KICKED => {
                let reason = data["reason"].as_str().unwrap_or_default();
                return Ok(Err(crate::http::kicked(reason)));
            }
            // `{"room","id"}`: a message of the room was deleted.
            MSG_DELETED => match data["id"].as_u64() {
                Some(id) => sink.deleted(id).await?,
                None => return Ok(Err(format!("protocol error: bad msg:deleted: {data}"))),
            },
            MSG_GET if self.room.is_none() => {
                if let Ok(page) = serde_json::from_value::<Page>(data) {
                    if page.reset {
                        sink.apply_page(page).await?;
                    }
                }
            }
            // A joined room's history: on a resumed connection, the server starting over.
            ROOM_HISTORY if self.room.is_some() => {
                if let Ok(page) = serde_json::from_value::<Page>(data) {
                    if page.reset {
                        sink.apply_page(page).await?;
                    }
                }
            }
            // Taken out of the room (it turned private, the user was removed from it): for
            // good.
            ROOM_LEFT if self.room.is_some() => {
                let removed = Removed {
                    room: data["room"].as_str().unwrap_or_default().to_owned(),
                    reason: data["reason"].as_str().unwrap_or_default().to_owned(),
                };
                let e = crate::http::removed_error(removed);
                let reason = e.to_string();
                sink.fatal = Some(e);
                return Ok(Err(reason));
            }
            _ => {}
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Packet};
    use serde_json::json;

    #[test]
    fn packets() {
        assert_eq!(
            parse(r#"0{"sid":"x","pingInterval":300,"pingTimeout":200,"maxPayload":1}"#).unwrap(),
            Packet::Open {
                ping_interval: 300,
                ping_timeout: 200
            }
        );
        assert_eq!(parse("2").unwrap(), Packet::Ping);
        assert_eq!(parse(r#"40{"sid":"a"}"#).unwrap(), Packet::Connected);
        assert_eq!(parse("41").unwrap(), Packet::Close);
        assert_eq!(
            parse(r#"42["msg:new",{"id":1}]"#).unwrap(),
            Packet::Event("msg:new".into(), json!({"id": 1}))
        );
        assert_eq!(
            parse(r#"4312[{"status":"ok","id":5}]"#).unwrap(),
            Packet::Ack(12, json!([{"status": "ok", "id": 5}]))
        );
        assert_eq!(
            parse(r#"44{"message":"Invalid namespace"}"#).unwrap(),
            Packet::ConnectError("Invalid namespace".into())
        );
        assert_eq!(parse(r#"42/admin,["x"]"#).unwrap(), Packet::Other);
        assert!(parse("42[1]").is_err());
    }

    #[test]
    fn connect_errors_name_the_token_code() {
        use super::token_code;
        assert_eq!(
            token_code("the token has expired (token_expired)").as_deref(),
            Some("token_expired")
        );
        assert_eq!(token_code("Invalid namespace"), None);
        assert_eq!(token_code("auth.user must be ann (not_your_name)"), None);
        use super::connect_refusal;
        use crate::Error;
        assert_eq!(
            connect_refusal("you are banned: spam (banned)".into()),
            Error::Forbidden {
                code: "banned".into(),
                message: "you are banned: spam".into()
            }
        );
        assert!(matches!(
            connect_refusal("the token has expired (token_expired)".into()),
            Error::Unauthorized { code: Some(c), .. } if c == "token_expired"
        ));
        assert!(matches!(
            connect_refusal("Invalid namespace".into()),
            Error::Connection(_)
        ));
        assert!(parse("").is_err());
    }
}

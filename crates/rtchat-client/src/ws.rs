//! WebSockets at `/ws` (tokio-tungstenite): rtchat's `rtchat.v1` subprotocol (deltas, acks,
//! `?since=ID` resume) and the course's `json` (a snapshot after every message).

use std::collections::HashMap;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::driver::{describe, CatchUpEnd, Closed, Ctx, Opened, Session, Sink};
use crate::{http, Error, Message, Page, PostCmd, Transport};

pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const RTCHAT_V1: &str = "rtchat.v1";
const JSON: &str = "json";

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
    let connector = Connector::Rustls(ctx.tls.clone());
    let (socket, response) =
        tokio_tungstenite::connect_async_tls_with_config(request, None, true, Some(connector))
            .await
            .map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(res) => Error::Status {
                    status: res.status().as_u16(),
                    message: String::from_utf8_lossy(res.body().as_deref().unwrap_or_default())
                        .into_owned(),
                },
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

/// The next text frame; `Err` with a reason when the connection ends.
pub(crate) async fn next_text(socket: &mut Socket) -> Result<String, String> {
    loop {
        match socket.next().await {
            Some(Ok(Frame::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Frame::Close(frame))) => return Err(close_reason(frame)),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(describe(&e)),
            None => return Err("connection closed".to_owned()),
        }
    }
}

pub(crate) async fn open(ctx: &Ctx, resume: Option<u64>) -> Result<Opened, Error> {
    let v1 = ctx.transport == Transport::Ws;
    // rtchat.v1 catch-up has no end marker: it ends with the server's newest id right now.
    let catch_up = match resume {
        Some(_) if v1 => CatchUpEnd::UpTo(http::newest_id(ctx).await?),
        _ => CatchUpEnd::Marker,
    };
    let path = match resume {
        Some(id) if v1 => format!("/ws?since={id}"),
        _ => "/ws".to_owned(),
    };
    let offer = if v1 { RTCHAT_V1 } else { JSON };
    let (mut socket, chosen) = connect(ctx, &path, Some(offer)).await?;
    if v1 && chosen.as_deref() != Some(RTCHAT_V1) {
        return Err(Error::Protocol(format!(
            "the server did not accept the rtchat.v1 subprotocol (chose {chosen:?})"
        )));
    }
    let history = match resume {
        Some(_) => None,
        None => {
            let text = next_text(&mut socket).await.map_err(Error::Connection)?;
            let page: Page = serde_json::from_str(&text)
                .map_err(|e| Error::Protocol(format!("expected the history ({e}): {text}")))?;
            Some(page.into())
        }
    };
    Ok(Opened {
        session: Session::Ws(WsSession {
            socket,
            v1,
            pending: HashMap::new(),
            next_ref: 1,
            outstanding: None,
        }),
        history,
        via: format!("ws ({offer})"),
        catch_up,
    })
}

/// One WebSocket connection.
pub(crate) struct WsSession {
    socket: Socket,
    v1: bool,
    /// rtchat.v1: posts sent, by `ref`, waiting for `ack` or `error`.
    pending: HashMap<u64, oneshot::Sender<Result<u64, Error>>>,
    next_ref: u64,
    /// json: the one post in flight (the protocol has no acks: a snapshot holding the message,
    /// or an `error`, answers it).
    outstanding: Option<PostCmd>,
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
        posts: &mut mpsc::Receiver<PostCmd>,
    ) -> Result<String, Closed> {
        let mut posts_open = true;
        loop {
            let can_post = posts_open && (self.v1 || self.outstanding.is_none());
            tokio::select! {
                frame = self.socket.next() => {
                    let reason = match frame {
                        Some(Ok(Frame::Text(text))) => match self.on_text(text.as_str(), sink).await? {
                            Ok(()) => continue,
                            Err(reason) => reason,
                        },
                        Some(Ok(Frame::Close(frame))) => close_reason(frame),
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => describe(&e),
                        None => "connection closed".to_owned(),
                    };
                    return Ok(self.lost(reason));
                }
                // json: a post whose caller stopped waiting no longer holds up the next one.
                () = abandoned(&mut self.outstanding) => self.outstanding = None,
                cmd = posts.recv(), if can_post => match cmd {
                    Some(cmd) => if let Err(e) = self.send_post(cmd).await {
                        return Ok(self.lost(e));
                    },
                    None => posts_open = false,
                },
            }
        }
    }

    /// Fails the posts that were sent but not answered, and passes `reason` on.
    fn lost(&mut self, reason: String) -> String {
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(Error::Unacknowledged));
        }
        if let Some(cmd) = self.outstanding.take() {
            let _ = cmd.reply.send(Err(Error::Unacknowledged));
        }
        reason
    }

    async fn send_post(&mut self, cmd: PostCmd) -> Result<(), String> {
        if cmd.reply.is_closed() {
            return Ok(()); // the caller gave up waiting: never send it late
        }
        let frame = if self.v1 {
            let r = self.next_ref;
            self.next_ref += 1;
            self.pending.insert(r, cmd.reply);
            json!({"type": "post", "user": cmd.user, "text": cmd.text, "ref": r})
        } else {
            let frame = json!({"user": cmd.user, "text": cmd.text});
            self.outstanding = Some(cmd);
            frame
        };
        self.socket
            .send(Frame::text(frame.to_string()))
            .await
            .map_err(|e| describe(&e))
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
        let bad = |what: &str| Ok(Err(format!("protocol error: bad {what} frame: {value}")));
        match value.get("type").and_then(Value::as_str) {
            Some("msg") => match value
                .get("msg")
                .cloned()
                .map(serde_json::from_value::<Message>)
            {
                Some(Ok(m)) => sink.deliver([m]).await?,
                _ => return bad("msg"),
            },
            // After a reset, the new history.
            Some("history") => match serde_json::from_value::<Page>(value.clone()) {
                Ok(page) => sink.deliver(page.msg).await?,
                Err(_) => return bad("history"),
            },
            Some("reset") => {
                let last = value.get("last").and_then(Value::as_u64).unwrap_or(0);
                sink.reset(last).await?;
            }
            Some("truncated") => sink.truncated().await?,
            Some("ack") => {
                let reply = value
                    .get("ref")
                    .and_then(Value::as_u64)
                    .and_then(|r| self.pending.remove(&r));
                if let (Some(reply), Some(id)) = (reply, value.get("id").and_then(Value::as_u64)) {
                    let _ = reply.send(Ok(id));
                }
            }
            Some("error") => {
                let error = value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("refused");
                let reply = value
                    .get("ref")
                    .and_then(Value::as_u64)
                    .and_then(|r| self.pending.remove(&r));
                if let Some(reply) = reply {
                    let _ = reply.send(Err(Error::Rejected(error.to_owned())));
                }
            }
            _ => {}
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
                let _ = cmd.reply.send(Err(Error::Rejected(error.to_owned())));
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
        sink.apply_page(page).await?;
        if let Some(id) = mine {
            if let Some(cmd) = self.outstanding.take() {
                let _ = cmd.reply.send(Ok(id));
            }
        }
        Ok(Ok(()))
    }
}

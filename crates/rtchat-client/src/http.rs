//! The HTTP transports: polling and long polling (`/poll`), the `/msgs` snapshot stream and
//! Server-Sent Events (`/events`). Posts are `POST /poll` (or `POST /msgs` for the stream).
//! In a room other than `general` ([`crate::Options::room`]) the same under `/rooms/{room}/`,
//! whose streams also carry presence and typing (skipped here) and, when the server takes
//! the client out of the room, a last `left` line or event ([`Error::Removed`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Response, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::driver::{describe, AuthEnd, CatchUpEnd, Closed, Ctx, Opened, Position, Session, Sink};
use crate::h3::H3Client;
use crate::{epoch_of, valid_epoch, Error, Message, Page, Transport};
use rtchat_protocol::http::{sse_event, LAST_EVENT_ID};
use rtchat_protocol::shapes::Removed;

/// Where the HTTP transports' requests go: reqwest (HTTP/1.1 or HTTP/2) or HTTP/3.
#[derive(Clone)]
pub(crate) enum Http {
    Tcp(reqwest::Client),
    H3(Arc<H3Client>),
}

/// An answer from either.
pub(crate) enum Res {
    Tcp(Response),
    /// Boxed: h3's stream state is four times the size of reqwest's response.
    H3(Box<crate::h3::Response>),
}

impl Http {
    /// Sends a request and returns the answer's head (the body is read from the [`Res`]).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: Option<String>,
    ) -> Result<Res, Error> {
        match self {
            Http::Tcp(client) => {
                let mut req = client.request(method, url).headers(headers);
                if let Some(body) = body {
                    req = req.body(body);
                }
                req.send().await.map(Res::Tcp).map_err(connection)
            }
            Http::H3(client) => client
                .request(method, &url, headers, body.map(Bytes::from))
                .await
                .map(|res| Res::H3(Box::new(res))),
        }
    }
}

impl Res {
    fn status(&self) -> u16 {
        match self {
            Res::Tcp(res) => res.status().as_u16(),
            Res::H3(res) => res.status,
        }
    }

    fn headers(&self) -> &HeaderMap {
        match self {
            Res::Tcp(res) => res.headers(),
            Res::H3(res) => &res.headers,
        }
    }

    /// The next piece of the body; `None` at its end.
    async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self {
            Res::Tcp(res) => res.chunk().await.map_err(|e| describe(&e)),
            Res::H3(res) => res.chunk().await,
        }
    }

    async fn bytes(self) -> Result<Bytes, Error> {
        match self {
            Res::Tcp(res) => res.bytes().await.map_err(connection),
            Res::H3(res) => (*res).bytes().await.map_err(Error::Connection),
        }
    }
}

fn connection(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        Error::Timeout
    } else {
        Error::Connection(describe(&e))
    }
}

/// The `error` of a JSON error body, else the body itself.
fn error_text(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// The `code` of a JSON error body.
fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
}

/// A refusal for want of a good token (`401`), or of a post under another name than the
/// token's (`403` with a `code`): [`Error::Unauthorized`], [`Error::Forbidden`].
pub(crate) fn auth_refusal(status: u16, body: &[u8]) -> Option<Error> {
    let code = error_code(body);
    match status {
        401 => Some(Error::Unauthorized {
            code,
            message: error_text(body),
        }),
        403 if code.is_some() => Some(Error::Forbidden {
            code: code.unwrap_or_default(),
            message: error_text(body),
        }),
        _ => None,
    }
}

/// Fails on a non-2xx answer, with the server's error text.
async fn check(res: Res) -> Result<Res, Error> {
    if (200..300).contains(&res.status()) {
        return Ok(res);
    }
    let status = res.status();
    let body = res.bytes().await.unwrap_or_default();
    if let Some(refused) = auth_refusal(status, &body) {
        return Err(refused);
    }
    Err(Error::Status {
        status,
        message: error_text(&body),
    })
}

/// `Authorization: Bearer` with the client's current token, if it has credentials.
pub(crate) fn authorize(headers: &mut HeaderMap, token: Option<&str>) {
    if let Some(value) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
        headers.insert(AUTHORIZATION, value);
    }
}

/// `POST /auth/login` (`body`) or `/auth/refresh` (`bearer`): the JSON answer, within
/// `timeout`.
pub(crate) async fn auth_request(
    client: &Http,
    url: &Url,
    bearer: Option<&str>,
    body: Option<String>,
    timeout: Duration,
) -> Result<Value, Error> {
    let mut headers = HeaderMap::new();
    authorize(&mut headers, bearer);
    if body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let request = async {
        let res = client
            .send(Method::POST, url.clone(), headers, body)
            .await?;
        check(res).await?.bytes().await
    };
    let body = tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| Error::Timeout)??;
    serde_json::from_slice(&body)
        .map_err(|e| Error::Protocol(format!("bad answer from {}: {e}", url.path())))
}

/// `GET url` as JSON, within `timeout`.
async fn get_json<T: DeserializeOwned>(ctx: &Ctx, url: Url, timeout: Duration) -> Result<T, Error> {
    let get = async {
        let mut headers = HeaderMap::new();
        authorize(&mut headers, ctx.jwt().as_deref());
        let res = ctx.http.send(Method::GET, url, headers, None).await?;
        check(res).await?.bytes().await
    };
    let body = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| Error::Timeout)??;
    serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("bad JSON answer: {e}")))
}

/// `POST url {"user","text","key"}` → the stored message's id (the first post's id again
/// when the server already stored one with this idempotency key).
pub(crate) async fn post(
    client: &Http,
    url: &Url,
    token: Option<&str>,
    user: &str,
    text: &str,
    key: &str,
) -> Result<u64, Error> {
    let body = serde_json::json!({ "user": user, "text": text, "key": key }).to_string();
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    authorize(&mut headers, token);
    let res = client
        .send(Method::POST, url.clone(), headers, Some(body))
        .await?;
    let status = res.status();
    let body = res.bytes().await?;
    if let Some(refused) = auth_refusal(status, &body) {
        return Err(refused);
    }
    if (400..500).contains(&status) {
        let retry_after_ms = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("retry_after_ms").and_then(Value::as_u64));
        return Err(crate::refusal(error_text(&body), retry_after_ms));
    }
    if !(200..300).contains(&status) {
        return Err(Error::Status {
            status,
            message: error_text(&body),
        });
    }
    serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_u64))
        .ok_or_else(|| {
            Error::Protocol(format!(
                "unexpected answer to a post: {}",
                String::from_utf8_lossy(&body)
            ))
        })
}

fn http_version(res: &Res) -> &'static str {
    let Res::Tcp(res) = res else {
        return "HTTP/3";
    };
    match res.version() {
        reqwest::Version::HTTP_2 => "HTTP/2",
        reqwest::Version::HTTP_3 => "HTTP/3",
        reqwest::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

// ---------------------------------------------------------------------------------------
// Polling

/// Short or long polling: `GET /poll?since=LAST&timeout=S` in a loop.
pub(crate) struct PollSession {
    long: bool,
    /// An answer received while connecting, not applied yet.
    pending: Option<Page>,
    /// The last answer said more is waiting.
    more: bool,
}

pub(crate) async fn open_poll(ctx: &Ctx, resume: Option<&Position>) -> Result<Opened, Error> {
    let long = ctx.transport == Transport::LongPoll;
    let timeout = ctx.options.request_timeout;
    let (history, pending) = match resume {
        None => {
            let page: Page = get_json(ctx, ctx.url(&ctx.poll_path())?, timeout).await?;
            (Some(page.into()), None)
        }
        Some(position) => {
            let path = ctx.poll_path();
            let url = ctx.url(&format!("{path}?{}&timeout=0", position.query()))?;
            (None, Some(get_json(ctx, url, timeout).await?))
        }
    };
    Ok(Opened {
        session: Session::Poll(PollSession {
            long,
            pending,
            more: false,
        }),
        history,
        via: match (long, &ctx.http) {
            (true, Http::H3(_)) => "long polling (HTTP/3)",
            (false, Http::H3(_)) => "polling (HTTP/3)",
            (true, Http::Tcp(_)) => "long polling",
            (false, Http::Tcp(_)) => "polling",
        }
        .to_owned(),
        catch_up: CatchUpEnd::Marker,
    })
}

impl PollSession {
    pub(crate) async fn run(&mut self, ctx: &Ctx, sink: &mut Sink) -> Result<String, Closed> {
        loop {
            let page = match self.pending.take() {
                Some(page) => page,
                None => {
                    let hold = if self.long && !self.more {
                        ctx.options.long_poll_timeout
                    } else {
                        Duration::ZERO
                    };
                    if !self.long && !self.more {
                        tokio::time::sleep(ctx.options.poll_interval).await;
                    }
                    let url = match ctx.url(&format!(
                        "{}?{}&timeout={}",
                        ctx.poll_path(),
                        sink.position().query(),
                        hold.as_secs_f64()
                    )) {
                        Ok(url) => url,
                        Err(e) => return Ok(e.to_string()),
                    };
                    match get_json(ctx, url, hold + ctx.options.request_timeout).await {
                        Ok(page) => page,
                        Err(e) => return Ok(e.to_string()),
                    }
                }
            };
            self.more = page.more;
            sink.apply_page(page).await?;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The /msgs stream

/// `GET /msgs[?since=LAST]`: one JSON document per line.
pub(crate) struct StreamSession {
    res: Res,
    buf: Vec<u8>,
}

pub(crate) async fn open_stream(ctx: &Ctx, resume: Option<&Position>) -> Result<Opened, Error> {
    let path = match resume {
        Some(position) => format!("{}?{}", ctx.msgs_path(), position.query()),
        None => ctx.msgs_path(),
    };
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("text/plain"));
    authorize(&mut headers, ctx.jwt().as_deref());
    let res = ctx
        .http
        .send(Method::GET, ctx.url(&path)?, headers, None)
        .await?;
    let res = check(res).await?;
    let via = format!("stream ({})", http_version(&res));
    let mut session = StreamSession {
        res,
        buf: Vec::new(),
    };
    let history = match resume {
        Some(_) => None,
        None => loop {
            let line = session
                .next_line()
                .await
                .map_err(Error::Connection)?
                .ok_or_else(|| Error::Connection("the stream ended before the history".into()))?;
            match stream_line(&line) {
                Line::Signal => continue,
                Line::Removed(removed) => return Err(removed_error(removed)),
                Line::AuthEnd(end) => return Err(Error::Connection(end.to_string())),
                Line::Kicked(reason) => return Err(Error::Connection(kicked(&reason))),
                Line::Page => break Some(parse_line(&line)?.into()),
            }
        },
    };
    Ok(Opened {
        session: Session::Stream(session),
        history,
        via,
        catch_up: CatchUpEnd::Marker,
    })
}

fn parse_line(line: &[u8]) -> Result<Page, Error> {
    serde_json::from_slice(line).map_err(|e| {
        Error::Protocol(format!(
            "bad /msgs line ({e}): {}",
            String::from_utf8_lossy(line)
        ))
    })
}

impl StreamSession {
    /// The next non-empty line; `None` at the end of the body.
    async fn next_line(&mut self) -> Result<Option<Vec<u8>>, String> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            match self.res.chunk().await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk),
                Ok(None) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) async fn run(&mut self, sink: &mut Sink) -> Result<String, Closed> {
        loop {
            let line = match self.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => return Ok("the stream ended".to_owned()),
                Err(e) => return Ok(e),
            };
            match stream_line(&line) {
                // A room's presence and typing: not shown by this client.
                Line::Signal => continue,
                // `--auth token`: the last line `{"expired":{"reason"}}`, `{"revoked":...}`
                // or `{"banned":...}`.
                Line::AuthEnd(end) => {
                    let reason = end.to_string();
                    sink.auth_end = Some(end);
                    return Ok(reason);
                }
                // The last line `{"kicked":{"reason"}}`: an administrator ended the user's
                // connections; they may connect again.
                Line::Kicked(reason) => return Ok(kicked(&reason)),
                // The last line `{"left":{"room","reason"}}`: out of the room for good.
                Line::Removed(removed) => {
                    let e = removed_error(removed);
                    let reason = e.to_string();
                    sink.fatal = Some(e);
                    return Ok(reason);
                }
                Line::Page => match parse_line(&line) {
                    Ok(page) => sink.apply_page(page).await?,
                    Err(e) => return Ok(e.to_string()),
                },
            }
        }
    }
}

/// What a `/msgs` (or `/rooms/{room}/msgs`) line is.
enum Line {
    /// A snapshot or a page.
    Page,
    /// `{"presence":{...}}` or `{"typing":{...}}` (room streams).
    Signal,
    /// `--auth token`: the stream's token no longer holds, or its user was banned (the last
    /// line).
    AuthEnd(AuthEnd),
    /// `--auth token`: `{"kicked":{"reason"}}`, an administrator ended the user's
    /// connections (the last line); they may connect again.
    Kicked(String),
    /// `{"left":{"room","reason"}}`: taken out of the room (the last line).
    Removed(Removed),
}

/// Tells a `/msgs` line's kind by its one key; anything else is read as a page.
fn stream_line(line: &[u8]) -> Line {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(line) else {
        return Line::Page;
    };
    if fields.contains_key("msg") || fields.len() != 1 {
        return Line::Page;
    }
    let reason = |v: &Value| v["reason"].as_str().unwrap_or_default().to_owned();
    let (key, value) = fields.iter().next().expect("one field");
    match key.as_str() {
        sse_event::PRESENCE | sse_event::TYPING => Line::Signal,
        "expired" => Line::AuthEnd(AuthEnd::Expired(reason(value))),
        "revoked" => Line::AuthEnd(AuthEnd::Revoked(reason(value))),
        "banned" => Line::AuthEnd(AuthEnd::Banned(reason(value))),
        "kicked" => Line::Kicked(reason(value)),
        sse_event::LEFT => Line::Removed(Removed {
            room: value["room"].as_str().unwrap_or_default().to_owned(),
            reason: reason(value),
        }),
        _ => Line::Page,
    }
}

/// Why a connection ended when an administrator kicked its user (they may connect again).
pub(crate) fn kicked(reason: &str) -> String {
    match reason {
        "" | "kicked" => "an administrator kicked the user".to_owned(),
        reason => format!("an administrator kicked the user ({reason})"),
    }
}

/// [`Error::Removed`] from the server's notice.
pub(crate) fn removed_error(removed: Removed) -> Error {
    Error::Removed {
        room: removed.room,
        reason: removed.reason,
    }
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events

/// `GET /events` with `Last-Event-ID`.
pub(crate) struct SseSession {
    res: Res,
    parser: SseParser,
}

pub(crate) async fn open_sse(ctx: &Ctx, resume: Option<&Position>) -> Result<Opened, Error> {
    // A fresh client takes the history from /poll (it says where it ends, and its epoch) and
    // the events after it; a resuming one gets what it missed, then `event: resumed`.
    let (history, after) = match resume {
        None => {
            let url = ctx.url(&ctx.poll_path())?;
            let page: Page = get_json(ctx, url, ctx.options.request_timeout).await?;
            let history: crate::driver::History = page.into();
            let after = Position {
                after: history.last,
                epoch: history.epoch.clone(),
            };
            (Some(history), after)
        }
        Some(position) => (None, position.clone()),
    };
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    authorize(&mut headers, ctx.jwt().as_deref());
    let last_event_id = HeaderValue::from_str(&after.event_id())
        .map_err(|e| Error::Protocol(format!("bad Last-Event-ID: {e}")))?;
    headers.insert(LAST_EVENT_ID, last_event_id);
    let res = ctx
        .http
        .send(Method::GET, ctx.url(&ctx.events_path())?, headers, None)
        .await?;
    let res = check(res).await?;
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/event-stream") {
        return Err(Error::Protocol(format!(
            "{} answered {content_type:?}, not text/event-stream",
            ctx.events_path()
        )));
    }
    let via = format!("SSE ({})", http_version(&res));
    Ok(Opened {
        session: Session::Sse(SseSession {
            res,
            parser: SseParser::default(),
        }),
        history,
        via,
        catch_up: CatchUpEnd::Marker,
    })
}

impl SseSession {
    pub(crate) async fn run(&mut self, sink: &mut Sink) -> Result<String, Closed> {
        loop {
            while let Some(event) = self.parser.next_event() {
                if let Err(e) = on_event(sink, event).await? {
                    return Ok(e);
                }
            }
            match self.res.chunk().await {
                Ok(Some(chunk)) => self.parser.push(&chunk),
                Ok(None) => return Ok("the event stream ended".to_owned()),
                Err(e) => return Ok(e),
            }
        }
    }
}

/// One event; the inner error is a protocol error that ends the connection.
async fn on_event(sink: &mut Sink, event: SseEvent) -> Result<Result<(), String>, Closed> {
    let data: Value = match serde_json::from_str(&event.data) {
        Ok(v) => v,
        Err(e) => return Ok(Err(format!("bad SSE data ({e}): {}", event.data))),
    };
    let epoch = || data.get("epoch").and_then(epoch_of);
    match event.event.as_str() {
        // `{"last":N,"epoch":E}`: the position meant nothing here; the history follows.
        sse_event::RESET => {
            let last = data.get("last").and_then(Value::as_u64).unwrap_or(0);
            sink.reset(last, epoch()).await?
        }
        sse_event::TRUNCATED => sink.truncated().await?,
        // `--auth token`: the stream's token no longer holds, or an administrator banned
        // its user; the stream ends.
        "expired" | "revoked" | "banned" => {
            let reason = data["reason"].as_str().unwrap_or_default().to_owned();
            let end = match event.event.as_str() {
                "expired" => AuthEnd::Expired(reason),
                "revoked" => AuthEnd::Revoked(reason),
                _ => AuthEnd::Banned(reason),
            };
            let reason = end.to_string();
            sink.auth_end = Some(end);
            return Ok(Err(reason));
        }
        // `{"room","reason"}`: taken out of the room; the stream ends, for good.
        sse_event::LEFT => {
            let e = removed_error(Removed {
                room: data["room"].as_str().unwrap_or_default().to_owned(),
                reason: data["reason"].as_str().unwrap_or_default().to_owned(),
            });
            let reason = e.to_string();
            sink.fatal = Some(e);
            return Ok(Err(reason));
        }
        // An administrator kicked the user: the stream ends; they may connect again.
        "kicked" => return Ok(Err(kicked(data["reason"].as_str().unwrap_or_default()))),
        // `{"room","id"}`: a message of the room was deleted.
        sse_event::DELETED => match data.get("id").and_then(Value::as_u64) {
            Some(id) => sink.deleted(id).await?,
            None => return Ok(Err(format!("bad SSE deleted event: {}", event.data))),
        },
        // A room's presence and typing: not shown by this client.
        sse_event::PRESENCE | sse_event::TYPING => {}
        // `{"after","count","last","epoch"}`: everything missed has been sent.
        sse_event::RESUMED => {
            sink.adopt_epoch(epoch());
            sink.catch_up_done().await?
        }
        "message" => match serde_json::from_value::<Message>(data) {
            Ok(m) => {
                // `id: E:ID` (a bare `ID` from servers before epochs).
                let id_epoch = event.id.as_deref().and_then(|id| id.split_once(':'));
                sink.adopt_epoch(
                    id_epoch
                        .map(|(e, _)| e)
                        .filter(|e| valid_epoch(e))
                        .map(str::to_owned),
                );
                sink.deliver([m]).await?
            }
            Err(e) => return Ok(Err(format!("bad SSE message ({e}): {}", event.data))),
        },
        _ => {}
    }
    Ok(Ok(()))
}

/// A dispatched Server-Sent Event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// An incremental `text/event-stream` parser (lines end with `\n` or `\r\n`).
#[derive(Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: Option<String>,
    id: Option<String>,
}

impl SseParser {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, if the bytes so far hold one.
    pub(crate) fn next_event(&mut self) -> Option<SseEvent> {
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line);
            if line.is_empty() {
                let event = std::mem::take(&mut self.event);
                if let Some(data) = self.data.take() {
                    return Some(SseEvent {
                        event: if event.is_empty() {
                            "message".into()
                        } else {
                            event
                        },
                        data,
                        id: self.id.clone(),
                    });
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (&*line, ""),
            };
            match field {
                "event" => self.event = value.to_owned(),
                "data" => match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                },
                "id" => self.id = Some(value.to_owned()),
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::{stream_line, Line, SseEvent, SseParser};
    use crate::driver::AuthEnd;

    #[test]
    fn stream_lines() {
        let kind = |line: &str| stream_line(line.as_bytes());
        assert!(matches!(
            kind(r#"{"msg":[],"last":0,"epoch":"e"}"#),
            Line::Page
        ));
        assert!(matches!(kind(r#"{"msg":[]}"#), Line::Page));
        assert!(matches!(
            kind(r#"{"presence":{"room":"a","joined":["x"],"left":[]}}"#),
            Line::Signal
        ));
        assert!(matches!(
            kind(r#"{"typing":{"room":"a","user":"x"}}"#),
            Line::Signal
        ));
        assert!(matches!(
            kind(r#"{"expired":{"reason":"r"}}"#),
            Line::AuthEnd(AuthEnd::Expired(r)) if r == "r"
        ));
        assert!(matches!(
            kind(r#"{"banned":{"reason":"banned"}}"#),
            Line::AuthEnd(AuthEnd::Banned(r)) if r == "banned"
        ));
        assert!(matches!(
            kind(r#"{"kicked":{"reason":"kicked"}}"#),
            Line::Kicked(r) if r == "kicked"
        ));
        match kind(r#"{"left":{"room":"a","reason":"private"}}"#) {
            Line::Removed(removed) => {
                assert_eq!((&*removed.room, &*removed.reason), ("a", "private"))
            }
            _ => panic!("left"),
        }
    }

    #[test]
    fn sse_events_split_anywhere() {
        let input = b"retry: 2000\n\n: keepalive\n\nid: ab12cd34:1\ndata: {\"a\":1}\n\nevent: reset\r\ndata: {\"last\":0,\"epoch\":\"x9y8z7w6\"}\r\n\r\ndata: x\ndata: y\n\n";
        for split in 0..input.len() {
            let mut p = SseParser::default();
            let mut events = Vec::new();
            p.push(&input[..split]);
            while let Some(e) = p.next_event() {
                events.push(e);
            }
            p.push(&input[split..]);
            while let Some(e) = p.next_event() {
                events.push(e);
            }
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: "message".into(),
                        data: "{\"a\":1}".into(),
                        id: Some("ab12cd34:1".into())
                    },
                    SseEvent {
                        event: "reset".into(),
                        data: "{\"last\":0,\"epoch\":\"x9y8z7w6\"}".into(),
                        id: Some("ab12cd34:1".into())
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "x\ny".into(),
                        id: Some("ab12cd34:1".into())
                    },
                ],
                "split at {split}"
            );
        }
    }
}

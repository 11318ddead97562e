//! The HTTP transports: polling and long polling (`/poll`), the `/msgs` snapshot stream and
//! Server-Sent Events (`/events`). Posts are `POST /poll` (or `POST /msgs` for the stream).

use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Response, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::driver::{describe, CatchUpEnd, Closed, Ctx, Opened, Session, Sink};
use crate::{Error, Message, Page, Transport};

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

/// Fails on a non-2xx answer, with the server's error text.
async fn check(res: Response) -> Result<Response, Error> {
    if res.status().is_success() {
        return Ok(res);
    }
    let status = res.status().as_u16();
    let body = res.bytes().await.unwrap_or_default();
    Err(Error::Status {
        status,
        message: error_text(&body),
    })
}

/// `GET url` as JSON, within `timeout`.
async fn get_json<T: DeserializeOwned>(ctx: &Ctx, url: Url, timeout: Duration) -> Result<T, Error> {
    let res = ctx
        .http
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(connection)?;
    let body = check(res).await?.bytes().await.map_err(connection)?;
    serde_json::from_slice(&body).map_err(|e| Error::Protocol(format!("bad JSON answer: {e}")))
}

/// The server's newest message id (`GET /stats`): where a resumed SSE or `rtchat.v1`
/// connection has caught up.
pub(crate) async fn newest_id(ctx: &Ctx) -> Result<u64, Error> {
    let stats: Value = get_json(ctx, ctx.url("/stats")?, ctx.options.request_timeout).await?;
    stats
        .get("last_id")
        .and_then(Value::as_u64)
        .ok_or_else(|| Error::Protocol(format!("/stats has no last_id: {stats}")))
}

/// `POST url {"user","text"}` → the stored message's id.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &Url,
    user: &str,
    text: &str,
) -> Result<u64, Error> {
    let body = serde_json::json!({ "user": user, "text": text }).to_string();
    let res = client
        .post(url.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(connection)?;
    let status = res.status();
    let body = res.bytes().await.map_err(connection)?;
    if status.is_client_error() {
        return Err(Error::Rejected(error_text(&body)));
    }
    if !status.is_success() {
        return Err(Error::Status {
            status: status.as_u16(),
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

fn http_version(res: &Response) -> &'static str {
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

pub(crate) async fn open_poll(ctx: &Ctx, resume: Option<u64>) -> Result<Opened, Error> {
    let long = ctx.transport == Transport::LongPoll;
    let timeout = ctx.options.request_timeout;
    let (history, pending) = match resume {
        None => {
            let page: Page = get_json(ctx, ctx.url("/poll")?, timeout).await?;
            (Some(page.into()), None)
        }
        Some(id) => {
            let url = ctx.url(&format!("/poll?since={id}&timeout=0"))?;
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
        via: if long { "long polling" } else { "polling" }.to_owned(),
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
                        "/poll?since={}&timeout={}",
                        sink.last,
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
    res: Response,
    buf: Vec<u8>,
}

pub(crate) async fn open_stream(ctx: &Ctx, resume: Option<u64>) -> Result<Opened, Error> {
    let path = match resume {
        Some(id) => format!("/msgs?since={id}"),
        None => "/msgs".to_owned(),
    };
    let res = ctx
        .http
        .get(ctx.url(&path)?)
        .header(ACCEPT, "text/plain")
        .send()
        .await
        .map_err(connection)?;
    let res = check(res).await?;
    let via = format!("stream ({})", http_version(&res));
    let mut session = StreamSession {
        res,
        buf: Vec::new(),
    };
    let history = match resume {
        Some(_) => None,
        None => {
            let line = session
                .next_line()
                .await
                .map_err(Error::Connection)?
                .ok_or_else(|| Error::Connection("the stream ended before the history".into()))?;
            Some(parse_line(&line)?.into())
        }
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
                Err(e) => return Err(describe(&e)),
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
            match parse_line(&line) {
                Ok(page) => sink.apply_page(page).await?,
                Err(e) => return Ok(e.to_string()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server-Sent Events

/// `GET /events` with `Last-Event-ID`.
pub(crate) struct SseSession {
    res: Response,
    parser: SseParser,
}

pub(crate) async fn open_sse(ctx: &Ctx, resume: Option<u64>) -> Result<Opened, Error> {
    // A fresh client takes the history from /poll (it says where it ends) and the events
    // after it; a resuming one learns where its catch-up ends from /stats.
    let (history, after, catch_up) = match resume {
        None => {
            let page: Page = get_json(ctx, ctx.url("/poll")?, ctx.options.request_timeout).await?;
            let history: crate::driver::History = page.into();
            let last = history.last;
            (Some(history), last, CatchUpEnd::Marker)
        }
        Some(id) => (None, id, CatchUpEnd::UpTo(newest_id(ctx).await?)),
    };
    let res = ctx
        .http
        .get(ctx.url("/events")?)
        .header(ACCEPT, "text/event-stream")
        .header("last-event-id", HeaderValue::from(after))
        .send()
        .await
        .map_err(connection)?;
    let res = check(res).await?;
    let content_type = res
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/event-stream") {
        return Err(Error::Protocol(format!(
            "/events answered {content_type:?}, not text/event-stream"
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
        catch_up,
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
                Err(e) => return Ok(describe(&e)),
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
    match event.event.as_str() {
        "reset" => {
            sink.reset(data.get("last").and_then(Value::as_u64).unwrap_or(0))
                .await?
        }
        "truncated" => sink.truncated().await?,
        "message" => match serde_json::from_value::<Message>(data) {
            Ok(m) => sink.deliver([m]).await?,
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
    use super::{SseEvent, SseParser};

    #[test]
    fn sse_events_split_anywhere() {
        let input = b"retry: 2000\n\n: keepalive\n\nid: 1\ndata: {\"a\":1}\n\nevent: reset\r\ndata: {\"last\":0}\r\n\r\ndata: x\ndata: y\n\n";
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
                        id: Some("1".into())
                    },
                    SseEvent {
                        event: "reset".into(),
                        data: "{\"last\":0}".into(),
                        id: Some("1".into())
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "x\ny".into(),
                        id: Some("1".into())
                    },
                ],
                "split at {split}"
            );
        }
    }
}

//! A minimal HTTP/1.1 client: one keep-alive connection, requests written by hand, answers
//! read incrementally (`Content-Length` or chunked), and chunk-by-chunk reading of never-ending
//! bodies (`/msgs`, `/events`).

use std::io;

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest answer head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// One HTTP/1.1 connection with its read buffer.
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
}

/// The head of an answer.
#[derive(Debug)]
pub struct Head {
    /// The status code.
    pub status: u16,
    /// `Content-Length`, when given.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl HttpConn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> HttpConn {
        HttpConn {
            stream,
            buf: Vec::with_capacity(1024),
            start: 0,
        }
    }

    /// Writes raw request bytes.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<()> {
        self.stream.write_all(request).await
    }

    /// Reads more bytes into the buffer, compacting it first; errors at end of stream.
    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(4096);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }

    /// Reads an answer's head.
    pub async fn read_head(&mut self) -> io::Result<Head> {
        loop {
            let pending = &self.buf[self.start..];
            if let Some(end) = memmem::find(pending, b"\r\n\r\n") {
                let head = parse_head(&pending[..end])?;
                self.start += end + 4;
                return Ok(head);
            }
            if pending.len() > MAX_HEAD {
                return Err(bad("answer head too large"));
            }
            self.fill().await?;
        }
    }

    /// Reads a whole answer (head and body); the body is returned as an owned vector only
    /// when chunked, else borrowed from the buffer.
    pub async fn read_response(&mut self) -> io::Result<(u16, Vec<u8>)> {
        let head = self.read_head().await?;
        if head.chunked {
            let mut body = Vec::new();
            loop {
                let chunk = self.next_chunk().await?;
                if chunk.is_empty() {
                    break;
                }
                body.extend_from_slice(chunk);
            }
            return Ok((head.status, body));
        }
        let len = head.content_length.unwrap_or(0);
        while self.buf.len() - self.start < len {
            self.fill().await?;
        }
        let body = self.buf[self.start..self.start + len].to_vec();
        self.start += len;
        Ok((head.status, body))
    }

    /// Like [`HttpConn::read_response`], but only returns the status and hands the body to
    /// `f` without copying (for `Content-Length` bodies).
    pub async fn read_response_with<R>(
        &mut self,
        f: impl FnOnce(u16, &[u8]) -> R,
    ) -> io::Result<R> {
        let head = self.read_head().await?;
        if head.chunked {
            let mut body = Vec::new();
            loop {
                let chunk = self.next_chunk().await?;
                if chunk.is_empty() {
                    break;
                }
                body.extend_from_slice(chunk);
            }
            return Ok(f(head.status, &body));
        }
        let len = head.content_length.unwrap_or(0);
        while self.buf.len() - self.start < len {
            self.fill().await?;
        }
        let r = f(head.status, &self.buf[self.start..self.start + len]);
        self.start += len;
        Ok(r)
    }

    /// The next chunk of a chunked body (empty: the body ended).
    pub async fn next_chunk(&mut self) -> io::Result<&[u8]> {
        loop {
            let pending = &self.buf[self.start..];
            if let Some(eol) = memmem::find(pending, b"\r\n") {
                let line = &pending[..eol];
                let hex = line.split(|&b| b == b';').next().unwrap_or(line);
                let size = std::str::from_utf8(hex)
                    .ok()
                    .and_then(|h| usize::from_str_radix(h.trim(), 16).ok())
                    .ok_or_else(|| bad("bad chunk size"))?;
                let total = eol + 2 + size + 2;
                if pending.len() >= total {
                    let from = self.start + eol + 2;
                    self.start += total;
                    return Ok(&self.buf[from..from + size]);
                }
                if self.buf.capacity() - self.buf.len() < total {
                    self.buf.reserve(total);
                }
            } else if pending.len() > 64 {
                return Err(bad("bad chunk size line"));
            }
            self.fill().await?;
        }
    }
}

fn parse_head(head: &[u8]) -> io::Result<Head> {
    let text = std::str::from_utf8(head).map_err(|_| bad("answer head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    Ok(Head {
        status,
        content_length,
        chunked,
    })
}

/// A `GET` request.
pub fn get(path: &str, host: &str) -> Vec<u8> {
    let auth = super::auth_header();
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n").into_bytes()
}

/// A `POST` of a JSON body.
pub fn post_json(path: &str, host: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        super::auth_header(),
        body.len()
    )
    .into_bytes()
}

/// The string after `"epoch":` in a JSON answer, if it is a plausible epoch (letters,
/// digits, `-`, `_`; at most 64), safe to put back into a query string.
pub fn json_epoch(body: &[u8]) -> Option<String> {
    let at = memmem::find(body, b"\"epoch\":\"")? + 9;
    let len = body[at..].iter().position(|b| *b == b'"')?;
    let epoch = &body[at..at + len];
    let plausible = (1..=64).contains(&epoch.len())
        && epoch
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    plausible.then(|| String::from_utf8_lossy(epoch).into_owned())
}

/// The number after `"last":` in a JSON answer.
pub fn json_last(body: &[u8]) -> Option<u64> {
    let at = memmem::find(body, b"\"last\":")? + 7;
    let digits: Vec<u8> = body[at..]
        .iter()
        .copied()
        .skip_while(|b| *b == b' ')
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::{json_epoch, json_last};

    #[test]
    fn last_and_epoch_of_an_answer() {
        let body = br#"{"msg":[{"id":3,"user":"a","text":"\"epoch\":1"}],"last":3,"epoch":"ab12cd34","more":true}"#;
        assert_eq!(json_last(body), Some(3));
        assert_eq!(json_epoch(body).as_deref(), Some("ab12cd34"));
        assert_eq!(json_epoch(br#"{"msg":[],"last":0}"#), None);
        assert_eq!(json_epoch(br#"{"last":0,"epoch":"a b&c"}"#), None);
    }
}

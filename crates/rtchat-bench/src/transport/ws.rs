//! A minimal RFC 6455 client: the upgrade request, an incremental reader of (unmasked)
//! server frames that answers pings itself, and masked client frames.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use flate2::{Decompress, FlushDecompress};
use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The client's masking key (any key is valid; the bench needs no unpredictability).
const MASK: [u8; 4] = [0x5a, 0x3c, 0x96, 0xe1];

/// Whether connections offer permessage-deflate (`rtchat bench fanout --deflate`).
static DEFLATE: AtomicBool = AtomicBool::new(false);
/// Bytes every WebSocket connection of this process read from its socket: what the server
/// put on the wire for them (frame headers included, TCP/IP headers not).
static WIRE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Makes every following connection offer permessage-deflate (RFC 7692).
pub fn offer_deflate(on: bool) {
    DEFLATE.store(on, Ordering::Relaxed);
}

/// Bytes read from WebSocket sockets so far (see [`WIRE_BYTES`]).
pub fn wire_bytes() -> u64 {
    WIRE_BYTES.load(Ordering::Relaxed)
}

/// One WebSocket connection with its read buffer.
pub struct WsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    start: usize,
    /// A fragmented message being put together.
    fragments: Vec<u8>,
    /// permessage-deflate agreed: the inflate stream (kept across messages unless the server
    /// said server_no_context_takeover), and the last message inflated.
    inflate: Option<Box<Inflate>>,
}

struct Inflate {
    stream: Decompress,
    takeover: bool,
    out: Vec<u8>,
}

impl Inflate {
    fn message(&mut self, compressed: &[u8]) -> io::Result<&[u8]> {
        self.out.clear();
        for part in [compressed, &[0, 0, 0xff, 0xff][..]] {
            let start = self.stream.total_in();
            loop {
                if self.out.capacity() - self.out.len() < 4096 {
                    self.out.reserve(self.out.capacity().max(16 * 1024));
                }
                let done = (self.stream.total_in() - start) as usize;
                self.stream
                    .decompress_vec(&part[done..], &mut self.out, FlushDecompress::Sync)
                    .map_err(|e| bad(format!("bad compressed message: {e}")))?;
                let done = (self.stream.total_in() - start) as usize;
                if done == part.len() && self.out.capacity() - self.out.len() >= 4096 {
                    break;
                }
            }
        }
        if !self.takeover {
            self.stream.reset(false);
        }
        Ok(&self.out)
    }
}

fn bad(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

impl WsConn {
    /// Performs the upgrade at `path` (offering `protocol`, if any) and returns the
    /// connection once the server answered 101.
    pub async fn connect(
        mut stream: TcpStream,
        host: &str,
        path: &str,
        protocol: Option<&str>,
    ) -> io::Result<WsConn> {
        let mut proto = protocol
            .map(|p| format!("Sec-WebSocket-Protocol: {p}\r\n"))
            .unwrap_or_default();
        if DEFLATE.load(Ordering::Relaxed) {
            // What browsers offer.
            proto.push_str(
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
            );
        }
        proto.push_str(&super::auth_header());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{proto}\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(2048);
        let end = loop {
            if let Some(end) = memmem::find(&buf, b"\r\n\r\n") {
                break end;
            }
            if buf.len() > 16 * 1024 {
                return Err(bad("upgrade answer too large"));
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the upgrade",
                ));
            }
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            let line = String::from_utf8_lossy(&buf[..end.min(80)]).into_owned();
            return Err(bad(format!("upgrade refused: {line}")));
        }
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let inflate = head
            .lines()
            .find(|l| {
                l.starts_with("sec-websocket-extensions:") && l.contains("permessage-deflate")
            })
            .map(|l| {
                Box::new(Inflate {
                    stream: Decompress::new_with_window_bits(false, 15),
                    takeover: !l.contains("server_no_context_takeover"),
                    out: Vec::new(),
                })
            });
        WIRE_BYTES.fetch_add(buf.len() as u64 - (end as u64 + 4), Ordering::Relaxed);
        Ok(WsConn {
            stream,
            buf,
            start: end + 4,
            fragments: Vec::new(),
            inflate,
        })
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &[u8]) -> io::Result<()> {
        let frame = client_frame(0x1, text);
        self.stream.write_all(&frame).await
    }

    /// The next text (or binary) message; answers pings, errors on close.
    pub async fn next_message(&mut self) -> io::Result<&[u8]> {
        loop {
            if let Some((opcode, fin, header, len)) = parse_header(&self.buf[self.start..])? {
                let from = self.start + header;
                self.start = from + len;
                let rsv1 = self.buf[from - header] & 0x40 != 0;
                match opcode {
                    0x1 | 0x2 if fin && rsv1 => {
                        let inflate = self.inflate.as_mut().ok_or_else(|| bad("RSV1 unasked"))?;
                        return inflate.message(&self.buf[from..from + len]);
                    }
                    0x1 | 0x2 if fin => return Ok(&self.buf[from..from + len]),
                    0x1 | 0x2 => {
                        if rsv1 {
                            return Err(bad("fragmented compressed messages are not read"));
                        }
                        self.fragments.clear();
                        self.fragments
                            .extend_from_slice(&self.buf[from..from + len]);
                    }
                    0x0 => {
                        self.fragments
                            .extend_from_slice(&self.buf[from..from + len]);
                        if fin {
                            return Ok(&self.fragments);
                        }
                    }
                    0x8 => {
                        let code = (len >= 2)
                            .then(|| u16::from_be_bytes([self.buf[from], self.buf[from + 1]]));
                        return Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            format!("the server closed the WebSocket ({code:?})"),
                        ));
                    }
                    0x9 => {
                        let pong = client_frame(0xA, &self.buf[from..from + len]);
                        self.stream.write_all(&pong).await?;
                    }
                    _ => {}
                }
                continue;
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 1024 {
            // Reserve for the whole frame when its header says how long it is.
            let want = match parse_header(&self.buf) {
                Ok(Some(_)) | Err(_) => 4096,
                Ok(None) => frame_len(&self.buf).unwrap_or(4096).max(4096),
            };
            self.buf.reserve(want);
        }
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        WIRE_BYTES.fetch_add(n as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// The total length of the frame that starts `buf`, when its header is complete.
fn frame_len(buf: &[u8]) -> Option<usize> {
    let (header, len) = header_len(buf)?;
    Some(header + len)
}

fn header_len(buf: &[u8]) -> Option<(usize, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let masked = buf[1] & 0x80 != 0;
    let mask = if masked { 4 } else { 0 };
    match buf[1] & 0x7f {
        126 => {
            let b = buf.get(2..4)?;
            Some((4 + mask, u16::from_be_bytes([b[0], b[1]]) as usize))
        }
        127 => {
            let b: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some((10 + mask, u64::from_be_bytes(b) as usize))
        }
        n => Some((2 + mask, n as usize)),
    }
}

/// `(opcode, fin, header length, payload length)` of a complete frame at the start of `buf`.
fn parse_header(buf: &[u8]) -> io::Result<Option<(u8, bool, usize, usize)>> {
    let Some((header, len)) = header_len(buf) else {
        return Ok(None);
    };
    if buf[1] & 0x80 != 0 {
        return Err(bad("the server sent a masked frame"));
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    Ok(Some((buf[0] & 0x0f, buf[0] & 0x80 != 0, header, len)))
}

/// A masked client frame.
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert_eq!(
            parse_header(&[0x81, 2, b'h', b'i']).unwrap(),
            Some((1, true, 2, 2))
        );
        assert_eq!(parse_header(&[0x81, 3, b'h']).unwrap(), None);
        let mut long = vec![0x81, 126, 1, 0];
        long.resize(4 + 256, b'x');
        assert_eq!(parse_header(&long).unwrap(), Some((1, true, 4, 256)));
        assert_eq!(
            frame_len(&[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
            Some(10 + 65536)
        );
        assert_eq!(client_frame(1, b"ab")[1], 0x82);
    }
}

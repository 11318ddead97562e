//! permessage-deflate over a real socket: the handshake's answer, compressed echoes, and a
//! decompression bomb that must close with 1009 while the process's heap stays bounded
//! (a counting allocator measures the peak).

mod common;

use bytes::{Bytes, BytesMut};
use common::{echo, serve_one, KEY};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use rtchat_ws::frame::{Frame, FrameHeader, OpCode};
use rtchat_ws::{Config, Error};
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The heap counter is process-wide: tests of this file run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Client {
    stream: TcpStream,
    buf: BytesMut,
    response: String,
}

impl Client {
    async fn connect(addr: SocketAddr, extensions: &str) -> Client {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: {extensions}\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = BytesMut::new();
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0);
        };
        let response = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        let _ = buf.split_to(end);
        Client {
            stream,
            buf,
            response,
        }
    }

    async fn send(&mut self, opcode: OpCode, rsv1: bool, payload: &[u8]) {
        let mut f = Frame::new(opcode, Bytes::copy_from_slice(payload));
        f.header.rsv = if rsv1 { 0b100 } else { 0 };
        f.header.mask = Some(KEY);
        let mut out = Vec::new();
        f.encode_into(&mut out);
        self.stream.write_all(&out).await.unwrap();
    }

    async fn read_frame(&mut self) -> Option<(FrameHeader, Bytes)> {
        loop {
            if let Ok(Some((h, n))) = FrameHeader::parse(&self.buf) {
                let len = h.payload_len as usize;
                if self.buf.len() >= n + len {
                    let _ = self.buf.split_to(n);
                    return Some((h, self.buf.split_to(len).freeze()));
                }
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new_with_window_bits(Compression::new(9), false, 15);
    let mut out = Vec::with_capacity(data.len() / 100 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let done = c.total_in() as usize;
        c.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new_with_window_bits(false, 15);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

/// The handshake answers a browser's offer; messages over the threshold come back
/// compressed (RSV1) and inflate to what was sent; short ones come back plain.
#[tokio::test]
async fn compressed_echo() {
    let _serial = SERIAL.lock().await;
    let (addr, server) = serve_one(Config::default(), echo).await;
    let mut c = Client::connect(addr, "permessage-deflate; client_max_window_bits").await;
    assert!(
        c.response.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        ),
        "{}",
        c.response
    );
    let big = "{\"user\":\"ann\",\"text\":\"hello\"}".repeat(100);
    c.send(OpCode::Text, true, &deflate(big.as_bytes())).await;
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!((h.opcode, h.rsv), (OpCode::Text, 0b100));
    assert!(
        p.len() * 10 < big.len(),
        "{} bytes for {}",
        p.len(),
        big.len()
    );
    assert_eq!(inflate(&p), big.as_bytes());
    c.send(OpCode::Text, true, &deflate(b"hi")).await;
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!((h.rsv, &p[..]), (0, &b"hi"[..]));
    // An uncompressed message on a compressing connection is fine too.
    c.send(OpCode::Binary, false, b"raw").await;
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!((h.opcode, h.rsv, &p[..]), (OpCode::Binary, 0, &b"raw"[..]));
    drop(c);
    let _ = server.await;
}

/// With `deflate: None` the offer is ignored: no extension header, and RSV1 is a 1002.
#[tokio::test]
async fn off_means_off() {
    let _serial = SERIAL.lock().await;
    let config = Config {
        deflate: None,
        ..Config::default()
    };
    let (addr, server) = serve_one(config, echo).await;
    let mut c = Client::connect(addr, "permessage-deflate").await;
    assert!(!c
        .response
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions"));
    c.send(OpCode::Text, true, &deflate(b"hello")).await;
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!(h.opcode, OpCode::Close);
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1002);
    drop(c);
    assert!(matches!(server.await.unwrap(), Err(Error::Protocol { .. })));
}

/// 16 MiB of one byte compressed into about 16 KiB: the server reads it, inflates no more
/// than its 1 MiB limit (plus a byte), closes with 1009 and a reason, and the heap of this
/// whole process (server and client) never grows by more than a few MiB.
#[tokio::test]
async fn decompression_bomb_closes_1009_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let bomb = deflate(&vec![b'a'; 16 << 20]);
    assert!(bomb.len() < 32 * 1024, "{}", bomb.len());
    let config = Config::default().with_max_message_size(1 << 20);
    let (addr, server) = serve_one(config, echo).await;
    let mut c = Client::connect(addr, "permessage-deflate").await;
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    c.send(OpCode::Text, true, &bomb).await;
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!(h.opcode, OpCode::Close);
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1009);
    assert_eq!(&p[2..], b"decompressed message too big");
    assert!(matches!(server.await.unwrap(), Err(Error::TooBig)));
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    assert!(
        grew < 4 << 20,
        "heap grew by {grew} bytes while refusing a bomb (limit 1 MiB)"
    );
}

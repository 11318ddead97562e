//! Shared helpers: a one-connection test server and a raw frame-level client.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use rtchat_ws::frame::{Frame, FrameHeader, OpCode};
use rtchat_ws::{accept, Config, Error, Message, WebSocket};
use std::future::Future;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Accepts one connection, runs the standalone handshake and `handler`.
pub async fn serve_one<F, Fut, T>(config: Config, handler: F) -> (SocketAddr, JoinHandle<T>)
where
    F: FnOnce(WebSocket<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let ws = accept(tcp, config).await.expect("handshake");
        handler(ws).await
    });
    (addr, h)
}

/// Echoes until the connection ends; returns how it ended.
pub async fn echo(mut ws: WebSocket<TcpStream>) -> Result<Message, Error> {
    loop {
        match ws.recv().await? {
            Message::Text(t) => ws.send_text(t.into_bytes()).await?,
            Message::Binary(b) => ws.send_binary(b).await?,
            m @ Message::Close(_) => return Ok(m),
        }
    }
}

pub const KEY: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

/// A frame-level client that can send anything, including protocol violations.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = stream.read_buf(&mut buf).await.unwrap();
            assert!(n > 0, "EOF during handshake");
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        let _ = buf.split_to(end);
        RawClient { stream, buf }
    }

    pub fn encode(opcode: OpCode, fin: bool, payload: &[u8], masked: bool) -> Vec<u8> {
        let mut f = Frame::new(opcode, Bytes::copy_from_slice(payload));
        f.header.fin = fin;
        f.header.mask = masked.then_some(KEY);
        let mut out = Vec::new();
        f.encode_into(&mut out);
        out
    }

    pub async fn send(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let b = Self::encode(opcode, fin, payload, true);
        self.stream.write_all(&b).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Next server frame, or `None` on EOF/reset.
    pub async fn read_frame(&mut self) -> Option<(FrameHeader, Bytes)> {
        loop {
            if let Ok(Some((h, n))) = FrameHeader::parse(&self.buf) {
                assert!(h.mask.is_none(), "server frames must not be masked");
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

    /// Reads frames until a close frame; returns its code (None = empty close),
    /// then asserts the server closes the TCP connection.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            let (h, p) = self
                .read_frame()
                .await
                .expect("connection ended without close frame");
            if h.opcode == OpCode::Close {
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                // Answer like a client would, then expect EOF.
                let _ = self
                    .stream
                    .write_all(&Self::encode(
                        OpCode::Close,
                        true,
                        &p[..p.len().min(2)],
                        true,
                    ))
                    .await;
                assert!(self.read_frame().await.is_none(), "data after close");
                // Like a real client: close our side once the server has.
                let _ = self.stream.shutdown().await;
                return code;
            }
        }
    }
}

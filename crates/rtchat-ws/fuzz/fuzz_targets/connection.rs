//! Arbitrary bytes delivered in arbitrary chunks to a full `WebSocket`
//! connection (server role): `recv` must never panic and must end with a
//! message stream followed by a close or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtchat_ws::{Config, Message, WebSocket};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

struct Chunked<'a> {
    data: &'a [u8],
    sizes: &'a [u8],
    i: usize,
    pending_toggle: bool,
}

impl AsyncRead for Chunked<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Interleave Pending (with an immediate wake) to exercise resumption.
        self.pending_toggle = !self.pending_toggle;
        if self.pending_toggle {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let want = if self.sizes.is_empty() {
            self.data.len()
        } else {
            self.sizes[self.i % self.sizes.len()] as usize + 1
        };
        self.i += 1;
        let n = want.min(self.data.len()).min(buf.remaining());
        buf.put_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Chunked<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        // Short writes exercise partial-frame resumption.
        Poll::Ready(Ok(b.len().min(7)))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
}

fuzz_target!(|input: &[u8]| {
    if input.is_empty() {
        return;
    }
    let nsizes = (input[0] as usize % 8).min(input.len() - 1);
    let sizes = &input[1..1 + nsizes];
    let data = &input[1 + nsizes..];
    let cfg = Config {
        max_message_size: 32 * 1024,
        max_frame_size: 16 * 1024,
        ping_interval: None,
        ..Config::default()
    };
    RT.with(|rt| {
        rt.block_on(async {
            let stream = Chunked {
                data,
                sizes,
                i: 0,
                pending_toggle: false,
            };
            let mut ws = WebSocket::new(stream, cfg);
            for _ in 0..10_000 {
                match ws.recv().await {
                    Ok(Message::Text(t)) => {
                        assert!(std::str::from_utf8(t.as_bytes()).is_ok());
                        let _ = ws.send_text(t.into_bytes()).await;
                    }
                    Ok(Message::Binary(b)) => {
                        let _ = ws.send_binary(b).await;
                    }
                    Ok(Message::Close(_)) => {
                        assert!(ws.is_closed());
                        break;
                    }
                    Err(_) => {
                        assert!(ws.is_closed());
                        break;
                    }
                }
            }
        })
    });
});

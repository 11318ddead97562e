//! Measures heap held per idle connection (a `WebSocket` parked in `recv()`,
//! keepalive timer armed), with a counting global allocator. The stream is a
//! stand-in that never has data, so only the library's own memory counts.

use rtchat_ws::{Config, WebSocket};
use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        LIVE.fetch_add(n as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A socket with nothing to read that accepts all writes.
struct Silent;

impl AsyncRead for Silent {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Poll::Pending
    }
}

impl AsyncWrite for Silent {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn idle_connection_heap_is_small() {
    const N: usize = 1000;
    let before = LIVE.load(Ordering::Relaxed);
    let mut parked: Vec<Pin<Box<dyn Future<Output = ()> + Send>>> = Vec::with_capacity(N);
    let vec_bytes = LIVE.load(Ordering::Relaxed) - before;
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    for _ in 0..N {
        let mut ws = WebSocket::new(Silent, Config::default());
        // Like a connection task: a boxed future parked inside recv().
        let mut fut: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = ws.recv().await;
        });
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        parked.push(fut);
    }
    let per_conn = (LIVE.load(Ordering::Relaxed) - before - vec_bytes) as usize / N;
    println!("heap per idle connection (task future + WebSocket + read buffer + timer): {per_conn} bytes");
    assert!(per_conn <= 2048, "idle connection holds {per_conn} bytes");
    drop(parked);
}

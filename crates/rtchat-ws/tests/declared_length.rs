//! A frame's declared length is a claim, not data: the read buffer must grow
//! with the bytes that actually arrive. A peer that declares a frame of the
//! largest allowed size and then sends two bytes must not make the server
//! hold that size in memory (per connection, so a few thousand such peers
//! would otherwise pin gigabytes). Heap is measured with a counting global
//! allocator, as in `idle_memory.rs`; the tests in this file run one at a
//! time so they do not see each other's allocations.

use rtchat_ws::connection::buffered_capacity;
use rtchat_ws::{Config, Message, WebSocket};
use std::alloc::{GlobalAlloc, Layout, System};
use std::future::poll_fn;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::Context;
use tokio::io::{AsyncWriteExt, DuplexStream};

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

/// Held by each test: the heap counter is global.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const MAX: usize = 1 << 20;
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn config() -> Config {
    Config {
        ping_interval: None,
        ..Config::default().with_max_message_size(MAX)
    }
}

/// Header of a masked client frame declaring `len` payload bytes (64-bit
/// length form).
fn header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode, 0x80 | 127];
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(&MASK);
    h
}

/// `data` masked with [`MASK`], starting at payload offset `at`.
fn masked(data: &[u8], at: usize) -> Vec<u8> {
    data.iter()
        .enumerate()
        .map(|(i, b)| b ^ MASK[(at + i) % 4])
        .collect()
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Polls `recv` until it has consumed everything written so far.
fn settle(ws: &mut WebSocket<DuplexStream>) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(
        ws.poll_recv(&mut cx).is_pending(),
        "a message completed early"
    );
}

#[tokio::test]
async fn a_declared_but_unsent_frame_costs_no_more_than_what_arrived() {
    let _serial = SERIAL.lock().await;
    const N: usize = 64;
    let mut conns = Vec::with_capacity(N);
    for _ in 0..N {
        // Room for everything written below, so the pipe never allocates later.
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let mut start = header(0x2, true, MAX as u64);
        start.extend_from_slice(&masked(b"hi", 0));
        client.write_all(&start).await.unwrap();
        conns.push((client, WebSocket::new(server, config())));
    }
    let before = LIVE.load(Ordering::Relaxed);
    for (_, ws) in &mut conns {
        settle(ws);
    }
    let per_conn = (LIVE.load(Ordering::Relaxed) - before) / N as isize;
    let cap = buffered_capacity(&conns[0].1);
    println!("1 MiB declared, 2 bytes sent: {per_conn} bytes of heap per connection, read buffer {cap} bytes");
    assert!(
        per_conn <= 16 * 1024,
        "a peer that declared {MAX} bytes and sent 2 makes the server hold {per_conn} bytes"
    );
    assert!(cap <= 16 * 1024, "read buffer of {cap} bytes for 2 bytes");
}

#[tokio::test]
async fn the_buffer_grows_with_the_data_and_the_frame_still_arrives_whole() {
    let _serial = SERIAL.lock().await;
    let len = MAX;
    let data = payload(len);
    let wire = masked(&data, 0);
    let (mut client, server) = tokio::io::duplex(len + 64);
    let mut ws = WebSocket::new(server, config());
    client
        .write_all(&header(0x2, true, len as u64))
        .await
        .unwrap();
    // Trickle the payload in growing steps; after each step the buffer holds
    // at most a small multiple of what arrived (growth steps of at most 4x),
    // never the declared size.
    let mut sent = 0;
    let mut step = 1000;
    let mut peak = 0;
    while sent < len {
        let n = step.min(len - sent);
        client.write_all(&wire[sent..sent + n]).await.unwrap();
        sent += n;
        if sent == len {
            break;
        }
        settle(&mut ws);
        let cap = buffered_capacity(&ws);
        peak = peak.max(cap);
        assert!(
            cap <= 8 * sent + 32 * 1024,
            "after {sent} of {len} bytes the read buffer holds {cap} bytes"
        );
        step = step * 3 / 2;
    }
    println!("1 MiB frame trickled in: read buffer peaked at {peak} bytes before the last chunk");
    match poll_fn(|cx| ws.poll_recv(cx)).await.unwrap() {
        Message::Binary(b) => assert!(b == data, "payload differs"),
        other => panic!("expected the binary message, got {other:?}"),
    }
}

#[tokio::test]
async fn a_fragment_declared_large_after_real_fragments_is_not_reserved_either() {
    let _serial = SERIAL.lock().await;
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let mut ws = WebSocket::new(server, config());
    // A 1000-byte first fragment, then a continuation declaring the rest of
    // the allowed message size, of which 3 bytes arrive. (The bound leaves
    // room for the 16 KiB chunk a connection reads in once a read fills its
    // first small buffer.)
    let first = payload(1000);
    let mut wire = header(0x2, false, 1000);
    wire.extend_from_slice(&masked(&first, 0));
    wire.extend_from_slice(&header(0x0, true, (MAX - 1000) as u64));
    wire.extend_from_slice(&masked(b"abc", 0));
    client.write_all(&wire).await.unwrap();
    let before = LIVE.load(Ordering::Relaxed);
    settle(&mut ws);
    let grew = LIVE.load(Ordering::Relaxed) - before;
    let cap = buffered_capacity(&ws);
    assert!(
        grew <= 32 * 1024 && cap <= 32 * 1024,
        "1003 bytes arrived of a declared {MAX}: heap grew {grew} bytes, read buffer {cap}"
    );
}

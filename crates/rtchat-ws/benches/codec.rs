//! Codec benchmarks, rtchat-ws side by side with tungstenite and
//! fastwebsockets, all over in-memory buffers (no sockets):
//!
//! * `decode/*`: parse + unmask N masked client binary frames of the given
//!   size (N·size ≈ 1 MiB per iteration, at least one frame), at connection
//!   level for all three (reading from an in-memory stream), plus rtchat's
//!   sans-IO `Decoder` alone.
//! * `decode_text/*`: same with text frames (adds UTF-8 validation).
//! * `encode/*`: frame N server messages into a `Vec` (header + payload copy),
//!   the pure codec cost.
//! * `send/*`: connection-level send of N messages to a sink that discards
//!   writes (shows the zero-copy send path).
//!
//! Run: `cargo bench -p rtchat-ws --bench codec` (short measurement times).

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtchat_ws::frame::{Decoder, Frame, OpCode};
use rtchat_ws::{Config, EncodedFrame};
use std::io::{self, Cursor, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1024, "1KiB"),
    (64 * 1024, "64KiB"),
    (1 << 20, "1MiB"),
];
const TARGET: usize = 1 << 20;

fn count(size: usize) -> usize {
    (TARGET / size).max(1)
}

/// In-memory duplex stand-in: reads from `data`, discards writes.
struct Mem {
    data: Bytes,
    pos: usize,
}

impl AsyncRead for Mem {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.data.len() - self.pos);
        let start = self.pos;
        buf.put_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Mem {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.iter().map(|s| s.len()).sum()))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Blocking equivalent for tungstenite.
struct SyncMem {
    r: Cursor<Bytes>,
}

impl Read for SyncMem {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }
}

impl Write for SyncMem {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn client_frames(op: OpCode, size: usize, n: usize) -> Bytes {
    let payload: Vec<u8> = if op == OpCode::Text {
        "abcdefghij€xyz"
            .bytes()
            .cycle()
            .take(size)
            .collect::<Vec<u8>>()
    } else {
        (0..size).map(|i| (i * 31) as u8).collect()
    };
    // Keep text valid: trim to a char boundary.
    let payload = if op == OpCode::Text {
        let mut s = payload;
        while std::str::from_utf8(&s).is_err() {
            s.pop();
        }
        s
    } else {
        payload
    };
    let mut f = Frame::new(op, Bytes::from(payload));
    f.header.mask = Some([0x12, 0x34, 0x56, 0x78]);
    let mut out = Vec::new();
    for _ in 0..n {
        f.encode_into(&mut out);
    }
    Bytes::from(out)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cfg() -> Config {
    Config {
        ping_interval: None,
        ..Config::default().with_max_message_size(4 << 20)
    }
}

fn tung_cfg() -> tungstenite::protocol::WebSocketConfig {
    tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20))
}

fn decode_group(c: &mut Criterion, name: &str, op: OpCode) {
    let rt = rt();
    let mut g = c.benchmark_group(name);
    for (size, label) in SIZES {
        let n = count(size);
        let input = client_frames(op, size, n);
        g.throughput(Throughput::Bytes((size * n) as u64));

        g.bench_with_input(
            BenchmarkId::new("rtchat_decoder", label),
            &input,
            |b, input| {
                b.iter(|| {
                    let mut d = Decoder::new(4 << 20, 4 << 20);
                    let mut buf = BytesMut::from(&input[..]);
                    let mut got = 0;
                    while let Ok(Some(_)) = d.decode(&mut buf) {
                        got += 1;
                    }
                    assert_eq!(got, n);
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("rtchat", label), &input, |b, input| {
            b.iter(|| {
                rt.block_on(async {
                    let mut ws = rtchat_ws::WebSocket::new(
                        Mem {
                            data: input.clone(),
                            pos: 0,
                        },
                        cfg(),
                    );
                    for _ in 0..n {
                        ws.recv().await.unwrap();
                    }
                })
            })
        });
        g.bench_with_input(
            BenchmarkId::new("tungstenite", label),
            &input,
            |b, input| {
                b.iter(|| {
                    let mut ws = tungstenite::WebSocket::from_raw_socket(
                        SyncMem {
                            r: Cursor::new(input.clone()),
                        },
                        tungstenite::protocol::Role::Server,
                        Some(tung_cfg()),
                    );
                    for _ in 0..n {
                        ws.read().unwrap();
                    }
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("fastwebsockets", label),
            &input,
            |b, input| {
                b.iter(|| {
                    rt.block_on(async {
                        let mut ws = fastwebsockets::WebSocket::after_handshake(
                            Mem {
                                data: input.clone(),
                                pos: 0,
                            },
                            fastwebsockets::Role::Server,
                        );
                        ws.set_max_message_size(4 << 20);
                        for _ in 0..n {
                            ws.read_frame().await.unwrap();
                        }
                    })
                })
            },
        );
    }
    g.finish();
}

fn decode(c: &mut Criterion) {
    decode_group(c, "decode", OpCode::Binary);
    decode_group(c, "decode_text", OpCode::Text);
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (size, label) in SIZES {
        let n = count(size);
        let payload = Bytes::from(vec![7u8; size]);
        g.throughput(Throughput::Bytes((size * n) as u64));
        let mut out = Vec::with_capacity((size + 14) * n);
        g.bench_function(BenchmarkId::new("rtchat", label), |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..n {
                    EncodedFrame::binary(payload.clone()).write_to(&mut out);
                }
            })
        });
        g.bench_function(BenchmarkId::new("tungstenite", label), |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..n {
                    tungstenite::protocol::frame::Frame::message(
                        payload.clone(),
                        tungstenite::protocol::frame::coding::OpCode::Data(
                            tungstenite::protocol::frame::coding::Data::Binary,
                        ),
                        true,
                    )
                    .format(&mut out)
                    .unwrap();
                }
            })
        });
        let mut fout = Vec::with_capacity(size + 16);
        g.bench_function(BenchmarkId::new("fastwebsockets", label), |b| {
            b.iter(|| {
                out.clear();
                for _ in 0..n {
                    let mut f =
                        fastwebsockets::Frame::binary(fastwebsockets::Payload::Borrowed(&payload));
                    let s = f.write(&mut fout);
                    out.extend_from_slice(s);
                }
            })
        });
    }
    g.finish();
}

fn send(c: &mut Criterion) {
    let rt = rt();
    let mut g = c.benchmark_group("send");
    for (size, label) in SIZES {
        let n = count(size);
        let payload = Bytes::from(vec![7u8; size]);
        g.throughput(Throughput::Bytes((size * n) as u64));
        g.bench_function(BenchmarkId::new("rtchat", label), |b| {
            let mut ws = rtchat_ws::WebSocket::new(
                Mem {
                    data: Bytes::new(),
                    pos: 0,
                },
                cfg(),
            );
            b.iter(|| {
                rt.block_on(async {
                    for _ in 0..n {
                        ws.send_binary(payload.clone()).await.unwrap();
                    }
                })
            })
        });
        g.bench_function(BenchmarkId::new("tungstenite", label), |b| {
            let mut ws = tungstenite::WebSocket::from_raw_socket(
                SyncMem {
                    r: Cursor::new(Bytes::new()),
                },
                tungstenite::protocol::Role::Server,
                Some(tung_cfg()),
            );
            b.iter(|| {
                for _ in 0..n {
                    ws.send(tungstenite::Message::Binary(payload.clone()))
                        .unwrap();
                }
            })
        });
        g.bench_function(BenchmarkId::new("fastwebsockets", label), |b| {
            let mut ws = fastwebsockets::WebSocket::after_handshake(
                Mem {
                    data: Bytes::new(),
                    pos: 0,
                },
                fastwebsockets::Role::Server,
            );
            b.iter(|| {
                rt.block_on(async {
                    for _ in 0..n {
                        ws.write_frame(fastwebsockets::Frame::binary(
                            fastwebsockets::Payload::Borrowed(&payload),
                        ))
                        .await
                        .unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

fn quick() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1000))
        .sample_size(20)
}

criterion_group! {
    name = benches;
    config = quick();
    targets = decode, encode, send
}
criterion_main!(benches);

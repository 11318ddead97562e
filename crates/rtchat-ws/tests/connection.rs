//! Connection behaviour over real TCP sockets, with tokio-tungstenite as the
//! well-behaved client and a raw frame client for protocol violations.

mod common;

use bytes::Bytes;
use common::{echo, serve_one, RawClient};
use futures_util::{SinkExt, StreamExt};
use rtchat_ws::frame::OpCode;
use rtchat_ws::{CloseCode, Config, EncodedFrame, Error, Message, TimeoutKind};
use std::time::Duration;
use tokio::net::TcpStream;
use tungstenite::protocol::frame::coding::CloseCode as TCode;
use tungstenite::Message as TMsg;

type Client = tokio_tungstenite::WebSocketStream<TcpStream>;

async fn tclient(addr: std::net::SocketAddr) -> Client {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap()
        .0
}

/// Next non-ping/pong message from a tungstenite client.
async fn next_msg(c: &mut Client) -> Option<TMsg> {
    loop {
        match c.next().await {
            Some(Ok(TMsg::Ping(_))) | Some(Ok(TMsg::Pong(_))) => continue,
            Some(Ok(m)) => return Some(m),
            _ => return None,
        }
    }
}

fn small_config() -> Config {
    Config {
        ping_interval: None,
        ..Config::default()
    }
}

#[tokio::test]
async fn echo_text_and_binary_with_tungstenite() {
    let (addr, server) = serve_one(small_config(), echo).await;
    let mut c = tclient(addr).await;
    c.send(TMsg::text("héllo")).await.unwrap();
    assert_eq!(next_msg(&mut c).await, Some(TMsg::text("héllo")));
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    c.send(TMsg::binary(big.clone())).await.unwrap();
    assert_eq!(next_msg(&mut c).await, Some(TMsg::binary(big)));
    c.send(TMsg::text("")).await.unwrap();
    assert_eq!(next_msg(&mut c).await, Some(TMsg::text("")));
    c.close(None).await.unwrap();
    // tungstenite reads the echoed close, then the stream ends.
    while c.next().await.is_some() {}
    let end = server.await.unwrap().unwrap();
    assert_eq!(end, Message::Close(None));
}

#[tokio::test]
async fn ping_answered_with_same_payload_and_pong_ignored() {
    let (addr, _server) = serve_one(small_config(), echo).await;
    let mut c = tclient(addr).await;
    c.send(TMsg::Pong(Bytes::from_static(b"unsolicited")))
        .await
        .unwrap();
    c.send(TMsg::Ping(Bytes::from_static(b"hello")))
        .await
        .unwrap();
    assert_eq!(
        c.next().await.unwrap().unwrap(),
        TMsg::Pong(Bytes::from_static(b"hello"))
    );
    c.send(TMsg::text("after")).await.unwrap();
    assert_eq!(next_msg(&mut c).await, Some(TMsg::text("after")));
}

#[tokio::test]
async fn oversized_message_gets_1009() {
    let cfg = Config {
        ping_interval: None,
        ..Config::default().with_max_message_size(1024)
    };
    let (addr, server) = serve_one(cfg, echo).await;
    let mut c = tclient(addr).await;
    c.send(TMsg::binary(vec![0u8; 1000])).await.unwrap();
    assert_eq!(next_msg(&mut c).await.unwrap().len(), 1000);
    c.send(TMsg::binary(vec![0u8; 2000])).await.unwrap();
    match next_msg(&mut c).await {
        Some(TMsg::Close(Some(f))) => assert_eq!(f.code, TCode::Size),
        other => panic!("{other:?}"),
    }
    while c.next().await.is_some() {}
    drop(c);
    assert!(matches!(server.await.unwrap(), Err(Error::TooBig)));
}

#[tokio::test]
async fn oversized_fragmented_message_gets_1009() {
    let cfg = Config {
        ping_interval: None,
        ..Config::default().with_max_message_size(1024)
    };
    let (addr, server) = serve_one(cfg, echo).await;
    let mut c = RawClient::connect(addr).await;
    c.send(OpCode::Binary, false, &[1; 400]).await;
    c.send(OpCode::Continuation, false, &[1; 400]).await;
    c.send(OpCode::Continuation, false, &[1; 400]).await;
    // The third fragment pushes the message over 1024 bytes.
    assert_eq!(c.expect_close().await, Some(1009));
    assert!(matches!(server.await.unwrap(), Err(Error::TooBig)));
}

#[tokio::test]
async fn invalid_utf8_whole_message_gets_1007() {
    let (addr, server) = serve_one(small_config(), echo).await;
    let mut c = RawClient::connect(addr).await;
    c.send(OpCode::Text, true, b"ok\xff").await;
    assert_eq!(c.expect_close().await, Some(1007));
    assert!(matches!(server.await.unwrap(), Err(Error::Utf8(_))));
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_fails_fast() {
    let (addr, server) = serve_one(small_config(), echo).await;
    let mut c = RawClient::connect(addr).await;
    // "κ" = CE BA split across fragments (valid), then ED A0 80 (a UTF-16
    // surrogate, invalid) starting in fragment 2; the final fragment is never
    // sent, so the server must detect it before the message ends.
    c.send(OpCode::Text, false, b"ab\xce").await;
    c.send(OpCode::Continuation, false, b"\xbacd\xed").await;
    c.send(OpCode::Continuation, false, b"\xa0").await;
    assert_eq!(c.expect_close().await, Some(1007));
    assert!(matches!(server.await.unwrap(), Err(Error::Utf8(_))));
}

#[tokio::test]
async fn valid_utf8_split_across_fragments_is_reassembled() {
    let (addr, _server) = serve_one(small_config(), echo).await;
    let mut c = RawClient::connect(addr).await;
    let s = "κόσμε𝄞".as_bytes();
    for (i, b) in s.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        c.send(op, i == s.len() - 1, &[*b]).await;
    }
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!(h.opcode, OpCode::Text);
    assert_eq!(&p[..], s);
}

#[tokio::test]
async fn unmasked_frame_gets_1002() {
    let (addr, server) = serve_one(small_config(), echo).await;
    let mut c = RawClient::connect(addr).await;
    c.send_raw(&RawClient::encode(OpCode::Text, true, b"hi", false))
        .await;
    assert_eq!(c.expect_close().await, Some(1002));
    assert!(matches!(
        server.await.unwrap(),
        Err(Error::Protocol {
            code: CloseCode::PROTOCOL,
            ..
        })
    ));
}

#[tokio::test]
async fn other_framing_violations_get_1002() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("rsv1", {
            let mut f = RawClient::encode(OpCode::Text, true, b"x", true);
            f[0] |= 0x40;
            f
        }),
        ("reserved opcode", {
            let mut f = RawClient::encode(OpCode::Text, true, b"x", true);
            f[0] = 0x83;
            f
        }),
        (
            "fragmented ping",
            RawClient::encode(OpCode::Ping, false, b"x", true),
        ),
        (
            "long ping",
            RawClient::encode(OpCode::Ping, true, &[0; 126], true),
        ),
        (
            "orphan continuation",
            RawClient::encode(OpCode::Continuation, true, b"x", true),
        ),
        ("new message inside fragmented", {
            let mut f = RawClient::encode(OpCode::Text, false, b"x", true);
            f.extend(RawClient::encode(OpCode::Binary, true, b"x", true));
            f
        }),
        (
            "close len 1",
            RawClient::encode(OpCode::Close, true, b"\x03", true),
        ),
    ];
    for (name, bytes) in cases {
        let (addr, server) = serve_one(small_config(), echo).await;
        let mut c = RawClient::connect(addr).await;
        c.send_raw(&bytes).await;
        assert_eq!(c.expect_close().await, Some(1002), "{name}");
        assert!(
            matches!(server.await.unwrap(), Err(Error::Protocol { .. })),
            "{name}"
        );
    }
}

#[tokio::test]
async fn valid_close_codes_are_echoed() {
    for code in [1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
        let (addr, server) = serve_one(small_config(), echo).await;
        let mut c = RawClient::connect(addr).await;
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice("bye ✓".as_bytes());
        c.send(OpCode::Close, true, &p).await;
        assert_eq!(c.expect_close().await, Some(code), "{code}");
        match server.await.unwrap() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode(code));
                assert_eq!(f.reason, "bye ✓");
            }
            other => panic!("{code}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn invalid_close_codes_get_1002_and_bad_reason_1007() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let (addr, _server) = serve_one(small_config(), echo).await;
        let mut c = RawClient::connect(addr).await;
        c.send(OpCode::Close, true, &code.to_be_bytes()).await;
        assert_eq!(c.expect_close().await, Some(1002), "{code}");
    }
    let (addr, _server) = serve_one(small_config(), echo).await;
    let mut c = RawClient::connect(addr).await;
    c.send(OpCode::Close, true, b"\x03\xe8\xce\xba\xff").await;
    assert_eq!(c.expect_close().await, Some(1007));
}

#[tokio::test]
async fn fragmented_message_with_interleaved_ping() {
    let (addr, _server) = serve_one(small_config(), echo).await;
    let mut c = RawClient::connect(addr).await;
    c.send(OpCode::Text, false, b"Hel").await;
    c.send(OpCode::Ping, true, b"mid").await;
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!((h.opcode, &p[..]), (OpCode::Pong, &b"mid"[..]));
    c.send(OpCode::Continuation, false, b"").await;
    c.send(OpCode::Continuation, true, b"lo").await;
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!(
        (h.opcode, h.fin, &p[..]),
        (OpCode::Text, true, &b"Hello"[..])
    );
}

#[tokio::test]
async fn keepalive_fails_silent_peer_with_1011() {
    let cfg = Config {
        ping_interval: Some(Duration::from_millis(50)),
        pong_timeout: Duration::from_millis(100),
        ..Config::default()
    };
    let (addr, server) = serve_one(cfg, echo).await;
    let mut c = RawClient::connect(addr).await;
    // The server pings; we never answer.
    let (h, _) = c.read_frame().await.unwrap();
    assert_eq!(h.opcode, OpCode::Ping);
    let (h, p) = c.read_frame().await.unwrap();
    assert_eq!(h.opcode, OpCode::Close);
    assert_eq!(u16::from_be_bytes([p[0], p[1]]), 1011);
    assert!(matches!(
        server.await.unwrap(),
        Err(Error::Timeout(TimeoutKind::DeadPeer))
    ));
}

#[tokio::test]
async fn keepalive_keeps_responsive_peer() {
    let cfg = Config {
        ping_interval: Some(Duration::from_millis(20)),
        pong_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let (addr, _server) = serve_one(cfg, echo).await;
    let mut c = RawClient::connect(addr).await;
    let mut pings = 0;
    while pings < 5 {
        let (h, p) = c.read_frame().await.unwrap();
        assert_eq!(h.opcode, OpCode::Ping);
        c.send(OpCode::Pong, true, &p).await;
        pings += 1;
    }
    c.send(OpCode::Text, true, b"still here").await;
    loop {
        let (h, p) = c.read_frame().await.unwrap();
        if h.opcode == OpCode::Text {
            assert_eq!(&p[..], b"still here");
            break;
        }
    }
}

#[tokio::test]
async fn server_initiated_close_handshake() {
    let (addr, server) = serve_one(small_config(), |mut ws| async move {
        let m = ws.recv().await.unwrap();
        assert_eq!(m, Message::text("bye please"));
        let r = ws.close(CloseCode::GOING_AWAY, "shutting down").await;
        (r, ws.is_closed(), ws.recv().await)
    })
    .await;
    let mut c = tclient(addr).await;
    c.send(TMsg::text("bye please")).await.unwrap();
    match next_msg(&mut c).await {
        Some(TMsg::Close(Some(f))) => {
            assert_eq!(f.code, TCode::Away);
            assert_eq!(f.reason, "shutting down");
        }
        other => panic!("{other:?}"),
    }
    // tungstenite replies to the close automatically; drain to EOF.
    while c.next().await.is_some() {}
    let (r, closed, after) = server.await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert!(closed);
    assert!(matches!(after, Err(Error::Closed)));
}

#[tokio::test]
async fn recv_is_cancellation_safe() {
    // The server races recv() against a channel that fires constantly, so
    // recv futures are dropped mid-frame over and over; every message must
    // still arrive intact and in order.
    let (addr, server) = serve_one(small_config(), |mut ws| async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move { while tx.send(()).await.is_ok() {} });
        let mut got = Vec::new();
        let mut cancels = 0u64;
        while got.len() < 50 {
            tokio::select! {
                m = ws.recv() => got.push(m.unwrap()),
                _ = rx.recv() => cancels += 1,
            }
        }
        (got, cancels)
    })
    .await;
    let mut c = RawClient::connect(addr).await;
    let mut expect = Vec::new();
    for i in 0..50u32 {
        let text = format!("message {i} {}", "x".repeat(i as usize * 37));
        let mut bytes = RawClient::encode(OpCode::Text, false, &text.as_bytes()[..5], true);
        bytes.extend(RawClient::encode(OpCode::Ping, true, b"p", true));
        bytes.extend(RawClient::encode(
            OpCode::Continuation,
            true,
            &text.as_bytes()[5..],
            true,
        ));
        for chunk in bytes.chunks(7) {
            c.send_raw(chunk).await;
            tokio::task::yield_now().await;
        }
        expect.push(Message::text(text));
    }
    let (got, cancels) = server.await.unwrap();
    assert_eq!(got, expect);
    assert!(cancels > 0);
    // Every ping got a pong (or a later one superseded it) and nothing was corrupted.
    let (h, _) = c.read_frame().await.unwrap();
    assert_eq!(h.opcode, OpCode::Pong);
}

#[tokio::test]
async fn shared_encoded_frame_fans_out() {
    let frame = EncodedFrame::text(Bytes::from_static(b"broadcast"));
    let mut clients = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let f = frame.clone();
        let (addr, s) = serve_one(small_config(), move |mut ws| async move {
            ws.send_encoded(&f).await.unwrap();
            ws.recv().await
        })
        .await;
        clients.push(tclient(addr).await);
        servers.push(s);
    }
    for c in &mut clients {
        assert_eq!(next_msg(c).await, Some(TMsg::text("broadcast")));
        c.close(None).await.unwrap();
    }
    for s in servers {
        assert!(matches!(s.await.unwrap(), Ok(Message::Close(None))));
    }
}

#[tokio::test]
async fn write_timeout_fails_peer_that_does_not_read() {
    let cfg = Config {
        ping_interval: None,
        write_timeout: Some(Duration::from_millis(200)),
        ..Config::default()
    };
    let (addr, server) = serve_one(cfg, |mut ws| async move {
        let chunk = EncodedFrame::binary(Bytes::from(vec![0u8; 1 << 20]));
        for i in 0..10_000 {
            if let Err(e) = ws.send_encoded(&chunk).await {
                return (i, e);
            }
        }
        panic!("peer that never reads accepted 10 GiB");
    })
    .await;
    let _c = RawClient::connect(addr).await; // never reads
    let (sent, err) = server.await.unwrap();
    assert!(matches!(err, Error::Timeout(TimeoutKind::Write)), "{err:?}");
    assert!(sent < 200, "sent {sent} MiB before timing out");
}

#[tokio::test]
async fn eof_without_close_is_connection_lost() {
    let (addr, server) = serve_one(small_config(), echo).await;
    let c = RawClient::connect(addr).await;
    drop(c);
    assert!(matches!(server.await.unwrap(), Err(Error::ConnectionLost)));
}

/// Frames of varied sizes (empty to 200 KiB, so socket buffers fill and writes end mid-frame)
/// in batches of up to 40 (more than one vectored write carries): all arrive, intact, in order.
#[tokio::test]
async fn batches_arrive_whole_and_in_order_through_partial_writes() {
    let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 200_000, 7, 3_000];
    let frames: Vec<EncodedFrame> = (0..120)
        .map(|i| {
            let mut payload = format!("{i:04}").into_bytes();
            payload.resize(4 + sizes[i % sizes.len()], b'x');
            EncodedFrame::binary(Bytes::from(payload))
        })
        .collect();
    let expected = frames.clone();
    let (addr, server) = serve_one(small_config(), move |mut ws| async move {
        for batch in frames.chunks(40) {
            ws.send_encoded_batch(batch).await.unwrap();
        }
        ws.recv().await
    })
    .await;
    let mut c = tclient(addr).await;
    for want in &expected {
        match next_msg(&mut c).await {
            Some(TMsg::Binary(got)) => assert_eq!(&got[..], want.payload()),
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
    c.close(None).await.unwrap();
    assert!(matches!(server.await.unwrap(), Ok(Message::Close(None))));
}

/// A batch whose future is dropped mid-write (the peer reads slowly) never leaves half a
/// frame on the wire: the frames that arrive are whole, in order, and the stream goes on.
#[tokio::test]
async fn a_dropped_batch_leaves_no_half_frame() {
    let big: Vec<EncodedFrame> = (0..16u8)
        .map(|i| EncodedFrame::binary(Bytes::from(vec![i; 150_000])))
        .collect();
    let (addr, server) = serve_one(small_config(), move |mut ws| async move {
        let mut dropped = 0;
        for _ in 0..4 {
            tokio::select! {
                r = ws.send_encoded_batch(&big) => r.unwrap(),
                () = tokio::task::yield_now() => dropped += 1,
            }
        }
        ws.send_encoded(&EncodedFrame::text(Bytes::from_static(b"end")))
            .await
            .unwrap();
        (dropped, ws.recv().await)
    })
    .await;
    let mut c = tclient(addr).await;
    let mut last = None;
    loop {
        match next_msg(&mut c).await {
            Some(TMsg::Binary(got)) => {
                assert_eq!(got.len(), 150_000, "a whole frame");
                assert!(got.iter().all(|&b| b == got[0]), "one frame's bytes only");
                // In order within each batch (a new batch starts again at 0).
                if let Some(prev) = last {
                    assert!(got[0] == prev + 1 || got[0] == 0, "{prev} then {}", got[0]);
                }
                last = Some(got[0]);
            }
            Some(TMsg::Text(t)) => {
                assert_eq!(t.as_str(), "end");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    c.close(None).await.unwrap();
    let (dropped, end) = server.await.unwrap();
    assert!(dropped > 0, "the test must drop at least one batch mid-way");
    assert!(matches!(end, Ok(Message::Close(None))));
}

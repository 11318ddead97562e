//! permessage-deflate through the frame decoder: random messages compressed by a client-side
//! stream (with and without context takeover), split into random fragments with RSV1 on the
//! first, mixed with uncompressed messages and pings, fed in random chunks, must come out
//! exactly as sent; and the RSV1 rules of RFC 7692 §6.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use proptest::prelude::*;
use rtchat_ws::deflate::{negotiate_values, DeflateConfig};
use rtchat_ws::frame::{Decoder, Event, Frame, OpCode, ProtocolError};
use rtchat_ws::{CloseCode, Message, Utf8Bytes};

/// A client's compressor: raw deflate, sync flush, tail removed.
fn client_compress(c: &mut Compress, data: &[u8], takeover: bool) -> Vec<u8> {
    if !takeover {
        c.reset();
    }
    let mut out = Vec::with_capacity(data.len() + 64);
    let start = c.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity() + 256);
        }
        let done = (c.total_in() - start) as usize;
        c.compress_vec(&data[done..], &mut out, FlushCompress::Sync)
            .unwrap();
        if (c.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.is_empty() {
        // zlib emits nothing for a second sync flush with no new input (an empty message on
        // a stream with context): what clients send then is an empty stored block.
        return vec![0];
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn push(out: &mut Vec<u8>, opcode: OpCode, fin: bool, rsv1: bool, payload: &[u8], mask: [u8; 4]) {
    let mut f = Frame::new(opcode, Bytes::copy_from_slice(payload));
    f.header.fin = fin;
    f.header.rsv = if rsv1 { 0b100 } else { 0 };
    f.header.mask = Some(mask);
    f.encode_into(out);
}

#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    compressed: bool,
    payload: Vec<u8>,
    cuts: Vec<prop::sample::Index>,
    ping_after_first: bool,
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        any::<bool>(),
        prop_oneof![3 => Just(true), 1 => Just(false)],
        prop_oneof![
            any::<String>().prop_map(String::into_bytes),
            "[a-c ]{0,3000}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..2000),
        ],
        proptest::collection::vec(any::<prop::sample::Index>(), 0..5),
        any::<bool>(),
    )
        .prop_map(|(text, compressed, payload, cuts, ping_after_first)| Msg {
            payload: if text {
                String::from_utf8_lossy(&payload).into_owned().into_bytes()
            } else {
                payload
            },
            text,
            compressed,
            cuts,
            ping_after_first,
        })
}

fn encode(msgs: &[Msg], takeover: bool, mask: [u8; 4]) -> (Vec<u8>, Vec<Event>) {
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let mut out = Vec::new();
    let mut events = Vec::new();
    for m in msgs {
        let wire = if m.compressed {
            client_compress(&mut c, &m.payload, takeover)
        } else {
            m.payload.clone()
        };
        let mut bounds: Vec<usize> = m.cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        bounds.push(0);
        bounds.push(wire.len());
        bounds.sort_unstable();
        bounds.dedup();
        if bounds.len() == 1 {
            bounds.push(0);
        }
        let n = bounds.len() - 1;
        for i in 0..n {
            let op = match (i, m.text) {
                (0, true) => OpCode::Text,
                (0, false) => OpCode::Binary,
                _ => OpCode::Continuation,
            };
            push(
                &mut out,
                op,
                i == n - 1,
                i == 0 && m.compressed,
                &wire[bounds[i]..bounds[i + 1]],
                mask,
            );
            if i == 0 && n > 1 && m.ping_after_first {
                push(&mut out, OpCode::Ping, true, false, b"p", mask);
                events.push(Event::Ping(Bytes::from_static(b"p")));
            }
        }
        let b = Bytes::copy_from_slice(&m.payload);
        events.push(Event::Message(if m.text {
            Message::Text(Utf8Bytes::try_from_bytes(b).unwrap())
        } else {
            Message::Binary(b)
        }));
    }
    (out, events)
}

fn decoder(takeover: bool, limit: usize) -> Decoder {
    let cfg = DeflateConfig {
        client_context_takeover: takeover,
        ..DeflateConfig::default()
    };
    let d = negotiate_values([&b"permessage-deflate; client_max_window_bits"[..]], &cfg).unwrap();
    assert_eq!(d.client_context_takeover(), takeover);
    let mut dec = Decoder::new(limit, limit);
    dec.set_deflate(Some(&d));
    dec
}

fn decode_chunked(
    mut d: Decoder,
    bytes: &[u8],
    chunk: usize,
) -> (Vec<Event>, Option<ProtocolError>) {
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut pos = 0;
    loop {
        loop {
            match d.decode(&mut buf) {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        if pos >= bytes.len() {
            return (events, None);
        }
        let end = (pos + chunk).min(bytes.len());
        buf.extend_from_slice(&bytes[pos..end]);
        pos = end;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn compressed_messages_round_trip(
        msgs in proptest::collection::vec(msg(), 0..8),
        takeover in any::<bool>(),
        mask in any::<[u8; 4]>(),
        chunk in prop_oneof![Just(1usize), 1usize..64, 64usize..10_000],
    ) {
        let (bytes, expect) = encode(&msgs, takeover, mask);
        let (got, err) = decode_chunked(decoder(takeover, 1 << 20), &bytes, chunk);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expect);
    }
}

fn one(bytes: &[u8], takeover: bool, limit: usize) -> Result<Vec<Event>, ProtocolError> {
    match decode_chunked(decoder(takeover, limit), bytes, 4096) {
        (events, None) => Ok(events),
        (_, Some(e)) => Err(e),
    }
}

#[test]
fn rsv1_rules() {
    let mask = [1, 2, 3, 4];
    let code = |b: &[u8]| one(b, false, 1000).unwrap_err().code;
    // RSV1 on a control frame, on a continuation frame; RSV2/RSV3 in any case.
    let mut b = Vec::new();
    push(&mut b, OpCode::Ping, true, true, b"", mask);
    assert_eq!(code(&b), CloseCode::PROTOCOL);
    let mut b = Vec::new();
    push(&mut b, OpCode::Text, false, true, &[0xf2, 0x48], mask);
    push(
        &mut b,
        OpCode::Continuation,
        true,
        true,
        &[0xcd, 0xc9, 0xc9, 0x07, 0x00],
        mask,
    );
    assert_eq!(code(&b), CloseCode::PROTOCOL);
    let mut b = Vec::new();
    push(&mut b, OpCode::Text, true, false, b"x", mask);
    b[0] |= 0x20;
    assert_eq!(code(&b), CloseCode::PROTOCOL);
    // Without the extension agreed, RSV1 is a protocol error.
    let mut b = Vec::new();
    push(
        &mut b,
        OpCode::Text,
        true,
        true,
        &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        mask,
    );
    let mut plain = Decoder::new(1000, 1000);
    assert_eq!(
        plain.decode(&mut BytesMut::from(&b[..])).unwrap_err().code,
        CloseCode::PROTOCOL
    );
    // With it: "Hello" (RFC 7692 §7.2.3.1).
    assert_eq!(
        one(&b, false, 1000).unwrap(),
        vec![Event::Message(Message::text("Hello"))]
    );
    // Garbage: 1007. Invalid UTF-8 inside a compressed text message: 1007.
    let mut b = Vec::new();
    push(&mut b, OpCode::Binary, true, true, &[0xff; 8], mask);
    assert_eq!(code(&b), CloseCode::INVALID_DATA);
    let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
    let mut b = Vec::new();
    push(
        &mut b,
        OpCode::Text,
        true,
        true,
        &client_compress(&mut c, &[b'a', 0xff, b'b'], false),
        mask,
    );
    assert_eq!(code(&b), CloseCode::INVALID_DATA);
}

/// A small frame that inflates far beyond the limit closes with 1009, whether it comes in one
/// frame or in fragments; one byte under the limit is fine.
#[test]
fn bomb_is_too_big() {
    let mask = [9, 8, 7, 6];
    let mut c = Compress::new_with_window_bits(Compression::new(9), false, 15);
    let bomb = client_compress(&mut c, &vec![b'a'; 4 << 20], false);
    assert!(bomb.len() < 8192, "{}", bomb.len());
    for takeover in [false, true] {
        let mut b = Vec::new();
        push(&mut b, OpCode::Text, true, true, &bomb, mask);
        assert_eq!(
            one(&b, takeover, 1 << 20).unwrap_err().code,
            CloseCode::TOO_BIG
        );
        let mut b = Vec::new();
        push(&mut b, OpCode::Text, false, true, &bomb[..100], mask);
        push(
            &mut b,
            OpCode::Continuation,
            true,
            false,
            &bomb[100..],
            mask,
        );
        assert_eq!(
            one(&b, takeover, 1 << 20).unwrap_err().code,
            CloseCode::TOO_BIG
        );
        assert_eq!(one(&b, takeover, 4 << 20).unwrap().len(), 1);
        assert_eq!(
            one(&b, takeover, (4 << 20) - 1).unwrap_err().code,
            CloseCode::TOO_BIG
        );
    }
}

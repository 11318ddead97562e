//! Property tests for the frame codec: encode→decode round trips of random
//! message sequences (random fragmentation, interleaved control frames,
//! random masks) under arbitrary chunking of the byte stream, plus
//! chunking-independence for arbitrary (mostly invalid) input.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rtchat_ws::frame::{Decoder, Event, Frame, FrameHeader, OpCode, ProtocolError, MAX_HEADER_LEN};
use rtchat_ws::mask::{apply_mask, apply_mask_offset};
use rtchat_ws::{CloseCode, CloseFrame, Message, Utf8Bytes};

#[derive(Debug, Clone)]
enum Item {
    Data {
        text: bool,
        payload: Vec<u8>,
        /// Fragment boundaries (sorted, deduped, within payload).
        cuts: Vec<usize>,
        /// Ping payloads inserted after fragment i.
        pings: Vec<(usize, Vec<u8>)>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn item() -> impl Strategy<Value = Item> {
    let data = (
        any::<bool>(),
        prop_oneof![
            10 => any::<String>().prop_map(|s| s.into_bytes()),
            10 => proptest::collection::vec(any::<u8>(), 0..300),
            // Rare: exercises the 16/64-bit length boundary (65535/65536).
            1 => proptest::collection::vec(any::<u8>(), 65_000..66_000),
        ],
        proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        proptest::collection::vec(
            (0usize..6, proptest::collection::vec(any::<u8>(), 0..125)),
            0..3,
        ),
    )
        .prop_map(|(text, payload, cuts, pings)| {
            let payload = if text {
                String::from_utf8_lossy(&payload).into_owned().into_bytes()
            } else {
                payload
            };
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            Item::Data {
                text,
                payload,
                cuts,
                pings,
            }
        });
    prop_oneof![
        6 => data,
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Item::Ping),
        1 => proptest::collection::vec(any::<u8>(), 0..126).prop_map(Item::Pong),
    ]
}

fn push(out: &mut Vec<u8>, opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4]) {
    let mut f = Frame::new(opcode, Bytes::copy_from_slice(payload));
    f.header.fin = fin;
    f.header.mask = Some(mask);
    f.encode_into(out);
}

/// Encodes items (and an optional final close) into client bytes and the
/// events the decoder must produce.
fn encode(items: &[Item], close: Option<(u16, String)>, mask: [u8; 4]) -> (Vec<u8>, Vec<Event>) {
    let mut out = Vec::new();
    let mut ev = Vec::new();
    for it in items {
        match it {
            Item::Ping(p) => {
                push(&mut out, OpCode::Ping, true, p, mask);
                ev.push(Event::Ping(Bytes::copy_from_slice(p)));
            }
            Item::Pong(p) => {
                push(&mut out, OpCode::Pong, true, p, mask);
                ev.push(Event::Pong(Bytes::copy_from_slice(p)));
            }
            Item::Data {
                text,
                payload,
                cuts,
                pings,
            } => {
                let mut bounds = vec![0];
                bounds.extend(cuts.iter().copied());
                bounds.push(payload.len());
                bounds.dedup();
                if bounds.len() == 1 {
                    bounds.push(0);
                }
                let nfrag = bounds.len() - 1;
                for i in 0..nfrag {
                    let op = match (i, text) {
                        (0, true) => OpCode::Text,
                        (0, false) => OpCode::Binary,
                        _ => OpCode::Continuation,
                    };
                    push(
                        &mut out,
                        op,
                        i == nfrag - 1,
                        &payload[bounds[i]..bounds[i + 1]],
                        mask,
                    );
                    if i < nfrag - 1 {
                        for (at, p) in pings {
                            if *at == i {
                                push(&mut out, OpCode::Ping, true, p, mask);
                                ev.push(Event::Ping(Bytes::copy_from_slice(p)));
                            }
                        }
                    }
                }
                let b = Bytes::copy_from_slice(payload);
                ev.push(Event::Message(if *text {
                    Message::Text(Utf8Bytes::try_from_bytes(b).unwrap())
                } else {
                    Message::Binary(b)
                }));
            }
        }
    }
    if let Some((code, reason)) = close {
        let mut p = code.to_be_bytes().to_vec();
        p.extend_from_slice(reason.as_bytes());
        push(&mut out, OpCode::Close, true, &p, mask);
        ev.push(Event::Close(Some(CloseFrame {
            code: CloseCode(code),
            reason: Utf8Bytes::from(reason.as_str()),
        })));
    }
    (out, ev)
}

/// Feeds `bytes` in chunks of the given sizes (cycled), collecting events
/// until the first error.
fn decode_chunked(bytes: &[u8], sizes: &[usize]) -> (Vec<Event>, Option<ProtocolError>) {
    let mut d = Decoder::new(1 << 20, 1 << 20);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    let mut pos = 0;
    let mut i = 0;
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
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(bytes.len())
            .max(1);
        let end = (pos + n).min(bytes.len());
        buf.extend_from_slice(&bytes[pos..end]);
        pos = end;
        i += 1;
    }
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1]),
        proptest::collection::vec(1usize..20, 1..10),
        proptest::collection::vec(1usize..5000, 1..10),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip_any_chunking(
        items in proptest::collection::vec(item(), 0..8),
        close in proptest::option::of((prop_oneof![1000u16..=1003, 1007u16..=1014, 3000u16..=4999], "[a-z ]{0,20}")),
        mask in any::<[u8; 4]>(),
        sizes in chunk_sizes(),
    ) {
        let (bytes, expect) = encode(&items, close, mask);
        let (got, err) = decode_chunked(&bytes, &sizes);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got, expect);
    }

    #[test]
    fn arbitrary_bytes_are_chunking_independent(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        sizes in chunk_sizes(),
    ) {
        let whole = decode_chunked(&bytes, &[bytes.len().max(1)]);
        let chunked = decode_chunked(&bytes, &sizes);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn mutated_valid_stream_never_panics_and_is_chunking_independent(
        items in proptest::collection::vec(item(), 1..4),
        mask in any::<[u8; 4]>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        sizes in chunk_sizes(),
    ) {
        let (mut bytes, _) = encode(&items, None, mask);
        for (i, x) in flips {
            if !bytes.is_empty() {
                let at = i.index(bytes.len());
                bytes[at] ^= x;
            }
        }
        let whole = decode_chunked(&bytes, &[bytes.len().max(1)]);
        let chunked = decode_chunked(&bytes, &sizes);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn header_roundtrip(fin: bool, rsv in 0u8..8, op in 0u8..16, mask: Option<[u8; 4]>, len in prop_oneof![0u64..200, 100u64..70000, any::<u64>().prop_map(|v| v >> 1)]) {
        let h = FrameHeader { fin, rsv, opcode: OpCode::from_u8(op), mask, payload_len: len };
        let mut b = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut b);
        prop_assert_eq!(FrameHeader::parse(&b[..n]).unwrap(), Some((h, n)));
        prop_assert_eq!(FrameHeader::parse(&b[..n - 1]).unwrap(), None);
    }

    #[test]
    fn mask_piecewise(data in proptest::collection::vec(any::<u8>(), 0..500), key: [u8; 4], cut in any::<prop::sample::Index>()) {
        let mut whole = data.clone();
        apply_mask(&mut whole, key);
        let c = cut.index(data.len() + 1);
        let mut pieces = data.clone();
        apply_mask_offset(&mut pieces[..c], key, 0);
        apply_mask_offset(&mut pieces[c..], key, c);
        prop_assert_eq!(&whole, &pieces);
        let naive: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ key[i % 4]).collect();
        prop_assert_eq!(whole, naive);
    }

    #[test]
    fn utf8_validator_matches_std(data in prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..64),
        (any::<String>(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(s, i, b)| {
            let mut v = s.into_bytes();
            if !v.is_empty() { let at = i.index(v.len()); v[at] = b; }
            v
        }),
    ], cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut v = rtchat_ws::utf8::Utf8Validator::new();
        let mut prev = 0;
        let mut ok = true;
        for c in cuts.into_iter().chain(std::iter::once(data.len())) {
            ok &= v.feed(&data[prev..c]).is_ok();
            if !ok { break; }
            prev = c;
        }
        ok = ok && v.finish().is_ok();
        prop_assert_eq!(ok, std::str::from_utf8(&data).is_ok());
    }
}

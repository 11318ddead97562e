//! Arbitrary bytes, fed to the sans-IO decoder whole and in arbitrary chunks:
//! must never panic, and chunking must not change the result. Flag bits 2 and 4 turn on
//! permessage-deflate (RSV1 messages are inflated), with client context takeover.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rtchat_ws::deflate::{negotiate_values, DeflateConfig};
use rtchat_ws::frame::{Decoder, Event, ProtocolError};

fn run(data: &[u8], sizes: &[u8], flags: u8) -> (Vec<Event>, Option<ProtocolError>) {
    let mut d = Decoder::new(64 * 1024, 16 * 1024);
    d.set_require_mask(flags & 1 == 0);
    if flags & 2 != 0 {
        let config = DeflateConfig {
            client_context_takeover: flags & 4 != 0,
            ..DeflateConfig::default()
        };
        let deflate = negotiate_values([&b"permessage-deflate"[..]], &config);
        d.set_deflate(deflate.as_ref());
    }
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
        if pos >= data.len() {
            return (events, None);
        }
        let n = if sizes.is_empty() {
            data.len()
        } else {
            sizes[i % sizes.len()] as usize + 1
        };
        let end = (pos + n).min(data.len());
        buf.extend_from_slice(&data[pos..end]);
        pos = end;
        i += 1;
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let flags = input[0];
    let nsizes = (input[1] as usize % 8).min(input.len() - 2);
    let sizes = &input[2..2 + nsizes];
    let data = &input[2 + nsizes..];
    let whole = run(data, &[], flags);
    let chunked = run(data, sizes, flags);
    assert_eq!(whole, chunked);
});

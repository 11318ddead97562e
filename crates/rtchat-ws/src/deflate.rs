//! permessage-deflate (RFC 7692): the negotiation, and compressing and decompressing whole
//! messages with [`flate2`] on its zlib-rs backend. The framing around it (RSV1 on the first
//! frame of a compressed message, fragments carrying one compressed stream, the
//! `00 00 ff ff` tail) lives in [`crate::frame`] and [`crate::connection`].
//!
//! Design (a server that fans one message out to many connections):
//! * **The server never keeps a compression context per connection.** Every response says
//!   `server_no_context_takeover` (RFC 7692 §7.1.1.1 lets a server do so unasked), so a
//!   message is compressed on its own and the same compressed frame can go to every
//!   connection that agreed on the same window ([`SharedMessage`]). Compression uses one
//!   zlib stream per thread and window size, reset before each message.
//! * **Decompression keeps no context per connection either, unless configured.** The
//!   response also says `client_no_context_takeover` (§7.1.1.2 lets a server ask it
//!   unconditionally), so each incoming message inflates on a per-thread stream, reset after
//!   it: an idle connection holds no zlib state. With
//!   [`DeflateConfig::client_context_takeover`] the client may keep its context, and the
//!   connection then holds its own inflate stream, allocated at its first compressed message
//!   ([`Deflate::per_connection_bytes`] says how much).
//! * **Decompression bombs.** Output is produced in steps into a buffer that never grows past
//!   the message limit plus one byte; the first byte beyond it fails the message (1009), so
//!   memory and CPU are bounded by the limit whatever the compressed input claims.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use http::header::SEC_WEBSOCKET_EXTENSIONS;
use http::{HeaderMap, HeaderValue};
use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock};

use crate::frame::{EncodedFrame, OpCode};

/// The extension's registered name.
pub const EXTENSION: &str = "permessage-deflate";
/// Smallest LZ77 window rtchat-ws compresses with. zlib-family deflaters cannot use 8 bits
/// for raw deflate, so an offer that limits the server to 8 bits is declined (RFC 7692 §7.1.2.1).
pub const MIN_WINDOW_BITS: u8 = 9;
/// Largest LZ77 window (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;
/// What a sender strips from the end of each compressed message (and the receiver appends).
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// Server-side permessage-deflate settings (part of [`Config`](crate::Config); `None` there
/// turns the extension off).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Messages with fewer payload bytes than this are sent uncompressed. Default 256.
    pub threshold: usize,
    /// zlib compression level, 0-9. Default 6 (zlib's default).
    pub level: u8,
    /// The largest window the server compresses with (9-15; default 15). An offer asking
    /// for less (`server_max_window_bits`) gets what it asked for, down to 9.
    pub server_max_window_bits: u8,
    /// Let clients keep their compression context between messages (better ratio on what
    /// clients send, at the price of an inflate stream per connection). Default false: the
    /// response asks `client_no_context_takeover`.
    pub client_context_takeover: bool,
    /// With `client_context_takeover`: the window clients that support it are asked to stay
    /// within (9-15, default 15), which bounds each connection's inflate stream.
    pub client_max_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            threshold: 256,
            level: 6,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_context_takeover: false,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

/// What was agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    server_window_bits: u8,
    /// `Some(bits)` when the client keeps its context (the connection's inflate stream
    /// uses this window); `None` under `client_no_context_takeover`.
    client_takeover_bits: Option<u8>,
    /// Whether the response names `server_max_window_bits` / `client_max_window_bits`.
    announce_server_bits: bool,
    announce_client_bits: bool,
    level: u8,
    threshold: u32,
}

impl Deflate {
    /// The window the server compresses with.
    pub fn server_window_bits(&self) -> u8 {
        self.server_window_bits
    }

    /// Whether the client keeps its compression context between messages (the connection
    /// then holds an inflate stream of its own).
    pub fn client_context_takeover(&self) -> bool {
        self.client_takeover_bits.is_some()
    }

    /// Messages shorter than this go uncompressed.
    pub fn threshold(&self) -> usize {
        self.threshold as usize
    }

    /// The compression level.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Approximate heap memory the connection holds for the extension once a compressed
    /// message has arrived: 0 without client context takeover, else the inflate stream
    /// (window plus zlib's state, about 7 KiB).
    pub fn per_connection_bytes(&self) -> usize {
        match self.client_takeover_bits {
            None => 0,
            Some(bits) => (1usize << bits) + 7 * 1024,
        }
    }

    /// The `Sec-WebSocket-Extensions` value of the response.
    pub fn response_value(&self) -> String {
        let mut v = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_takeover_bits.is_none() {
            v.push_str("; client_no_context_takeover");
        }
        if self.announce_server_bits {
            v.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        if let (true, Some(bits)) = (self.announce_client_bits, self.client_takeover_bits) {
            v.push_str(&format!("; client_max_window_bits={bits}"));
        }
        v
    }

    /// [`response_value`](Self::response_value) as a header value.
    pub fn response_header(&self) -> HeaderValue {
        HeaderValue::from_str(&self.response_value()).expect("ASCII header value")
    }
}

/// Picks the first acceptable `permessage-deflate` offer of the request's
/// `Sec-WebSocket-Extensions` headers, the way RFC 7692 §5 and §7.1 say: an offer with an
/// unknown or repeated parameter, an invalid value, or a configuration rtchat-ws cannot
/// honour (`server_max_window_bits=8`) is declined and the next one considered. `None`: no
/// offer (or none acceptable); the connection then runs uncompressed.
pub fn negotiate(headers: &HeaderMap, config: &DeflateConfig) -> Option<Deflate> {
    negotiate_values(
        headers
            .get_all(SEC_WEBSOCKET_EXTENSIONS)
            .iter()
            .map(HeaderValue::as_bytes),
        config,
    )
}

/// [`negotiate`] over raw header values.
pub fn negotiate_values<'a>(
    values: impl IntoIterator<Item = &'a [u8]>,
    config: &DeflateConfig,
) -> Option<Deflate> {
    values
        .into_iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .find_map(|ext| {
            let mut parts = ext.split(|&b| b == b';').map(<[u8]>::trim_ascii);
            let name = parts.next()?;
            if !name.eq_ignore_ascii_case(EXTENSION.as_bytes()) {
                return None;
            }
            let offer = Offer::parse(parts)?;
            accept(&offer, config)
        })
}

/// One parsed offer. `client_max_window_bits` is `Some(None)` when offered without a value.
#[derive(Debug, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    client_max_window_bits: Option<Option<u8>>,
}

impl Offer {
    /// `None` if any parameter is unknown, repeated or has an invalid value (§7.1).
    fn parse<'a>(params: impl Iterator<Item = &'a [u8]>) -> Option<Offer> {
        let mut offer = Offer::default();
        let mut seen = [false; 4];
        for param in params {
            let (name, value) = match param.iter().position(|&b| b == b'=') {
                Some(i) => (
                    param[..i].trim_ascii(),
                    Some(unquote(param[i + 1..].trim_ascii())?),
                ),
                None => (param, None),
            };
            let lower = name.to_ascii_lowercase();
            let slot = match lower.as_slice() {
                b"server_no_context_takeover" => 0,
                b"client_no_context_takeover" => 1,
                b"server_max_window_bits" => 2,
                b"client_max_window_bits" => 3,
                _ => return None,
            };
            if std::mem::replace(&mut seen[slot], true) {
                return None;
            }
            match (slot, value) {
                (0, None) => offer.server_no_context_takeover = true,
                (1, None) => offer.client_no_context_takeover = true,
                (2, Some(v)) => offer.server_max_window_bits = Some(window_bits(v)?),
                (3, None) => offer.client_max_window_bits = Some(None),
                (3, Some(v)) => offer.client_max_window_bits = Some(Some(window_bits(v)?)),
                _ => return None,
            }
        }
        Some(offer)
    }
}

/// A quoted-string value is allowed if what it quotes is a token (RFC 6455 §9.1).
fn unquote(v: &[u8]) -> Option<&[u8]> {
    match v {
        [b'"', inner @ .., b'"'] => Some(inner),
        [b'"', ..] => None,
        v => Some(v),
    }
}

/// 8-15, decimal without leading zeros (RFC 7692 §7.1.2).
fn window_bits(v: &[u8]) -> Option<u8> {
    match v {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

fn accept(offer: &Offer, config: &DeflateConfig) -> Option<Deflate> {
    let ours = config
        .server_max_window_bits
        .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    let server_window_bits = match offer.server_max_window_bits {
        // zlib-family deflaters cannot compress raw deflate with a 256-byte window: decline.
        Some(bits) if bits < MIN_WINDOW_BITS => return None,
        Some(bits) => bits.min(ours),
        None => ours,
    };
    let client_takeover_bits = (config.client_context_takeover
        && !offer.client_no_context_takeover)
        .then(|| match offer.client_max_window_bits {
            // The client said it can be limited: ask for our window (or its own, if smaller).
            Some(theirs) => theirs
                .unwrap_or(MAX_WINDOW_BITS)
                .min(config.client_max_window_bits.clamp(8, MAX_WINDOW_BITS)),
            None => MAX_WINDOW_BITS,
        });
    Some(Deflate {
        server_window_bits,
        announce_server_bits: offer.server_max_window_bits.is_some(),
        announce_client_bits: offer.client_max_window_bits.is_some()
            && client_takeover_bits.is_some_and(|b| b < MAX_WINDOW_BITS),
        client_takeover_bits,
        level: config.level.min(9),
        threshold: u32::try_from(config.threshold).unwrap_or(u32::MAX),
    })
}

thread_local! {
    /// One raw deflate stream per (window, level) this thread has compressed with.
    static DEFLATERS: RefCell<Vec<(u8, u8, Compress)>> = const { RefCell::new(Vec::new()) };
    /// The inflate stream for messages without client context takeover.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses one whole message as permessage-deflate does without context takeover: raw
/// deflate with a `window_bits` window, flushed with a sync flush whose `00 00 ff ff` tail
/// is removed. `None` if the compressor failed (the caller then sends the message as it is).
pub fn compress(data: &[u8], window_bits: u8, level: u8) -> Option<Bytes> {
    let bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    let level = level.min(9);
    DEFLATERS.with(|cell| {
        let mut all = cell.borrow_mut();
        let i = match all.iter().position(|(b, l, _)| *b == bits && *l == level) {
            Some(i) => i,
            None => {
                let c = Compress::new_with_window_bits(Compression::new(level.into()), false, bits);
                all.push((bits, level, c));
                all.len() - 1
            }
        };
        let c = &mut all[i].2;
        c.reset();
        let out = compress_with(c, data);
        c.reset();
        out
    })
}

fn compress_with(c: &mut Compress, data: &[u8]) -> Option<Bytes> {
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    let start_in = c.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let consumed = (c.total_in() - start_in) as usize;
        c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .ok()?;
        let consumed = (c.total_in() - start_in) as usize;
        // A sync flush is complete once all input is in and the output was not filled.
        if consumed == data.len() && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    } else {
        return None;
    }
    Some(Bytes::from(out))
}

/// Why an incoming compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It decompresses to more than the limit (close 1009).
    TooBig,
    /// It is not valid DEFLATE data (close 1007).
    Invalid,
}

/// The receiving side of one connection.
#[derive(Debug)]
pub(crate) struct Inflater {
    /// `Some(bits)`: the client keeps its context; the stream lives in `own`.
    takeover_bits: Option<u8>,
    own: Option<Box<Decompress>>,
}

impl Inflater {
    pub(crate) fn new(d: &Deflate) -> Inflater {
        Inflater {
            takeover_bits: d.client_takeover_bits,
            own: None,
        }
    }

    /// Whether a per-connection inflate stream is allocated.
    pub(crate) fn holds_context(&self) -> bool {
        self.own.is_some()
    }

    /// Decompresses one whole message (its frames' payloads concatenated), producing at most
    /// `limit` bytes.
    pub(crate) fn inflate(&mut self, input: &[u8], limit: usize) -> Result<Bytes, InflateError> {
        match self.takeover_bits {
            Some(bits) => {
                let d = self.own.get_or_insert_with(|| {
                    Box::new(Decompress::new_with_window_bits(false, bits.max(9)))
                });
                let r = inflate_message(d, input, limit);
                if !matches!(r, Ok((_, false))) {
                    // A final block ends the stream: the next message starts afresh.
                    d.reset(false);
                }
                r.map(|(out, _)| out)
            }
            None => INFLATER.with(|cell| {
                let mut slot = cell.borrow_mut();
                let d = slot.get_or_insert_with(|| {
                    Decompress::new_with_window_bits(false, MAX_WINDOW_BITS)
                });
                let r = inflate_message(d, input, limit);
                d.reset(false);
                r.map(|(out, _)| out)
            }),
        }
    }
}

/// Inflates `input` and the tail; returns the output and whether a final block ended the
/// stream.
fn inflate_message(
    d: &mut Decompress,
    input: &[u8],
    limit: usize,
) -> Result<(Bytes, bool), InflateError> {
    let mut out = Vec::new();
    let mut ended = inflate_into(d, input, &mut out, limit)?;
    if !ended {
        ended = inflate_into(d, &TAIL, &mut out, limit)?;
    }
    Ok((Bytes::from(out), ended))
}

/// Feeds `input` to `d`, appending to `out`, which never grows beyond `limit + 1` bytes.
/// Returns true if the stream ended (a final block).
fn inflate_into(
    d: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool, InflateError> {
    let start_in = d.total_in();
    loop {
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        if out.len() == out.capacity() {
            // Grow with what arrives (doubling from 1 KiB), never past limit + 1.
            let grow = out.len().max(1024).min(limit + 1 - out.len());
            out.reserve_exact(grow);
        }
        let consumed = (d.total_in() - start_in) as usize;
        let out_before = out.len();
        let status = d
            .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Invalid)?;
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        let now = (d.total_in() - start_in) as usize;
        match status {
            Status::StreamEnd => return Ok(true),
            Status::Ok | Status::BufError => {}
        }
        if now == input.len() && out.len() < out.capacity() {
            return Ok(false);
        }
        if now == consumed && out.len() == out_before && out.len() < out.capacity() {
            // No progress with input left and room to write: not DEFLATE we can decode.
            return Err(InflateError::Invalid);
        }
    }
}

/// A data message prepared once for many connections: the plain frame and, made on first
/// demand and then shared, its compressed frame for each window size connections agreed on.
/// Cloning is a reference-count increment.
#[derive(Clone)]
pub struct SharedMessage(Arc<Shared>);

struct Shared {
    plain: EncodedFrame,
    /// The compressed frame for a 15-bit window (what browsers and most clients agree on);
    /// `None` inside when compression does not make it smaller.
    full_window: OnceLock<Option<EncodedFrame>>,
    /// Other windows (clients that asked for `server_max_window_bits`), rare.
    other: Mutex<Vec<(u8, Option<EncodedFrame>)>>,
}

impl std::fmt::Debug for SharedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedMessage")
            .field("plain", &self.0.plain)
            .finish()
    }
}

impl SharedMessage {
    /// A text message (`payload` must be UTF-8, as for [`EncodedFrame::text`]).
    pub fn text(payload: impl Into<Bytes>) -> SharedMessage {
        Self::from_frame(EncodedFrame::text(payload))
    }

    /// A binary message.
    pub fn binary(payload: impl Into<Bytes>) -> SharedMessage {
        Self::from_frame(EncodedFrame::binary(payload))
    }

    /// Wraps an uncompressed data frame.
    pub fn from_frame(plain: EncodedFrame) -> SharedMessage {
        SharedMessage(Arc::new(Shared {
            plain,
            full_window: OnceLock::new(),
            other: Mutex::new(Vec::new()),
        }))
    }

    /// The uncompressed frame.
    pub fn plain(&self) -> &EncodedFrame {
        &self.0.plain
    }

    /// The frame to send on a connection that agreed on `deflate` (or on nothing): the
    /// shared compressed frame when the message reaches the threshold and compression makes
    /// it smaller, else the plain one. The first connection to need a compressed variant
    /// compresses it; every other one gets the same bytes.
    pub fn frame_for(&self, deflate: Option<&Deflate>) -> EncodedFrame {
        let plain = &self.0.plain;
        match deflate {
            Some(d) if plain.payload().len() >= d.threshold() && !plain.opcode().is_control() => {
                self.compressed(d.server_window_bits, d.level)
                    .unwrap_or_else(|| plain.clone())
            }
            _ => plain.clone(),
        }
    }

    /// The compressed frame for `window_bits` (made once; `level` is the first caller's).
    pub fn compressed(&self, window_bits: u8, level: u8) -> Option<EncodedFrame> {
        let make = || deflate_frame(&self.0.plain, window_bits, level);
        if window_bits >= MAX_WINDOW_BITS {
            return self.0.full_window.get_or_init(make).clone();
        }
        let mut other = self.0.other.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, f)) = other.iter().find(|(b, _)| *b == window_bits) {
            return f.clone();
        }
        let f = make();
        other.push((window_bits, f.clone()));
        f
    }
}

/// The compressed form of a plain data frame, if it is smaller.
pub fn deflate_frame(plain: &EncodedFrame, window_bits: u8, level: u8) -> Option<EncodedFrame> {
    let opcode = plain.opcode();
    if !matches!(opcode, OpCode::Text | OpCode::Binary) {
        return None;
    }
    let payload = compress(plain.payload(), window_bits, level)?;
    (payload.len() < plain.payload().len()).then(|| EncodedFrame::compressed(opcode, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(s: &str) -> Option<Deflate> {
        negotiate_values([s.as_bytes()], &DeflateConfig::default())
    }

    #[test]
    fn default_offer_gets_no_context_takeover_both_ways() {
        let d = offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(
            d.response_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        assert_eq!(d.server_window_bits(), 15);
        assert!(!d.client_context_takeover());
        assert_eq!(d.per_connection_bytes(), 0);
    }

    #[test]
    fn server_window_is_honoured_and_8_declined() {
        let d = offer("permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(d.server_window_bits(), 10);
        assert!(d.response_value().ends_with("; server_max_window_bits=10"));
        let d = offer("permessage-deflate; server_max_window_bits=\"9\"").unwrap();
        assert_eq!(d.server_window_bits(), 9);
        assert_eq!(offer("permessage-deflate; server_max_window_bits=8"), None);
        // A declined offer falls through to the next one.
        let d = offer(
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_no_context_takeover",
        )
        .unwrap();
        assert_eq!(d.server_window_bits(), 15);
    }

    #[test]
    fn invalid_offers_are_declined() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=1",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; foo",
            "permessage-deflate; server_max_window_bits=\"10",
            "x-webkit-deflate-frame",
            "",
        ] {
            assert_eq!(offer(bad), None, "{bad}");
        }
        assert!(offer("foo, Permessage-Deflate ;  client_max_window_bits = 12").is_some());
    }

    #[test]
    fn client_context_takeover_when_configured() {
        let cfg = DeflateConfig {
            client_context_takeover: true,
            client_max_window_bits: 10,
            ..DeflateConfig::default()
        };
        let d =
            negotiate_values([&b"permessage-deflate; client_max_window_bits"[..]], &cfg).unwrap();
        assert!(d.client_context_takeover());
        assert_eq!(
            d.response_value(),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
        );
        assert_eq!(d.per_connection_bytes(), 1024 + 7 * 1024);
        // A client that cannot be limited keeps a full window.
        let d = negotiate_values([&b"permessage-deflate"[..]], &cfg).unwrap();
        assert_eq!(
            d.response_value(),
            "permessage-deflate; server_no_context_takeover"
        );
        // A client that promises not to take over context is taken at its word.
        let d = negotiate_values(
            [&b"permessage-deflate; client_no_context_takeover"[..]],
            &cfg,
        )
        .unwrap();
        assert!(!d.client_context_takeover());
    }

    /// RFC 7692 §7.2.3.1: "Hello" compressed without context takeover.
    #[test]
    fn rfc_example_inflates() {
        let d = offer("permessage-deflate").unwrap();
        let mut inf = Inflater::new(&d);
        let out = inf
            .inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100)
            .unwrap();
        assert_eq!(&out[..], b"Hello");
        // Stored (uncompressed) block, §7.2.3.3.
        let out = inf
            .inflate(
                &[
                    0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
                ],
                100,
            )
            .unwrap();
        assert_eq!(&out[..], b"Hello");
        // An empty message is one 0x00 byte (§7.2.3.6).
        assert_eq!(compress(b"", 15, 6).unwrap().as_ref(), &[0u8]);
        assert!(inf.inflate(&[0x00], 100).unwrap().is_empty());
        assert!(!inf.holds_context());
    }

    #[test]
    fn round_trip_every_window_and_level() {
        let text: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("{{\"id\":{i},\"user\":\"ann\"}}").into_bytes())
            .collect();
        let d = offer("permessage-deflate").unwrap();
        let mut inf = Inflater::new(&d);
        for bits in 9..=15 {
            for level in [0, 1, 6, 9] {
                let c = compress(&text, bits, level).unwrap();
                if level > 0 {
                    assert!(c.len() * 4 < text.len(), "bits {bits} level {level}");
                }
                assert_eq!(inf.inflate(&c, text.len()).unwrap(), text);
            }
        }
    }

    #[test]
    fn bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 8 << 20];
        let c = compress(&zeros, 15, 9).unwrap();
        assert!(c.len() < 16 * 1024, "{}", c.len());
        let d = offer("permessage-deflate").unwrap();
        let mut inf = Inflater::new(&d);
        assert_eq!(inf.inflate(&c, 1 << 20), Err(InflateError::TooBig));
        assert_eq!(inf.inflate(&c, (8 << 20) - 1), Err(InflateError::TooBig));
        assert_eq!(inf.inflate(&c, 8 << 20).unwrap().len(), 8 << 20);
        // The stream is reset after a failure: the next message is fine.
        assert_eq!(
            &inf.inflate(&compress(b"ok", 15, 6).unwrap(), 10).unwrap()[..],
            b"ok"
        );
    }

    #[test]
    fn garbage_is_invalid() {
        let d = offer("permessage-deflate").unwrap();
        let mut inf = Inflater::new(&d);
        assert_eq!(
            inf.inflate(&[0xff, 0xff, 0xff, 0xff], 100),
            Err(InflateError::Invalid)
        );
        assert_eq!(
            &inf.inflate(&compress(b"ok", 15, 6).unwrap(), 10).unwrap()[..],
            b"ok"
        );
    }

    #[test]
    fn context_takeover_carries_the_window_across_messages() {
        let cfg = DeflateConfig {
            client_context_takeover: true,
            ..DeflateConfig::default()
        };
        let d = negotiate_values([&b"permessage-deflate"[..]], &cfg).unwrap();
        let mut inf = Inflater::new(&d);
        // A client compressing two messages on one stream: the second refers to the first.
        let mut c = Compress::new_with_window_bits(Compression::new(6), false, 15);
        let msg = b"the same sentence, twice, the same sentence".repeat(4);
        let first = compress_with(&mut c, &msg).unwrap();
        let second = compress_with(&mut c, &msg).unwrap();
        assert!(second.len() < first.len() / 2);
        assert_eq!(inf.inflate(&first, 1000).unwrap(), msg);
        assert!(inf.holds_context());
        assert_eq!(inf.inflate(&second, 1000).unwrap(), msg);
        // Without takeover the second message cannot be decoded on its own.
        let mut plain = Inflater::new(&offer("permessage-deflate").unwrap());
        assert!(plain.inflate(&second, 1000).is_err());
    }

    #[test]
    fn shared_message_is_compressed_once_per_window() {
        let json = b"{\"msg\":[".repeat(200);
        let m = SharedMessage::text(Bytes::from(json.clone()));
        let d15 = offer("permessage-deflate").unwrap();
        let d10 = offer("permessage-deflate; server_max_window_bits=10").unwrap();
        let a = m.frame_for(Some(&d15));
        let b = m.frame_for(Some(&d15));
        assert!(a.is_compressed());
        assert_eq!(a.payload().as_ptr(), b.payload().as_ptr(), "shared bytes");
        let c = m.frame_for(Some(&d10));
        assert!(c.is_compressed());
        assert_eq!(
            c.payload().as_ptr(),
            m.frame_for(Some(&d10)).payload().as_ptr()
        );
        assert!(!m.frame_for(None).is_compressed());
        // Below the threshold, or not smaller: plain.
        let small = SharedMessage::text("{\"a\":1}");
        assert!(!small.frame_for(Some(&d15)).is_compressed());
        let cfg = DeflateConfig {
            threshold: 0,
            ..DeflateConfig::default()
        };
        let d0 = negotiate_values([&b"permessage-deflate"[..]], &cfg).unwrap();
        assert!(!small.frame_for(Some(&d0)).is_compressed());
    }
}

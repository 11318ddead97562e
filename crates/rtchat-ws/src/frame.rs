//! Frame layer (RFC 6455 §5): opcodes, close codes, header encoding and a
//! sans-IO incremental [`Decoder`] that turns a byte stream (split at any
//! point) into messages and control frames while enforcing every framing rule
//! a server must enforce.

use bytes::{Buf, Bytes, BytesMut};
use std::fmt;

use crate::deflate::{Deflate, InflateError, Inflater};
use crate::mask::apply_mask_offset;
use crate::message::{CloseFrame, Message, Utf8Bytes};
use crate::utf8::Utf8Validator;

/// Largest possible frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;
/// Largest header of an unmasked (server) frame.
pub const MAX_SERVER_HEADER_LEN: usize = 10;
/// Control frames carry at most 125 payload bytes (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frame opcode (§5.2), including the reserved values so they can be
/// reported precisely instead of being lost in parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: first frame of a text message.
    Text,
    /// 0x2: first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
    /// 0x3-0x7 and 0xB-0xF: reserved, a protocol error without an extension.
    Reserved(u8),
}

impl OpCode {
    /// Decodes the low 4 bits of the first header byte.
    pub fn from_u8(v: u8) -> OpCode {
        match v & 0x0f {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => OpCode::Reserved(other),
        }
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
            OpCode::Reserved(v) => v & 0x0f,
        }
    }

    /// Control opcodes have the high bit set (0x8-0xF).
    pub fn is_control(self) -> bool {
        self.as_u8() & 0x08 != 0
    }
}

/// A close status code (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: endpoint going away (server shutdown, page navigation).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL: CloseCode = CloseCode(1002);
    /// 1003: unsupported data type.
    pub const UNSUPPORTED: CloseCode = CloseCode(1003);
    /// 1005: no status present (never on the wire).
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: abnormal closure (never on the wire).
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: payload inconsistent with message type (bad UTF-8).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: policy violation.
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: message too big.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: client expected an extension.
    pub const EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: internal server error (also used for a dead peer).
    pub const INTERNAL: CloseCode = CloseCode(1011);
    /// 1012: service restart.
    pub const RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN: CloseCode = CloseCode(1013);
    /// 1014: bad gateway.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// Whether a peer may send this code in a Close frame: 1000-1003,
    /// 1007-1014 and the registered/private range 3000-4999. Everything else
    /// (1004-1006, 1015, <1000, 1016-2999, >=5000) is a protocol error.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u16> for CloseCode {
    fn from(v: u16) -> Self {
        CloseCode(v)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1..RSV3 as the low three bits (RSV1 = 0b100).
    pub rsv: u8,
    /// Frame opcode.
    pub opcode: OpCode,
    /// Masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// Payload length as declared on the wire.
    pub payload_len: u64,
}

/// Framing-level error: what close code to send and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError {
    /// Close code the connection sends before failing (1002, 1007 or 1009).
    pub code: CloseCode,
    /// Short human-readable reason (also sent in the Close frame).
    pub reason: &'static str,
}

impl ProtocolError {
    const fn new(code: CloseCode, reason: &'static str) -> Self {
        ProtocolError { code, reason }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason, self.code)
    }
}

impl std::error::Error for ProtocolError {}

const fn proto(reason: &'static str) -> ProtocolError {
    ProtocolError::new(CloseCode::PROTOCOL, reason)
}

impl FrameHeader {
    /// Parses a header from the start of `buf`. Returns `Ok(None)` if more
    /// bytes are needed, otherwise the header and its encoded length.
    /// Non-minimal length encodings are accepted (the RFC's "MUST" is on the
    /// sender; being lenient costs nothing). A 64-bit length with the most
    /// significant bit set is rejected.
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let b0 = buf[0];
        let b1 = buf[1];
        let masked = b1 & 0x80 != 0;
        let len7 = b1 & 0x7f;
        let ext = match len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let hlen = 2 + ext + if masked { 4 } else { 0 };
        if buf.len() < hlen {
            return Ok(None);
        }
        let payload_len = match ext {
            2 => u16::from_be_bytes([buf[2], buf[3]]) as u64,
            8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&buf[2..10]);
                let v = u64::from_be_bytes(a);
                if v & (1 << 63) != 0 {
                    return Err(proto(
                        "64-bit payload length has the most significant bit set",
                    ));
                }
                v
            }
            _ => len7 as u64,
        };
        let mask = if masked {
            let p = 2 + ext;
            Some([buf[p], buf[p + 1], buf[p + 2], buf[p + 3]])
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin: b0 & 0x80 != 0,
                rsv: (b0 >> 4) & 0x07,
                opcode: OpCode::from_u8(b0),
                mask,
                payload_len,
            },
            hlen,
        )))
    }

    /// Encoded header length (minimal length encoding).
    pub fn len(&self) -> usize {
        let ext = if self.payload_len < 126 {
            0
        } else if self.payload_len <= u16::MAX as u64 {
            2
        } else {
            8
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Always false: a header is never empty (exists to satisfy clippy's
    /// `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the header with minimal length encoding into `dst`, returning
    /// the number of bytes written.
    pub fn encode(&self, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
        dst[0] = (if self.fin { 0x80 } else { 0 }) | ((self.rsv & 7) << 4) | self.opcode.as_u8();
        let mbit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut n = 2;
        if self.payload_len < 126 {
            dst[1] = mbit | self.payload_len as u8;
        } else if self.payload_len <= u16::MAX as u64 {
            dst[1] = mbit | 126;
            dst[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
            n = 4;
        } else {
            dst[1] = mbit | 127;
            dst[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
            n = 10;
        }
        if let Some(m) = self.mask {
            dst[n..n + 4].copy_from_slice(&m);
            n += 4;
        }
        n
    }
}

/// A whole frame with its (unmasked) payload; used to encode client frames in
/// tests/fuzzers and to build [`EncodedFrame`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Header; `payload_len` is overwritten from `payload` when encoding.
    pub header: FrameHeader,
    /// Unmasked payload.
    pub payload: Bytes,
}

impl Frame {
    /// A final, unmasked frame.
    pub fn new(opcode: OpCode, payload: Bytes) -> Frame {
        Frame {
            header: FrameHeader {
                fin: true,
                rsv: 0,
                opcode,
                mask: None,
                payload_len: payload.len() as u64,
            },
            payload,
        }
    }

    /// Appends the wire encoding (masking the payload if the header has a
    /// key) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut h = self.header;
        h.payload_len = self.payload.len() as u64;
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut hb);
        out.extend_from_slice(&hb[..n]);
        let start = out.len();
        out.extend_from_slice(&self.payload);
        if let Some(m) = h.mask {
            apply_mask_offset(&mut out[start..], m, 0);
        }
    }
}

/// A server frame (unmasked, final) encoded once and sendable to any number
/// of connections: the header bytes live inline and the payload is a shared
/// [`Bytes`], so cloning is a refcount bump and sending never copies payload.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    head: [u8; MAX_SERVER_HEADER_LEN],
    head_len: u8,
    payload: Bytes,
}

impl fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodedFrame")
            .field("head", &self.head())
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

impl EncodedFrame {
    /// Encodes a final unmasked frame. Control-frame limits are the caller's
    /// business; use the typed constructors for safety.
    pub fn new(opcode: OpCode, payload: Bytes) -> EncodedFrame {
        Self::with_rsv(opcode, payload, 0)
    }

    /// A data frame whose payload is a whole message compressed with permessage-deflate
    /// (RSV1 set). `payload` is the compressed bytes without the `00 00 ff ff` tail.
    pub fn compressed(opcode: OpCode, payload: Bytes) -> EncodedFrame {
        Self::with_rsv(opcode, payload, 0b100)
    }

    fn with_rsv(opcode: OpCode, payload: Bytes, rsv: u8) -> EncodedFrame {
        let h = FrameHeader {
            fin: true,
            rsv,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut hb = [0u8; MAX_HEADER_LEN];
        let n = h.encode(&mut hb);
        let mut head = [0u8; MAX_SERVER_HEADER_LEN];
        head[..n].copy_from_slice(&hb[..n]);
        EncodedFrame {
            head,
            head_len: n as u8,
            payload,
        }
    }

    /// A text frame. `payload` must be UTF-8: it is not re-validated here
    /// (fan-out paths already hold validated text; debug builds assert).
    pub fn text(payload: impl Into<Bytes>) -> EncodedFrame {
        let payload = payload.into();
        debug_assert!(
            std::str::from_utf8(&payload).is_ok(),
            "text frame payload must be UTF-8"
        );
        Self::new(OpCode::Text, payload)
    }

    /// A text frame from already validated text.
    pub fn text_utf8(text: Utf8Bytes) -> EncodedFrame {
        Self::new(OpCode::Text, text.into_bytes())
    }

    /// A binary frame.
    pub fn binary(payload: impl Into<Bytes>) -> EncodedFrame {
        Self::new(OpCode::Binary, payload.into())
    }

    /// A ping; the payload is truncated to 125 bytes.
    pub fn ping(payload: Bytes) -> EncodedFrame {
        Self::new(
            OpCode::Ping,
            payload.slice(..payload.len().min(MAX_CONTROL_PAYLOAD)),
        )
    }

    /// A pong; the payload is truncated to 125 bytes.
    pub fn pong(payload: Bytes) -> EncodedFrame {
        Self::new(
            OpCode::Pong,
            payload.slice(..payload.len().min(MAX_CONTROL_PAYLOAD)),
        )
    }

    /// A close frame with `code` and `reason`; the reason is truncated (at a
    /// char boundary) to fit the 125-byte control payload.
    pub fn close(code: CloseCode, reason: &str) -> EncodedFrame {
        let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let mut p = Vec::with_capacity(2 + end);
        p.extend_from_slice(&code.0.to_be_bytes());
        p.extend_from_slice(&reason.as_bytes()[..end]);
        Self::new(OpCode::Close, Bytes::from(p))
    }

    /// A close frame without a status code.
    pub fn close_empty() -> EncodedFrame {
        Self::new(OpCode::Close, Bytes::new())
    }

    /// The encoded header bytes.
    pub fn head(&self) -> &[u8] {
        &self.head[..self.head_len as usize]
    }

    /// The shared payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Total bytes on the wire.
    pub fn wire_len(&self) -> usize {
        self.head_len as usize + self.payload.len()
    }

    /// Opcode of this frame.
    pub fn opcode(&self) -> OpCode {
        OpCode::from_u8(self.head[0])
    }

    /// Whether RSV1 is set: the payload is a permessage-deflate compressed message.
    pub fn is_compressed(&self) -> bool {
        self.head[0] & 0x40 != 0
    }

    /// Appends the full wire bytes to `out` (copying; for tests and benches).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.head());
        out.extend_from_slice(&self.payload);
    }
}

/// Something the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete data message (never `Message::Close`).
    Message(Message),
    /// A ping with its payload (the connection answers with a pong).
    Ping(Bytes),
    /// A pong (unsolicited or not; the connection ignores it).
    Pong(Bytes),
    /// A valid close frame; `None` if it had no payload.
    Close(Option<CloseFrame>),
}

#[derive(Debug)]
struct CurFrame {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
    /// Payload bytes at the front of the buffer already unmasked/validated.
    done: usize,
    /// Whether payload bytes are part of a text message.
    text: bool,
    /// Whether they are part of a compressed message (validated once inflated).
    compressed: bool,
}

#[derive(Debug)]
struct Partial {
    text: bool,
    compressed: bool,
    data: BytesMut,
    /// Declared bytes so far (including the frame in flight).
    size: usize,
}

/// Incremental, sans-IO server-side frame decoder and message assembler.
///
/// Feed it a buffer to which new bytes are appended; [`decode`](Self::decode)
/// consumes complete frames from the front and keeps partial-frame state
/// itself, so bytes may arrive split at any point. Enforces: masking (server
/// role), RSV bits = 0, no reserved opcodes, control frames final and
/// ≤ 125 bytes, fragmentation order, frame/message size limits (1009), and
/// UTF-8 of text messages and close reasons (1007), failing as early as the
/// offending byte has arrived.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    max_frame: usize,
    require_mask: bool,
    cur: Option<CurFrame>,
    partial: Option<Partial>,
    utf8: Utf8Validator,
    failed: Option<ProtocolError>,
    /// Set once permessage-deflate is agreed: RSV1 then marks compressed messages.
    inflate: Option<Inflater>,
}

impl Decoder {
    /// A server-role decoder (client frames must be masked).
    pub fn new(max_message: usize, max_frame: usize) -> Decoder {
        Decoder {
            max_message,
            max_frame,
            require_mask: true,
            cur: None,
            partial: None,
            utf8: Utf8Validator::new(),
            failed: None,
            inflate: None,
        }
    }

    /// Turns permessage-deflate on (RSV1 on a message's first frame means it is
    /// compressed) or off. Call before decoding anything.
    pub fn set_deflate(&mut self, deflate: Option<&Deflate>) {
        self.inflate = deflate.map(Inflater::new);
    }

    /// Whether the decoder holds an inflate stream of its own (client context takeover).
    pub fn holds_inflate_context(&self) -> bool {
        self.inflate.as_ref().is_some_and(Inflater::holds_context)
    }

    /// Disables the "frames must be masked" rule (client role / tests).
    pub fn set_require_mask(&mut self, require: bool) {
        self.require_mask = require;
    }

    /// True when no frame or fragmented message is in progress, i.e. an
    /// empty buffer holds no state worth keeping.
    pub fn is_idle(&self) -> bool {
        self.cur.is_none() && self.partial.is_none()
    }

    /// Bytes still missing to complete the current frame (0 if unknown).
    pub fn frame_remaining(&self, buffered: usize) -> usize {
        match &self.cur {
            Some(c) => c.len.saturating_sub(buffered),
            None => 0,
        }
    }

    fn check_header(&mut self, h: &FrameHeader) -> Result<CurFrame, ProtocolError> {
        let rsv1 = h.rsv & 0b100 != 0;
        if h.rsv & 0b011 != 0 || (rsv1 && self.inflate.is_none()) {
            return Err(proto("reserved bits set without a negotiated extension"));
        }
        if rsv1 && h.opcode.is_control() {
            return Err(proto("RSV1 set on a control frame"));
        }
        if rsv1 && h.opcode == OpCode::Continuation {
            return Err(proto("RSV1 set on a continuation frame"));
        }
        if let OpCode::Reserved(_) = h.opcode {
            return Err(proto("reserved opcode"));
        }
        if self.require_mask && h.mask.is_none() {
            return Err(proto("client frame is not masked"));
        }
        let too_big = ProtocolError::new(CloseCode::TOO_BIG, "message too big");
        if h.opcode.is_control() {
            if !h.fin {
                return Err(proto("fragmented control frame"));
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(proto("control frame payload longer than 125 bytes"));
            }
            if h.opcode == OpCode::Close && h.payload_len == 1 {
                return Err(proto("close frame payload of length 1"));
            }
        } else if h.payload_len > self.max_frame as u64 || h.payload_len > self.max_message as u64 {
            return Err(too_big);
        }
        let len = h.payload_len as usize;
        let mut compressed = rsv1;
        let text = match h.opcode {
            OpCode::Continuation => match &mut self.partial {
                None => return Err(proto("continuation frame without a message to continue")),
                Some(p) => {
                    p.size = p.size.saturating_add(len);
                    if p.size > self.max_message {
                        return Err(too_big);
                    }
                    compressed = p.compressed;
                    p.text
                }
            },
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(proto("new data frame inside a fragmented message"));
                }
                let text = h.opcode == OpCode::Text;
                if text {
                    self.utf8.reset();
                }
                if !h.fin {
                    self.partial = Some(Partial {
                        text,
                        compressed,
                        data: BytesMut::new(),
                        size: len,
                    });
                }
                text
            }
            _ => false,
        };
        Ok(CurFrame {
            fin: h.fin,
            opcode: h.opcode,
            mask: h.mask,
            len,
            done: 0,
            text,
            compressed,
        })
    }

    /// Consumes bytes from the front of `buf` and returns the next event, or
    /// `Ok(None)` if more bytes are needed. After an error the decoder is
    /// poisoned and returns the same error again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let r = self.decode_inner(buf);
        if let Err(e) = r {
            self.failed = Some(e);
            self.cur = None;
            self.partial = None;
        }
        r
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        loop {
            if self.cur.is_none() {
                let Some((h, hlen)) = FrameHeader::parse(buf)? else {
                    return Ok(None);
                };
                let cur = self.check_header(&h)?;
                buf.advance(hlen);
                self.cur = Some(cur);
            }
            let Some(cur) = self.cur.as_mut() else {
                return Ok(None);
            };
            let avail = buf.len().min(cur.len);
            if avail > cur.done {
                let fresh = &mut buf[cur.done..avail];
                if let Some(key) = cur.mask {
                    apply_mask_offset(fresh, key, cur.done);
                }
                if cur.text && !cur.compressed && self.utf8.feed(fresh).is_err() {
                    return Err(ProtocolError::new(
                        CloseCode::INVALID_DATA,
                        "invalid UTF-8 in text message",
                    ));
                }
                cur.done = avail;
            }
            if avail < cur.len {
                return Ok(None);
            }
            let (fin, opcode, len, text, compressed) =
                (cur.fin, cur.opcode, cur.len, cur.text, cur.compressed);
            self.cur = None;
            match opcode {
                OpCode::Ping => return Ok(Some(Event::Ping(buf.split_to(len).freeze()))),
                OpCode::Pong => return Ok(Some(Event::Pong(buf.split_to(len).freeze()))),
                OpCode::Close => {
                    let payload = buf.split_to(len).freeze();
                    return parse_close_payload(payload).map(|c| Some(Event::Close(c)));
                }
                _ => {}
            }
            let invalid_utf8 =
                ProtocolError::new(CloseCode::INVALID_DATA, "invalid UTF-8 in text message");
            match self.partial.take() {
                None => {
                    // Single-frame message: hand out the buffer slice, no copy.
                    let payload = buf.split_to(len).freeze();
                    if compressed {
                        return self
                            .inflated(&payload, text)
                            .map(|m| Some(Event::Message(m)));
                    }
                    let msg = if text {
                        self.utf8.finish().map_err(|_| invalid_utf8)?;
                        Message::Text(Utf8Bytes::from_validated(payload))
                    } else {
                        Message::Binary(payload)
                    };
                    return Ok(Some(Event::Message(msg)));
                }
                Some(mut p) => {
                    if p.data.is_empty() && fin {
                        // Only reachable for a non-first fragment after empty ones.
                        p.data = buf.split_to(len);
                    } else {
                        p.data.extend_from_slice(&buf[..len]);
                        buf.advance(len);
                    }
                    if !fin {
                        self.partial = Some(p);
                        continue;
                    }
                    let payload = p.data.freeze();
                    if p.compressed {
                        return self
                            .inflated(&payload, p.text)
                            .map(|m| Some(Event::Message(m)));
                    }
                    let msg = if p.text {
                        self.utf8.finish().map_err(|_| invalid_utf8)?;
                        Message::Text(Utf8Bytes::from_validated(payload))
                    } else {
                        Message::Binary(payload)
                    };
                    return Ok(Some(Event::Message(msg)));
                }
            }
        }
    }
}

impl Decoder {
    /// Decompresses a whole compressed message and checks its text.
    fn inflated(&mut self, compressed: &[u8], text: bool) -> Result<Message, ProtocolError> {
        let Some(inflater) = self.inflate.as_mut() else {
            return Err(proto("reserved bits set without a negotiated extension"));
        };
        let payload = inflater
            .inflate(compressed, self.max_message)
            .map_err(|e| match e {
                InflateError::TooBig => {
                    ProtocolError::new(CloseCode::TOO_BIG, "decompressed message too big")
                }
                InflateError::Invalid => {
                    ProtocolError::new(CloseCode::INVALID_DATA, INVALID_COMPRESSED)
                }
            })?;
        if !text {
            return Ok(Message::Binary(payload));
        }
        simdutf8::basic::from_utf8(&payload).map_err(|_| {
            ProtocolError::new(CloseCode::INVALID_DATA, "invalid UTF-8 in text message")
        })?;
        Ok(Message::Text(Utf8Bytes::from_validated(payload)))
    }
}

/// Close reason for a compressed message that does not inflate.
pub const INVALID_COMPRESSED: &str = "invalid compressed data";

/// Validates a close payload: empty, or a valid code followed by UTF-8.
pub fn parse_close_payload(payload: Bytes) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(proto("close frame payload of length 1")),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_valid_on_wire() {
                return Err(proto("invalid close code"));
            }
            let reason = Utf8Bytes::try_from_bytes(payload.slice(2..)).map_err(|_| {
                ProtocolError::new(CloseCode::INVALID_DATA, "invalid UTF-8 in close reason")
            })?;
            Ok(Some(CloseFrame { code, reason }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

    fn client(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Frame {
            header: FrameHeader {
                fin,
                rsv: 0,
                opcode,
                mask: Some(KEY),
                payload_len: 0,
            },
            payload: Bytes::copy_from_slice(payload),
        }
        .encode_into(&mut out);
        out
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Event>, ProtocolError> {
        let mut d = Decoder::new(1 << 20, 1 << 20);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(ev) = d.decode(&mut buf)? {
            out.push(ev);
        }
        Ok(out)
    }

    #[test]
    fn header_lengths() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 40] {
            let h = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: OpCode::Binary,
                mask: Some(KEY),
                payload_len: len,
            };
            let mut b = [0u8; MAX_HEADER_LEN];
            let n = h.encode(&mut b);
            assert_eq!(n, h.len());
            assert_eq!(FrameHeader::parse(&b[..n]).unwrap(), Some((h, n)));
            for k in 0..n {
                assert_eq!(FrameHeader::parse(&b[..k]).unwrap(), None);
            }
        }
    }

    #[test]
    fn non_minimal_length_is_accepted_and_msb_rejected() {
        let mut f = vec![0x82, 0x80 | 126, 0, 3];
        f.extend_from_slice(&KEY);
        f.extend_from_slice(&[1 ^ 0x11, 2 ^ 0x22, 3 ^ 0x33]);
        assert_eq!(
            decode_all(&f).unwrap(),
            vec![Event::Message(Message::Binary(Bytes::from_static(&[
                1, 2, 3
            ])))]
        );
        let f = [0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(decode_all(&f).unwrap_err().code, CloseCode::PROTOCOL);
    }

    #[test]
    fn simple_text() {
        let f = client(OpCode::Text, true, b"Hello");
        assert_eq!(
            decode_all(&f).unwrap(),
            vec![Event::Message(Message::text("Hello"))]
        );
    }

    #[test]
    fn fragmented_with_ping() {
        let mut s = client(OpCode::Text, false, b"Hel");
        s.extend(client(OpCode::Ping, true, b"p"));
        s.extend(client(OpCode::Continuation, false, b""));
        s.extend(client(OpCode::Continuation, true, b"lo"));
        assert_eq!(
            decode_all(&s).unwrap(),
            vec![
                Event::Ping(Bytes::from_static(b"p")),
                Event::Message(Message::text("Hello"))
            ]
        );
    }

    #[test]
    fn rule_violations() {
        let code = |b: &[u8]| decode_all(b).unwrap_err().code;
        let mut unmasked = Vec::new();
        Frame::new(OpCode::Text, Bytes::from_static(b"x")).encode_into(&mut unmasked);
        assert_eq!(code(&unmasked), CloseCode::PROTOCOL);
        let mut rsv = client(OpCode::Text, true, b"x");
        rsv[0] |= 0x40;
        assert_eq!(code(&rsv), CloseCode::PROTOCOL);
        for op in [3u8, 7, 0xb, 0xf] {
            let mut r = client(OpCode::Text, true, b"x");
            r[0] = 0x80 | op;
            assert_eq!(code(&r), CloseCode::PROTOCOL);
        }
        assert_eq!(code(&client(OpCode::Ping, false, b"")), CloseCode::PROTOCOL);
        assert_eq!(
            code(&client(OpCode::Ping, true, &[0; 126])),
            CloseCode::PROTOCOL
        );
        assert_eq!(
            code(&client(OpCode::Continuation, true, b"x")),
            CloseCode::PROTOCOL
        );
        let mut s = client(OpCode::Binary, false, b"x");
        s.extend(client(OpCode::Text, true, b"x"));
        assert_eq!(code(&s), CloseCode::PROTOCOL);
        assert_eq!(
            code(&client(OpCode::Text, true, &[0xff])),
            CloseCode::INVALID_DATA
        );
        assert_eq!(
            code(&client(OpCode::Close, true, &[3])),
            CloseCode::PROTOCOL
        );
        assert_eq!(
            code(&client(OpCode::Close, true, &[3, 0xed])),
            CloseCode::PROTOCOL
        );
        assert_eq!(
            code(&client(OpCode::Close, true, &[3, 0xe8, 0xff])),
            CloseCode::INVALID_DATA
        );
    }

    #[test]
    fn close_codes() {
        for c in 0..6000u16 {
            let f = client(OpCode::Close, true, &c.to_be_bytes());
            let ok = decode_all(&f).is_ok();
            assert_eq!(ok, CloseCode(c).is_valid_on_wire(), "{c}");
        }
        assert!(CloseCode(1000).is_valid_on_wire() && CloseCode(1014).is_valid_on_wire());
        for bad in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }

    #[test]
    fn size_limits() {
        let mut d = Decoder::new(10, 10);
        let mut buf = BytesMut::from(&client(OpCode::Binary, true, &[0; 11])[..]);
        assert_eq!(d.decode(&mut buf).unwrap_err().code, CloseCode::TOO_BIG);
        let mut d = Decoder::new(10, 10);
        let mut s = client(OpCode::Binary, false, &[0; 6]);
        s.extend(client(OpCode::Continuation, true, &[0; 6]));
        let mut buf = BytesMut::from(&s[..]);
        assert_eq!(d.decode(&mut buf).unwrap_err().code, CloseCode::TOO_BIG);
    }

    #[test]
    fn utf8_fails_before_frame_complete() {
        let f = client(OpCode::Text, true, &[b'a', b'b', 0xff, b'c', b'd', b'e']);
        let mut d = Decoder::new(100, 100);
        // Header (6 bytes) + 3 payload bytes: the invalid byte is in.
        let mut buf = BytesMut::from(&f[..9]);
        assert_eq!(
            d.decode(&mut buf).unwrap_err().code,
            CloseCode::INVALID_DATA
        );
    }

    #[test]
    fn many_fragments() {
        let mut s = client(OpCode::Binary, false, b"");
        for i in 0..5000u32 {
            s.extend(client(OpCode::Continuation, false, &[(i % 256) as u8]));
        }
        s.extend(client(OpCode::Continuation, true, b""));
        let ev = decode_all(&s).unwrap();
        match &ev[..] {
            [Event::Message(Message::Binary(b))] => assert_eq!(b.len(), 5000),
            other => panic!("{other:?}"),
        }
    }
}

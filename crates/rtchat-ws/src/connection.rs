//! [`WebSocket`]: a server-side connection over an already upgraded stream.
//!
//! Design notes:
//! * All protocol state (partial frames, partially written frames, queued
//!   control replies, timers) lives in the struct and is driven from
//!   poll functions, so dropping a [`recv`](WebSocket::recv) future (e.g. in
//!   `tokio::select!`) never loses or corrupts data.
//! * Writes go straight to the socket: at most one data frame in flight plus
//!   one pending pong/ping/close, so a peer that stops reading cannot make the
//!   server buffer without bound; `write_timeout` then fails the connection.
//! * Idle connections keep no read buffer: while nothing is in progress the
//!   socket is read into a stack buffer and heap memory is taken only once
//!   bytes arrive. A drained small buffer is kept between messages (so a busy
//!   peer does not cost an allocation per message) until the connection goes
//!   quiet (a keepalive ping was due); large buffers are released as soon as
//!   they are drained.
//! * The read buffer grows with the bytes that actually arrive, never with a
//!   frame's declared length: each step at most quadruples what is buffered,
//!   so a peer that declares a 1 MiB frame and sends a few bytes costs a few
//!   KiB (see `reserve_read`).

use bytes::{Bytes, BytesMut};
use std::future::{poll_fn, Future};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{sleep, sleep_until, Instant, Sleep};

use crate::config::Config;
use crate::deflate::{deflate_frame, Deflate, SharedMessage};
use crate::error::{Error, TimeoutKind};
use crate::frame::{CloseCode, Decoder, EncodedFrame, Event, OpCode, ProtocolError};
use crate::message::{CloseFrame, Message, Utf8Bytes};

/// Read buffer size while nothing is in progress.
const IDLE_READ: usize = 512;
/// Read size while data keeps arriving (previous read filled the buffer).
const BUSY_READ: usize = 16 * 1024;
/// Minimum read size while a frame is in progress.
const ACTIVE_READ: usize = 4096;
/// While a frame is in progress, each growth of the read buffer makes it at
/// most this many times the bytes of the frame that have arrived (at most
/// about twice that in the step that takes the rest of the frame).
const GROWTH: usize = 4;
/// An empty read buffer larger than this is released after each message.
const KEEP_CAPACITY: usize = 2048;
/// Frames up to this size are coalesced (header + payload) into one write
/// when the stream has no vectored writes.
const COALESCE: usize = 256;

/// Slices one vectored write of [`WebSocket::send_encoded_batch`] may carry (a
/// head and a payload per frame).
pub const BATCH_SLICES: usize = 64;

struct OutFrame {
    frame: EncodedFrame,
    written: usize,
}

struct Closing {
    /// What `recv` returns once the close completes.
    result: Option<Result<Message, Error>>,
    /// We sent the first close: a timeout is an error for `close()`.
    initiated: bool,
    /// Read (and discard) until the peer's close frame or EOF.
    wait_peer_close: bool,
    /// After shutting down, read until EOF so the peer sees our close
    /// before the socket is dropped (avoids RST eating our close frame).
    drain: bool,
    shutdown_done: bool,
    deadline: Pin<Box<Sleep>>,
}

enum Phase {
    Open,
    Closing(Box<Closing>),
    Closed,
}

enum Keepalive {
    PingQueued,
    Dead,
}

/// A server-role WebSocket connection over an upgraded byte stream.
///
/// Create it with [`WebSocket::new`] from an already upgraded stream (e.g.
/// `TokioIo<hyper::upgrade::Upgraded>`), or through
/// [`accept`](crate::handshake::accept) which also performs the HTTP handshake.
pub struct WebSocket<S> {
    stream: S,
    /// Shared: every connection of a server has the same settings, and a copy of them
    /// (about 120 bytes) would be most of what an idle connection's struct adds.
    config: Arc<Config>,
    rbuf: BytesMut,
    decoder: Decoder,
    out: Option<OutFrame>,
    /// The payload of the latest ping to answer (boxed: peers rarely ping, and
    /// this keeps every idle connection smaller).
    pending_pong: Option<Box<Bytes>>,
    /// A keepalive ping (empty payload) is queued.
    pending_ping: bool,
    /// Boxed: needed once per connection, so it does not widen every idle one.
    pending_close: Option<Box<EncodedFrame>>,
    close_sent: bool,
    needs_flush: bool,
    phase: Phase,
    /// The last read filled the whole buffer: more data is likely queued,
    /// so read in bigger chunks until the socket runs dry.
    busy: bool,
    /// No data message since the last keepalive ping was due: the connection
    /// is idle, so a drained read buffer is released instead of kept.
    quiet: bool,
    /// When the last bytes arrived, or, once `pinged`, when the keepalive
    /// ping was queued (one field for both keeps every connection smaller).
    keepalive_from: Instant,
    /// A keepalive ping was sent and nothing has arrived since.
    pinged: bool,
    timer: Option<Pin<Box<Sleep>>>,
    /// permessage-deflate, when agreed in the handshake.
    deflate: Option<Deflate>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("buffered", &self.rbuf.len())
            .field("close_sent", &self.close_sent)
            .field(
                "phase",
                &match self.phase {
                    Phase::Open => "open",
                    Phase::Closing(_) => "closing",
                    Phase::Closed => "closed",
                },
            )
            .finish()
    }
}

/// Reads into the spare capacity of `buf` (which must have some).
fn poll_read_buf<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    let spare = buf.spare_capacity_mut();
    let ptr = spare.as_ptr() as *const u8;
    let mut rb = ReadBuf::uninit(spare);
    ready!(Pin::new(stream).poll_read(cx, &mut rb))?;
    let filled = rb.filled();
    if filled.as_ptr() != ptr {
        return Poll::Ready(Err(io::Error::other("reader swapped the read buffer")));
    }
    let n = filled.len();
    // SAFETY: `ReadBuf` guarantees the first `n` bytes of the spare capacity
    // (same allocation, checked above) were initialized by the reader.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a stream on which the 101 response has already been sent. `config` is a
    /// [`Config`] or an `Arc<Config>` shared by many connections.
    pub fn new(stream: S, config: impl Into<Arc<Config>>) -> Self {
        Self::from_parts(stream, config, BytesMut::new())
    }

    /// Like [`new`](Self::new), with bytes already read past the handshake
    /// (they are decoded before anything is read from the stream).
    pub fn from_parts(stream: S, config: impl Into<Arc<Config>>, read_buf: BytesMut) -> Self {
        let config = config.into();
        let decoder = Decoder::new(config.max_message_size, config.max_frame_size);
        WebSocket {
            stream,
            config,
            rbuf: read_buf,
            decoder,
            out: None,
            pending_pong: None,
            pending_ping: false,
            pending_close: None,
            close_sent: false,
            needs_flush: false,
            phase: Phase::Open,
            busy: false,
            quiet: false,
            keepalive_from: Instant::now(),
            pinged: false,
            timer: None,
            deflate: None,
        }
    }

    /// Turns on permessage-deflate as agreed in the handshake (see
    /// [`deflate::negotiate`](crate::deflate::negotiate); [`accept`](crate::accept) does
    /// this itself). Call before anything is received.
    pub fn with_deflate(mut self, deflate: Option<Deflate>) -> Self {
        self.decoder.set_deflate(deflate.as_ref());
        self.deflate = deflate;
        self
    }

    /// The permessage-deflate parameters agreed with this peer, if any.
    pub fn deflate(&self) -> Option<&Deflate> {
        self.deflate.as_ref()
    }

    /// The frame of `message` for this connection: compressed (shared with every connection
    /// that agreed on the same window) when permessage-deflate is on and the message reaches
    /// the threshold, plain otherwise. Send it with [`send_encoded`](Self::send_encoded) or
    /// [`send_encoded_batch`](Self::send_encoded_batch).
    pub fn frame_for(&self, message: &SharedMessage) -> EncodedFrame {
        message.frame_for(self.deflate.as_ref())
    }

    /// Whether this connection holds an inflate stream of its own (permessage-deflate with
    /// client context takeover, after the first compressed message).
    pub fn holds_inflate_context(&self) -> bool {
        self.decoder.holds_inflate_context()
    }

    /// A data frame for this connection alone, compressed if agreed and worth it.
    fn data_frame(&self, frame: EncodedFrame) -> EncodedFrame {
        match &self.deflate {
            Some(d) if frame.payload().len() >= d.threshold() => {
                deflate_frame(&frame, d.server_window_bits(), d.level()).unwrap_or(frame)
            }
            _ => frame,
        }
    }

    /// The connection's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The underlying stream (e.g. to read the peer address).
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// True once the connection is fully closed (after a close handshake,
    /// a failure or a timeout).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Receives the next data message. Pings are answered, pongs ignored,
    /// and the close handshake is completed automatically.
    ///
    /// Cancellation-safe: dropping the future loses nothing; partial frames,
    /// queued pongs and half-written frames stay in `self` and are continued
    /// by the next `recv`/`send`.
    ///
    /// Returns `Ok(Message::Close(_))` once when the peer closes cleanly, then
    /// `Err(Error::Closed)`. Protocol violations return an error after the
    /// matching close frame (1002/1007/1009) has been sent.
    pub async fn recv(&mut self) -> Result<Message, Error> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll form of [`recv`](Self::recv) (for manual `Stream` impls).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        loop {
            match self.phase {
                Phase::Open => {}
                Phase::Closed => return Poll::Ready(Err(Error::Closed)),
                Phase::Closing(_) => return self.poll_closing(cx),
            }
            // Make progress on queued writes without blocking reads on them.
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                return Poll::Ready(Err(self.fail_io(e)));
            }
            match self.decoder.decode(&mut self.rbuf) {
                Err(e) => {
                    self.fail_protocol(e);
                    continue;
                }
                Ok(Some(Event::Message(m))) => {
                    self.quiet = false;
                    self.release_idle_buffer();
                    return Poll::Ready(Ok(m));
                }
                Ok(Some(Event::Ping(p))) => {
                    if !self.close_sent {
                        // Only the most recent ping needs an answer (§5.5.3).
                        self.pending_pong = Some(Box::new(p));
                    }
                    continue;
                }
                Ok(Some(Event::Pong(_))) => continue,
                Ok(Some(Event::Close(frame))) => {
                    self.on_peer_close(frame);
                    continue;
                }
                Ok(None) => {}
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    self.phase = Phase::Closed;
                    return Poll::Ready(Err(Error::ConnectionLost));
                }
                Poll::Ready(Ok(_)) => {
                    self.keepalive_from = Instant::now();
                    self.pinged = false;
                    continue;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.fail_io(e))),
                Poll::Pending => {
                    // Going idle: don't park an empty buffer that is large, too
                    // small to be read into again, or on a quiet connection.
                    self.busy = false;
                    let cap = self.rbuf.capacity();
                    if self.rbuf.is_empty()
                        && self.decoder.is_idle()
                        && (self.quiet || !(IDLE_READ / 2..=KEEP_CAPACITY).contains(&cap))
                    {
                        self.rbuf = BytesMut::new();
                    }
                }
            }
            match self.poll_keepalive(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Keepalive::PingQueued) => continue,
                Poll::Ready(Keepalive::Dead) => {
                    tracing::debug!("websocket peer did not answer keepalive ping");
                    // Best effort, never blocking: a close 1011 unless a
                    // frame is half written (appending would garble it).
                    let mid_frame = self.out.as_ref().is_some_and(|o| o.written > 0);
                    if !self.close_sent && !mid_frame {
                        self.out = None;
                        self.pending_pong = None;
                        self.pending_ping = false;
                        self.pending_close = Some(Box::new(EncodedFrame::close(
                            CloseCode::INTERNAL,
                            "keepalive timeout",
                        )));
                        let _ = self.poll_write_out(cx);
                        let _ = Pin::new(&mut self.stream).poll_shutdown(cx);
                    }
                    self.phase = Phase::Closed;
                    return Poll::Ready(Err(Error::Timeout(TimeoutKind::DeadPeer)));
                }
            }
        }
    }

    /// Sends a text message. `payload` must be UTF-8 (not re-validated;
    /// debug builds assert). Never copies the payload, unless it is compressed
    /// (permessage-deflate agreed and the message reaches the threshold).
    pub async fn send_text(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let frame = self.data_frame(EncodedFrame::text(payload));
        self.send_encoded(&frame).await
    }

    /// Sends a binary message (compressed like [`send_text`](Self::send_text)).
    pub async fn send_binary(&mut self, payload: impl Into<Bytes>) -> Result<(), Error> {
        let frame = self.data_frame(EncodedFrame::binary(payload));
        self.send_encoded(&frame).await
    }

    /// Sends a ping (payload truncated to 125 bytes); the pong is swallowed
    /// by `recv`.
    pub async fn send_ping(&mut self, payload: Bytes) -> Result<(), Error> {
        self.send_encoded(&EncodedFrame::ping(payload)).await
    }

    /// Sends a message; `Message::Close` performs [`close`](Self::close).
    pub async fn send(&mut self, msg: Message) -> Result<(), Error> {
        match msg {
            Message::Text(t) => {
                let frame = self.data_frame(EncodedFrame::new(OpCode::Text, t.into_bytes()));
                self.send_encoded(&frame).await
            }
            Message::Binary(b) => self.send_binary(b).await,
            Message::Close(Some(CloseFrame { code, reason })) => self.close(code, &reason).await,
            Message::Close(None) => self.close(CloseCode::NORMAL, "").await,
        }
    }

    /// Sends a pre-encoded frame (see [`EncodedFrame`]): the way to fan one
    /// message out to many connections with a single encoding and no copies.
    ///
    /// Waits for any earlier partially written frame first. Fails with
    /// [`Error::Timeout`] if the peer does not read for `write_timeout` (the
    /// connection is then closed). If the future is dropped after writing
    /// started, the frame is completed by the next `send`/`recv`, so the
    /// stream is never left with half a frame.
    pub async fn send_encoded(&mut self, frame: &EncodedFrame) -> Result<(), Error> {
        if self.close_sent || !matches!(self.phase, Phase::Open) {
            return Err(Error::Closed);
        }
        // Queued (a refcount clone) once earlier output is written; no owned copy is kept
        // meanwhile, so this future stays small.
        let mut queued = false;
        let limit = self.config.write_timeout;
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        let r = poll_fn(|cx| loop {
            match self.poll_write_out(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                Poll::Pending => {
                    if let Some(d) = limit {
                        let t = timer.get_or_insert_with(|| Box::pin(sleep(d)));
                        if t.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Err(Error::Timeout(TimeoutKind::Write)));
                        }
                    }
                    return Poll::Pending;
                }
            }
            if std::mem::replace(&mut queued, true) {
                return Poll::Ready(Ok(()));
            }
            self.out = Some(OutFrame {
                frame: frame.clone(),
                written: 0,
            });
        })
        .await;
        if r.is_err() {
            self.out = None;
            self.phase = Phase::Closed;
        }
        r
    }

    /// Sends several pre-encoded frames, in order, with as few writes as the
    /// stream allows (vectored writes of up to [`BATCH_SLICES`] slices): a
    /// connection that has fallen behind catches up in one system call instead
    /// of one per frame.
    ///
    /// Same guarantees as [`send_encoded`](Self::send_encoded): the write
    /// timeout applies, and if the future is dropped, a frame already started
    /// is completed by the next `send`/`recv` while frames not yet started are
    /// not sent — the stream never carries half a frame.
    pub async fn send_encoded_batch(&mut self, frames: &[EncodedFrame]) -> Result<(), Error> {
        if self.close_sent || !matches!(self.phase, Phase::Open) {
            return Err(Error::Closed);
        }
        // Frames before `next` are written or handed to `self.out`.
        let mut next = 0;
        let limit = self.config.write_timeout;
        let mut timer: Option<Pin<Box<Sleep>>> = None;
        let r = poll_fn(|cx| {
            let mut blocked = |cx: &mut Context<'_>| {
                if let Some(d) = limit {
                    let t = timer.get_or_insert_with(|| Box::pin(sleep(d)));
                    if t.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(Error::Timeout(TimeoutKind::Write)));
                    }
                }
                Poll::Pending
            };
            loop {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                    Poll::Pending => return blocked(cx),
                }
                if next == frames.len() {
                    return Poll::Ready(Ok(()));
                }
                let mut bufs = [IoSlice::new(&[]); BATCH_SLICES];
                let mut used = 0;
                for frame in &frames[next..] {
                    if used + 2 > BATCH_SLICES {
                        break;
                    }
                    bufs[used] = IoSlice::new(frame.head());
                    used += 1;
                    if !frame.payload().is_empty() {
                        bufs[used] = IoSlice::new(frame.payload());
                        used += 1;
                    }
                }
                let mut n = match Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs[..used])
                {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(Error::Io(io::ErrorKind::WriteZero.into())))
                    }
                    Poll::Ready(Ok(n)) => n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                    Poll::Pending => return blocked(cx),
                };
                self.needs_flush = true;
                while n > 0 {
                    let frame = &frames[next];
                    next += 1;
                    if n < frame.wire_len() {
                        // Started but not finished: the writer completes it.
                        self.out = Some(OutFrame {
                            frame: frame.clone(),
                            written: n,
                        });
                        break;
                    }
                    n -= frame.wire_len();
                }
            }
        })
        .await;
        if r.is_err() {
            self.out = None;
            self.phase = Phase::Closed;
        }
        r
    }

    /// Starts (or continues) the closing handshake: sends a close frame with
    /// `code`/`reason`, waits for the peer's close (discarding data) up to
    /// `close_timeout`, then shuts the stream down. Returns `Ok(())` if the
    /// connection was already closed.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), Error> {
        match self.phase {
            Phase::Closed => return Ok(()),
            Phase::Closing(_) => {}
            Phase::Open => {
                if !self.close_sent {
                    self.pending_close = Some(Box::new(EncodedFrame::close(code, reason)));
                }
                self.phase = Phase::Closing(Box::new(Closing {
                    result: Some(Ok(Message::Close(Some(CloseFrame {
                        code,
                        reason: Utf8Bytes::from(reason),
                    })))),
                    initiated: true,
                    wait_peer_close: true,
                    drain: false,
                    shutdown_done: false,
                    deadline: Box::pin(sleep(self.config.close_timeout)),
                }));
            }
        }
        match poll_fn(|cx| self.poll_recv(cx)).await {
            Ok(_) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn fail_io(&mut self, e: io::Error) -> Error {
        self.phase = Phase::Closed;
        self.out = None;
        Error::Io(e)
    }

    fn start_closing(&mut self, close: EncodedFrame, result: Result<Message, Error>, drain: bool) {
        if !self.close_sent {
            self.pending_close = Some(Box::new(close));
        }
        self.phase = Phase::Closing(Box::new(Closing {
            result: Some(result),
            initiated: false,
            wait_peer_close: false,
            drain,
            shutdown_done: false,
            deadline: Box::pin(sleep(self.config.close_timeout)),
        }));
    }

    fn fail_protocol(&mut self, e: ProtocolError) {
        tracing::debug!(
            code = e.code.0,
            reason = e.reason,
            "failing websocket connection"
        );
        self.rbuf = BytesMut::new();
        self.start_closing(EncodedFrame::close(e.code, e.reason), Err(e.into()), true);
    }

    fn on_peer_close(&mut self, frame: Option<CloseFrame>) {
        let echo = match &frame {
            Some(f) => EncodedFrame::close(f.code, ""),
            None => EncodedFrame::close_empty(),
        };
        self.rbuf = BytesMut::new();
        self.start_closing(echo, Ok(Message::Close(frame)), false);
    }

    fn poll_closing(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Error>> {
        let Phase::Closing(mut c) = std::mem::replace(&mut self.phase, Phase::Closed) else {
            return Poll::Ready(Err(Error::Closed));
        };
        let r = self.poll_closing_inner(&mut c, cx);
        if r.is_pending() {
            self.phase = Phase::Closing(c);
        }
        r
    }

    fn poll_closing_inner(
        &mut self,
        c: &mut Closing,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Message, Error>> {
        let finish = |c: &mut Closing| Poll::Ready(c.result.take().unwrap_or(Err(Error::Closed)));
        if c.deadline.as_mut().poll(cx).is_ready() {
            if c.initiated {
                return Poll::Ready(Err(Error::Timeout(TimeoutKind::Close)));
            }
            return finish(c);
        }
        match self.poll_write_out(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(_)) => return finish(c),
            Poll::Ready(Ok(())) => {}
        }
        while c.wait_peer_close {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(Event::Close(_))) | Err(_) => {
                    c.wait_peer_close = false;
                    break;
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
            }
            self.reserve_read();
            match poll_read_buf(&mut self.stream, cx, &mut self.rbuf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => c.wait_peer_close = false,
                Poll::Ready(Ok(_)) => {}
            }
        }
        if !c.shutdown_done {
            ready!(Pin::new(&mut self.stream).poll_shutdown(cx)).ok();
            c.shutdown_done = true;
        }
        while c.drain {
            self.rbuf.clear();
            if self.rbuf.capacity() < IDLE_READ {
                self.rbuf = BytesMut::with_capacity(IDLE_READ);
            }
            match ready!(poll_read_buf(&mut self.stream, cx, &mut self.rbuf)) {
                Ok(0) | Err(_) => c.drain = false,
                Ok(_) => {}
            }
        }
        self.rbuf = BytesMut::new();
        finish(c)
    }

    /// Writes the in-flight frame, then queued control frames, then flushes.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(o) = self.out.as_mut() else {
                if let Some(p) = self.pending_pong.take() {
                    if !self.close_sent {
                        self.out = Some(OutFrame {
                            frame: EncodedFrame::pong(*p),
                            written: 0,
                        });
                    }
                    continue;
                }
                if std::mem::take(&mut self.pending_ping) {
                    if !self.close_sent {
                        self.out = Some(OutFrame {
                            frame: EncodedFrame::ping(Bytes::new()),
                            written: 0,
                        });
                    }
                    continue;
                }
                if let Some(c) = self.pending_close.take() {
                    if !self.close_sent {
                        self.close_sent = true;
                        self.out = Some(OutFrame {
                            frame: *c,
                            written: 0,
                        });
                    }
                    continue;
                }
                if self.needs_flush {
                    ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
                    self.needs_flush = false;
                }
                return Poll::Ready(Ok(()));
            };
            let head = o.frame.head();
            let payload = o.frame.payload();
            let hl = head.len();
            let n = if o.written < hl {
                let rest_head = &head[o.written..];
                if payload.is_empty() {
                    ready!(Pin::new(&mut self.stream).poll_write(cx, rest_head))?
                } else if self.stream.is_write_vectored()
                    || rest_head.len() + payload.len() > COALESCE
                {
                    let bufs = [IoSlice::new(rest_head), IoSlice::new(payload)];
                    ready!(Pin::new(&mut self.stream).poll_write_vectored(cx, &bufs))?
                } else {
                    let mut tmp = [0u8; COALESCE];
                    let total = rest_head.len() + payload.len();
                    tmp[..rest_head.len()].copy_from_slice(rest_head);
                    tmp[rest_head.len()..total].copy_from_slice(payload);
                    ready!(Pin::new(&mut self.stream).poll_write(cx, &tmp[..total]))?
                }
            } else {
                ready!(Pin::new(&mut self.stream).poll_write(cx, &payload[o.written - hl..]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            o.written += n;
            if o.written >= o.frame.wire_len() {
                self.out = None;
                self.needs_flush = true;
            }
        }
    }

    fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Poll<Keepalive> {
        let Some(interval) = self.config.ping_interval else {
            return Poll::Pending;
        };
        let dead = self.pinged;
        let deadline = self.keepalive_from
            + if dead {
                self.config.pong_timeout
            } else {
                interval
            };
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        ready!(timer.as_mut().poll(cx));
        if dead {
            return Poll::Ready(Keepalive::Dead);
        }
        if !self.close_sent {
            self.pending_ping = true;
        }
        self.quiet = true;
        self.pinged = true;
        self.keepalive_from = Instant::now();
        Poll::Ready(Keepalive::PingQueued)
    }

    /// Reads more bytes into `rbuf` and updates `busy`. With nothing in
    /// progress and no usable buffer, reads onto the stack and allocates only
    /// if bytes arrived, so a connection parked here holds no read buffer.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if !self.busy && self.rbuf.is_empty() && self.decoder.is_idle() && spare < IDLE_READ / 2 {
            let mut tmp = [MaybeUninit::<u8>::uninit(); IDLE_READ];
            let mut rb = ReadBuf::uninit(&mut tmp);
            ready!(Pin::new(&mut self.stream).poll_read(cx, &mut rb))?;
            let n = rb.filled().len();
            if n > 0 {
                // A full stack buffer means more is likely queued: read the
                // rest in bigger chunks, like `reserve_read` would.
                self.busy = n == IDLE_READ;
                let mut buf =
                    BytesMut::with_capacity(if self.busy { BUSY_READ } else { IDLE_READ });
                buf.extend_from_slice(rb.filled());
                self.rbuf = buf;
            }
            return Poll::Ready(Ok(n));
        }
        self.reserve_read();
        let n = ready!(poll_read_buf(&mut self.stream, cx, &mut self.rbuf))?;
        self.busy = self.rbuf.len() == self.rbuf.capacity();
        Poll::Ready(Ok(n))
    }

    fn reserve_read(&mut self) {
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if self.rbuf.is_empty() && self.decoder.is_idle() {
            let want = if self.busy { BUSY_READ } else { IDLE_READ };
            if spare < want / 2 {
                // Fresh allocation: `reserve` on a drained buffer could grow
                // to its previous (large) size.
                self.rbuf = BytesMut::with_capacity(want);
            }
            return;
        }
        // A frame's declared length is only a claim: the buffer grows with the
        // bytes that actually arrived, never to the declared size up front (a
        // peer that declares a 1 MiB frame and sends two bytes must not cost
        // 1 MiB). Each step adds room for at most `GROWTH - 1` times what is
        // buffered (at least ACTIVE_READ), so a large frame that does arrive
        // takes a few steps (`reserve` reallocates, in place when the
        // allocator can, and copies a fraction of the frame otherwise) and
        // still ends up contiguous, handed out without copying. When what
        // would be left after a step is less than the step, the step takes it
        // all rather than leave a small tail that costs one more reallocation.
        let len = self.rbuf.len();
        let remaining = self.decoder.frame_remaining(len);
        let mut room = remaining.min(((GROWTH - 1) * len).max(ACTIVE_READ));
        if remaining - room < room {
            room = remaining;
        }
        if spare < ACTIVE_READ || room > spare {
            self.rbuf.reserve(room.max(ACTIVE_READ));
        }
    }

    fn release_idle_buffer(&mut self) {
        if !self.busy && self.rbuf.is_empty() && self.rbuf.capacity() > KEEP_CAPACITY {
            self.rbuf = BytesMut::new();
        }
    }
}

/// Exposed for tests measuring per-connection overhead.
#[doc(hidden)]
pub fn buffered_capacity<S>(ws: &WebSocket<S>) -> usize {
    ws.rbuf.capacity()
}

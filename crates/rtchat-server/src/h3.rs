//! HTTP/3: a QUIC listener (`quinn`) on the HTTPS port's number over UDP, speaking HTTP/3
//! (`h3` over `h3-quinn`) with the HTTPS certificate, and a small adapter that hands every
//! request to the same axum router the TCP listeners serve. Nothing here knows a handler:
//! pages, `/poll` (long polls included), `/msgs`, SSE and posts work through it unchanged.
//!
//! The TCP listeners' rules hold here too (see [`Timeouts`] and [`crate::admission`]):
//! - a QUIC connection counts against `--max-connections` and `--max-connections-per-ip`
//!   like a TCP one; a client address is first validated with a QUIC Retry (so a spoofed
//!   source address can take no place), and a connection beyond the caps is refused
//!   (`CONNECTION_REFUSED`, as the TLS port closes them) before its handshake;
//! - the handshake (QUIC + TLS and the HTTP/3 SETTINGS) must finish within
//!   `--tls-handshake-timeout`;
//! - a request's HEADERS must arrive within `--header-timeout` of its stream opening;
//! - a connection with no open request for `--idle-timeout` gets `GOAWAY` and is closed;
//! - QUIC keepalive: a silent connection is pinged every `--h2-keepalive-interval` and closed
//!   when nothing arrives for `--h2-keepalive-interval` + `--h2-keepalive-timeout`;
//! - a body is read within `--body-timeout` (by the handlers, as on TCP);
//! - a response write that cannot progress for `--write-timeout` (the client grants no flow
//!   control) resets that stream;
//! - `--h2-max-streams` is the number of concurrent request streams a client may open.
//!
//! Memory per connection is bounded by QUIC flow control: `--h3-stream-window` and
//! `--h3-connection-window` for what a client may send, `--h3-send-window` for what rtchat
//! buffers unacknowledged.
//!
//! On shutdown the endpoint stops accepting, every connection gets `GOAWAY`, requests in
//! flight finish (parked long polls answer and streams end, each at its deadline in the
//! close window, see [`crate::drain`]), and connections close once their requests are done,
//! all within the TCP listeners' bound (the close window plus [`crate::drain::GRACE`]).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::admission::Admission;
use crate::client_addr::Peer;
use crate::config::{Congestion, H3Listen, Timeouts};
use crate::drain::Drain;
use crate::metrics::HttpVersion;

/// Largest request header section accepted (HTTP/2's default header list size in hyper is
/// 16 KiB too); larger gets `431`.
const MAX_FIELD_SECTION: u64 = 16 * 1024;
/// Unidirectional streams a client may open: HTTP/3 needs three (control, QPACK encoder and
/// decoder); the rest is room for reserved (grease) stream types.
const MAX_UNI_STREAMS: u32 = 8;
/// QUIC handshakes waiting to be accepted; more are refused by quinn itself.
const MAX_INCOMING: usize = 4096;
/// H3_NO_ERROR.
const H3_NO_ERROR: u32 = 0x100;
/// H3_REQUEST_CANCELLED: the reset of a stream whose client stopped reading.
const H3_REQUEST_CANCELLED: u64 = 0x10c;

/// Settings of the HTTP/3 listener.
#[derive(Debug, Clone, Copy)]
pub struct H3Settings {
    /// Concurrent request streams allowed on one connection (`--h2-max-streams`).
    pub max_streams: u32,
    pub timeouts: Timeouts,
    /// Flow-control windows.
    pub listen: H3Listen,
}

/// Opens the QUIC endpoint on `addr` (UDP) with the HTTPS listener's TLS settings, offering
/// ALPN `h3`.
pub fn bind(
    addr: SocketAddr,
    tls: &rustls::ServerConfig,
    settings: H3Settings,
) -> std::io::Result<quinn::Endpoint> {
    let mut tls = tls.clone();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    // No 0-RTT: replayable early requests would be posts too.
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(tls))
        .map_err(|e| std::io::Error::other(format!("TLS settings unusable for QUIC: {e}")))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(settings)));
    config.max_incoming(MAX_INCOMING);
    quinn::Endpoint::server(config, addr)
}

/// QUIC transport limits: flow-control windows, stream counts, keepalive and idle time.
fn transport_config(settings: H3Settings) -> quinn::TransportConfig {
    let t = settings.timeouts;
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(settings.max_streams.into())
        .max_concurrent_uni_streams(MAX_UNI_STREAMS.into())
        .stream_receive_window(settings.listen.stream_window.into())
        .receive_window(settings.listen.connection_window.into())
        .send_window(settings.listen.send_window)
        .keep_alive_interval(Some(t.h2_keepalive_interval));
    match settings.listen.congestion {
        Congestion::Cubic => {}
        Congestion::Bbr => {
            transport
                .congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
        }
        Congestion::NewReno => {
            transport.congestion_controller_factory(Arc::new(
                quinn::congestion::NewRenoConfig::default(),
            ));
        }
    }
    let idle = t.h2_keepalive_interval + t.h2_keepalive_timeout;
    // QUIC encodes the idle timeout in milliseconds up to 2^62; anything from the flags fits.
    transport.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    transport
}

/// Accepts QUIC connections on `endpoint` until `shutdown` fires, then drains them.
pub async fn serve(
    endpoint: quinn::Endpoint,
    app: Router,
    settings: H3Settings,
    admission: Arc<Admission>,
    drain: Drain,
) {
    let shutdown = drain.stop_token().clone();
    let connections = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => incoming,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        // Make the client prove it owns its source address (one round trip, QUIC Retry)
        // before it may count against that address's cap.
        if !incoming.remote_address_validated() && incoming.may_retry() {
            if let Err(e) = incoming.retry() {
                tracing::debug!(error = %e, "QUIC retry failed");
            }
            continue;
        }
        let remote = incoming.remote_address();
        let admitted = match admission.admit(remote.ip()) {
            Ok(admitted) => admitted,
            Err(why) => {
                admission.note_refusal(why);
                incoming.refuse();
                continue;
            }
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let peer = Peer {
                addr: remote,
                tls: true,
            };
            let timeouts = settings.timeouts;
            let handshake = async {
                let conn = incoming.accept()?.await?;
                let h3 = h3::server::builder()
                    .max_field_section_size(MAX_FIELD_SECTION)
                    .build::<_, Bytes>(h3_quinn::Connection::new(conn.clone()))
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>((conn, h3))
            };
            let (conn, h3) = tokio::select! {
                done = tokio::time::timeout(timeouts.tls_handshake, handshake) => match done {
                    Ok(Ok(ready)) => ready,
                    Ok(Err(e)) => return tracing::debug!(error = %e, %peer.addr, "QUIC handshake failed"),
                    Err(_) => return tracing::debug!(%peer.addr, "QUIC handshake not done within --tls-handshake-timeout; closed"),
                },
                () = shutdown.cancelled() => return,
            };
            let _counted = admitted.metrics().connection(HttpVersion::Http3);
            serve_connection(conn, h3, app, peer, timeouts, shutdown).await;
        });
    }
    // No new connections (quinn refuses them from now on); open ones finish.
    endpoint.set_server_config(None);
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::debug!("all HTTP/3 connections closed"),
        () = drain.give_up() => tracing::warn!(open = connections.len(), "HTTP/3 connections still open after the close window (--drain-seconds) and {:?}; closing anyway", crate::drain::GRACE),
    }
    endpoint.close(H3_NO_ERROR.into(), b"server shutting down");
    // Lets the CONNECTION_CLOSE frames go out.
    let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
}

type H3Conn = h3::server::Connection<h3_quinn::Connection, Bytes>;

/// Serves one connection's requests until it ends. Once `shutdown` fires, or no request has
/// been open for `--idle-timeout`, sends `GOAWAY`, lets the requests in flight finish and
/// closes the connection.
async fn serve_connection(
    conn: quinn::Connection,
    mut h3: H3Conn,
    app: Router,
    peer: Peer,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let requests = TaskTracker::new();
    let open = Arc::new(OpenRequests::default());
    let idle = open.clone();
    let idle = idle.idle_for(timeouts.idle);
    tokio::pin!(idle);
    let mut closing = false;
    loop {
        tokio::select! {
            accepted = h3.accept() => match accepted {
                Ok(Some(resolver)) => {
                    let app = app.clone();
                    let guard = open.open();
                    let conn = conn.clone();
                    requests.spawn(async move {
                        let _open = guard;
                        // A request of a connection that is gone ends at once (a parked long
                        // poll, an idle stream): its subscription and place go with it.
                        tokio::select! {
                            () = serve_request(resolver, app, peer, timeouts) => {}
                            _ = conn.closed() => {}
                        }
                    });
                }
                // The client sent GOAWAY and its requests are done.
                Ok(None) => break,
                Err(e) => {
                    // Usually the client closing the connection.
                    tracing::debug!(error = %e, %peer.addr, "HTTP/3 connection ended");
                    break;
                }
            },
            () = shutdown.cancelled(), if !closing => {
                closing = true;
                let _ = h3.shutdown(0).await;
                requests.close();
            }
            () = &mut idle, if !closing => {
                tracing::debug!(%peer.addr, "HTTP/3 connection idle for --idle-timeout; closing");
                closing = true;
                let _ = h3.shutdown(0).await;
                requests.close();
            }
            () = requests.wait(), if closing => {
                // The last answers are queued, not yet acknowledged: give the client a few
                // round trips to receive them (or to close first), then close.
                let linger = (conn.rtt() * 4).max(Duration::from_millis(50));
                let _ = tokio::time::timeout(linger, conn.closed()).await;
                break;
            }
        }
    }
    conn.close(H3_NO_ERROR.into(), b"");
    // Requests of a connection that is gone have nothing to wait for.
    requests.close();
    requests.wait().await;
}

/// Reads one request's head (within `--header-timeout`), runs the router, and writes the
/// answer: head, body frames (each within `--write-timeout`), end of stream.
async fn serve_request(
    resolver: h3::server::RequestResolver<h3_quinn::Connection, Bytes>,
    app: Router,
    peer: Peer,
    timeouts: Timeouts,
) {
    let (req, stream) = match tokio::time::timeout(timeouts.header, resolver.resolve_request())
        .await
    {
        Ok(Ok(resolved)) => resolved,
        // h3 has answered or reset the stream as RFC 9114 says (malformed head, too large).
        Ok(Err(e)) => return tracing::debug!(error = %e, %peer.addr, "bad HTTP/3 request"),
        Err(_) => {
            return tracing::debug!(%peer.addr, "HTTP/3 request head not sent within --header-timeout; stream dropped")
        }
    };
    let (mut send, recv) = stream.split();
    let mut req = req.map(|()| RecvBody {
        stream: recv,
        done: false,
    });
    req.extensions_mut().insert(peer);
    let res = match app.oneshot(req).await {
        Ok(res) => res,
        Err(never) => match never {},
    };
    let (parts, mut body) = res.into_parts();
    let head = http::Response::from_parts(parts, ());
    if let Err(e) = send.send_response(head).await {
        return tracing::debug!(error = %e, "HTTP/3 response head not sent");
    }
    let write = timeouts.write;
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; resetting the stream");
                return send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
            }
        };
        let sent = match frame.into_data() {
            Ok(data) if data.is_empty() => continue,
            Ok(data) => tokio::time::timeout(write, send.send_data(data)).await,
            Err(frame) => match frame.into_trailers() {
                Ok(trailers) => tokio::time::timeout(write, send.send_trailers(trailers)).await,
                Err(_) => continue,
            },
        };
        match sent {
            Ok(Ok(())) => {}
            // The client reset the stream or the connection is gone.
            Ok(Err(e)) => return tracing::debug!(error = %e, "HTTP/3 response not sent"),
            Err(_) => {
                tracing::debug!(%peer.addr, "the client read nothing for --write-timeout; resetting the stream");
                return send.stop_stream(h3::error::Code::from(H3_REQUEST_CANCELLED));
            }
        }
    }
    if let Ok(Err(e)) = tokio::time::timeout(write, send.finish()).await {
        tracing::debug!(error = %e, "HTTP/3 response not finished");
    }
}

/// A request body read from an HTTP/3 stream, for the router.
struct RecvBody {
    stream: RequestStream<h3_quinn::RecvStream, Bytes>,
    done: bool,
}

impl hyper::body::Body for RecvBody {
    type Data = Bytes;
    type Error = h3::error::StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(self.stream.poll_recv_data(cx)) {
            Ok(Some(mut data)) => {
                let bytes = data.copy_to_bytes(data.remaining());
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Ok(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Err(e) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The requests open on one HTTP/3 connection, for its idle timeout (the TCP listener
/// counts HTTP/2 streams the same way).
#[derive(Default)]
struct OpenRequests {
    open: AtomicUsize,
    /// Requests opened so far: tells a connection that stayed idle from one that was busy in
    /// between.
    opened: AtomicU64,
    closed: Notify,
}

/// One open request; dropped when its answer is written (or abandoned).
struct OpenRequest(Arc<OpenRequests>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

impl OpenRequests {
    fn open(self: &Arc<Self>) -> OpenRequest {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.opened.fetch_add(1, Ordering::AcqRel);
        OpenRequest(self.clone())
    }

    /// Resolves once no request has been open for `timeout`.
    async fn idle_for(self: Arc<Self>, timeout: Duration) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.load(Ordering::Acquire) > 0 {
                closed.await;
                continue;
            }
            let opened = self.opened.load(Ordering::Acquire);
            tokio::time::sleep_until(Instant::now() + timeout).await;
            if self.open.load(Ordering::Acquire) == 0
                && self.opened.load(Ordering::Acquire) == opened
            {
                return;
            }
        }
    }
}

/// The `Alt-Svc` value that points browsers from HTTPS to HTTP/3 on `port`.
pub fn alt_svc(port: u16) -> http::HeaderValue {
    http::HeaderValue::try_from(format!("h3=\":{port}\"; ma=86400"))
        .expect("a port makes a valid header value")
}

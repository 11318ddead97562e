//! The accept loops: plain HTTP (HTTP/1.1 with upgrades, and HTTP/2 by prior knowledge) and
//! HTTPS (ALPN `h2` or `http/1.1`), and graceful shutdown of every connection.
//!
//! Every phase of a connection is timed (see [`Timeouts`]), every connection is admitted
//! against the caps first (see [`crate::admission`]), and every request carries the
//! connection's [`Peer`] for [`crate::client_addr`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use futures_util::future::Either;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::admission::{Admission, ConnectionSlot};
use crate::client_addr::Peer;
use crate::config::Timeouts;
use crate::drain::Drain;
use crate::metrics::HttpVersion;
use crate::write_stall::StallGuard;

/// Protocol settings shared by both listeners.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// Concurrent streams allowed on one HTTP/2 connection.
    pub h2_max_streams: u32,
    pub timeouts: Timeouts,
}

/// The per-protocol connection builders, made once per listener.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// Only for a plain connection whose first bytes were too few to tell (see [`sniff`]).
    auto: auto::Builder<TokioExecutor>,
    timeouts: Timeouts,
}

impl Builders {
    fn new(settings: HttpSettings) -> Builders {
        let t = settings.timeouts;
        let mut http1 = http1::Builder::new();
        http1.timer(TokioTimer::new()).header_read_timeout(t.header);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        // RFC 8441: WebSockets over HTTP/2 streams (extended CONNECT, `:protocol`).
        http2
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(settings.h2_max_streams)
            .keep_alive_interval(t.h2_keepalive_interval)
            .keep_alive_timeout(t.h2_keepalive_timeout);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(t.header);
        auto.http2()
            .timer(TokioTimer::new())
            .enable_connect_protocol()
            .max_concurrent_streams(settings.h2_max_streams)
            .keep_alive_interval(t.h2_keepalive_interval)
            .keep_alive_timeout(t.h2_keepalive_timeout);
        Builders {
            http1,
            http2,
            auto,
            timeouts: t,
        }
    }
}

/// The HTTP/2 connection preface a prior-knowledge (h2c) client opens with (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
    /// A plain connection that has sent only part of something that may be the h2 preface.
    Undecided,
}

impl Protocol {
    /// How `rtchat_connections` counts it: a plain connection still undecided has sent the
    /// start of the HTTP/2 preface.
    fn version(self) -> HttpVersion {
        match self {
            Protocol::Http1 => HttpVersion::Http1,
            Protocol::Http2 | Protocol::Undecided => HttpVersion::Http2,
        }
    }
}

/// Accepts connections on `listener` (over TLS when `tls` is set) until the drain stops
/// accepting, then waits for the open ones: each closes at its own deadline (see
/// [`crate::drain`]); at the end of the close window plus its grace, the rest are dropped.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    settings: HttpSettings,
    admission: Arc<Admission>,
    drain: Drain,
) {
    let shutdown = drain.stop_token().clone();
    let builders = Arc::new(Builders::new(settings));
    let timeouts = settings.timeouts;
    let tls = tls.map(TlsAcceptor::from);
    let connections = TaskTracker::new();
    let mut failures = AcceptFailures::default();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => {
                    failures.recovered();
                    conn
                }
                Err(e) => {
                    failures.failed(&e).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => ConnectionSlot::new(admitted),
            Err(why) => {
                admission.turn_away(stream, why, tls.is_none());
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builders = builders.clone();
        let shutdown = shutdown.clone();
        let peer = Peer {
            addr: peer,
            tls: tls.is_some(),
        };
        let stream = StallGuard::new(stream, timeouts.write);
        match &tls {
            None => {
                connections.spawn(async move {
                    let protocol = tokio::select! {
                        sniffed = tokio::time::timeout(timeouts.sniff, sniff(stream.get_ref())) => match sniffed {
                            Ok(Ok(p)) => p,
                            Ok(Err(e)) => return tracing::debug!(error = %e, "connection failed"),
                            Err(_) => return tracing::debug!(%peer.addr, "sent nothing within --sniff-timeout; closed"),
                        },
                        // A connection that has not said anything yet has nothing to finish.
                        () = shutdown.cancelled() => return,
                    };
                    let _counted = admitted.metrics().connection(protocol.version());
                    let place = (peer, Some(admitted.clone()));
                    serve_connection(stream, protocol, app, place, &builders, shutdown).await
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let handshake = tokio::select! {
                        done = tokio::time::timeout(timeouts.tls_handshake, acceptor.accept(stream)) => done,
                        () = shutdown.cancelled() => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            let protocol = match stream.get_ref().1.alpn_protocol() {
                                Some(b"h2") => Protocol::Http2,
                                _ => Protocol::Http1,
                            };
                            let _counted = admitted.metrics().connection(protocol.version());
                            let place = (peer, Some(admitted.clone()));
                            serve_connection(stream, protocol, app, place, &builders, shutdown)
                                .await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer.addr, "TLS handshake not done within --tls-handshake-timeout; closed"),
                    }
                });
            }
        }
    }
    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::debug!("all connections closed"),
        () = drain.give_up() => tracing::warn!(open = connections.len(), "connections still open after the close window (--drain-seconds) and {:?}; closing anyway", crate::drain::GRACE),
    }
}

/// Failed accepts in a row. Running out of file descriptors (EMFILE, ENFILE) or memory
/// leaves the connection in the backlog and the listener readable, so accepting again at once
/// would spin: back off instead, log the first failure of a burst and the recovery, and keep
/// serving the connections already open.
#[derive(Default)]
struct AcceptFailures {
    in_a_row: u64,
}

impl AcceptFailures {
    async fn failed(&mut self, e: &std::io::Error) {
        let exhausted = matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        );
        if !exhausted {
            // The client gave up between connect and accept (ECONNABORTED...): nothing to fix.
            return tracing::debug!(error = %e, "accept failed");
        }
        self.in_a_row += 1;
        if self.in_a_row == 1 {
            tracing::warn!(error = %e, "cannot accept connections (out of file descriptors or memory?); backing off until some close (see --max-connections)");
        }
        // 10 ms, doubling to at most 1 s.
        let backoff = Duration::from_millis(10 << self.in_a_row.min(7)).min(Duration::from_secs(1));
        tokio::time::sleep(backoff).await;
    }

    fn recovered(&mut self) {
        if self.in_a_row > 0 {
            tracing::warn!(failed = self.in_a_row, "accepting connections again");
            self.in_a_row = 0;
        }
    }
}

/// Tells HTTP/2 by prior knowledge from HTTP/1 on a plain connection by peeking at its first
/// bytes, without consuming them: hyper then reads the request itself, into one buffer.
/// (Reading them here and handing them back, as a generic sniffer must, makes hyper's first
/// read short and its read buffer grow to 16 KiB for every connection.)
async fn sniff(stream: &TcpStream) -> std::io::Result<Protocol> {
    let mut first = [0u8; H2_PREFACE.len()];
    let n = stream.peek(&mut first).await?;
    Ok(if first[..n] != H2_PREFACE[..n] || n == 0 {
        Protocol::Http1
    } else if n == H2_PREFACE.len() {
        Protocol::Http2
    } else {
        Protocol::Undecided
    })
}

/// Serves one connection until it ends; once `shutdown` fires, finishes what is in flight
/// and closes (HTTP/1.1 after the current response, HTTP/2 with GOAWAY). An HTTP/2 connection
/// with no open stream for `--idle-timeout` is closed the same way.
async fn serve_connection<IO>(
    io: IO,
    protocol: Protocol,
    app: Router,
    (peer, place): (Peer, Option<ConnectionSlot>),
    builders: &Builders,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let idle = builders.timeouts.idle;
    // Each connection is boxed on its own, so the task holds only the protocol in use: the
    // three state machines differ a lot in size (HTTP/1.1 is the small common one).
    let result = match protocol {
        Protocol::Http1 => {
            let service = ConnService::new(app, peer, None, place);
            let conn = Box::pin(builders.http1.serve_connection(io, service).with_upgrades());
            drive(conn, &shutdown, std::future::pending(), |c| {
                c.graceful_shutdown()
            })
            .await
            .map_err(Into::into)
        }
        Protocol::Http2 => {
            let streams = Arc::new(OpenStreams::default());
            let service = ConnService::new(app, peer, Some(streams.clone()), None);
            let conn = Box::pin(builders.http2.serve_connection(io, service));
            drive(conn, &shutdown, streams.idle_for(idle), |c| {
                c.graceful_shutdown()
            })
            .await
            .map_err(Into::into)
        }
        Protocol::Undecided => {
            let streams = Arc::new(OpenStreams::default());
            // Possibly HTTP/1.1: requests carry the place, for an upgrade.
            let service = ConnService::new(app, peer, Some(streams.clone()), place);
            let conn = Box::pin(builders.auto.serve_connection_with_upgrades(io, service));
            drive(conn, &shutdown, streams.idle_for(idle), |c| {
                c.graceful_shutdown()
            })
            .await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Polls `conn` to the end, asking it to shut down gracefully when `shutdown` fires or the
/// connection has been `idle` long enough.
async fn drive<C: Future>(
    mut conn: Pin<Box<C>>,
    shutdown: &CancellationToken,
    idle: impl Future<Output = ()>,
    graceful: impl FnOnce(Pin<&mut C>),
) -> C::Output {
    tokio::select! {
        out = conn.as_mut() => return out,
        () = shutdown.cancelled() => graceful(conn.as_mut()),
        () = idle => {
            tracing::debug!("HTTP/2 connection idle for --idle-timeout; closing");
            graceful(conn.as_mut())
        }
    }
    conn.await
}

/// The service of one connection: the router, with the connection's [`Peer`] on every
/// request (and on HTTP/1.1 its place under the caps, which an upgraded WebSocket keeps:
/// [`ConnectionSlot`]) and, on HTTP/2, every request counted in [`OpenStreams`] until its
/// response body ends.
#[derive(Clone)]
struct ConnService {
    app: Router,
    peer: Peer,
    place: Option<ConnectionSlot>,
    streams: Option<Arc<OpenStreams>>,
}

impl ConnService {
    fn new(
        app: Router,
        peer: Peer,
        streams: Option<Arc<OpenStreams>>,
        place: Option<ConnectionSlot>,
    ) -> ConnService {
        ConnService {
            app,
            peer,
            place,
            streams,
        }
    }
}

type RouterFuture = tower::util::Oneshot<Router, Request<Incoming>>;
type CountedFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Either<RouterFuture, CountedFuture>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(self.peer);
        if let Some(place) = &self.place {
            if req.version() == axum::http::Version::HTTP_11 {
                req.extensions_mut().insert(place.clone());
            }
        }
        let answer = self.app.clone().oneshot(req);
        match &self.streams {
            None => Either::Left(answer),
            Some(streams) => {
                let open = streams.open();
                Either::Right(Box::pin(async move {
                    let res = answer.await?;
                    Ok(res.map(|body| Body::new(CountedBody { body, _open: open })))
                }))
            }
        }
    }
}

/// The streams open on one HTTP/2 connection, for its idle timeout.
#[derive(Default)]
struct OpenStreams {
    open: AtomicUsize,
    /// Streams opened so far: tells a connection that stayed idle from one that was busy in
    /// between.
    opened: AtomicU64,
    closed: Notify,
}

/// One open stream; dropped with its response body (or its request, if that ends first).
struct OpenStream(Arc<OpenStreams>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

impl OpenStreams {
    fn open(self: &Arc<Self>) -> OpenStream {
        self.open.fetch_add(1, Ordering::AcqRel);
        self.opened.fetch_add(1, Ordering::AcqRel);
        OpenStream(self.clone())
    }

    /// Resolves once no stream has been open for `timeout`.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open.load(Ordering::Acquire) > 0 {
                closed.await;
                continue;
            }
            let opened = self.opened.load(Ordering::Acquire);
            tokio::time::sleep(timeout).await;
            if self.open.load(Ordering::Acquire) == 0
                && self.opened.load(Ordering::Acquire) == opened
            {
                return;
            }
        }
    }
}

/// A response body that keeps its stream counted as open until it ends or is dropped.
struct CountedBody {
    body: Body,
    _open: OpenStream,
}

impl hyper::body::Body for CountedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// What `sniff` makes of a connection whose client has sent `first`.
    async fn sniffed(first: &[u8]) -> Protocol {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(first).await.unwrap();
        let protocol = sniff(&server).await.unwrap();
        // Peeking consumed nothing: hyper still gets every byte.
        let mut all = vec![0u8; first.len()];
        let n = server.peek(&mut all).await.unwrap();
        assert_eq!(&all[..n], &first[..n]);
        protocol
    }

    /// A prior-knowledge client whose preface arrives in pieces: `sniff` cannot tell yet, and
    /// the connection is still served as HTTP/2 once the rest comes.
    #[tokio::test]
    async fn a_split_h2_preface_is_still_served_as_http2() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        client.write_all(&H2_PREFACE[..5]).await.unwrap();
        let protocol = sniff(&server).await.unwrap();
        assert_eq!(protocol, Protocol::Undecided);
        let app = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let builders = Builders::new(HttpSettings {
            h2_max_streams: 10,
            timeouts: Timeouts::default(),
        });
        let peer = Peer {
            addr: server.peer_addr().unwrap(),
            tls: false,
        };
        let serving = tokio::spawn(async move {
            serve_connection(
                server,
                protocol,
                app,
                (peer, None),
                &builders,
                CancellationToken::new(),
            )
            .await
        });
        client.write_all(&H2_PREFACE[5..]).await.unwrap();
        // An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
        client
            .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
            .await
            .unwrap();
        let mut head = [0u8; 9];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(
            head[3], 4,
            "a SETTINGS frame, not an HTTP/1.1 answer: {head:?}"
        );
        drop(client);
        serving.await.unwrap();
    }

    #[tokio::test]
    async fn sniff_tells_http1_from_the_h2_preface_without_consuming() {
        assert_eq!(sniffed(b"GET /poll HTTP/1.1\r\n").await, Protocol::Http1);
        assert_eq!(sniffed(b"P").await, Protocol::Undecided);
        assert_eq!(sniffed(b"POST /poll HTTP/1.1\r\n").await, Protocol::Http1);
        assert_eq!(sniffed(H2_PREFACE).await, Protocol::Http2);
        assert_eq!(sniffed(&H2_PREFACE[..10]).await, Protocol::Undecided);
    }
}

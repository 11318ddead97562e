//! The accept loops: plain HTTP (HTTP/1.1 with upgrades, and HTTP/2 by prior knowledge) and
//! HTTPS (ALPN `h2` or `http/1.1`), and graceful shutdown of every connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long open connections get to finish once shutdown starts.
const DRAIN: Duration = Duration::from_secs(2);
/// How long a client gets to complete the TLS handshake.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// Protocol settings shared by both listeners.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// Concurrent streams allowed on one HTTP/2 connection.
    pub h2_max_streams: u32,
}

/// The per-protocol connection builders, made once per listener.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    /// Only for a plain connection whose first bytes were too few to tell (see [`sniff`]).
    auto: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(settings: HttpSettings) -> Builders {
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.max_concurrent_streams(settings.h2_max_streams);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http2().max_concurrent_streams(settings.h2_max_streams);
        Builders {
            http1: http1::Builder::new(),
            http2,
            auto,
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

/// Accepts connections on `listener` (over TLS when `tls` is set) until `shutdown` fires,
/// then drains them.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    settings: HttpSettings,
    shutdown: CancellationToken,
) {
    let builders = Arc::new(Builders::new(settings));
    let tls = tls.map(TlsAcceptor::from);
    let connections = TaskTracker::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builders = builders.clone();
        let shutdown = shutdown.clone();
        match &tls {
            None => {
                connections.spawn(async move {
                    let protocol = tokio::select! {
                        sniffed = sniff(&stream) => match sniffed {
                            Ok(p) => p,
                            Err(e) => return tracing::debug!(error = %e, "connection failed"),
                        },
                        // A connection that has not said anything yet has nothing to finish.
                        () = shutdown.cancelled() => return,
                    };
                    serve_connection(stream, protocol, app, &builders, shutdown).await
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    let handshake = tokio::select! {
                        done = tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)) => done,
                        () = shutdown.cancelled() => return,
                    };
                    match handshake {
                        Ok(Ok(stream)) => {
                            let protocol = match stream.get_ref().1.alpn_protocol() {
                                Some(b"h2") => Protocol::Http2,
                                _ => Protocol::Http1,
                            };
                            serve_connection(stream, protocol, app, &builders, shutdown).await
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    connections.close();
    tokio::select! {
        () = connections.wait() => tracing::debug!("all connections closed"),
        () = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after {DRAIN:?}; closing anyway"),
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
/// and closes (HTTP/1.1 after the current response, HTTP/2 with GOAWAY).
async fn serve_connection<IO>(
    io: IO,
    protocol: Protocol,
    app: Router,
    builders: &Builders,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let io = TokioIo::new(io);
    // Each connection is boxed on its own, so the task holds only the protocol in use: the
    // three state machines differ a lot in size (HTTP/1.1 is the small common one).
    let result = match protocol {
        Protocol::Http1 => {
            let conn = Box::pin(builders.http1.serve_connection(io, service).with_upgrades());
            drive(conn, &shutdown, |c| c.graceful_shutdown())
                .await
                .map_err(Into::into)
        }
        Protocol::Http2 => {
            let conn = Box::pin(builders.http2.serve_connection(io, service));
            drive(conn, &shutdown, |c| c.graceful_shutdown())
                .await
                .map_err(Into::into)
        }
        Protocol::Undecided => {
            let conn = Box::pin(builders.auto.serve_connection_with_upgrades(io, service));
            drive(conn, &shutdown, |c| c.graceful_shutdown()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Polls `conn` to the end, asking it to shut down gracefully when `shutdown` fires.
async fn drive<C: Future>(
    mut conn: Pin<Box<C>>,
    shutdown: &CancellationToken,
    graceful: impl FnOnce(Pin<&mut C>),
) -> C::Output {
    tokio::select! {
        out = conn.as_mut() => return out,
        () = shutdown.cancelled() => graceful(conn.as_mut()),
    }
    conn.await
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
        let builders = Builders::new(HttpSettings { h2_max_streams: 10 });
        let serving = tokio::spawn(async move {
            serve_connection(server, protocol, app, &builders, CancellationToken::new()).await
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

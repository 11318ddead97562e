//! HTTP/3 for the HTTP transports ([`Options::http3`](crate::Options::http3)): one QUIC
//! connection (quinn, `h3` over `h3-quinn`) carrying every request of a client, the polls,
//! posts and the `/msgs` or SSE stream side by side, made again when it is lost.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use h3::client::{RequestStream, SendRequest};
use reqwest::header::HeaderMap;
use reqwest::{Method, Url};
use tokio::sync::Mutex;

use crate::driver::describe;
use crate::Error;

type Stream = RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

/// An HTTP/3 client for one server (`https://host:port`).
pub(crate) struct H3Client {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
    conn: Mutex<Option<Live>>,
}

/// The current connection.
struct Live {
    quic: quinn::Connection,
    send: SendRequest<h3_quinn::OpenStreams, Bytes>,
    /// Kept for the connection's lifetime (its UDP socket).
    _endpoint: quinn::Endpoint,
}

/// An answer: head now, body as it arrives.
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    stream: Stream,
}

impl Response {
    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, String> {
        match self.stream.recv_data().await {
            Ok(Some(mut data)) => Ok(Some(data.copy_to_bytes(data.remaining()))),
            Ok(None) => Ok(None),
            Err(e) => Err(describe(&e)),
        }
    }

    /// The whole body.
    pub async fn bytes(mut self) -> Result<Bytes, String> {
        let mut all = Vec::new();
        while let Some(chunk) = self.chunk().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all.into())
    }
}

impl H3Client {
    /// A client for `base` (`https://...`); connects on the first request.
    pub fn new(
        base: &Url,
        tls: &rustls::ClientConfig,
        timeout: std::time::Duration,
    ) -> Result<H3Client, Error> {
        if base.scheme() != "https" {
            return Err(Error::Url {
                url: base.to_string(),
                reason: "HTTP/3 needs an https:// URL (it is served on the HTTPS port)".into(),
            });
        }
        let host = base
            .host_str()
            .ok_or_else(|| Error::Url {
                url: base.to_string(),
                reason: "no host".into(),
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = base.port_or_known_default().unwrap_or(443);
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        Ok(H3Client {
            host,
            port,
            tls: Arc::new(tls),
            timeout,
            conn: Mutex::new(None),
        })
    }

    /// The open connection's request handle, connecting first if there is none (or it closed).
    async fn sender(&self) -> Result<SendRequest<h3_quinn::OpenStreams, Bytes>, Error> {
        let mut conn = self.conn.lock().await;
        if let Some(live) = conn.as_ref() {
            if live.quic.close_reason().is_none() {
                return Ok(live.send.clone());
            }
        }
        let live = tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| Error::Timeout)??;
        let send = live.send.clone();
        *conn = Some(live);
        Ok(send)
    }

    async fn connect(&self) -> Result<Live, Error> {
        let failed = |e: &dyn std::error::Error| Error::Connection(describe(e));
        let addr: SocketAddr = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| failed(&e))?
            .next()
            .ok_or_else(|| Error::Connection(format!("{} has no address", self.host)))?;
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(local).map_err(|e| failed(&e))?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(self.tls.clone())
            .map_err(|e| Error::Tls(e.to_string()))?;
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let quic = endpoint
            .connect(addr, &self.host)
            .map_err(|e| failed(&e))?
            .await
            .map_err(|e| failed(&e))?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|e| failed(&e))?;
        // The connection's control stream; ends when the connection does.
        tokio::spawn(async move {
            let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Live {
            quic,
            send,
            _endpoint: endpoint,
        })
    }

    /// Sends a request (with `body`, if any) and returns the answer's head.
    pub async fn request(
        &self,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Response, Error> {
        let mut send = self.sender().await?;
        let mut req = http::Request::builder()
            .method(method)
            .uri(url.as_str())
            .body(())
            .map_err(|e| Error::Url {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        *req.headers_mut() = headers;
        let lost = |e: &dyn std::error::Error| Error::Connection(describe(e));
        let mut stream = send.send_request(req).await.map_err(|e| lost(&e))?;
        if let Some(body) = body {
            stream.send_data(body).await.map_err(|e| lost(&e))?;
        }
        stream.finish().await.map_err(|e| lost(&e))?;
        let head = stream.recv_response().await.map_err(|e| lost(&e))?;
        Ok(Response {
            status: head.status().as_u16(),
            headers: head.headers().clone(),
            stream,
        })
    }
}

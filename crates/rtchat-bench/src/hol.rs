//! `rtchat bench hol`: head-of-line blocking, HTTP/2 against HTTP/3. N `/msgs` streams
//! multiplexed over ONE connection (HTTP/2 over TLS, or HTTP/3 over QUIC with `--http3`), a
//! poster posting at a steady rate over a connection of its own, and the latency of every
//! delivery: from the moment the server stored the message (its `time`, milliseconds since
//! the epoch, on the same clock as the bench when both run on one machine) to the moment
//! the stream's reader got the line. The poster (its own HTTP/2 connection, each post on its
//! own stream, so the rate holds whatever the answers take) does not count.
//!
//! Run the server with `--history 1`, so each snapshot line carries just the new message.
//! `bench/hol.sh` runs it through a lossy, 50 ms network it builds itself.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use clap::Args;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;

/// Options of `rtchat bench hol`.
#[derive(Args, Debug)]
pub struct HolArgs {
    /// The server's HTTPS address, e.g. https://10.0.0.2:8443 (HTTP/3 is on its port over UDP).
    #[arg(long, value_name = "URL")]
    pub url: String,

    /// Where the poster posts (its own HTTP/2 connection, h2c), e.g. http://10.0.0.2:8080.
    #[arg(long, value_name = "URL")]
    pub post_url: String,

    /// Speak HTTP/3 (QUIC) instead of HTTP/2 over TLS.
    #[arg(long)]
    pub http3: bool,

    /// `/msgs` streams on the one connection.
    #[arg(long, default_value_t = 20)]
    pub streams: usize,

    /// Messages to post.
    #[arg(long, default_value_t = 500)]
    pub messages: u64,

    /// Messages per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,

    /// After the last post, wait at most this many seconds for the deliveries still due.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0)]
    pub drain: f64,

    /// A delivery slower than this many milliseconds counts as late (with 25 ms each way, a
    /// delivery that waited for a retransmission takes a round trip more than the 25).
    #[arg(long, value_name = "MS", default_value_t = 60.0)]
    pub late_ms: f64,

    /// Accept any certificate (the server's generated one is for localhost).
    #[arg(long)]
    pub insecure: bool,

    /// Name of the run in the output.
    #[arg(long)]
    pub label: Option<String>,

    /// Print JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, Serialize)]
pub struct HolReport {
    pub label: String,
    pub protocol: &'static str,
    pub streams: usize,
    pub messages: u64,
    pub rate: f64,
    /// Deliveries due: messages × streams.
    pub expected: u64,
    pub delivered: u64,
    /// Milliseconds from store to receipt.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// The threshold of `late_fraction`.
    pub late_ms: f64,
    /// Deliveries slower than `late_ms`, as a fraction of those delivered.
    pub late_fraction: f64,
    /// Posts that failed (their messages are not due).
    pub post_errors: u64,
    /// Streams that ended or failed before the end of the run.
    pub stream_errors: Vec<String>,
    pub seconds: f64,
}

type Recorder = Arc<Mutex<Histogram<u64>>>;

/// Runs `rtchat bench hol`.
pub fn run(args: &HolArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(measure(args));
    runtime.shutdown_background();
    match result {
        Ok(report) => {
            if args.json {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
            } else {
                println!(
                    "{} ({}, {} streams): delivered {}/{}, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                    report.label,
                    report.protocol,
                    report.streams,
                    report.delivered,
                    report.expected,
                    report.p50_ms,
                    report.p99_ms,
                    report.max_ms
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

/// A stream's reader: each line is a snapshot; every message newer than the last one seen
/// on this stream counts as one delivery.
struct Reader {
    buf: Vec<u8>,
    last: u64,
    histogram: Recorder,
    delivered: Arc<AtomicU64>,
    /// Messages with an id at or below this were there before the run.
    first_ready: Option<tokio::sync::oneshot::Sender<u64>>,
}

impl Reader {
    fn push(&mut self, data: &[u8]) -> Result<(), String> {
        let at = now_ms();
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let page: serde_json::Value = serde_json::from_slice(&line)
                .map_err(|e| format!("bad line ({e}): {}", String::from_utf8_lossy(&line)))?;
            let last = page["last"].as_u64().unwrap_or(0);
            if let Some(ready) = self.first_ready.take() {
                self.last = last;
                let _ = ready.send(last);
                continue;
            }
            let mut histogram = self.histogram.lock().unwrap_or_else(|e| e.into_inner());
            for m in page["msg"].as_array().into_iter().flatten() {
                let id = m["id"].as_u64().unwrap_or(0);
                if id <= self.last {
                    continue;
                }
                let stored = m["time"].as_f64().unwrap_or(at);
                // `time` is whole milliseconds: count from the middle of its millisecond.
                let micros = ((at - stored - 0.5).max(0.0) * 1000.0) as u64;
                histogram.saturating_record(micros.max(1));
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            self.last = self.last.max(last);
        }
        Ok(())
    }
}

async fn measure(args: &HolArgs) -> Result<HolReport, String> {
    let url: http::Uri = args.url.parse().map_err(|e| format!("--url: {e}"))?;
    let host = url.host().ok_or("--url has no host")?.to_owned();
    let port = url.port_u16().unwrap_or(443);
    let addr: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or(format!("{host} has no address"))?;
    let tls = tls_config(args.insecure, args.http3)?;
    let histogram: Recorder = Arc::new(Mutex::new(
        Histogram::new_with_bounds(1, 600_000_000, 3).map_err(|e| e.to_string())?,
    ));
    let delivered = Arc::new(AtomicU64::new(0));
    let (errors_tx, mut errors_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut ready = Vec::new();
    let msgs: http::Uri = format!("https://{host}:{port}/msgs")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut keep = Vec::new();
    if args.http3 {
        let (endpoint, mut send) = h3_connect(addr, &host, tls).await?;
        keep.push(Box::new(endpoint) as Box<dyn std::any::Any + Send>);
        for _ in 0..args.streams {
            let (tx, rx) = tokio::sync::oneshot::channel();
            ready.push(rx);
            let mut reader = new_reader(&histogram, &delivered, tx);
            let req = http::Request::get(msgs.clone())
                .body(())
                .map_err(|e| e.to_string())?;
            let mut stream = send
                .send_request(req)
                .await
                .map_err(|e| format!("HTTP/3 request: {e}"))?;
            stream.finish().await.map_err(|e| e.to_string())?;
            let errors = errors_tx.clone();
            tokio::spawn(async move {
                let outcome = async {
                    let res = stream.recv_response().await.map_err(|e| e.to_string())?;
                    if res.status() != 200 {
                        return Err(format!("/msgs answered {}", res.status()));
                    }
                    while let Some(mut data) =
                        stream.recv_data().await.map_err(|e| e.to_string())?
                    {
                        let bytes = data.copy_to_bytes(data.remaining());
                        reader.push(&bytes)?;
                    }
                    Err::<(), String>("the stream ended".to_owned())
                };
                if let Err(e) = outcome.await {
                    let _ = errors.send(e);
                }
            });
        }
        // The connection lives as long as a request handle does.
        keep.push(Box::new(send));
    } else {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err("the server did not agree to HTTP/2".into());
        }
        let (send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
            TokioExecutor::new(),
            TokioIo::new(stream),
        )
        .await
        .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(conn);
        for _ in 0..args.streams {
            let (tx, rx) = tokio::sync::oneshot::channel();
            ready.push(rx);
            let mut reader = new_reader(&histogram, &delivered, tx);
            let req = http::Request::get(msgs.clone())
                .body(Empty::new())
                .map_err(|e| e.to_string())?;
            let mut send = send.clone();
            let errors = errors_tx.clone();
            tokio::spawn(async move {
                let outcome = async {
                    let res = send.send_request(req).await.map_err(|e| e.to_string())?;
                    if res.status() != 200 {
                        return Err(format!("/msgs answered {}", res.status()));
                    }
                    let mut body = res.into_body();
                    while let Some(frame) = body.frame().await {
                        let frame = frame.map_err(|e| e.to_string())?;
                        if let Ok(data) = frame.into_data() {
                            reader.push(&data)?;
                        }
                    }
                    Err::<(), String>("the stream ended".to_owned())
                };
                if let Err(e) = outcome.await {
                    let _ = errors.send(e);
                }
            });
        }
    }
    // Every stream has its first snapshot: the run starts.
    for rx in ready {
        let got = tokio::time::timeout(Duration::from_secs(30), rx).await;
        match got {
            Ok(Ok(_)) => {}
            _ => {
                let why = errors_rx
                    .try_recv()
                    .unwrap_or_else(|_| "no snapshot within 30 s".into());
                return Err(format!("a stream did not start: {why}"));
            }
        }
    }
    let started = Instant::now();
    let post_errors = post_steadily(&args.post_url, args.messages, args.rate).await?;
    let expected = (args.messages - post_errors) * args.streams as u64;
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(keep);
    let mut stream_errors = Vec::new();
    while let Ok(e) = errors_rx.try_recv() {
        stream_errors.push(e);
    }
    let h = histogram.lock().unwrap_or_else(|e| e.into_inner());
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(HolReport {
        label: args
            .label
            .clone()
            .unwrap_or_else(|| if args.http3 { "HTTP/3" } else { "HTTP/2" }.to_owned()),
        protocol: if args.http3 { "h3" } else { "h2" },
        streams: args.streams,
        messages: args.messages,
        rate: args.rate,
        expected,
        delivered: delivered.load(Ordering::Relaxed),
        p50_ms: ms(0.5),
        p90_ms: ms(0.9),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: h.max() as f64 / 1000.0,
        mean_ms: h.mean() / 1000.0,
        late_ms: args.late_ms,
        late_fraction: {
            let late = h.count_between((args.late_ms * 1000.0) as u64, h.max().max(1));
            late as f64 / (h.len().max(1)) as f64
        },
        post_errors,
        stream_errors,
        seconds,
    })
}

fn new_reader(
    histogram: &Recorder,
    delivered: &Arc<AtomicU64>,
    ready: tokio::sync::oneshot::Sender<u64>,
) -> Reader {
    Reader {
        buf: Vec::new(),
        last: 0,
        histogram: histogram.clone(),
        delivered: delivered.clone(),
        first_ready: Some(ready),
    }
}

type H3Send = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// One QUIC connection speaking HTTP/3, its driver spawned.
async fn h3_connect(
    addr: SocketAddr,
    host: &str,
    tls: rustls::ClientConfig,
) -> Result<(quinn::Endpoint, H3Send), String> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(local).map_err(|e| e.to_string())?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(Arc::new(tls))
        .map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint
        .connect(addr, host)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| format!("QUIC handshake: {e}"))?;
    let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .map_err(|e| format!("HTTP/3 handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    Ok((endpoint, send))
}

/// Posts `messages` at `rate` per second over one HTTP/2 connection (h2c, the plain port),
/// each post on its own stream so a slow answer never delays the next post; returns how many
/// failed.
async fn post_steadily(post_url: &str, messages: u64, rate: f64) -> Result<u64, String> {
    let base: http::Uri = post_url.parse().map_err(|e| format!("--post-url: {e}"))?;
    let host = base.host().ok_or("--post-url has no host")?.to_owned();
    let port = base.port_u16().unwrap_or(80);
    let uri: http::Uri = format!("http://{host}:{port}/poll")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .map_err(|e| format!("h2c handshake with {host}:{port}: {e}"))?;
    tokio::spawn(conn);
    let errors = Arc::new(AtomicU64::new(0));
    let mut posts = tokio::task::JoinSet::new();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for seq in 0..messages {
        ticks.tick().await;
        let body = serde_json::json!({"user": "hol", "text": format!("hol {seq}")}).to_string();
        let req = http::Request::post(uri.clone())
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let mut send = send.clone();
        let errors = errors.clone();
        posts.spawn(async move {
            let ok = match send.send_request(req).await {
                Ok(res) => {
                    let ok = res.status() == 200;
                    let _ = res.into_body().collect().await;
                    ok
                }
                Err(_) => false,
            };
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while posts.join_next().await.is_some() {}
    Ok(errors.load(Ordering::Relaxed))
}

/// rustls for the bench's connection: ALPN h3 or h2; `--insecure` accepts any certificate.
fn tls_config(insecure: bool, http3: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore::empty();
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![if http3 {
        b"h3".to_vec()
    } else {
        b"h2".to_vec()
    }];
    Ok(config)
}

/// `--insecure`: any certificate, signatures still checked.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

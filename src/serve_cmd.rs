//! `rtchat serve` and `rtchat cert`: the server's options, opening the store, binding the
//! listeners, and stopping gracefully on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::store_arg::{parse_store, StoreArg};
use clap::Args;
use rtchat_core::broker::RedisBroker;
use rtchat_core::directory::Directory;
use rtchat_core::{
    Broker, Hub, HubConfig, Limits, LocalBroker, MemoryStore, RedisStore, Retention, SqliteStore,
    Store,
};
use rtchat_server::admission::default_max_connections;
use rtchat_server::auth::{Auth, Keyring, PublicKey, Verifier};
use rtchat_server::tls::{self, CertSource};
use rtchat_server::{
    Congestion, ConnectionLimits, Drain, H3Listen, PostLimits, Server, ServerConfig, Timeouts,
    TlsListen,
};

/// Options of `rtchat cert`.
#[derive(Args, Debug)]
pub struct CertArgs {
    #[command(flatten)]
    tls: TlsArgs,
}

/// Where the HTTPS certificate comes from; shared by `serve` and `cert`.
#[derive(Args, Debug)]
struct TlsArgs {
    /// PEM certificate (chain) for HTTPS; with --tls-key. Default: a generated self-signed
    /// certificate for localhost kept in the data directory.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Folder for rtchat's files (the database, the generated certificate) [default: $XDG_DATA_HOME/rtchat or ~/.local/share/rtchat]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl TlsArgs {
    fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(rtchat_server::config::default_data_dir)
    }

    fn source(&self) -> CertSource {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => CertSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ => CertSource::Generated {
                data_dir: self.data_dir(),
            },
        }
    }
}

/// Options of `rtchat serve` (and of plain `rtchat`).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080, or 127.0.0.1:$PORT when PORT is set]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// Address of the HTTPS listener (HTTP/2 and HTTP/1.1) [default: 127.0.0.1:8443]
    #[arg(long, value_name = "ADDR", conflicts_with = "no_tls")]
    tls_listen: Option<SocketAddr>,

    /// Serve plain HTTP only.
    #[arg(long)]
    no_tls: bool,

    /// UDP address of the HTTP/3 (QUIC) listener [default: the HTTPS address and port]
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["no_tls", "no_h3"])]
    h3_listen: Option<SocketAddr>,

    /// Serve no HTTP/3 (and advertise none with Alt-Svc).
    #[arg(long)]
    no_h3: bool,

    /// Serve Prometheus metrics at http://ADDR/metrics, on a plain HTTP listener of their
    /// own (never on the public ports), e.g. 127.0.0.1:9090. Off unless given.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,

    /// Bytes an HTTP/3 client may send ahead on one request stream (QUIC flow control).
    #[arg(long, value_name = "BYTES", default_value_t = 256 * 1024, value_parser = clap::value_parser!(u32).range(16_384..))]
    h3_stream_window: u32,

    /// Bytes an HTTP/3 client may send ahead on one connection, all streams together.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u32).range(16_384..))]
    h3_connection_window: u32,

    /// Bytes rtchat sends on one HTTP/3 connection before they are acknowledged: the most a
    /// client that stops reading makes it hold.
    #[arg(long, value_name = "BYTES", default_value_t = 512 * 1024, value_parser = clap::value_parser!(u64).range(16_384..))]
    h3_send_window: u64,

    /// QUIC congestion control for what rtchat sends over HTTP/3: bbr (experimental in quinn;
    /// keeps its window on random loss), cubic (quinn's default) or newreno.
    #[arg(long, value_enum, default_value_t = H3Congestion::Bbr)]
    h3_congestion: H3Congestion,

    #[command(flatten)]
    tls: TlsArgs,

    /// Concurrent streams allowed on one HTTP/2 or HTTP/3 connection.
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    h2_max_streams: u32,

    /// Seconds between heartbeat comments on idle Server-Sent Events streams.
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = positive_seconds)]
    sse_heartbeat: f64,

    /// Another origin allowed to post and to open WebSockets and Socket.IO sessions
    /// (repeatable), e.g. http://localhost:3000; `*` for any, `null` for sandboxed and file://
    /// pages. The page's own origin (same scheme, host and port) is always allowed, and so are
    /// clients that send no Origin (curl, scripts).
    #[arg(long, value_name = "ORIGIN")]
    allow_origin: Vec<String>,

    /// The host names this server answers to (comma-separated or repeated; `*.example.com`
    /// for subdomains; `*` for any); other `Host` headers get 421 (a defence against DNS
    /// rebinding). Default: `localhost` and loopback addresses when every listener is on a
    /// loopback address, any name otherwise.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    allowed_hosts: Vec<String>,

    /// Largest WebSocket message accepted, in bytes (larger ones close with 1009).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u32).range(1024..))]
    ws_max_message: u32,

    /// Seconds of silence after which a WebSocket gets a keepalive ping.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    ws_ping_interval: f64,

    /// Seconds a WebSocket peer has to answer a keepalive ping before it is dropped (1011).
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0, value_parser = positive_seconds)]
    ws_pong_timeout: f64,

    /// permessage-deflate (RFC 7692) on WebSockets, for clients that offer it: on or off.
    #[arg(long, value_name = "on|off", default_value = "on", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    ws_deflate: bool,

    /// WebSocket messages shorter than this are sent uncompressed, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    ws_deflate_threshold: u32,

    /// Serve an echo WebSocket at /ws/echo, with the server's limits and keepalive (for
    /// Autobahn|Testsuite). Off unless given.
    #[arg(long)]
    ws_echo: bool,

    /// Seconds between Socket.IO pings.
    #[arg(long, value_name = "SECONDS", default_value_t = 25.0, value_parser = positive_seconds)]
    sio_ping_interval: f64,

    /// Seconds a Socket.IO client has to answer a ping before it is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0, value_parser = positive_seconds)]
    sio_ping_timeout: f64,

    /// Largest Socket.IO payload accepted (a polling request or a WebSocket message), in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1024..))]
    sio_max_payload: u32,

    /// Packets (events) a Socket.IO socket may have waiting to be written: a client that falls
    /// further behind gets `msg:error` and is disconnected.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(8..))]
    sio_buffer: u32,

    /// How many of the newest messages clients get as history.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    history: u32,

    /// The most messages a streaming resume sends (`/msgs?since`, `/events` with
    /// `Last-Event-ID`, `/ws?since`, Socket.IO `auth.last`): a client further behind gets the
    /// newest this many, told `truncated` (0: no cap). `/poll?since` pages instead.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_resume: u64,

    /// The most rooms that may exist at once: a post or join that would create one more is
    /// refused (0: no cap). A room nobody is in whose messages are all gone stops counting.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_rooms: usize,

    /// The most rooms one WebSocket connection or Socket.IO socket may be in at once.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    max_joined_rooms: u32,

    /// Seconds a polling client that named itself (`?user=`) stays present in a room after
    /// its last poll.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    presence_window: f64,

    /// Seconds a post's idempotency key is remembered: the same key again within it gets the
    /// first post's id (and a different text under it a 409).
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0, value_parser = positive_seconds)]
    dedupe_window: f64,

    /// Longest user name accepted, in characters.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_user: u32,

    /// Longest message text accepted, in characters.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    max_text: u32,

    /// Largest request body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(256..))]
    max_body: u32,

    /// Where messages are kept: `sqlite` (durable, in the data directory), `memory` (lost on
    /// restart, as in the course), or `redis://HOST:PORT/DB` (shared by every node of a
    /// cluster: the same URL on each; see README "Running a cluster").
    #[arg(long, value_name = "sqlite|memory|redis://HOST:PORT/DB", default_value = "sqlite", value_parser = parse_store)]
    store: StoreArg,

    /// With a Redis store: the `HOST:PORT` of this node's plain HTTP listener as the other
    /// nodes reach it (they forward requests for Socket.IO sessions opened here) [default:
    /// the --listen address, when it is not a wildcard]
    #[arg(long, value_name = "HOST:PORT")]
    cluster_addr: Option<String>,

    /// With a Redis store: acknowledge a post only once this many Redis replicas have it too
    /// (Redis's WAIT; a post that does not reach them within --redis-wait-timeout is refused
    /// with 503, stored but not acknowledged); directory changes (bans, accounts, ...) wait
    /// the same way [default: 0, the primary alone]
    #[arg(long, value_name = "N", default_value_t = 0)]
    redis_wait_replicas: usize,

    /// How long a post (or a directory change) waits for --redis-wait-replicas, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = positive_seconds)]
    redis_wait_timeout: f64,

    /// With a Redis store: wait for Redis at start (retrying) instead of exiting when it does
    /// not answer.
    #[arg(long)]
    store_wait: bool,

    /// The SQLite database file [default: <data dir>/rtchat.db]
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,

    /// Cap the database file at this many MiB: posts beyond it are refused, as on a full disk
    /// (0: no cap).
    #[arg(long, value_name = "MIB")]
    db_max_mb: Option<u64>,

    /// Keep only the newest N messages per room [default: all with sqlite, 10000 in memory,
    /// 100000 in Redis]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    retain: Option<u64>,

    /// Delete messages older than this (e.g. 30d, 12h, 90min) [default: never]
    #[arg(long, value_name = "AGE", value_parser = humantime::parse_duration)]
    retain_age: Option<Duration>,

    /// Seconds a long poll is held when the client names no timeout.
    #[arg(long, value_name = "SECONDS", default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=3600))]
    poll_timeout: u32,

    /// Serve this folder as the front end instead of the embedded pages.
    #[arg(long, value_name = "DIR", value_parser = existing_dir)]
    web_root: Option<PathBuf>,

    /// Fraction of GET /poll requests to fail with 500, to demonstrate client backoff.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = fraction)]
    fail_rate: f64,

    /// Connections open at once, in all; beyond it new ones get a 503 [default: the open-file limit less 64]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: Option<u64>,

    /// Connections open at once from one client address (0: no cap); trusted proxies are exempt.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_connections_per_ip: u32,

    /// A reverse proxy (address or CIDR, repeatable) whose Forwarded / X-Forwarded-For /
    /// X-Forwarded-Proto headers are believed; its own connections are not capped per address.
    #[arg(long, value_name = "CIDR", value_parser = cidr)]
    trusted_proxy: Vec<ipnet::IpNet>,

    /// Posts a second one connection (WebSocket, Socket.IO socket) may keep up; beyond it
    /// posts are refused (429 / error frame / error ack). 0 turns every post rate limit off.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 5.0, value_parser = post_rate)]
    post_rate: f64,

    /// Posts one connection may send at once before --post-rate applies.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    post_burst: u32,

    /// Posts a second one client address may keep up, all its connections and HTTP posts
    /// together (behind a --trusted-proxy, the forwarded address; IPv6 by /64). 0: no
    /// per-address limit.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 20.0, value_parser = post_rate)]
    post_rate_per_ip: f64,

    /// Posts one client address may send at once before --post-rate-per-ip applies.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    post_burst_per_ip: u32,

    /// Seconds a new plain connection has to send its first bytes.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    sniff_timeout: f64,

    /// Seconds a new HTTPS connection has to finish the TLS handshake.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    tls_handshake_timeout: f64,

    /// Seconds an HTTP/1.1 request head may take, counted from when the server starts waiting
    /// for it (so also how long a kept-alive HTTP/1.1 connection may stay idle).
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, value_parser = positive_seconds)]
    header_timeout: f64,

    /// Seconds an HTTP/2 connection with no open request is kept.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = positive_seconds)]
    idle_timeout: f64,

    /// Seconds a posted body may take to arrive (408 after that).
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = positive_seconds)]
    body_timeout: f64,

    /// Seconds a write may wait on a client that does not read before its connection is
    /// dropped (streams, long polls, pages, WebSockets).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = positive_seconds)]
    write_timeout: f64,

    /// Seconds of silence after which an HTTP/2 connection gets a ping.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0, value_parser = positive_seconds)]
    h2_keepalive_interval: f64,

    /// Seconds an HTTP/2 client has to answer that ping before the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 20.0, value_parser = positive_seconds)]
    h2_keepalive_timeout: f64,

    /// Seconds between SIGTERM and the stop of accepting: /readyz answers 503 at once, so a
    /// load balancer stops sending new clients, while everything else goes on (0: stop at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = non_negative_seconds)]
    drain_delay: f64,

    /// Seconds over which live connections are closed after SIGTERM's --drain-delay, each at
    /// a random moment, so clients do not all reconnect at once (0: all at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = non_negative_seconds)]
    drain_seconds: f64,

    /// Who may chat: `off` (anyone, under any name: the course's chat) or `token` (every
    /// connection and post carries a JWT; messages carry its user id and name).
    #[arg(long, value_enum, default_value_t = AuthArg::Off)]
    auth: AuthArg,

    /// Sign and verify rtchat's own tokens (HS256) with the secret in this file (at least 32
    /// bytes) instead of the secrets generated into the data directory.
    #[arg(long, value_name = "FILE")]
    jwt_secret_file: Option<PathBuf>,

    /// Also accept tokens signed by an issuer whose public key (PEM: RSA, EC P-256/P-384 or
    /// Ed25519) is in FILE, named by the tokens' `kid` (KID, else the file name without its
    /// extension). Repeatable, so keys can be rotated.
    #[arg(long, value_name = "[KID=]FILE")]
    jwt_public_key: Vec<String>,

    /// Seconds a live connection whose token expired has to refresh it before it is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0, value_parser = non_negative_seconds)]
    token_grace: f64,

    /// Private rooms and direct messages the server holds at most (their members are kept in
    /// memory, so a join or a post is checked without a store access); making one more is
    /// refused with 403.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    max_private_rooms: usize,

    /// How long after posting an author may delete their own message (admins and room
    /// owners may delete any, any time), e.g. 15min, 1h, 0s.
    #[arg(long, value_name = "DURATION", default_value = "15min", value_parser = humantime::parse_duration)]
    edit_window: Duration,

    // The built-in accounts (`POST /auth/signup`, `/auth/login`...; see
    // rtchat_server::auth::accounts).
    /// How long an access token from /auth/login or /auth/refresh is valid (e.g. 15min, 900s).
    #[arg(long, value_name = "DURATION", default_value = "15min", value_parser = humantime::parse_duration)]
    token_ttl: Duration,

    /// How long a login lasts: the lifetime of the session cookie, which /auth/refresh trades
    /// for access tokens until then (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = humantime::parse_duration)]
    session_ttl: Duration,

    /// Logins and signups that may wait while a password is being checked (one at a time);
    /// further ones get 503 with Retry-After at once.
    #[arg(long, value_name = "N", default_value_t = 64)]
    login_queue: usize,

    /// Login and signup attempts one client address may make per minute, at once or spread
    /// (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 20)]
    login_rate_per_ip: u32,

    /// Login attempts one user name may receive per minute, from any address (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 10)]
    login_rate_per_user: u32,
}

/// `--auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AuthArg {
    Off,
    Token,
}

/// `--h3-congestion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum H3Congestion {
    Cubic,
    Bbr,
    Newreno,
}

/// The default `--db-max-mb`.
const DB_MAX_MB: u64 = 1024;

/// The token checks `--auth` asks for: with `token`, the server's own secrets (generated into
/// the data directory, or `--jwt-secret-file`) and the issuers' public keys.
async fn auth(
    args: &ServeArgs,
    directory: Arc<dyn Directory>,
    shared: Option<&RedisStore>,
) -> Result<Auth, String> {
    if args.auth == AuthArg::Off {
        if args.jwt_secret_file.is_some() || !args.jwt_public_key.is_empty() {
            return Err("--jwt-secret-file and --jwt-public-key need --auth token".to_owned());
        }
        return Ok(Auth::off(directory));
    }
    let keyring = match (&args.jwt_secret_file, shared) {
        (Some(file), _) => Keyring::from_secret_file(file),
        // A cluster: the first node makes the secret, every node reads it from Redis.
        (None, Some(redis)) => {
            let fresh = Keyring::fresh_json().map_err(|e| e.to_string())?;
            let json = redis
                .get_or_init("jwt-secrets", &fresh)
                .await
                .map_err(|e| format!("cannot read the shared token secret: {e}"))?;
            Keyring::from_json(&json)
        }
        (None, None) => Keyring::open(&args.tls.data_dir()),
    }
    .map_err(|e| e.to_string())?;
    let public = args
        .jwt_public_key
        .iter()
        .map(|spec| PublicKey::load(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let keys = public.len();
    let verifier = Verifier::new(keyring, public)?;
    tracing::info!(
        public_keys = keys,
        grace_s = args.token_grace,
        "--auth token: every connection and post needs a token"
    );
    Auth::token(
        verifier,
        directory,
        Duration::from_secs_f64(args.token_grace),
        args.max_private_rooms,
    )
    .await
    .map_err(|e| format!("cannot read the revoked tokens and private rooms: {e}"))
}

fn existing_dir(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("{s} is not a directory"))
    }
}

fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && (0.0..=86_400.0).contains(&f) => Ok(f),
        _ => Err(format!("{s} is not a number of seconds, 0 or more")),
    }
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f.is_finite() && f > 0.0 && f <= 86_400.0 => Ok(f),
        _ => Err(format!("{s} is not a number of seconds above 0")),
    }
}

/// `10.0.0.0/8`, `fd00::/8`, or a single address (`127.0.0.1`).
fn cidr(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{s} is not an address or CIDR range (e.g. 10.0.0.0/8)"))
}

/// A post rate: 0 (off) or a number of posts a second, at least one a day.
fn post_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if f == 0.0 || (1.0 / 86_400.0..=1e9).contains(&f) => Ok(f),
        _ => Err(format!(
            "{s} is not a number of posts a second (0 for no limit, else at least 1/86400)"
        )),
    }
}

fn fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{s} is not a number from 0 to 1")),
    }
}

/// `--listen`, else `127.0.0.1:$PORT`, else `127.0.0.1:8080`.
fn listen_addr(flag: Option<SocketAddr>) -> Result<SocketAddr, String> {
    if let Some(addr) = flag {
        return Ok(addr);
    }
    match std::env::var("PORT") {
        Ok(port) => port
            .trim()
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| format!("PORT must be a port number (0-65535), got {port:?}")),
        Err(_) => Ok(ServerConfig::default().listen),
    }
}

/// Runs `rtchat serve` to completion (until a signal), on its own runtime.
pub fn run(args: ServeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `rtchat cert`: where the HTTPS certificate is, its fingerprint and how to trust it.
pub fn cert(args: CertArgs) -> ExitCode {
    match tls::load(&args.tls.source()) {
        Ok(tls) => {
            println!("{}", tls::describe_trust(&tls));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let listen = listen_addr(args.listen)?;
    let history = args.history as usize;
    let hub_config = HubConfig {
        history,
        dedupe_window: Duration::from_secs_f64(args.dedupe_window),
        max_resume: args.max_resume,
        max_rooms: args.max_rooms,
        presence_window: Duration::from_secs_f64(args.presence_window),
        limits: Limits {
            max_user: args.max_user as usize,
            max_text: args.max_text as usize,
        },
        ..HubConfig::default()
    };
    let mut broker: Option<Arc<dyn Broker>> = None;
    let mut shared: Option<RedisStore> = None;
    let (store, directory): (Arc<dyn Store>, Arc<dyn Directory>) = match &args.store {
        StoreArg::Redis(url) => {
            let refused: Vec<&str> = [
                ("--db", args.db.is_some()),
                ("--db-max-mb", args.db_max_mb.is_some()),
                ("--retain-age", args.retain_age.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, given)| given.then_some(flag))
            .collect();
            if !refused.is_empty() {
                return Err(format!(
                    "{} only apply to --store sqlite (a Redis store keeps --retain messages per room; see README \"Running a cluster\")",
                    refused.join(", ")
                ));
            }
            let retain = args.retain.unwrap_or(100_000).max(history as u64);
            let retain = retain.try_into().unwrap_or(usize::MAX);
            let store = connect_redis(url, retain, args.store_wait)
                .await?
                .wait_for_replicas(
                    args.redis_wait_replicas,
                    Duration::from_secs_f64(args.redis_wait_timeout),
                );
            broker = Some(Arc::new(RedisBroker::new(&store)));
            shared = Some(store.clone());
            let store = Arc::new(store);
            (store.clone(), store)
        }
        StoreArg::Memory => {
            if args.retain_age.is_some() {
                return Err("--retain-age needs --store sqlite".to_owned());
            }
            let retain = args.retain.unwrap_or(10_000).max(history as u64);
            let store = Arc::new(MemoryStore::new(retain.try_into().unwrap_or(usize::MAX)));
            (store.clone(), store)
        }
        StoreArg::Sqlite => {
            let path = args
                .db
                .clone()
                .unwrap_or_else(|| args.tls.data_dir().join("rtchat.db"));
            let retention = Retention {
                max_count: args.retain.map(|n| n.max(history as u64)),
                max_age: args.retain_age,
            };
            // A default cap, so that a busy chat cannot fill the disk by surprise.
            let db_max_mb = args.db_max_mb.unwrap_or(DB_MAX_MB);
            let max_bytes = (db_max_mb > 0).then(|| db_max_mb.saturating_mul(1024 * 1024));
            if db_max_mb > 0 {
                tracing::info!(
                    db_max_mb,
                    "the database is capped at {} MiB: posts beyond it are refused as on a full disk (change it with --db-max-mb MIB; --db-max-mb 0 for no cap)",
                    db_max_mb
                );
            } else {
                tracing::info!(
                    db_max_mb = 0,
                    "the database has no size cap (--db-max-mb 0): it grows until the disk is full"
                );
            }
            let opened =
                tokio::task::spawn_blocking(move || SqliteStore::open(&path, retention, max_bytes))
                    .await
                    .map_err(|e| e.to_string())?;
            let store =
                Arc::new(opened.map_err(|e| format!("cannot open the message store: {e}"))?);
            (store.clone(), store)
        }
    };
    let auth = Arc::new(auth(&args, directory, shared.as_ref()).await?);
    let broker = broker.unwrap_or_else(|| Arc::new(LocalBroker::new()));
    let hub = Hub::open_with(store, broker, hub_config)
        .await
        .map_err(|e| format!("cannot open the message store: {e}"))?;
    // Bans, revocations and room rules made on other nodes reach this one (a cluster).
    auth.join_cluster(&hub);
    let secs = Duration::from_secs_f64;
    let timeouts = Timeouts {
        sniff: secs(args.sniff_timeout),
        tls_handshake: secs(args.tls_handshake_timeout),
        header: secs(args.header_timeout),
        idle: secs(args.idle_timeout),
        body: secs(args.body_timeout),
        write: secs(args.write_timeout),
        h2_keepalive_interval: secs(args.h2_keepalive_interval),
        h2_keepalive_timeout: secs(args.h2_keepalive_timeout),
    };
    // Connections are files: take all the open-file limit allows, and keep some room.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(1024);
    let max_total = match args.max_connections {
        Some(n) => n.min(usize::MAX as u64) as usize,
        None => default_max_connections(nofile),
    };
    let connections = ConnectionLimits {
        max_total,
        max_per_ip: args.max_connections_per_ip as usize,
        trusted_proxies: args.trusted_proxy,
    };
    tracing::info!(
        max_connections = max_total,
        max_connections_per_ip = connections.max_per_ip,
        open_file_limit = nofile,
        "connection limits"
    );
    let posts = PostLimits {
        rate: args.post_rate,
        burst: args.post_burst,
        rate_per_ip: args.post_rate_per_ip,
        burst_per_ip: args.post_burst_per_ip,
    };
    if posts.rate == 0.0 {
        tracing::info!("post rate limits off (--post-rate 0)");
    } else {
        tracing::info!(
            post_rate = posts.rate,
            post_burst = posts.burst,
            post_rate_per_ip = posts.rate_per_ip,
            post_burst_per_ip = posts.burst_per_ip,
            "post rate limits"
        );
    }
    // With an ephemeral plain port (tests, scripts), the default HTTPS port is ephemeral too.
    let default_tls_port = if listen.port() == 0 { 0 } else { 8443 };
    let tls = (!args.no_tls).then(|| TlsListen {
        addr: args
            .tls_listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], default_tls_port))),
        explicit: args.tls_listen.is_some(),
        cert: args.tls.source(),
    });
    let allowed_hosts = allowed_hosts(&args.allowed_hosts, listen, tls.as_ref().map(|t| t.addr));
    let config = ServerConfig {
        listen,
        tls,
        allow_origins: args.allow_origin,
        allowed_hosts,
        h2_max_streams: args.h2_max_streams,
        sse_heartbeat: Duration::from_secs_f64(args.sse_heartbeat),
        websocket: Arc::new(rtchat_ws::Config {
            ping_interval: Some(Duration::from_secs_f64(args.ws_ping_interval)),
            pong_timeout: Duration::from_secs_f64(args.ws_pong_timeout),
            write_timeout: Some(timeouts.write),
            deflate: args.ws_deflate.then(|| rtchat_ws::DeflateConfig {
                threshold: args.ws_deflate_threshold as usize,
                ..rtchat_ws::DeflateConfig::default()
            }),
            ..rtchat_ws::Config::default().with_max_message_size(args.ws_max_message as usize)
        }),
        ws_echo: args.ws_echo,
        sio_ping_interval: Duration::from_secs_f64(args.sio_ping_interval),
        sio_ping_timeout: Duration::from_secs_f64(args.sio_ping_timeout),
        sio_max_payload: args.sio_max_payload as usize,
        sio_buffer: args.sio_buffer as usize,
        web_root: args.web_root,
        fail_rate: args.fail_rate,
        poll_timeout: Duration::from_secs(args.poll_timeout.into()),
        edit_window: args.edit_window,
        max_body: args.max_body as usize,
        timeouts,
        connections,
        posts,
        h3: (!args.no_h3).then_some(H3Listen {
            addr: args.h3_listen,
            stream_window: args.h3_stream_window,
            connection_window: args.h3_connection_window,
            send_window: args.h3_send_window,
            congestion: match args.h3_congestion {
                H3Congestion::Cubic => Congestion::Cubic,
                H3Congestion::Bbr => Congestion::Bbr,
                H3Congestion::Newreno => Congestion::NewReno,
            },
        }),
        metrics_listen: args.metrics_listen,
        max_joined_rooms: args.max_joined_rooms as usize,
        accounts: rtchat_server::auth::accounts::AccountSettings {
            token_ttl: args.token_ttl,
            session_ttl: args.session_ttl,
            login_queue: args.login_queue,
            login_rate_per_ip: args.login_rate_per_ip,
            login_rate_per_user: args.login_rate_per_user,
        },
        ..ServerConfig::default()
    };
    let drain = Drain::default();
    let server = Server::bind(config.clone(), hub.clone(), drain.clone(), auth)
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    if let Some(store) = shared {
        let cluster_addr = match &args.cluster_addr {
            Some(a) => a.clone(),
            None if !addr.ip().is_unspecified() => addr.to_string(),
            None => {
                return Err(format!(
                    "--listen {addr} is a wildcard address: with --store redis:// give --cluster-addr HOST:PORT, the address the other nodes reach this one at"
                ))
            }
        };
        server.join_cluster(rtchat_server::Cluster {
            store,
            addr: cluster_addr,
        });
    } else if args.cluster_addr.is_some() {
        return Err("--cluster-addr needs --store redis://".to_owned());
    }
    tracing::info!(store = %hub.store_description(), history, web_root = ?config.web_root, "rtchat ready");
    if let Some(tls) = server.tls_info() {
        let how = if tls.generated {
            "generated"
        } else if tls.renewed {
            "renewed (same key, it was expiring)"
        } else {
            "using"
        };
        let valid_until = tls.validity.map(|(_, until)| until.to_string());
        tracing::info!(certificate = %tls.cert_path.display(), fingerprint = %tls.fingerprint, valid_until = valid_until.as_deref().unwrap_or("?"), "{how} the HTTPS certificate (rtchat cert tells how to trust it)");
    }
    // The signal handlers are in place before anyone is told the server listens: a signal
    // sent right after the "listening" line must stop it gracefully, not kill it.
    let signals = Signals::new()
        .inspect_err(
            |e| tracing::warn!(error = %e, "cannot watch SIGINT; stop rtchat with SIGKILL"),
        )
        .ok();
    // Plain lines on stdout that scripts and tests wait for: http first, then https (then
    // HTTP/3, then the metrics listener).
    println!("rtchat listening on http://{addr}");
    if let Some(tls_addr) = server.tls_addr() {
        println!("rtchat listening on https://{tls_addr}");
    }
    if let Some(h3_addr) = server.h3_addr() {
        println!("rtchat listening on udp://{h3_addr} (HTTP/3)");
    }
    if let Some(metrics_addr) = server.metrics_addr() {
        println!("rtchat metrics on http://{metrics_addr}/metrics");
    }
    let phases = DrainPhases {
        delay: Duration::from_secs_f64(args.drain_delay),
        spread: Duration::from_secs_f64(args.drain_seconds),
    };
    if let Some(signals) = signals {
        tokio::spawn(wait_for_signal(signals, drain, phases));
    }
    server.run().await;
    tracing::info!("rtchat stopped");
    Ok(())
}

/// `--allowed-hosts`, or its default: loopback names only when nothing listens beyond loopback.
fn allowed_hosts(
    given: &[String],
    listen: SocketAddr,
    tls: Option<SocketAddr>,
) -> rtchat_server::origin::AllowedHosts {
    use rtchat_server::origin::AllowedHosts;
    let given: Vec<String> = given
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if given.iter().any(|h| h == "*") {
        return AllowedHosts::Any;
    }
    if !given.is_empty() {
        return AllowedHosts::Only(given);
    }
    let loopback_only = std::iter::once(listen)
        .chain(tls)
        .all(|addr| addr.ip().is_loopback());
    if loopback_only {
        AllowedHosts::loopback()
    } else {
        AllowedHosts::Any
    }
}

/// How SIGTERM stops the server (see [`rtchat_server::drain`]).
#[derive(Debug, Clone, Copy)]
struct DrainPhases {
    /// `--drain-delay`: draining (readyz 503) while still accepting.
    delay: Duration,
    /// `--drain-seconds`: the window the closes are spread over.
    spread: Duration,
}

/// The signals that stop the server.
#[derive(Debug, Clone, Copy)]
enum StopSignal {
    Interrupt,
    Terminate,
}

impl std::fmt::Display for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopSignal::Interrupt => "SIGINT",
            StopSignal::Terminate => "SIGTERM",
        })
    }
}

/// SIGINT and SIGTERM, as many times as they come.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt())?;
        let terminate = signal(SignalKind::terminate())
            .inspect_err(|e| tracing::warn!(error = %e, "cannot watch SIGTERM"))
            .ok();
        Ok(Signals {
            interrupt,
            terminate,
        })
    }

    async fn next(&mut self) -> StopSignal {
        let terminate = async {
            match &mut self.terminate {
                Some(term) => term.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.interrupt.recv() => StopSignal::Interrupt,
            _ = terminate => StopSignal::Terminate,
        }
    }
}

/// Stops the server on signals. SIGTERM (an orchestrator) drains: `/readyz` answers 503 at
/// once, accepting goes on for `--drain-delay`, then accepting stops and the open connections
/// close, each at a random moment within `--drain-seconds`. SIGINT (a person at the
/// terminal) stops at once and closes everything together. Any signal during a drain closes
/// what is still open at once.
async fn wait_for_signal(mut signals: Signals, drain: Drain, phases: DrainPhases) {
    match signals.next().await {
        StopSignal::Interrupt => {
            tracing::info!("SIGINT: shutting down now: no new connections, closing every open one");
            drain.stop(Duration::ZERO);
        }
        StopSignal::Terminate => {
            drain.begin();
            tracing::info!(
                drain_delay = phases.delay.as_secs_f64(),
                drain_seconds = phases.spread.as_secs_f64(),
                "SIGTERM: draining: /readyz answers 503; still accepting for {:?} (--drain-delay), then closing the open connections over {:?} (--drain-seconds); a second signal stops at once",
                phases.delay,
                phases.spread
            );
            tokio::select! {
                () = tokio::time::sleep(phases.delay) => {
                    tracing::info!("shutting down: no new connections; closing the open ones over {:?}", phases.spread);
                    drain.stop(phases.spread);
                }
                signal = signals.next() => {
                    tracing::info!("{signal} while draining: closing every connection now");
                    drain.hurry();
                    return;
                }
            }
        }
    }
    let signal = signals.next().await;
    tracing::info!("{signal} while shutting down: closing every connection now");
    drain.hurry();
}

/// Connects to the Redis store; with `wait`, retries until it answers (with a line in the
/// log each time) instead of failing at once.
async fn connect_redis(url: &str, retain: usize, wait: bool) -> Result<RedisStore, String> {
    let mut delay = Duration::from_millis(200);
    loop {
        match RedisStore::connect(url, retain).await {
            Ok(store) => return Ok(store),
            Err(e) if wait => {
                tracing::warn!(error = %e, retry_in = ?delay, "waiting for the Redis store (--store-wait)");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => {
                return Err(format!(
                "cannot open the message store: {e} (is Redis running? --store-wait waits for it)"
            ))
            }
        }
    }
}

//! Several rtchat nodes sharing one Redis (`--store redis://...`), behind HAProxy: real
//! `redis-server`, real `haproxy`, real rtchat processes (`scripts/setup` installs the first
//! two). This file is the harness; the tests are in `cluster/`.
//!
//! * [`Redis`]: `redis-server` on a free port in a temporary folder of its own, with or
//!   without persistence (AOF, fsync on every write); killed (`SIGKILL`) and restarted on the
//!   same port and folder; a tiny RESP client ([`Redis::cmd`]) to look inside.
//! * [`Haproxy`]: round robin over the nodes, no stickiness, `option forwardfor`, WebSockets
//!   tunnelled for an hour, TCP health checks every 100 ms so a dead node is taken out.
//! * [`Cluster`]: one Redis, N nodes (`common::Server`), one HAProxy.
//! * Readers ([`Reader`]) of every transport, which record every message they are shown in
//!   the order shown, so a test can compare what each client saw with the room's history.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

mod failures;
mod kill_node;
mod resume;
mod startup;
mod transports;

/// A port nobody listens on right now (the system's choice of a free one).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads `out` line by line into `log` in a thread of its own (so the process never blocks
/// on a full pipe); `ready` is told once a line contains `needle`.
fn drain(
    out: impl Read + Send + 'static,
    log: Arc<Mutex<String>>,
    needle: &'static str,
    ready: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
            if line.contains(needle) {
                let _ = ready.send(());
            }
        }
    });
}

/// A `redis-server` of the test's own.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    persistent: bool,
    log: Arc<Mutex<String>>,
}

impl Redis {
    /// Redis with persistence: `--appendonly yes --appendfsync always` (every acknowledged
    /// write is on disk), no RDB snapshots.
    pub fn start() -> Redis {
        Redis::start_with(true)
    }

    /// Redis without any persistence: a restart starts empty.
    pub fn start_volatile() -> Redis {
        Redis::start_with(false)
    }

    fn start_with(persistent: bool) -> Redis {
        let dir = common::temp_dir("redis");
        // Another process may take the free port before Redis binds it: try a few.
        for _ in 0..5 {
            let mut redis = Redis {
                child: None,
                port: free_port(),
                dir: dir.clone(),
                persistent,
                log: Arc::default(),
            };
            if redis.try_spawn() {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 ports");
    }

    /// Starts Redis on its port and folder on a port known to be free (a test that waits for
    /// Redis to come up picks it before).
    pub fn start_on(port: u16, persistent: bool) -> Redis {
        let mut redis = Redis {
            child: None,
            port,
            dir: common::temp_dir("redis"),
            persistent,
            log: Arc::default(),
        };
        assert!(
            redis.try_spawn(),
            "redis-server did not start: {}",
            redis.log()
        );
        redis
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Everything Redis logged, over all its lives.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Spawns redis-server and waits (up to 20 s) for "Ready to accept connections" (printed
    /// after it loaded its append-only file); false if it exited first.
    fn try_spawn(&mut self) -> bool {
        assert!(self.child.is_none(), "Redis is already running");
        let port = self.port.to_string();
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--dir",
            self.dir.to_str().unwrap(),
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            "",
        ];
        if self.persistent {
            args.extend(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            args.extend(["--appendonly", "no"]);
        }
        let mut child = Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run redis-server (scripts/setup installs it)");
        let (tx, rx) = mpsc::channel();
        drain(
            child.stdout.take().unwrap(),
            self.log.clone(),
            "Ready to accept connections",
            tx.clone(),
        );
        drain(
            child.stderr.take().unwrap(),
            self.log.clone(),
            "Ready to accept connections",
            tx,
        );
        // The channel closes (Err) when both pipes end: Redis exited.
        let ready = rx.recv_timeout(Duration::from_secs(20)).is_ok();
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        self.child = Some(child);
        true
    }

    /// `kill -9`: Redis dies at once, with whatever it had not written.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts Redis again on the same port and folder (after [`Redis::kill`]).
    pub fn restart(&mut self) {
        assert!(
            self.try_spawn(),
            "redis-server did not start again: {}",
            self.log()
        );
    }

    /// One command over a fresh connection: the reply.
    pub fn cmd(&self, args: &[&str]) -> Resp {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to Redis");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(req.as_bytes()).unwrap();
        Resp::read(&mut BufReader::new(stream))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    fn read(r: &mut impl BufRead) -> Resp {
        let mut line = String::new();
        r.read_line(&mut line).expect("a Redis reply");
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => Resp::Simple(rest.to_owned()),
            "-" => Resp::Error(rest.to_owned()),
            ":" => Resp::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Resp::Bulk(None);
                }
                let mut buf = vec![0; n as usize + 2];
                r.read_exact(&mut buf).unwrap();
                buf.truncate(n as usize);
                Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return Resp::Array(None);
                }
                Resp::Array(Some((0..n).map(|_| Resp::read(r)).collect()))
            }
            other => panic!("unexpected Redis reply {other:?}{rest}"),
        }
    }

    /// The text of a simple or bulk string reply.
    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) | Resp::Bulk(Some(s)) => s.clone(),
            other => panic!("expected a string reply, got {other:?}"),
        }
    }
}

/// HAProxy in front of the nodes.
pub struct Haproxy {
    child: Child,
    pub base: String,
    log: Arc<Mutex<String>>,
}

impl Haproxy {
    /// Round robin over `nodes` (their `http://` bases).
    pub fn start(nodes: &[String]) -> Haproxy {
        let dir = common::temp_dir("haproxy");
        for _ in 0..5 {
            let port = free_port();
            let mut servers = String::new();
            for (i, base) in nodes.iter().enumerate() {
                let addr = base.trim_start_matches("http://");
                // TCP checks every 100 ms: a node that died is out after one failed check;
                // `redispatch` + `retries` send a request whose connection was refused to
                // another node.
                servers.push_str(&format!(
                    "    server n{i} {addr} check inter 100ms fall 1 rise 1\n"
                ));
            }
            let cfg = format!(
                "global\n\
                 \x20   maxconn 4000\n\
                 defaults\n\
                 \x20   mode http\n\
                 \x20   option forwardfor\n\
                 \x20   option redispatch\n\
                 \x20   retries 3\n\
                 \x20   timeout connect 1s\n\
                 \x20   timeout client 60s\n\
                 \x20   timeout server 60s\n\
                 \x20   timeout tunnel 1h\n\
                 frontend chat\n\
                 \x20   bind 127.0.0.1:{port}\n\
                 \x20   default_backend nodes\n\
                 backend nodes\n\
                 \x20   balance roundrobin\n\
                 {servers}"
            );
            let path = dir.join("haproxy.cfg");
            std::fs::write(&path, cfg).unwrap();
            let mut child = Command::new("haproxy")
                .args(["-f", path.to_str().unwrap(), "-db"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run haproxy (scripts/setup installs it)");
            let log = Arc::new(Mutex::new(String::new()));
            let (tx, _rx) = mpsc::channel();
            drain(child.stdout.take().unwrap(), log.clone(), "\0", tx.clone());
            drain(child.stderr.take().unwrap(), log.clone(), "\0", tx);
            // Ready when it accepts a TCP connection; gone (a taken port) when it exits.
            let start = Instant::now();
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Haproxy {
                        child,
                        base: format!("http://127.0.0.1:{port}"),
                        log,
                    };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "haproxy never accepted a connection: {}",
                    log.lock().unwrap()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("haproxy did not start on any of 5 ports");
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The flags every node of a test cluster runs with: the shared store, the balancer trusted,
/// no post rate limits (every client comes from 127.0.0.1, so the per-address bucket would be
/// shared by all of them), plain HTTP.
pub fn node_args(redis_url: &str) -> Vec<String> {
    [
        "--no-tls",
        "--store",
        redis_url,
        "--trusted-proxy",
        "127.0.0.1/32",
        "--post-rate",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One Redis, `n` nodes, one HAProxy.
pub struct Cluster {
    pub haproxy: Haproxy,
    pub nodes: Vec<Server>,
    pub redis: Redis,
}

impl Cluster {
    pub fn start(n: usize, persistent: bool, extra: &[&str]) -> Cluster {
        let redis = if persistent {
            Redis::start()
        } else {
            Redis::start_volatile()
        };
        let mut args = node_args(&redis.url());
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let nodes: Vec<Server> = (0..n).map(|_| Server::start(&args)).collect();
        let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
        let haproxy = Haproxy::start(&bases);
        Cluster {
            haproxy,
            nodes,
            redis,
        }
    }

    /// The balancer's `http://` base.
    pub fn lb(&self) -> String {
        self.haproxy.base.clone()
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            out.push_str(&format!("----- node {i} (pid {}) -----\n", node.pid()));
            // What it said about trouble, then its last lines.
            out.push_str(&tail(&warnings(&node.stderr()), 40));
            out.push_str("  ... last lines:\n");
            out.push_str(&tail(&node.stderr(), 8));
        }
        out.push_str("----- haproxy -----\n");
        out.push_str(&tail(&self.haproxy.log(), 30));
        out.push_str("----- redis -----\n");
        out.push_str(&tail(&self.redis.log(), 12));
        out
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
    out.push('\n');
    out
}

/// Log lines of `text` at WARN or ERROR (what a node said about trouble).
pub fn warnings(text: &str) -> String {
    text.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// An HTTP client with short timeouts.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// `POST base/path` `{user, text, key}`: the status and JSON body (`Err` when no HTTP answer
/// came: the connection failed or broke).
pub async fn post_msg(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    user: &str,
    text: &str,
    key: Option<&str>,
) -> Result<(u16, Value), String> {
    let mut body = json!({"user": user, "text": text});
    if let Some(key) = key {
        body["key"] = json!(key);
    }
    let res = http
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = res.status().as_u16();
    let text = res.text().await.map_err(|e| format!("{e:?}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok((status, body))
}

/// Posts and expects `200 {"status":"ok","id"}`: the id.
pub async fn post_ok(base: &str, user: &str, text: &str) -> u64 {
    let (status, body) = post_msg(&http(), base, "/msgs", user, text, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["id"].as_u64().unwrap()
}

/// A message as a test compares it: (id, text).
pub type Seen = (u64, String);

fn seen(m: &Value) -> Seen {
    (
        m["id"].as_u64().unwrap_or_else(|| panic!("no id: {m}")),
        m["text"].as_str().unwrap().to_owned(),
    )
}

/// The messages of a list (`msg`, newest first), oldest first.
fn oldest_first(list: &Value) -> Vec<Seen> {
    let mut v: Vec<Seen> = list["msg"]
        .as_array()
        .unwrap_or_else(|| panic!("no msg list: {list}"))
        .iter()
        .map(seen)
        .collect();
    v.reverse();
    v
}

/// The room's whole history (every message still kept, oldest first) and its epoch, read by
/// paging `GET /poll?since=0` until a page comes without `more`.
pub async fn history(base: &str) -> (Vec<Seen>, String) {
    let http = http();
    let mut since = 0;
    let mut all = Vec::new();
    loop {
        let page: Value = http
            .get(format!("{base}/poll?since={since}&timeout=0"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.extend(oldest_first(&page));
        since = page["last"].as_u64().unwrap();
        if page["more"] != true {
            return (all, page["epoch"].as_str().unwrap().to_owned());
        }
    }
}

/// Waits until `check` answers true (polling every 20 ms), failing with `what` after
/// `within`.
pub async fn wait_until<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "{what} (waited {within:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET base/readyz`: the status (0 when no answer).
pub async fn readyz(base: &str) -> u16 {
    match http().get(format!("{base}/readyz")).send().await {
        Ok(res) => res.status().as_u16(),
        Err(_) => 0,
    }
}

/// What a reader saw.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Which reader (transport and number).
    pub name: String,
    /// Every message shown, in the order shown (snapshot transports: each new one once).
    pub got: Vec<Seen>,
    /// Anything else worth reporting: resets, closes, errors, out-of-order snapshots.
    pub notes: Vec<String>,
    /// The connection ended (closed by the server, broke) before the reader was done.
    pub ended: bool,
    /// The epoch of the newest list or notice it was shown.
    pub epoch: String,
}

impl Outcome {
    fn note(&mut self, s: impl Into<String>) {
        let mut s: String = s.into();
        if s.len() > 240 {
            let mut end = 240;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s.push_str("...");
        }
        self.notes.push(s);
    }

    /// The newest id shown.
    pub fn last(&self) -> u64 {
        self.got.last().map(|m| m.0).unwrap_or(0)
    }

    /// Adds the messages of a snapshot (newest first): those past what was shown, checking
    /// the ones already shown agree.
    fn snapshot(&mut self, list: &Value) {
        let msgs = oldest_first(list);
        let last = self.last();
        if let Some(newest) = msgs.last() {
            if newest.0 < last {
                self.note(format!(
                    "a snapshot went back: newest {} after {last}",
                    newest.0
                ));
            }
        }
        for m in msgs {
            if m.0 > last {
                self.got.push(m);
            } else if let Ok(i) = self.got.binary_search_by_key(&m.0, |s| s.0) {
                if self.got[i] != m {
                    self.note(format!("a snapshot changed {:?} into {m:?}", self.got[i]));
                }
            }
        }
    }
}

/// The transports a reader can follow the room with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// WebSocket, `rtchat.v1`: `history`, then `msg` frames.
    Ws,
    /// Long polling: `GET /poll`, then `GET /poll?since=&epoch=` in a loop.
    LongPoll,
    /// Short polling: `GET /poll?since=&epoch=&timeout=0` every 100 ms.
    ShortPoll,
    /// Server-Sent Events: `GET /events`.
    Sse,
    /// The `/msgs` stream of snapshots.
    Stream,
}

/// A reader in a task of its own: follows the room at `base` until it has seen `target`
/// (once the test sets it), or until its deadline.
pub struct Reader {
    /// Told once the reader is subscribed (it got its first answer).
    pub ready: tokio::sync::oneshot::Receiver<()>,
    pub task: tokio::task::JoinHandle<Outcome>,
}

/// Where a reader starts: fresh, or from a position.
#[derive(Debug, Clone, Default)]
pub struct From {
    pub since: Option<u64>,
    pub epoch: Option<String>,
}

impl Reader {
    pub fn spawn(
        kind: Kind,
        name: String,
        base: String,
        from: From,
        target: watch::Receiver<u64>,
        within: Duration,
    ) -> Reader {
        let (tx, ready) = tokio::sync::oneshot::channel();
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Outcome {
            name,
            ..Outcome::default()
        };
        let task = tokio::spawn(async move {
            let run = async {
                match kind {
                    Kind::Ws => read_ws(&base, from, target, tx, &mut out).await,
                    Kind::LongPoll => read_poll(&base, from, target, tx, &mut out, false).await,
                    Kind::ShortPoll => read_poll(&base, from, target, tx, &mut out, true).await,
                    Kind::Sse => read_sse(&base, from, target, tx, &mut out).await,
                    Kind::Stream => read_stream(&base, from, target, tx, &mut out).await,
                }
            };
            if tokio::time::timeout_at(deadline, run).await.is_err() {
                out.note("the deadline passed before it saw the target");
            }
            out
        });
        Reader { ready, task }
    }
}

/// Whether `out` has seen the target (once set).
fn done(out: &Outcome, target: &watch::Receiver<u64>) -> bool {
    let t = *target.borrow();
    t > 0 && out.last() >= t
}

/// Waits until the target is reached or changes.
async fn target_changed(target: &mut watch::Receiver<u64>) {
    if target.changed().await.is_err() {
        std::future::pending::<()>().await
    }
}

/// The query of a position: `since=ID&epoch=E`.
fn position_query(from: &From) -> String {
    let mut q = Vec::new();
    if let Some(since) = from.since {
        q.push(format!("since={since}"));
    }
    if let Some(epoch) = &from.epoch {
        q.push(format!("epoch={epoch}"));
    }
    q.join("&")
}

/// Opens a `rtchat.v1` WebSocket at `ws://.../ws?QUERY`.
pub async fn ws_open(base: &str, query: &str) -> common::Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("{}/ws?{query}", base.replacen("http://", "ws://", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "rtchat.v1".parse().unwrap());
    let (ws, res) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(req),
    )
    .await
    .expect("handshake within 10 s")
    .unwrap_or_else(|e| panic!("WebSocket handshake with {base} failed: {e:?}"));
    assert_eq!(res.headers()["sec-websocket-protocol"], "rtchat.v1");
    ws
}

async fn read_ws(
    base: &str,
    from: From,
    mut target: watch::Receiver<u64>,
    ready: tokio::sync::oneshot::Sender<()>,
    out: &mut Outcome,
) {
    let mut ws = ws_open(base, &position_query(&from)).await;
    let mut ready = Some(ready);
    loop {
        if done(out, &target) {
            let _ = ws.close(None).await;
            return;
        }
        let frame = tokio::select! {
            frame = ws.next() => frame,
            _ = target_changed(&mut target) => continue,
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(c))) => {
                out.note(format!("closed by the server: {c:?}"));
                out.ended = true;
                return;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                out.note(format!("the socket broke: {e}"));
                out.ended = true;
                return;
            }
            None => {
                out.note("the socket ended without a close frame");
                out.ended = true;
                return;
            }
        };
        let f: Value = serde_json::from_str(text.as_str()).unwrap();
        match f["type"].as_str().unwrap_or("") {
            "history" => {
                out.epoch = f["epoch"].as_str().unwrap().to_owned();
                out.snapshot(&f);
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            "msg" => {
                let m = seen(&f["msg"]);
                if m.0 <= out.last() {
                    out.note(format!("msg {m:?} after {}", out.last()));
                }
                out.got.push(m);
            }
            "resumed" => {
                out.epoch = f["epoch"].as_str().unwrap().to_owned();
                out.note(format!("resumed {f}"));
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
            "reset" | "truncated" | "error" => out.note(format!("{f}")),
            _ => {}
        }
    }
}

async fn read_poll(
    base: &str,
    from: From,
    mut target: watch::Receiver<u64>,
    ready: tokio::sync::oneshot::Sender<()>,
    out: &mut Outcome,
    short: bool,
) {
    let http = http();
    let mut ready = Some(ready);
    let (mut since, mut epoch) = match from.since {
        Some(since) => (since, from.epoch.clone().unwrap_or_default()),
        None => {
            let snap: Value = http
                .get(format!("{base}/poll"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            out.snapshot(&snap);
            (
                snap["last"].as_u64().unwrap(),
                snap["epoch"].as_str().unwrap().to_owned(),
            )
        }
    };
    out.epoch = epoch.clone();
    if let Some(tx) = ready.take() {
        let _ = tx.send(());
    }
    let timeout = if short { 0 } else { 5 };
    loop {
        if done(out, &target) {
            return;
        }
        let url = format!("{base}/poll?since={since}&epoch={epoch}&timeout={timeout}");
        let res = tokio::select! {
            res = http.get(url).send() => res,
            _ = target_changed(&mut target) => continue,
        };
        let page: Value = match res {
            Ok(res) if res.status() == 200 => res.json().await.unwrap(),
            Ok(res) => {
                let status = res.status();
                out.note(format!(
                    "{status}: {}",
                    res.text().await.unwrap_or_default()
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                out.note(format!("poll failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if page["reset"] == true {
            out.note(format!("reset: {page}"));
            out.snapshot(&page);
        } else {
            for m in oldest_first(&page) {
                if m.0 <= out.last() {
                    out.note(format!("page repeats {m:?} after {}", out.last()));
                }
                out.got.push(m);
            }
        }
        since = page["last"].as_u64().unwrap();
        epoch = page["epoch"].as_str().unwrap().to_owned();
        out.epoch = epoch.clone();
        if short && page["more"] != true && page["msg"].as_array().unwrap().is_empty() {
            // Short polling: ask again at an interval.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = target_changed(&mut target) => {}
            }
        }
    }
}

/// Reads `res` chunk by chunk into `buf`; false when the body ended or broke.
async fn more(res: &mut reqwest::Response, buf: &mut String, out: &mut Outcome) -> bool {
    match res.chunk().await {
        Ok(Some(chunk)) => {
            buf.push_str(std::str::from_utf8(&chunk).unwrap());
            true
        }
        Ok(None) => {
            out.note("the server ended the stream");
            out.ended = true;
            false
        }
        Err(e) => {
            out.note(format!("the stream broke: {e}"));
            out.ended = true;
            false
        }
    }
}

async fn read_sse(
    base: &str,
    from: From,
    mut target: watch::Receiver<u64>,
    ready: tokio::sync::oneshot::Sender<()>,
    out: &mut Outcome,
) {
    let mut req = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("{base}/events"));
    if let Some(since) = from.since {
        let id = match &from.epoch {
            Some(e) => format!("{e}:{since}"),
            None => since.to_string(),
        };
        req = req.header("last-event-id", id);
    }
    let mut res = req.send().await.unwrap();
    assert_eq!(res.status(), 200, "GET /events at {base}");
    let mut ready = Some(ready);
    let mut buf = String::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut event, mut id, mut data) = (None, None, None);
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                match field {
                    "event" => event = Some(value),
                    "id" => id = Some(value),
                    "data" => data = Some(value),
                    "retry" => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    _ => {}
                }
            }
            match (event.as_deref(), data) {
                (None, Some(data)) => {
                    let m: Value = serde_json::from_str(&data).unwrap();
                    let m = seen(&m);
                    let id = id.unwrap_or_default();
                    if let Some((e, _)) = id.split_once(':') {
                        out.epoch = e.to_owned();
                    }
                    if m.0 <= out.last() {
                        out.note(format!("event {m:?} after {}", out.last()));
                    }
                    out.got.push(m);
                }
                (Some(name), data) => {
                    out.note(format!("event {name}: {}", data.unwrap_or_default()));
                }
                _ => {}
            }
        }
        if done(out, &target) {
            return;
        }
        let go_on = tokio::select! {
            go_on = more(&mut res, &mut buf, out) => go_on,
            _ = target_changed(&mut target) => true,
        };
        if !go_on {
            return;
        }
    }
}

async fn read_stream(
    base: &str,
    from: From,
    mut target: watch::Receiver<u64>,
    ready: tokio::sync::oneshot::Sender<()>,
    out: &mut Outcome,
) {
    let q = position_query(&from);
    let mut res = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
        .get(format!("{base}/msgs?{q}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "GET /msgs at {base}");
    let mut ready = Some(ready);
    let mut buf = String::new();
    loop {
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..end + 1).collect();
            let list: Value = serde_json::from_str(line.trim()).unwrap();
            if list.get("msg").is_none() {
                continue;
            }
            out.epoch = list["epoch"].as_str().unwrap_or_default().to_owned();
            if list["reset"] == true {
                out.note(format!(
                    "reset: last {} epoch {}",
                    list["last"], list["epoch"]
                ));
            }
            out.snapshot(&list);
            if let Some(tx) = ready.take() {
                let _ = tx.send(());
            }
        }
        if done(out, &target) {
            return;
        }
        let go_on = tokio::select! {
            go_on = more(&mut res, &mut buf, out) => go_on,
            _ = target_changed(&mut target) => true,
        };
        if !go_on {
            return;
        }
    }
}

/// Checks that `out` saw exactly `want` (same ids, same texts, same order, each once); the
/// differences as a sentence.
pub fn compare(out: &Outcome, want: &[Seen]) -> Result<(), String> {
    if out.got == want {
        return Ok(());
    }
    let mut ids: Vec<u64> = out.got.iter().map(|m| m.0).collect();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    let dups = n - ids.len();
    let have: std::collections::HashSet<&Seen> = out.got.iter().collect();
    let missing: Vec<u64> = want
        .iter()
        .filter(|m| !have.contains(m))
        .map(|m| m.0)
        .collect();
    let wanted: std::collections::HashSet<&Seen> = want.iter().collect();
    let extra: Vec<&Seen> = out.got.iter().filter(|m| !wanted.contains(m)).collect();
    let first_diff = out
        .got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(n.min(want.len()));
    Err(format!(
        "{}: saw {n} messages, want {}; {dups} repeated; missing ids {:?}; not in the history {:?}; \
         first difference at position {first_diff} (saw {:?}, want {:?}); notes {:?}",
        out.name,
        want.len(),
        &missing[..missing.len().min(20)],
        &extra[..extra.len().min(10)],
        out.got.get(first_diff),
        want.get(first_diff),
        out.notes
    ))
}

/// The local ports of `pid`'s established TCP connections to `port` (with `ss`).
pub fn connections_to(pid: u32, port: u16) -> Vec<u16> {
    let out = Command::new("ss")
        .args(["-Htnp", "state", "established"])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("pid={pid},")))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // Recv-Q Send-Q Local Peer Process
            let local = cols.get(2)?;
            let peer = cols.get(3)?;
            (peer.rsplit(':').next()? == port.to_string())
                .then(|| local.rsplit(':').next()?.parse().ok())?
        })
        .collect()
}

/// Redis' client id of `pid`'s pub/sub connection (from `CLIENT LIST TYPE pubsub`, matched
/// by the connection's port), if it has one now.
pub fn pubsub_client_of(redis: &Redis, pid: u32) -> Option<String> {
    let ports = connections_to(pid, redis.port);
    let list = redis.cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]).text();
    list.lines().find_map(|line| {
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name).map(str::to_owned))
        };
        let port: u16 = field("addr=")?.rsplit(':').next()?.parse().ok()?;
        ports.contains(&port).then(|| field("id="))?
    })
}

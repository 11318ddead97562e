//! Starts a real `rtchat` process on an ephemeral port for integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running rtchat server, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub port: u16,
    /// `https://127.0.0.1:PORT`, unless started with `--no-tls`.
    pub tls_base: Option<String>,
    /// The server's own `--data-dir` (unless the test named one).
    pub data_dir: PathBuf,
    /// `http://127.0.0.1:PORT/metrics`, unless started without metrics.
    pub metrics_url: Option<String>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
}

/// A fresh, empty folder under cargo's temporary directory for integration tests.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// Starts `rtchat serve --listen 127.0.0.1:0 ARGS...` and waits for its ready line.
    /// Metrics are served on `--metrics-listen 127.0.0.1:0` unless `args` name another
    /// address (see [`Server::metrics_url`]).
    pub fn start(args: &[&str]) -> Server {
        Server::start_with_env(args, &[])
    }

    /// Like [`Server::start`], without `--metrics-listen` (rtchat's default).
    pub fn start_without_metrics(args: &[&str]) -> Server {
        Server::launch(args, &[], |_| {}, false)
    }

    /// Like [`Server::start`] with extra environment variables; with `PORT` among them the
    /// server picks its address itself.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::start_with(args, env, |_| {})
    }

    /// Like [`Server::start_with_env`], with a last say on the command (resource limits...).
    pub fn start_with(
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        Server::launch(args, env, configure, true)
    }

    fn launch(
        args: &[&str],
        env: &[(&str, &str)],
        configure: impl FnOnce(&mut Command),
        metrics: bool,
    ) -> Server {
        let mut all = vec!["serve"];
        // Tests read counters from /metrics (see `stat`).
        if metrics && !args.contains(&"--metrics-listen") {
            all.extend(["--metrics-listen", "127.0.0.1:0"]);
        }
        let metrics = metrics || args.contains(&"--metrics-listen");
        if !args.contains(&"--listen") && !env.iter().any(|(k, _)| *k == "PORT") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        let tls = !args.contains(&"--no-tls");
        if tls && !args.contains(&"--tls-listen") {
            all.extend(["--tls-listen", "127.0.0.1:0"]);
        }
        // SIGTERM drains for 5 + 10 s by default: tests that stop a server with `terminate`
        // want it gone at once, so they get no drain unless they ask for one (see
        // tests/it/drain.rs).
        if !args.contains(&"--drain-delay") {
            all.extend(["--drain-delay", "0"]);
        }
        if !args.contains(&"--drain-seconds") {
            all.extend(["--drain-seconds", "0"]);
        }
        let data_dir = match args.iter().position(|a| *a == "--data-dir") {
            Some(i) => PathBuf::from(args[i + 1]),
            None => temp_dir("data"),
        };
        let data_dir_arg = data_dir.to_str().unwrap().to_owned();
        if !args.contains(&"--data-dir") {
            all.extend(["--data-dir", &data_dir_arg]);
        }
        all.extend(args);
        let mut cmd = rtchat(&all, env);
        configure(&mut cmd);
        let mut child = cmd.spawn().expect("spawn rtchat");
        let stderr = drain_stderr(&mut child);
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = loop {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("rtchat listening on ") => break line,
                Some(Ok(_)) => continue,
                _ => panic!(
                    "rtchat exited before it was ready: {}",
                    stderr.lock().unwrap()
                ),
            }
        };
        let tls_base = if tls {
            match lines.next() {
                Some(Ok(line)) if line.starts_with("rtchat listening on https://") => {
                    Some(line["rtchat listening on ".len()..].trim().to_owned())
                }
                other => panic!("expected the https line, got {other:?}"),
            }
        } else {
            None
        };
        // The metrics line comes last of the ready lines (after the HTTP/3 one, if any).
        let metrics_url = metrics.then(|| loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("rtchat metrics on ") {
                        break url.trim().to_owned();
                    }
                }
                other => panic!("expected the metrics line, got {other:?}"),
            }
        });
        // Keep draining stdout so the server never blocks on a full pipe.
        let stdout = Arc::new(Mutex::new(String::new()));
        let sink = stdout.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        let base = line["rtchat listening on ".len()..].trim().to_owned();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Server {
            child,
            base,
            port,
            tls_base,
            data_dir,
            metrics_url,
            stderr,
            stdout,
        }
    }

    /// What the server printed on stdout after its ready lines.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// `http://ADDR/metrics` of the metrics listener.
    pub fn metrics_url(&self) -> &str {
        self.metrics_url
            .as_deref()
            .expect("started without --metrics-listen")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// An `https://` URL on the TLS port.
    pub fn tls_url(&self, path: &str) -> String {
        format!("{}{}", self.tls_base.as_ref().expect("TLS is on"), path)
    }

    /// The generated certificate's PEM (in the server's data dir).
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(self.data_dir.join("tls/cert.pem")).expect("generated certificate")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the server's log contains `needle`, and returns the log.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let start = Instant::now();
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the log never showed {needle:?}: {log}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends SIGTERM and waits up to `within` for the process to exit.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        self.signal("TERM");
        self.wait_exit(within)
    }

    /// Sends the signal `name` (`TERM`, `INT`...) without waiting.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits up to `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `Command` for the rtchat binary under test, with piped output.
pub fn rtchat(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtchat"));
    cmd.args(args)
        .env_remove("PORT")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn drain_stderr(child: &mut Child) -> Arc<Mutex<String>> {
    let log = Arc::new(Mutex::new(String::new()));
    let stderr = child.stderr.take().expect("stderr");
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut log = sink.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    log
}

/// An HTTP client for tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Posts `{user, text}` to `/poll` and returns the response.
pub async fn post(server: &Server, user: &str, text: &str) -> reqwest::Response {
    client()
        .post(server.url("/poll"))
        .json(&serde_json::json!({ "user": user, "text": text }))
        .send()
        .await
        .unwrap()
}

/// `GET path` as JSON, asserting a 200.
pub async fn get_json(server: &Server, path: &str) -> serde_json::Value {
    let res = client().get(server.url(path)).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET {path}");
    res.json().await.unwrap()
}

/// The newest message id of `general` (every `/poll` answer carries it as `last`).
pub async fn last_id(server: &Server) -> u64 {
    get_json(server, "/poll").await["last"].as_u64().unwrap()
}

/// The server's `/metrics` text (Prometheus text format).
pub async fn metrics_text(server: &Server) -> String {
    let res = client().get(server.metrics_url()).send().await.unwrap();
    assert_eq!(res.status(), 200, "GET /metrics");
    res.text().await.unwrap()
}

/// The value of the sample `name{labels}` in a metrics text (labels in any order; a sample
/// with other labels too does not match), if it is there. A small reader for the tests' own
/// checks; tests/it/metrics.rs parses with Prometheus' Python client instead.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (sample_name, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let mut found: Vec<(&str, &str)> = rest
                .split(',')
                .filter(|p| !p.is_empty())
                .filter_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    Some((k, v.trim_matches('"')))
                })
                .collect();
            let mut want = labels.to_vec();
            found.sort();
            want.sort();
            (sample_name == name && found == want).then(|| value.parse().ok())?
        })
}

/// One metric from `/metrics`.
pub async fn metric(server: &Server, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = metrics_text(server).await;
    sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
}

/// What `/stats` reported before it retired, read from `/metrics`: `subscribers` (clients'
/// hub subscriptions) or `parked_polls` (long polls held).
fn stat_metric(field: &str) -> (&'static str, &'static [(&'static str, &'static str)]) {
    match field {
        "subscribers" => ("rtchat_subscribers", &[]),
        "parked_polls" => ("rtchat_clients", &[("transport", "longpoll")]),
        other => panic!("no such stat {other:?} (subscribers, parked_polls)"),
    }
}

/// A count the server keeps: `subscribers` or `parked_polls` (see [`stat_metric`]).
pub async fn stat(server: &Server, field: &str) -> u64 {
    let (name, labels) = stat_metric(field);
    metric(server, name, labels).await as u64
}

/// Waits until [`stat`] shows `field` equal to `want` (the server's own count of parked
/// requests or subscribers), failing after 10 s.
pub async fn wait_for_stat(server: &Server, field: &str, want: u64) {
    let (name, labels) = stat_metric(field);
    wait_for_metric(server, name, labels, want as f64).await
}

/// Waits until the metric `name{labels}` equals `want`, failing after 10 s.
pub async fn wait_for_metric(server: &Server, name: &str, labels: &[(&str, &str)], want: f64) {
    let start = Instant::now();
    loop {
        let text = metrics_text(server).await;
        let got = sample(&text, name, labels);
        if got == Some(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{name} {labels:?} never reached {want} (last {got:?}):\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A WebSocket client connection (tokio-tungstenite) to a test server.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The `ws://` URL of `path` on the plain port.
pub fn ws_url(server: &Server, path: &str) -> String {
    server.url(path).replacen("http://", "ws://", 1)
}

/// Opens a WebSocket offering `protocols` (and sending `origin`), returning the socket and the
/// subprotocol the server picked.
pub async fn ws_connect_with(
    server: &Server,
    path: &str,
    protocols: &[&str],
    origin: Option<&str>,
) -> (Ws, Option<String>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ws_url(server, path).into_client_request().unwrap();
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    if let Some(origin) = origin {
        req.headers_mut().insert("origin", origin.parse().unwrap());
    }
    let (ws, res) = tokio_tungstenite::connect_async(req)
        .await
        .expect("handshake");
    let protocol = res
        .headers()
        .get("sec-websocket-protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    (ws, protocol)
}

/// Opens a WebSocket offering `protocols`.
pub async fn ws_connect(server: &Server, path: &str, protocols: &[&str]) -> Ws {
    ws_connect_with(server, path, protocols, None).await.0
}

/// The next text frame as JSON (skipping pings), failing after 20 s.
pub async fn ws_json(ws: &mut Ws) -> serde_json::Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
            .expect("the socket stays open")
            .expect("a valid frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

impl Server {
    /// `kill -9`: the process dies at once, with whatever it had not written.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python of the venv `scripts/setup` makes for tests/pyclients (`RTCHAT_PY_VENV`, else
/// `~/.cache/rtchat-pyclients/venv`); a missing venv fails the test.
pub fn pyclients_python() -> PathBuf {
    let venv = std::env::var_os("RTCHAT_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/rtchat-pyclients/venv")
        });
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "{} is missing: run scripts/setup (installs tests/pyclients/requirements.txt)",
        py.display()
    );
    py
}

/// Runs `tests/pyclients/SCRIPT ARGS...`, which prints one JSON line; a failure fails the test
/// with its output.
pub fn run_py(script: &str, args: &[&str]) -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyclients/");
    let out = Command::new(pyclients_python())
        .arg(format!("{path}{script}"))
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// The ids of an answer's `msg` list (newest first, as the server lists them).
pub fn ids(body: &serde_json::Value) -> Vec<u64> {
    body["msg"]
        .as_array()
        .unwrap_or_else(|| panic!("no msg list: {body}"))
        .iter()
        .map(|m| m["id"].as_u64().expect("id is a number"))
        .collect()
}

/// The texts of an answer's `msg` list.
pub fn texts(body: &serde_json::Value) -> Vec<String> {
    body["msg"]
        .as_array()
        .unwrap_or_else(|| panic!("no msg list: {body}"))
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Sends `req` and reads its body as JSON (whatever the status).
pub async fn fetch_json(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send().await.unwrap().json().await.unwrap()
}

/// A long poll of `url` (`/poll?since=...`) held in a task of its own: its JSON answer.
pub fn spawn_poll(url: String) -> tokio::task::JoinHandle<serde_json::Value> {
    tokio::spawn(fetch_json(client().get(url)))
}

/// One parsed SSE block: a comment, or an event with its fields.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SseBlock {
    pub comment: Option<String>,
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
}

impl SseBlock {
    /// `data:` as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.data.as_deref().expect("data")).unwrap()
    }
}

/// Reads an SSE response block by block, as `EventSource` would.
pub struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    /// Sends `req`, asserting a `200` event stream.
    pub async fn open(req: reqwest::RequestBuilder) -> Sse {
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        assert_eq!(res.headers()["cache-control"], "no-cache");
        Sse {
            res,
            buf: String::new(),
        }
    }

    /// `GET path` as an event stream.
    pub async fn get(server: &Server, path: &str) -> Sse {
        Sse::open(client().get(server.url(path))).await
    }

    /// The next block, whatever it is (failing after 10 s).
    pub async fn block(&mut self) -> SseBlock {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut block = SseBlock::default();
                for line in raw.lines().filter(|l| !l.is_empty()) {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "" => block.comment = Some(value),
                        "event" => block.event = Some(value),
                        "id" => block.id = Some(value),
                        "data" => block.data = Some(value),
                        "retry" => block.retry = Some(value),
                        other => panic!("unexpected field {other:?}"),
                    }
                }
                return block;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.res.chunk())
                .await
                .expect("an event within 10 s")
                .unwrap()
                .expect("the stream stays open");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event (not a comment, not the `retry:` hint).
    pub async fn event(&mut self) -> SseBlock {
        loop {
            let block = self.block().await;
            if block.comment.is_none() && block.retry.is_none() {
                return block;
            }
        }
    }

    /// The next message event, as `(id, epoch, message)`; any other event fails.
    pub async fn message(&mut self) -> (u64, String, serde_json::Value) {
        let block = self.event().await;
        assert_eq!(
            block.event, None,
            "messages use the default event type: {block:?}"
        );
        // `id:` is EPOCH:ID.
        let full = block.id.clone().expect("id");
        let (epoch, id) = full.split_once(':').expect("id: is EPOCH:ID");
        assert_eq!(epoch.len(), 8, "{full}");
        let id: u64 = id.parse().unwrap();
        let msg = block.json();
        assert_eq!(msg["id"], id, "id: is the message id");
        (id, epoch.to_owned(), msg)
    }

    /// Waits for the server to end the stream (after what is already buffered), failing
    /// if anything but comments comes first or it stays open 10 s.
    pub async fn end(&mut self) {
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.res.chunk())
                .await
                .expect("the stream ends within 10 s")
                .unwrap();
            match chunk {
                None => return,
                Some(c) => assert!(c.starts_with(b":"), "more after the end: {c:?}"),
            }
        }
    }

    /// The next event named `name` (skipping every other event), its data as JSON.
    pub async fn named(&mut self, name: &str) -> serde_json::Value {
        loop {
            let block = self.event().await;
            if block.event.as_deref() == Some(name) {
                return block.json();
            }
        }
    }
}

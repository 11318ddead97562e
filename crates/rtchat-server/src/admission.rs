//! How many connections rtchat holds: at most `--max-connections` in all and
//! `--max-connections-per-ip` from one address (trusted proxies exempt: one proxy carries many
//! clients). A connection beyond them is turned away at accept, before it costs a task or a
//! buffer: on the plain listener with a short `503` (JSON reason and `Retry-After`), on the
//! TLS listener (where answering would first cost a handshake) by closing it. Connections
//! already open are never touched.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::client_addr::TrustedProxies;
use crate::metrics::Metrics;

/// Seconds a refused client is told to wait (`Retry-After`).
const RETRY_AFTER_SECS: u64 = 5;
/// Refusals being answered at once; past this, refused connections are closed unanswered,
/// so a flood cannot make rtchat spend more on refusing than on serving.
const MAX_ANSWERING: usize = 64;
/// How long a refused connection may take to send its request and read the answer.
const ANSWER_TIME: Duration = Duration::from_secs(1);

/// The connection caps and the live counts, shared by every listener.
pub struct Admission {
    max_total: usize,
    /// 0: no per-address cap.
    max_per_ip: usize,
    trusted: TrustedProxies,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    answering: Arc<Semaphore>,
    refusals: RefusalLog,
    /// Counts refusals, and the connections of each protocol (for the listeners).
    metrics: Arc<Metrics>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total(usize),
    PerIp(usize),
}

impl Refused {
    fn reason(self) -> String {
        match self {
            Refused::Total(max) => format!(
                "the server is at its connection limit ({max}, --max-connections); try again shortly"
            ),
            Refused::PerIp(max) => format!(
                "too many connections from your address (at most {max}, --max-connections-per-ip); close some and try again"
            ),
        }
    }
}

/// One admitted connection; dropping it gives its place back.
pub struct Admitted {
    admission: Arc<Admission>,
    /// Counted against its address (untrusted peers, with a per-address cap).
    ip: Option<IpAddr>,
}

impl Admitted {
    /// The server's metrics, where the connection is counted by protocol once known.
    pub fn metrics(&self) -> &Metrics {
        &self.admission.metrics
    }
}

/// A connection's place under the caps, shared: the connection's task holds it, and so does
/// every HTTP/1.1 request on it (in its extensions), so a WebSocket that outlives its HTTP
/// exchange (rtchat's, or a Socket.IO session, whose request head engineioxide keeps for the
/// session's life) keeps the very same place — never a second one, not even for a moment —
/// and the place is given back when the last holder lets go.
#[derive(Clone)]
pub struct ConnectionSlot(Arc<Admitted>);

impl ConnectionSlot {
    /// Shares a place.
    pub fn new(admitted: Admitted) -> ConnectionSlot {
        ConnectionSlot(Arc::new(admitted))
    }

    /// The server's metrics, where the connection is counted by protocol once known.
    pub fn metrics(&self) -> &Metrics {
        self.0.metrics()
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.admission.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut per_ip = self.admission.lock_per_ip();
            if let Some(n) = per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

impl Admission {
    /// The caps (`max_per_ip` 0: none), who is exempt, and where refusals are counted.
    pub fn new(
        max_total: usize,
        max_per_ip: usize,
        trusted: TrustedProxies,
        metrics: Arc<Metrics>,
    ) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_ip,
            trusted,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            answering: Arc::new(Semaphore::new(MAX_ANSWERING)),
            refusals: RefusalLog::default(),
            metrics,
        })
    }

    /// The server's metrics, where the listeners count their connections by protocol.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn lock_per_ip(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.per_ip.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection from `ip`, or says why there is none.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, Refused> {
        let ip = ip.to_canonical();
        if self.total.fetch_add(1, Ordering::Relaxed) >= self.max_total {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(Refused::Total(self.max_total));
        }
        let counted = self.max_per_ip > 0 && !self.trusted.contains(ip);
        if counted {
            let mut per_ip = self.lock_per_ip();
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= self.max_per_ip {
                drop(per_ip);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(Refused::PerIp(self.max_per_ip));
            }
            *n += 1;
        }
        Ok(Admitted {
            admission: self.clone(),
            ip: counted.then_some(ip),
        })
    }

    /// Records a refused connection that is turned away elsewhere (a QUIC connection, which
    /// quinn refuses), for the refusal log.
    pub fn note_refusal(&self, why: Refused) {
        self.metrics.connection_refused(why);
        self.refusals.note(why);
    }

    /// Turns a refused connection away: answered with a `503` when `answer` is set (plain
    /// HTTP) and few refusals are being answered already, else simply closed.
    pub fn turn_away(&self, stream: TcpStream, why: Refused, answer: bool) {
        self.metrics.connection_refused(why);
        self.refusals.note(why);
        if !answer {
            return;
        }
        let Ok(permit) = self.answering.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(ANSWER_TIME, answer_503(stream, why)).await;
            drop(permit);
        });
    }
}

/// Answers the refused connection's request with the `503` (hyper reads the request first,
/// so every HTTP/1.1 client takes the answer for what it is), then closes it.
async fn answer_503(stream: TcpStream, why: Refused) {
    let body = Bytes::from(serde_json::json!({ "error": why.reason() }).to_string());
    let service = hyper::service::service_fn(move |_req: hyper::Request<hyper::body::Incoming>| {
        let body = body.clone();
        async move {
            hyper::Response::builder()
                .status(hyper::StatusCode::SERVICE_UNAVAILABLE)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .header(hyper::header::RETRY_AFTER, RETRY_AFTER_SECS)
                .body(http_body_util::Full::new(body))
        }
    });
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(ANSWER_TIME);
    let _ = http1.serve_connection(TokioIo::new(stream), service).await;
}

/// Logs refusals without flooding the log: the first of a burst at once, then a count at
/// most every ten seconds.
#[derive(Default)]
struct RefusalLog {
    since_logged: AtomicUsize,
    /// Milliseconds since `START` of the last line.
    last_ms: AtomicU64,
}

impl RefusalLog {
    fn note(&self, why: Refused) {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now = START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1;
        let count = self.since_logged.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since_logged.store(0, Ordering::Relaxed);
            tracing::warn!(refused = count, "connection refused: {}", why.reason());
        }
    }
}

/// `--max-connections` when none is given: what the open-file limit leaves after room for
/// the database, listeners and logs.
pub fn default_max_connections(nofile: u64) -> usize {
    let limit = nofile.min(usize::MAX as u64) as usize;
    limit.saturating_sub(64).max(limit / 2).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_address_and_gives_places_back() {
        let trusted = TrustedProxies::new(vec!["127.0.0.2/32".parse().unwrap()]);
        let admission = Admission::new(5, 2, trusted, Arc::new(Metrics::new()));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let proxy: IpAddr = "127.0.0.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some(Refused::PerIp(2)));
        // The same address written as IPv4-mapped IPv6 is the same address.
        assert_eq!(
            admission.admit("::ffff:127.0.0.1".parse().unwrap()).err(),
            Some(Refused::PerIp(2))
        );
        let proxied: Vec<_> = (0..3).map(|_| admission.admit(proxy).unwrap()).collect();
        assert_eq!(admission.open(), 5);
        assert_eq!(admission.admit(proxy).err(), Some(Refused::Total(5)));
        drop(first);
        assert!(admission.admit(a).is_ok());
        drop(proxied);
        assert_eq!(admission.open(), 1);
        assert!(admission.lock_per_ip().get(&a).is_some());
    }

    #[test]
    fn default_leaves_room_for_the_servers_own_files() {
        assert_eq!(default_max_connections(20_000), 19_936);
        assert_eq!(default_max_connections(1024), 960);
        assert_eq!(default_max_connections(64), 32);
    }
}

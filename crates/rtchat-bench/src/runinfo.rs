//! What every result records about how it was measured: the rtchat build (version and git
//! commit, embedded by `build.rs`), the server's options, and the machine with its load
//! average at the start and the end of the run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// rtchat's version (the workspace's `rtchat` package).
pub const VERSION: &str = env!("RTCHAT_VERSION");
/// `git rev-parse --short HEAD` at build time, `-dirty` when tracked files differed from it,
/// `unknown` without git.
pub const COMMIT: &str = env!("RTCHAT_GIT_COMMIT");

/// What the server is known to run with.
pub const EXTERNAL_UNKNOWN: &str = "external server, options unknown";

/// How a result was measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunInfo {
    /// The bench's rtchat version.
    pub rtchat_version: String,
    /// The bench's git commit (see [`COMMIT`]).
    pub git_commit: String,
    /// The server measured.
    pub server: ServerInfo,
    /// The machine.
    pub machine: Machine,
}

/// The server measured and what the bench could learn of its options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerInfo {
    /// The bench started it (this very executable, so the same version and commit).
    pub started_by_bench: bool,
    /// Its command line: the bench's own for a server it started, else read from
    /// `/proc/PID/cmdline` with `--server-pid` (same machine), else none.
    pub argv: Option<Vec<String>>,
    /// Its executable (`/proc/PID/exe`), when known.
    pub exe: Option<String>,
    /// In words: where `argv` came from, or "external server, options unknown".
    pub options: String,
    /// Its `GET /config` answer, when it has one (rtchat's page settings: history, limits).
    pub config: Option<serde_json::Value>,
}

/// The machine the bench ran on (the server's too, for a loopback server).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs this process may use.
    pub cores: usize,
    /// `model name` of `/proc/cpuinfo`.
    pub cpu_model: Option<String>,
    /// `MemTotal` of `/proc/meminfo`, MiB.
    pub memory_mib: Option<u64>,
    /// The kernel (`/proc/sys/kernel/osrelease`).
    pub kernel: Option<String>,
    /// `/proc/loadavg`'s 1, 5 and 15 minute load averages when the run started.
    pub loadavg_start: Option<[f64; 3]>,
    /// The same when it ended.
    pub loadavg_end: Option<[f64; 3]>,
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

impl Machine {
    /// The machine now (`loadavg_start` read now, `loadavg_end` left for the end).
    pub fn read() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
        });
        let memory_mib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
            let kib: u64 = s
                .lines()
                .find(|l| l.starts_with("MemTotal:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some(kib / 1024)
        });
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            memory_mib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            loadavg_start: loadavg(),
            loadavg_end: None,
        }
    }

    /// One line: "2 cores, AMD EPYC 7B13, 23 GiB, Linux 6.18".
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} cores", self.cores)];
        parts.extend(self.cpu_model.clone());
        parts.extend(
            self.memory_mib
                .map(|m| format!("{:.0} GiB", m as f64 / 1024.0)),
        );
        parts.extend(self.kernel.as_ref().map(|k| format!("Linux {k}")));
        parts.join(", ")
    }

    /// "0.12 0.30 0.41 at the start, 1.90 0.70 0.52 at the end".
    pub fn load_summary(&self) -> String {
        let show = |l: Option<[f64; 3]>| {
            l.map_or_else(
                || "?".to_owned(),
                |[a, b, c]| format!("{a:.2} {b:.2} {c:.2}"),
            )
        };
        format!(
            "{} at the start, {} at the end (1, 5, 15 min)",
            show(self.loadavg_start),
            show(self.loadavg_end)
        )
    }
}

impl ServerInfo {
    /// A server the bench started: `argv` is its command line.
    pub fn spawned(argv: Vec<String>, addr: std::net::SocketAddr, host: &str) -> ServerInfo {
        ServerInfo {
            started_by_bench: true,
            exe: argv.first().cloned(),
            argv: Some(argv),
            options: "started by the bench (this build, RUST_LOG=warn): its command line"
                .to_owned(),
            config: fetch_config(addr, host),
        }
    }

    /// A server given by `--url`: its command line when its pid is known and readable here,
    /// and its `GET /config` if it answers one.
    pub fn external(pid: Option<u32>, addr: std::net::SocketAddr, host: &str) -> ServerInfo {
        let argv = pid.and_then(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            (!args.is_empty()).then_some(args)
        });
        let exe = pid.and_then(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.display().to_string())
        });
        let config = fetch_config(addr, host);
        let same_build = exe
            .as_deref()
            .is_some_and(|e| std::env::current_exe().is_ok_and(|me| me.display().to_string() == e));
        let options = match (&argv, &config) {
            (Some(_), _) if same_build => {
                "external server (--url) of this very build: its command line (/proc/PID/cmdline; environment not recorded)".to_owned()
            }
            (Some(_), _) => {
                "external server (--url): its command line (/proc/PID/cmdline; environment and version not recorded)".to_owned()
            }
            (None, Some(_)) => {
                "external server (--url): options unknown but for its GET /config".to_owned()
            }
            (None, None) => EXTERNAL_UNKNOWN.to_owned(),
        };
        ServerInfo {
            started_by_bench: false,
            argv,
            exe,
            options,
            config,
        }
    }

    /// One line for the human table.
    pub fn summary(&self) -> String {
        match &self.argv {
            Some(argv) => format!("{} ({})", argv.join(" "), self.options),
            None => self.options.clone(),
        }
    }
}

impl RunInfo {
    /// This build, `server`, and the machine now.
    pub fn new(server: ServerInfo, machine: Machine) -> RunInfo {
        RunInfo {
            rtchat_version: VERSION.to_owned(),
            git_commit: COMMIT.to_owned(),
            server,
            machine,
        }
    }

    /// Rows for the human tables.
    pub fn rows(&self, rows: &mut Vec<(&'static str, String)>) {
        rows.push((
            "rtchat",
            format!("{} (commit {})", self.rtchat_version, self.git_commit),
        ));
        rows.push(("server options", self.server.summary()));
        if let Some(config) = &self.server.config {
            rows.push(("server /config", config.to_string()));
        }
        rows.push(("machine", self.machine.summary()));
        rows.push(("load average", self.machine.load_summary()));
    }
}

/// `GET /config` as JSON, if the server answers it with a 200 within a second.
fn fetch_config(addr: std::net::SocketAddr, host: &str) -> Option<serde_json::Value> {
    let timeout = Duration::from_secs(1);
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    let request =
        format!("GET /config HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    // A read timeout or a reset ends the answer; what came so far is judged.
    let mut buf = [0u8; 8192];
    while answer.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        // One chunk is all a small JSON answer takes: skip its size line.
        body.split_once("\r\n")?.1
    } else {
        body
    };
    let mut de = serde_json::Deserializer::from_str(body).into_iter::<serde_json::Value>();
    match de.next()? {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_and_machine_are_known() {
        assert!(!VERSION.is_empty() && !COMMIT.is_empty());
        let m = Machine::read();
        assert!(m.cores > 0);
        assert!(m.summary().contains("cores"));
        assert!(m.load_summary().contains("at the end"));
    }

    #[test]
    fn an_unknown_external_server_says_so() {
        // A port nothing listens on: no /config, and no pid.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let s = ServerInfo::external(None, addr, "127.0.0.1");
        assert_eq!(s.options, EXTERNAL_UNKNOWN);
        assert!(s.argv.is_none() && s.config.is_none());
    }

    #[test]
    fn a_known_pid_gives_its_command_line() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let s = ServerInfo::external(Some(std::process::id()), addr, "127.0.0.1");
        let argv = s.argv.expect("this process's command line");
        assert!(!argv.is_empty());
        assert!(s.options.contains("command line"), "{}", s.options);
    }
}

//! A real `redis-server` for the unit tests: its own port and directory, stopped on drop.
//! Missing `redis-server` fails the test (scripts/setup installs it).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub(crate) struct RedisServer {
    child: Child,
    dir: std::path::PathBuf,
    pub port: u16,
}

impl RedisServer {
    /// Starts one and returns once it accepts connections.
    pub fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "rtchat-redis-unit-{}-{port}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--logfile", ""])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server must be installed (scripts/setup installs it)");
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in out.by_ref() {
            let line = line.expect("redis-server's output");
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        // Its later log lines are drained, so it never blocks on a full pipe.
        std::thread::spawn(move || out.for_each(drop));
        RedisServer { child, dir, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! Where the bench connects: a server given by `--url`, or one it spawns itself.

use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::process::{Child, Command, Stdio};

use tokio::net::{TcpSocket, TcpStream};

/// Connections per source address before the next 127.0.0.x is used: under rtchat's default
/// `--max-connections-per-ip` (256), so a loopback server with default limits takes the whole
/// load (and far under the 28,000 ephemeral ports per source/destination pair).
const PER_SOURCE: usize = 200;

/// The server under test.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its HTTP address.
    pub addr: SocketAddr,
    /// The `Host` header to send.
    pub host: String,
    /// Its process id, when known (for RSS and CPU figures).
    pub pid: Option<u32>,
}

impl Target {
    /// Parses `http://HOST:PORT[/...]`.
    pub fn from_url(url: &str, pid: Option<u32>) -> io::Result<Target> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "only http:// URLs are supported",
            )
        })?;
        let host = rest.split('/').next().unwrap_or(rest).to_owned();
        let with_port = if host.contains(':') && !host.ends_with(']') {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host has no address"))?;
        Ok(Target { addr, host, pid })
    }

    /// Opens connection number `index`: past [`PER_SOURCE`] connections to a loopback
    /// server, from 127.0.0.2, 127.0.0.3, ... so that neither the server's per-address cap
    /// nor source ports run short.
    pub async fn connect(&self, index: usize) -> io::Result<TcpStream> {
        let spread = index / PER_SOURCE;
        let stream = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() && spread > 0 => {
                let socket = TcpSocket::new_v4()?;
                let src = Ipv4Addr::new(127, 0, 0, 1 + spread.min(250) as u8);
                socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
                socket.connect(self.addr).await?
            }
            _ => TcpStream::connect(self.addr).await?,
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// An `rtchat serve` the bench started itself; killed when dropped.
pub struct SpawnedServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// Its command line (the executable, then the arguments).
    pub argv: Vec<String>,
}

impl SpawnedServer {
    /// Starts `rtchat serve` (this very executable) on an ephemeral port with `extra`
    /// arguments, with the request log off, and waits for its ready line. Unless
    /// `post_limits`, its post rate limits are off (`--post-rate 0`, placed before `extra`,
    /// whose own `--post-rate` wins).
    pub fn start(extra: &[String], post_limits: bool) -> io::Result<SpawnedServer> {
        let exe = std::env::current_exe()?;
        let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0", "--no-tls"]
            .map(String::from)
            .to_vec();
        let help = serve_help(&exe);
        if !extra.iter().any(|a| a == "--store") && help.contains("--store") {
            args.extend(["--store".to_owned(), "memory".to_owned()]);
        }
        let names_rate = extra.iter().any(|a| a.starts_with("--post-rate"));
        if !post_limits && !names_rate && help.contains("--post-rate") {
            args.extend(["--post-rate".to_owned(), "0".to_owned()]);
        }
        args.extend(extra.iter().cloned());
        let mut child = Command::new(&exe)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("rtchat listening on http://") {
                        break format!("http://{}", url.trim());
                    }
                }
                _ => {
                    let _ = child.kill();
                    return Err(io::Error::other(
                        "the spawned rtchat exited before it was ready",
                    ));
                }
            }
        };
        std::thread::spawn(move || for _ in lines {});
        let mut argv = vec![exe.display().to_string()];
        argv.extend(args);
        Ok(SpawnedServer { child, url, argv })
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rtchat serve --help`, to tell which flags this build has (`--store`: durable storage,
/// benchmarks use memory; `--post-rate`).
fn serve_help(exe: &std::path::Path) -> String {
    Command::new(exe)
        .args(["serve", "--help"])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

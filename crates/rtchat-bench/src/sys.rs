//! Process figures from `/proc` and the open-file limit.

use std::time::Instant;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                return want.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

/// Resident set size of a process in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) a process has used so far; `None` is this process.
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    cpu_times(pid).map(|(user, system)| user + system)
}

/// CPU seconds a process has used so far in user space and in the kernel (`utime`, `stime`);
/// `None` is this process.
pub fn cpu_times(pid: Option<u32>) -> Option<(f64, f64)> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime / ticks.max(1.0), stime / ticks.max(1.0)))
}

/// Measures the CPU a process uses between [`CpuMeter::start`] and [`CpuMeter::percent`].
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: Option<u32>,
    /// (user, system) seconds at the start.
    cpu: Option<(f64, f64)>,
    wall: Instant,
}

impl CpuMeter {
    /// Starts measuring `pid` (`None`: this process).
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            cpu: cpu_times(pid),
            wall: Instant::now(),
        }
    }

    /// CPU seconds used since the start, and that as a percentage of one core.
    pub fn used(&self) -> Option<(f64, f64)> {
        let (user, system) = cpu_times(self.pid)?;
        let (user0, system0) = self.cpu?;
        let cpu = (user - user0) + (system - system0);
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        Some((cpu, 100.0 * cpu / wall))
    }

    /// The CPU seconds of [`CpuMeter::used`] spent in the kernel (system time: system calls,
    /// socket copies, and on loopback much of the TCP work for both ends).
    pub fn system(&self) -> Option<f64> {
        let (_, system) = cpu_times(self.pid)?;
        Some(system - self.cpu?.1)
    }
}

/// Unix time in nanoseconds (the clock that posted texts carry).
pub fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The limits that decide how many connections one machine holds, as this bench found them:
/// printed with `rtchat bench idle` so a result says what it ran under.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ConnectionLimits {
    /// This process's open-file limit (soft, after raising it to the hard one).
    pub bench_nofile: u64,
    /// The server's open-file limit (`Max open files` of `/proc/PID/limits`, soft).
    pub server_nofile: Option<u64>,
    /// `fs.nr_open`: the most any process may be allowed.
    pub nr_open: Option<u64>,
    /// `fs.file-max`: open files on the whole machine.
    pub file_max: Option<u64>,
    /// `net.ipv4.ip_local_port_range`: ephemeral ports per source/destination pair.
    pub ephemeral_ports: Option<String>,
    /// `net.core.somaxconn`: the accept-queue ceiling.
    pub somaxconn: Option<u64>,
    /// `net.ipv4.tcp_mem` (pages: low, pressure, high): the kernel's TCP buffer budget.
    pub tcp_mem: Option<String>,
}

impl ConnectionLimits {
    /// Reads them from `/proc` (`server`: the server's pid, when known).
    pub fn read(bench_nofile: u64, server: Option<u32>) -> ConnectionLimits {
        let proc_text = |path: &str| {
            std::fs::read_to_string(path)
                .ok()
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        };
        let proc_num = |path: &str| proc_text(path).and_then(|s| s.parse().ok());
        let server_nofile = server.and_then(|pid| {
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        });
        ConnectionLimits {
            bench_nofile,
            server_nofile,
            nr_open: proc_num("/proc/sys/fs/nr_open"),
            file_max: proc_num("/proc/sys/fs/file-max"),
            ephemeral_ports: proc_text("/proc/sys/net/ipv4/ip_local_port_range"),
            somaxconn: proc_num("/proc/sys/net/core/somaxconn"),
            tcp_mem: proc_text("/proc/sys/net/ipv4/tcp_mem"),
        }
    }
}

/// The kernel's memory for sockets, machine-wide: TCP buffer pages (`/proc/net/sockstat`) and
/// slab (`Slab:` of `/proc/meminfo`, where socket, file and epoll structures live). Read before
/// and after opening connections, the difference is what the kernel spends on them.
#[derive(Debug, Clone, Copy, Default)]
pub struct KernelMemory {
    /// TCP buffer memory in KiB (`TCP: ... mem PAGES`).
    pub tcp_buffers_kib: u64,
    /// Slab memory in KiB.
    pub slab_kib: u64,
}

impl KernelMemory {
    /// Reads the current figures (zeros where `/proc` does not say).
    pub fn read() -> KernelMemory {
        // SAFETY: sysconf has no preconditions.
        let page_kib = (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) / 1024) as u64;
        let tcp_pages = std::fs::read_to_string("/proc/net/sockstat")
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("TCP:"))?.to_owned();
                let fields: Vec<&str> = line.split_whitespace().collect();
                let at = fields.iter().position(|f| *f == "mem")?;
                fields.get(at + 1)?.parse::<u64>().ok()
            })
            .unwrap_or(0);
        let slab_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("Slab:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        KernelMemory {
            tcp_buffers_kib: tcp_pages * page_kib,
            slab_kib,
        }
    }
}

//! What the measurements print: a table for people, JSON for machines, and an SVG of the
//! latency distributions.

use std::io;
use std::path::Path;

use crate::runinfo::RunInfo;
use crate::sys::ConnectionLimits;
use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
    /// `[percentile, ms]` points of the distribution, for plots.
    pub distribution: Vec<[f64; 2]>,
}

impl Latency {
    /// Figures of a histogram in microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        let distribution = (0..=100)
            .map(|i| {
                // Evenly spaced in "nines": 0, 90, 99, 99.9, 99.99 % are 0, 1, 2, 3, 4.
                let nines = f64::from(i) * 0.04;
                let q = 1.0 - 10f64.powf(-nines);
                [q * 100.0, ms(h.value_at_quantile(q))]
            })
            .collect();
        Latency {
            count: h.len(),
            min_ms: ms(h.min()),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            distribution,
        }
    }

    /// `p50 / p99 / max` for the table.
    fn summary(&self) -> String {
        if self.count == 0 {
            return "none recorded".to_owned();
        }
        format!(
            "p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2} ({} values)",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms, self.count
        )
    }
}

/// CPU and memory of the bench and of the server during the measurement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    /// CPU seconds the bench used.
    pub bench_cpu_s: Option<f64>,
    /// That as a percentage of one core.
    pub bench_cpu_percent: Option<f64>,
    /// The server's process id, when known.
    pub server_pid: Option<u32>,
    /// CPU seconds the server used (when its pid is known): with the deliveries, how much
    /// work each delivery cost, a figure that survives a noisy machine better than rates.
    #[serde(default)]
    pub server_cpu_s: Option<f64>,
    /// CPU percentage of one core the server used (when its pid is known).
    pub server_cpu_percent: Option<f64>,
    /// Of `server_cpu_s`, the seconds spent in the kernel (system time): the socket work.
    #[serde(default)]
    pub server_system_cpu_s: Option<f64>,
    /// The server's largest resident memory seen, in KiB.
    pub server_rss_kib: Option<u64>,
    /// Bytes the bench's WebSocket connections read from their sockets while messages
    /// flowed (frames as sent, compressed or not): the bytes on the wire.
    #[serde(default)]
    pub ws_wire_bytes: Option<u64>,
}

/// The result of `rtchat bench fanout`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutReport {
    /// Always `fanout`.
    pub kind: String,
    /// The run's name.
    pub label: String,
    /// How subscribers read.
    pub transport: String,
    /// The server.
    pub url: String,
    /// Subscribers asked for.
    pub subscribers: usize,
    /// Rooms they spread over (1: the course's paths, room `general`).
    #[serde(default = "one")]
    pub rooms: usize,
    /// The rooms' names (`bench-<run id>`, or `bench-<run id>-<k>` with `--rooms`); empty for
    /// the course's snapshot transports, which post into the chat's `general`.
    #[serde(default)]
    pub room_names: Vec<String>,
    /// Subscribers that connected and got their first answer.
    pub connected: usize,
    /// Messages asked for.
    pub messages: u64,
    /// Messages posted.
    pub posted: u64,
    /// Posting rate asked for, per second.
    pub rate: f64,
    /// connected × posted.
    pub expected: u64,
    /// Distinct (subscriber, message) receipts.
    pub delivered: u64,
    /// delivered / expected.
    pub delivered_fraction: f64,
    /// Deliveries per second, from the first post to the last receipt.
    pub deliveries_per_sec: f64,
    /// Frames (or chunks, answers) subscribers received with chat data.
    pub frames: u64,
    /// Failed or broken connections (and a failed publisher).
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Post-to-receipt latency.
    pub latency: Latency,
    /// Seconds from the first post to the end of the measurement.
    pub elapsed_s: f64,
    /// The overall timeout cut the run short: the figures are partial.
    pub timed_out: bool,
    /// CPU and memory.
    pub resources: Resources,
    /// The build, the server's options and the machine (absent in results of older builds).
    #[serde(default)]
    pub run_info: RunInfo,
}

/// The result of `rtchat bench idle`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleReport {
    /// Always `idle`.
    pub kind: String,
    /// The run's name.
    pub label: String,
    /// The kind of connection.
    pub transport: String,
    /// The server.
    pub url: String,
    /// Connections asked for.
    pub connections: usize,
    /// Connections that were open and answered.
    pub connected: usize,
    /// Failed connections.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// The server's RSS before connecting, KiB.
    pub rss_before_kib: u64,
    /// The server's RSS with every connection open, KiB.
    pub rss_with_kib: u64,
    /// (rss_with − rss_before) / connected, KiB.
    pub per_connection_kib: f64,
    /// The overall timeout cut the run short.
    pub timed_out: bool,
    /// CPU of the bench while connecting and holding.
    pub resources: Resources,
    /// The open-file, port and kernel limits this run met.
    #[serde(default)]
    pub limits: ConnectionLimits,
    /// Kernel TCP buffer memory per connection, KiB: the machine-wide difference over twice
    /// the connections (on loopback both ends are this machine's sockets).
    #[serde(default)]
    pub kernel_tcp_kib_per_socket: Option<f64>,
    /// Kernel slab memory per socket, KiB, the same way (socket, file, epoll structures;
    /// machine-wide, so other activity adds noise).
    #[serde(default)]
    pub kernel_slab_kib_per_socket: Option<f64>,
    /// With `--fanout`: one message delivered to every connection.
    #[serde(default)]
    pub fanout: Option<IdleFanout>,
    /// The room the connections are in (`bench-<run id>`); empty for the course's snapshot
    /// transports (room `general`).
    #[serde(default)]
    pub room_names: Vec<String>,
    /// The build, the server's options and the machine (absent in results of older builds).
    #[serde(default)]
    pub run_info: RunInfo,
}

/// One message fanned out to every idle connection (`rtchat bench idle --fanout`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleFanout {
    /// Connections that received it.
    pub delivered: u64,
    /// Connections open when it was posted.
    pub connections: usize,
    /// From the post to the last receipt, ms.
    pub all_ms: f64,
    /// Post-to-receipt latency over the connections.
    pub latency: Latency,
}

/// The result of `rtchat bench post`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PostReport {
    /// Always `post`.
    pub kind: String,
    /// The run's name.
    pub label: String,
    /// The server.
    pub url: String,
    /// Concurrent posters.
    pub concurrency: usize,
    /// Seconds spent posting.
    pub elapsed_s: f64,
    /// Posts answered with 200.
    pub acked: u64,
    /// Acknowledged posts per second.
    pub posts_per_sec: f64,
    /// Failed posts or connections.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Post round trips.
    pub latency: Latency,
    /// The overall timeout cut the run short.
    pub timed_out: bool,
    /// CPU and memory.
    pub resources: Resources,
    /// The room posted to (`bench-<run id>`, or `general` with `--general`).
    #[serde(default)]
    pub room: String,
    /// The build, the server's options and the machine (absent in results of older builds).
    #[serde(default)]
    pub run_info: RunInfo,
}

/// The rooms a run used, for the human table.
fn rooms_row(names: &[String]) -> String {
    match names {
        [] => "general (the chat's own room)".to_owned(),
        [one] => one.clone(),
        [first, .., last] => format!("{first} .. {last}"),
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>, unit: &str) -> String {
    v.map(|v| format!("{v}{unit}"))
        .unwrap_or_else(|| "-".to_owned())
}

fn resources_rows(r: &Resources, rows: &mut Vec<(&'static str, String)>) {
    rows.push((
        "bench CPU",
        match (r.bench_cpu_s, r.bench_cpu_percent) {
            (Some(s), Some(p)) => format!("{s:.2} s ({p:.0}% of one core)"),
            _ => "-".to_owned(),
        },
    ));
    if r.server_pid.is_some() {
        rows.push((
            "server CPU",
            match (r.server_cpu_s, r.server_cpu_percent) {
                (Some(s), Some(p)) => match r.server_system_cpu_s {
                    Some(k) if s > 0.0 => format!(
                        "{s:.2} s ({p:.0}% of one core; {:.0}% of it in the kernel)",
                        100.0 * k / s
                    ),
                    _ => format!("{s:.2} s ({p:.0}% of one core)"),
                },
                (None, Some(p)) => format!("{p:.0}% of one core"),
                _ => "-".to_owned(),
            },
        ));
        rows.push((
            "server RSS (max)",
            opt(
                r.server_rss_kib
                    .map(|k| format!("{:.1}", k as f64 / 1024.0)),
                " MiB",
            ),
        ));
    }
}

fn print_rows(title: &str, rows: &[(&str, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("{title}");
    for (k, v) in rows {
        println!("  {k:<width$}  {v}");
    }
}

impl FanoutReport {
    /// Prints the human table.
    pub fn print_table(&self) {
        let mut rows = vec![
            ("server", self.url.clone()),
            ("transport", self.transport.clone()),
            ("rooms", rooms_row(&self.room_names)),
            (
                "subscribers",
                if self.rooms > 1 {
                    format!(
                        "{} of {} connected, in {} rooms",
                        self.connected, self.subscribers, self.rooms
                    )
                } else {
                    format!("{} of {} connected", self.connected, self.subscribers)
                },
            ),
            (
                "posted",
                format!("{} of {} at {}/s", self.posted, self.messages, self.rate),
            ),
            (
                "delivered",
                format!(
                    "{} of {} ({:.2}%)",
                    self.delivered,
                    self.expected,
                    100.0 * self.delivered_fraction
                ),
            ),
            ("deliveries/s", format!("{:.0}", self.deliveries_per_sec)),
            ("latency", self.latency.summary()),
            ("frames received", self.frames.to_string()),
            ("errors", self.errors.to_string()),
        ];
        if let Some(e) = &self.first_error {
            rows.push(("first error", e.clone()));
        }
        rows.push(("elapsed", format!("{:.2} s", self.elapsed_s)));
        resources_rows(&self.resources, &mut rows);
        self.run_info.rows(&mut rows);
        if self.timed_out {
            rows.push(("TIMED OUT", "figures are partial".to_owned()));
        }
        print_rows(&format!("fanout: {}", self.label), &rows);
    }
}

impl IdleReport {
    /// Prints the human table.
    pub fn print_table(&self) {
        let mut rows = vec![
            ("server", self.url.clone()),
            ("transport", self.transport.clone()),
            ("rooms", rooms_row(&self.room_names)),
            (
                "connections",
                format!("{} of {} open", self.connected, self.connections),
            ),
            (
                "server RSS",
                format!(
                    "{:.1} MiB before, {:.1} MiB with them",
                    self.rss_before_kib as f64 / 1024.0,
                    self.rss_with_kib as f64 / 1024.0
                ),
            ),
            (
                "per connection",
                format!("{:.2} KiB", self.per_connection_kib),
            ),
            ("errors", self.errors.to_string()),
        ];
        if let Some(e) = &self.first_error {
            rows.push(("first error", e.clone()));
        }
        if let (Some(tcp), Some(slab)) = (
            self.kernel_tcp_kib_per_socket,
            self.kernel_slab_kib_per_socket,
        ) {
            rows.push((
                "kernel per socket",
                format!("{tcp:.2} KiB TCP buffers, {slab:.2} KiB slab (machine-wide, noisy)"),
            ));
        }
        if let Some(f) = &self.fanout {
            rows.push((
                "fan-out",
                format!(
                    "{} of {} received one message; all within {:.1} ms (p50 {:.1} ms, p99 {:.1} ms)",
                    f.delivered, f.connections, f.all_ms, f.latency.p50_ms, f.latency.p99_ms
                ),
            ));
        }
        let l = &self.limits;
        let or_unknown = |v: Option<String>| v.unwrap_or_else(|| "?".to_owned());
        rows.push((
            "open files",
            format!(
                "bench {}, server {}, fs.nr_open {}, fs.file-max {}",
                l.bench_nofile,
                or_unknown(l.server_nofile.map(|n| n.to_string())),
                or_unknown(l.nr_open.map(|n| n.to_string())),
                or_unknown(l.file_max.map(|n| n.to_string())),
            ),
        ));
        rows.push((
            "network",
            format!(
                "ephemeral ports {}, somaxconn {}, tcp_mem {} (pages)",
                or_unknown(l.ephemeral_ports.clone()),
                or_unknown(l.somaxconn.map(|n| n.to_string())),
                or_unknown(l.tcp_mem.clone()),
            ),
        ));
        resources_rows(&self.resources, &mut rows);
        self.run_info.rows(&mut rows);
        if self.timed_out {
            rows.push(("TIMED OUT", "figures are partial".to_owned()));
        }
        print_rows(&format!("idle: {}", self.label), &rows);
    }
}

impl PostReport {
    /// Prints the human table.
    pub fn print_table(&self) {
        let mut rows = vec![
            ("server", self.url.clone()),
            ("room", self.room.clone()),
            ("posters", self.concurrency.to_string()),
            (
                "acknowledged",
                format!("{} in {:.2} s", self.acked, self.elapsed_s),
            ),
            ("posts/s", format!("{:.0}", self.posts_per_sec)),
            ("round trip", self.latency.summary()),
            ("errors", self.errors.to_string()),
        ];
        if let Some(e) = &self.first_error {
            rows.push(("first error", e.clone()));
        }
        resources_rows(&self.resources, &mut rows);
        self.run_info.rows(&mut rows);
        if self.timed_out {
            rows.push(("TIMED OUT", "figures are partial".to_owned()));
        }
        print_rows(&format!("post: {}", self.label), &rows);
    }
}

/// The Okabe–Ito colours (readable on white and by colour-blind readers), without its yellow.
const OKABE_ITO: [(u8, u8, u8); 7] = [
    (0x00, 0x72, 0xB2), // blue
    (0xD5, 0x5E, 0x00), // vermillion
    (0x00, 0x9E, 0x73), // bluish green
    (0xE6, 0x9F, 0x00), // orange
    (0xCC, 0x79, 0xA7), // reddish purple
    (0x56, 0xB4, 0xE9), // sky blue
    (0x00, 0x00, 0x00), // black
];

/// The colour of run number `i`.
fn series_color(i: usize) -> RGBColor {
    let (r, g, b) = OKABE_ITO[i % OKABE_ITO.len()];
    RGBColor(r, g, b)
}

impl FanoutReport {
    /// The run's line in a plot's legend: its label, settings and p99.
    pub fn legend(&self) -> String {
        let p99 = if self.latency.count == 0 {
            "no latency recorded".to_owned()
        } else {
            format!("p99 {:.1} ms", self.latency.p99_ms)
        };
        format!(
            "{} ({}, {} subscribers, {} msg/s): {p99}",
            self.label, self.transport, self.subscribers, self.rate
        )
    }
}

/// Draws each run's latency distribution (x: percentile, in nines; y: ms, log scale); the
/// legend shows `runs`' names (see [`FanoutReport::legend`]).
pub fn plot(path: &Path, title: &str, runs: &[(String, Latency)]) -> io::Result<()> {
    let err = |e: Box<dyn std::error::Error>| io::Error::other(e.to_string());
    let max_ms = runs
        .iter()
        .flat_map(|(_, l)| l.distribution.iter().map(|p| p[1]))
        .fold(1.0f64, f64::max);
    let min_ms = runs
        .iter()
        .flat_map(|(_, l)| l.distribution.iter().map(|p| p[1]))
        .filter(|v| *v > 0.0)
        .fold(max_ms, f64::min)
        .min(1.0);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(Box::new(e)))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..4f64, (min_ms * 0.8..max_ms * 1.25).log_scale())
        .map_err(|e| err(Box::new(e)))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels(5)
        .x_label_formatter(&|x| match x.round() as i64 {
            0 => "0%".to_owned(),
            1 => "90%".to_owned(),
            2 => "99%".to_owned(),
            3 => "99.9%".to_owned(),
            _ => "99.99%".to_owned(),
        })
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    for (i, (label, latency)) in runs.iter().enumerate() {
        let color = series_color(i);
        let style = color.stroke_width(2);
        let points: Vec<(f64, f64)> = latency
            .distribution
            .iter()
            .map(|[p, ms]| {
                let nines = if *p >= 100.0 {
                    4.0
                } else {
                    -(1.0 - p / 100.0).log10()
                };
                (nines.min(4.0), ms.max(min_ms * 0.8))
            })
            .collect();
        // Past the palette the colours come round again, dashed.
        let dashed = i >= OKABE_ITO.len();
        let anno = if dashed {
            chart
                .draw_series(DashedLineSeries::new(points, 8, 5, style))
                .map_err(|e| err(Box::new(e)))?
        } else {
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(|e| err(Box::new(e)))?
        };
        // A legend line is two strokes: with a gap between them for a dashed series.
        let gap = if dashed { 4 } else { 0 };
        anno.label(label.as_str()).legend(move |(x, y)| {
            EmptyElement::at((x, y))
                + PathElement::new(vec![(0, 0), (10 - gap, 0)], style)
                + PathElement::new(vec![(10 + gap, 0), (20, 0)], style)
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    root.present().map_err(|e| err(Box::new(e)))?;
    Ok(())
}

fn one() -> usize {
    1
}

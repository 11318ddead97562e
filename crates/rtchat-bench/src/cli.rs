//! The options of `rtchat bench`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::transport::Transport;

/// `rtchat bench`: load tests against a running server (`--url`) or one it starts itself.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The measurements.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// N subscribers, one publisher posting M messages at R per second: latency from post to
    /// receipt, delivered fraction, deliveries per second, errors.
    Fanout(FanoutArgs),
    /// N idle connections: the server's resident memory per connection.
    Idle(IdleArgs),
    /// C concurrent posters: acknowledged posts per second.
    Post(PostArgs),
    /// Draws the latency distributions of saved `fanout --json` results into one SVG; the
    /// legend names each run with its transport, subscribers, rate and p99.
    Plot(PlotArgs),
    /// Head-of-line blocking: N `/msgs` streams over ONE HTTP/2 or HTTP/3 (`--http3`)
    /// connection, latency of every delivery (bench/hol.sh runs it through a lossy network).
    Hol(crate::hol::HolArgs),
}

/// Options every measurement shares.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// The server, e.g. http://127.0.0.1:8080 [default: start `rtchat serve` on a free port]
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,

    /// The server's process id, for its memory and CPU figures (known when the bench starts
    /// the server itself).
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Extra argument for the server the bench starts (repeatable), e.g. --server-arg=--history=20
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub server_arg: Vec<String>,

    /// Post rate limits of the server the bench starts: `off` (its posts would otherwise be
    /// refused: a bench posts far faster than a person) or `on` (rtchat's defaults, or what
    /// --server-arg says). A server given by --url keeps its own.
    #[arg(long, value_name = "on|off", default_value = "off", value_parser = ["on", "off"])]
    pub post_limits: String,

    /// Name of this run in the output and the plot [default: "rtchat TRANSPORT" or the URL]
    #[arg(long)]
    pub label: Option<String>,

    /// Stop after this many seconds whatever happens, and print what was measured so far.
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    pub timeout: f64,

    /// Worker threads of the bench itself.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: u16,

    /// Connections opened at once while connecting.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub connect_concurrency: usize,

    /// Post (and subscribe) in the chat's own room `general`, over the course's paths (/ws,
    /// /msgs, /poll ...), instead of a room of the run's own (`bench-<run id>`): the benchmark
    /// messages then land in the real chat. Not with --rooms above 1.
    #[arg(long)]
    pub general: bool,

    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,

    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `rtchat bench fanout`.
#[derive(Args, Debug)]
pub struct FanoutArgs {
    /// How subscribers read the chat (the publisher posts the transport's own way): longpoll,
    /// stream, sse, ws (rtchat.v1 deltas), ws-json (the course's snapshots), socketio
    /// (msg:new deltas) or socketio-snapshots (the course's msg:get).
    #[arg(long, short, value_name = "T", default_value = "ws-json", value_parser = crate::transport::parse)]
    pub transport: Transport,

    /// Subscribers.
    #[arg(long, short = 'n', default_value_t = 100)]
    pub subscribers: usize,

    /// Messages posted.
    #[arg(long, short = 'm', default_value_t = 200)]
    pub messages: u64,

    /// Messages posted per second.
    #[arg(long, short = 'r', default_value_t = 50.0)]
    pub rate: f64,

    /// Seconds to wait for stragglers after the last post.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub drain: f64,

    /// Also draw the latency distribution into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// WebSocket subscribers offer permessage-deflate (RFC 7692), as browsers do.
    #[arg(long)]
    pub deflate: bool,

    /// For a server with `--auth token`: every subscriber and post carries this token, whose
    /// name must be `bench` (the posts' user), e.g. `rtchat token --user bench --name bench`.
    #[arg(
        long,
        value_name = "JWT",
        env = "RTCHAT_BENCH_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Spread subscribers and posts over this many rooms (`bench-<run id>-0`...; subscriber i
    /// and message i in room i % N). 1: one room of the run's own, `bench-<run id>`, never the
    /// chat's `general`. Not for the course's snapshot transports (ws-json,
    /// socketio-snapshots), which are `general` only (the bench warns that it posts there).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u64).range(1..=100_000), |n| n as usize))]
    pub rooms: usize,

    #[command(flatten)]
    pub common: Common,
}

/// `rtchat bench idle`.
#[derive(Args, Debug)]
pub struct IdleArgs {
    /// The kind of idle connection (`longpoll`: parked long polls); the names of `fanout`.
    #[arg(long, short, value_name = "T", default_value = "ws-json", value_parser = crate::transport::parse)]
    pub transport: Transport,

    /// Connections held open.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub connections: usize,

    /// Seconds to let the server settle before reading its memory.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    pub settle: f64,

    /// After reading the memory, post one message and time its delivery to every connection
    /// (the scale test: does a fan-out to all of them complete, and how fast).
    #[arg(long)]
    pub fanout: bool,

    #[command(flatten)]
    pub common: Common,
}

/// `rtchat bench post`.
#[derive(Args, Debug)]
pub struct PostArgs {
    /// Concurrent posters (one keep-alive connection each, one post in flight each).
    #[arg(long, short = 'c', default_value_t = 32)]
    pub concurrency: usize,

    /// Seconds to post for.
    #[arg(long, short = 'd', value_name = "SECONDS", default_value_t = 5.0)]
    pub duration: f64,

    #[command(flatten)]
    pub common: Common,
}

/// `rtchat bench plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// The SVG to write.
    #[arg(long, short, value_name = "FILE.svg")]
    pub out: PathBuf,

    /// Title above the chart.
    #[arg(long, default_value = "Fan-out latency (post to receipt)")]
    pub title: String,

    /// `rtchat bench fanout --json` outputs.
    #[arg(required = true, value_name = "RESULT.json")]
    pub results: Vec<PathBuf>,
}

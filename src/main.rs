//! The `rtchat` command: a thin CLI over the server crates.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use rtchat_core::{Hub, HubConfig, Limits, MemoryStore};
use rtchat_server::{Server, ServerConfig};
use tokio_util::sync::CancellationToken;

/// A realtime chat served over polling, HTTP/2 streams, SSE, WebSockets and Socket.IO.
#[derive(Parser, Debug)]
#[command(
    name = "rtchat",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// With no command, `rtchat` serves with these options.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the chat server (the default when no command is given).
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080, or 127.0.0.1:$PORT when PORT is set]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// How many of the newest messages clients get as history.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    history: u32,

    /// Longest user name accepted, in characters.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    max_user: u32,

    /// Longest message text accepted, in characters.
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = clap::value_parser!(u32).range(1..))]
    max_text: u32,

    /// Largest request body accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(256..))]
    max_body: u32,

    /// How many messages the in-memory store keeps for clients that resume (at least --history).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    retain: u32,

    /// Seconds a long poll is held when the client names no timeout.
    #[arg(long, value_name = "SECONDS", default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=3600))]
    poll_timeout: u32,

    /// Serve this folder as the front end instead of the embedded pages.
    #[arg(long, value_name = "DIR", value_parser = existing_dir)]
    web_root: Option<PathBuf>,

    /// Fraction of GET /poll requests to fail with 500, to demonstrate client backoff.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = fraction)]
    fail_rate: f64,
}

fn existing_dir(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("{s} is not a directory"))
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => cli.serve,
    };
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

async fn serve(args: ServeArgs) -> Result<(), String> {
    let listen = listen_addr(args.listen)?;
    let history = args.history as usize;
    let hub_config = HubConfig {
        history,
        limits: Limits {
            max_user: args.max_user as usize,
            max_text: args.max_text as usize,
        },
        ..HubConfig::default()
    };
    let store = Arc::new(MemoryStore::new((args.retain as usize).max(history)));
    let hub = Hub::open(store, hub_config)
        .await
        .map_err(|e| format!("cannot open the message store: {e}"))?;
    let config = ServerConfig {
        listen,
        web_root: args.web_root,
        fail_rate: args.fail_rate,
        poll_timeout: Duration::from_secs(args.poll_timeout.into()),
        max_body: args.max_body as usize,
        ..ServerConfig::default()
    };
    let shutdown = CancellationToken::new();
    let server = Server::bind(config.clone(), hub.clone(), shutdown.clone())
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(store = %hub.store_description(), history, web_root = ?config.web_root, "rtchat ready");
    // A plain line on stdout that scripts and tests wait for.
    println!("rtchat listening on http://{addr}");
    tokio::spawn(wait_for_signal(shutdown.clone()));
    server.run().await;
    tracing::info!("rtchat stopped");
    Ok(())
}

/// Cancels `shutdown` on SIGINT or SIGTERM.
async fn wait_for_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: no new connections, answering parked requests");
    shutdown.cancel();
}

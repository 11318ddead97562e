//! `rtchat client`: the terminal chat of `rtchat_client::terminal`, with its flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rtchat_client::terminal::{self, Config};
use rtchat_client::{Options, Transport};

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// How to talk to the server: poll, longpoll, stream, sse, ws (rtchat.v1), ws-json,
    /// socketio (msg:new) or socketio-snapshots (the course's msg:get); see docs/PROTOCOL.md.
    #[arg(long, short, value_name = "T", default_value = "ws", value_parser = parse_transport)]
    transport: Transport,

    /// The name your messages are posted under [default: $USER, else "anon"]
    #[arg(long, short, value_name = "NAME")]
    user: Option<String>,

    /// Accept any HTTPS certificate (development only).
    #[arg(long, conflicts_with = "cacert")]
    insecure: bool,

    /// Trust the certificate(s) in this PEM file too, e.g. the one `rtchat cert` shows.
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,

    /// Speak HTTP/3 (QUIC) to the HTTPS port: one connection for the stream or polls and the
    /// posts. Needs an https:// URL and an HTTP transport (poll, longpoll, stream, sse).
    #[arg(long)]
    http3: bool,

    /// Skip the history and start with the messages after this id.
    #[arg(long, value_name = "ID")]
    since: Option<u64>,

    /// The server, e.g. http://127.0.0.1:8080 or https://localhost:8443.
    #[arg(value_name = "URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    s.parse()
}

/// Runs the terminal chat on stdin/stdout; exits 0 when stdin ends.
pub fn run(args: ClientArgs) -> ExitCode {
    let user = args
        .user
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.trim().is_empty()))
        .unwrap_or_else(|| "anon".to_owned());
    let config = Config {
        transport: args.transport,
        url: args.url,
        user,
        options: Options {
            insecure: args.insecure,
            ca_file: args.cacert,
            resume_after: args.since,
            http3: args.http3,
            ..Options::default()
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let result = runtime.block_on(terminal::run(config, stdin, tokio::io::stdout()));
    // A read of stdin may still be parked on a blocking thread: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE, // already printed as `! error: ...`
    }
}

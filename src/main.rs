//! The `rtchat` command: a thin CLI over the workspace's crates. `serve` (the default) runs
//! the chat server, `cert` shows its HTTPS certificate, `client` is a terminal chat and
//! `bench` a load tool.

mod admin_cmd;
mod backup_cmd;
mod client_cmd;
mod serve_cmd;
mod store_arg;
mod token_cmd;
mod user_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    serve: serve_cmd::ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the chat server (the default when no command is given).
    Serve(Box<serve_cmd::ServeArgs>),
    /// Show the HTTPS certificate (generating the development one if needed): where it is,
    /// its SHA-256 fingerprint, and how to trust it.
    Cert(serve_cmd::CertArgs),
    /// Load-test a server: fan-out latency, idle memory per connection, post throughput.
    Bench(rtchat_bench::BenchArgs),
    /// A terminal chat: prints the history and new messages, posts each line typed, and
    /// reconnects and resumes by itself.
    Client(client_cmd::ClientArgs),
    /// Print a token signed with the server's own secret (for `rtchat serve --auth token`).
    Token(token_cmd::TokenArgs),
    /// The server's token signing secrets: rotate them, or list them.
    Secret(token_cmd::SecretArgs),
    /// Administer the built-in accounts in the database (`grant-admin ID`, `revoke-admin
    /// ID`), also while a server runs on it.
    User(user_cmd::UserArgs),
    /// Moderate a running server (`--auth token`) through its admin API: ban, unban, kick,
    /// mute, unmute, revoke a token, list bans and mutes, read the audit log.
    Admin(admin_cmd::AdminArgs),
    /// Copy the SQLite database to FILE, consistently, also while a server runs on it
    /// (`--force` replaces an existing FILE).
    Backup(backup_cmd::BackupArgs),
    /// Put a backup made by `rtchat backup` back as the database, only while no server runs
    /// on it (`--force` replaces an existing database).
    Restore(backup_cmd::RestoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Log lines are written by a background thread, so a busy server does not make one
    // write(2) per request on its workers. Not lossy: a full queue (8,192 lines) waits rather
    // than drops.
    // The guard flushes what is queued when main returns.
    let (log_writer, _log_guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(8192)
        .finish(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(log_writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Some(Command::Serve(args)) => serve_cmd::run(*args),
        Some(Command::Cert(args)) => serve_cmd::cert(args),
        Some(Command::Bench(args)) => rtchat_bench::run(args),
        Some(Command::Client(args)) => client_cmd::run(args),
        Some(Command::Token(args)) => token_cmd::token(args),
        Some(Command::Secret(args)) => token_cmd::secret(args),
        Some(Command::User(args)) => user_cmd::run(args),
        Some(Command::Admin(args)) => admin_cmd::run(args),
        Some(Command::Backup(args)) => backup_cmd::backup(args),
        Some(Command::Restore(args)) => backup_cmd::restore(args),
        None => serve_cmd::run(cli.serve),
    }
}

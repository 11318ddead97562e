//! `rtchat client`: the terminal chat of `rtchat_client::terminal`, with its flags.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use rtchat_client::terminal::{self, Config};
use rtchat_client::{Credentials, Options, Transport};

#[derive(Args, Debug)]
pub struct ClientArgs {
    /// How to talk to the server: poll, longpoll, stream, sse, ws (rtchat.v1), ws-json,
    /// socketio (msg:new) or socketio-snapshots (the course's msg:get); see docs/PROTOCOL.md.
    #[arg(long, short, value_name = "T", default_value = "ws", value_parser = parse_transport)]
    transport: Transport,

    /// The name your messages are posted under [default: $USER, else "anon"]; with
    /// --token or --login, the token's name (a server run with --auth token refuses others)
    #[arg(long, short, value_name = "NAME")]
    user: Option<String>,

    /// A token for a server run with `rtchat serve --auth token` (e.g. from `rtchat token`);
    /// the client refreshes it before it expires.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RTCHAT_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,

    /// Log in to the server's built-in accounts as USER (POST /auth/login), with the password
    /// from $RTCHAT_PASSWORD, else asked for (without echo on a terminal, else one line of
    /// stdin).
    #[arg(long, value_name = "USER", conflicts_with = "token")]
    login: Option<String>,

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

    /// the room to chat in [default: general]; e.g. a direct message's dm:… from POST /me/dm/{uid}
    #[arg(long, value_name = "NAME")]
    room: Option<String>,

    /// The server, e.g. http://127.0.0.1:8080 or https://localhost:8443.
    #[arg(value_name = "URL", default_value = "http://127.0.0.1:8080")]
    url: String,
}

fn parse_transport(s: &str) -> Result<Transport, String> {
    s.parse()
}

/// Runs the terminal chat on stdin/stdout (with a line editor when both are a terminal);
/// exits 0 when stdin ends.
pub fn run(args: ClientArgs) -> ExitCode {
    let credentials = match (args.login, args.token) {
        (Some(user), _) => match password(&user) {
            Ok(password) => Some(Credentials::Login { user, password }),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, Some(token)) if !token.trim().is_empty() => {
            Some(Credentials::Token(token.trim().to_owned()))
        }
        (None, _) => None,
    };
    if credentials.is_some() && args.user.is_some() {
        eprintln!(
            "note: with a token, messages are posted under the token's name; --user is ignored"
        );
    }
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
            credentials,
            room: args.room,
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
    let result = if terminal::is_interactive() {
        // A line editor: what arrives prints above the line being typed.
        runtime.block_on(terminal::run_interactive(config))
    } else {
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        runtime.block_on(terminal::run(config, stdin, tokio::io::stdout()))
    };
    // A read of stdin may still be parked on a blocking thread: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE, // already printed as `! error: ...`
    }
}

/// The password for `--login USER`: `$RTCHAT_PASSWORD`, else asked for on the terminal
/// without echo, else the first line of stdin (which then carries the chat's lines after it).
fn password(user: &str) -> Result<String, String> {
    if let Ok(password) = std::env::var("RTCHAT_PASSWORD") {
        return Ok(password);
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let prompt = format!("password for {user}: ");
        return terminal::read_password(&prompt)
            .map_err(|e| format!("cannot read the password: {e}"))
            .and_then(|p| {
                if p.is_empty() {
                    Err("no password given (set RTCHAT_PASSWORD or type it)".to_owned())
                } else {
                    Ok(p)
                }
            });
    }
    // Not a terminal: one line of stdin, read byte by byte so the rest stays for the chat.
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    use std::io::Read;
    let mut stdin = std::io::stdin().lock();
    loop {
        match stdin.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot read the password from stdin: {e}")),
        }
    }
    let password = String::from_utf8(line)
        .map_err(|_| "the password read from stdin is not UTF-8".to_owned())?;
    let password = password.trim_end_matches('\r').to_owned();
    if password.is_empty() {
        return Err(format!(
            "--login {user} needs a password: set RTCHAT_PASSWORD or give it as the first line of stdin"
        ));
    }
    Ok(password)
}

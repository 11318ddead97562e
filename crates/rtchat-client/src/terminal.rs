//! The terminal chat behind `rtchat client`: prints the history and incoming messages as
//! `[HH:MM:SS] user: text`, connection changes as `* ...` lines and failures as
//! `! error: ...`, and posts every line read from the input.
//!
//! On a terminal ([`run_interactive`]) lines are typed in a line editor (rustyline) and
//! everything the chat prints goes above the prompt, so a half-typed line is never broken
//! up. Elsewhere (pipes, files: [`run`]) the input is read line by line and the output is
//! plain lines.
//!
//! Lines are posted one at a time, in the order typed, each with an idempotency key of its
//! own that stays the same when the post is tried again. A line typed while the client is
//! reconnecting waits in a queue (at most [`MAX_QUEUED`] lines) and goes out once it is
//! connected again; if the client gives up, the lines that were not sent are listed.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{Local, TimeZone};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, Lines};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Client, Error, Event, Message, Options, State, Transport};

/// What `rtchat client` was asked to do.
#[derive(Debug, Clone)]
pub struct Config {
    /// The transport to speak.
    pub transport: Transport,
    /// The server's base URL.
    pub url: String,
    /// The name posts are made under.
    pub user: String,
    /// Connection options.
    pub options: Options,
}

/// At most this many typed lines wait for a connection; more are refused (and said so).
pub const MAX_QUEUED: usize = 100;

/// After the input ends, how long lines still queued may wait for a connection.
const WAIT_AFTER_INPUT: Duration = Duration::from_secs(30);

/// A post that failed this many times while the client was connected is given up on.
const MAX_FAILURES: u32 = 3;

/// The prompt of the line editor.
const PROMPT: &str = "> ";

/// A message as one terminal line, local time, control characters escaped (so nobody can
/// move the cursor or recolour the terminal).
pub fn format_message(m: &Message) -> String {
    let time = Local.timestamp_millis_opt(m.time).single().map_or_else(
        || "--:--:--".to_owned(),
        |t| t.format("%H:%M:%S").to_string(),
    );
    format!("[{time}] {}: {}", printable(&m.user), printable(&m.text))
}

fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// What to do about a refused token, by the server's code.
fn token_hint(code: Option<&str>) -> &'static str {
    match code {
        Some("token_missing") => {
            "the server runs with --auth token: pass --token TOKEN (or RTCHAT_TOKEN) or --login USER"
        }
        Some("token_expired") | Some("session_expired") => {
            "the token has expired: get a new one (rtchat token ..., or --login USER)"
        }
        Some("token_not_yet_valid") => {
            "the token is not valid yet: check this machine's clock, or wait"
        }
        Some("token_revoked") => "the token was revoked (a logout?): log in again",
        Some("token_malformed") | Some("token_bad_claims") => {
            "this is not a token the server can read: copy the whole token (three parts separated by dots)"
        }
        Some("token_bad_signature") | Some("token_unknown_key") => {
            "the token was not signed by a key this server trusts: get one from this server (rtchat token --data-dir DIR, or --login USER)"
        }
        Some("bad_credentials") => "wrong user name or password",
        _ => "check --token or --login",
    }
}

/// The messages printed lately, to say which one a deletion is about (the chat's lines do
/// not show ids).
#[derive(Default)]
struct Shown {
    /// `(id, line)`, oldest first, at most [`Shown::KEPT`].
    lines: VecDeque<(u64, String)>,
}

impl Shown {
    const KEPT: usize = 1000;

    fn add(&mut self, m: &Message, line: &str) {
        self.lines.push_back((m.id, line.to_owned()));
        if self.lines.len() > Self::KEPT {
            self.lines.pop_front();
        }
    }

    /// The line shown when the message `id` was deleted: which one, if it was printed lately.
    fn deleted(&mut self, id: u64) -> String {
        match self.lines.iter().position(|(shown, _)| *shown == id) {
            Some(i) => {
                let (_, line) = self.lines.remove(i).expect("found");
                deleted_notice(id, Some(&line))
            }
            None => deleted_notice(id, None),
        }
    }
}

/// `* (message #ID was deleted: [HH:MM:SS] user: text)`, the line cut at 60 characters.
fn deleted_notice(id: u64, line: Option<&str>) -> String {
    const CUT: usize = 60;
    match line {
        Some(line) if line.chars().count() > CUT => {
            let cut: String = line.chars().take(CUT).collect();
            format!("* (message #{id} was deleted: {cut}...)")
        }
        Some(line) => format!("* (message #{id} was deleted: {line})"),
        None => format!("* (message #{id} was deleted)"),
    }
}

/// An error as the chat prints it, with a hint at the fix where there is one.
pub fn explain(e: &Error) -> String {
    let text = e.to_string();
    match e {
        Error::Unauthorized { code, .. } => {
            return format!("{text}: {}", token_hint(code.as_deref()));
        }
        Error::Forbidden { code, .. } if code == "not_your_name" => {
            return format!(
                "{text}: with a token, messages are posted under the token's name; leave out --user"
            );
        }
        Error::Forbidden { code, .. } if code == "not_a_member" => {
            return format!(
                "{text}: only the room's members may chat in it (a direct message's two users; a private room's owner adds members)"
            );
        }
        Error::Forbidden { code, .. } if code == "banned" => {
            return format!(
                "{text}: an administrator banned this user; the server refuses them until the ban ends or is lifted"
            );
        }
        Error::Forbidden { code, .. } if code == "room_not_allowed" => {
            return format!(
                "{text}: the token's rooms claim leaves this room out; get a token for it"
            );
        }
        _ => {}
    }
    let untrusted = [
        "invalid peer certificate",
        "UnknownIssuer",
        "unknown issuer",
    ]
    .iter()
    .any(|s| text.contains(s));
    if untrusted {
        format!(
            "{text}: the server's certificate is not trusted; use --cacert FILE (rtchat cert shows it) or --insecure for development"
        )
    } else {
        text
    }
}

/// Where the chat's lines go.
trait Output {
    /// Prints one line.
    async fn say(&mut self, line: &str) -> Result<(), Error>;
}

/// Plain lines on a writer.
struct Plain<W>(W);

impl<W: AsyncWrite + Unpin> Output for Plain<W> {
    async fn say(&mut self, line: &str) -> Result<(), Error> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.0.write_all(&bytes).await.map_err(write_error)?;
        self.0.flush().await.map_err(write_error)
    }
}

fn write_error(e: std::io::Error) -> Error {
    Error::Connection(format!("cannot write the output: {e}"))
}

/// What the user did.
enum Input {
    /// Typed a line (without its end).
    Line(String),
    /// Ended the input (end of file, Ctrl-D).
    End,
    /// Asked to quit now (Ctrl-C in the line editor).
    Interrupted,
    /// The input cannot be read.
    Failed(String),
}

/// Where the lines come from.
enum Source<R> {
    /// Read line by line (pipes, files).
    Plain(Lines<R>),
    /// From the line editor's thread.
    Editor(mpsc::UnboundedReceiver<Input>),
}

impl<R: AsyncBufRead + Unpin> Source<R> {
    /// The next input. Cancel-safe.
    async fn next(&mut self) -> Input {
        match self {
            Source::Plain(lines) => match lines.next_line().await {
                Ok(Some(line)) => Input::Line(line),
                Ok(None) => Input::End,
                Err(e) => Input::Failed(e.to_string()),
            },
            Source::Editor(rx) => rx.recv().await.unwrap_or(Input::End),
        }
    }
}

/// Runs the chat until `input` ends (then waits for the posts still queued) or the client
/// gives up reconnecting. Fatal errors are also printed as `! error: ...`. For pipes and
/// files; on a terminal, see [`run_interactive`].
pub async fn run<R, W>(config: Config, input: R, out: W) -> Result<(), Error>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    chat(config, &mut Source::Plain(input.lines()), &mut Plain(out)).await
}

/// Whether [`run_interactive`] can be used: stdin and stdout are terminals.
pub fn is_interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// Lines to print, handed to a thread that prints them through the line editor.
struct Printer(std::sync::mpsc::Sender<String>);

impl Output for Printer {
    async fn say(&mut self, line: &str) -> Result<(), Error> {
        self.0
            .send(format!("{line}\n"))
            .map_err(|_| Error::Connection("cannot write the output".into()))
    }
}

/// The chat on the terminal (stdin and stdout, see [`is_interactive`]): lines are typed in a
/// line editor, with a prompt, and what arrives meanwhile prints above it, leaving the line
/// being typed as it was. Ctrl-D (on an empty line) ends the input as end of file does in
/// [`run`]; Ctrl-C quits at once. On a terminal the editor cannot drive (`TERM=dumb`), the
/// same as [`run`] on stdin and stdout.
pub async fn run_interactive(config: Config) -> Result<(), Error> {
    use rustyline::error::ReadlineError;
    use rustyline::ExternalPrinter as _;

    let saved = terminal_mode::save();
    let editor_config = rustyline::Config::builder().auto_add_history(true).build();
    let editor = rustyline::DefaultEditor::with_config(editor_config).and_then(|mut editor| {
        let printer = editor.create_external_printer()?;
        Ok((editor, printer))
    });
    // A terminal the editor cannot drive (TERM=dumb...): plain lines, as on a pipe.
    let Ok((mut editor, mut printer)) = editor else {
        let stdin = tokio::io::BufReader::new(tokio::io::stdin());
        return run(config, stdin, tokio::io::stdout()).await;
    };
    // Printing through the editor can wait for it: keep that off the async runtime.
    let (print_tx, print_rx) = std::sync::mpsc::channel::<String>();
    let printing = std::thread::spawn(move || {
        for text in print_rx {
            if printer.print(text).is_err() {
                break;
            }
        }
    });
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    let reading = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let still_reading = reading.clone();
    std::thread::spawn(move || loop {
        let input = match editor.readline(PROMPT) {
            Ok(line) => Input::Line(line),
            Err(ReadlineError::Eof) => Input::End,
            Err(ReadlineError::Interrupted) => Input::Interrupted,
            Err(e) => Input::Failed(e.to_string()),
        };
        let last = !matches!(input, Input::Line(_));
        if last {
            still_reading.store(false, std::sync::atomic::Ordering::SeqCst);
        }
        if input_tx.send(input).is_err() || last {
            return;
        }
    });
    let mut source = Source::<tokio::io::Empty>::Editor(input_rx);
    let result = chat(config, &mut source, &mut Printer(print_tx)).await;
    // Everything said is handed to the editor before the terminal is given back.
    let _ = printing.join();
    if reading.load(std::sync::atomic::Ordering::SeqCst) {
        // The editor is still waiting for a line (the chat ended on its own, e.g. the client
        // gave up): give it a moment to show the last lines, then put the terminal back as
        // it was, on a fresh line.
        std::thread::sleep(Duration::from_millis(100));
        terminal_mode::restore(saved);
        use std::io::Write;
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(b"\x1b[?2004l\r\n");
        let _ = stdout.flush();
    }
    result
}

/// Reads a line typed on the terminal (stdin) without showing it, after `prompt` on
/// stderr: for a password. Echo comes back on even when the read fails.
pub fn read_password(prompt: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut stderr = std::io::stderr();
    write!(stderr, "{prompt}")?;
    stderr.flush()?;
    let saved = terminal_mode::echo_off();
    let mut line = String::new();
    let read = std::io::stdin().read_line(&mut line);
    terminal_mode::restore(saved);
    writeln!(stderr)?;
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// The terminal's settings, to put back if the process ends while the line editor has the
/// terminal in raw mode.
#[cfg(unix)]
mod terminal_mode {
    pub type Saved = Option<libc::termios>;

    pub fn save() -> Saved {
        // SAFETY: tcgetattr writes a termios into the zeroed struct it is given.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            (libc::tcgetattr(libc::STDIN_FILENO, &mut t) == 0).then_some(t)
        }
    }

    /// Turns the terminal's echo off (for a password); returns the settings to restore.
    pub fn echo_off() -> Saved {
        let saved = save();
        if let Some(mut t) = saved {
            t.c_lflag &= !libc::ECHO;
            // SAFETY: t came from tcgetattr on the same descriptor.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &t);
            }
        }
        saved
    }

    pub fn restore(saved: Saved) {
        if let Some(t) = saved {
            // SAFETY: t came from tcgetattr on the same descriptor.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &t);
            }
        }
    }
}

#[cfg(not(unix))]
mod terminal_mode {
    pub type Saved = ();
    pub fn save() -> Saved {}
    pub fn echo_off() -> Saved {}
    pub fn restore(_: Saved) {}
}

/// A typed line on its way to the server.
struct Line {
    text: String,
    /// The same on every try, so the server stores the line once.
    key: String,
    /// Failed tries while the client was connected.
    failures: u32,
}

/// Whether a failed post may be tried again later (the server did not refuse it).
fn retryable(e: &Error) -> bool {
    matches!(
        e,
        Error::Timeout | Error::Unacknowledged | Error::Connection(_) | Error::Closed
    ) || matches!(e, Error::Status { status, .. } if *status >= 500)
}

fn queued_notice(n: usize) -> String {
    let messages = if n == 1 { "message" } else { "messages" };
    let verb = if n == 1 { "it" } else { "they" };
    format!("* not connected: {n} {messages} queued, {verb} will be sent on reconnect")
}

/// Lists the lines that will not be sent.
async fn report_unsent<O: Output>(
    out: &mut O,
    queue: &VecDeque<Line>,
    in_flight: bool,
) -> Result<(), Error> {
    for (i, line) in queue.iter().enumerate() {
        let what = if i == 0 && in_flight {
            "not confirmed (may not have been sent)"
        } else {
            "not sent"
        };
        out.say(&format!("! {what}: {}", printable(&line.text)))
            .await?;
    }
    Ok(())
}

async fn chat<R, O>(config: Config, input: &mut Source<R>, out: &mut O) -> Result<(), Error>
where
    R: AsyncBufRead + Unpin,
    O: Output,
{
    let mut client = match Client::connect(config.transport, &config.url, config.options).await {
        Ok(client) => client,
        // Refused for its token (or its room): say which code and what to do.
        Err(
            e @ (Error::Unauthorized { .. }
            | Error::Forbidden { .. }
            | Error::RoomRefused { .. }
            | Error::Removed { .. }
            | Error::Unsupported(_)),
        ) => {
            out.say(&format!(
                "! error: cannot connect to {}: {}",
                config.url,
                explain(&e)
            ))
            .await?;
            return Err(e);
        }
        Err(e) => {
            let e = Error::Connection(format!("cannot connect to {}: {e}", config.url));
            out.say(&format!("! error: {}", explain(&e))).await?;
            return Err(e);
        }
    };
    if let Some(me) = client.identity() {
        out.say(&format!(
            "* posting as {} (user id {})",
            printable(&me.name),
            printable(&me.uid)
        ))
        .await?;
    }
    let mut shown = Shown::default();
    for m in client.history().iter().rev() {
        let line = format_message(m);
        shown.add(m, &line);
        out.say(&line).await?;
    }
    let poster = client.poster();
    // With a token, posts go out under its name: the poster fills it in (an empty name).
    let user = match client.identity() {
        Some(_) => String::new(),
        None => config.user,
    };
    // Typed lines not yet stored, oldest first; the first one is in flight when `posting`.
    let mut queue: VecDeque<Line> = VecDeque::new();
    let mut posting: Option<JoinHandle<Result<u64, Error>>> = None;
    let mut connected = true;
    // After a failure while connected: when to try again.
    let mut retry_at: Option<Instant> = None;
    // Once the input has ended: until when queued lines may wait.
    let mut input_ended: Option<Instant> = None;
    loop {
        if posting.is_none() && connected && retry_at.is_none() {
            if let Some(line) = queue.front() {
                let (poster, user, text, key) = (
                    poster.clone(),
                    user.clone(),
                    line.text.clone(),
                    line.key.clone(),
                );
                posting = Some(tokio::spawn(async move {
                    poster.post_with_key(&user, &text, key).await
                }));
            }
        }
        if input_ended.is_some() && queue.is_empty() {
            return Ok(());
        }
        let waiting_since = input_ended.filter(|_| !connected);
        tokio::select! {
            event = client.next() => match event {
                Ok(Event::Message(m)) => {
                    let line = format_message(&m);
                    shown.add(&m, &line);
                    out.say(&line).await?;
                }
                Ok(Event::Deleted { id }) => out.say(&shown.deleted(id)).await?,
                Ok(Event::State(state)) => {
                    match state {
                        State::Connected { .. } => {
                            connected = true;
                            retry_at = None;
                        }
                        State::Disconnected { .. } | State::Reconnecting { .. } => connected = false,
                        _ => {}
                    }
                    out.say(&format!("* {state}")).await?;
                }
                Err(e) => {
                    out.say(&format!("! error: {}", explain(&e))).await?;
                    report_unsent(out, &queue, posting.is_some()).await?;
                    return Err(e);
                }
            },
            input = input.next(), if input_ended.is_none() => match input {
                Input::Line(line) => {
                    let line = line.trim_end_matches('\r');
                    if line.trim().is_empty() {
                        continue;
                    }
                    if queue.len() >= MAX_QUEUED {
                        out.say(&format!(
                            "! not sent ({MAX_QUEUED} messages are queued already): {}",
                            printable(line)
                        ))
                        .await?;
                        continue;
                    }
                    queue.push_back(Line {
                        text: line.to_owned(),
                        key: crate::new_key(),
                        failures: 0,
                    });
                    if !connected {
                        out.say(&queued_notice(queue.len())).await?;
                    }
                }
                Input::End => input_ended = Some(Instant::now()),
                Input::Interrupted => {
                    report_unsent(out, &queue, posting.is_some()).await?;
                    return Ok(());
                }
                Input::Failed(e) => {
                    out.say(&format!("! error: cannot read the input: {e}")).await?;
                    input_ended = Some(Instant::now());
                }
            },
            done = async { posting.as_mut().expect("guarded").await }, if posting.is_some() => {
                posting = None;
                let answer = done.unwrap_or_else(|e| Err(Error::Connection(e.to_string())));
                match answer {
                    Ok(_) => {
                        queue.pop_front();
                    }
                    // Posting faster than the server takes: the same line again, when it
                    // says (lines queued while disconnected go out as fast as answered).
                    Err(Error::RateLimited { retry_after, .. }) => {
                        retry_at = Some(Instant::now() + retry_after.min(Duration::from_secs(60)));
                    }
                    Err(e) if retryable(&e) => {
                        if connected {
                            let line = queue.front_mut().expect("the line in flight");
                            line.failures += 1;
                            if line.failures >= MAX_FAILURES {
                                out.say(&format!(
                                    "! error: not sent ({}): {}",
                                    explain(&e),
                                    printable(&line.text)
                                ))
                                .await?;
                                queue.pop_front();
                            } else {
                                retry_at = Some(Instant::now() + Duration::from_secs(1));
                            }
                        } else {
                            // Tried again, same key, once connected.
                            out.say(&queued_notice(queue.len())).await?;
                        }
                    }
                    Err(e) => {
                        out.say(&format!("! error: {}", explain(&e))).await?;
                        queue.pop_front();
                    }
                }
            }
            () = sleep_until(retry_at), if retry_at.is_some() => retry_at = None,
            () = sleep_until(waiting_since.map(|t| t + WAIT_AFTER_INPUT)), if waiting_since.is_some() => {
                let n = queue.len();
                let e = Error::Connection(format!(
                    "the input ended and the client is still not connected after {}s; {n} {} not sent",
                    WAIT_AFTER_INPUT.as_secs(),
                    if n == 1 { "message was" } else { "messages were" },
                ));
                out.say(&format!("! error: {e}")).await?;
                report_unsent(out, &queue, posting.is_some()).await?;
                return Err(e);
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::{explain, format_message, queued_notice, Shown};
    use crate::{Error, Message};

    #[test]
    fn deletions_name_the_message() {
        let m = |id: u64, text: &str| Message {
            id,
            user: "ann".into(),
            text: text.into(),
            time: 0,
            uid: None,
        };
        let mut shown = Shown::default();
        let short = m(1, "hi");
        shown.add(&short, &format_message(&short));
        let long = m(2, &"x".repeat(100));
        shown.add(&long, &format_message(&long));
        let notice = shown.deleted(1);
        assert!(
            notice.starts_with("* (message #1 was deleted: ["),
            "{notice}"
        );
        assert!(notice.ends_with("] ann: hi)"), "{notice}");
        let notice = shown.deleted(2);
        assert!(notice.ends_with("xxx...)"), "{notice}");
        assert_eq!(shown.deleted(1), "* (message #1 was deleted)");
        assert_eq!(shown.deleted(9), "* (message #9 was deleted)");
    }

    #[test]
    fn control_characters_are_escaped() {
        let m = Message {
            id: 1,
            user: "ann".into(),
            text: "hi\u{1b}[2Jthere\nok".into(),
            time: 0,
            uid: None,
        };
        let line = format_message(&m);
        assert!(line.ends_with("] ann: hi\\u{1b}[2Jthere\\nok"), "{line}");
        assert_eq!(line.as_bytes()[0], b'[');
        assert_eq!(&line[3..4], ":");
    }

    #[test]
    fn untrusted_certificates_come_with_the_fix() {
        let e = Error::Connection(
            "cannot connect to https://127.0.0.1:8443: error sending request: invalid peer certificate: UnknownIssuer".into(),
        );
        let text = explain(&e);
        assert!(
            text.ends_with("UnknownIssuer: the server's certificate is not trusted; use --cacert FILE (rtchat cert shows it) or --insecure for development"),
            "{text}"
        );
        let other = Error::Connection("connection refused".into());
        assert_eq!(explain(&other), "connection refused");
    }

    #[test]
    fn the_queued_notice_counts() {
        assert_eq!(
            queued_notice(1),
            "* not connected: 1 message queued, it will be sent on reconnect"
        );
        assert_eq!(
            queued_notice(3),
            "* not connected: 3 messages queued, they will be sent on reconnect"
        );
    }
}

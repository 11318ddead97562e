//! `rtchat client`, the terminal chat, driven through its stdin and stdout.

use crate::common;

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use common::Server;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A running `rtchat client`.
struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    /// Everything it printed so far.
    seen: Vec<String>,
}

impl Chat {
    fn start(args: &[&str]) -> Chat {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtchat"))
            .arg("client")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rtchat client");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        Chat {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
        }
    }

    /// The next line of output, failing after 15 s.
    async fn line(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(15), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no output within 15 s; so far: {:#?}", self.seen))
            .unwrap()
            .unwrap_or_else(|| panic!("the client exited; it printed {:#?}", self.seen));
        self.seen.push(line.clone());
        line
    }

    /// Reads lines until one satisfies `want`, and returns it.
    async fn until(&mut self, want: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.line().await;
            if want(&line) {
                return line;
            }
        }
    }

    async fn type_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin
            .write_all(format!("{text}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Closes stdin and waits for the exit.
    async fn finish(mut self) -> (ExitStatus, Vec<String>) {
        drop(self.stdin.take());
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(15), self.stdout.next_line())
                .await
                .expect("the client exits once stdin is closed")
        {
            self.seen.push(line);
        }
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the client exits")
            .unwrap();
        (status, self.seen)
    }
}

/// `[HH:MM:SS] user: text`.
fn is_message(line: &str, user: &str, text: &str) -> bool {
    let b = line.as_bytes();
    line.len() > 11
        && b[0] == b'['
        && b[3] == b':'
        && b[6] == b':'
        && b[9] == b']'
        && [1, 2, 4, 5, 7, 8].iter().all(|&i| b[i].is_ascii_digit())
        && line[11..] == format!("{user}: {text}")
}

#[tokio::test]
async fn terminal_chat_over_every_transport() {
    let server = Server::start(&["--no-tls", "--max-text", "20"]);
    common::post(&server, "seed", "hello").await;
    for t in [
        "poll", "longpoll", "stream", "sse", "ws", "ws-json", "socketio",
    ] {
        let mut chat = Chat::start(&["--transport", t, "--user", "bob", &server.base]);
        // The history first, oldest first, then the connection.
        assert!(
            is_message(&chat.line().await, "seed", "hello"),
            "{t}: {:?}",
            chat.seen
        );
        let connected = chat.until(|l| l.starts_with("* ")).await;
        assert!(
            connected.starts_with("* connected via "),
            "{t}: {connected}"
        );
        let history = &chat.seen[..chat.seen.len() - 1];
        assert!(
            history.iter().all(|l| l.starts_with('[')),
            "{t}: {history:?}"
        );

        // Typed lines are posted and come back; refused ones print the server's reason.
        chat.type_line(&format!("hi from {t}")).await;
        chat.type_line("").await;
        chat.type_line("this line is much too long").await;
        // (The echo and the error travel separately: either may come first.)
        let echo = format!("hi from {t}");
        while !(chat.seen.iter().any(|l| is_message(l, "bob", &echo))
            && chat.seen.iter().any(|l| l.starts_with("! error: ")))
        {
            chat.line().await;
        }
        let error = chat
            .seen
            .iter()
            .find(|l| l.starts_with("! error: "))
            .unwrap();
        assert!(error.contains("too long"), "{t}: {error}");

        // Messages from others arrive.
        common::post(&server, "carol", &format!("to {t}")).await;
        chat.until(|l| is_message(l, "carol", &format!("to {t}")))
            .await;

        // A last line, then end of input: the post is made before the client exits 0.
        chat.type_line(&format!("bye from {t}")).await;
        let (status, seen) = chat.finish().await;
        assert!(status.success(), "{t}: {status:?} {seen:#?}");
        let last = common::get_json(&server, "/poll").await["msg"][0].clone();
        assert_eq!(last["text"], format!("bye from {t}"), "{t}: {seen:#?}");
        assert_eq!(last["user"], "bob");
    }
}

#[tokio::test]
async fn terminal_chat_reconnects_after_a_restart() {
    let mut server = Server::start(&["--no-tls", "--store", "memory"]);
    let port = server.port;
    let mut chat = Chat::start(&["-t", "ws", "-u", "bob", &server.base]);
    assert_eq!(chat.line().await, "* connected via ws (rtchat.v1)");
    common::post(&server, "ann", "before").await;
    assert!(is_message(&chat.line().await, "ann", "before"));

    server
        .terminate(Duration::from_secs(5))
        .expect("the server stops");
    let down = chat.line().await;
    assert!(down.starts_with("* disconnected: "), "{down}");
    let retry = chat.line().await;
    assert!(
        retry.starts_with("* reconnecting in ") && retry.ends_with("s (attempt 1)"),
        "{retry}"
    );

    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&["--no-tls", "--store", "memory", "--listen", &listen]);
    chat.until(|l| l == "* connected via ws (rtchat.v1)").await;
    let reset = chat.line().await;
    assert!(reset.contains("ids start over"), "{reset}");
    let lines_before = chat.seen.len();
    chat.type_line("back again").await;
    chat.until(|l| is_message(l, "bob", "back again")).await;
    assert_eq!(chat.seen.len(), lines_before + 1, "{:#?}", chat.seen);
    let (status, seen) = chat.finish().await;
    assert!(status.success(), "{seen:#?}");
    drop(server);
}

#[tokio::test]
async fn terminal_chat_fails_clearly_when_the_server_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let chat = Chat::start(&["--transport", "sse", &url]);
    let (status, seen) = chat.finish().await;
    assert_eq!(status.code(), Some(1));
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].starts_with(&format!("! error: cannot connect to {url}")),
        "{seen:?}"
    );
}

/// On a server's shutdown the client answers the server's close frame with its own (RFC 6455
/// §5.5.1), so the server's closing handshakes complete and it does not wait out its grace
/// period for WebSockets "still open".
#[tokio::test]
async fn terminal_chat_answers_the_servers_close_frame() {
    let mut server = Server::start(&["--no-tls", "--store", "memory"]);
    let mut chat = Chat::start(&["-t", "ws", "-u", "bob", &server.base]);
    assert_eq!(chat.line().await, "* connected via ws (rtchat.v1)");
    server.signal("INT");
    let down = chat.line().await;
    assert!(
        down.starts_with("* disconnected: closed by the server (1001"),
        "{down}"
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = server.wait_exit(Duration::from_secs(20));
        (status, server)
    });
    let (status, server) = status.await.unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}: {}",
        server.stderr()
    );
    // The last line it logs; whatever it said about open WebSockets came before.
    let log = server.wait_for_log("rtchat stopped");
    assert!(!log.contains("still open"), "{log}");
    drop(chat);
}

/// A certificate the client does not trust (the server's generated, self-signed one) fails
/// with the fix spelled out.
#[tokio::test]
async fn an_untrusted_certificate_suggests_the_fix() {
    let server = Server::start(&["--store", "memory"]);
    let url = server.tls_base.clone().unwrap();
    for t in ["ws", "poll"] {
        let chat = Chat::start(&["--transport", t, &url]);
        let (status, seen) = chat.finish().await;
        assert_eq!(status.code(), Some(1), "{t}: {seen:?}");
        assert_eq!(seen.len(), 1, "{t}: {seen:?}");
        assert!(
            seen[0].starts_with("! error: cannot connect to "),
            "{t}: {seen:?}"
        );
        assert!(
            seen[0].ends_with(
                "the server's certificate is not trusted; use --cacert FILE (rtchat cert shows it) or --insecure for development"
            ),
            "{t}: {seen:?}"
        );
    }
}

/// Lines typed while the server is away are queued, at most 100 (more are refused, and said
/// so), then sent in the order typed, each once, when the client is connected again.
#[tokio::test]
async fn lines_typed_while_disconnected_are_queued_then_sent_in_order() {
    let mut server = Server::start(&["--no-tls", "--store", "memory"]);
    let port = server.port;
    let mut chat = Chat::start(&["-t", "ws", "-u", "bob", &server.base]);
    assert_eq!(chat.line().await, "* connected via ws (rtchat.v1)");
    server.kill();
    chat.until(|l| l.starts_with("* reconnecting in ")).await;
    for i in 1..=101 {
        chat.type_line(&format!("line {i}")).await;
    }
    chat.until(|l| l == "* not connected: 1 message queued, it will be sent on reconnect")
        .await;
    chat.until(|l| l == "* not connected: 100 messages queued, they will be sent on reconnect")
        .await;
    chat.until(|l| l == "! not sent (100 messages are queued already): line 101")
        .await;

    // 100 posts at once are more than the post rate limit takes (a burst of 20): the refused
    // ones are sent again when the server says, none is dropped. (A quicker rate than the
    // default 5 a second, so the test does not take 16 s.)
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--listen",
        &listen,
        "--post-rate",
        "50",
    ]);
    chat.until(|l| is_message(l, "bob", "line 100")).await;
    assert!(
        !chat
            .seen
            .iter()
            .any(|l| l.starts_with("! ") && !l.ends_with("line 101")),
        "{:#?}",
        chat.seen
    );
    let (status, seen) = chat.finish().await;
    assert!(status.success(), "{seen:#?}");
    // Every message, oldest first, page after page.
    let mut texts = Vec::new();
    let mut since = 0;
    loop {
        let page = common::get_json(&server, &format!("/poll?since={since}")).await;
        let mut ids = common::ids(&page);
        let mut page_texts = common::texts(&page);
        ids.reverse();
        page_texts.reverse();
        texts.extend(page_texts);
        since = ids.last().copied().unwrap_or(since);
        if page["more"] != true {
            break;
        }
    }
    let want: Vec<String> = (1..=100).map(|i| format!("line {i}")).collect();
    assert_eq!(texts, want);
}

/// When the client gives up reconnecting, the lines still queued are listed as not sent.
#[tokio::test]
async fn giving_up_lists_the_lines_not_sent() {
    use rtchat_client::terminal::{self, Config};
    use rtchat_client::{Backoff, Options, Transport};

    let mut server = Server::start(&["--no-tls", "--store", "memory"]);
    let config = Config {
        transport: Transport::Ws,
        url: server.base.clone(),
        user: "bob".into(),
        options: Options {
            backoff: Backoff {
                // Time to type two lines while reconnecting, then give up.
                min: Duration::from_millis(500),
                max: Duration::from_millis(500),
                jitter: false,
                max_attempts: Some(3),
                ..Backoff::default()
            },
            ..Options::default()
        },
    };
    let (mut keyboard, input) = tokio::io::duplex(4096);
    let (output, screen) = tokio::io::duplex(64 * 1024);
    let chat = tokio::spawn(terminal::run(config, BufReader::new(input), output));
    let mut screen = BufReader::new(screen).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(15), screen.next_line())
            .await
            .expect("a line within 15 s")
            .unwrap()
            .expect("more output")
    };
    assert_eq!(next().await, "* connected via ws (rtchat.v1)");
    server.kill();
    assert!(next().await.starts_with("* disconnected: "));
    assert!(next().await.starts_with("* reconnecting in "));
    keyboard.write_all(b"first\nsecond\n").await.unwrap();
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|l: &String| l.starts_with("! error: gave up"))
    {
        seen.push(next().await);
    }
    let queued = "* not connected: 2 messages queued, they will be sent on reconnect";
    assert!(seen.iter().any(|l| l == queued), "{seen:#?}");
    seen.push(next().await);
    seen.push(next().await);
    let n = seen.len();
    assert_eq!(
        seen[n - 2..],
        ["! not sent: first", "! not sent: second"],
        "{seen:#?}"
    );
    let result = chat.await.unwrap();
    assert!(
        matches!(result, Err(rtchat_client::Error::GaveUp { .. })),
        "{result:?}"
    );
}

//! `rtchat client` on a real pseudo-terminal (openpty): the line editor keeps the line being
//! typed intact under incoming messages, and a line typed while disconnected is queued and
//! sent once on reconnect. The screen is read back through a terminal emulator (vt100).

use crate::common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::Server;
use tokio::sync::mpsc;

const ROWS: u16 = 30;
const COLS: u16 = 120;

/// A running `rtchat client` on a pseudo-terminal, and what its screen shows.
struct Terminal {
    child: Child,
    /// The pty's master side: what is written is typed.
    keyboard: std::fs::File,
    output: mpsc::UnboundedReceiver<Vec<u8>>,
    screen: vt100::Parser,
}

fn cloexec(fd: &OwnedFd) {
    // SAFETY: fcntl on a descriptor this test owns.
    let rc = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    assert_eq!(rc, 0, "fcntl: {}", std::io::Error::last_os_error());
}

impl Terminal {
    fn start(args: &[&str]) -> Terminal {
        let (mut master, mut slave) = (-1, -1);
        let size = libc::winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills in two descriptors; no name buffer, default settings.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both were just opened, and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        // Not inherited by the processes other tests start meanwhile.
        cloexec(&master);
        cloexec(&slave);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rtchat"));
        cmd.arg("client")
            .args(args)
            .env("TERM", "xterm-256color")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec. The pty becomes the
        // client's controlling terminal, as in a terminal emulator.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn rtchat client");
        drop(cmd); // closes this process's copies of the pty's slave side
        let mut reader = std::fs::File::from(master.try_clone().unwrap());
        let (tx, output) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the client has exited.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                if tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            keyboard: std::fs::File::from(master),
            output,
            screen: vt100::Parser::new(ROWS, COLS, 0),
        }
    }

    /// The screen's rows, trailing blanks trimmed.
    fn rows(&self) -> Vec<String> {
        self.screen
            .screen()
            .rows(0, COLS)
            .map(|r| r.trim_end().to_owned())
            .collect()
    }

    /// The row the cursor is on.
    fn cursor_row(&self) -> usize {
        self.screen.screen().cursor_position().0.into()
    }

    /// Reads the client's output until the screen satisfies `want` (failing after 20 s,
    /// showing the screen); returns the rows then.
    async fn until(&mut self, what: &str, want: impl Fn(&[String], usize) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let rows = self.rows();
            if want(&rows, self.cursor_row()) {
                return rows;
            }
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(Some(bytes)) => self.screen.process(&bytes),
                Ok(None) => panic!(
                    "the client exited before {what}; the screen:\n{}",
                    rows.join("\n")
                ),
                Err(_) => panic!("no {what} within 20 s; the screen:\n{}", rows.join("\n")),
            }
        }
    }

    /// Types `keys` (`\r` is Enter).
    fn type_keys(&mut self, keys: &str) {
        self.keyboard.write_all(keys.as_bytes()).unwrap();
        self.keyboard.flush().unwrap();
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `row` shows the message `[HH:MM:SS] user: text`.
fn shows(row: &str, user: &str, text: &str) -> bool {
    row.starts_with('[')
        && row
            .get(9..)
            .is_some_and(|rest| rest == format!("] {user}: {text}"))
}

/// The row index of the message, if the screen shows it.
fn find(rows: &[String], user: &str, text: &str) -> Option<usize> {
    rows.iter().position(|r| shows(r, user, text))
}

async fn texts_of(server: &Server, user: &str) -> Vec<String> {
    let page = common::get_json(server, "/poll").await;
    page["msg"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["user"] == user)
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_incoming_message_prints_above_the_line_being_typed() {
    let server = Server::start(&["--no-tls", "--store", "memory"]);
    let mut term = Terminal::start(&["-t", "ws", "-u", "bob", &server.base]);
    term.until("connection", |rows, cursor| {
        rows.iter().any(|r| r == "* connected via ws (rtchat.v1)") && rows[cursor] == ">"
    })
    .await;

    term.type_keys("hello wor");
    term.until("the typed text after the prompt", |rows, cursor| {
        rows[cursor] == "> hello wor"
    })
    .await;

    common::post(&server, "carol", "ping").await;
    let rows = term
        .until("carol's message above the prompt", |rows, cursor| {
            find(rows, "carol", "ping").is_some_and(|at| at < cursor)
                && rows[cursor] == "> hello wor"
        })
        .await;
    // Nothing was mixed into the line being typed: the message has a row of its own.
    assert_eq!(
        rows.iter().filter(|r| r.contains("hello wor")).count(),
        1,
        "{rows:#?}"
    );

    // The line is finished where it was left, and posted whole.
    term.type_keys("ld\r");
    term.until("bob's echo", |rows, _| {
        find(rows, "bob", "hello world").is_some()
    })
    .await;
    assert_eq!(texts_of(&server, "bob").await, ["hello world"]);
}

#[tokio::test]
async fn a_line_typed_while_disconnected_is_queued_and_sent_once() {
    let mut server = Server::start(&["--no-tls", "--store", "memory"]);
    let port = server.port;
    let mut term = Terminal::start(&["-t", "ws", "-u", "bob", &server.base]);
    term.until("connection", |rows, cursor| {
        rows.iter().any(|r| r == "* connected via ws (rtchat.v1)") && rows[cursor] == ">"
    })
    .await;

    server.kill();
    term.until("the disconnection", |rows, _| {
        rows.iter().any(|r| r.starts_with("* reconnecting in "))
    })
    .await;
    term.type_keys("while away\r");
    let rows = term
        .until("the queued notice", |rows, cursor| {
            rows.iter()
                .position(|r| {
                    r == "* not connected: 1 message queued, it will be sent on reconnect"
                })
                .is_some_and(|at| at < cursor)
        })
        .await;
    assert!(find(&rows, "bob", "while away").is_none(), "{rows:#?}");

    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(&["--no-tls", "--store", "memory", "--listen", &listen]);
    let rows = term
        .until("the queued line, posted", |rows, _| {
            find(rows, "bob", "while away").is_some()
        })
        .await;
    let connected = rows
        .iter()
        .rposition(|r| r == "* connected via ws (rtchat.v1)")
        .unwrap();
    assert!(
        find(&rows, "bob", "while away").unwrap() > connected,
        "{rows:#?}"
    );
    assert_eq!(texts_of(&server, "bob").await, ["while away"]);
}

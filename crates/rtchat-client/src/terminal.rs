//! The terminal chat behind `rtchat client`: prints the history and incoming messages as
//! `[HH:MM:SS] user: text`, connection changes as `* ...` lines and failures as
//! `! error: ...`, and posts every line read from the input.

use chrono::{Local, TimeZone};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::{Client, Error, Event, Message, Options, Transport};

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

async fn say<W: AsyncWrite + Unpin>(out: &mut W, line: &str) -> Result<(), Error> {
    let mut bytes = Vec::with_capacity(line.len() + 1);
    bytes.extend_from_slice(line.as_bytes());
    bytes.push(b'\n');
    out.write_all(&bytes).await.map_err(write_error)?;
    out.flush().await.map_err(write_error)
}

fn write_error(e: std::io::Error) -> Error {
    Error::Connection(format!("cannot write the output: {e}"))
}

/// Runs the chat until `input` ends (then waits for the posts still in flight) or the client
/// gives up reconnecting. Fatal errors are also printed as `! error: ...`.
pub async fn run<R, W>(config: Config, input: R, mut out: W) -> Result<(), Error>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut client = match Client::connect(config.transport, &config.url, config.options).await {
        Ok(client) => client,
        Err(e) => {
            let e = Error::Connection(format!("cannot connect to {}: {e}", config.url));
            say(&mut out, &format!("! error: {e}")).await?;
            return Err(e);
        }
    };
    for m in client.history().iter().rev() {
        say(&mut out, &format_message(m)).await?;
    }
    // Posts go out one at a time, in the order typed.
    let (line_tx, mut line_rx) = mpsc::unbounded_channel::<String>();
    let (error_tx, mut error_rx) = mpsc::unbounded_channel::<Error>();
    let poster = client.poster();
    let user = config.user;
    let mut posting = tokio::spawn(async move {
        while let Some(line) = line_rx.recv().await {
            if let Err(e) = poster.post(&user, &line).await {
                let _ = error_tx.send(e);
            }
        }
    });
    let mut line_tx = Some(line_tx);
    let mut lines = input.lines();
    loop {
        tokio::select! {
            event = client.next() => match event {
                Ok(Event::Message(m)) => say(&mut out, &format_message(&m)).await?,
                Ok(Event::State(state)) => say(&mut out, &format!("* {state}")).await?,
                Err(e) => {
                    say(&mut out, &format!("! error: {e}")).await?;
                    return Err(e);
                }
            },
            line = lines.next_line(), if line_tx.is_some() => match line {
                Ok(Some(line)) => {
                    let line = line.trim_end_matches('\r');
                    if !line.trim().is_empty() {
                        if let Some(tx) = &line_tx {
                            let _ = tx.send(line.to_owned());
                        }
                    }
                }
                Ok(None) => line_tx = None,
                Err(e) => {
                    say(&mut out, &format!("! error: cannot read the input: {e}")).await?;
                    line_tx = None;
                }
            },
            Some(e) = error_rx.recv() => say(&mut out, &format!("! error: {e}")).await?,
            _ = &mut posting, if line_tx.is_none() => {
                while let Ok(e) = error_rx.try_recv() {
                    say(&mut out, &format!("! error: {e}")).await?;
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format_message;
    use crate::Message;

    #[test]
    fn control_characters_are_escaped() {
        let m = Message {
            id: 1,
            user: "ann".into(),
            text: "hi\u{1b}[2Jthere\nok".into(),
            time: 0,
        };
        let line = format_message(&m);
        assert!(line.ends_with("] ann: hi\\u{1b}[2Jthere\\nok"), "{line}");
        assert_eq!(line.as_bytes()[0], b'[');
        assert_eq!(&line[3..4], ":");
    }
}

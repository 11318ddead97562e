//! The transports by name: what `rtchat client --transport` and `rtchat bench --transport`
//! take, one set for both.

use std::fmt;
use std::str::FromStr;

/// One way of following the chat. Each name says how a client listens; posting goes the
/// transport's own way (HTTP `POST` for the HTTP ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Short polling: `GET /poll?since=ID&timeout=0` at an interval.
    Poll,
    /// Long polling: `GET /poll?since=ID`, held by the server until a message arrives.
    LongPoll,
    /// The course's never-ending `GET /msgs`: a snapshot line after every message.
    Stream,
    /// Server-Sent Events, `GET /events`.
    Sse,
    /// WebSocket, `rtchat.v1`: the history once, then only each new message.
    Ws,
    /// WebSocket, the course's `json`: a full snapshot after every message.
    WsJson,
    /// Socket.IO with `auth: {snapshots: false}`: only each new message (`msg:new`).
    SocketIo,
    /// Socket.IO the course's way: a `msg:get` snapshot after every message.
    SocketIoSnapshots,
}

impl Transport {
    /// Every transport, in the order the documentation lists them.
    pub const ALL: [Transport; 8] = [
        Transport::Poll,
        Transport::LongPoll,
        Transport::Stream,
        Transport::Sse,
        Transport::Ws,
        Transport::WsJson,
        Transport::SocketIo,
        Transport::SocketIoSnapshots,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Poll => "poll",
            Transport::LongPoll => "longpoll",
            Transport::Stream => "stream",
            Transport::Sse => "sse",
            Transport::Ws => "ws",
            Transport::WsJson => "ws-json",
            Transport::SocketIo => "socketio",
            Transport::SocketIoSnapshots => "socketio-snapshots",
        }
    }

    /// `"a, b, c"`: the names of `set`, for help and error texts.
    pub fn names(set: &[Transport]) -> String {
        set.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    /// Parses a name, accepting only the members of `set` (a tool that does not speak every
    /// transport says which it does).
    pub fn parse_among(s: &str, set: &[Transport]) -> Result<Transport, String> {
        let t: Transport = s.parse()?;
        if set.contains(&t) {
            Ok(t)
        } else {
            Err(format!(
                "transport {s:?} is not supported here; one of {}",
                Transport::names(set)
            ))
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown transport {s:?}; one of {}",
                    Transport::names(&Transport::ALL)
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back() {
        for t in Transport::ALL {
            assert_eq!(t.name().parse::<Transport>(), Ok(t));
        }
        assert!("msgs".parse::<Transport>().unwrap_err().contains("stream"));
    }

    #[test]
    fn a_tool_says_which_it_speaks() {
        let err = Transport::parse_among("poll", &[Transport::LongPoll]).unwrap_err();
        assert!(err.contains("longpoll"), "{err}");
    }
}

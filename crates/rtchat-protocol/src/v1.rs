//! WebSocket subprotocols: the course's `json` and rtchat's `rtchat.v1`, whose frames are
//! JSON objects told apart by `"type"`.
//!
//! rtchat.v1 has rooms: one connection may be in many. Every server frame about a room names
//! it in `"room"` (`general` included); a client frame without `"room"` means `general`, so a
//! client that knows nothing of rooms works unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shapes::{Message, PresenceChange, Reset, Resumed, Truncated, Typing};

/// rtchat's own subprotocol: the history once, then one `msg` frame per message; posts are
/// acknowledged by `ref`; resume with `?since=ID&epoch=E`; rooms with `?rooms=a,b` and
/// `join`/`leave` frames.
pub const SUBPROTOCOL: &str = "rtchat.v1";
/// The course's subprotocol (also what a client naming none gets): a full snapshot
/// ([`crate::Page`]) after every message; a post is `{user, text}`, refused with
/// [`crate::ErrorBody`]. The room `general` only.
pub const JSON_SUBPROTOCOL: &str = "json";
/// The room of a frame that names none (the course's one chat).
pub const GENERAL: &str = "general";

/// What an rtchat.v1 server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// The history, newest first: first on a fresh connection (after `joined`, for a room
    /// joined by name), and after `reset`.
    History {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        msg: Vec<Message>,
        last: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// One new message.
    Msg {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        msg: Message,
    },
    /// A post was stored (or was a repeat of an idempotency key): its id.
    Ack {
        #[serde(rename = "ref")]
        reference: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        id: u64,
    },
    /// A frame was refused; `ref` is the frame's, or `null` for a frame that had none;
    /// `room` the room it was about, when it was about one.
    Error {
        #[serde(rename = "ref", default)]
        reference: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        error: String,
        /// Only on a post refused by a rate limit: milliseconds until a post would be taken
        /// again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// See [`Resumed`].
    Resumed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(flatten)]
        resumed: Resumed,
    },
    /// See [`Reset`].
    Reset {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(flatten)]
        reset: Reset,
    },
    /// See [`Truncated`].
    Truncated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(flatten)]
        truncated: Truncated,
    },
    /// The answer to a `join` (or to a room named in `?rooms=`): the room's position; its
    /// `history` (or resume frames) follows, before any of its `msg`s.
    Joined {
        room: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Value::is_null")]
        reference: Value,
        last: u64,
        epoch: String,
    },
    /// The answer to a `leave`, or (with a `reason`, unasked) the connection was taken out of
    /// the room: it turned private, or its user was removed from it. Nothing more of the room
    /// follows.
    Left {
        room: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Value::is_null")]
        reference: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Who came into the room and who left (coalesced, at most 4 a second per room).
    Presence(PresenceChange),
    /// Someone (not this connection's user) is typing in the room: show it for 5 s unless
    /// repeated.
    Typing(Typing),
    /// With `--auth token`: a `refresh` was taken; the connection now lasts until `expires`
    /// (Unix seconds) plus the server's grace period.
    Refreshed {
        #[serde(rename = "ref", default)]
        reference: Value,
        expires: u64,
    },
    /// A message of the room was deleted (a moderator, its room's owner, or its author):
    /// drop it; histories and resumes leave it out from now on.
    Deleted { room: String, id: u64 },
}

/// The `"type"` of [`ClientFrame::Post`], for a server that reads frames as loose JSON (to
/// give precise errors).
pub const POST_TYPE: &str = "post";
/// The `"type"` of [`ClientFrame::Join`].
pub const JOIN_TYPE: &str = "join";
/// The `"type"` of [`ClientFrame::Leave`].
pub const LEAVE_TYPE: &str = "leave";
/// The `"type"` of [`ClientFrame::Typing`].
pub const TYPING_TYPE: &str = "typing";
/// The `"type"` of [`ClientFrame::Refresh`].
pub const REFRESH_TYPE: &str = "refresh";

/// What an rtchat.v1 client sends. `room` left out means `general`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// A message to post. `ref` (any JSON value) comes back in the `ack` or `error`; `key`
    /// makes the post idempotent.
    Post {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        user: String,
        text: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Value::is_null")]
        reference: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Enter a room: answered `joined`, then its `history` — or, with `since` (and `epoch`),
    /// exactly the messages after `since` and `resumed` (or `reset` and the history). `user`
    /// names the connection for presence.
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        #[serde(rename = "ref", default, skip_serializing_if = "Value::is_null")]
        reference: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// Leave a room: answered `left`.
    Leave {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(rename = "ref", default, skip_serializing_if = "Value::is_null")]
        reference: Value,
    },
    /// The connection's user is typing in a joined room (told to the room's others at most
    /// once a second; never stored). `user` names the connection if nothing did yet.
    Typing {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
    /// With `--auth token`: a fresh token for this connection (of the same user), before the
    /// current one expires or within the grace period after; answered `refreshed` (or an
    /// `error`). Without one the connection is closed with 4001 "token expired".
    Refresh {
        token: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Value::is_null")]
        reference: Value,
    },
}

impl ServerFrame {
    /// Every frame `"type"` a server sends (a client skips the ones it does not know).
    pub const TYPES: [&'static str; 13] = [
        "history",
        "msg",
        "ack",
        "error",
        "resumed",
        "reset",
        "truncated",
        "joined",
        "left",
        "presence",
        "typing",
        "refreshed",
        "deleted",
    ];

    /// The frame as the text of a WebSocket message.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("frames serialize")
    }

    /// The room the frame is about, if it names one.
    pub fn room(&self) -> Option<&str> {
        match self {
            ServerFrame::History { room, .. }
            | ServerFrame::Msg { room, .. }
            | ServerFrame::Ack { room, .. }
            | ServerFrame::Error { room, .. }
            | ServerFrame::Resumed { room, .. }
            | ServerFrame::Reset { room, .. }
            | ServerFrame::Truncated { room, .. } => room.as_deref(),
            ServerFrame::Joined { room, .. } | ServerFrame::Left { room, .. } => Some(room),
            ServerFrame::Presence(p) => Some(&p.room),
            ServerFrame::Typing(t) => Some(&t.room),
            ServerFrame::Refreshed { .. } => None,
            ServerFrame::Deleted { room, .. } => Some(room),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_flat_objects_with_a_type() {
        let frame = ServerFrame::Reset {
            room: None,
            reset: Reset {
                last: 4,
                epoch: "e1".into(),
            },
        };
        assert_eq!(frame.to_text(), r#"{"type":"reset","last":4,"epoch":"e1"}"#);
        let back: ServerFrame =
            serde_json::from_str(r#"{"type":"resumed","after":1,"count":2,"last":3,"epoch":"e"}"#)
                .unwrap();
        assert!(matches!(
            back,
            ServerFrame::Resumed {
                room: None,
                resumed: Resumed { count: 2, .. }
            }
        ));
    }

    #[test]
    fn room_frames_name_their_room_after_the_type() {
        let frame = ServerFrame::Truncated {
            room: Some("a".into()),
            truncated: Truncated { after: 3 },
        };
        assert_eq!(
            frame.to_text(),
            r#"{"type":"truncated","room":"a","after":3}"#
        );
        assert_eq!(
            serde_json::from_str::<ServerFrame>(&frame.to_text()).unwrap(),
            frame
        );
        let frame = ServerFrame::Error {
            reference: Value::from(1),
            room: Some("Foo!".into()),
            error: "bad".into(),
            retry_after_ms: None,
        };
        assert_eq!(
            frame.to_text(),
            r#"{"type":"error","ref":1,"room":"Foo!","error":"bad"}"#
        );
        let joined = ServerFrame::Joined {
            room: "a".into(),
            reference: Value::Null,
            last: 0,
            epoch: "e".into(),
        };
        assert_eq!(
            joined.to_text(),
            r#"{"type":"joined","room":"a","last":0,"epoch":"e"}"#
        );
        assert_eq!(joined.room(), Some("a"));
        let typing: ServerFrame =
            serde_json::from_str(r#"{"type":"typing","room":"b","user":"ann"}"#).unwrap();
        assert_eq!(typing.room(), Some("b"));
    }

    #[test]
    fn types_lists_every_frame() {
        let msg = Message {
            id: 1,
            user: "u".into(),
            text: "t".into(),
            time: 0,
            uid: None,
        };
        let room = || Some("r".to_owned());
        let frames = [
            ServerFrame::History {
                room: room(),
                msg: vec![],
                last: 0,
                epoch: None,
            },
            ServerFrame::Msg { room: room(), msg },
            ServerFrame::Ack {
                reference: Value::Null,
                room: room(),
                id: 1,
            },
            ServerFrame::Error {
                reference: Value::Null,
                room: None,
                error: "e".into(),
                retry_after_ms: None,
            },
            ServerFrame::Resumed {
                room: room(),
                resumed: Resumed {
                    after: 0,
                    count: 0,
                    last: 0,
                    epoch: "e".into(),
                },
            },
            ServerFrame::Reset {
                room: room(),
                reset: Reset {
                    last: 0,
                    epoch: "e".into(),
                },
            },
            ServerFrame::Truncated {
                room: room(),
                truncated: Truncated { after: 0 },
            },
            ServerFrame::Joined {
                room: "r".into(),
                reference: Value::from("j"),
                last: 0,
                epoch: "e".into(),
            },
            ServerFrame::Left {
                room: "r".into(),
                reference: Value::Null,
                reason: None,
            },
            ServerFrame::Presence(PresenceChange {
                room: "r".into(),
                joined: vec!["ann".into()],
                left: vec![],
            }),
            ServerFrame::Typing(Typing {
                room: "r".into(),
                user: "ann".into(),
            }),
            ServerFrame::Refreshed {
                reference: Value::from(7),
                expires: 1_800_000_000,
            },
            ServerFrame::Deleted {
                room: "r".into(),
                id: 3,
            },
        ];
        assert_eq!(frames.len(), ServerFrame::TYPES.len());
        for (frame, name) in frames.iter().zip(ServerFrame::TYPES) {
            let value = serde_json::to_value(frame).unwrap();
            assert_eq!(value["type"], name);
            let back: ServerFrame = serde_json::from_value(value).unwrap();
            assert_eq!(&back, frame, "{name} reads back");
        }
    }

    #[test]
    fn acks_carry_the_posts_ref() {
        let frame = ServerFrame::Ack {
            reference: Value::from("a1"),
            room: None,
            id: 9,
        };
        assert_eq!(frame.to_text(), r#"{"type":"ack","ref":"a1","id":9}"#);
        let frame = ServerFrame::Ack {
            reference: Value::from("a1"),
            room: Some("general".into()),
            id: 9,
        };
        assert_eq!(
            frame.to_text(),
            r#"{"type":"ack","ref":"a1","room":"general","id":9}"#
        );
    }

    #[test]
    fn a_post_without_ref_or_key_leaves_them_out() {
        let post = ClientFrame::Post {
            room: None,
            user: "u".into(),
            text: "t".into(),
            reference: Value::Null,
            key: None,
        };
        assert_eq!(
            serde_json::to_string(&post).unwrap(),
            r#"{"type":"post","user":"u","text":"t"}"#
        );
    }

    #[test]
    fn client_frames_without_a_room_read_and_leave_it_out() {
        let join: ClientFrame =
            serde_json::from_str(r#"{"type":"join","since":4,"epoch":"e","ref":1}"#).unwrap();
        assert_eq!(
            join,
            ClientFrame::Join {
                room: None,
                since: Some(4),
                epoch: Some("e".into()),
                reference: Value::from(1),
                user: None,
            }
        );
        let leave = ClientFrame::Leave {
            room: Some("a".into()),
            reference: Value::Null,
        };
        assert_eq!(
            serde_json::to_string(&leave).unwrap(),
            r#"{"type":"leave","room":"a"}"#
        );
        let typing = ClientFrame::Typing {
            room: None,
            user: None,
        };
        assert_eq!(
            serde_json::to_string(&typing).unwrap(),
            r#"{"type":"typing"}"#
        );
    }
}

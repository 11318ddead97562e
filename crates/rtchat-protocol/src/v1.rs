//! WebSocket subprotocols: the course's `json` and rtchat's `rtchat.v1`, whose frames are
//! JSON objects told apart by `"type"`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shapes::{Message, Reset, Resumed, Truncated};

/// rtchat's own subprotocol: the history once, then one `msg` frame per message; posts are
/// acknowledged by `ref`; resume with `?since=ID&epoch=E`.
pub const SUBPROTOCOL: &str = "rtchat.v1";
/// The course's subprotocol (also what a client naming none gets): a full snapshot
/// ([`crate::Page`]) after every message; a post is `{user, text}`, refused with
/// [`crate::ErrorBody`].
pub const JSON_SUBPROTOCOL: &str = "json";

/// What an rtchat.v1 server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerFrame {
    /// The history, newest first: first on a fresh connection, and after `reset`.
    History {
        msg: Vec<Message>,
        last: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
    },
    /// One new message.
    Msg { msg: Message },
    /// A post was stored (or was a repeat of an idempotency key): its id.
    Ack {
        #[serde(rename = "ref")]
        reference: Value,
        id: u64,
    },
    /// A post was refused; `ref` is the post's, or `null` for a frame that had none.
    Error {
        #[serde(rename = "ref", default)]
        reference: Value,
        error: String,
        /// Only on a post refused by a rate limit: milliseconds until a post would be taken
        /// again.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// See [`Resumed`].
    Resumed(Resumed),
    /// See [`Reset`].
    Reset(Reset),
    /// See [`Truncated`].
    Truncated(Truncated),
}

/// The `"type"` of [`ClientFrame::Post`], for a server that reads frames as loose JSON (to
/// give precise errors).
pub const POST_TYPE: &str = "post";

/// What an rtchat.v1 client sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ClientFrame {
    /// A message to post. `ref` (any JSON value) comes back in the `ack` or `error`; `key`
    /// makes the post idempotent.
    Post {
        user: String,
        text: String,
        #[serde(rename = "ref", default, skip_serializing_if = "Value::is_null")]
        reference: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
}

impl ServerFrame {
    /// Every frame `"type"` a server sends (a client skips the ones it does not know).
    pub const TYPES: [&'static str; 7] = [
        "history",
        "msg",
        "ack",
        "error",
        "resumed",
        "reset",
        "truncated",
    ];

    /// The frame as the text of a WebSocket message.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("frames serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_flat_objects_with_a_type() {
        let frame = ServerFrame::Reset(Reset {
            last: 4,
            epoch: "e1".into(),
        });
        assert_eq!(frame.to_text(), r#"{"type":"reset","last":4,"epoch":"e1"}"#);
        let back: ServerFrame =
            serde_json::from_str(r#"{"type":"resumed","after":1,"count":2,"last":3,"epoch":"e"}"#)
                .unwrap();
        assert!(matches!(
            back,
            ServerFrame::Resumed(Resumed { count: 2, .. })
        ));
    }

    #[test]
    fn types_lists_every_frame() {
        let msg = Message {
            id: 1,
            user: "u".into(),
            text: "t".into(),
            time: 0,
        };
        let frames = [
            ServerFrame::History {
                msg: vec![],
                last: 0,
                epoch: None,
            },
            ServerFrame::Msg { msg },
            ServerFrame::Ack {
                reference: Value::Null,
                id: 1,
            },
            ServerFrame::Error {
                reference: Value::Null,
                error: "e".into(),
                retry_after_ms: None,
            },
            ServerFrame::Resumed(Resumed {
                after: 0,
                count: 0,
                last: 0,
                epoch: "e".into(),
            }),
            ServerFrame::Reset(Reset {
                last: 0,
                epoch: "e".into(),
            }),
            ServerFrame::Truncated(Truncated { after: 0 }),
        ];
        for (frame, name) in frames.iter().zip(ServerFrame::TYPES) {
            let value = serde_json::to_value(frame).unwrap();
            assert_eq!(value["type"], name);
        }
    }

    #[test]
    fn acks_carry_the_posts_ref() {
        let frame = ServerFrame::Ack {
            reference: Value::from("a1"),
            id: 9,
        };
        assert_eq!(frame.to_text(), r#"{"type":"ack","ref":"a1","id":9}"#);
    }

    #[test]
    fn a_post_without_ref_or_key_leaves_them_out() {
        let post = ClientFrame::Post {
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
}

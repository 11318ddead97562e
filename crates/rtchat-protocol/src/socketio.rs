//! Socket.IO (v5 over Engine.IO v4) on the default namespace: event names, the handshake's
//! `auth`, and the shapes of the rooms events.
//!
//! A socket starts in the room `general` (the course's chat: `msg:get`, `msg:post` without a
//! room); `room:join` / `room:leave` put it in other rooms and take it out. Every event about
//! a room other than the course's `msg:get` carries `"room"`.

use serde::{Deserialize, Serialize};

/// Server → client: the history of `general` as a [`crate::Page`] (the course's event), on
/// connect and, unless `auth.snapshots` is `false`, after every message of `general`.
pub const MSG_GET: &str = "msg:get";
/// Server → client: one new [`crate::Message`] with its room (rtchat's event):
/// `{"id","user","text","time","room"}`.
pub const MSG_NEW: &str = "msg:new";
/// Server → client: a resume's catch-up, pages of [`crate::Page`] (`more` on all but the
/// last) with `"room"`.
pub const MSG_SINCE: &str = "msg:since";
/// Client → server: [`PostRequest`]; the acknowledgement is [`crate::PostAck`] or
/// [`Refusal`].
pub const MSG_POST: &str = "msg:post";
/// Server → client: a [`Refusal`] of a request sent without an acknowledgement callback, or
/// a resume that failed.
pub const MSG_ERROR: &str = "msg:error";
/// Client → server: [`JoinRequest`]; acknowledged with [`Joined`] (or a [`Refusal`]), then
/// [`ROOM_HISTORY`] (a fresh join, or a reset) or [`MSG_SINCE`] pages (a resume), before any
/// [`MSG_NEW`] of the room.
pub const ROOM_JOIN: &str = "room:join";
/// Client → server: [`RoomName`]; acknowledged with the same [`RoomName`] (or a [`Refusal`]).
pub const ROOM_LEAVE: &str = "room:leave";
/// Server → client: [`crate::shapes::MessageDeleted`], a message of a room the socket is in
/// was deleted: drop it (sockets that asked for the course's snapshots get a fresh `msg:get`
/// too).
pub const MSG_DELETED: &str = "msg:deleted";
/// Server → client: [`crate::shapes::Removed`], the socket was taken out of a room (it
/// turned private, or the user was removed from its members); nothing more of it follows.
pub const ROOM_LEFT: &str = "room:left";
/// Server → client: a joined room's history, a [`crate::Page`] with `"room"` (and
/// `"reset":true` when the position the join named meant nothing here).
pub const ROOM_HISTORY: &str = "room:history";
/// Server → client: [`PresenceChange`], who came into a room and who left (coalesced, at most 4 a
/// second per room).
pub const PRESENCE: &str = "presence";
/// Client → server: [`TypingRequest`]; server → client: [`Typing`] (never to the typer's own
/// sockets).
pub const TYPING: &str = "typing";

/// The handshake's `auth` object. Every field is optional: the course's client sends none.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Auth {
    /// Resume `general` after this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// The epoch `last` belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// `false`: no `msg:get` after every message (`msg:new` is enough). Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<bool>,
    /// The name the socket is present under in its rooms (and types as). Unnamed sockets
    /// count in a room's `online` but are not listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `msg:post`: a message for `room` (`general` when left out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    pub user: String,
    pub text: String,
    /// The post's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `room:join`: enter `room`, fresh (its history) or, with `last` (and `epoch`), resuming
/// after message `last`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub room: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// The acknowledgement of a `room:join`: the room's newest id and epoch when it was joined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub room: String,
    pub last: u64,
    pub epoch: String,
}

/// `room:leave` and its acknowledgement: `{room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomName {
    pub room: String,
}

/// `typing` from a client: it is typing in `room` (`general` when left out). `user` only
/// counts for a socket that did not name itself in its handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// `typing` to the other clients of the room, and `presence` (who came into the room and who
/// left since the last one): the same shapes as on every transport.
pub use crate::shapes::{PresenceChange, Typing};

/// A refused request, as an acknowledgement or a `msg:error`: `{"error":...}`, with the room
/// the request was about when it named one, and, for a post refused by a rate limit, the
/// milliseconds until a post would be taken again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    /// A refusal in words, about `room` if it is named.
    pub fn new(error: impl Into<String>, room: Option<&str>) -> Refusal {
        Refusal {
            error: error.into(),
            room: room.map(str::to_owned),
            retry_after_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_their_room_only_when_there_is_one() {
        let general = Refusal::new("no", None);
        assert_eq!(
            serde_json::to_string(&general).unwrap(),
            r#"{"error":"no"}"#
        );
        let room = Refusal::new("no", Some("a"));
        assert_eq!(
            serde_json::to_string(&room).unwrap(),
            r#"{"error":"no","room":"a"}"#
        );
    }

    #[test]
    fn the_course_auth_is_empty() {
        let auth: Auth = serde_json::from_str("{}").unwrap();
        assert_eq!(auth, Auth::default());
        assert_eq!(serde_json::to_string(&auth).unwrap(), "{}");
    }
}

//! The JSON shapes every transport shares: a message, a page of them, the notices of how a
//! subscription starts, a post's acknowledgement and an error.

use serde::{Deserialize, Serialize};

/// One chat message, as every transport carries it: `{"id","user","text","time"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Assigned by the server, strictly increasing within a channel's epoch.
    pub id: u64,
    /// Who wrote it.
    pub user: String,
    /// What they wrote.
    pub text: String,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub time: i64,
    /// With `--auth token`: the poster's user id (the token's `sub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// A list of messages, newest first, with its position and flags: `/poll` answers, `/msgs`
/// lines, the `json` subprotocol's snapshots, rtchat.v1's `history` and Socket.IO's `msg:get`
/// and `msg:since`. Flags the server leaves out read as `false`/absent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Page {
    /// The messages, newest first.
    pub msg: Vec<Message>,
    /// The newest id of the channel when the page was made (courses' servers leave it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// The epoch `last` and the ids belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// More pages follow (a resume's catch-up or `limit`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    /// The position sent meant nothing here (another epoch, or newer than anything known):
    /// this is the whole history, start over.
    #[serde(default, skip_serializing_if = "is_false")]
    pub reset: bool,
    /// Messages right after the position sent are no longer kept.
    #[serde(default, skip_serializing_if = "is_false")]
    pub truncated: bool,
}

impl Page {
    /// `last`, or the newest id in `msg` when the server left it out.
    pub fn last(&self) -> u64 {
        self.last
            .unwrap_or_else(|| self.msg.iter().map(|m| m.id).max().unwrap_or(0))
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The position sent meant nothing here (another epoch, or newer than anything this server
/// handed out): forget it; the history follows. rtchat.v1 `reset`, SSE `event: reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reset {
    /// The channel's newest id.
    pub last: u64,
    /// The channel's epoch.
    pub epoch: String,
}

/// A resume caught up: `count` messages after `after` were sent, and the live ones follow.
/// rtchat.v1 `resumed`, SSE `event: resumed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    /// The position resumed from.
    pub after: u64,
    /// How many messages were sent to catch up.
    pub count: u64,
    /// The newest id sent.
    pub last: u64,
    /// The channel's epoch.
    pub epoch: String,
}

/// The messages right after `after` are no longer kept; what is kept follows.
/// rtchat.v1 `truncated`, SSE `event: truncated`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncated {
    /// The position resumed from.
    pub after: u64,
}

/// A stored post: `POST /poll` and `POST /msgs` answer it, as does a Socket.IO `msg:post`
/// acknowledgement: `{"status":"ok","id":N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostAck {
    /// Always `"ok"`.
    pub status: String,
    /// The message's id (the first one's, for a repeated idempotency key).
    pub id: u64,
}

impl PostAck {
    /// The acknowledgement of message `id`.
    pub fn ok(id: u64) -> PostAck {
        PostAck {
            status: "ok".to_owned(),
            id,
        }
    }
}

/// Every refusal: `{"error":"..."}` — HTTP answers (with a precise status), the `json`
/// subprotocol, Socket.IO acknowledgements and `msg:error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, in words.
    pub error: String,
    /// Only on a post refused by a rate limit (`--post-rate`): milliseconds until a post
    /// would be taken again (HTTP also sends `Retry-After`, in whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// A machine-readable reason where one helps a client decide what to do (with
    /// `--auth token`: `token_missing`, `token_expired`, `token_revoked`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl ErrorBody {
    /// A refusal in words, with no retry hint.
    pub fn new(error: impl Into<String>) -> ErrorBody {
        ErrorBody {
            error: error.into(),
            retry_after_ms: None,
            code: None,
        }
    }
}

/// `GET /rooms`: every room, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomList {
    pub rooms: Vec<RoomInfo>,
}

/// One room of [`RoomList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    /// The newest id handed out in it.
    pub last: u64,
    pub epoch: String,
    /// How many are in it now: named users once each, plus unnamed streams.
    pub online: u64,
}

/// `GET /rooms/{room}/presence`: who is in the room now, with its position. A room that does
/// not exist answers `online` 0, no users, `last` 0 and `epoch` `""`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomPresence {
    pub room: String,
    /// Named users (each once) plus unnamed streams.
    pub online: u64,
    /// The named users, earliest first.
    pub users: Vec<PresentUser>,
    pub last: u64,
    pub epoch: String,
}

/// One user of [`RoomPresence`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresentUser {
    pub user: String,
    /// With `--auth token`: their user id (presence counts users by it; two may share a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// When they came in, in milliseconds since the Unix epoch.
    pub since: i64,
}

/// A presence event: who came into the room and who left since the previous one (SSE
/// `event: presence`, a `/rooms/{room}/msgs` line `{"presence":{...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceChange {
    pub room: String,
    pub joined: Vec<String>,
    pub left: Vec<String>,
}

/// A typing event: `user` is typing in `room` (SSE `event: typing`, a `/rooms/{room}/msgs`
/// line `{"typing":{...}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Typing {
    pub room: String,
    pub user: String,
}

/// The body of `POST /rooms/{room}/typing`; answered `{"status":"ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypingPost {
    pub user: String,
}

/// A room's access settings (`--auth token`): the answer to `PUT /rooms/{room}` and to
/// `POST|DELETE /rooms/{room}/members/{uid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    pub room: String,
    /// Only the owner and the members may join, read, resume into and post to it.
    pub private: bool,
    /// The user id of its creator (none for `general`, direct messages and rooms nobody with
    /// a token has used yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The members' user ids, sorted.
    pub members: Vec<String>,
}

/// The body of `PUT /rooms/{room}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettingsChange {
    pub private: bool,
}

/// The other party of a direct message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmParty {
    pub uid: String,
    /// Their display name, when the server knows it (an account's, or the name their token
    /// last showed here); `null` otherwise.
    pub name: Option<String>,
}

/// `POST /me/dm/{uid}`: the direct message's room with that user (opened, or found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmOpened {
    pub room: String,
    pub with: DmParty,
}

/// One room of `GET /me/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyRoom {
    pub room: String,
    pub private: bool,
    /// This user made the room.
    #[serde(default, skip_serializing_if = "is_false")]
    pub owner: bool,
    /// For a direct message: who it is with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<DmParty>,
}

/// `GET /me/rooms`: the rooms and direct messages the user belongs to, sorted by room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MyRooms {
    pub rooms: Vec<MyRoom>,
}

/// A deleted message: SSE `event: deleted`'s data, Socket.IO `msg:deleted`, and (with
/// `status`) the answer to `DELETE /rooms/{room}/msgs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDeleted {
    pub room: String,
    pub id: u64,
}

/// Why a connection was taken out of a room it was in (its access narrowed: the room turned
/// private, or the user was removed from its members): rtchat.v1 `left` with a `reason`, SSE
/// `event: left`, a `/msgs` line `{"left":{...}}`, Socket.IO `room:left`. Nothing more of the
/// room follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub room: String,
    pub reason: String,
}

/// The body of an admin's ban, mute or revocation: why, and until when (`until`, Unix
/// seconds, or `for`, a duration such as `"2h"`; neither: until lifted). All optional.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sanction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub lasting: Option<String>,
}

/// A ban or a mute in force, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionInfo {
    pub uid: String,
    /// For a mute: the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Unix seconds; `null`: until lifted.
    pub until: Option<u64>,
    pub reason: String,
    /// The admin who set it.
    pub by: String,
}

/// `GET /admin/bans`, `GET /admin/mutes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SanctionList {
    pub sanctions: Vec<SanctionInfo>,
}

/// One entry of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The admin's user id.
    pub actor: String,
    /// `ban`, `unban`, `kick`, `mute`, `unmute`, `revoke`.
    pub action: String,
    /// A user id or a token id.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /admin/audit`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditLog {
    pub entries: Vec<AuditRecord>,
}

/// The answer to an admin action: `{"status":"ok","audit":ID}` (the audit entry it made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminDone {
    pub status: String,
    pub audit: u64,
}

/// `GET /admin/overview`: what the admin page shows, in one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminOverview {
    /// The administrator asking.
    pub you: AdminSelf,
    /// Clients following the chat now, per transport (the figures of `rtchat_clients`).
    pub transports: Vec<TransportClients>,
    /// Every room (as `GET /rooms` lists them, private ones and direct messages included),
    /// with who is in it.
    pub rooms: Vec<RoomOverview>,
    /// The bans in force.
    pub bans: Vec<SanctionInfo>,
    /// The mutes in force.
    pub mutes: Vec<SanctionInfo>,
    /// The newest entries of the audit log, newest first (at most 20).
    pub audit: Vec<AuditRecord>,
}

/// Who asked for an [`AdminOverview`]: their user id and display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSelf {
    pub uid: String,
    pub name: String,
}

/// One transport of [`AdminOverview`]: its `transport` label and how many follow through it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportClients {
    pub transport: String,
    pub clients: u64,
}

/// One room of [`AdminOverview`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomOverview {
    pub name: String,
    /// How many are in it now.
    pub online: u64,
    /// The newest id handed out in it.
    pub last: u64,
    /// The named users in it now (presence), for a room this node holds.
    pub users: Vec<PresentUser>,
}

/// The answer to `DELETE /admin/users/{uid}?messages=delete|keep`:
/// `{"status":"ok","audit":ID,"messages":N}`, `N` the user's messages tombstoned (`delete`)
/// or shown under "deleted user" (`keep`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub status: String,
    pub audit: u64,
    pub messages: u64,
}

/// Whether `epoch` is one a client may keep and send back: 1–64 characters of `A–Z a–z 0–9 -
/// _` (safe in a query string and an SSE id). The server's epochs always are.
pub fn valid_epoch(epoch: &str) -> bool {
    (1..=64).contains(&epoch.len())
        && epoch
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_course_page_without_flags_reads() {
        let page: Page =
            serde_json::from_str(r#"{"msg":[{"id":2,"user":"a","text":"b","time":5}]}"#).unwrap();
        assert_eq!(page.last(), 2);
        assert!(!page.reset && !page.more && !page.truncated);
        assert_eq!(page.epoch, None);
    }

    #[test]
    fn flags_that_are_false_are_left_out() {
        let page = Page {
            last: Some(0),
            epoch: Some("e1".into()),
            ..Page::default()
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"msg":[],"last":0,"epoch":"e1"}"#
        );
    }

    #[test]
    fn epochs() {
        assert!(valid_epoch("ab12-_Z"));
        assert!(!valid_epoch(""));
        assert!(!valid_epoch("a b"));
        assert!(!valid_epoch(&"a".repeat(65)));
    }
}

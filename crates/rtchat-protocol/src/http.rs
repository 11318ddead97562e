//! The HTTP side: paths, query parameters and headers.

/// Polling: `GET /poll?since=ID&epoch=E&timeout=S` (long unless `timeout=0`), `POST /poll`.
pub const POLL: &str = "/poll";
/// The course's stream: `GET /msgs`, one snapshot per line after every message; `POST /msgs`.
pub const MSGS: &str = "/msgs";
/// Server-Sent Events: `GET /events`, one `msg` event per message, ids `EPOCH:ID`.
pub const EVENTS: &str = "/events";
/// WebSockets (`rtchat.v1` or `json`); the course's client also upgrades at `/`.
pub const WS: &str = "/ws";
/// A WebSocket echo peer for Autobahn, served only with `--ws-echo`.
pub const WS_ECHO: &str = "/ws/echo";
/// Prometheus metrics, served only on the `--metrics-listen` listener (never on the public
/// ports).
pub const METRICS: &str = "/metrics";
/// Liveness: `GET /healthz` answers `200 {"status":"ok"}` while the process serves at all.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: `GET /readyz` answers `200 {"status":"ready"}` when the store answers and the
/// server is not draining, `503 {"status":"draining"|"unavailable","error":...}` otherwise.
pub const READYZ: &str = "/readyz";
/// Socket.IO's Engine.IO endpoint.
pub const SOCKETIO: &str = "/socket.io/";

/// Rooms: `GET /rooms` lists them ([`crate::shapes::RoomList`]); each room's endpoints are
/// [`room_path`]`(room, leaf)` with a leaf of [`room`]. The course's `/poll`, `/msgs` and
/// `/events` are the room `general`.
pub const ROOMS: &str = "/rooms";

/// The leaves of a room's endpoints, `/rooms/{room}/LEAF`.
pub mod room {
    /// `GET|POST`: exactly `/poll`'s contract; `?user=` on `GET` makes the poller present.
    pub const POLL: &str = "poll";
    /// `GET`: `/msgs`' stream plus `{"presence":{...}}` / `{"typing":{...}}` lines; `POST`
    /// posts.
    pub const MSGS: &str = "msgs";
    /// `GET`: `/events`' SSE plus `event: presence` and `event: typing`.
    pub const EVENTS: &str = "events";
    /// `GET`: who is in the room ([`crate::shapes::RoomPresence`]).
    pub const PRESENCE: &str = "presence";
    /// `POST {"user":U}`: U is typing ([`crate::shapes::TypingPost`]).
    pub const TYPING: &str = "typing";
}

/// `/rooms/{room}/members/{uid}` (`POST`: add, `DELETE`: remove; the owner or an admin).
pub const ROOM_MEMBER: &str = "/rooms/{room}/members/{uid}";
/// `POST /me/dm/{uid}`: opens (or finds) the direct message with a user.
pub const ME_DM: &str = "/me/dm/{uid}";
/// `GET /me/rooms`: the rooms and direct messages the user belongs to.
pub const ME_ROOMS: &str = "/me/rooms";

/// `/rooms/{room}/{leaf}` (room names need no escaping: `a-z 0-9 - _`, or `dm:` and hex).
pub fn room_path(room: &str, leaf: &str) -> String {
    format!("{ROOMS}/{room}/{leaf}")
}

/// Query parameter: the newest id the client holds.
pub const SINCE: &str = "since";
/// Query parameter: the epoch that id belongs to.
pub const EPOCH: &str = "epoch";
/// Query parameter: how long a long poll may be held, in seconds (`0`: answer at once).
pub const TIMEOUT: &str = "timeout";
/// Query parameter: the name a stream or a poll is present under in its room (presence).
pub const USER: &str = "user";

/// SSE's resume header (`EPOCH:ID`, or a bare `ID`).
pub const LAST_EVENT_ID: &str = "last-event-id";

/// The SSE event names besides messages (which use the default event, `message`). Their
/// `data:` is the shape of the same name in [`crate::shapes`].
pub mod sse_event {
    /// [`crate::shapes::Reset`]: the position meant nothing here; the whole history follows.
    pub const RESET: &str = "reset";
    /// [`crate::shapes::Resumed`]: caught up after a resume.
    pub const RESUMED: &str = "resumed";
    /// [`crate::shapes::Truncated`]: messages right after the position are no longer kept.
    pub const TRUNCATED: &str = "truncated";
    /// [`crate::shapes::PresenceChange`] (`/rooms/{room}/events` only).
    pub const PRESENCE: &str = "presence";
    /// [`crate::shapes::Typing`] (`/rooms/{room}/events` only).
    pub const TYPING: &str = "typing";
    /// [`crate::shapes::Removed`]: taken out of the room (it turned private, or the user was
    /// removed from it); the stream ends.
    pub const LEFT: &str = "left";
    /// [`crate::shapes::MessageDeleted`]: a message of the room was deleted; drop it.
    pub const DELETED: &str = "deleted";
}

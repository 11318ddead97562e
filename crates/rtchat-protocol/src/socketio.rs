//! Socket.IO (v5 over Engine.IO v4) on the default namespace: event names and the handshake's
//! `auth`.

use serde::{Deserialize, Serialize};

/// Server → client: the history as a [`crate::Page`] (the course's event), on connect and,
/// unless `auth.snapshots` is `false`, after every message.
pub const MSG_GET: &str = "msg:get";
/// Server → client: one new [`crate::Message`] (rtchat's event).
pub const MSG_NEW: &str = "msg:new";
/// Server → client: a resumed socket's catch-up, pages of [`crate::Page`] (`more` on all but
/// the last).
pub const MSG_SINCE: &str = "msg:since";
/// Client → server: `{user, text, key?}`; the acknowledgement is [`crate::PostAck`] or
/// [`crate::ErrorBody`].
pub const MSG_POST: &str = "msg:post";
/// Server → client: [`crate::ErrorBody`] for a post sent without an acknowledgement callback,
/// or a resume that failed.
pub const MSG_ERROR: &str = "msg:error";

/// The handshake's `auth` object. Every field is optional: the course's client sends none.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Auth {
    /// Resume after this id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u64>,
    /// The epoch `last` belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// `false`: no `msg:get` after every message (`msg:new` is enough). Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<bool>,
}

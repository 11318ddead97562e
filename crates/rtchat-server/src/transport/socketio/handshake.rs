//! The handshake's `auth`: where a socket resumes `general`, whether it wants the course's
//! snapshots, and the name it is present under. A malformed one is refused with a
//! `connect_error` naming the problem.

use std::sync::Arc;

use rtchat_core::{Limits, NewPost, PostError};

/// What a client asked for in its handshake's `auth`.
#[derive(Debug, Clone)]
pub(super) struct Handshake {
    /// Resume `general` after this message id...
    pub last: Option<u64>,
    /// ...of this epoch (`auth.epoch`), when the client knows it.
    pub epoch: Option<String>,
    /// Receive a `msg:get` snapshot after every message of `general` (the course's
    /// behaviour).
    pub snapshots: bool,
    /// Present in its rooms under this name (`auth.user`); unnamed sockets are counted, not
    /// listed.
    pub user: Option<Arc<str>>,
    /// The token (`auth.token`), with `--auth token`.
    pub token: Option<String>,
}

impl Default for Handshake {
    /// No `auth`: a fresh, unnamed connection with snapshots.
    fn default() -> Self {
        Handshake {
            last: None,
            epoch: None,
            snapshots: true,
            user: None,
            token: None,
        }
    }
}

impl Handshake {
    pub fn parse(auth: &serde_json::Value, limits: &Limits) -> Result<Handshake, String> {
        let Some(obj) = auth.as_object() else {
            return Ok(Handshake::default());
        };
        let last = match obj.get("last") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                format!("auth.last must be a message id (a whole number, 0 or more), got {v}")
            })?),
        };
        let epoch = match obj.get("epoch") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(e)) => Some(e.clone()),
            Some(v) => return Err(format!("auth.epoch must be a string, got {v}")),
        };
        let snapshots = match obj.get("snapshots") {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(v) => return Err(format!("auth.snapshots must be true or false, got {v}")),
        };
        let user = match obj.get("user") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(
                user_name(v, limits)
                    .map_err(|e| format!("auth.user is not a name rtchat takes: {e}"))?,
            ),
        };
        let token = match obj.get("token") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(t)) => Some(t.clone()),
            Some(_) => return Err("auth.token must be a string (a JWT)".to_owned()),
        };
        Ok(Handshake {
            last,
            epoch,
            snapshots,
            user,
            token,
        })
    }
}

/// A name checked by the rules of a post's `user` (the same length limit and characters).
pub(super) fn user_name(value: &serde_json::Value, limits: &Limits) -> Result<Arc<str>, PostError> {
    let probe = serde_json::json!({"user": value, "text": "-"});
    NewPost::from_value(&probe, limits).map(|post| Arc::from(post.user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(auth: serde_json::Value) -> Result<Handshake, String> {
        Handshake::parse(&auth, &Limits::default())
    }

    #[test]
    fn handshake_auth() {
        let h = parse(json!({})).unwrap();
        assert_eq!((h.last, h.snapshots), (None, true));
        assert!(h.user.is_none());
        let h = parse(json!({"last": 7, "snapshots": false})).unwrap();
        assert_eq!((h.last, h.snapshots), (Some(7), false));
        assert!(parse(json!({"last": "7"})).is_err());
        assert!(parse(json!({"last": -1})).is_err());
        assert!(parse(json!({"snapshots": 1})).is_err());
        let h = parse(json!({"last": 3, "epoch": "ab12cd34"})).unwrap();
        assert_eq!(h.epoch.as_deref(), Some("ab12cd34"));
        assert!(parse(json!({"epoch": 5})).is_err());
    }

    #[test]
    fn names_follow_the_rules_of_a_post() {
        let h = parse(json!({"user": "ann"})).unwrap();
        assert_eq!(h.user.as_deref(), Some("ann"));
        let err = parse(json!({"user": 5})).unwrap_err();
        assert_eq!(
            err,
            "auth.user is not a name rtchat takes: \"user\" must be a string"
        );
        let err = parse(json!({"user": "a".repeat(65)})).unwrap_err();
        assert!(err.contains("too long"), "{err}");
        assert!(parse(json!({"user": "an\nn"})).is_err());
        assert!(parse(json!({"user": "  "})).is_err());
    }
}

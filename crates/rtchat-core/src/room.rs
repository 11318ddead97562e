//! Rooms as clients name them: the rule a room name follows, and why opening a room can be
//! refused. A room is a channel of the hub; the course's one chat is the room
//! [`GENERAL`](crate::GENERAL).

use crate::store::StoreError;

/// The longest room name, in characters.
pub const MAX_ROOM_NAME: usize = 64;

/// Why a room could not be opened (joined, posted to, read).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    /// The name breaks the rule of [`check_room_name`].
    #[error("room names are 1 to {MAX_ROOM_NAME} characters of a-z, 0-9, - and _ (or a direct message's dm:<16 hex digits>); got {0:?}")]
    BadName(String),
    /// Creating it would exceed [`HubConfig::max_rooms`](crate::HubConfig::max_rooms).
    #[error("this server already holds its maximum of {max} rooms (--max-rooms); join or post in an existing room")]
    TooMany { max: usize },
    /// The store failed.
    #[error("{0}")]
    Store(StoreError),
}

impl From<StoreError> for RoomError {
    fn from(e: StoreError) -> RoomError {
        RoomError::Store(e)
    }
}

impl RoomError {
    /// True when the client asked for something it cannot have (as opposed to a server-side
    /// failure).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, RoomError::Store(_))
    }
}

/// The prefix of a direct message's room: `dm:` and 16 lowercase hex digits (the server
/// derives them from the two user ids; who may use such a room is the server's rule).
pub const DM_PREFIX: &str = "dm:";

/// Whether `name` has the form of a direct message's room, `dm:<16 lowercase hex digits>`.
pub fn is_dm_room(name: &str) -> bool {
    name.strip_prefix(DM_PREFIX)
        .is_some_and(|h| h.len() == 16 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

/// Checks a room name: 1 to [`MAX_ROOM_NAME`] characters of `a-z`, `0-9`, `-` and `_`, or a
/// direct message's `dm:<16 hex digits>` ([`is_dm_room`]). Names this plain need no escaping
/// in a URL path, a log line or a Redis key, and cannot look like one another.
pub fn check_room_name(name: &str) -> Result<(), RoomError> {
    let ok = is_dm_room(name)
        || (!name.is_empty()
            && name.len() <= MAX_ROOM_NAME
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_')));
    if ok {
        Ok(())
    } else {
        // Quoted in the error as given, but never more than a little of it.
        let shown: String = name.chars().take(MAX_ROOM_NAME + 1).collect();
        Err(RoomError::BadName(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_digits_dash_and_underscore() {
        for good in ["general", "a", "room-2_b", &"x".repeat(64)] {
            assert_eq!(check_room_name(good), Ok(()), "{good}");
        }
        assert_eq!(check_room_name("dm:0123456789abcdef"), Ok(()));
        for bad in [
            "",
            "A",
            "a b",
            "é",
            "a/b",
            "a.b",
            &"x".repeat(65),
            "dm:0123456789ABCDEF",
            "dm:0123456789abcde",
            "dm:0123456789abcdef0",
            "dm:",
            "x:0123456789abcdef",
        ] {
            assert!(
                matches!(check_room_name(bad), Err(RoomError::BadName(_))),
                "{bad}"
            );
        }
        let long = "y".repeat(10_000);
        let text = check_room_name(&long).unwrap_err().to_string();
        assert!(text.len() < 200, "{text}");
        assert!(text.starts_with("room names are 1 to 64 characters"));
    }
}

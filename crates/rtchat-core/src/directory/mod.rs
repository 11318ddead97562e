//! Who may do what, kept next to the messages (identity, issue 15): accounts, revoked
//! tokens, each room's owner, privacy and members; and moderation (issue 16): bans, mutes and
//! the audit log.
//!
//! A [`Directory`] is the second half of what a store holds: [`crate::SqliteStore`] keeps it
//! in the same database file (so one backup holds everything), [`crate::MemoryStore`] in
//! memory, and a shared store (Redis) will too. The rules that use it (who may join a
//! private room, whose token is refused) live in the server; the directory only remembers.
//!
//! User ids (`uid`) are opaque strings: the `sub` of a token, or an id made at signup.
//! Account names (the display names people log in with) are unique, compared exactly.

pub(crate) mod memory;
mod redis;
mod sqlite;

#[cfg(test)]
mod conformance;

use async_trait::async_trait;

use crate::store::{Store, StoreError};

/// A built-in account (`POST /auth/signup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The stable user id tokens carry as `sub`.
    pub uid: String,
    /// The name its owner logs in with and posts under.
    pub name: String,
    /// The password's argon2id hash in PHC string form (never the password).
    pub password_hash: String,
    /// May moderate and administer (`rtchat user grant-admin`).
    pub admin: bool,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created: i64,
}

/// A room's access settings. A room nobody configured is public and has no owner.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomAccess {
    /// Who made it (its first poster or joiner with a token); may change its settings.
    pub owner: Option<String>,
    /// Only members may join, read, resume into and post to it.
    pub private: bool,
}

/// A private room (or direct message) as [`Directory::private_rooms`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivateRoom {
    pub room: String,
    pub owner: Option<String>,
    /// Sorted.
    pub members: Vec<String>,
}

/// A user banned from the server (`until`: Unix seconds; `None`: until lifted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub uid: String,
    pub until: Option<u64>,
    pub reason: String,
    /// The admin who banned.
    pub by: String,
}

/// A user who may read a room but not post in it (`until`: Unix seconds; `None`: until
/// lifted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    pub room: String,
    pub uid: String,
    pub until: Option<u64>,
    pub reason: String,
    pub by: String,
}

/// One moderation action, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Assigned by the store, increasing.
    pub id: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at: i64,
    /// Who did it (a user id).
    pub actor: String,
    /// What: `ban`, `unban`, `kick`, `mute`, `unmute`, `revoke`...
    pub action: String,
    /// On what: a user id, a token id, a message (`room/id`).
    pub target: String,
    pub room: Option<String>,
    pub reason: Option<String>,
}

/// Why a directory change was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    /// An account with this name exists already.
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    /// An account with this user id exists already.
    #[error("the user id {0:?} is taken")]
    UidTaken(String),
    /// The storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Accounts, revoked tokens and room access, as a store keeps them.
///
/// A directory is always the second half of a [`Store`] (the same object keeps both), so
/// whoever holds only the directory (the server's auth layer) can still reach the messages,
/// e.g. a user's messages when an admin deletes the user ([`Store::messages_of`],
/// [`Store::anonymize`]).
#[async_trait]
pub trait Directory: Store {
    /// Makes an account; refuses a name or uid already used.
    async fn create_account(&self, account: Account) -> Result<(), DirectoryError>;

    /// The account with this user id.
    async fn account(&self, uid: &str) -> Result<Option<Account>, StoreError>;

    /// The account with this name (for logins).
    async fn account_by_name(&self, name: &str) -> Result<Option<Account>, StoreError>;

    /// Makes an account an administrator or not; false when there is no such account.
    async fn set_admin(&self, uid: &str, admin: bool) -> Result<bool, StoreError>;

    /// Deletes the account with this user id (an admin deleting the user): its name is free
    /// again for a new signup (which gets a new user id). False when there was none.
    async fn delete_account(&self, uid: &str) -> Result<bool, StoreError>;

    /// Refuses the token `jti` until `until` (Unix seconds: its expiry, after which it is
    /// refused anyway and the entry can go).
    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError>;

    /// The revoked tokens still unexpired at `now` (Unix seconds), and their expiries; forgets
    /// the others.
    async fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError>;

    /// A room's access settings (public and ownerless when never set).
    async fn room_access(&self, room: &str) -> Result<RoomAccess, StoreError>;

    /// Makes `uid` the room's owner if it has none; returns the owner after the call.
    async fn claim_room(&self, room: &str, uid: &str) -> Result<String, StoreError>;

    /// Makes the room private or public.
    async fn set_private(&self, room: &str, private: bool) -> Result<(), StoreError>;

    /// Adds a member; false when `uid` was one already.
    async fn add_member(&self, room: &str, uid: &str) -> Result<bool, StoreError>;

    /// Removes a member; false when `uid` was not one.
    async fn remove_member(&self, room: &str, uid: &str) -> Result<bool, StoreError>;

    /// Whether `uid` is a member of the room.
    async fn is_member(&self, room: &str, uid: &str) -> Result<bool, StoreError>;

    /// The room's members, sorted.
    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError>;

    /// The rooms `uid` is a member of, sorted.
    async fn rooms_of(&self, uid: &str) -> Result<Vec<String>, StoreError>;

    /// Removes `uid` from every room it is a member of (an admin deleting the user), except
    /// direct messages (whose members are always their two users: the other one keeps the
    /// conversation); returns how many memberships went. Rooms it owns keep it as owner.
    async fn remove_memberships(&self, uid: &str) -> Result<usize, StoreError>;

    /// Every private room with its owner and members, sorted by room (the server keeps them
    /// in memory so that a join or a post is checked without a store access).
    async fn private_rooms(&self) -> Result<Vec<PrivateRoom>, StoreError>;

    /// Bans a user (replacing an earlier ban of theirs).
    async fn ban(&self, ban: Ban) -> Result<(), StoreError>;

    /// Lifts a user's ban; false when there was none.
    async fn unban(&self, uid: &str) -> Result<bool, StoreError>;

    /// The bans not yet over at `now` (Unix seconds), sorted by user; forgets the others.
    async fn bans(&self, now: u64) -> Result<Vec<Ban>, StoreError>;

    /// Mutes a user in a room (replacing an earlier mute there).
    async fn mute(&self, mute: Mute) -> Result<(), StoreError>;

    /// Lifts a mute; false when there was none.
    async fn unmute(&self, room: &str, uid: &str) -> Result<bool, StoreError>;

    /// The mutes not yet over at `now` (Unix seconds), sorted by room and user; forgets the
    /// others.
    async fn mutes(&self, now: u64) -> Result<Vec<Mute>, StoreError>;

    /// Appends a moderation action to the audit log (its `id` is assigned); returns the id.
    async fn record(&self, entry: AuditEntry) -> Result<u64, StoreError>;

    /// The newest `limit` audit entries, newest first.
    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
}

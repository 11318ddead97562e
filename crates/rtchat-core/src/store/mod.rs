//! Where messages live. The hub talks to a [`Store`] only; durable (SQLite) and in-memory
//! stores implement it here, and a shared store (Redis) will too. A store keeps each
//! channel's messages, hands out its ids, and remembers its epoch; it does not deliver
//! anything: delivery is the [`Broker`](crate::broker::Broker)'s job.

pub mod backup;
mod lock;
mod memory;
pub mod redis;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use sqlite::{Retention, SqliteStore};

use crate::message::{Message, NewPost};

/// What went wrong in the storage layer (disk full, database gone, ...). Its text reaches
/// clients; its cause is kept for logs.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

/// The kinds of [`StoreError`] a caller may treat differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// No room left (disk full, or the configured size cap): nothing of the batch is stored.
    Full,
    /// The store cannot be written (read-only file, lost connection...).
    Unavailable,
    /// The data cannot be read as an rtchat store (corrupt, or from a newer rtchat).
    Unreadable,
    /// Anything else.
    Other,
}

impl StoreError {
    /// An error of `kind` with the text clients see.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same, keeping `source` as its cause.
    pub fn with_source(
        kind: StoreErrorKind,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: Some(Arc::new(source)),
        }
    }

    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl PartialEq for StoreError {
    fn eq(&self, other: &StoreError) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for StoreError {}

/// A channel as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Made when the channel's history began (a new database, a start of the memory store):
    /// ids are only comparable within one epoch.
    pub epoch: String,
    /// The newest id handed out in this channel (0 if none); ids are never reused.
    pub last_id: u64,
}

/// A channel in the store's list of them ([`Store::channels`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSummary {
    pub name: String,
    pub info: ChannelInfo,
    /// Whether it still holds a message that is not deleted (a channel whose messages all
    /// went under retention holds none).
    pub has_messages: bool,
}

/// One post to store in a batch.
#[derive(Debug, Clone)]
pub struct Append {
    pub channel: Arc<str>,
    pub post: NewPost,
}

/// What became of one post of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored under a new id.
    Stored(Message),
    /// Its key was used for the same message within the dedupe window: that message, and
    /// nothing new stored.
    Duplicate(Message),
    /// Its key was used for a different message within the window (its id): refused.
    Conflict { id: u64 },
}

/// Messages read back from a store after a given id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Oldest first; deleted messages are left out.
    pub messages: Vec<Message>,
    /// True when some messages right after the requested id are no longer retained, so the
    /// page does not continue exactly where the caller left off. Deleted messages are not a
    /// gap: their tombstones say they existed.
    pub truncated: bool,
}

/// Persistence behind the hub: per channel, assigns ids, keeps messages, knows the epoch.
///
/// The hub calls [`Store::append`] from a single writer task, so implementations need not
/// order concurrent appends themselves, and may commit a whole batch at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs ("memory", "sqlite /path ...").
    fn describe(&self) -> String;

    /// Every channel the store holds, by name.
    async fn channels(&self) -> Result<Vec<ChannelSummary>, StoreError>;

    /// The channel, created (with a fresh epoch) if it does not exist yet.
    async fn open_channel(&self, channel: &str) -> Result<ChannelInfo, StoreError>;

    /// The channel if it exists; reading never creates one.
    async fn find_channel(&self, channel: &str) -> Result<Option<ChannelInfo>, StoreError>;

    /// Stores the posts in order, stamped with `time`, each in its channel (created if
    /// needed) under the next id of that channel; a post whose key its poster used within
    /// `dedupe` in that channel is not stored again (see [`Appended`]). Either the whole
    /// batch is stored or none of it.
    async fn append(
        &self,
        posts: &[Append],
        time: i64,
        dedupe: Duration,
    ) -> Result<Vec<Appended>, StoreError>;

    /// The newest `n` messages of the channel, newest first, deleted ones left out.
    async fn recent(&self, channel: &str, n: usize) -> Result<Vec<Message>, StoreError>;

    /// Up to `limit` messages of the channel with an id greater than `after`, oldest first,
    /// deleted ones left out.
    async fn after(&self, channel: &str, after: u64, limit: usize) -> Result<Page, StoreError>;

    /// Marks a message deleted: it keeps its id (a tombstone) but is never served again.
    /// False if there is no such message.
    async fn delete(&self, channel: &str, id: u64) -> Result<bool, StoreError>;

    /// Every message `uid` posted (matching the messages' `uid`) that is not deleted, as
    /// (channel, id), sorted by channel then id: what an admin deleting the user tombstones.
    async fn messages_of(&self, uid: &str) -> Result<Vec<(String, u64)>, StoreError>;

    /// Shows every message `uid` posted under `name` instead, and clears its `uid` (an admin
    /// deleting the user but keeping their messages). Tombstones of theirs are changed too;
    /// returns how many messages that are not deleted were changed.
    async fn anonymize(&self, uid: &str, name: &str) -> Result<usize, StoreError>;

    /// A cheap check that the store answers (for readiness probes, `GET /readyz`): a durable
    /// store runs one small read against its database, so a database that has become
    /// unreadable, or a connection stuck behind a hung disk, shows here. It reads no
    /// messages and writes nothing. A store with nothing that can fail (memory) answers at
    /// once, which is the default.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A short random epoch: eight characters of `[a-z0-9]`.
pub fn new_epoch() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

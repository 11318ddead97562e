//! Where messages live. The hub talks to a [`Store`] only, so durable (SQLite) and shared
//! (Redis) stores are implementations of this trait, not rewrites of the hub.

mod lock;
mod memory;
mod sqlite;

use async_trait::async_trait;

pub use memory::MemoryStore;
pub use sqlite::{Retention, SqliteStore};

use crate::message::{Message, NewPost};

/// A failure of the storage layer (disk full, database gone, ...). Its text reaches clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Messages read back from a store after a given id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Oldest first.
    pub messages: Vec<Message>,
    /// True when some messages right after the requested id are no longer retained, so the
    /// page does not continue exactly where the caller left off.
    pub truncated: bool,
}

/// Persistence behind the hub: assigns ids and keeps messages.
///
/// The hub calls [`Store::append`] from a single writer task, so implementations need not
/// order concurrent appends themselves, and may commit a whole batch at once.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs ("memory", "sqlite:/path", ...).
    fn describe(&self) -> String;

    /// Stores the posts in order, stamped with `time`, and returns them with their new ids
    /// (strictly increasing, continuing after every id handed out before). Either all posts
    /// of the batch are stored or none is.
    async fn append(&self, posts: &[NewPost], time: i64) -> Result<Vec<Message>, StoreError>;

    /// The newest `n` messages, newest first.
    async fn recent(&self, n: usize) -> Result<Vec<Message>, StoreError>;

    /// Up to `limit` messages with an id greater than `after`, oldest first.
    async fn after(&self, after: u64, limit: usize) -> Result<Page, StoreError>;
}

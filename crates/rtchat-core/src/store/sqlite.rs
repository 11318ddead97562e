//! The durable store: embedded SQLite (bundled, nothing to install).
//!
//! # Durability
//! The database runs in WAL mode with `synchronous=FULL`: a transaction's commit returns only
//! after its WAL frames are fsync'd, so a message the hub acknowledges survives a crash of
//! rtchat and a power loss (as far as the disk honours fsync). The hub's writer task hands
//! this store every post waiting at that moment as one batch, committed in one transaction:
//! one fsync for many posts, so throughput does not collapse to one fsync per message.
//!
//! # Schema
//! Versioned with `PRAGMA user_version`; opening an older database applies the missing
//! migrations in order, each in its own transaction. A database from a newer rtchat is refused.
//! Ids come from `INTEGER PRIMARY KEY AUTOINCREMENT`, so they are never reused, not even
//! after retention deleted the newest rows.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode};

use super::lock::{self, DbLock};
use super::{Page, Store, StoreError};
use crate::message::{Message, NewPost};

/// The schema, one step per version (`user_version` = how many have been applied).
const MIGRATIONS: &[&str] = &[
    // v1: the messages.
    "CREATE TABLE messages (
         id   INTEGER PRIMARY KEY AUTOINCREMENT,
         user TEXT    NOT NULL,
         text TEXT    NOT NULL,
         time INTEGER NOT NULL
     );",
    // v2: age-based retention deletes by time.
    "CREATE INDEX messages_time ON messages(time);",
];

/// How much history a durable store keeps. The default keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many of the newest messages.
    pub max_count: Option<u64>,
    /// Delete messages older than this.
    pub max_age: Option<Duration>,
}

/// Messages in an SQLite database file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Arc<Mutex<Connection>>,
    retention: Retention,
    /// The durability settings as the connection reports them after setting them
    /// (`journal_mode=wal, synchronous=2`), for [`Store::describe`].
    settings: String,
    /// Held while the store is open: no second server on this database.
    _lock: DbLock,
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) and migrates the database at `path`.
    /// `max_bytes` caps the file's size: posts beyond it fail as on a full disk.
    pub fn open(
        path: &Path,
        retention: Retention,
        max_bytes: Option<u64>,
    ) -> Result<SqliteStore, StoreError> {
        let err = |what: &str, e: &dyn std::fmt::Display| {
            StoreError(format!("{what} {}: {e}", path.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError(format!("cannot create the folder {}: {e}", dir.display()))
            })?;
        }
        let lock = lock::lock(path)?;
        let mut conn = Connection::open(path).map_err(|e| err("cannot open the database", &e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| err("cannot open the database", &e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| err("not a readable rtchat database:", &e))?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .map_err(|e| err("cannot use the database", &e))?;
        conn.execute_batch("PRAGMA synchronous=FULL;")
            .map_err(|e| err("cannot use the database", &e))?;
        let journal_mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(|e| err("cannot use the database", &e))?;
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(|e| err("cannot use the database", &e))?;
        let settings = format!("journal_mode={journal_mode}, synchronous={synchronous}");
        let check: String = conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(|e| err("the database is corrupt:", &e))?;
        if check != "ok" {
            return Err(err("the database is corrupt:", &check));
        }
        migrate(&mut conn, version)
            .map_err(|e| StoreError(format!("{} ({})", e.0, path.display())))?;
        if let Some(max) = max_bytes {
            let page_size: i64 = conn
                .query_row("PRAGMA page_size", [], |r| r.get(0))
                .map_err(|e| err("cannot use the database", &e))?;
            let pages = (max / page_size.max(1) as u64).max(1);
            conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))
                .map_err(|e| err("cannot use the database", &e))?;
        }
        Ok(SqliteStore {
            path: path.to_owned(),
            conn: Arc::new(Mutex::new(conn)),
            retention,
            settings,
            _lock: lock,
        })
    }

    /// Runs `f` on the connection on a blocking thread (SQLite calls block on disk).
    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn).map_err(store_error)
        })
        .await
        .map_err(|e| StoreError(format!("database task failed: {e}")))?
    }
}

fn migrate(conn: &mut Connection, version: i64) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError(format!(
            "the database was written by a newer rtchat (schema v{version}; this rtchat knows up to v{known})"
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let next = i as i64 + 1;
        let tx = conn.transaction().map_err(store_error)?;
        tx.execute_batch(step)
            .and_then(|()| tx.execute_batch(&format!("PRAGMA user_version={next}")))
            .and_then(|()| tx.commit())
            .map_err(|e| {
                StoreError(format!(
                    "cannot migrate the database to schema v{next}: {e}"
                ))
            })?;
        tracing::info!(schema = next, "migrated the database");
    }
    Ok(())
}

fn store_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError(
            "the disk is full (or the database reached --db-max-mb); the message was not stored"
                .to_owned(),
        ),
        Some(ErrorCode::ReadOnly) => {
            StoreError("the database is read-only; the message was not stored".to_owned())
        }
        _ => StoreError(format!("database error: {e}")),
    }
}

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get::<_, i64>(0)? as u64,
        user: row.get(1)?,
        text: row.get(2)?,
        time: row.get(3)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn describe(&self) -> String {
        format!(
            "sqlite {} ({}; keeps {})",
            self.path.display(),
            self.settings,
            match (self.retention.max_count, self.retention.max_age) {
                (None, None) => "everything".to_owned(),
                (Some(n), None) => format!("the newest {n} messages"),
                (None, Some(age)) => format!("messages younger than {}s", age.as_secs()),
                (Some(n), Some(age)) =>
                    format!("the newest {n} messages younger than {}s", age.as_secs()),
            }
        )
    }

    async fn append(&self, posts: &[NewPost], time: i64) -> Result<Vec<Message>, StoreError> {
        let posts = posts.to_vec();
        let retention = self.retention;
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let mut stored = Vec::with_capacity(posts.len());
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (user, text, time) VALUES (?1, ?2, ?3)",
                )?;
                for post in posts {
                    insert.execute(params![post.user, post.text, time])?;
                    stored.push(Message {
                        id: tx.last_insert_rowid() as u64,
                        user: post.user,
                        text: post.text,
                        time,
                    });
                }
            }
            if let Some(max) = retention.max_count {
                let newest = stored.last().map_or(0, |m| m.id);
                tx.execute(
                    "DELETE FROM messages WHERE id <= ?1",
                    params![newest.saturating_sub(max) as i64],
                )?;
            }
            if let Some(age) = retention.max_age {
                tx.execute(
                    "DELETE FROM messages WHERE time < ?1",
                    params![time - age.as_millis() as i64],
                )?;
            }
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn recent(&self, n: usize) -> Result<Vec<Message>, StoreError> {
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, user, text, time FROM messages ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![n as i64], row_to_message)?;
            rows.collect()
        })
        .await
    }

    async fn after(&self, after: u64, limit: usize) -> Result<Page, StoreError> {
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, user, text, time FROM messages WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let messages: Vec<Message> = stmt
                .query_map(params![after as i64, limit as i64], row_to_message)?
                .collect::<Result<_, _>>()?;
            // Ids are consecutive (AUTOINCREMENT, rolled back with failed batches), so a
            // hole right after `after` means retention deleted those messages.
            let truncated = messages.first().is_some_and(|m| m.id > after + 1);
            Ok(Page {
                messages,
                truncated,
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(text: &str) -> NewPost {
        NewPost {
            user: "u".into(),
            text: text.into(),
        }
    }

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rtchat-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("rtchat.db")
    }

    #[tokio::test]
    async fn ids_continue_across_reopen_and_retention_keeps_the_newest() {
        let path = temp_db("reopen");
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        let first = store.append(&[post("a"), post("b")], 1).await.unwrap();
        assert_eq!(first.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 2]);
        drop(store);

        let retention = Retention {
            max_count: Some(3),
            max_age: None,
        };
        let store = SqliteStore::open(&path, retention, None).unwrap();
        let more = store
            .append(&[post("c"), post("d"), post("e")], 2)
            .await
            .unwrap();
        assert_eq!(more.iter().map(|m| m.id).collect::<Vec<_>>(), [3, 4, 5]);
        let recent = store.recent(10).await.unwrap();
        assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), [5, 4, 3]);
        let page = store.after(0, 10).await.unwrap();
        assert!(page.truncated);
        assert_eq!(page.messages[0].id, 3);
        assert!(!store.after(3, 10).await.unwrap().truncated);
    }

    #[tokio::test]
    async fn age_retention_deletes_old_messages() {
        let path = temp_db("age");
        let retention = Retention {
            max_count: None,
            max_age: Some(Duration::from_secs(10)),
        };
        let store = SqliteStore::open(&path, retention, None).unwrap();
        store.append(&[post("old")], 1_000).await.unwrap();
        store.append(&[post("new")], 20_000).await.unwrap();
        let recent = store.recent(10).await.unwrap();
        assert_eq!(recent.len(), 1);
        assert_eq!(recent[0].text, "new");
    }

    #[tokio::test]
    async fn a_full_database_refuses_the_batch_and_keeps_what_it_had() {
        let path = temp_db("full");
        let store = SqliteStore::open(&path, Retention::default(), Some(64 * 1024)).unwrap();
        let text = "x".repeat(2000);
        let mut stored = 0;
        let err = loop {
            match store.append(&[post(&text)], 1).await {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 1000, "the cap never bit");
        };
        assert!(err.0.contains("disk is full"), "{err}");
        assert_eq!(store.recent(10_000).await.unwrap().len(), stored);
    }

    #[test]
    fn garbage_and_newer_databases_are_refused() {
        let path = temp_db("garbage");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![b'z'; 8192]).unwrap();
        let err = SqliteStore::open(&path, Retention::default(), None)
            .err()
            .unwrap();
        assert!(err.0.contains("not a readable rtchat database"), "{err}");

        let path = temp_db("newer");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version=99").unwrap();
        drop(conn);
        let err = SqliteStore::open(&path, Retention::default(), None)
            .err()
            .unwrap();
        assert!(err.0.contains("newer rtchat"), "{err}");
    }

    #[tokio::test]
    async fn an_older_schema_is_migrated() {
        let path = temp_db("old");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "INSERT INTO messages (user, text, time) VALUES ('ann', 'from v1', 5); PRAGMA user_version=1;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        assert_eq!(store.recent(1).await.unwrap()[0].text, "from v1");
        let conn = store.conn.lock().unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}

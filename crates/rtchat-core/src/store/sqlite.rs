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
//! `channels` holds each channel's epoch (made with the channel: a new database is a new
//! epoch) and the newest id it handed out, so ids are never reused, not even after retention
//! deleted the newest rows. `messages` is keyed by channel and id; a deleted message keeps its
//! row as a tombstone (`deleted = 1`), and a post's idempotency key is kept with it.
//! Version 3 turned the single chat of versions 1-2 into the channel `general`, ids unchanged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{params, Connection, ErrorCode};

use super::lock::{self, DbLock};
use super::{
    new_epoch, Append, Appended, ChannelInfo, ChannelSummary, Page, Store, StoreError,
    StoreErrorKind,
};
use crate::message::Message;

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
    // v3: channels, each with its epoch and ids; tombstones; idempotency keys. The one chat
    // so far becomes the channel `general`, its ids and its AUTOINCREMENT high mark kept.
    "CREATE TABLE channels (
         name    TEXT    PRIMARY KEY,
         epoch   TEXT    NOT NULL,
         last_id INTEGER NOT NULL
     ) WITHOUT ROWID;
     INSERT INTO channels (name, epoch, last_id) VALUES ('general', lower(hex(randomblob(4))),
         max(ifnull((SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0),
             ifnull((SELECT max(id) FROM messages), 0)));
     CREATE TABLE messages_v3 (
         channel TEXT    NOT NULL,
         id      INTEGER NOT NULL,
         user    TEXT    NOT NULL,
         text    TEXT    NOT NULL,
         time    INTEGER NOT NULL,
         key     TEXT,
         deleted INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (channel, id)
     ) WITHOUT ROWID;
     INSERT INTO messages_v3 (channel, id, user, text, time)
         SELECT 'general', id, user, text, time FROM messages;
     DROP TABLE messages;
     ALTER TABLE messages_v3 RENAME TO messages;
     CREATE INDEX messages_time ON messages(channel, time);
     CREATE INDEX messages_key ON messages(channel, user, key) WHERE key IS NOT NULL;",
    // v4: the authenticated poster's user id (NULL for anonymous posts).
    "ALTER TABLE messages ADD COLUMN uid TEXT;",
    // v5: the directory (see `directory/`): accounts, revoked tokens, room access, members.
    "CREATE TABLE accounts (
         uid           TEXT    PRIMARY KEY,
         name          TEXT    NOT NULL UNIQUE,
         password_hash TEXT    NOT NULL,
         admin         INTEGER NOT NULL DEFAULT 0,
         created       INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE revoked_tokens (
         jti   TEXT    PRIMARY KEY,
         until INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE room_access (
         room    TEXT    PRIMARY KEY,
         owner   TEXT,
         private INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     CREATE TABLE room_members (
         room TEXT NOT NULL,
         uid  TEXT NOT NULL,
         PRIMARY KEY (room, uid)
     ) WITHOUT ROWID;
     CREATE INDEX room_members_uid ON room_members(uid, room);",
    // v6: moderation (see `directory/`): bans, mutes, the audit log.
    "CREATE TABLE bans (
         uid    TEXT PRIMARY KEY,
         until  INTEGER,
         reason TEXT NOT NULL,
         by     TEXT NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE mutes (
         room   TEXT NOT NULL,
         uid    TEXT NOT NULL,
         until  INTEGER,
         reason TEXT NOT NULL,
         by     TEXT NOT NULL,
         PRIMARY KEY (room, uid)
     ) WITHOUT ROWID;
     CREATE TABLE audit (
         id     INTEGER PRIMARY KEY AUTOINCREMENT,
         at     INTEGER NOT NULL,
         actor  TEXT    NOT NULL,
         action TEXT    NOT NULL,
         target TEXT    NOT NULL,
         room   TEXT,
         reason TEXT
     );",
];

/// The schema version this rtchat writes (`PRAGMA user_version` after every migration).
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How much history a durable store keeps. The default keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep at most this many of the newest messages of each channel.
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
            StoreError::new(
                StoreErrorKind::Unreadable,
                format!("{what} {}: {e}", path.display()),
            )
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    format!("cannot create the folder {}: {e}", dir.display()),
                    e,
                )
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
            .map_err(|e| StoreError::new(e.kind(), format!("{e} ({})", path.display())))?;
        if version == 0 {
            tracing::info!(path = %path.display(), schema = MIGRATIONS.len(), "created the database");
        }
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
    pub(crate) async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut conn).map_err(store_error)
        })
        .await
        .map_err(|e| {
            StoreError::with_source(
                StoreErrorKind::Other,
                format!("database task failed: {e}"),
                e,
            )
        })?
    }
}

fn migrate(conn: &mut Connection, version: i64) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::new(
            StoreErrorKind::Unreadable,
            format!("the database was written by a newer rtchat (schema v{version}; this rtchat knows up to v{known})"),
        ));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let next = i as i64 + 1;
        let tx = conn.transaction().map_err(store_error)?;
        tx.execute_batch(step)
            .and_then(|()| tx.execute_batch(&format!("PRAGMA user_version={next}")))
            .and_then(|()| tx.commit())
            .map_err(|e| {
                StoreError::with_source(
                    StoreErrorKind::Unreadable,
                    format!("cannot migrate the database to schema v{next}: {e}"),
                    e,
                )
            })?;
        if version > 0 {
            tracing::info!(schema = next, "migrated the database");
        }
    }
    Ok(())
}

fn store_error(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => StoreError::with_source(
            StoreErrorKind::Full,
            "the disk is full (or the database reached --db-max-mb); the message was not stored",
            e,
        ),
        Some(ErrorCode::ReadOnly) => StoreError::with_source(
            StoreErrorKind::Unavailable,
            "the database is read-only; the message was not stored",
            e,
        ),
        _ => StoreError::with_source(StoreErrorKind::Other, format!("database error: {e}"), e),
    }
}

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: row.get::<_, i64>(0)? as u64,
        user: row.get(1)?,
        text: row.get(2)?,
        time: row.get(3)?,
        uid: row.get(4)?,
    })
}

/// The channel's row, if it exists.
fn channel_row(conn: &Connection, channel: &str) -> rusqlite::Result<Option<ChannelInfo>> {
    let mut stmt = conn.prepare_cached("SELECT epoch, last_id FROM channels WHERE name = ?1")?;
    let mut rows = stmt.query(params![channel])?;
    Ok(match rows.next()? {
        Some(row) => Some(ChannelInfo {
            epoch: row.get(0)?,
            last_id: row.get::<_, i64>(1)? as u64,
        }),
        None => None,
    })
}

/// The channel's row, created with a fresh epoch if missing.
fn ensure_channel(conn: &Connection, channel: &str) -> rusqlite::Result<ChannelInfo> {
    if let Some(info) = channel_row(conn, channel)? {
        return Ok(info);
    }
    let info = ChannelInfo {
        epoch: new_epoch(),
        last_id: 0,
    };
    conn.prepare_cached("INSERT INTO channels (name, epoch, last_id) VALUES (?1, ?2, 0)")?
        .execute(params![channel, info.epoch])?;
    Ok(info)
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
                (Some(n), None) => format!("the newest {n} messages per channel"),
                (None, Some(age)) => format!("messages younger than {}s", age.as_secs()),
                (Some(n), Some(age)) => format!(
                    "the newest {n} messages per channel younger than {}s",
                    age.as_secs()
                ),
            }
        )
    }

    async fn channels(&self) -> Result<Vec<ChannelSummary>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT c.name, c.epoch, c.last_id,
                        EXISTS (SELECT 1 FROM messages m WHERE m.channel = c.name AND m.deleted = 0)
                 FROM channels c ORDER BY c.name",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok(ChannelSummary {
                    name: row.get(0)?,
                    info: ChannelInfo {
                        epoch: row.get(1)?,
                        last_id: row.get::<_, i64>(2)? as u64,
                    },
                    has_messages: row.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn open_channel(&self, channel: &str) -> Result<ChannelInfo, StoreError> {
        let channel = channel.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let info = ensure_channel(&tx, &channel)?;
            tx.commit()?;
            Ok(info)
        })
        .await
    }

    async fn find_channel(&self, channel: &str) -> Result<Option<ChannelInfo>, StoreError> {
        let channel = channel.to_owned();
        self.with_conn(move |conn| channel_row(conn, &channel))
            .await
    }

    /// One read transaction on the database (the channels table's first row): it takes the
    /// connection (so a writer stuck on the disk shows), reads the file's header and the WAL
    /// index, and touches a table page.
    async fn ping(&self) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached("SELECT 1 FROM channels LIMIT 1")?
                .exists([])
                .map(|_| ())
        })
        .await
    }

    async fn append(
        &self,
        posts: &[Append],
        time: i64,
        dedupe: Duration,
    ) -> Result<Vec<Appended>, StoreError> {
        let posts = posts.to_vec();
        let retention = self.retention;
        let since = time - dedupe.as_millis() as i64;
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let mut out = Vec::with_capacity(posts.len());
            // The newest id of each channel written to, for the retention sweep.
            let mut touched: Vec<(std::sync::Arc<str>, u64)> = Vec::new();
            {
                let mut keyed = tx.prepare_cached(
                    "SELECT id, user, text, time, uid FROM messages
                     WHERE channel = ?1 AND user = ?2 AND key = ?3 AND time >= ?4
                     ORDER BY id DESC LIMIT 1",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO messages (channel, id, user, text, time, key, uid)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let mut bump =
                    tx.prepare_cached("UPDATE channels SET last_id = ?2 WHERE name = ?1")?;
                for Append { channel, post } in posts {
                    if let Some(key) = &post.key {
                        let first = keyed
                            .query_row(params![&*channel, post.user, key, since], row_to_message)
                            .map(Some)
                            .or_else(|e| match e {
                                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                                e => Err(e),
                            })?;
                        if let Some(first) = first {
                            out.push(if first.text == post.text {
                                Appended::Duplicate(first)
                            } else {
                                Appended::Conflict { id: first.id }
                            });
                            continue;
                        }
                    }
                    let id = ensure_channel(&tx, &channel)?.last_id + 1;
                    insert.execute(params![
                        &*channel, id as i64, post.user, post.text, time, post.key, post.uid
                    ])?;
                    bump.execute(params![&*channel, id as i64])?;
                    match touched.iter_mut().find(|(c, _)| *c == channel) {
                        Some(t) => t.1 = id,
                        None => touched.push((channel.clone(), id)),
                    }
                    out.push(Appended::Stored(Message {
                        id,
                        user: post.user,
                        text: post.text,
                        time,
                        uid: post.uid,
                    }));
                }
            }
            if let Some(max) = retention.max_count {
                for (channel, newest) in &touched {
                    tx.execute(
                        "DELETE FROM messages WHERE channel = ?1 AND id <= ?2",
                        params![&**channel, newest.saturating_sub(max) as i64],
                    )?;
                }
            }
            if let Some(age) = retention.max_age {
                tx.execute(
                    "DELETE FROM messages WHERE time < ?1",
                    params![time - age.as_millis() as i64],
                )?;
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    async fn recent(&self, channel: &str, n: usize) -> Result<Vec<Message>, StoreError> {
        let channel = channel.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, user, text, time, uid FROM messages
                 WHERE channel = ?1 AND deleted = 0 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![channel, n as i64], row_to_message)?;
            rows.collect()
        })
        .await
    }

    async fn after(&self, channel: &str, after: u64, limit: usize) -> Result<Page, StoreError> {
        let channel = channel.to_owned();
        self.with_conn(move |conn| {
            // Ids are consecutive per channel and rows are kept (as tombstones) when deleted,
            // so a hole right after `after` means retention removed those messages.
            let first: Option<i64> = conn
                .prepare_cached("SELECT min(id) FROM messages WHERE channel = ?1 AND id > ?2")?
                .query_row(params![channel, after as i64], |r| r.get(0))?;
            let truncated = first.is_some_and(|id| id as u64 > after + 1);
            let mut stmt = conn.prepare_cached(
                "SELECT id, user, text, time, uid FROM messages
                 WHERE channel = ?1 AND id > ?2 AND deleted = 0 ORDER BY id LIMIT ?3",
            )?;
            let messages: Vec<Message> = stmt
                .query_map(params![channel, after as i64, limit as i64], row_to_message)?
                .collect::<Result<_, _>>()?;
            Ok(Page {
                messages,
                truncated,
            })
        })
        .await
    }

    async fn delete(&self, channel: &str, id: u64) -> Result<bool, StoreError> {
        let channel = channel.to_owned();
        self.with_conn(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE messages SET deleted = 1 WHERE channel = ?1 AND id = ?2 AND deleted = 0",
                )?
                .execute(params![channel, id as i64])?;
            Ok(changed == 1)
        })
        .await
    }

    /// A full scan of `messages` (there is no index on `uid`): an admin's rare action.
    async fn messages_of(&self, uid: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let uid = uid.to_owned();
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT channel, id FROM messages WHERE uid = ?1 AND deleted = 0
                 ORDER BY channel, id",
            )?;
            let rows = stmt.query_map(params![uid], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect()
        })
        .await
    }

    async fn anonymize(&self, uid: &str, name: &str) -> Result<usize, StoreError> {
        let (uid, name) = (uid.to_owned(), name.to_owned());
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let live = tx
                .prepare_cached(
                    "UPDATE messages SET user = ?2, uid = NULL WHERE uid = ?1 AND deleted = 0",
                )?
                .execute(params![uid, name])?;
            tx.prepare_cached("UPDATE messages SET user = ?2, uid = NULL WHERE uid = ?1")?
                .execute(params![uid, name])?;
            tx.commit()?;
            Ok(live)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::NewPost;

    const WINDOW: Duration = Duration::from_secs(120);

    fn post(text: &str) -> Append {
        post_in("general", text)
    }

    fn post_in(channel: &str, text: &str) -> Append {
        Append {
            channel: Arc::from(channel),
            post: NewPost::new("u", text),
        }
    }

    fn stored_ids(appended: &[Appended]) -> Vec<u64> {
        appended
            .iter()
            .map(|a| match a {
                Appended::Stored(m) => m.id,
                other => panic!("not stored: {other:?}"),
            })
            .collect()
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
        let first = store
            .append(&[post("a"), post("b")], 1, WINDOW)
            .await
            .unwrap();
        assert_eq!(stored_ids(&first), [1, 2]);
        let epoch = store.find_channel("general").await.unwrap().unwrap().epoch;
        drop(store);

        let retention = Retention {
            max_count: Some(3),
            max_age: None,
        };
        let store = SqliteStore::open(&path, retention, None).unwrap();
        assert_eq!(
            store.find_channel("general").await.unwrap().unwrap().epoch,
            epoch,
            "the epoch is the database's, kept across restarts"
        );
        let more = store
            .append(&[post("c"), post("d"), post("e")], 2, WINDOW)
            .await
            .unwrap();
        assert_eq!(stored_ids(&more), [3, 4, 5]);
        let recent = store.recent("general", 10).await.unwrap();
        assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), [5, 4, 3]);
        let page = store.after("general", 0, 10).await.unwrap();
        assert!(page.truncated);
        assert_eq!(page.messages[0].id, 3);
        assert!(!store.after("general", 3, 10).await.unwrap().truncated);
    }

    #[tokio::test]
    async fn channels_have_their_own_ids_and_epochs() {
        let path = temp_db("channels");
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        let out = store
            .append(
                &[post_in("a", "1"), post_in("b", "1"), post_in("a", "2")],
                1,
                WINDOW,
            )
            .await
            .unwrap();
        assert_eq!(stored_ids(&out), [1, 1, 2]);
        let a = store.find_channel("a").await.unwrap().unwrap();
        let b = store.find_channel("b").await.unwrap().unwrap();
        assert_eq!(a.last_id, 2);
        assert_ne!(a.epoch, b.epoch);
        assert_eq!(
            store.find_channel("c").await.unwrap(),
            None,
            "reads create nothing"
        );
        assert_eq!(store.recent("b", 10).await.unwrap()[0].text, "1");
    }

    #[tokio::test]
    async fn keys_survive_a_reopen_and_tombstones_are_not_gaps() {
        let path = temp_db("keys");
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        let keyed = Append {
            channel: Arc::from("general"),
            post: NewPost {
                user: "ann".into(),
                text: "hi".into(),
                key: Some("k".into()),
                uid: Some("user-42".into()),
            },
        };
        let first = store
            .append(&[keyed.clone(), post("x")], 1_000, WINDOW)
            .await
            .unwrap();
        assert_eq!(stored_ids(&first), [1, 2]);
        drop(store);
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        let again = store
            .append(std::slice::from_ref(&keyed), 2_000, WINDOW)
            .await
            .unwrap();
        assert!(matches!(&again[0], Appended::Duplicate(m) if m.id == 1));
        let kept = store.recent("general", 10).await.unwrap();
        let uids: Vec<Option<&str>> = kept.iter().map(|m| m.uid.as_deref()).collect();
        assert_eq!(uids, [None, Some("user-42")], "the poster's uid is stored");
        let mut changed = keyed.clone();
        changed.post.text = "other".into();
        let conflict = store.append(&[changed], 2_000, WINDOW).await.unwrap();
        assert_eq!(conflict[0], Appended::Conflict { id: 1 });

        store.append(&[post("y")], 3_000, WINDOW).await.unwrap();
        assert!(store.delete("general", 2).await.unwrap());
        let page = store.after("general", 1, 10).await.unwrap();
        assert!(!page.truncated);
        assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), [3]);
        assert_eq!(store.recent("general", 10).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn age_retention_deletes_old_messages() {
        let path = temp_db("age");
        let retention = Retention {
            max_count: None,
            max_age: Some(Duration::from_secs(10)),
        };
        let store = SqliteStore::open(&path, retention, None).unwrap();
        store.append(&[post("old")], 1_000, WINDOW).await.unwrap();
        store.append(&[post("new")], 20_000, WINDOW).await.unwrap();
        let recent = store.recent("general", 10).await.unwrap();
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
            match store.append(&[post(&text)], 1, WINDOW).await {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 1000, "the cap never bit");
        };
        assert_eq!(err.kind(), StoreErrorKind::Full);
        assert!(err.to_string().contains("disk is full"), "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is kept"
        );
        assert_eq!(store.recent("general", 10_000).await.unwrap().len(), stored);
    }

    #[test]
    fn garbage_and_newer_databases_are_refused() {
        let path = temp_db("garbage");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![b'z'; 8192]).unwrap();
        let err = SqliteStore::open(&path, Retention::default(), None)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("not a readable rtchat database"),
            "{err}"
        );

        let path = temp_db("newer");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("PRAGMA user_version=99").unwrap();
        drop(conn);
        let err = SqliteStore::open(&path, Retention::default(), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("newer rtchat"), "{err}");
    }

    #[tokio::test]
    async fn a_v2_database_becomes_the_channel_general_with_its_ids() {
        let path = temp_db("old");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.execute_batch(
            "INSERT INTO messages (user, text, time) VALUES ('ann', 'one', 5);
             INSERT INTO messages (user, text, time) VALUES ('bob', 'two', 6);
             INSERT INTO messages (user, text, time) VALUES ('cy', 'three', 7);
             DELETE FROM messages WHERE id = 3;
             PRAGMA user_version=2;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        let recent = store.recent("general", 10).await.unwrap();
        assert_eq!(
            recent
                .iter()
                .map(|m| (m.id, m.text.as_str()))
                .collect::<Vec<_>>(),
            [(2, "two"), (1, "one")]
        );
        // The old AUTOINCREMENT high mark is kept: id 3 is never handed out again.
        let next = store.append(&[post("four")], 8, WINDOW).await.unwrap();
        assert_eq!(stored_ids(&next), [4]);
        let conn = store.conn.lock().unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
    }
}

//! Backups of the SQLite store: a consistent copy taken while a server runs ([`backup`]),
//! checking that a file is one ([`verify`]), and putting one back while no server runs
//! ([`restore`]).
//!
//! # How the copy is taken: `VACUUM INTO`
//! Both directions copy with SQLite's `VACUUM INTO 'file'` rather than the online backup API
//! (rusqlite's `backup` feature):
//! * it runs inside one read transaction, so the copy is the database exactly as of one
//!   commit: every transaction committed before it began, none of the later ones, never half
//!   of one. In WAL mode a reader neither blocks nor is blocked by the server's writer, so
//!   posts go on being stored (and acknowledged) during the copy;
//! * the online backup API copies page by page in steps and starts over whenever another
//!   process (the server) writes in between, so under a steady load a stepped backup may never
//!   finish; done in one step it is the same single read transaction as `VACUUM INTO`, with
//!   more code and one more crate feature;
//! * the copy is compact (no free pages), is a plain rollback-journal database with no `-wal`
//!   to carry along, and keeps `user_version` (the schema) and every row as it is.
//!
//! `VACUUM INTO` does not fsync its output, so the copy is fsync'd here before it is renamed
//! into place, and the folder after the rename.
//!
//! # Restore and the server
//! A running server holds an exclusive lock on `<database>.lock` (see `lock.rs`): [`restore`]
//! takes that same lock, so it refuses while a server runs on the database and no server can
//! start on it until the restore is done. SQLite's own locks cannot tell: in WAL mode
//! `BEGIN EXCLUSIVE` still lets readers in, and an idle server holds no lock at all between
//! transactions. A one-off connection of `rtchat user` or `rtchat backup` does not hold the
//! lock file; one caught in the middle of a restore keeps reading the old file it opened.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::sqlite::SCHEMA_VERSION;
use super::{new_epoch, StoreError, StoreErrorKind};

/// What a backup (or a database) holds, as [`backup`], [`verify`] and [`restore`] report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    /// The size of the file, in bytes.
    pub bytes: u64,
    /// Its schema version (`PRAGMA user_version`).
    pub schema: i64,
    /// Messages that are not deleted, all rooms together.
    pub messages: u64,
    /// Deleted messages kept as tombstones.
    pub deleted: u64,
    /// Rooms (channels).
    pub rooms: u64,
    /// The newest message id over all rooms (0 if none).
    pub newest_id: u64,
    /// Built-in accounts (schema v5 and later).
    pub accounts: Option<u64>,
}

impl std::fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes, schema v{}, {} messages ({} deleted) in {} rooms, newest id {}",
            self.bytes, self.schema, self.messages, self.deleted, self.rooms, self.newest_id
        )?;
        if let Some(accounts) = self.accounts {
            write!(f, ", {accounts} accounts")?;
        }
        Ok(())
    }
}

/// The tables each schema version has (a version has those of the earlier ones too, save the
/// ones v3 rebuilt).
fn required_tables(schema: i64) -> Vec<&'static str> {
    let mut tables = vec!["messages"];
    if schema >= 3 {
        tables.push("channels");
    }
    if schema >= 5 {
        tables.extend(["accounts", "revoked_tokens", "room_access", "room_members"]);
    }
    if schema >= 6 {
        tables.extend(["bans", "mutes", "audit"]);
    }
    tables
}

fn error(kind: StoreErrorKind, message: String) -> StoreError {
    StoreError::new(kind, message)
}

/// A file made here that is removed again unless [`Temp::keep`] is called: a failure never
/// leaves a half-written copy behind.
struct Temp {
    path: PathBuf,
    armed: bool,
}

impl Temp {
    /// A name in `dir` that nothing uses, derived from `name`.
    fn next_to(dir: &Path, name: &str) -> Temp {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
        Temp { path, armed: true }
    }

    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if self.armed {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let _ = std::fs::remove_file(with_suffix(&self.path, suffix));
            }
        }
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The folder a file is in (`.` for a bare name).
fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> Result<String, StoreError> {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| {
            error(
                StoreErrorKind::Other,
                format!("{} does not name a file", path.display()),
            )
        })
}

/// Opens `path` read-only (never creating it), waiting up to 5 s for a writer.
fn open_read_only(path: &Path, what: &str) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| {
        error(
            StoreErrorKind::Unavailable,
            format!("cannot open {what} {}: {e}", path.display()),
        )
    })?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| {
        error(
            StoreErrorKind::Unavailable,
            format!("cannot open {what} {}: {e}", path.display()),
        )
    })?;
    Ok(conn)
}

/// The schema version of an open database, refusing what is not an rtchat database this
/// rtchat can serve (`what` names it in the messages).
fn rtchat_schema(conn: &Connection, path: &Path, what: &str) -> Result<i64, StoreError> {
    let not_ours = |why: String| {
        error(
            StoreErrorKind::Unreadable,
            format!("{} is not {what}: {why}", path.display()),
        )
    };
    let schema: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| not_ours(format!("{e}")))?;
    if schema == 0 {
        return Err(not_ours(
            "it has no rtchat schema (user_version 0)".to_owned(),
        ));
    }
    if schema > SCHEMA_VERSION {
        return Err(not_ours(format!(
            "it was written by a newer rtchat (schema v{schema}; this rtchat knows up to v{SCHEMA_VERSION})"
        )));
    }
    if schema < 0 {
        return Err(not_ours(format!("unknown schema v{schema}")));
    }
    for table in required_tables(schema) {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(|e| not_ours(format!("{e}")))?;
        if found == 0 {
            return Err(not_ours(format!(
                "it says schema v{schema} but has no table `{table}`"
            )));
        }
    }
    Ok(schema)
}

/// Counts what the database holds.
fn summarize(conn: &Connection, path: &Path, schema: i64) -> Result<BackupSummary, StoreError> {
    let fail = |e: rusqlite::Error| {
        error(
            StoreErrorKind::Unreadable,
            format!("cannot read {}: {e}", path.display()),
        )
    };
    let count = |sql: &str| -> Result<u64, StoreError> {
        conn.query_row(sql, [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as u64)
            .map_err(fail)
    };
    let (messages, deleted, rooms) = if schema >= 3 {
        (
            count("SELECT count(*) FROM messages WHERE deleted = 0")?,
            count("SELECT count(*) FROM messages WHERE deleted != 0")?,
            count("SELECT count(*) FROM channels")?,
        )
    } else {
        (count("SELECT count(*) FROM messages")?, 0, 1)
    };
    let newest_id = if schema >= 3 {
        count("SELECT ifnull(max(last_id), 0) FROM channels")?
    } else {
        count("SELECT ifnull(max(id), 0) FROM messages")?
    };
    let accounts = if schema >= 5 {
        Some(count("SELECT count(*) FROM accounts")?)
    } else {
        None
    };
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    Ok(BackupSummary {
        bytes,
        schema,
        messages,
        deleted,
        rooms,
        newest_id,
        accounts,
    })
}

/// Checks that `file` is a usable rtchat backup: it opens as SQLite, `PRAGMA integrity_check`
/// says ok, and it has the tables of an rtchat schema this rtchat can serve (an older one is
/// fine: the server migrates it at start-up).
pub fn verify(file: &Path) -> Result<BackupSummary, StoreError> {
    if !file.is_file() {
        return Err(error(
            StoreErrorKind::Unavailable,
            format!("no backup file at {}", file.display()),
        ));
    }
    let conn = open_read_only(file, "the backup")?;
    verify_open(&conn, file)
}

fn verify_open(conn: &Connection, file: &Path) -> Result<BackupSummary, StoreError> {
    let not_backup = |why: String| {
        error(
            StoreErrorKind::Unreadable,
            format!("{} is not an rtchat backup: {why}", file.display()),
        )
    };
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check(5)")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| not_backup(format!("{e}")))?;
    if problems != ["ok"] {
        return Err(not_backup(format!(
            "PRAGMA integrity_check failed: {}",
            problems.join("; ")
        )));
    }
    let schema = rtchat_schema(conn, file, "an rtchat backup")?;
    summarize(conn, file, schema)
}

/// `VACUUM INTO` `to` from an open connection: one read transaction, so one commit's state.
fn vacuum_into(conn: &Connection, to: &Path) -> Result<(), rusqlite::Error> {
    let to = to
        .to_str()
        .ok_or_else(|| rusqlite::Error::InvalidPath(to.to_owned()))?;
    conn.execute("VACUUM INTO ?1", [to]).map(|_| ())
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

/// Makes a rename (or a removal) in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Copies the database `db` (which a server may be writing) to `to`, consistently: the copy
/// holds every transaction committed before the copy began. Refuses to replace an existing
/// `to` unless `force`. The copy is written to a temporary file next to `to`, verified,
/// fsync'd and renamed into place, so `to` is never a half backup; a failure removes the
/// temporary file.
pub fn backup(db: &Path, to: &Path, force: bool) -> Result<BackupSummary, StoreError> {
    if !db.is_file() {
        return Err(error(
            StoreErrorKind::Unavailable,
            format!(
                "no database at {} (give the --data-dir or --db rtchat serve uses)",
                db.display()
            ),
        ));
    }
    let name = file_name(to)?;
    let dir = folder_of(to);
    if !dir.is_dir() {
        return Err(error(
            StoreErrorKind::Unavailable,
            format!(
                "the folder {} for the backup {} does not exist",
                dir.display(),
                to.display()
            ),
        ));
    }
    if let (Ok(a), Ok(b)) = (db.canonicalize(), to.canonicalize()) {
        if a == b {
            return Err(error(
                StoreErrorKind::Other,
                format!("{} is the database itself", to.display()),
            ));
        }
    }
    if to.symlink_metadata().is_ok() && !force {
        return Err(error(
            StoreErrorKind::Other,
            format!(
                "{} already exists; give --force to replace it",
                to.display()
            ),
        ));
    }
    let conn = open_read_only(db, "the database")?;
    rtchat_schema(&conn, db, "an rtchat database")?;
    let temp = Temp::next_to(&dir, &name);
    vacuum_into(&conn, &temp.path).map_err(|e| {
        error(
            StoreErrorKind::Unavailable,
            format!(
                "cannot copy {} to {}: {e}",
                db.display(),
                temp.path.display()
            ),
        )
    })?;
    drop(conn);
    let io = |what: &str, e: std::io::Error| {
        error(
            StoreErrorKind::Unavailable,
            format!("cannot {what} {}: {e}", to.display()),
        )
    };
    sync_file(&temp.path).map_err(|e| io("write the backup", e))?;
    let summary = verify(&temp.path)
        .map_err(|e| error(e.kind(), format!("the copy failed its check: {e}")))?;
    std::fs::rename(&temp.path, to).map_err(|e| io("put the backup in place at", e))?;
    temp.keep();
    sync_dir(&dir).map_err(|e| io("make durable the backup", e))?;
    Ok(BackupSummary {
        bytes: std::fs::metadata(to)
            .map(|m| m.len())
            .unwrap_or(summary.bytes),
        ..summary
    })
}

/// The server's own lock on `<db>.lock` (see `lock.rs`), taken by a restore: refused while a
/// server runs on `db`, and keeps one from starting until it is dropped.
fn lock_out_servers(db: &Path) -> Result<super::lock::DbLock, StoreError> {
    super::lock::lock(db).map_err(|e| {
        error(
            StoreErrorKind::Unavailable,
            format!("a server is running on this database: stop it before restoring ({e})"),
        )
    })
}

/// Puts the backup `from` back as the database `db`, while no server runs on it. `from` is
/// verified first ([`verify`]); an existing `db` is replaced only with `force`. The backup is
/// copied to a temporary file next to `db`, fsync'd and renamed over it; the old database's
/// `-wal`, `-shm` and `-journal` are removed first, since SQLite would apply them to the new
/// file (a crash between the two loses only the old database's last, un-checkpointed
/// commits, which were being replaced anyway). Every room gets a new epoch: ids after the backup's newest will be handed out again,
/// and clients that saw the lost ones are told to start over rather than skip the new ones.
pub fn restore(from: &Path, db: &Path, force: bool) -> Result<BackupSummary, StoreError> {
    let source = verify(from)?;
    let name = file_name(db)?;
    let dir = folder_of(db);
    std::fs::create_dir_all(&dir).map_err(|e| {
        error(
            StoreErrorKind::Unavailable,
            format!("cannot create the folder {}: {e}", dir.display()),
        )
    })?;
    if let (Ok(a), Ok(b)) = (from.canonicalize(), db.canonicalize()) {
        if a == b {
            return Err(error(
                StoreErrorKind::Other,
                format!("{} is the database itself", from.display()),
            ));
        }
    }
    let _lock = lock_out_servers(db)?;
    if db.symlink_metadata().is_ok() && !force {
        return Err(error(
            StoreErrorKind::Other,
            format!(
                "there is already a database at {}; give --force to replace it",
                db.display()
            ),
        ));
    }
    let temp = Temp::next_to(&dir, &name);
    let conn = open_read_only(from, "the backup")?;
    vacuum_into(&conn, &temp.path).map_err(|e| {
        error(
            StoreErrorKind::Unavailable,
            format!(
                "cannot copy {} to {}: {e}",
                from.display(),
                temp.path.display()
            ),
        )
    })?;
    drop(conn);
    if source.schema >= 3 {
        new_epochs(&temp.path).map_err(|e| {
            error(
                StoreErrorKind::Unavailable,
                format!(
                    "cannot give the rooms of {} new epochs: {e}",
                    temp.path.display()
                ),
            )
        })?;
    }
    let io = |what: &str, e: std::io::Error| {
        error(
            StoreErrorKind::Unavailable,
            format!("cannot {what} {}: {e}", db.display()),
        )
    };
    sync_file(&temp.path).map_err(|e| io("write the new database", e))?;
    let copied = verify(&temp.path)
        .map_err(|e| error(e.kind(), format!("the copy failed its check: {e}")))?;
    if (copied.messages, copied.rooms, copied.newest_id)
        != (source.messages, source.rooms, source.newest_id)
    {
        return Err(error(
            StoreErrorKind::Other,
            format!(
                "the copy differs from the backup {} ({copied} against {source})",
                from.display()
            ),
        ));
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let stale = with_suffix(db, suffix);
        match std::fs::remove_file(&stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&format!("remove {} of", stale.display()), e)),
        }
    }
    // The removals reach the disk before the rename does: never the new file with an old WAL.
    sync_dir(&dir).map_err(|e| io("make durable the removals next to", e))?;
    std::fs::rename(&temp.path, db).map_err(|e| io("put the backup in place at", e))?;
    temp.keep();
    sync_dir(&dir).map_err(|e| io("make durable the new database", e))?;
    Ok(BackupSummary {
        bytes: std::fs::metadata(db)
            .map(|m| m.len())
            .unwrap_or(copied.bytes),
        ..copied
    })
}

fn new_epochs(path: &Path) -> rusqlite::Result<()> {
    let mut conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let tx = conn.transaction()?;
    let names: Vec<String> = tx
        .prepare("SELECT name FROM channels")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names {
        tx.execute(
            "UPDATE channels SET epoch = ?2 WHERE name = ?1",
            [name, new_epoch()],
        )?;
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::NewPost;
    use crate::store::{Append, Retention, SqliteStore, Store};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rtchat-backup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[tokio::test]
    async fn a_backup_of_an_open_store_restores_with_its_messages_and_new_epochs() {
        let dir = temp_dir("roundtrip");
        let db = dir.join("live.db");
        let store = SqliteStore::open(&db, Retention::default(), None).unwrap();
        let posts: Vec<Append> = (0..3)
            .map(|i| Append {
                channel: "general".into(),
                post: NewPost::new("ann", format!("m{i}")),
            })
            .collect();
        store
            .append(&posts, 1, Duration::from_secs(1))
            .await
            .unwrap();
        let epoch = store.find_channel("general").await.unwrap().unwrap().epoch;
        let copy = dir.join("copy.db");
        let summary = backup(&db, &copy, false).unwrap();
        assert_eq!(
            (summary.messages, summary.rooms, summary.newest_id),
            (3, 1, 3)
        );
        assert_eq!(summary.schema, SCHEMA_VERSION);
        assert!(backup(&db, &copy, false)
            .unwrap_err()
            .to_string()
            .contains("--force"));
        let err = restore(&copy, &db, true).unwrap_err().to_string();
        assert!(err.contains("a server is running"), "{err}");
        drop(store);
        assert!(!with_suffix(&db, "-shm").exists(), "the store closed");
        let closed = backup(&db, &dir.join("closed.db"), false).unwrap();
        assert_eq!(
            closed.messages, 3,
            "a database no server has open copies too"
        );
        let restored = dir.join("restored.db");
        assert_eq!(restore(&copy, &restored, false).unwrap().messages, 3);
        let store = SqliteStore::open(&restored, Retention::default(), None).unwrap();
        let info = store.find_channel("general").await.unwrap().unwrap();
        assert_eq!(info.last_id, 3);
        assert_ne!(info.epoch, epoch, "a restore starts a new epoch");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! One server per database: an exclusive lock on `<database>.lock`, held for as long as the
//! store is open. Two servers on one SQLite file would each serve only their own new posts
//! and hand out interleaved ids; the second one refuses to start instead, naming the first.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::{StoreError, StoreErrorKind};

/// The held lock; dropping it (or the process ending, even by `kill -9`) releases it.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
}

/// Takes the lock next to `db`, writing this process's pid into the lock file so a second
/// server can say who holds it.
pub(crate) fn lock(db: &Path) -> Result<DbLock, StoreError> {
    let path = lock_path(db);
    let fail = |e: std::io::Error| {
        StoreError::new(
            StoreErrorKind::Unavailable,
            format!("cannot open the lock file {}: {e}", path.display()),
        )
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(fail)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => "another process".to_owned(),
                pid => format!("another rtchat (pid {pid})"),
            };
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "the database {} is in use by {holder}; stop it, or give this server another --data-dir or --db",
                    db.display()
                ),
            ));
        }
        Err(TryLockError::Error(e)) => return Err(fail(e)),
    }
    file.set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .map_err(fail)?;
    Ok(DbLock { _file: file })
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_database_is_refused_with_the_holders_pid() {
        let dir = std::env::temp_dir().join(format!("rtchat-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("x.db");
        let held = lock(&db).unwrap();
        let err = lock(&db).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(held);
        lock(&db).expect("free again once the first is dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

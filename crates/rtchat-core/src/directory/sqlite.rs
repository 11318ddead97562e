//! The directory of the SQLite store: tables in the same database as the messages (schema
//! v5, see `store/sqlite.rs`), so one file, one backup.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};

use super::{Account, AuditEntry, Ban, Directory, DirectoryError, Mute, PrivateRoom, RoomAccess};
use crate::store::{SqliteStore, StoreError};

fn row_to_account(row: &rusqlite::Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        uid: row.get(0)?,
        name: row.get(1)?,
        password_hash: row.get(2)?,
        admin: row.get(3)?,
        created: row.get(4)?,
    })
}

const ACCOUNT_COLUMNS: &str = "uid, name, password_hash, admin, created";

#[async_trait]
impl Directory for SqliteStore {
    async fn create_account(&self, account: Account) -> Result<(), DirectoryError> {
        // Which of the two unique columns clashed, asked inside the same transaction.
        enum Outcome {
            Made,
            Name(String),
            Uid(String),
        }
        let outcome = self
            .with_conn(move |conn| {
                let tx = conn.transaction()?;
                let name_used: bool = tx
                    .prepare_cached("SELECT 1 FROM accounts WHERE name = ?1")?
                    .exists(params![account.name])?;
                if name_used {
                    return Ok(Outcome::Name(account.name));
                }
                let uid_used: bool = tx
                    .prepare_cached("SELECT 1 FROM accounts WHERE uid = ?1")?
                    .exists(params![account.uid])?;
                if uid_used {
                    return Ok(Outcome::Uid(account.uid));
                }
                tx.prepare_cached(&format!(
                    "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
                ))?
                .execute(params![
                    account.uid,
                    account.name,
                    account.password_hash,
                    account.admin,
                    account.created
                ])?;
                tx.commit()?;
                Ok(Outcome::Made)
            })
            .await?;
        match outcome {
            Outcome::Made => Ok(()),
            Outcome::Name(n) => Err(DirectoryError::NameTaken(n)),
            Outcome::Uid(u) => Err(DirectoryError::UidTaken(u)),
        }
    }

    async fn account(&self, uid: &str) -> Result<Option<Account>, StoreError> {
        let uid = uid.to_owned();
        self.with_conn(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE uid = ?1"
            ))?
            .query_row(params![uid], row_to_account)
            .optional()
        })
        .await
    }

    async fn account_by_name(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let name = name.to_owned();
        self.with_conn(move |conn| {
            conn.prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?1"
            ))?
            .query_row(params![name], row_to_account)
            .optional()
        })
        .await
    }

    async fn set_admin(&self, uid: &str, admin: bool) -> Result<bool, StoreError> {
        let uid = uid.to_owned();
        self.with_conn(move |conn| {
            let n = conn
                .prepare_cached("UPDATE accounts SET admin = ?2 WHERE uid = ?1")?
                .execute(params![uid, admin])?;
            Ok(n > 0)
        })
        .await
    }

    async fn delete_account(&self, uid: &str) -> Result<bool, StoreError> {
        let uid = uid.to_owned();
        self.with_conn(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM accounts WHERE uid = ?1")?
                .execute(params![uid])?;
            Ok(n > 0)
        })
        .await
    }

    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
        let jti = jti.to_owned();
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT INTO revoked_tokens (jti, until) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO UPDATE SET until = max(until, excluded.until)",
            )?
            .execute(params![jti, until as i64])?;
            Ok(())
        })
        .await
    }

    async fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        self.with_conn(move |conn| {
            conn.prepare_cached("DELETE FROM revoked_tokens WHERE until <= ?1")?
                .execute(params![now as i64])?;
            let mut stmt =
                conn.prepare_cached("SELECT jti, until FROM revoked_tokens ORDER BY jti")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
        .await
    }

    async fn room_access(&self, room: &str) -> Result<RoomAccess, StoreError> {
        let room = room.to_owned();
        self.with_conn(move |conn| {
            let found = conn
                .prepare_cached("SELECT owner, private FROM room_access WHERE room = ?1")?
                .query_row(params![room], |r| {
                    Ok(RoomAccess {
                        owner: r.get(0)?,
                        private: r.get(1)?,
                    })
                })
                .optional()?;
            Ok(found.unwrap_or_default())
        })
        .await
    }

    async fn claim_room(&self, room: &str, uid: &str) -> Result<String, StoreError> {
        let (room, uid) = (room.to_owned(), uid.to_owned());
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT INTO room_access (room, owner, private) VALUES (?1, ?2, 0)
                 ON CONFLICT (room) DO UPDATE SET owner = ifnull(owner, excluded.owner)",
            )?
            .execute(params![room, uid])?;
            conn.prepare_cached("SELECT owner FROM room_access WHERE room = ?1")?
                .query_row(params![room], |r| r.get(0))
        })
        .await
    }

    async fn set_private(&self, room: &str, private: bool) -> Result<(), StoreError> {
        let room = room.to_owned();
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT INTO room_access (room, owner, private) VALUES (?1, NULL, ?2)
                 ON CONFLICT (room) DO UPDATE SET private = excluded.private",
            )?
            .execute(params![room, private])?;
            Ok(())
        })
        .await
    }

    async fn add_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let (room, uid) = (room.to_owned(), uid.to_owned());
        self.with_conn(move |conn| {
            let n = conn
                .prepare_cached("INSERT OR IGNORE INTO room_members (room, uid) VALUES (?1, ?2)")?
                .execute(params![room, uid])?;
            Ok(n > 0)
        })
        .await
    }

    async fn remove_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let (room, uid) = (room.to_owned(), uid.to_owned());
        self.with_conn(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM room_members WHERE room = ?1 AND uid = ?2")?
                .execute(params![room, uid])?;
            Ok(n > 0)
        })
        .await
    }

    async fn is_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let (room, uid) = (room.to_owned(), uid.to_owned());
        self.with_conn(move |conn| {
            conn.prepare_cached("SELECT 1 FROM room_members WHERE room = ?1 AND uid = ?2")?
                .exists(params![room, uid])
        })
        .await
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let room = room.to_owned();
        self.with_conn(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT uid FROM room_members WHERE room = ?1 ORDER BY uid")?;
            let rows = stmt.query_map(params![room], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn rooms_of(&self, uid: &str) -> Result<Vec<String>, StoreError> {
        let uid = uid.to_owned();
        self.with_conn(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT room FROM room_members WHERE uid = ?1 ORDER BY room")?;
            let rows = stmt.query_map(params![uid], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    async fn remove_memberships(&self, uid: &str) -> Result<usize, StoreError> {
        let uid = uid.to_owned();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let rooms: Vec<String> = tx
                .prepare_cached("SELECT room FROM room_members WHERE uid = ?1")?
                .query_map(params![uid], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut removed = 0;
            {
                let mut delete =
                    tx.prepare_cached("DELETE FROM room_members WHERE room = ?1 AND uid = ?2")?;
                for room in rooms.iter().filter(|r| !crate::room::is_dm_room(r)) {
                    removed += delete.execute(params![room, uid])?;
                }
            }
            tx.commit()?;
            Ok(removed)
        })
        .await
    }

    async fn private_rooms(&self) -> Result<Vec<PrivateRoom>, StoreError> {
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.room, a.owner, m.uid FROM room_access a
                 LEFT JOIN room_members m ON m.room = a.room
                 WHERE a.private = 1 ORDER BY a.room, m.uid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?;
            let mut rooms: Vec<PrivateRoom> = Vec::new();
            for row in rows {
                let (room, owner, member) = row?;
                if rooms.last().is_none_or(|last| last.room != room) {
                    rooms.push(PrivateRoom {
                        room,
                        owner,
                        members: Vec::new(),
                    });
                }
                if let (Some(member), Some(last)) = (member, rooms.last_mut()) {
                    last.members.push(member);
                }
            }
            Ok(rooms)
        })
        .await
    }

    async fn ban(&self, ban: Ban) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO bans (uid, until, reason, by) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![
                ban.uid,
                ban.until.map(|t| t as i64),
                ban.reason,
                ban.by
            ])?;
            Ok(())
        })
        .await
    }

    async fn unban(&self, uid: &str) -> Result<bool, StoreError> {
        let uid = uid.to_owned();
        self.with_conn(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM bans WHERE uid = ?1")?
                .execute(params![uid])?;
            Ok(n > 0)
        })
        .await
    }

    async fn bans(&self, now: u64) -> Result<Vec<Ban>, StoreError> {
        self.with_conn(move |conn| {
            conn.prepare_cached("DELETE FROM bans WHERE until IS NOT NULL AND until <= ?1")?
                .execute(params![now as i64])?;
            let mut stmt =
                conn.prepare_cached("SELECT uid, until, reason, by FROM bans ORDER BY uid")?;
            let rows = stmt.query_map([], |r| {
                Ok(Ban {
                    uid: r.get(0)?,
                    until: r.get::<_, Option<i64>>(1)?.map(|t| t as u64),
                    reason: r.get(2)?,
                    by: r.get(3)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn mute(&self, mute: Mute) -> Result<(), StoreError> {
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO mutes (room, uid, until, reason, by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                mute.room,
                mute.uid,
                mute.until.map(|t| t as i64),
                mute.reason,
                mute.by
            ])?;
            Ok(())
        })
        .await
    }

    async fn unmute(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let (room, uid) = (room.to_owned(), uid.to_owned());
        self.with_conn(move |conn| {
            let n = conn
                .prepare_cached("DELETE FROM mutes WHERE room = ?1 AND uid = ?2")?
                .execute(params![room, uid])?;
            Ok(n > 0)
        })
        .await
    }

    async fn mutes(&self, now: u64) -> Result<Vec<Mute>, StoreError> {
        self.with_conn(move |conn| {
            conn.prepare_cached("DELETE FROM mutes WHERE until IS NOT NULL AND until <= ?1")?
                .execute(params![now as i64])?;
            let mut stmt = conn.prepare_cached(
                "SELECT room, uid, until, reason, by FROM mutes ORDER BY room, uid",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(Mute {
                    room: r.get(0)?,
                    uid: r.get(1)?,
                    until: r.get::<_, Option<i64>>(2)?.map(|t| t as u64),
                    reason: r.get(3)?,
                    by: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn record(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        self.with_conn(move |conn| {
            conn.prepare_cached(
                "INSERT INTO audit (at, actor, action, target, room, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                entry.at,
                entry.actor,
                entry.action,
                entry.target,
                entry.room,
                entry.reason
            ])?;
            Ok(conn.last_insert_rowid() as u64)
        })
        .await
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, at, actor, action, target, room, reason FROM audit
                 ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64], |r| {
                Ok(AuditEntry {
                    id: r.get::<_, i64>(0)? as u64,
                    at: r.get(1)?,
                    actor: r.get(2)?,
                    action: r.get(3)?,
                    target: r.get(4)?,
                    room: r.get(5)?,
                    reason: r.get(6)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;

    #[tokio::test]
    async fn the_sqlite_directory_keeps_the_rules_and_survives_a_reopen() {
        let dir = std::env::temp_dir().join(format!(
            "rtchat-directory-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let path = dir.join("rtchat.db");
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        super::super::conformance::exercise(&store).await;
        drop(store);
        let store = SqliteStore::open(&path, Retention::default(), None).unwrap();
        super::super::conformance::kept_after_reopen(&store).await;
        let _ = std::fs::remove_dir_all(dir);
    }
}

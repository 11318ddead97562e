//! The directory of the Redis store: accounts, revoked tokens, room access and moderation in
//! the same Redis as the messages, so every node sees the same rules at once.
//!
//! # Keys
//! Next to the message keys (see `store/redis/mod.rs`), all under the prefix `rtchat:`:
//!
//! * `rtchat:account:<uid>` — hash: `uid`, `name`, `password_hash`, `admin` (`1`/`0`),
//!   `created`;
//! * `rtchat:account-name:<name>` — string: the uid holding that name (names are unique;
//!   [`Directory::create_account`] sets both keys in one script, refusing a taken name or uid,
//!   and [`Directory::delete_account`] removes both);
//! * `rtchat:revoked` — sorted set: jti, scored by the Unix second it stops mattering
//!   (`ZADD GT`: never shortened; [`Directory::revoked`] drops the expired ones);
//! * `rtchat:{room}:access` — hash: `owner` (absent: none), `private` (`1`/`0`);
//! * `rtchat:{room}:members` — set of the room's members' uids;
//! * `rtchat:rooms-of:<uid>` — set of the rooms `uid` is a member of (kept in step with the
//!   one above by `MULTI`/`EXEC`);
//! * `rtchat:private-rooms` — set of the private rooms' names (so listing them needs no
//!   `SCAN`);
//! * `rtchat:bans` — hash: uid → the ban as JSON;
//! * `rtchat:mutes` — hash: `<room>\n<uid>` → the mute as JSON (room names never hold a line
//!   break, see [`crate::room`]);
//! * `rtchat:audit-seq` — the last audit entry id handed out (`INCR`);
//! * `rtchat:audit` — sorted set: `<id>\n<entry as JSON>`, scored by id; every entry is kept,
//!   as the other stores do.
//!
//! Changes touching several keys are one Lua script or one `MULTI`/`EXEC`. Expired bans and
//! mutes are forgotten by a compare-and-delete script, so a ban placed while they are read is
//! never lost. These keys live in several Redis Cluster slots: the store talks to one Redis
//! (or a primary with replicas), not to a cluster.

use std::collections::HashMap;
use std::sync::OnceLock;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Account, AuditEntry, Ban, Directory, DirectoryError, Mute, PrivateRoom, RoomAccess};
use crate::store::redis::unavailable;
use crate::store::{RedisStore, StoreError, StoreErrorKind};

/// Makes an account unless its name or uid is taken.
/// KEYS: name key, account key. ARGV: uid, name, password_hash, admin, created.
const CREATE_ACCOUNT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 'name' end
if redis.call('EXISTS', KEYS[2]) == 1 then return 'uid' end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'uid', ARGV[1], 'name', ARGV[2], 'password_hash', ARGV[3],
  'admin', ARGV[4], 'created', ARGV[5])
return 'ok'
";

/// Sets an existing account's `admin` flag. KEYS: account key. ARGV: `1` or `0`.
const SET_ADMIN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'admin', ARGV[1])
return 1
";

/// Deletes an account and frees its name. KEYS: account key, name key. ARGV: uid, name.
/// Returns 0 when there is no account, -1 when it no longer has that name (read again).
const DELETE_ACCOUNT: &str = r"
local name = redis.call('HGET', KEYS[1], 'name')
if not name then return 0 end
if name ~= ARGV[2] then return -1 end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
";

/// Deletes each hash field still holding the value it was read with.
/// KEYS: the hash. ARGV: field, value, field, value...
const FORGET_UNCHANGED: &str = r"
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
";

/// Appends an audit entry under the next id; returns the id.
/// KEYS: sequence, log. ARGV: the entry as JSON (without its id).
const RECORD: &str = r"
local id = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], id, string.format('%d', id) .. '\n' .. ARGV[1])
return id
";

/// The scripts, hashed once per process.
struct Scripts {
    create_account: redis::Script,
    set_admin: redis::Script,
    delete_account: redis::Script,
    forget_unchanged: redis::Script,
    record: redis::Script,
}

/// The scripts above, made once.
fn scripts() -> &'static Scripts {
    static SCRIPTS: OnceLock<Scripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        create_account: redis::Script::new(CREATE_ACCOUNT),
        set_admin: redis::Script::new(SET_ADMIN),
        delete_account: redis::Script::new(DELETE_ACCOUNT),
        forget_unchanged: redis::Script::new(FORGET_UNCHANGED),
        record: redis::Script::new(RECORD),
    })
}

/// `rtchat:account:<uid>`.
fn account_key(uid: &str) -> String {
    RedisStore::key(&format!("account:{uid}"))
}

/// `rtchat:account-name:<name>`.
fn name_key(name: &str) -> String {
    RedisStore::key(&format!("account-name:{name}"))
}

/// `rtchat:rooms-of:<uid>`.
fn rooms_of_key(uid: &str) -> String {
    RedisStore::key(&format!("rooms-of:{uid}"))
}

/// A mute's field in `rtchat:mutes`.
fn mute_field(room: &str, uid: &str) -> String {
    format!("{room}\n{uid}")
}

/// A flag as the hashes keep it.
fn flag(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

/// Something stored that cannot be read back.
fn unreadable(what: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Unreadable,
        format!("{what} in the Redis store cannot be read"),
    )
}

/// Reads JSON the directory stored.
fn parse_json<'a, T: Deserialize<'a>>(what: &str, json: &'a str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| {
        StoreError::with_source(
            StoreErrorKind::Unreadable,
            format!("{what} in the Redis store cannot be read"),
            e,
        )
    })
}

/// A reply read as `T`.
fn from_value<T: redis::FromRedisValue>(what: &str, value: redis::Value) -> Result<T, StoreError> {
    redis::from_redis_value(value).map_err(|e| {
        StoreError::with_source(
            StoreErrorKind::Unreadable,
            format!("{what} in the Redis store cannot be read"),
            e,
        )
    })
}

/// An account hash as `HGETALL` returns it (empty: no account).
fn parse_account(mut fields: HashMap<String, String>) -> Result<Option<Account>, StoreError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut take = |field: &str| fields.remove(field).ok_or_else(|| unreadable("an account"));
    Ok(Some(Account {
        uid: take("uid")?,
        name: take("name")?,
        password_hash: take("password_hash")?,
        admin: take("admin")? == "1",
        created: take("created")?
            .parse()
            .map_err(|_| unreadable("an account"))?,
    }))
}

/// A ban as `rtchat:bans` keeps it.
#[derive(Serialize, Deserialize)]
struct StoredBan {
    uid: String,
    until: Option<u64>,
    reason: String,
    by: String,
}

/// A mute as `rtchat:mutes` keeps it.
#[derive(Serialize, Deserialize)]
struct StoredMute {
    room: String,
    uid: String,
    until: Option<u64>,
    reason: String,
    by: String,
}

/// An audit entry as `rtchat:audit` keeps it (its id is before the JSON).
#[derive(Serialize, Deserialize)]
struct StoredEntry {
    at: i64,
    actor: String,
    action: String,
    target: String,
    room: Option<String>,
    reason: Option<String>,
}

impl RedisStore {
    /// Reads a hash of JSON values, forgets those `expired` says are over (unless they changed
    /// meanwhile) and returns the others.
    async fn read_expiring<T: DeserializeOwned>(
        &self,
        key: &str,
        what: &str,
        expired: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, StoreError> {
        let mut conn = self.conn.clone();
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut kept = Vec::with_capacity(all.len());
        let mut over = Vec::new();
        for (field, json) in all {
            let value: T = parse_json(what, &json)?;
            if expired(&value) {
                over.push(field);
                over.push(json);
            } else {
                kept.push(value);
            }
        }
        if !over.is_empty() {
            let _: i64 = scripts()
                .forget_unchanged
                .key(key)
                .arg(over)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
        }
        Ok(kept)
    }
}

#[async_trait]
impl Directory for RedisStore {
    async fn create_account(&self, account: Account) -> Result<(), DirectoryError> {
        let mut conn = self.writer();
        let outcome: String = scripts()
            .create_account
            .key(name_key(&account.name))
            .key(account_key(&account.uid))
            .arg(&account.uid)
            .arg(&account.name)
            .arg(&account.password_hash)
            .arg(flag(account.admin))
            .arg(account.created)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "name" => Err(DirectoryError::NameTaken(account.name)),
            _ => Err(DirectoryError::UidTaken(account.uid)),
        }
    }

    async fn account(&self, uid: &str) -> Result<Option<Account>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(account_key(uid))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        parse_account(fields)
    }

    async fn account_by_name(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let mut conn = self.conn.clone();
        let uid: Option<String> = redis::cmd("GET")
            .arg(name_key(name))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let Some(uid) = uid else {
            return Ok(None);
        };
        // Deleted in between (or the name moved on): as if it were already gone.
        Ok(self.account(&uid).await?.filter(|a| a.name == name))
    }

    async fn set_admin(&self, uid: &str, admin: bool) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let set: i64 = scripts()
            .set_admin
            .key(account_key(uid))
            .arg(flag(admin))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(set == 1)
    }

    async fn delete_account(&self, uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        // The name key is named after the account's name, read first; the script checks it
        // is still that name (a deletion and a new signup under the same uid in between).
        for _ in 0..5 {
            let name: Option<String> = redis::cmd("HGET")
                .arg(account_key(uid))
                .arg("name")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let Some(name) = name else {
                return Ok(false);
            };
            let deleted: i64 = scripts()
                .delete_account
                .key(account_key(uid))
                .key(name_key(&name))
                .arg(uid)
                .arg(&name)
                .invoke_async(&mut conn)
                .await
                .map_err(unavailable)?;
            if deleted >= 0 {
                self.replicated(&mut conn).await?;
                return Ok(deleted == 1);
            }
        }
        Err(StoreError::new(
            StoreErrorKind::Unavailable,
            "the account kept changing while it was deleted",
        ))
    }

    async fn revoke(&self, jti: &str, until: u64) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let _: i64 = redis::cmd("ZADD")
            .arg(RedisStore::key("revoked"))
            .arg("GT")
            .arg(until)
            .arg(jti)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(())
    }

    async fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let key = RedisStore::key("revoked");
        let mut conn = self.conn.clone();
        let (kept,): (Vec<(String, f64)>,) = redis::pipe()
            .atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut out: Vec<(String, u64)> = kept
            .into_iter()
            .map(|(jti, until)| (jti, until as u64))
            .collect();
        out.sort();
        Ok(out)
    }

    async fn room_access(&self, room: &str) -> Result<RoomAccess, StoreError> {
        let mut conn = self.conn.clone();
        let (owner, private): (Option<String>, Option<String>) = redis::cmd("HMGET")
            .arg(RedisStore::room_key(room, "access"))
            .arg("owner")
            .arg("private")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(RoomAccess {
            owner,
            private: private.as_deref() == Some("1"),
        })
    }

    async fn claim_room(&self, room: &str, uid: &str) -> Result<String, StoreError> {
        let key = RedisStore::room_key(room, "access");
        let mut conn = self.writer();
        let (owner,): (String,) = redis::pipe()
            .atomic()
            .cmd("HSETNX")
            .arg(&key)
            .arg("owner")
            .arg(uid)
            .ignore()
            .cmd("HGET")
            .arg(&key)
            .arg("owner")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(owner)
    }

    async fn set_private(&self, room: &str, private: bool) -> Result<(), StoreError> {
        let mut conn = self.writer();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(RedisStore::room_key(room, "access"))
            .arg("private")
            .arg(flag(private))
            .ignore()
            .cmd(if private { "SADD" } else { "SREM" })
            .arg(RedisStore::key("private-rooms"))
            .arg(room)
            .ignore();
        let () = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(())
    }

    async fn add_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let (added,): (i64,) = redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(RedisStore::room_key(room, "members"))
            .arg(uid)
            .cmd("SADD")
            .arg(rooms_of_key(uid))
            .arg(room)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(added == 1)
    }

    async fn remove_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let (removed,): (i64,) = redis::pipe()
            .atomic()
            .cmd("SREM")
            .arg(RedisStore::room_key(room, "members"))
            .arg(uid)
            .cmd("SREM")
            .arg(rooms_of_key(uid))
            .arg(room)
            .ignore()
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(removed == 1)
    }

    async fn is_member(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SISMEMBER")
            .arg(RedisStore::room_key(room, "members"))
            .arg(uid)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    async fn members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut members: Vec<String> = redis::cmd("SMEMBERS")
            .arg(RedisStore::room_key(room, "members"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        members.sort();
        Ok(members)
    }

    async fn rooms_of(&self, uid: &str) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(rooms_of_key(uid))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        rooms.sort();
        Ok(rooms)
    }

    async fn remove_memberships(&self, uid: &str) -> Result<usize, StoreError> {
        let mut conn = self.writer();
        let rooms: Vec<String> = redis::cmd("SMEMBERS")
            .arg(rooms_of_key(uid))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let rooms: Vec<&String> = rooms
            .iter()
            .filter(|r| !crate::room::is_dm_room(r))
            .collect();
        if rooms.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for room in &rooms {
            pipe.cmd("SREM")
                .arg(RedisStore::room_key(room, "members"))
                .arg(uid)
                .cmd("SREM")
                .arg(rooms_of_key(uid))
                .arg(room.as_str())
                .ignore();
        }
        let removed: Vec<i64> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(removed.into_iter().filter(|&n| n == 1).count())
    }

    async fn private_rooms(&self) -> Result<Vec<PrivateRoom>, StoreError> {
        let mut conn = self.conn.clone();
        let names = self.sorted_members("private-rooms").await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for room in &names {
            pipe.cmd("HMGET")
                .arg(RedisStore::room_key(room, "access"))
                .arg("owner")
                .arg("private")
                .cmd("SMEMBERS")
                .arg(RedisStore::room_key(room, "members"));
        }
        let found: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut rooms = Vec::with_capacity(names.len());
        let mut found = found.into_iter();
        for room in names {
            let (Some(access), Some(members)) = (found.next(), found.next()) else {
                return Err(unreadable("the private rooms"));
            };
            let (owner, private): (Option<String>, Option<String>) =
                from_value("a room's access", access)?;
            let mut members: Vec<String> = from_value("a room's members", members)?;
            // Made public since the set was read (same MULTI): left out.
            if private.as_deref() != Some("1") {
                continue;
            }
            members.sort();
            rooms.push(PrivateRoom {
                room,
                owner,
                members,
            });
        }
        Ok(rooms)
    }

    async fn ban(&self, ban: Ban) -> Result<(), StoreError> {
        let stored = StoredBan {
            uid: ban.uid,
            until: ban.until,
            reason: ban.reason,
            by: ban.by,
        };
        let json = serde_json::to_string(&stored).expect("a ban serializes");
        let mut conn = self.writer();
        let _: i64 = redis::cmd("HSET")
            .arg(RedisStore::key("bans"))
            .arg(&stored.uid)
            .arg(json)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(())
    }

    async fn unban(&self, uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let removed: i64 = redis::cmd("HDEL")
            .arg(RedisStore::key("bans"))
            .arg(uid)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(removed == 1)
    }

    async fn bans(&self, now: u64) -> Result<Vec<Ban>, StoreError> {
        let stored: Vec<StoredBan> = self
            .read_expiring(&RedisStore::key("bans"), "a ban", |b: &StoredBan| {
                b.until.is_some_and(|t| t <= now)
            })
            .await?;
        let mut bans: Vec<Ban> = stored
            .into_iter()
            .map(|b| Ban {
                uid: b.uid,
                until: b.until,
                reason: b.reason,
                by: b.by,
            })
            .collect();
        bans.sort_by(|a, b| a.uid.cmp(&b.uid));
        Ok(bans)
    }

    async fn mute(&self, mute: Mute) -> Result<(), StoreError> {
        let stored = StoredMute {
            room: mute.room,
            uid: mute.uid,
            until: mute.until,
            reason: mute.reason,
            by: mute.by,
        };
        let json = serde_json::to_string(&stored).expect("a mute serializes");
        let mut conn = self.writer();
        let _: i64 = redis::cmd("HSET")
            .arg(RedisStore::key("mutes"))
            .arg(mute_field(&stored.room, &stored.uid))
            .arg(json)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(())
    }

    async fn unmute(&self, room: &str, uid: &str) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let removed: i64 = redis::cmd("HDEL")
            .arg(RedisStore::key("mutes"))
            .arg(mute_field(room, uid))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(removed == 1)
    }

    async fn mutes(&self, now: u64) -> Result<Vec<Mute>, StoreError> {
        let stored: Vec<StoredMute> = self
            .read_expiring(&RedisStore::key("mutes"), "a mute", |m: &StoredMute| {
                m.until.is_some_and(|t| t <= now)
            })
            .await?;
        let mut mutes: Vec<Mute> = stored
            .into_iter()
            .map(|m| Mute {
                room: m.room,
                uid: m.uid,
                until: m.until,
                reason: m.reason,
                by: m.by,
            })
            .collect();
        mutes.sort_by(|a, b| (&a.room, &a.uid).cmp(&(&b.room, &b.uid)));
        Ok(mutes)
    }

    async fn record(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        let stored = StoredEntry {
            at: entry.at,
            actor: entry.actor,
            action: entry.action,
            target: entry.target,
            room: entry.room,
            reason: entry.reason,
        };
        let json = serde_json::to_string(&stored).expect("an audit entry serializes");
        let mut conn = self.writer();
        let id = scripts()
            .record
            .key(RedisStore::key("audit-seq"))
            .key(RedisStore::key("audit"))
            .arg(json)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(id)
    }

    async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let stop = i64::try_from(limit).unwrap_or(i64::MAX) - 1;
        let mut conn = self.conn.clone();
        let found: Vec<String> = redis::cmd("ZREVRANGE")
            .arg(RedisStore::key("audit"))
            .arg(0)
            .arg(stop)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        found
            .iter()
            .map(|member| {
                let (id, json) = member
                    .split_once('\n')
                    .ok_or_else(|| unreadable("an audit entry"))?;
                let id: u64 = id.parse().map_err(|_| unreadable("an audit entry"))?;
                let e: StoredEntry = parse_json("an audit entry", json)?;
                Ok(AuditEntry {
                    id,
                    at: e.at,
                    actor: e.actor,
                    action: e.action,
                    target: e.target,
                    room: e.room,
                    reason: e.reason,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redis::testing::RedisServer;

    #[tokio::test]
    async fn the_redis_directory_keeps_the_rules_and_another_node_sees_them() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), 1000).await.unwrap();
        super::super::conformance::exercise(&store).await;
        // A second node (its own connection) finds everything the first one left.
        let other = RedisStore::connect(&server.url(), 1000).await.unwrap();
        super::super::conformance::kept_after_reopen(&other).await;
    }

    #[tokio::test]
    async fn expired_entries_go_but_a_newer_ban_stays_and_audit_limits_hold() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), 1000).await.unwrap();
        let ban = |until: Option<u64>| Ban {
            uid: "u1".into(),
            until,
            reason: "r".into(),
            by: "root".into(),
        };
        store.ban(ban(Some(10))).await.unwrap();
        assert_eq!(store.bans(20).await.unwrap(), []);
        assert!(
            !store.unban("u1").await.unwrap(),
            "the expired ban was forgotten"
        );
        store.ban(ban(None)).await.unwrap();
        assert_eq!(store.bans(20).await.unwrap(), [ban(None)]);
        // A line break in a reason, quotes in a name: stored as JSON.
        store
            .mute(Mute {
                room: "a".into(),
                uid: "u\"2".into(),
                until: Some(u64::from(u32::MAX)),
                reason: "line\nbreak".into(),
                by: "root".into(),
            })
            .await
            .unwrap();
        assert_eq!(store.mutes(1).await.unwrap()[0].reason, "line\nbreak");
        assert!(store.unmute("a", "u\"2").await.unwrap());

        assert_eq!(store.audit_log(5).await.unwrap(), []);
        let entry = AuditEntry {
            id: 99,
            at: 7,
            actor: "root".into(),
            action: "mute".into(),
            target: "u2".into(),
            room: Some("a".into()),
            reason: None,
        };
        for _ in 0..3 {
            store.record(entry.clone()).await.unwrap();
        }
        let log = store.audit_log(usize::MAX).await.unwrap();
        assert_eq!(log.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(log[0], AuditEntry { id: 3, ..entry });
        assert_eq!(store.audit_log(0).await.unwrap(), []);

        // Making a room public again takes it off the private list.
        store.set_private("p", true).await.unwrap();
        assert_eq!(store.private_rooms().await.unwrap().len(), 1);
        store.set_private("p", false).await.unwrap();
        assert_eq!(store.private_rooms().await.unwrap(), []);
        assert!(!store.room_access("p").await.unwrap().private);
    }
}

//! The shared store (`--store redis://HOST:PORT/DB`): everything several rtchat nodes must
//! agree on lives in one Redis, so any node can serve any client.
//!
//! # Keys
//! Every key starts with the store's prefix (`rtchat:`). A room's keys share a hash tag
//! (`{room}`), so one room lives in one Redis Cluster slot and its scripts may touch them all:
//!
//! * `rtchat:{room}:meta` — hash: `epoch`, `seq` (the newest id handed out), `live` (messages
//!   not deleted);
//! * `rtchat:{room}:log` — stream: each message under the stream id `<id>-0` (field `m`, its
//!   JSON); trimmed to the newest `retain` entries, never `XDEL`ed, so a node that missed a
//!   publication refills from here;
//! * `rtchat:{room}:dlog` — stream of tombstones: one entry per deletion (field `d`, the
//!   deleted id), so a node that missed a deletion's publication finds it here too;
//! * `rtchat:{room}:del` — sorted set of the deleted ids (score = id), so reads skip them;
//! * `rtchat:{room}:edit` — hash id → the message's JSON as rewritten by
//!   [`Store::anonymize`];
//! * `rtchat:{room}:key:<user>\0<key>` — an idempotency key: the message it stored (JSON),
//!   expiring with the dedupe window;
//! * `rtchat:{room}:pub` — the pub/sub channel every post and deletion of the room is
//!   published on (see [`crate::broker::RedisBroker`]);
//! * `rtchat:rooms` — set of every room's name.
//!
//! The directory's keys (accounts, bans, ...) are described in `directory/redis.rs`.
//!
//! # Atomicity
//! Each post is one Lua script (check the key, take the next id, `XADD`, `PUBLISH`), and a
//! batch's scripts run in one `MULTI`/`EXEC`: the batch is stored whole or not at all, and a
//! message is published by the same step that stores it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{
    Append, Appended, ChannelInfo, ChannelSummary, Page, Store, StoreError, StoreErrorKind,
};
use crate::message::Message;

#[cfg(test)]
pub(crate) mod testing;

/// The prefix of every key rtchat writes.
pub const PREFIX: &str = "rtchat:";

/// The shared store: messages, epochs, idempotency keys and the directory in one Redis.
#[derive(Clone)]
pub struct RedisStore {
    /// Where it was opened (for logs; without a password).
    url: String,
    pub(crate) client: redis::Client,
    /// Reconnects by itself; cheap to clone (one multiplexed connection).
    pub(crate) conn: ConnectionManager,
    /// How many stream entries each room keeps (`--retain`).
    retain: usize,
    /// What this node has seen of each room (shared by clones).
    pub(crate) seen: Arc<Seen>,
    /// The posts' own connection: `WAIT` (see [`RedisStore::wait_for_replicas`]) waits for
    /// the writes of its connection and blocks it meanwhile, so it is not the one reads use.
    writer: ConnectionManager,
    /// Replicas each batch must reach before it is acknowledged, and for how long to wait.
    wait: Option<(usize, Duration)>,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://HOST:PORT/DB`); fails when it does not
    /// answer.
    pub async fn connect(url: &str, retain: usize) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url).map_err(|e| {
            StoreError::with_source(StoreErrorKind::Other, format!("bad Redis URL {url:?}"), e)
        })?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1);
        let conn = client
            .get_connection_manager_with_config(config.clone())
            .await
            .map_err(|e| {
                StoreError::with_source(
                    StoreErrorKind::Unavailable,
                    format!("cannot reach Redis at {}: {e}", redact(url)),
                    e,
                )
            })?;
        let writer = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(unavailable)?;
        let store = RedisStore {
            url: redact(url),
            client,
            conn,
            writer,
            wait: None,
            retain: retain.max(1),
            seen: Arc::default(),
        };
        store.ping().await?;
        Ok(store)
    }

    /// The key `rest` of room `room` (`rtchat:{room}:rest`).
    pub(crate) fn room_key(room: &str, rest: &str) -> String {
        format!("{PREFIX}{{{room}}}:{rest}")
    }

    /// A key outside any room (`rtchat:rest`).
    pub(crate) fn key(rest: &str) -> String {
        format!("{PREFIX}{rest}")
    }

    /// The pub/sub channel of a room.
    pub fn room_channel(room: &str) -> String {
        RedisStore::room_key(room, "pub")
    }

    /// The value of the shared key `name` (`rtchat:<name>`), set to `value` first if it has
    /// none: how a cluster's nodes agree on something made once (the token secret).
    pub async fn get_or_init(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut conn = self.writer();
        let key = RedisStore::key(name);
        let (_, value): ((), Vec<u8>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(value)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map(|v: (Vec<u8>,)| ((), v.0))
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(value)
    }

    /// Notes that the Engine.IO session `sid` lives on the node reachable at `node`, for
    /// `ttl` (renewed by every [`RedisStore::session_owner`] lookup): how a request for the
    /// session that reaches another node finds its owner.
    pub async fn own_session(
        &self,
        sid: &str,
        node: &str,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(RedisStore::key(&format!("eio:{sid}")))
            .arg(node)
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async::<()>(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// The node that owns the Engine.IO session `sid`, if any; renews its time to live.
    pub async fn session_owner(
        &self,
        sid: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        let mut conn = self.conn.clone();
        redis::cmd("GETEX")
            .arg(RedisStore::key(&format!("eio:{sid}")))
            .arg("EX")
            .arg(ttl.as_secs().max(1))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)
    }

    /// Acknowledges a batch of posts only once `replicas` replicas have it too (Redis's
    /// `WAIT`, up to `timeout`; `--redis-wait-replicas`). A batch that does not reach them in
    /// time is refused as unavailable: it is stored on the primary (and delivered), but not
    /// acknowledged, so a retry with the same idempotency key finds it instead of storing it
    /// twice.
    pub fn wait_for_replicas(mut self, replicas: usize, timeout: Duration) -> RedisStore {
        self.wait = (replicas > 0).then_some((replicas, timeout));
        self
    }

    /// The connection writes go through, so that [`RedisStore::replicated`] (`WAIT`) waits
    /// for them, and blocks only writes meanwhile.
    pub(crate) fn writer(&self) -> ConnectionManager {
        self.writer.clone()
    }

    /// After a change written on `conn` (from [`RedisStore::writer`]): with
    /// `--redis-wait-replicas N`, waits until N replicas have it; refused as unavailable when
    /// they do not in time (the primary has the change, a failover may lose it: the caller
    /// retries, and every directory change may be made again).
    pub(crate) async fn replicated(&self, conn: &mut ConnectionManager) -> Result<(), StoreError> {
        self.reached_replicas(
            conn,
            "the change",
            "not confirmed (the primary has it; a failover may lose it): retry it once the replicas are back",
        )
        .await
    }

    async fn reached_replicas(
        &self,
        conn: &mut ConnectionManager,
        what: &str,
        otherwise: &str,
    ) -> Result<(), StoreError> {
        let Some((replicas, timeout)) = self.wait else {
            return Ok(());
        };
        let reached: usize = redis::cmd("WAIT")
            .arg(replicas)
            .arg(timeout.as_millis().max(1) as u64)
            .query_async(conn)
            .await
            .map_err(unavailable)?;
        if reached < replicas {
            return Err(StoreError::new(
                StoreErrorKind::Unavailable,
                format!(
                    "{what} reached {reached} of the {replicas} Redis replicas --redis-wait-replicas asks for within {} ms: {otherwise}",
                    timeout.as_millis()
                ),
            ));
        }
        Ok(())
    }

    /// `url` without its password, for logs and messages.
    pub fn redact_url(url: &str) -> String {
        redact(url)
    }

    /// The members of the shared set `name` (`rtchat:<name>`), sorted.
    pub(crate) async fn sorted_members(&self, name: &str) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(RedisStore::key(name))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        names.sort();
        Ok(names)
    }

    /// The client it was opened with (the broker opens its pub/sub connection from it).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }
}

/// A URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A Redis failure as the store reports it: clients are told the store is unavailable.
pub(crate) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::with_source(
        StoreErrorKind::Unavailable,
        format!("the Redis store is unavailable ({})", e.category()),
        e,
    )
}

/// The scripts, compiled once per process (Redis caches them by their SHA-1).
struct Scripts {
    append: &'static str,
    delete: redis::Script,
    recent: redis::Script,
    after: redis::Script,
    open: redis::Script,
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| Scripts {
        // Sent whole (EVAL) inside MULTI: an EVALSHA there would fail alone, after Redis
        // restarted and forgot its scripts, while the rest of the batch ran.
        append: include_str!("append.lua"),
        delete: redis::Script::new(include_str!("delete.lua")),
        recent: redis::Script::new(include_str!("recent.lua")),
        after: redis::Script::new(include_str!("after.lua")),
        open: redis::Script::new(include_str!("open.lua")),
    })
}

/// A message as the scripts stored it.
fn parse_message(json: &[u8]) -> Result<Message, StoreError> {
    serde_json::from_slice(json).map_err(|e| {
        StoreError::with_source(
            StoreErrorKind::Unreadable,
            "a message in the Redis store cannot be read",
            e,
        )
    })
}

/// The highest id this node has seen in each room, by epoch: passed to the scripts so a
/// stale Redis (a failover to a replica that missed posts) never hands out an id again.
#[derive(Default)]
pub(crate) struct Seen(std::sync::Mutex<std::collections::HashMap<String, (String, u64)>>);

impl Seen {
    /// What this node knows of `room`: (epoch, newest id), or ("", 0).
    pub(crate) fn get(&self, room: &str) -> (String, u64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(room)
            .cloned()
            .unwrap_or_default()
    }

    /// Notes that `room` has reached `id` in `epoch`.
    pub(crate) fn saw(&self, room: &str, epoch: &str, id: u64) {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(room) {
            Some((e, last)) if e == epoch => *last = (*last).max(id),
            _ => {
                seen.insert(room.to_owned(), (epoch.to_owned(), id));
            }
        }
    }
}

#[async_trait]
impl Store for RedisStore {
    fn describe(&self) -> String {
        format!(
            "redis {} (keeps the newest {} entries per room)",
            self.url, self.retain
        )
    }

    async fn channels(&self) -> Result<Vec<ChannelSummary>, StoreError> {
        let mut conn = self.conn.clone();
        let names = self.sorted_members("rooms").await?;
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.cmd("HMGET")
                .arg(RedisStore::room_key(name, "meta"))
                .arg(&["epoch", "seq", "live"]);
        }
        let metas: Vec<(Option<String>, Option<u64>, Option<i64>)> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(names
            .into_iter()
            .zip(metas)
            .filter_map(|(name, (epoch, seq, live))| {
                Some(ChannelSummary {
                    name,
                    info: ChannelInfo {
                        epoch: epoch?,
                        last_id: seq.unwrap_or(0),
                    },
                    has_messages: live.unwrap_or(0) > 0,
                })
            })
            .collect())
    }

    async fn open_channel(&self, channel: &str) -> Result<ChannelInfo, StoreError> {
        let mut conn = self.conn.clone();
        let (_, seen) = self.seen.get(channel);
        let (epoch, seq): (String, u64) = scripts()
            .open
            .key(RedisStore::room_key(channel, "meta"))
            .key(RedisStore::room_key(channel, "log"))
            .arg(super::new_epoch())
            .arg(seen)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let _: () = redis::cmd("SADD")
            .arg(RedisStore::key("rooms"))
            .arg(channel)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.seen.saw(channel, &epoch, seq);
        Ok(ChannelInfo {
            epoch,
            last_id: seq,
        })
    }

    async fn find_channel(&self, channel: &str) -> Result<Option<ChannelInfo>, StoreError> {
        let mut conn = self.conn.clone();
        let (epoch, seq): (Option<String>, Option<u64>) = redis::cmd("HMGET")
            .arg(RedisStore::room_key(channel, "meta"))
            .arg(&["epoch", "seq"])
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(epoch.map(|epoch| {
            let last_id = seq.unwrap_or(0);
            self.seen.saw(channel, &epoch, last_id);
            ChannelInfo { epoch, last_id }
        }))
    }

    async fn append(
        &self,
        posts: &[Append],
        time: i64,
        dedupe: Duration,
    ) -> Result<Vec<Appended>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for Append { channel, post } in posts {
            let (epoch, seen) = self.seen.get(channel);
            let cmd = pipe.cmd("EVAL").arg(scripts().append);
            cmd.arg(if post.key.is_some() { 4 } else { 3 })
                .arg(RedisStore::room_key(channel, "meta"))
                .arg(RedisStore::room_key(channel, "log"))
                .arg(RedisStore::room_key(channel, "del"));
            if let Some(key) = &post.key {
                cmd.arg(RedisStore::room_key(
                    channel,
                    &format!("key:{}\0{key}", post.user),
                ));
            }
            cmd.arg(epoch)
                .arg(seen)
                .arg(super::new_epoch())
                .arg(time)
                .arg(self.retain)
                .arg(&post.user)
                .arg(&post.text)
                .arg(post.uid.as_deref().unwrap_or(""))
                .arg(dedupe.as_millis() as u64)
                .arg(RedisStore::room_channel(channel));
            pipe.cmd("SADD")
                .arg(RedisStore::key("rooms"))
                .arg(&**channel)
                .ignore();
        }
        let mut conn = self.writer();
        let replies: Vec<(String, String, String)> =
            pipe.query_async(&mut conn).await.map_err(unavailable)?;
        self.reached_replicas(
            &mut conn,
            "the post",
            "not acknowledged (it may still appear; retry with the same idempotency key)",
        )
        .await?;
        let mut out = Vec::with_capacity(posts.len());
        for (Append { channel, .. }, (status, epoch, value)) in posts.iter().zip(replies) {
            let appended = match status.as_str() {
                "ok" => Appended::Stored(parse_message(value.as_bytes())?),
                "dup" => Appended::Duplicate(parse_message(value.as_bytes())?),
                _ => Appended::Conflict {
                    id: value.parse().unwrap_or(0),
                },
            };
            if let Appended::Stored(m) = &appended {
                self.seen.saw(channel, &epoch, m.id);
            }
            out.push(appended);
        }
        Ok(out)
    }

    async fn recent(&self, channel: &str, n: usize) -> Result<Vec<Message>, StoreError> {
        let mut conn = self.conn.clone();
        let found: Vec<Vec<u8>> = scripts()
            .recent
            .key(RedisStore::room_key(channel, "log"))
            .key(RedisStore::room_key(channel, "del"))
            .key(RedisStore::room_key(channel, "edit"))
            .arg(n)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        found.iter().map(|j| parse_message(j)).collect()
    }

    async fn after(&self, channel: &str, after: u64, limit: usize) -> Result<Page, StoreError> {
        let mut conn = self.conn.clone();
        let found: Vec<redis::Value> = scripts()
            .after
            .key(RedisStore::room_key(channel, "meta"))
            .key(RedisStore::room_key(channel, "log"))
            .key(RedisStore::room_key(channel, "del"))
            .key(RedisStore::room_key(channel, "edit"))
            .arg(after)
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let mut found = found.into_iter();
        let truncated = matches!(found.next(), Some(redis::Value::Int(1)));
        let messages = found
            .map(|v| match v {
                redis::Value::BulkString(json) => parse_message(&json),
                _ => Err(StoreError::new(
                    StoreErrorKind::Unreadable,
                    "an unexpected answer from the Redis store",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            messages,
            truncated,
        })
    }

    async fn delete(&self, channel: &str, id: u64) -> Result<bool, StoreError> {
        let mut conn = self.writer();
        let deleted: u8 = scripts()
            .delete
            .key(RedisStore::room_key(channel, "meta"))
            .key(RedisStore::room_key(channel, "log"))
            .key(RedisStore::room_key(channel, "del"))
            .key(RedisStore::room_key(channel, "dlog"))
            .arg(id)
            .arg(self.retain)
            .arg(RedisStore::room_channel(channel))
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        self.replicated(&mut conn).await?;
        Ok(deleted == 1)
    }

    async fn messages_of(&self, uid: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut out = Vec::new();
        for (room, message, deleted) in self.every_message().await? {
            if !deleted && message.uid.as_deref() == Some(uid) {
                out.push((room, message.id));
            }
        }
        Ok(out)
    }

    async fn anonymize(&self, uid: &str, name: &str) -> Result<usize, StoreError> {
        let mut changed = 0;
        let mut conn = self.writer();
        for (room, mut message, deleted) in self.every_message().await? {
            if message.uid.as_deref() != Some(uid) {
                continue;
            }
            message.user = name.to_owned();
            message.uid = None;
            let json = serde_json::to_string(&message).expect("a message serializes");
            let _: () = redis::cmd("HSET")
                .arg(RedisStore::room_key(&room, "edit"))
                .arg(message.id)
                .arg(json)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            changed += usize::from(!deleted);
        }
        self.replicated(&mut conn).await?;
        Ok(changed)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        // Both connections: the posts' own one reconnects only when used, and a post must
        // not be the first to find it broken after an outage.
        for conn in [&self.conn, &self.writer] {
            let _: String = redis::cmd("PING")
                .query_async(&mut conn.clone())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

impl RedisStore {
    /// Every message still kept, as (room, message as shown, deleted), sorted by room then
    /// id: what an admin deleting a user goes through (rare; reads every stream in pages).
    async fn every_message(&self) -> Result<Vec<(String, Message, bool)>, StoreError> {
        const PAGE: usize = 1000;
        let mut conn = self.conn.clone();
        let rooms = self.sorted_members("rooms").await?;
        let mut out = Vec::new();
        for room in rooms {
            let deleted: Vec<u64> = redis::cmd("ZRANGE")
                .arg(RedisStore::room_key(&room, "del"))
                .arg(0)
                .arg(-1)
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let deleted: std::collections::HashSet<u64> = deleted.into_iter().collect();
            let edits: std::collections::HashMap<u64, String> = redis::cmd("HGETALL")
                .arg(RedisStore::room_key(&room, "edit"))
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            let mut from = "-".to_owned();
            loop {
                let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(RedisStore::room_key(&room, "log"))
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(PAGE)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let Some((last, _)) = entries.last() else {
                    break;
                };
                from = format!("({last}");
                let full = entries.len() == PAGE;
                for (_, fields) in entries {
                    let Some((field, json)) = fields.into_iter().next() else {
                        continue;
                    };
                    if field != "m" {
                        continue;
                    }
                    let mut message = parse_message(json.as_bytes())?;
                    if let Some(edit) = edits.get(&message.id) {
                        message = parse_message(edit.as_bytes())?;
                    }
                    let gone = deleted.contains(&message.id);
                    out.push((room.clone(), message, gone));
                }
                if !full {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::RedisServer;
    use super::*;
    use crate::message::NewPost;

    fn post(channel: &str, text: &str) -> Append {
        Append {
            channel: Arc::from(channel),
            post: NewPost::new("u", text),
        }
    }

    fn ids(appended: &[Appended]) -> Vec<u64> {
        appended
            .iter()
            .map(|a| match a {
                Appended::Stored(m) | Appended::Duplicate(m) => m.id,
                Appended::Conflict { id } => *id,
            })
            .collect()
    }

    const WINDOW: Duration = Duration::from_secs(120);

    #[tokio::test]
    async fn ids_increase_per_room_and_retention_forgets_the_oldest() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), 3).await.unwrap();
        let batch = [
            post("a", "1"),
            post("b", "1"),
            post("a", "2"),
            post("a", "3"),
            post("a", "4"),
        ];
        let appended = store.append(&batch, 1, WINDOW).await.unwrap();
        assert_eq!(ids(&appended), [1, 1, 2, 3, 4]);
        let recent = store.recent("a", 10).await.unwrap();
        assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), [4, 3, 2]);
        assert_eq!(recent[0].text, "4");
        assert_eq!(recent[0].time, 1);
        let page = store.after("a", 0, 10).await.unwrap();
        assert!(page.truncated, "message 1 was forgotten");
        assert_eq!(
            page.messages.iter().map(|m| m.id).collect::<Vec<_>>(),
            [2, 3, 4]
        );
        let page = store.after("a", 2, 1).await.unwrap();
        assert!(!page.truncated);
        assert_eq!(page.messages[0].id, 3);
        assert!(store.after("a", 4, 10).await.unwrap().messages.is_empty());
        assert_eq!(store.find_channel("b").await.unwrap().unwrap().last_id, 1);
        assert_eq!(
            store.find_channel("c").await.unwrap(),
            None,
            "reads create nothing"
        );
        let names: Vec<String> = store
            .channels()
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[tokio::test]
    async fn a_tombstone_is_skipped_without_a_gap_and_text_survives_exactly() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), 10).await.unwrap();
        let odd = "ünïcode \"quoted\" / back\\slash \u{1F600} 12345678901234567890";
        store
            .append(&[post("a", "1"), post("a", "2"), post("a", odd)], 1, WINDOW)
            .await
            .unwrap();
        assert!(store.delete("a", 2).await.unwrap());
        assert!(!store.delete("a", 2).await.unwrap(), "already deleted");
        assert!(!store.delete("a", 9).await.unwrap(), "no such message");
        let page = store.after("a", 1, 10).await.unwrap();
        assert!(!page.truncated);
        assert_eq!(page.messages.iter().map(|m| m.id).collect::<Vec<_>>(), [3]);
        assert_eq!(page.messages[0].text, odd);
        let recent = store.recent("a", 10).await.unwrap();
        assert_eq!(recent.iter().map(|m| m.id).collect::<Vec<_>>(), [3, 1]);
        // The next post continues after the tombstone entry.
        let next = store.append(&[post("a", "4")], 2, WINDOW).await.unwrap();
        assert_eq!(ids(&next), [4]);
    }

    #[tokio::test]
    async fn keys_dedupe_within_the_window_per_poster() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), 10).await.unwrap();
        let keyed = |user: &str, text: &str, key: &str| Append {
            channel: Arc::from("a"),
            post: NewPost {
                user: user.into(),
                text: text.into(),
                key: Some(key.into()),
                uid: Some("u1".into()),
            },
        };
        let first = store
            .append(
                &[keyed("ann", "hi", "k1"), keyed("ann", "hi", "k1")],
                1_000,
                WINDOW,
            )
            .await
            .unwrap();
        assert!(
            matches!(first[0], Appended::Stored(ref m) if m.id == 1 && m.uid.as_deref() == Some("u1"))
        );
        assert!(matches!(first[1], Appended::Duplicate(ref m) if m.id == 1));
        let again = store
            .append(
                &[keyed("ann", "other", "k1"), keyed("bob", "hi", "k1")],
                2_000,
                WINDOW,
            )
            .await
            .unwrap();
        assert_eq!(again[0], Appended::Conflict { id: 1 });
        assert!(
            matches!(again[1], Appended::Stored(ref m) if m.id == 2),
            "another poster's key"
        );
        // A second node (another connection) sees the same keys.
        let other = RedisStore::connect(&server.url(), 10).await.unwrap();
        let retried = other
            .append(&[keyed("ann", "hi", "k1")], 3_000, WINDOW)
            .await
            .unwrap();
        assert!(matches!(retried[0], Appended::Duplicate(ref m) if m.id == 1));
    }

    #[tokio::test]
    async fn a_lost_room_gets_a_new_epoch_and_never_reuses_an_id() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), 10).await.unwrap();
        let first = store.open_channel("a").await.unwrap();
        store
            .append(&[post("a", "1"), post("a", "2")], 1, WINDOW)
            .await
            .unwrap();
        let mut conn = store.conn.clone();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
        let appended = store.append(&[post("a", "3")], 2, WINDOW).await.unwrap();
        assert_eq!(ids(&appended), [3], "ids go on past what this node saw");
        let info = store.find_channel("a").await.unwrap().unwrap();
        assert_ne!(info.epoch, first.epoch);
        assert_eq!(info.last_id, 3);
        // A stale copy: the room's sequence is behind what this node saw.
        let _: () = redis::cmd("HSET")
            .arg(RedisStore::room_key("a", "meta"))
            .arg("seq")
            .arg(1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(RedisStore::room_key("a", "log"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let appended = store.append(&[post("a", "4")], 3, WINDOW).await.unwrap();
        assert_eq!(ids(&appended), [4]);
        let after = store.find_channel("a").await.unwrap().unwrap();
        assert_ne!(after.epoch, info.epoch, "a stale room is a new epoch");
    }

    #[tokio::test]
    async fn anonymize_and_messages_of_rewrite_every_room() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url(), 10).await.unwrap();
        let by = |channel: &str, uid: &str| Append {
            channel: Arc::from(channel),
            post: NewPost {
                user: uid.into(),
                text: "t".into(),
                key: None,
                uid: Some(uid.into()),
            },
        };
        store
            .append(
                &[by("a", "u1"), by("a", "u2"), by("b", "u1"), by("b", "u1")],
                1,
                WINDOW,
            )
            .await
            .unwrap();
        store.delete("b", 2).await.unwrap();
        assert_eq!(
            store.messages_of("u1").await.unwrap(),
            [("a".to_owned(), 1), ("b".to_owned(), 1)]
        );
        assert_eq!(store.anonymize("u1", "deleted user").await.unwrap(), 2);
        assert!(store.messages_of("u1").await.unwrap().is_empty());
        let recent = store.recent("a", 10).await.unwrap();
        assert_eq!(recent[1].user, "deleted user");
        assert_eq!(recent[1].uid, None);
        assert_eq!(recent[0].uid.as_deref(), Some("u2"));
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_unavailable() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = RedisStore::connect(&format!("redis://127.0.0.1:{port}/0"), 10)
            .await
            .err()
            .unwrap();
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        let e = RedisStore::connect("redis://user:secret@127.0.0.1:1/0", 10)
            .await
            .err()
            .unwrap();
        assert!(!e.to_string().contains("secret"));
    }
}

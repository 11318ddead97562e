//! The cluster's broker: every node hears every room it holds through Redis pub/sub.
//!
//! Posts and deletions are published by the [`RedisStore`]'s own scripts, in the same step
//! that stores them (so a stored message is always published, even if its node dies right
//! after); this broker only listens. Each node subscribes to the rooms it holds, one Redis
//! channel per room: one publish per message, whatever the number of subscribers and nodes.
//!
//! Pub/sub can drop publications (a connection that breaks). The broker never delivers a
//! message out of order: a message whose id is past the next one refills the gap from the
//! room's stream first, and after a reconnect every held room is read again from its streams
//! (messages and tombstones) before anything new is delivered.
//!
//! Wire format of a room's channel (`rtchat:{room}:pub`):
//! * `m <epoch> <message JSON>` — a stored message;
//! * `d <epoch> <id> <tombstone entry id>` — a deleted message;
//! * `s <signal JSON>` — presence or typing (published by [`RedisBroker::publish`]).
//!
//! Besides the rooms, every node listens to `rtchat:notices`, where each node announces what
//! the others must act on ([`Broker::announce`]) as `<node id> <notice>`; a node ignores its
//! own.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};

use super::{Broker, BrokerError, Deliver, Publication};
use crate::entry::Entry;
use crate::presence::{Member, Signal};
use crate::store::redis::{unavailable, RedisStore};
use crate::store::{Store, StoreError};

/// How many missed messages one refill reads at most (further back, subscribers get what
/// the store still has through their own catch-up).
const MAX_FILL: usize = 10_000;

/// How many times a room is read again after a reconnect before giving up (until its next
/// message shows the gap).
const RESYNC_TRIES: usize = 10;

/// Listens to the rooms this node holds; see the module docs.
pub struct RedisBroker {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
}

enum Command {
    Subscribe(Arc<str>),
    Unsubscribe(Arc<str>),
    /// Read a room again from its streams (a refill failed).
    Resync(Arc<str>),
}

struct Shared {
    store: RedisStore,
    /// To the listening task (a refill to try again).
    commands: mpsc::UnboundedSender<Command>,
    /// This process among the nodes (so it skips its own notices).
    node: String,
    notices: broadcast::Sender<Bytes>,
    deliver: OnceLock<Arc<dyn Deliver>>,
    /// The rooms this node holds (subscribed again after every reconnect).
    wanted: Mutex<HashSet<Arc<str>>>,
    connected: AtomicBool,
    /// Held while anything is delivered, so every room's deliveries stay in order; per room,
    /// the newest tombstone entry delivered.
    delivering: tokio::sync::Mutex<HashMap<Arc<str>, StreamId>>,
}

/// A Redis stream entry id (`<ms>-<seq>`), comparable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct StreamId(u64, u64);

impl StreamId {
    fn parse(s: &str) -> Option<StreamId> {
        let (a, b) = s.split_once('-')?;
        Some(StreamId(a.parse().ok()?, b.parse().ok()?))
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

impl RedisBroker {
    /// A broker over the same Redis as `store` (it must be the store the hub writes to: its
    /// scripts publish what the broker hears).
    pub fn new(store: &RedisStore) -> RedisBroker {
        let (commands, receiver) = mpsc::unbounded_channel();
        RedisBroker {
            shared: Arc::new(Shared {
                store: store.clone(),
                commands: commands.clone(),
                node: crate::store::new_epoch(),
                notices: broadcast::channel(256).0,
                deliver: OnceLock::new(),
                wanted: Mutex::new(HashSet::new()),
                connected: AtomicBool::new(false),
                delivering: tokio::sync::Mutex::new(HashMap::new()),
            }),
            commands,
            receiver: Mutex::new(Some(receiver)),
        }
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn start(&self, deliver: Arc<dyn Deliver>) {
        let _ = self.shared.deliver.set(deliver);
        let receiver = self
            .receiver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(receiver) = receiver {
            tokio::spawn(listen(Arc::downgrade(&self.shared), receiver));
        }
    }

    async fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        match publication {
            // Published by the store's script already; delivered here at once, so the poster's
            // own node holds its message when the post is answered.
            Publication::Message { channel, entry } => {
                let (epoch, _) = self.shared.store.seen.get(&channel);
                self.shared.accept_message(&channel, &epoch, entry).await;
                Ok(())
            }
            // Published by the store's script; it comes back through the subscription.
            Publication::Deleted { .. } => Ok(()),
            Publication::Signal(signal) => {
                let mut payload = b"s ".to_vec();
                payload.extend_from_slice(&signal.json);
                let mut conn = self.shared.store.conn.clone();
                redis::cmd("PUBLISH")
                    .arg(RedisStore::room_channel(&signal.room))
                    .arg(payload)
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| BrokerError(e.to_string()))
            }
        }
    }

    fn subscribe(&self, channel: &str) {
        let channel: Arc<str> = Arc::from(channel);
        if self.shared.wanted().insert(channel.clone()) {
            let _ = self.commands.send(Command::Subscribe(channel));
        }
    }

    fn unsubscribe(&self, channel: &str) {
        if self.shared.wanted().remove(channel) {
            let _ = self.commands.send(Command::Unsubscribe(Arc::from(channel)));
        }
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    async fn share_presence(&self, channel: &str, members: &[Member], changed: bool) {
        let key = presence_key(channel, &self.shared.node);
        let nodes = RedisStore::room_key(channel, "presence-nodes");
        let mut pipe = redis::pipe();
        if members.is_empty() {
            pipe.cmd("DEL").arg(&key).ignore();
            pipe.cmd("SREM").arg(&nodes).arg(&self.shared.node).ignore();
        } else {
            let json = serde_json::to_vec(members).expect("members serialize");
            pipe.cmd("SET")
                .arg(&key)
                .arg(json)
                .arg("EX")
                .arg(super::PRESENCE_TTL.as_secs())
                .ignore();
            pipe.cmd("SADD").arg(&nodes).arg(&self.shared.node).ignore();
        }
        if changed {
            // After the share, on the same connection: whoever looks on hearing it sees it.
            pipe.cmd("PUBLISH")
                .arg(RedisStore::room_channel(channel))
                .arg(format!("p {}", self.shared.node))
                .ignore();
        }
        let mut conn = self.shared.store.conn.clone();
        if let Err(e) = pipe.query_async::<()>(&mut conn).await {
            tracing::debug!(error = %e, channel, "could not share presence");
        }
    }

    async fn presence_elsewhere(&self, channel: &str) -> Result<Vec<Member>, BrokerError> {
        let failed = |e: redis::RedisError| BrokerError(e.to_string());
        let nodes_key = RedisStore::room_key(channel, "presence-nodes");
        let mut conn = self.shared.store.conn.clone();
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&nodes_key)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let others: Vec<&String> = nodes.iter().filter(|n| **n != self.shared.node).collect();
        if others.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = others.iter().map(|n| presence_key(channel, n)).collect();
        let shares: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let mut members = Vec::new();
        for (node, share) in others.iter().zip(shares) {
            match share {
                Some(json) => {
                    members.extend(serde_json::from_slice::<Vec<Member>>(&json).unwrap_or_default())
                }
                // Its share ran out: the node is gone.
                None => {
                    let _: Result<(), _> = redis::cmd("SREM")
                        .arg(&nodes_key)
                        .arg(node.as_str())
                        .query_async(&mut conn)
                        .await;
                }
            }
        }
        Ok(members)
    }

    async fn sync(&self, channel: &str) {
        self.shared.resync(&Arc::from(channel)).await;
    }

    async fn announce(&self, notice: Bytes) -> Result<(), BrokerError> {
        let mut payload = Vec::with_capacity(self.shared.node.len() + 1 + notice.len());
        payload.extend_from_slice(self.shared.node.as_bytes());
        payload.push(b' ');
        payload.extend_from_slice(&notice);
        let mut conn = self.shared.store.conn.clone();
        redis::cmd("PUBLISH")
            .arg(notices_channel())
            .arg(payload)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| BrokerError(e.to_string()))
    }

    fn notices(&self) -> broadcast::Receiver<Bytes> {
        self.shared.notices.subscribe()
    }
}

/// One node's share of a room's presence.
fn presence_key(channel: &str, node: &str) -> String {
    RedisStore::room_key(channel, &format!("presence:{node}"))
}

/// Where nodes announce to each other.
fn notices_channel() -> String {
    RedisStore::key("notices")
}

/// The pub/sub connection's task: (re)connects, (re)subscribes, refills, then hands on what
/// it hears, until the broker is dropped.
async fn listen(shared: std::sync::Weak<Shared>, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(client) = shared.upgrade().map(|s| s.store.client().clone()) else {
            return;
        };
        match client.get_async_pubsub().await {
            Ok(pubsub) => {
                let (mut sink, mut stream) = pubsub.split();
                let Some(s) = shared.upgrade() else { return };
                let rooms: Vec<Arc<str>> = s.wanted().iter().cloned().collect();
                let mut ok = sink.subscribe(notices_channel()).await.is_ok();
                for room in &rooms {
                    if sink
                        .subscribe(RedisStore::room_channel(room))
                        .await
                        .is_err()
                    {
                        ok = false;
                        break;
                    }
                }
                if ok {
                    // The store's connections come back when used: before the next post.
                    let _ = s.store.ping().await;
                    s.connected.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(100);
                    tracing::info!(rooms = rooms.len(), "listening to Redis");
                    // The store's own connection may come back a little after this one: rooms
                    // that could not be read yet are tried again, a few times.
                    let mut unread: Vec<Arc<str>> = rooms;
                    for attempt in 0..RESYNC_TRIES {
                        let mut failed = Vec::new();
                        for room in unread {
                            if let Err(e) = s.try_resync(&room).await {
                                if attempt + 1 == RESYNC_TRIES {
                                    tracing::warn!(error = %e, room = %room, "could not read a room again from Redis");
                                }
                                failed.push(room);
                            }
                        }
                        unread = failed;
                        if unread.is_empty() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    drop(s);
                    loop {
                        tokio::select! {
                            command = commands.recv() => {
                                let Some(command) = command else { return };
                                let Some(s) = shared.upgrade() else { return };
                                match command {
                                    Command::Subscribe(room) => {
                                        if sink.subscribe(RedisStore::room_channel(&room)).await.is_err() {
                                            break;
                                        }
                                        // Published between the room's load and now: read it.
                                        s.resync(&room).await;
                                    }
                                    Command::Resync(room) => s.resync(&room).await,
                                    Command::Unsubscribe(room) => {
                                        if sink.unsubscribe(RedisStore::room_channel(&room)).await.is_err() {
                                            break;
                                        }
                                        s.delivering.lock().await.remove(&room);
                                    }
                                }
                            }
                            message = stream.next() => {
                                let Some(message) = message else { break };
                                let Some(s) = shared.upgrade() else { return };
                                s.heard(message.get_channel_name(), message.get_payload_bytes()).await;
                            }
                        }
                    }
                }
                if let Some(s) = shared.upgrade() {
                    s.connected.store(false, Ordering::Relaxed);
                }
                tracing::warn!("lost the Redis pub/sub connection; reconnecting");
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach Redis for pub/sub");
            }
        }
        // Commands sent meanwhile are covered by `wanted`, read again on reconnect.
        while commands.try_recv().is_ok() {}
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

impl Shared {
    fn wanted(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<str>>> {
        self.wanted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, publication: Publication) {
        if let Some(deliver) = self.deliver.get() {
            deliver.deliver(publication);
        }
    }

    fn position(&self, room: &str) -> Option<(Arc<str>, u64)> {
        self.deliver.get()?.position(room)
    }

    /// One publication heard on `channel`.
    async fn heard(&self, channel: &str, payload: &[u8]) {
        if channel == notices_channel() {
            let node = self.node.as_bytes();
            let theirs = payload.len() > node.len()
                && !(payload.starts_with(node) && payload[node.len()] == b' ');
            if let (true, Some(space)) = (theirs, payload.iter().position(|&b| b == b' ')) {
                let _ = self
                    .notices
                    .send(Bytes::copy_from_slice(&payload[space + 1..]));
            }
            return;
        }
        let Some(room) = channel
            .strip_prefix(crate::store::redis::PREFIX)
            .and_then(|c| c.strip_prefix('{'))
            .and_then(|c| c.strip_suffix("}:pub"))
        else {
            return;
        };
        let Ok(payload) = std::str::from_utf8(payload) else {
            return;
        };
        let room: Arc<str> = Arc::from(room);
        match payload.split_once(' ') {
            Some(("m", rest)) => {
                let Some((epoch, json)) = rest.split_once(' ') else {
                    return;
                };
                match serde_json::from_str(json) {
                    Ok(message) => self.accept_message(&room, epoch, Entry::new(message)).await,
                    Err(e) => tracing::warn!(error = %e, "an unreadable message from Redis"),
                }
            }
            Some(("d", rest)) => {
                let mut parts = rest.split(' ');
                let (Some(epoch), Some(id), Some(entry)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return;
                };
                let (Ok(id), Some(entry)) = (id.parse(), StreamId::parse(entry)) else {
                    return;
                };
                self.accept_deleted(&room, epoch, id, entry).await;
            }
            Some(("p", node)) if node != self.node => {
                if let Some(deliver) = self.deliver.get() {
                    deliver.presence_changed(&room);
                }
            }
            Some(("s", json)) => match Signal::decode(room.clone(), json.as_bytes()) {
                Some(signal) => self.deliver(Publication::Signal(Arc::new(signal))),
                None => tracing::warn!("an unreadable signal from Redis"),
            },
            _ => {}
        }
    }

    /// A message of `room` in `epoch`: delivered after any it skipped, never twice.
    async fn accept_message(&self, room: &Arc<str>, epoch: &str, entry: Arc<Entry>) {
        let _delivering = self.delivering.lock().await;
        let Some((held, last)) = self.position(room) else {
            return;
        };
        if &*held != epoch {
            // Read again from the store, which has this message (or a later state).
            if let Some(deliver) = self.deliver.get() {
                deliver.restart(room).await;
            }
            return;
        }
        let id = entry.message.id;
        self.store.seen.saw(room, epoch, id);
        if id <= last {
            return;
        }
        if id > last + 1 {
            if let Err(e) = self.fill(room, last, id - 1).await {
                // Never past a hole: this message waits for the refill after the reconnect
                // (or for the next message, which shows the same gap).
                tracing::warn!(error = %e, room = %room, "could not refill missed messages; delivering later");
                let _ = self.commands.send(Command::Resync(room.clone()));
                return;
            }
        }
        self.deliver(Publication::Message {
            channel: room.clone(),
            entry,
        });
    }

    /// Delivers the messages of `room` after `last` up to `upto`, from its stream.
    async fn fill(&self, room: &Arc<str>, last: u64, upto: u64) -> Result<(), StoreError> {
        let wanted = usize::try_from(upto - last)
            .unwrap_or(MAX_FILL)
            .min(MAX_FILL);
        let page = self.store.after(room, last, wanted).await?;
        for message in page.messages {
            if message.id > upto {
                break;
            }
            self.deliver(Publication::Message {
                channel: room.clone(),
                entry: Entry::new(message),
            });
        }
        Ok(())
    }

    /// A deletion in `room`: delivered once (tombstone entries only go forward).
    async fn accept_deleted(&self, room: &Arc<str>, epoch: &str, id: u64, entry: StreamId) {
        let mut delivering = self.delivering.lock().await;
        let Some((held, _)) = self.position(room) else {
            return;
        };
        if &*held != epoch {
            return;
        }
        let newest = delivering.entry(room.clone()).or_default();
        if entry <= *newest {
            return;
        }
        *newest = entry;
        self.deliver(Publication::Deleted {
            channel: room.clone(),
            id,
        });
    }

    /// Reads `room` again from its streams: the messages and deletions this node missed
    /// (after subscribing, after a reconnect), or a new epoch.
    async fn resync(&self, room: &Arc<str>) {
        if let Err(e) = self.try_resync(room).await {
            tracing::warn!(error = %e, room = %room, "could not read a room again from Redis");
        }
    }

    async fn try_resync(&self, room: &Arc<str>) -> Result<(), StoreError> {
        let mut delivering = self.delivering.lock().await;
        let Some((held, last)) = self.position(room) else {
            return Ok(());
        };
        let Some(info) = self.store.find_channel(room).await? else {
            return Ok(());
        };
        if *held != *info.epoch {
            if let Some(deliver) = self.deliver.get() {
                deliver.restart(room).await;
            }
            return Ok(());
        }
        if info.last_id > last {
            self.fill(room, last, info.last_id).await?;
        }
        let dlog = RedisStore::room_key(room, "dlog");
        let mut conn = self.store.conn.clone();
        match delivering.get(room).copied() {
            None => {
                // First time here: the history just loaded has every deletion so far.
                let top: Vec<(String, Vec<(String, u64)>)> = redis::cmd("XREVRANGE")
                    .arg(&dlog)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                let newest = top
                    .first()
                    .and_then(|(id, _)| StreamId::parse(id))
                    .unwrap_or_default();
                delivering.insert(room.clone(), newest);
            }
            Some(newest) => {
                let missed: Vec<(String, Vec<(String, u64)>)> = redis::cmd("XRANGE")
                    .arg(&dlog)
                    .arg(format!("({newest}"))
                    .arg("+")
                    .query_async(&mut conn)
                    .await
                    .map_err(unavailable)?;
                for (entry, fields) in missed {
                    let (Some(entry), Some((_, id))) = (StreamId::parse(&entry), fields.first())
                    else {
                        continue;
                    };
                    delivering.insert(room.clone(), entry);
                    self.deliver(Publication::Deleted {
                        channel: room.clone(),
                        id: *id,
                    });
                }
            }
        }
        Ok(())
    }
}

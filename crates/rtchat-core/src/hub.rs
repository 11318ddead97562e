//! The hub: one total order of messages, a cached history snapshot, and fan-out.
//!
//! Every post goes through a single writer task, which hands batches of posts to the
//! [`Store`] (so a durable store can commit many posts with one fsync), then publishes each
//! stored message in id order. Each message is serialized to JSON exactly once, here; every
//! transport shares those bytes.
//!
//! # Slow consumers
//! Subscribers read from one shared, bounded ring of the last [`HubConfig::queue`] events.
//! Nobody waits for a slow subscriber and memory does not grow with it: a subscriber that
//! falls more than `queue` events behind is told so ([`Delivery::Lagged`]) and resumes at the
//! oldest event still in the ring. Transports then apply the policy that fits their wire
//! format: snapshot transports (the course's `{"msg":[...]}`) simply send the fresh snapshot,
//! which supersedes everything missed; delta transports call [`Subscription::catch_up`] to
//! re-read the missed messages from the store, so nothing is lost. A client whose socket
//! stops draining altogether is disconnected by its transport's write timeout.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::message::{Limits, Message, NewPost, PostError};
use crate::store::{Store, StoreError};

/// Tunables of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How many of the newest messages clients are served as history.
    pub history: usize,
    /// Limits applied to every post.
    pub limits: Limits,
    /// How many events a subscriber may fall behind before it is told it lagged.
    pub queue: usize,
    /// The most posts handed to the store in one batch.
    pub batch: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history: 50,
            limits: Limits::default(),
            queue: 256,
            batch: 256,
        }
    }
}

/// Encodings of one message or snapshot for particular wire formats (an SSE event, a
/// WebSocket frame, ...), each made by the first subscriber that needs it and shared by the
/// rest, so a message fanned out to N clients is encoded once per wire format, not N times.
/// Each wire format is a type of its own (a newtype), which is also the lookup key.
#[derive(Default)]
pub struct Encodings(Mutex<Vec<Box<dyn Any + Send + Sync>>>);

impl Encodings {
    /// The cached value of type `T`, or the one `make` returns (then cached).
    pub fn get_or_insert_with<T: Clone + Send + Sync + 'static>(
        &self,
        make: impl FnOnce() -> T,
    ) -> T {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = all.iter().find_map(|e| e.downcast_ref::<T>()) {
            return found.clone();
        }
        let made = make();
        all.push(Box::new(made.clone()));
        made
    }
}

impl std::fmt::Debug for Encodings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encodings")
    }
}

/// A stored message together with its JSON encoding, made once and shared by every sender.
#[derive(Debug)]
pub struct Entry {
    pub message: Message,
    /// `{"id":..,"user":..,"text":..,"time":..}`
    pub json: Bytes,
    encodings: Encodings,
}

impl Entry {
    fn new(message: Message) -> Arc<Entry> {
        let json = serde_json::to_vec(&message).expect("a Message always serializes");
        Arc::new(Entry {
            message,
            json: json.into(),
            encodings: Encodings::default(),
        })
    }

    /// This message in the wire format `T`, encoded by `encode` on first use and shared by
    /// every later caller (see [`Encodings`]).
    pub fn encoded<T: Clone + Send + Sync + 'static>(&self, encode: impl FnOnce(&Entry) -> T) -> T {
        self.encodings.get_or_insert_with(|| encode(self))
    }
}

/// The history as clients see it at one moment: the newest messages, newest first, and the
/// course's `{"msg":[...],"last":N}` encoding of them.
#[derive(Debug)]
pub struct Snapshot {
    /// Newest first, at most [`HubConfig::history`] of them.
    pub entries: Vec<Arc<Entry>>,
    /// Id of the newest message ever stored (0 if none).
    pub last_id: u64,
    /// `{"msg":[...],"last":N}`, the payload of `GET /poll` and of every snapshot transport.
    pub json: Bytes,
    /// The same followed by a newline, for newline-delimited streams (same allocation).
    pub json_line: Bytes,
    encodings: Encodings,
}

impl Snapshot {
    fn new(entries: Vec<Arc<Entry>>) -> Snapshot {
        let last_id = entries.first().map_or(0, |e| e.message.id);
        let json_line = encode_list(entries.iter(), last_id, "\n");
        let json = json_line.slice(..json_line.len() - 1);
        Snapshot {
            entries,
            last_id,
            json,
            json_line,
            encodings: Encodings::default(),
        }
    }

    /// This snapshot in the wire format `T`, encoded once and shared (see [`Encodings`]).
    pub fn encoded<T: Clone + Send + Sync + 'static>(
        &self,
        encode: impl FnOnce(&Snapshot) -> T,
    ) -> T {
        self.encodings.get_or_insert_with(|| encode(self))
    }

    fn with(&self, newest: Arc<Entry>, history: usize) -> Snapshot {
        let mut entries = Vec::with_capacity(history.min(self.entries.len() + 1));
        entries.push(newest);
        entries.extend(self.entries.iter().take(history - 1).cloned());
        Snapshot::new(entries)
    }
}

/// Encodes `{"msg":[...],"last":N}` from already encoded entries, given newest first, and
/// appends `after` (e.g. a newline). The course's wire shape, shared by all transports.
pub fn encode_list<'a>(
    entries: impl Iterator<Item = &'a Arc<Entry>>,
    last: u64,
    after: &str,
) -> Bytes {
    encode_list_with(entries, last, &[], after)
}

/// Like [`encode_list`], adding `"flag":true` for each of `flags` (`more`, `reset`, ...).
pub fn encode_list_with<'a>(
    entries: impl Iterator<Item = &'a Arc<Entry>>,
    last: u64,
    flags: &[&str],
    after: &str,
) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(b"{\"msg\":[");
    for (i, entry) in entries.enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&entry.json);
    }
    out.put_slice(b"],\"last\":");
    out.put_slice(last.to_string().as_bytes());
    for flag in flags {
        out.put_slice(b",\"");
        out.put_slice(flag.as_bytes());
        out.put_slice(b"\":true");
    }
    out.put_u8(b'}');
    out.put_slice(after.as_bytes());
    out.freeze()
}

/// One new message as published to subscribers, with the snapshot that includes it.
#[derive(Debug)]
pub struct Event {
    pub entry: Arc<Entry>,
    pub snapshot: Arc<Snapshot>,
}

/// What a subscriber receives next.
#[derive(Debug)]
pub enum Delivery {
    /// The next message in order.
    Event(Arc<Event>),
    /// The subscriber fell too far behind; `missed` events were dropped for it. See the
    /// module docs for what transports do about it.
    Lagged { missed: u64 },
}

/// Messages after a given id, as answered by [`Hub::since`].
#[derive(Debug, Default)]
pub struct Since {
    /// Oldest first.
    pub entries: Vec<Arc<Entry>>,
    /// More messages follow the returned ones: ask again after the last of them.
    pub more: bool,
    /// Messages right after the requested id are no longer retained by the store.
    pub truncated: bool,
}

impl Since {
    /// This page as the wire shape of every `since` answer: `{"msg":[...],"last":N}`, newest
    /// first, with the [`page_flags`], then `after` (e.g. a newline).
    pub fn encode(&self, last: u64, after: &str) -> Bytes {
        let flags = page_flags(self.more, self.truncated);
        encode_list_with(self.entries.iter().rev(), last, flags, after)
    }
}

/// The flags of a page of messages: `more` (ask again after its last message) and
/// `truncated` (messages right before it are no longer kept).
pub fn page_flags(more: bool, truncated: bool) -> &'static [&'static str] {
    match (more, truncated) {
        (false, false) => &[],
        (true, false) => &["more"],
        (false, true) => &["truncated"],
        (true, true) => &["more", "truncated"],
    }
}

struct Pending {
    post: NewPost,
    reply: oneshot::Sender<Result<Arc<Entry>, PostError>>,
}

struct Inner {
    config: HubConfig,
    store: Arc<dyn Store>,
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
    events: broadcast::Sender<Arc<Event>>,
    posts: mpsc::Sender<Pending>,
}

/// The chat: validated posts in, one ordered stream of messages out to every transport.
/// Cheap to clone; all clones are the same chat.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl Hub {
    /// Opens the chat on `store`, loading the newest history, and starts its writer task.
    /// Must be called inside a tokio runtime.
    pub async fn open(store: Arc<dyn Store>, config: HubConfig) -> Result<Hub, StoreError> {
        let config = HubConfig {
            history: config.history.max(1),
            queue: config.queue.max(1),
            batch: config.batch.max(1),
            ..config
        };
        let recent = store.recent(config.history).await?;
        let snapshot = Snapshot::new(recent.into_iter().map(Entry::new).collect());
        let (snapshot_tx, _) = watch::channel(Arc::new(snapshot));
        let snapshot_tx = Arc::new(snapshot_tx);
        let (events, _) = broadcast::channel(config.queue);
        let (posts, posts_rx) = mpsc::channel(config.batch * 4);
        let writer = Writer {
            store: store.clone(),
            snapshot: snapshot_tx.clone(),
            events: events.clone(),
            history: config.history,
            batch: config.batch,
        };
        tokio::spawn(writer.run(posts_rx));
        Ok(Hub {
            inner: Arc::new(Inner {
                config,
                store,
                snapshot: snapshot_tx,
                events,
                posts,
            }),
        })
    }

    /// The configuration in force (after clamping nonsense values).
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// What the store is, for the start-up log.
    pub fn store_description(&self) -> String {
        self.inner.store.describe()
    }

    /// Validates raw JSON and posts it; see [`Hub::post`].
    pub async fn post_json(&self, body: &[u8]) -> Result<Arc<Entry>, PostError> {
        let post = NewPost::from_json(body, &self.inner.config.limits)?;
        self.post(post).await
    }

    /// Stores a validated post and publishes it. Returns once the store has accepted it, so
    /// an acknowledgement sent after this never refers to a lost message.
    pub async fn post(&self, post: NewPost) -> Result<Arc<Entry>, PostError> {
        self.submit(post).await?.await
    }

    /// Queues a validated post and returns as soon as it is in the writer's queue; the
    /// returned [`Ticket`] resolves once it is stored. Posts submitted one after another are
    /// stored in that order, so a connection can keep reading while its earlier posts commit.
    pub async fn submit(&self, post: NewPost) -> Result<Ticket, PostError> {
        // Waiting for room before making the message keeps this future small: it is part of
        // every WebSocket connection's task.
        let permit = self
            .inner
            .posts
            .reserve()
            .await
            .map_err(|_| PostError::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        permit.send(Pending { post, reply });
        Ok(Ticket(rx))
    }

    /// Like [`Hub::submit`], without waiting: if the writer's queue is full the post is handed
    /// back. Exists so a caller that must stay small (a connection's task) can keep the
    /// waiting path out of line.
    pub fn try_submit(&self, post: NewPost) -> Result<Ticket, TrySubmitError> {
        let permit = match self.inner.posts.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return Err(TrySubmitError::Full(post)),
            Err(mpsc::error::TrySendError::Closed(())) => return Err(TrySubmitError::ShuttingDown),
        };
        let (reply, rx) = oneshot::channel();
        permit.send(Pending { post, reply });
        Ok(Ticket(rx))
    }

    /// The current history snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.borrow().clone()
    }

    /// A receiver that wakes whenever a new snapshot is published; long polls park on it
    /// (it costs a few words while parked, unlike a subscription's queue position).
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.inner.snapshot.subscribe()
    }

    /// Starts receiving every message published from now on. The returned subscription's
    /// [`Subscription::snapshot`] is the history just before its first delivery, with no gap
    /// and no overlap between the two.
    pub fn subscribe(&self) -> Subscription {
        // Subscribe first, then read the snapshot: an event published in between is in both,
        // and the subscription skips it by id.
        let rx = self.inner.events.subscribe();
        let snapshot = self.snapshot();
        Subscription {
            last_seen: snapshot.last_id,
            snapshot,
            rx,
            hub: self.clone(),
        }
    }

    /// How many subscriptions are alive (streams, sockets), for stats and tests.
    pub fn subscribers(&self) -> usize {
        self.inner.events.receiver_count()
    }

    /// Up to `limit` messages with an id greater than `after`, oldest first. Served from the
    /// cached history when it covers the range, otherwise from the store.
    pub async fn since(&self, after: u64, limit: usize) -> Result<Since, StoreError> {
        let limit = limit.max(1);
        let snapshot = self.snapshot();
        if after >= snapshot.last_id {
            return Ok(Since::default());
        }
        let cache_is_everything = snapshot.entries.len() < self.inner.config.history;
        let oldest_cached = snapshot.entries.last().map_or(0, |e| e.message.id);
        if cache_is_everything || oldest_cached <= after + 1 {
            let newer: Vec<_> = snapshot
                .entries
                .iter()
                .rev()
                .filter(|e| e.message.id > after)
                .cloned()
                .collect();
            // Ids are consecutive, so a hole right after `after` means retention dropped it.
            let truncated = newer.first().is_some_and(|e| e.message.id > after + 1);
            let more = newer.len() > limit;
            let entries = newer.into_iter().take(limit).collect();
            return Ok(Since {
                entries,
                more,
                truncated,
            });
        }
        let page = self.inner.store.after(after, limit + 1).await?;
        let more = page.messages.len() > limit;
        Ok(Since {
            entries: page
                .messages
                .into_iter()
                .take(limit)
                .map(Entry::new)
                .collect(),
            more,
            truncated: page.truncated,
        })
    }
}

/// Why [`Hub::try_submit`] did not queue a post.
#[derive(Debug)]
pub enum TrySubmitError {
    /// The writer's queue is full: the post, to be waited in with [`Hub::submit`].
    Full(NewPost),
    /// The hub's writer is gone.
    ShuttingDown,
}

/// A queued post: resolves to the stored message once the store has it (see [`Hub::submit`]).
pub struct Ticket(oneshot::Receiver<Result<Arc<Entry>, PostError>>);

impl std::future::Future for Ticket {
    type Output = Result<Arc<Entry>, PostError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|reply| reply.unwrap_or(Err(PostError::ShuttingDown)))
    }
}

/// A place in the hub's stream of events, with the snapshot it started from.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    snapshot: Arc<Snapshot>,
    last_seen: u64,
    hub: Hub,
}

impl Subscription {
    /// The history at the moment of subscribing.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The hub this subscription listens to (so a holder needs no clone of its own).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Id of the last message delivered (or of the snapshot's newest).
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// Makes the subscription continue after `id` instead (for clients that resume): later
    /// events at or below it are skipped.
    pub fn resume_after(&mut self, id: u64) {
        self.last_seen = id;
    }

    /// What [`Subscription::recv`] would return right now, without waiting: `None` when
    /// nothing is queued (or the hub is gone; `recv` then says so). Lets a busy connection
    /// gather everything already waiting into one write.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        use broadcast::error::TryRecvError;
        loop {
            let delivery = match self.rx.try_recv() {
                Ok(event) => self.deliver(event),
                Err(TryRecvError::Lagged(missed)) => Some(Delivery::Lagged { missed }),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            };
            if delivery.is_some() {
                return delivery;
            }
        }
    }

    /// The next message, in id order, or `None` once the hub is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Delivery> {
        use broadcast::error::RecvError;
        loop {
            let delivery = match self.rx.recv().await {
                Ok(event) => self.deliver(event),
                Err(RecvError::Lagged(missed)) => Some(Delivery::Lagged { missed }),
                Err(RecvError::Closed) => return None,
            };
            if delivery.is_some() {
                return delivery;
            }
        }
    }

    /// An event of the ring as a delivery, or `None` for one at or below what was already
    /// delivered (or resumed past).
    fn deliver(&mut self, event: Arc<Event>) -> Option<Delivery> {
        if event.entry.message.id <= self.last_seen {
            return None;
        }
        self.last_seen = event.entry.message.id;
        Some(Delivery::Event(event))
    }

    /// For delta transports after [`Delivery::Lagged`] (or on resume): the next page of
    /// messages after the last one delivered, read from the store. Call until `more` is false;
    /// later [`Subscription::recv`] calls skip what was returned here.
    pub async fn catch_up(&mut self, limit: usize) -> Result<Since, StoreError> {
        let since = self.hub.since(self.last_seen, limit).await?;
        if let Some(last) = since.entries.last() {
            self.last_seen = last.message.id;
        }
        Ok(since)
    }
}

struct Writer {
    store: Arc<dyn Store>,
    snapshot: Arc<watch::Sender<Arc<Snapshot>>>,
    events: broadcast::Sender<Arc<Event>>,
    history: usize,
    batch: usize,
}

impl Writer {
    async fn run(self, mut posts: mpsc::Receiver<Pending>) {
        let mut pending = Vec::with_capacity(self.batch);
        while posts.recv_many(&mut pending, self.batch).await > 0 {
            let batch: Vec<NewPost> = pending.iter().map(|p| p.post.clone()).collect();
            match self.store.append(&batch, now_millis()).await {
                Ok(stored) => {
                    for (p, message) in pending.drain(..).zip(stored) {
                        let entry = self.publish(message);
                        let _ = p.reply.send(Ok(entry));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, posts = pending.len(), "store refused posts");
                    for p in pending.drain(..) {
                        let _ = p.reply.send(Err(PostError::Store(e.to_string())));
                    }
                }
            }
        }
    }

    fn publish(&self, message: Message) -> Arc<Entry> {
        let entry = Entry::new(message);
        let snapshot = Arc::new(self.snapshot.borrow().with(entry.clone(), self.history));
        self.snapshot.send_replace(snapshot.clone());
        // No receivers is fine: nobody is subscribed right now.
        let _ = self.events.send(Arc::new(Event {
            entry: entry.clone(),
            snapshot,
        }));
        entry
    }
}

/// Milliseconds since the Unix epoch, like JavaScript's `Date.now()`.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    async fn hub(history: usize, queue: usize) -> Hub {
        let config = HubConfig {
            history,
            queue,
            ..HubConfig::default()
        };
        Hub::open(Arc::new(MemoryStore::new(10_000)), config)
            .await
            .unwrap()
    }

    fn post(i: usize) -> NewPost {
        NewPost {
            user: "u".into(),
            text: format!("m{i}"),
        }
    }

    #[tokio::test]
    async fn snapshot_is_capped_newest_first_and_encoded_once() {
        let hub = hub(3, 16).await;
        for i in 0..5 {
            hub.post(post(i)).await.unwrap();
        }
        let snap = hub.snapshot();
        let ids: Vec<u64> = snap.entries.iter().map(|e| e.message.id).collect();
        assert_eq!(ids, [5, 4, 3]);
        let parsed: serde_json::Value = serde_json::from_slice(&snap.json).unwrap();
        assert_eq!(parsed["msg"].as_array().unwrap().len(), 3);
        assert_eq!(parsed["msg"][0]["text"], "m4");
        assert_eq!(parsed["last"], 5);
    }

    #[tokio::test]
    async fn subscribers_get_every_message_in_order() {
        let hub = hub(50, 64).await;
        let mut sub = hub.subscribe();
        for i in 0..20 {
            hub.post(post(i)).await.unwrap();
        }
        for want in 1..=20u64 {
            match sub.recv().await.unwrap() {
                Delivery::Event(e) => assert_eq!(e.entry.message.id, want),
                Delivery::Lagged { .. } => panic!("should not lag"),
            }
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_never_reads_stalls_nobody_and_stays_bounded() {
        let hub = hub(50, 8).await;
        let mut never_reads = hub.subscribe();
        let mut reader = hub.subscribe();
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < 1000 {
                match reader.recv().await {
                    Some(Delivery::Event(e)) => got.push(e.entry.message.id),
                    Some(Delivery::Lagged { .. }) => {
                        // A reader that keeps up may still lag on a busy machine: it catches
                        // up from the store and loses nothing.
                        let since = reader.catch_up(1000).await.unwrap();
                        got.extend(since.entries.iter().map(|e| e.message.id));
                    }
                    None => break,
                }
            }
            got
        });
        for i in 0..1000 {
            hub.post(post(i)).await.unwrap();
        }
        let got = reading.await.unwrap();
        assert_eq!(
            got,
            (1..=1000).collect::<Vec<u64>>(),
            "the reader lost nothing"
        );
        // What the hub retains for the idle subscriber is capped by the ring, not by the
        // number of posts.
        assert!(hub.inner.events.len() <= 8);
        match never_reads.recv().await.unwrap() {
            Delivery::Lagged { missed } => assert!(missed >= 992),
            other => panic!("expected Lagged, got {other:?}"),
        }
        // After lagging it can catch up on everything it missed from the store.
        let mut caught = Vec::new();
        loop {
            let since = never_reads.catch_up(300).await.unwrap();
            caught.extend(since.entries.iter().map(|e| e.message.id));
            if !since.more {
                break;
            }
        }
        assert_eq!(caught, (1..=1000).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn since_serves_cache_and_store_and_pages() {
        let hub = hub(5, 16).await;
        for i in 0..12 {
            hub.post(post(i)).await.unwrap();
        }
        // Within the cache.
        let s = hub.since(9, 10).await.unwrap();
        assert_eq!(ids(&s), [10, 11, 12]);
        assert!(!s.more && !s.truncated);
        // Older than the cache: from the store, paged.
        let s = hub.since(0, 4).await.unwrap();
        assert_eq!(ids(&s), [1, 2, 3, 4]);
        assert!(s.more);
        assert!(hub.since(12, 10).await.unwrap().entries.is_empty());
    }

    #[tokio::test]
    async fn concurrent_posts_get_distinct_increasing_ids() {
        let hub = hub(50, 1024).await;
        let mut tasks = Vec::new();
        for t in 0..20 {
            let hub = hub.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..25 {
                    ids.push(hub.post(post(t * 100 + i)).await.unwrap().message.id);
                }
                ids
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            let ids = t.await.unwrap();
            assert!(ids.windows(2).all(|w| w[0] < w[1]));
            all.extend(ids);
        }
        all.sort();
        assert_eq!(all, (1..=500).collect::<Vec<u64>>());
    }

    fn ids(s: &Since) -> Vec<u64> {
        s.entries.iter().map(|e| e.message.id).collect()
    }
    #[tokio::test]
    async fn try_recv_takes_what_is_waiting_without_waiting() {
        let hub = hub(50, 4).await;
        let mut sub = hub.subscribe();
        assert!(sub.try_recv().is_none(), "nothing posted yet");
        for i in 0..3 {
            hub.post(post(i)).await.unwrap();
        }
        let mut got = Vec::new();
        while let Some(d) = sub.try_recv() {
            match d {
                Delivery::Event(e) => got.push(e.entry.message.id),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, [1, 2, 3]);
        // More than the ring holds: the lag is reported, as by recv.
        for i in 0..10 {
            hub.post(post(i)).await.unwrap();
        }
        assert!(matches!(sub.try_recv(), Some(Delivery::Lagged { .. })));
    }
}

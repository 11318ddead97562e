//! The hub: many channels, one writer, one door.
//!
//! * **Writer.** Every post goes through a single writer task, which hands batches of posts
//!   (of any channels) to the [`Store`] (so a durable store commits many posts with one
//!   fsync), then publishes each stored message through the [`Broker`]. Each message is
//!   serialized to JSON exactly once; every transport shares those bytes.
//! * **Broker.** Channels are fed only by what the broker delivers ([`Deliver`]): the
//!   writer never touches a channel's cache or subscribers itself.
//! * **Door.** Transports enter through [`Hub::subscribe`] (a channel and an optional
//!   [`Position`] in, how the subscription starts and the live stream out; the
//!   fresh / reset / resume decision is [`decide`], here and nowhere else) and
//!   [`Hub::submit`] / [`Hub::post`] (a channel and a post in).
//!
//! Channels (rooms) come into being with their first post or join ([`Hub::open_channel`],
//! [`Hub::subscribe`]), never through a read: reading an unknown channel answers an empty
//! history. At most [`HubConfig::max_rooms`] exist at once; a room nobody is in and whose
//! messages have all gone (retention) stops counting, and a room nothing on this node uses is
//! let go from memory (its messages stay in the store) by a sweep every [`SWEEP_EVERY`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot, watch};

use crate::broker::{Broker, Deliver, LocalBroker, Publication};
use crate::channel::{Channel, Subscription};
use crate::entry::{Entry, Since, Snapshot};
use crate::message::{Limits, NewPost, PostError, Poster};
use crate::observer::HubObserver;
use crate::presence::{self, Attendee, Member, PresenceGuard, Signal, SignalKind, PRESENCE_CHECK};

/// How often this node renews its shares of presence (a third of their life).
const PRESENCE_RENEW: Duration = Duration::from_secs(crate::broker::PRESENCE_TTL.as_secs() / 3);
use crate::room::{check_room_name, RoomError};
use crate::store::{Append, Appended, ChannelInfo, Store, StoreError};

/// How often rooms nothing uses are let go from memory and the room count is re-read.
pub const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// The channel of the course's one chat: `/poll`, `/msgs`, `/events`, `/ws`, Socket.IO's
/// `msg:get`.
pub const GENERAL: &str = "general";

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
    /// How long a post's idempotency key is remembered.
    pub dedupe_window: Duration,
    /// The most messages a streaming resume sends (`--max-resume`; 0: no cap). A position
    /// further back resumes at the newest this many, told `truncated`, so one reconnecting
    /// client cannot make the server read and send the whole store.
    pub max_resume: u64,
    /// The most rooms that may exist at once (`--max-rooms`; 0: no cap).
    pub max_rooms: usize,
    /// How long a polling client that named itself stays present after a poll
    /// (`--presence-window`).
    pub presence_window: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history: 50,
            limits: Limits::default(),
            queue: 256,
            batch: 256,
            dedupe_window: Duration::from_secs(120),
            max_resume: 10_000,
            max_rooms: 10_000,
            presence_window: Duration::from_secs(30),
        }
    }
}

/// Where a client says it is in a channel: after message `after` of `epoch` (when it knows
/// the epoch; a bare id is judged by the id alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub after: u64,
    pub epoch: Option<String>,
}

impl Position {
    pub fn new(after: u64, epoch: Option<String>) -> Position {
        Position { after, epoch }
    }
}

/// How a subscription (or a long poll) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// No position: the history snapshot.
    Fresh,
    /// The position means nothing here (another epoch, or an id this channel never handed
    /// out): the client must start over from the history snapshot.
    Reset,
    /// Continue after this id: page through what was missed with
    /// [`Subscription::catch_up`] (its first page says if the store no longer has all of it:
    /// `truncated`), then the live messages.
    Resume { after: u64 },
}

/// The one fresh / reset / resume decision, for every transport.
pub fn decide(snapshot: &Snapshot, from: Option<&Position>) -> Start {
    match from {
        None => Start::Fresh,
        Some(p) if p.epoch.as_deref().is_some_and(|e| e != &*snapshot.epoch) => Start::Reset,
        Some(p) if p.after > snapshot.last_id => Start::Reset,
        Some(p) => Start::Resume { after: p.after },
    }
}

/// A room as `GET /rooms` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomSummary {
    pub name: String,
    /// The newest id handed out in it.
    pub last: u64,
    pub epoch: String,
    /// How many are in it now (see [`Channel::online`]).
    pub online: usize,
}

/// A subscription opened through the door, and how it starts.
pub struct Opened {
    pub start: Start,
    pub subscription: Subscription,
}

struct Pending {
    channel: Arc<str>,
    post: NewPost,
    reply: oneshot::Sender<Result<Arc<Entry>, PostError>>,
}

struct Inner {
    config: HubConfig,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    channels: Mutex<HashMap<Arc<str>, Arc<Channel>>>,
    /// Held while a channel is loaded and while the writer stores and publishes a batch, so
    /// a channel is never loaded from the store between a commit and its delivery.
    loading: tokio::sync::Mutex<()>,
    posts: mpsc::Sender<Pending>,
    /// Told about commits and lagging subscribers (see [`Hub::set_observer`]).
    observer: OnceLock<Arc<dyn HubObserver>>,
    /// The rooms that count against [`HubConfig::max_rooms`]: those held here and those
    /// whose messages the store still has.
    counted: Mutex<HashSet<Arc<str>>>,
    /// Ticks whenever a room comes into being here (a long poll on an unknown room waits
    /// for it).
    created: watch::Sender<u64>,
}

/// The chat: validated posts in, each channel's ordered stream of messages out to every
/// transport. Cheap to clone; all clones are the same chat.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// The hub's receiving end of the broker (weak: the hub owns the broker).
struct HubDeliver(Weak<Inner>);

impl Deliver for HubDeliver {
    fn restart(
        &self,
        channel: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let held = self
            .0
            .upgrade()
            .and_then(|inner| Some((inner.loaded(channel)?, inner)));
        Box::pin(async move {
            let Some((channel, inner)) = held else {
                return;
            };
            if let Err(e) = (Hub { inner }).restart(&channel).await {
                tracing::warn!(error = %e, channel = %channel.name(), "could not reload a room under its new epoch");
            }
        })
    }

    fn presence_changed(&self, channel: &str) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        if let Some(channel) = inner.loaded(channel) {
            presence::recheck(&Hub { inner }, &channel);
        }
    }

    fn position(&self, channel: &str) -> Option<(Arc<str>, u64)> {
        let snapshot = self.0.upgrade()?.loaded(channel)?.snapshot();
        Some((snapshot.epoch.clone(), snapshot.last_id))
    }

    fn deliver(&self, publication: Publication) {
        let Some(inner) = self.0.upgrade() else {
            return;
        };
        let Some(channel) = inner.loaded(publication.channel()) else {
            // Not held here: whoever loads it later reads it from the store.
            return;
        };
        match publication {
            Publication::Message { entry, .. } => channel.publish(entry, inner.config.history),
            Publication::Signal(signal) => channel.signal(signal),
            Publication::Deleted { id, .. } => {
                // Rebuilt from the store, off the broker's task; then the subscribers are told.
                let hub = Hub { inner };
                tokio::spawn(async move {
                    match hub.reload(&channel).await {
                        Ok(snapshot) => channel.deleted(id, snapshot),
                        Err(e) => {
                            tracing::warn!(error = %e, channel = %channel.name(), "could not reload the history after a deletion")
                        }
                    }
                });
            }
        }
    }
}

impl Inner {
    fn loaded(&self, name: &str) -> Option<Arc<Channel>> {
        self.channels().get(name).cloned()
    }

    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Channel>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counted(&self) -> std::sync::MutexGuard<'_, HashSet<Arc<str>>> {
        self.counted.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Once a second: polling members whose presence window passed leave their rooms; every
/// [`SWEEP_EVERY`], rooms nothing uses are let go ([`Hub::sweep`]). Ends with the hub.
async fn ticker(hub: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweep_every = SWEEP_EVERY.as_secs().max(1);
    let mut ticks: u64 = 0;
    loop {
        tick.tick().await;
        ticks += 1;
        let Some(inner) = hub.upgrade() else {
            return;
        };
        let hub = Hub { inner };
        let polled: Vec<Arc<Channel>> = hub
            .inner
            .channels()
            .values()
            .filter(|c| c.presence().has_pollers())
            .cloned()
            .collect();
        for channel in &polled {
            presence::expire(&hub, channel);
        }
        if ticks.is_multiple_of(PRESENCE_RENEW.as_secs()) {
            // This node's shares of presence, renewed before they run out.
            let present: Vec<Arc<Channel>> = hub
                .inner
                .channels()
                .values()
                .filter(|c| !c.presence().is_empty())
                .cloned()
                .collect();
            for channel in &present {
                hub.share_presence(channel, &channel.members(), false).await;
            }
        }
        if ticks.is_multiple_of(PRESENCE_CHECK.as_secs()) {
            // Other nodes' members this node knows of: one whose node died leaves when its
            // share runs out. Every so often, every room with listeners (a node's word that
            // its members changed may have been lost with a connection).
            let everything = ticks.is_multiple_of(PRESENCE_CHECK.as_secs() * 6);
            let check: Vec<Arc<Channel>> = hub
                .inner
                .channels()
                .values()
                .filter(|c| c.presence().knows_others() || (everything && c.has_listeners()))
                .cloned()
                .collect();
            for channel in &check {
                presence::recheck(&hub, channel);
            }
        }
        if ticks.is_multiple_of(sweep_every) {
            if let Err(e) = hub.sweep().await {
                tracing::warn!(error = %e, "could not re-read the rooms");
            }
        }
    }
}

impl Hub {
    /// Opens the chat on `store` with the in-process broker; see [`Hub::open_with`].
    pub async fn open(store: Arc<dyn Store>, config: HubConfig) -> Result<Hub, StoreError> {
        Hub::open_with(store, Arc::new(LocalBroker::new()), config).await
    }

    /// Opens the chat on `store` and `broker`, loads the channel [`GENERAL`] (creating it if
    /// needed), and starts the writer task. Must be called inside a tokio runtime.
    pub async fn open_with(
        store: Arc<dyn Store>,
        broker: Arc<dyn Broker>,
        config: HubConfig,
    ) -> Result<Hub, StoreError> {
        let config = HubConfig {
            history: config.history.max(1),
            queue: config.queue.max(1),
            batch: config.batch.max(1),
            ..config
        };
        let (posts, posts_rx) = mpsc::channel(config.batch * 4);
        let hub = Hub {
            inner: Arc::new(Inner {
                config,
                store,
                broker,
                channels: Mutex::new(HashMap::new()),
                loading: tokio::sync::Mutex::new(()),
                posts,
                observer: OnceLock::new(),
                counted: Mutex::new(HashSet::new()),
                created: watch::Sender::new(0),
            }),
        };
        hub.inner
            .broker
            .start(Arc::new(HubDeliver(Arc::downgrade(&hub.inner))));
        hub.recount().await?;
        {
            let _loading = hub.inner.loading.lock().await;
            hub.load(GENERAL, true).await?;
        }
        let writer = Writer {
            hub: Arc::downgrade(&hub.inner),
        };
        tokio::spawn(writer.run(posts_rx));
        tokio::spawn(ticker(Arc::downgrade(&hub.inner)));
        Ok(hub)
    }

    /// Re-reads which rooms count: the store's rooms with messages and the ones held here.
    async fn recount(&self) -> Result<(), StoreError> {
        let stored = self.inner.store.channels().await?;
        let mut counted: HashSet<Arc<str>> = stored
            .into_iter()
            .filter(|c| c.has_messages)
            .map(|c| Arc::from(c.name))
            .collect();
        counted.extend(self.inner.channels().keys().cloned());
        counted.insert(Arc::from(GENERAL));
        *self.inner.counted() = counted;
        Ok(())
    }

    /// Lets go of the rooms nothing on this node uses (no subscriber, nobody present, no
    /// handle held: their messages stay in the store, and a later read loads them again),
    /// then re-reads which rooms count.
    pub async fn sweep(&self) -> Result<(), StoreError> {
        let _loading = self.inner.loading.lock().await;
        let mut gone = Vec::new();
        self.inner.channels().retain(|name, channel| {
            let keep = &**name == GENERAL || !channel.is_unused(1);
            if !keep {
                gone.push(name.clone());
            }
            keep
        });
        for name in gone {
            self.inner.broker.unsubscribe(&name);
        }
        self.recount().await
    }

    /// The configuration in force (after clamping nonsense values).
    pub fn config(&self) -> &HubConfig {
        &self.inner.config
    }

    /// What the store is, for the start-up log.
    pub fn store_description(&self) -> String {
        self.inner.store.describe()
    }

    /// The room, created if it does not exist yet (a join, or a first post): refused for a
    /// bad name, or when it would be one room more than [`HubConfig::max_rooms`].
    pub async fn open_channel(&self, name: &str) -> Result<Arc<Channel>, RoomError> {
        if let Some(channel) = self.inner.loaded(name) {
            return Ok(channel);
        }
        check_room_name(name)?;
        let max = self.inner.config.max_rooms;
        let counts = |inner: &Inner| {
            let counted = inner.counted();
            counted.contains(name) || max == 0 || counted.len() < max
        };
        if !counts(&self.inner) {
            // Rooms may have emptied since the last sweep.
            self.sweep().await?;
            if !counts(&self.inner) {
                return Err(RoomError::TooMany { max });
            }
        }
        let _loading = self.inner.loading.lock().await;
        let channel = self.load(name, true).await?.expect("created");
        Ok(channel)
    }

    /// The room if it exists (held here, or in the store); `None` otherwise. Never creates
    /// one; a bad name is refused.
    pub async fn channel(&self, name: &str) -> Result<Option<Arc<Channel>>, RoomError> {
        if let Some(channel) = self.inner.loaded(name) {
            return Ok(Some(channel));
        }
        check_room_name(name)?;
        let _loading = self.inner.loading.lock().await;
        Ok(self.load(name, false).await?)
    }

    /// Ticks whenever a room comes into being on this node: a long poll on a room that does
    /// not exist yet waits on it.
    pub fn created(&self) -> watch::Receiver<u64> {
        self.inner.created.subscribe()
    }

    /// Every room, by name, with its position and how many are in it. Lists the rooms that
    /// count against [`HubConfig::max_rooms`] (see the module docs).
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, StoreError> {
        let stored = self.inner.store.channels().await?;
        let held = self.inner.channels().clone();
        let mut rooms: Vec<RoomSummary> = stored
            .into_iter()
            .filter_map(|c| match held.get(c.name.as_str()) {
                Some(channel) => {
                    let snapshot = channel.snapshot();
                    Some(RoomSummary {
                        last: snapshot.last_id,
                        epoch: snapshot.epoch.to_string(),
                        online: channel.online(),
                        name: c.name,
                    })
                }
                None if c.has_messages => Some(RoomSummary {
                    name: c.name,
                    last: c.info.last_id,
                    epoch: c.info.epoch,
                    online: 0,
                }),
                None => None,
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rooms)
    }

    /// Enters a streaming client into `channel`'s presence, named `user` (or unnamed): it is
    /// in the room until the guard is dropped. See [`crate::presence`].
    pub fn present(&self, channel: &Arc<Channel>, user: Option<&str>) -> PresenceGuard {
        presence::enter(self, channel, user.map(Attendee::named))
    }

    /// [`Hub::present`] for a client that is a user (`--auth token`): counted once per user
    /// id, shown by name.
    pub fn present_as(&self, channel: &Arc<Channel>, user: Option<Attendee>) -> PresenceGuard {
        presence::enter(self, channel, user)
    }

    /// A polling client named `user` read `channel`: it is present for
    /// [`HubConfig::presence_window`] from now.
    pub fn polled(&self, channel: &Arc<Channel>, user: &str) {
        self.polled_as(channel, &Attendee::named(user));
    }

    /// [`Hub::polled`] for a user (`--auth token`).
    pub fn polled_as(&self, channel: &Arc<Channel>, user: &Attendee) {
        presence::polled(self, channel, user, self.inner.config.presence_window);
    }

    /// `user` is typing in `room`: told to the room's listening clients, at most once a
    /// second per user (false when this one was dropped for it, or the room does not exist).
    pub async fn typing(&self, room: &str, user: &str) -> Result<bool, RoomError> {
        let Some(channel) = self.channel(room).await? else {
            return Ok(false);
        };
        let user: Arc<str> = Arc::from(user);
        if !presence::may_type(&channel, &user) {
            return Ok(false);
        }
        self.signal(Signal::new(
            channel.name().clone(),
            SignalKind::Typing { user },
        ))
        .await;
        Ok(true)
    }

    /// Hands a signal to the broker, which delivers it to every node's listeners.
    pub(crate) async fn signal(&self, signal: Signal) {
        if let Err(e) = self
            .inner
            .broker
            .publish(Publication::Signal(Arc::new(signal)))
            .await
        {
            tracing::debug!(error = %e, "a presence or typing signal was not delivered");
        }
    }

    /// The channel [`GENERAL`], which is always held.
    pub fn general(&self) -> Arc<Channel> {
        self.inner
            .loaded(GENERAL)
            .expect("general is loaded at start")
    }

    /// Loads a channel into this node (`loading` held by the caller).
    async fn load(&self, name: &str, create: bool) -> Result<Option<Arc<Channel>>, StoreError> {
        if let Some(channel) = self.inner.loaded(name) {
            return Ok(Some(channel));
        }
        let store = &self.inner.store;
        let info = if create {
            store.open_channel(name).await?
        } else {
            match store.find_channel(name).await? {
                Some(info) => info,
                None => return Ok(None),
            }
        };
        let snapshot = self.read_snapshot(name, &info).await?;
        let name: Arc<str> = Arc::from(name);
        let channel = Arc::new(Channel::new(
            name.clone(),
            snapshot,
            self.inner.config.queue,
        ));
        self.inner.channels().insert(name.clone(), channel.clone());
        self.inner.broker.subscribe(&name);
        // Who is in it elsewhere already: this node's clients are not told they joined.
        if let Ok(elsewhere) = self.presence_elsewhere(&channel).await {
            channel.presence().knew(&elsewhere);
        }
        self.inner.counted().insert(name);
        if create {
            // A post or a join: the room may be new (a read only loads an existing one).
            self.inner.created.send_modify(|n| *n += 1);
        }
        Ok(Some(channel))
    }

    async fn read_snapshot(&self, name: &str, info: &ChannelInfo) -> Result<Snapshot, StoreError> {
        let recent = self
            .inner
            .store
            .recent(name, self.inner.config.history)
            .await?;
        Ok(Snapshot::new(
            recent.into_iter().map(Entry::new).collect(),
            info.last_id,
            Arc::from(info.epoch.as_str()),
        ))
    }

    /// Re-reads a channel's history from the store (after a deletion).
    async fn reload(&self, channel: &Channel) -> Result<Arc<Snapshot>, StoreError> {
        let _loading = self.inner.loading.lock().await;
        // A message published while the store was read would be lost by the older snapshot:
        // read again then (a message a try, so this ends).
        loop {
            let info = self.inner.store.open_channel(channel.name()).await?;
            let snapshot = self.read_snapshot(channel.name(), &info).await?;
            if let Some(snapshot) = channel.replace_snapshot(snapshot) {
                return Ok(snapshot);
            }
        }
    }

    /// Shares this node's `members` of `channel` with the other nodes (see
    /// [`Broker::share_presence`]); `changed`: they changed, so the others look again.
    pub(crate) async fn share_presence(
        &self,
        channel: &Channel,
        members: &[Member],
        changed: bool,
    ) {
        self.inner
            .broker
            .share_presence(channel.name(), members, changed)
            .await;
    }

    /// The members of `channel` on the other nodes (none with one process).
    pub(crate) async fn presence_elsewhere(
        &self,
        channel: &Channel,
    ) -> Result<Vec<Member>, crate::BrokerError> {
        self.inner.broker.presence_elsewhere(channel.name()).await
    }

    /// Everyone in `channel` now, on every node of a cluster: named members (each once,
    /// earliest first). See [`crate::presence`]. Without the other nodes (Redis is away):
    /// this node's.
    pub async fn members(&self, channel: &Channel) -> Vec<Member> {
        let elsewhere = self.presence_elsewhere(channel).await.unwrap_or_default();
        presence::merge(channel.members(), elsewhere)
    }

    /// Before deciding where a client at `from` starts: if it has seen more of `channel`
    /// than this node holds (it was on a node further ahead in a cluster), this node first
    /// takes in what it missed, so the client resumes instead of being told to start over.
    pub async fn settle(&self, channel: &Channel, from: &Position) {
        let snapshot = channel.snapshot();
        let same_epoch = from.epoch.as_deref().is_none_or(|e| e == &*snapshot.epoch);
        if same_epoch && from.after > snapshot.last_id {
            self.inner.broker.sync(channel.name()).await;
        }
    }

    /// Loads a channel again after its history began under a new epoch (a shared store lost
    /// it): its snapshot is the store's, and its subscribers are told to start over with it
    /// ([`crate::Delivery::Reset`], with the first message of the new epoch they get).
    ///
    /// It does not take `loading`: the writer holds it while the broker delivers, and the
    /// broker awaits this before delivering more of the channel.
    async fn restart(&self, channel: &Channel) -> Result<(), StoreError> {
        let info = self.inner.store.open_channel(channel.name()).await?;
        if *channel.snapshot().epoch == *info.epoch {
            return Ok(());
        }
        let snapshot = self.read_snapshot(channel.name(), &info).await?;
        tracing::warn!(channel = %channel.name(), epoch = %info.epoch, "the room's history began again under a new epoch");
        channel.restart(snapshot);
        Ok(())
    }

    /// The door for reading: a subscription to `channel` (created if needed, as a join
    /// creates a room) starting from `from`, and how it starts ([`decide`]). A resuming
    /// subscription is already positioned: its [`Subscription::catch_up`] pages bring what
    /// was missed — at most [`HubConfig::max_resume`] messages: further back, the first page
    /// starts at the newest that many and says `truncated`.
    pub async fn subscribe(
        &self,
        channel: &str,
        from: Option<&Position>,
    ) -> Result<Opened, RoomError> {
        let channel = self.open_channel(channel).await?;
        if let Some(from) = from {
            self.settle(&channel, from).await;
        }
        let mut subscription = Subscription::new(channel, self.clone());
        let start = decide(subscription.snapshot(), from);
        if let Start::Resume { after } = start {
            subscription.resume_after(after);
            let cap = self.inner.config.max_resume;
            let last = subscription.snapshot().last_id;
            if cap > 0 && last - after > cap {
                subscription.skip_to(last - cap);
            }
        }
        Ok(Opened {
            start,
            subscription,
        })
    }

    /// Validates raw JSON and posts it to `channel`; see [`Hub::post`].
    pub async fn post_json(&self, channel: &str, body: &[u8]) -> Result<Arc<Entry>, PostError> {
        self.post_json_by(channel, body, None).await
    }

    /// [`Hub::post_json`] by an authenticated poster (see [`NewPost::from_value_by`]).
    pub async fn post_json_by(
        &self,
        channel: &str,
        body: &[u8],
        poster: Option<&Poster>,
    ) -> Result<Arc<Entry>, PostError> {
        let post = NewPost::from_json_by(body, &self.inner.config.limits, poster)?;
        self.post(channel, post).await
    }

    /// The door for writing: stores a validated post in `channel` and publishes it. Returns
    /// once the store has it, so an acknowledgement sent after this never refers to a lost
    /// message. A post whose key was used within the dedupe window returns the first post.
    pub async fn post(&self, channel: &str, post: NewPost) -> Result<Arc<Entry>, PostError> {
        self.submit(channel, post).await?.await
    }

    /// Queues a validated post and returns as soon as it is in the writer's queue; the
    /// returned [`Ticket`] resolves once it is stored. Posts submitted one after another are
    /// stored in that order, so a connection can keep reading while its earlier posts commit.
    pub async fn submit(&self, channel: &str, post: NewPost) -> Result<Ticket, PostError> {
        if self.inner.loaded(channel).is_none() {
            // A first post creates the room: refused here, before it is queued, if it cannot.
            self.open_channel(channel).await.map_err(PostError::Room)?;
        }
        // Waiting for room before making the message keeps this future small: it is part of
        // every WebSocket connection's task.
        let permit = self
            .inner
            .posts
            .reserve()
            .await
            .map_err(|_| PostError::ShuttingDown)?;
        let (reply, rx) = oneshot::channel();
        permit.send(Pending {
            channel: Arc::from(channel),
            post,
            reply,
        });
        Ok(Ticket(rx))
    }

    /// Like [`Hub::submit`], without waiting: if the writer's queue is full the post is handed
    /// back. Exists so a caller that must stay small (a connection's task) can keep the
    /// waiting path out of line.
    pub fn try_submit(&self, channel: &str, post: NewPost) -> Result<Ticket, TrySubmitError> {
        if self.inner.loaded(channel).is_none() {
            // Opening the room takes the waiting path.
            return Err(TrySubmitError::Full(post));
        }
        let permit = match self.inner.posts.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => return Err(TrySubmitError::Full(post)),
            Err(mpsc::error::TrySendError::Closed(())) => return Err(TrySubmitError::ShuttingDown),
        };
        let (reply, rx) = oneshot::channel();
        permit.send(Pending {
            channel: Arc::from(channel),
            post,
            reply,
        });
        Ok(Ticket(rx))
    }

    /// Reads `channel`'s history again from the store, if this node holds it (after messages
    /// were changed in the store behind the hub's back, e.g. a deleted user's renamed). Live
    /// subscribers are not told; what they get next is built on the new history.
    pub async fn refresh(&self, channel: &str) -> Result<(), StoreError> {
        if let Some(held) = self.inner.loaded(channel) {
            self.reload(&held).await?;
        }
        Ok(())
    }

    /// The message `id` of `channel`, unless it does not exist or was deleted (read from the
    /// store: for deciding who may delete it, not for serving).
    pub async fn message(
        &self,
        channel: &str,
        id: u64,
    ) -> Result<Option<crate::Message>, StoreError> {
        if id == 0 {
            return Ok(None);
        }
        let page = self.inner.store.after(channel, id - 1, 1).await?;
        Ok(page.messages.into_iter().next().filter(|m| m.id == id))
    }

    /// Deletes a message: its tombstone keeps the id, history and resume skip it from now on
    /// (delivered through the broker, so every node forgets it). False if there is no such
    /// message.
    pub async fn delete(&self, channel: &str, id: u64) -> Result<bool, StoreError> {
        let deleted = self.inner.store.delete(channel, id).await?;
        if deleted {
            // This node's history without it before the caller is answered (the broker's
            // delivery rebuilds it again, on every node, and tells the subscribers).
            if let Some(held) = self.inner.loaded(channel) {
                self.reload(&held).await?;
            }
            let publication = Publication::Deleted {
                channel: Arc::from(channel),
                id,
            };
            if let Err(e) = self.inner.broker.publish(publication).await {
                tracing::warn!(error = %e, channel, id, "deletion stored but not delivered");
            }
        }
        Ok(deleted)
    }

    /// Tells every other node of the cluster something the server must act on (see
    /// [`Broker::announce`]); logged, not returned, when it cannot.
    pub async fn announce(&self, notice: bytes::Bytes) {
        if let Err(e) = self.inner.broker.announce(notice).await {
            tracing::warn!(error = %e, "could not tell the other nodes");
        }
    }

    /// What the other nodes announce (see [`Broker::notices`]).
    pub fn notices(&self) -> tokio::sync::broadcast::Receiver<bytes::Bytes> {
        self.inner.broker.notices()
    }

    /// Whether the store answers: a cheap read (see [`Store::ping`]), for readiness probes.
    pub async fn ping(&self) -> Result<(), StoreError> {
        if !self.inner.broker.is_connected() {
            return Err(StoreError::new(
                crate::store::StoreErrorKind::Unavailable,
                "not listening to the other nodes (the broker's connection is down)",
            ));
        }
        self.inner.store.ping().await
    }

    /// Sets what is told about the hub's commits and lagging subscribers (the server's
    /// metrics), once, right after opening; false if one was set already.
    pub fn set_observer(&self, observer: Arc<dyn HubObserver>) -> bool {
        self.inner.observer.set(observer).is_ok()
    }

    /// The observer, if one is set.
    pub(crate) fn observer(&self) -> Option<&dyn HubObserver> {
        self.inner.observer.get().map(|o| &**o)
    }

    /// How many channels this node holds (loaded or created), for metrics.
    pub fn channel_count(&self) -> usize {
        self.inner.channels().len()
    }

    /// How many subscriptions are alive (streams, sockets) on every channel, for metrics.
    pub fn subscribers(&self) -> usize {
        self.inner
            .channels()
            .values()
            .map(|c| c.subscribers())
            .sum()
    }

    /// Up to `limit` messages of `channel` with an id greater than `after`, oldest first.
    /// Served from the cached history when it covers the range, otherwise from the store.
    pub async fn since(
        &self,
        channel: &Channel,
        after: u64,
        limit: usize,
    ) -> Result<Since, StoreError> {
        let limit = limit.max(1);
        let snapshot = channel.snapshot();
        if after >= snapshot.last_id {
            return Ok(Since::default());
        }
        let cache_is_everything = snapshot.entries.len() < self.inner.config.history;
        let oldest_cached = snapshot.entries.last().map_or(0, |e| e.message.id);
        let newer: Vec<_> = snapshot
            .entries
            .iter()
            .rev()
            .filter(|e| e.message.id > after)
            .cloned()
            .collect();
        // The cache answers when it reaches back to `after` with no hole right after it (a
        // hole there may be a deletion or retention; only the store can tell).
        let contiguous = newer.first().is_some_and(|e| e.message.id == after + 1);
        if contiguous && (cache_is_everything || oldest_cached <= after + 1) {
            let more = newer.len() > limit;
            let entries = newer.into_iter().take(limit).collect();
            return Ok(Since {
                entries,
                more,
                truncated: false,
            });
        }
        let page = self
            .inner
            .store
            .after(channel.name(), after, limit + 1)
            .await?;
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

/// The single writer: batches posts into the store, then hands them to the broker. It holds
/// the hub weakly: once every [`Hub`] is dropped, its queue closes and the writer ends,
/// releasing the store.
struct Writer {
    hub: Weak<Inner>,
}

impl Writer {
    async fn run(self, mut posts: mpsc::Receiver<Pending>) {
        let batch_size = match self.hub.upgrade() {
            Some(inner) => inner.config.batch,
            None => return,
        };
        let mut pending = Vec::with_capacity(batch_size);
        while posts.recv_many(&mut pending, batch_size).await > 0 {
            let Some(inner) = self.hub.upgrade() else {
                break;
            };
            let hub = Hub { inner };
            self.write(&hub, &mut pending).await;
        }
    }

    /// Stores one batch and publishes what was stored, in order.
    async fn write(&self, hub: &Hub, pending: &mut Vec<Pending>) {
        let inner = &hub.inner;
        {
            let loading = inner.loading.lock().await;
            // Every channel of the batch is held before its messages are delivered.
            let mut failed = None;
            for p in pending.iter() {
                if inner.loaded(&p.channel).is_none() {
                    if let Err(e) = hub.load(&p.channel, true).await {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let batch: Vec<Append> = pending
                .iter()
                .map(|p| Append {
                    channel: p.channel.clone(),
                    post: p.post.clone(),
                })
                .collect();
            let appended = match failed {
                Some(e) => Err(e),
                None => {
                    let started = std::time::Instant::now();
                    let appended = inner
                        .store
                        .append(&batch, now_millis(), inner.config.dedupe_window)
                        .await;
                    if let (Ok(_), Some(observer)) = (&appended, hub.observer()) {
                        observer.committed(batch.len(), started.elapsed());
                    }
                    appended
                }
            };
            match appended {
                Ok(appended) => {
                    for (p, result) in pending.drain(..).zip(appended) {
                        let reply = match result {
                            Appended::Stored(message) => {
                                let entry = Entry::new(message);
                                let publication = Publication::Message {
                                    channel: p.channel.clone(),
                                    entry: entry.clone(),
                                };
                                if let Err(e) = inner.broker.publish(publication).await {
                                    tracing::warn!(error = %e, "message stored but not delivered");
                                }
                                Ok(entry)
                            }
                            Appended::Duplicate(message) => Ok(Entry::new(message)),
                            Appended::Conflict { id } => Err(PostError::KeyConflict {
                                key: p.post.key.clone().unwrap_or_default(),
                                id,
                            }),
                        };
                        let _ = p.reply.send(reply);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, posts = pending.len(), "store refused posts");
                    for p in pending.drain(..) {
                        let _ = p.reply.send(Err(PostError::Store(e.clone())));
                    }
                }
            }
            drop(loading);
        }
    }
}

/// Milliseconds since the Unix epoch, like JavaScript's `Date.now()`.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

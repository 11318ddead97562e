//! One channel (a room) as a node holds it: its epoch, its cached history snapshot (newest
//! `history` messages), and the ring its subscribers read. Fed only by the broker's
//! deliveries (see [`crate::broker`]).
//!
//! # Slow consumers
//! Subscribers read from one shared, bounded ring of the last [`HubConfig::queue`] events.
//! Nobody waits for a slow subscriber and memory does not grow with it: a subscriber that
//! falls more than `queue` events behind is told so ([`Delivery::Lagged`]) and resumes at the
//! oldest event still in the ring. Transports then apply the policy that fits their wire
//! format: snapshot transports (the course's `{"msg":[...]}`) simply send the fresh snapshot,
//! which supersedes everything missed; delta transports call [`Subscription::catch_up`] to
//! re-read the missed messages from the store, so nothing is lost.
//!
//! # Idle channels
//! The ring exists only while the channel has subscribers: an idle channel is its snapshot and
//! a few words.
//!
//! [`HubConfig::queue`]: crate::HubConfig::queue

use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, watch};

use crate::entry::{Entry, Since, Snapshot};
use crate::hub::Hub;
use crate::presence::{Member, PresenceState, Signal};
use crate::store::StoreError;

/// How many signals (presence, typing) a subscriber may fall behind; older ones are dropped
/// for it (they are not worth catching up on).
const SIGNAL_QUEUE: usize = 64;

/// How many deletions a subscriber may fall behind (each carries the whole snapshot, so the
/// newest supersedes the others for snapshot transports).
const DELETION_QUEUE: usize = 16;

/// One new message as published to a channel's subscribers, with the snapshot that includes
/// it.
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
    /// A presence or typing event of the channel (only for subscriptions that asked for
    /// them, [`Subscription::with_signals`]).
    Signal(Arc<Signal>),
    /// A message was deleted: clients that hold it should drop it; `snapshot` is the history
    /// without it (snapshot transports send it at once).
    Deleted(Arc<Deletion>),
    /// The room's history began again under a new epoch (a shared store lost it): this
    /// history replaces whatever the client holds — transports tell it as they tell a
    /// [`crate::Start::Reset`]. The subscription goes on from it ([`Subscription::snapshot`]
    /// is it now).
    Reset(Arc<Snapshot>),
}

/// A deleted message of a channel, with the history rebuilt without it.
#[derive(Debug)]
pub struct Deletion {
    pub id: u64,
    pub snapshot: Arc<Snapshot>,
}

/// A channel held by this node.
pub struct Channel {
    pub(crate) name: Arc<str>,
    snapshot: watch::Sender<Arc<Snapshot>>,
    /// The ring, while anyone subscribes.
    ring: Mutex<Option<broadcast::Sender<Arc<Event>>>>,
    queue: usize,
    /// Presence and typing events, while anyone listens for them.
    signals: Mutex<Option<broadcast::Sender<Arc<Signal>>>>,
    /// Deletions, told to every subscriber (rare: a short queue).
    deletions: broadcast::Sender<Arc<Deletion>>,
    presence: Mutex<PresenceState>,
}

impl Channel {
    pub(crate) fn new(name: Arc<str>, snapshot: Snapshot, queue: usize) -> Channel {
        Channel {
            name,
            snapshot: watch::Sender::new(Arc::new(snapshot)),
            ring: Mutex::new(None),
            queue,
            signals: Mutex::new(None),
            deletions: broadcast::channel(DELETION_QUEUE).0,
            presence: Mutex::new(PresenceState::default()),
        }
    }

    pub(crate) fn presence(&self) -> std::sync::MutexGuard<'_, PresenceState> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many are in the room now: named members (each once) and unnamed clients.
    pub fn online(&self) -> usize {
        self.presence().online(tokio::time::Instant::now())
    }

    /// The named members in the room now, earliest first.
    pub fn members(&self) -> Vec<Member> {
        self.presence().members(tokio::time::Instant::now())
    }

    fn signals(&self) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Arc<Signal>>>> {
        self.signals.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether any subscriber listens for signals (presence and typing).
    pub(crate) fn has_listeners(&self) -> bool {
        self.signals()
            .as_ref()
            .is_some_and(|s| s.receiver_count() > 0)
    }

    /// A delivered signal, to every subscriber listening for signals.
    pub(crate) fn signal(&self, signal: Arc<Signal>) {
        let mut signals = self.signals();
        if let Some(sender) = signals.as_ref() {
            if sender.receiver_count() == 0 {
                *signals = None;
            } else {
                let _ = sender.send(signal);
            }
        }
    }

    /// Whether anything of this node still uses the channel: subscribers, presence, or a
    /// handle held elsewhere (a parked long poll). `holders` is how many handles the caller
    /// itself holds.
    pub(crate) fn is_unused(self: &Arc<Channel>, holders: usize) -> bool {
        Arc::strong_count(self) <= holders && self.subscribers() == 0 && self.presence().is_empty()
    }

    /// The channel's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The current history snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// A receiver that wakes whenever a new snapshot is published; long polls park on it
    /// (it costs a few words while parked, unlike a subscription's place in the ring).
    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.snapshot.subscribe()
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Option<broadcast::Sender<Arc<Event>>>> {
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place in the ring and the snapshot just before it: an event published in between
    /// is in both, and the subscription skips it by id.
    fn join(&self) -> (broadcast::Receiver<Arc<Event>>, Arc<Snapshot>) {
        let rx = self
            .ring()
            .get_or_insert_with(|| broadcast::channel(self.queue).0)
            .subscribe();
        (rx, self.snapshot())
    }

    /// Subscriptions alive on this channel.
    pub fn subscribers(&self) -> usize {
        self.ring().as_ref().map_or(0, |r| r.receiver_count())
    }

    /// A delivered message: the new snapshot, then the event to every subscriber.
    pub(crate) fn publish(&self, entry: Arc<Entry>, history: usize) {
        let current = self.snapshot();
        if entry.message.id <= current.last_id {
            // Already delivered (a broker may repeat itself after a reconnect).
            return;
        }
        let snapshot = Arc::new(current.with(entry.clone(), history));
        self.snapshot.send_replace(snapshot.clone());
        let mut ring = self.ring();
        if let Some(sender) = ring.as_ref() {
            if sender.receiver_count() == 0 {
                *ring = None;
            } else {
                let _ = sender.send(Arc::new(Event { entry, snapshot }));
            }
        }
    }

    /// Replaces the snapshot (after a deletion, reloaded from the store); long polls wake
    /// and find nothing new.
    /// `None` (nothing replaced) when a newer message was published meanwhile: the caller
    /// reads the store again.
    pub(crate) fn replace_snapshot(&self, snapshot: Snapshot) -> Option<Arc<Snapshot>> {
        let snapshot = Arc::new(snapshot);
        let replaced = self.snapshot.send_if_modified(|current| {
            if current.last_id > snapshot.last_id {
                return false;
            }
            *current = snapshot.clone();
            true
        });
        replaced.then_some(snapshot)
    }

    /// Goes on under a new epoch (a shared store lost the room's history, or went back in
    /// time): the snapshot is replaced whatever it holds, and the messages of the new epoch
    /// that this node had not delivered go to the subscribers, whose subscriptions turn the
    /// first of them into a [`Delivery::Reset`] (ids never go back: the store goes on after
    /// the highest any node saw). A client that comes back with the old epoch is told to start
    /// over too (`reset`).
    pub(crate) fn restart(&self, snapshot: Snapshot) {
        let previous = self.snapshot.send_replace(Arc::new(snapshot));
        let snapshot = self.snapshot();
        let ring = self.ring();
        if let Some(sender) = ring.as_ref() {
            for entry in snapshot.entries.iter().rev() {
                if entry.message.id > previous.last_id {
                    let _ = sender.send(Arc::new(Event {
                        entry: entry.clone(),
                        snapshot: snapshot.clone(),
                    }));
                }
            }
        }
    }

    /// Tells every subscriber that message `id` was deleted (the snapshot already without it).
    pub(crate) fn deleted(&self, id: u64, snapshot: Arc<Snapshot>) {
        // No receiver: nobody to tell.
        let _ = self.deletions.send(Arc::new(Deletion { id, snapshot }));
    }
}

/// A place in a channel's stream of events, with the snapshot it started from.
pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    snapshot: Arc<Snapshot>,
    last_seen: u64,
    /// Set by a capped resume ([`crate::HubConfig::max_resume`]): the next catch-up starts
    /// after this id instead of `last_seen`, and says `truncated`.
    skip_to: Option<u64>,
    /// Presence and typing, for subscriptions that asked ([`Subscription::with_signals`]).
    signals: Option<broadcast::Receiver<Arc<Signal>>>,
    deletions: broadcast::Receiver<Arc<Deletion>>,
    channel: Arc<Channel>,
    hub: Hub,
}

impl Subscription {
    pub(crate) fn new(channel: Arc<Channel>, hub: Hub) -> Subscription {
        let (rx, snapshot) = channel.join();
        Subscription {
            rx,
            last_seen: snapshot.last_id,
            skip_to: None,
            signals: None,
            deletions: channel.deletions.subscribe(),
            snapshot,
            channel,
            hub,
        }
    }

    /// Makes [`Subscription::recv`] also deliver the channel's presence and typing events
    /// ([`Delivery::Signal`]), from now on. Snapshot transports (the course's) do not ask.
    pub fn with_signals(&mut self) {
        if self.signals.is_none() {
            let rx = self
                .channel
                .signals()
                .get_or_insert_with(|| broadcast::channel(SIGNAL_QUEUE).0)
                .subscribe();
            self.signals = Some(rx);
        }
    }

    /// The history at the moment of subscribing (or of the last [`Delivery::Reset`]).
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The channel's history now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.channel.snapshot()
    }

    /// The channel this subscription listens to.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }

    /// The hub this subscription listens to (so a holder needs no clone of its own).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// Id of the last message delivered (or of the snapshot's newest).
    pub fn last_seen(&self) -> u64 {
        self.last_seen
    }

    /// Makes the subscription continue after `id` instead: later events at or below it are
    /// skipped. The door ([`Hub::subscribe`]) does this for clients that resume.
    pub(crate) fn resume_after(&mut self, id: u64) {
        self.last_seen = id;
    }

    /// Makes the next [`Subscription::catch_up`] skip to after `id` (a capped resume) and
    /// report the skip as `truncated`. [`Subscription::last_seen`] stays the client's own
    /// position until then, so transports name it in their `truncated` notices.
    pub(crate) fn skip_to(&mut self, id: u64) {
        self.skip_to = Some(id);
    }

    /// What [`Subscription::recv`] would return right now, without waiting: `None` when
    /// nothing is queued (or the hub is gone; `recv` then says so). Lets a busy connection
    /// gather everything already waiting into one write.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        use broadcast::error::TryRecvError;
        loop {
            let delivery = match self.rx.try_recv() {
                Ok(event) => self.deliver(event),
                Err(TryRecvError::Lagged(missed)) => Some(self.lagged(missed)),
                Err(TryRecvError::Empty | TryRecvError::Closed) => {
                    return self.try_deletion().or_else(|| self.try_signal())
                }
            };
            if delivery.is_some() {
                return delivery;
            }
        }
    }

    /// A queued deletion, if any (one lagging behind gets the newest: its snapshot holds
    /// every deletion before it).
    fn try_deletion(&mut self) -> Option<Delivery> {
        use broadcast::error::TryRecvError;
        loop {
            match self.deletions.try_recv() {
                Ok(deletion) => return Some(Delivery::Deleted(deletion)),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            }
        }
    }

    /// A queued signal, if any (a lagging listener just loses the oldest ones).
    fn try_signal(&mut self) -> Option<Delivery> {
        use broadcast::error::TryRecvError;
        let rx = self.signals.as_mut()?;
        loop {
            match rx.try_recv() {
                Ok(signal) => return Some(Delivery::Signal(signal)),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Closed) => {
                    self.signals = None;
                    return None;
                }
            }
        }
    }

    /// The next message, in id order, or `None` once the channel is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Delivery> {
        use broadcast::error::RecvError;
        loop {
            // Messages first, then deletions (a deletion follows the message it deletes),
            // then signals.
            let received = match self.signals.as_mut() {
                None => tokio::select! {
                    biased;
                    event = self.rx.recv() => Ok(event),
                    deletion = self.deletions.recv() => match deletion {
                        Ok(deletion) => return Some(Delivery::Deleted(deletion)),
                        Err(_) => continue,
                    },
                },
                Some(signals) => tokio::select! {
                    biased;
                    event = self.rx.recv() => Ok(event),
                    deletion = self.deletions.recv() => match deletion {
                        Ok(deletion) => return Some(Delivery::Deleted(deletion)),
                        Err(_) => continue,
                    },
                    signal = signals.recv() => Err(signal),
                },
            };
            let delivery = match received {
                Ok(Ok(event)) => self.deliver(event),
                Ok(Err(RecvError::Lagged(missed))) => Some(self.lagged(missed)),
                Ok(Err(RecvError::Closed)) => return None,
                Err(Ok(signal)) => Some(Delivery::Signal(signal)),
                Err(Err(RecvError::Lagged(_))) => None,
                Err(Err(RecvError::Closed)) => {
                    self.signals = None;
                    None
                }
            };
            if delivery.is_some() {
                return delivery;
            }
        }
    }

    /// [`Delivery::Lagged`], told to the hub's observer first.
    fn lagged(&self, missed: u64) -> Delivery {
        if let Some(observer) = self.hub.observer() {
            observer.lagged(missed);
        }
        Delivery::Lagged { missed }
    }

    /// An event of the ring as a delivery, or `None` for one at or below what was already
    /// delivered (or resumed past).
    fn deliver(&mut self, event: Arc<Event>) -> Option<Delivery> {
        if event.snapshot.epoch != self.snapshot.epoch {
            // The first event of a new epoch: its history holds it and everything before.
            self.snapshot = event.snapshot.clone();
            self.last_seen = self.last_seen.max(event.snapshot.last_id);
            return Some(Delivery::Reset(event.snapshot.clone()));
        }
        if event.entry.message.id <= self.last_seen {
            return None;
        }
        self.last_seen = event.entry.message.id;
        Some(Delivery::Event(event))
    }

    /// For delta transports after [`Delivery::Lagged`] (or on resume): the next page of
    /// messages after the last one delivered, read from the cache or the store. Call until
    /// `more` is false; later [`Subscription::recv`] calls skip what was returned here.
    pub async fn catch_up(&mut self, limit: usize) -> Result<Since, StoreError> {
        let skip_to = self.skip_to.filter(|&id| id > self.last_seen);
        let from = skip_to.unwrap_or(self.last_seen);
        let mut since = self.hub.since(&self.channel, from, limit).await?;
        self.skip_to = None;
        self.last_seen = since.entries.last().map_or(from, |e| e.message.id);
        since.truncated |= skip_to.is_some();
        Ok(since)
    }
}

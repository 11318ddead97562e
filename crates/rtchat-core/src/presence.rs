//! Who is in a room and who is typing: the room's *signals*, told to its streaming clients
//! beside its messages but never stored and outside the id order.
//!
//! # Presence
//! A room's members are counted per user ([`Attendee`]: by user id with `--auth token`,
//! where two users may share a display name; by name without): several tabs or transports of
//! one user count once, and a user joins when their first connection enters and leaves when their last one
//! goes. A streaming client is in the room while it holds a [`PresenceGuard`]; a polling
//! client is in it for [`HubConfig::presence_window`] after each poll that names it. Clients
//! that name no one count in [`Channel::online`] but are not listed.
//!
//! Joins and leaves are coalesced: a room tells its clients at most 4 times a second
//! ([`PRESENCE_INTERVAL`]), each time with the lists of who joined and who left since the last
//! time (someone who joined and left in between is in neither), so a mass reconnect of N
//! clients makes a few events per room, not N² deliveries.
//!
//! # Typing
//! [`Hub::typing`] tells the room's clients that a user is typing, at most once per user per
//! room per [`TYPING_INTERVAL`]; clients show it for [`TYPING_SHOWN`] unless repeated. A room
//! carries at most [`TYPING_PER_ROOM`] typing signals per [`TYPING_INTERVAL`] whatever the
//! names, so a client inventing a new name for each signal cannot flood a room's members.
//!
//! # In a cluster
//! Each node shares its own members of each room through the broker
//! ([`crate::Broker::share_presence`], renewed while the node lives, and the other nodes are
//! told it changed), and [`crate::Hub::members`] lists everyone on every node. Presence
//! events are each node's to make for its own clients: it remembers who it last told them
//! were in the room (everyone on every node), and tells them the difference whenever its own
//! members change, another node says its members changed, or (every [`PRESENCE_CHECK`], for
//! rooms with members elsewhere) a node's share may have run out. So a user on two nodes who
//! leaves one has not left, and a node that dies takes its users out — `left` included —
//! within [`crate::broker::PRESENCE_TTL`] and a check. Typing signals travel through the
//! broker like messages ([`Publication::Signal`]).
//!
//! [`HubConfig::presence_window`]: crate::HubConfig::presence_window
//! [`Hub::typing`]: crate::Hub::typing
//! [`Publication::Signal`]: crate::Publication::Signal
//! [`Channel::online`]: crate::Channel::online

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::time::Instant;

use crate::channel::Channel;
use crate::hub::{now_millis, Hub};

/// The shortest time between two presence events of one room.
pub const PRESENCE_INTERVAL: Duration = Duration::from_millis(250);
/// How often a node looks again at the other nodes' members of a room it knows some of (a
/// node that died stops renewing its share; see [`crate::broker::PRESENCE_TTL`]).
pub const PRESENCE_CHECK: Duration = Duration::from_secs(5);
/// The shortest time between two typing signals of one user in one room.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(1);
/// The most typing signals one room carries per [`TYPING_INTERVAL`], all users together.
pub const TYPING_PER_ROOM: u32 = 20;
/// How long a client shows "X is typing" after the last typing signal.
pub const TYPING_SHOWN: Duration = Duration::from_secs(5);

/// What a signal says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalKind {
    /// These users came into the room, and these went, since the last presence event.
    Presence {
        joined: Vec<Arc<str>>,
        left: Vec<Arc<str>>,
    },
    /// This user is typing.
    Typing { user: Arc<str> },
}

/// One presence or typing event of a room, encoded once for every client.
#[derive(Debug)]
pub struct Signal {
    pub room: Arc<str>,
    pub kind: SignalKind,
    /// `{"room":R,"joined":[...],"left":[...]}` or `{"room":R,"user":U}`: SSE's `data:`,
    /// Socket.IO's event payload.
    pub json: Bytes,
    /// The same object with `"type"` first: `{"type":"presence","room":R,...}`, rtchat.v1's
    /// frame.
    pub frame: Bytes,
}

#[derive(Serialize)]
struct PresenceJson<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    room: &'a str,
    joined: &'a [Arc<str>],
    left: &'a [Arc<str>],
}

#[derive(Serialize)]
struct TypingJson<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    room: &'a str,
    user: &'a str,
}

impl Signal {
    /// A signal heard from another node (its [`Signal::json`]), encoded again; `None` when
    /// it is not one.
    pub fn decode(room: Arc<str>, json: &[u8]) -> Option<Signal> {
        #[derive(serde::Deserialize)]
        struct Wire {
            user: Option<Arc<str>>,
            #[serde(default)]
            joined: Vec<Arc<str>>,
            #[serde(default)]
            left: Vec<Arc<str>>,
        }
        let wire: Wire = serde_json::from_slice(json).ok()?;
        let kind = match wire.user {
            Some(user) => SignalKind::Typing { user },
            None => SignalKind::Presence {
                joined: wire.joined,
                left: wire.left,
            },
        };
        Some(Signal::new(room, kind))
    }

    /// A signal of `room`, encoded.
    pub fn new(room: Arc<str>, kind: SignalKind) -> Signal {
        let encode = |typed: bool| -> Bytes {
            let name = typed.then_some(match kind {
                SignalKind::Presence { .. } => "presence",
                SignalKind::Typing { .. } => "typing",
            });
            let json = match &kind {
                SignalKind::Presence { joined, left } => serde_json::to_vec(&PresenceJson {
                    kind: name,
                    room: &room,
                    joined,
                    left,
                }),
                SignalKind::Typing { user } => serde_json::to_vec(&TypingJson {
                    kind: name,
                    room: &room,
                    user,
                }),
            };
            json.expect("signals serialize").into()
        };
        let json = encode(false);
        let frame = encode(true);
        Signal {
            room,
            kind,
            json,
            frame,
        }
    }

    /// `"presence"` or `"typing"`: the event name on SSE and Socket.IO, the frame type on
    /// rtchat.v1.
    pub fn name(&self) -> &'static str {
        match self.kind {
            SignalKind::Presence { .. } => "presence",
            SignalKind::Typing { .. } => "typing",
        }
    }

    /// The typing user, for a typing signal: transports do not echo it to that user.
    pub fn typing_user(&self) -> Option<&str> {
        match &self.kind {
            SignalKind::Typing { user } => Some(user),
            SignalKind::Presence { .. } => None,
        }
    }
}

/// Who a client is present as: the name shown and, with `--auth token`, the user id it counts
/// once under (without one, the name is the key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attendee {
    pub uid: Option<Arc<str>>,
    pub name: Arc<str>,
}

impl Attendee {
    /// A client known by its name only (`--auth off`).
    pub fn named(name: &str) -> Attendee {
        Attendee {
            uid: None,
            name: Arc::from(name),
        }
    }

    /// A user with a token: counted once per user id, shown by name.
    pub fn user(uid: &str, name: &str) -> Attendee {
        Attendee {
            uid: Some(Arc::from(uid)),
            name: Arc::from(name),
        }
    }

    /// What presence counts it under.
    fn key(&self) -> &Arc<str> {
        self.uid.as_ref().unwrap_or(&self.name)
    }
}

/// One member of a room as presence lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Member {
    pub user: Arc<str>,
    /// With `--auth token`: their user id.
    pub uid: Option<Arc<str>>,
    /// When they came in (milliseconds since the Unix epoch).
    pub since: i64,
}

struct Present {
    /// Who, as shown.
    who: Attendee,
    /// Streaming connections of this user in the room.
    connections: usize,
    since: i64,
    /// A polling user is present until then.
    polled_until: Option<Instant>,
}

impl Present {
    fn is_in(&self, now: Instant) -> bool {
        self.connections > 0 || self.polled_until.is_some_and(|t| t > now)
    }
}

/// A room's presence (see the module docs). Held by its [`Channel`]; an empty one allocates
/// nothing.
#[derive(Default)]
pub(crate) struct PresenceState {
    members: HashMap<Arc<str>, Present>,
    /// Streaming connections that named no one.
    anonymous: usize,
    /// Members with a polling window (the ticker looks at rooms that have any).
    pollers: usize,
    /// Who this node's clients were last told are in the room, on every node: key → name.
    told: HashMap<Arc<str>, Arc<str>>,
    /// This node's members changed since they were last shared.
    changed: bool,
    /// Presence may have changed since the clients were last told (here or elsewhere).
    dirty: bool,
    /// A presence task is running (it tells, then waits [`PRESENCE_INTERVAL`] before the next).
    flushing: bool,
    last_flush: Option<Instant>,
    /// When each user last sent a typing signal here.
    typing: HashMap<Arc<str>, Instant>,
    /// The room's typing signals in the current [`TYPING_INTERVAL`]: when it began, how many.
    typing_window: Option<(Instant, u32)>,
}

impl PresenceState {
    /// This node's members changed: share them, and tell.
    fn changed(&mut self) {
        self.changed = true;
    }

    /// The members of the other nodes when this node took the room in: nobody here is told
    /// they joined.
    pub(crate) fn knew(&mut self, elsewhere: &[Member]) {
        for m in elsewhere {
            self.told.insert(key_of(m).clone(), m.user.clone());
        }
    }

    /// Whether this node's clients know of members on other nodes (whose shares may run out).
    pub(crate) fn knows_others(&self) -> bool {
        self.told.keys().any(|k| !self.members.contains_key(k))
    }

    /// Who joined and who left since the clients were last told, given the other nodes'
    /// members; `None` when nothing changed. What is returned is now told.
    fn tell(&mut self, elsewhere: Vec<Member>, now: Instant) -> Option<SignalKind> {
        let everyone = merge(self.members(now), elsewhere);
        let joined: Vec<Arc<str>> = everyone
            .iter()
            .filter(|m| !self.told.contains_key(key_of(m)))
            .map(|m| m.user.clone())
            .collect();
        let mut left: Vec<Arc<str>> = self
            .told
            .iter()
            .filter(|(k, _)| !everyone.iter().any(|m| key_of(m) == *k))
            .map(|(_, name)| name.clone())
            .collect();
        if joined.is_empty() && left.is_empty() {
            return None;
        }
        left.sort();
        self.told = everyone
            .into_iter()
            .map(|m| (key_of(&m).clone(), m.user))
            .collect();
        Some(SignalKind::Presence { joined, left })
    }

    /// Whether anyone is here (a room nobody is in may be let go).
    pub(crate) fn is_empty(&self) -> bool {
        self.anonymous == 0 && self.members.is_empty()
    }

    /// Named members present now, and every connection that named no one.
    pub(crate) fn online(&self, now: Instant) -> usize {
        self.anonymous + self.members.values().filter(|p| p.is_in(now)).count()
    }

    pub(crate) fn members(&self, now: Instant) -> Vec<Member> {
        let mut members: Vec<Member> = self
            .members
            .iter()
            .filter(|(_, p)| p.is_in(now))
            .map(|(_, p)| Member {
                user: p.who.name.clone(),
                uid: p.who.uid.clone(),
                since: p.since,
            })
            .collect();
        members.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.user.cmp(&b.user)));
        members
    }

    /// Polling members whose window has passed leave (unless they are also streaming); true
    /// if anyone did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let mut gone = Vec::new();
        for (key, present) in self.members.iter_mut() {
            if present.polled_until.is_some_and(|t| t <= now) {
                present.polled_until = None;
                self.pollers -= 1;
                if present.connections == 0 {
                    gone.push(key.clone());
                }
            }
        }
        for key in &gone {
            self.members.remove(key);
        }
        if !gone.is_empty() {
            self.changed();
        }
        !gone.is_empty()
    }

    pub(crate) fn has_pollers(&self) -> bool {
        self.pollers > 0
    }
}

/// A streaming client's place in a room's presence: it counts while this lives and leaves
/// when it is dropped (the connection closed or left the room).
pub struct PresenceGuard {
    hub: Hub,
    channel: Arc<Channel>,
    user: Option<Attendee>,
}

impl PresenceGuard {
    /// The name it is present under, if any.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref().map(|u| &u.name)
    }

    /// The room.
    pub fn channel(&self) -> &Arc<Channel> {
        &self.channel
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        let mut state = self.channel.presence();
        let Some(user) = &self.user else {
            state.anonymous = state.anonymous.saturating_sub(1);
            return;
        };
        let now = Instant::now();
        let Some(present) = state.members.get_mut(user.key()) else {
            return;
        };
        present.connections = present.connections.saturating_sub(1);
        if present.is_in(now) {
            return;
        }
        if present.polled_until.is_some() {
            state.pollers -= 1;
        }
        state.members.remove(user.key());
        state.changed();
        schedule(&self.hub, &self.channel, &mut state);
    }
}

/// Enters `user` (or an unnamed client) into `channel`'s presence; see [`Hub::present`].
pub(crate) fn enter(hub: &Hub, channel: &Arc<Channel>, user: Option<Attendee>) -> PresenceGuard {
    {
        let mut state = channel.presence();
        match &user {
            None => state.anonymous += 1,
            Some(who) => {
                let now = Instant::now();
                let present = state.members.entry(who.key().clone()).or_insert(Present {
                    who: who.clone(),
                    connections: 0,
                    since: now_millis(),
                    polled_until: None,
                });
                let was_in = present.is_in(now);
                present.connections += 1;
                if !was_in {
                    state.changed();
                    schedule(hub, channel, &mut state);
                }
            }
        }
    }
    PresenceGuard {
        hub: hub.clone(),
        channel: channel.clone(),
        user,
    }
}

/// A poll that named `user`: present for `window` from now.
pub(crate) fn polled(hub: &Hub, channel: &Arc<Channel>, user: &Attendee, window: Duration) {
    let mut state = channel.presence();
    let now = Instant::now();
    let present = state.members.entry(user.key().clone()).or_insert(Present {
        who: user.clone(),
        connections: 0,
        since: now_millis(),
        polled_until: None,
    });
    let was_in = present.is_in(now);
    let was_polling = present.polled_until.replace(now + window).is_some();
    if !was_polling {
        state.pollers += 1;
    }
    if !was_in {
        state.changed();
        schedule(hub, channel, &mut state);
    }
}

/// Polling members of `channel` whose window passed leave (the hub's ticker calls this).
pub(crate) fn expire(hub: &Hub, channel: &Arc<Channel>) {
    let mut state = channel.presence();
    if state.expire(Instant::now()) {
        schedule(hub, channel, &mut state);
    }
}

/// Whether `user` may send a typing signal in `channel` now (at most one per
/// [`TYPING_INTERVAL`], and at most [`TYPING_PER_ROOM`] in the room in that time); records it
/// if so.
pub(crate) fn may_type(channel: &Channel, user: &Arc<str>) -> bool {
    let mut state = channel.presence();
    let now = Instant::now();
    if let Some(last) = state.typing.get(user) {
        if now.duration_since(*last) < TYPING_INTERVAL {
            return false;
        }
    }
    let window = match state.typing_window {
        Some((start, n)) if now.duration_since(start) < TYPING_INTERVAL => (start, n),
        _ => (now, 0),
    };
    if window.1 >= TYPING_PER_ROOM {
        return false;
    }
    state.typing_window = Some((window.0, window.1 + 1));
    if state.typing.len() >= 64 {
        state
            .typing
            .retain(|_, t| now.duration_since(*t) < TYPING_INTERVAL);
    }
    state.typing.insert(user.clone(), now);
    true
}

/// A node's members of `channel` may have changed (it said so, or its share may have run out):
/// look again and tell this node's clients.
pub(crate) fn recheck(hub: &Hub, channel: &Arc<Channel>) {
    schedule(hub, channel, &mut channel.presence());
}

/// Makes sure a presence event goes out: at once if the last one was long enough ago,
/// otherwise [`PRESENCE_INTERVAL`] after it, carrying every change until then.
fn schedule(hub: &Hub, channel: &Arc<Channel>, state: &mut PresenceState) {
    state.dirty = true;
    if state.flushing {
        return;
    }
    // Outside a runtime (a guard dropped while the server shuts down) nobody is listening.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    state.flushing = true;
    let at = state
        .last_flush
        .map_or_else(Instant::now, |t| t + PRESENCE_INTERVAL);
    runtime.spawn(flush(hub.clone(), channel.clone(), at));
}

/// The presence task of a room: from `at`, while anything changed, shares this node's members
/// (if they changed), reads the other nodes' and tells this node's clients the difference;
/// then waits [`PRESENCE_INTERVAL`] before the next time.
async fn flush(hub: Hub, channel: Arc<Channel>, mut at: Instant) {
    loop {
        tokio::time::sleep_until(at).await;
        let (changed, members) = {
            let mut state = channel.presence();
            if !state.dirty {
                state.flushing = false;
                return;
            }
            state.dirty = false;
            state.last_flush = Some(Instant::now());
            let changed = std::mem::take(&mut state.changed);
            (changed, state.members(Instant::now()))
        };
        if changed {
            hub.share_presence(&channel, &members, true).await;
        }
        match hub.presence_elsewhere(&channel).await {
            Ok(elsewhere) => {
                let told = channel.presence().tell(elsewhere, Instant::now());
                if let Some(kind) = told {
                    channel.signal(Arc::new(Signal::new(channel.name().clone(), kind)));
                }
            }
            // Told later: when Redis is back, at the next check.
            Err(e) => {
                tracing::debug!(error = %e, channel = %channel.name(), "could not read the other nodes' presence")
            }
        }
        at = Instant::now() + PRESENCE_INTERVAL;
    }
}

/// Everyone in a room: this node's `local` members and the other nodes' (`elsewhere`), each
/// user once (the earliest `since`), earliest first.
pub(crate) fn merge(mut local: Vec<Member>, elsewhere: Vec<Member>) -> Vec<Member> {
    for m in elsewhere {
        match local.iter_mut().find(|x| key_of(x) == key_of(&m)) {
            Some(x) => x.since = x.since.min(m.since),
            None => local.push(m),
        }
    }
    local.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.user.cmp(&b.user)));
    local
}

/// What presence counts a member under (as [`Attendee::key`]).
fn key_of(m: &Member) -> &Arc<str> {
    m.uid.as_ref().unwrap_or(&m.user)
}

//! A room's broadcaster: the one task that holds the room's hub subscription on this node and
//! turns each new message into one `msg:new` broadcast (and, for `general`, one `msg:get`),
//! each presence or typing signal into one `presence` / `typing` broadcast, and lets sockets
//! into the room between two messages, after their history (or the last page of their
//! resume), so that each socket gets every message of the room exactly once, in order.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use rtchat_core::{Delivery, Hub, Signal, Snapshot, Subscription};
use rtchat_protocol::shapes::MessageDeleted;
use rtchat_protocol::socketio as sio;
use rtchat_protocol::ErrorBody;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::{BroadcastError, SocketError, SocketIo};
use tokio::sync::oneshot;

use super::member::{user_room, Member};
use super::rooms::{Handle, Room, Target};
use super::wire::{self, emit_raw, raw};
use super::ROOM_GET;
use crate::drain::Drain;
use crate::metrics::{Metrics, Via};
use crate::state::AppState;

/// A socket waiting for a room's broadcaster to let it in.
pub(super) struct Join {
    pub socket: SocketRef,
    /// The socket's rooms, to check it is still in this one once let in.
    pub member: Member,
    pub start: JoinStart,
    /// What it is told first (a fresh start or a reset): the course's `msg:get`, or the
    /// `room:join` acknowledgement and `room:history`.
    pub greeting: Greeting,
    /// Told when it joined (or, resuming, that it is still too far behind).
    pub reply: Option<oneshot::Sender<Handover>>,
}

/// What the broadcaster sends a socket before letting it into the room.
#[derive(Debug, Clone, Copy)]
pub(super) enum JoinStart {
    /// The history.
    Fresh,
    /// The history with `"reset":true`.
    Reset,
    /// The socket's own task sent what it missed up to `after`: the last `msg:since` page,
    /// from `after` to the last message broadcast.
    Resume { after: u64 },
}

/// How a socket is greeted on a fresh start or a reset.
pub(super) enum Greeting {
    /// At connect, in `general`: `msg:get`.
    Connect,
    /// A `room:join`: its acknowledgement (when asked for), then `room:history`.
    Room { ack: Option<AckSender> },
    /// Already greeted (a resume).
    Done,
}

/// The broadcaster's answer to a [`Join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Handover {
    /// In the room: every later message comes through the broadcasts.
    Joined,
    /// Resuming, and more than one history-sized page behind the broadcasts: the socket's own
    /// task pages on, then asks again.
    Behind,
    /// Resuming, the store could not serve the last page: not let in (the socket's task says
    /// why).
    Failed(String),
}

impl Join {
    fn answer(self, handover: Handover) {
        if let Some(reply) = self.reply {
            let _ = reply.send(handover);
        }
    }
}

/// One room's fan-out on this node.
pub(super) struct Broadcaster {
    io: SocketIo,
    subscription: Subscription,
    hub: Hub,
    metrics: Arc<Metrics>,
    room: Arc<str>,
    target: Target,
    /// The room's handle, held by its sockets: how many there are, for the metrics (not for
    /// `general`, whose socketioxide rooms are counted).
    handle: Weak<Handle>,
    /// Resuming sockets whose own pages went past the last message broadcast: they join once
    /// the broadcasts reach them.
    pending: Vec<Join>,
    /// How long a socket that fell behind has to make room for its `msg:error` and disconnect
    /// (`--sio-ping-timeout`).
    last_word: Duration,
}

impl Broadcaster {
    pub fn new(
        io: SocketIo,
        subscription: Subscription,
        room: Arc<str>,
        target: Target,
        handle: Weak<Handle>,
        state: &AppState,
    ) -> Broadcaster {
        Broadcaster {
            io,
            hub: subscription.hub().clone(),
            subscription,
            metrics: state.metrics.clone(),
            room,
            target,
            handle,
            pending: Vec::new(),
            last_word: state.config.sio_ping_timeout,
        }
    }

    fn is_general(&self) -> bool {
        matches!(self.target, Target::General)
    }

    /// Fans out until the room has no socket left on this node (its door closed) or the
    /// server stops. `general`'s broadcaster (`closes_sessions`) then closes the sessions
    /// spread over the close window (`--drain-seconds`), each at a moment of its own, without
    /// a Socket.IO disconnect packet (so the official clients reconnect, and resume, by
    /// themselves once rtchat is back), going on with the fan-out until the last is closed or
    /// the window ends.
    pub async fn run(
        mut self,
        mut joins: tokio::sync::mpsc::Receiver<Join>,
        drain: Drain,
        closes_sessions: bool,
    ) {
        let mut current = self.subscription.snapshot().clone();
        let mut closers = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                delivery = self.subscription.recv() => match delivery {
                    Some(Delivery::Event(event)) => {
                        current = event.snapshot.clone();
                        if self.is_general() {
                            self.broadcast_snapshot(&current.json).await;
                        }
                        let news = wire::msg_new(&event.entry, &self.room);
                        self.broadcast(sio::MSG_NEW, &news, None).await;
                        self.join_pending(&current).await;
                    }
                    Some(Delivery::Lagged { missed }) => {
                        tracing::warn!(missed, room = %self.room, "Socket.IO fan-out lagged; catching up from the store");
                        current = self.catch_up().await;
                        self.join_pending(&current).await;
                    }
                    Some(Delivery::Signal(signal)) => self.signal(&signal).await,
                    // A new epoch: every socket in the room gets its history as a reset.
                    Some(Delivery::Reset(snapshot)) => {
                        current = snapshot;
                        self.reset(&current).await;
                        self.join_pending(&current).await;
                    }
                    Some(Delivery::Deleted(deletion)) => {
                        current = deletion.snapshot.clone();
                        if self.is_general() {
                            self.broadcast_snapshot(&current.json).await;
                        }
                        let deleted = MessageDeleted { room: self.room.to_string(), id: deletion.id };
                        let json = serde_json::to_vec(&deleted).unwrap_or_default();
                        self.broadcast(sio::MSG_DELETED, &json, None).await;
                    }
                    None => break,
                },
                join = joins.recv() => match join {
                    Some(join) => self.join(join, &current).await,
                    None => break, // No socket of this node is in the room any more.
                },
                () = drain.stop_token().cancelled(), if closes_sessions && !drain.stop_token().is_cancelled() => {
                    for socket in self.io.sockets() {
                        let deadline = drain.deadline();
                        closers.spawn(async move {
                            deadline.reached().await;
                            socket.close_transport().await;
                        });
                    }
                    if closers.is_empty() {
                        break;
                    }
                }
                Some(_) = closers.join_next(), if !closers.is_empty() => {
                    if closers.is_empty() {
                        break;
                    }
                }
                () = drain.window_end(), if drain.stop_token().is_cancelled() => break,
            }
        }
        if closes_sessions {
            // What is still open (sessions opened during the window, on connections that
            // were already open), the same way.
            closers.abort_all();
            self.io.close().await;
        }
    }

    /// `general`'s new history to the sockets that want the course's snapshots.
    async fn broadcast_snapshot(&self, json: &Bytes) {
        let Some(raw) = raw(json) else { return };
        self.metrics.delivered_to_room(Via::SocketIoSnapshots, || {
            self.io.to(ROOM_GET).sockets().len()
        });
        let result = self.io.to(ROOM_GET).emit(sio::MSG_GET, raw).await;
        self.check(Room::Borrowed(ROOM_GET), result);
    }

    /// A new epoch: every socket in the room gets the room's history as a reset, as a
    /// reconnect from the old epoch would (`msg:get` with `"reset":true` in general,
    /// `room:history` with it elsewhere).
    async fn reset(&self, current: &Snapshot) {
        let (event, json) = if self.is_general() {
            (sio::MSG_GET, current.reset_json(""))
        } else {
            (sio::ROOM_HISTORY, wire::room_reset(current, &self.room))
        };
        self.broadcast(event, &json, None).await;
    }

    /// One event to every socket in the room (but those in `except`), encoded once.
    async fn broadcast(&self, event: &str, json: &[u8], except: Option<Room>) {
        let Some(raw) = raw(json) else { return };
        let to = self.target.news();
        if event == sio::MSG_NEW {
            if self.is_general() {
                self.metrics
                    .delivered_to_room(Via::SocketIo, || self.io.to(to.clone()).sockets().len());
            } else {
                let sockets = self.handle.strong_count();
                self.metrics.delivered_untimed(Via::SocketIo, sockets);
            }
        }
        let mut operator = self.io.to(to.clone());
        if let Some(except) = except {
            operator = operator.except(except);
        }
        let result = operator.emit(event, raw).await;
        self.check(to, result);
    }

    /// A socket whose buffer was full missed the broadcast: it leaves every room at once (so
    /// it misses nothing silently: it gets nothing more), and gets `msg:error` and a
    /// disconnect once it has read what is queued.
    fn check(&self, room: Room, result: Result<(), BroadcastError>) {
        match result {
            Ok(()) => {}
            Err(BroadcastError::Socket(errors))
                if errors
                    .iter()
                    .any(|e| matches!(e, SocketError::InternalChannelFull)) =>
            {
                for socket in self.io.within(room).sockets() {
                    if socket.overflowed() {
                        socket.leave_all();
                        if Member::of(&socket).is_none_or(|m| m.falls_behind()) {
                            tokio::spawn(fell_behind(socket, self.last_word));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, %room, "Socket.IO broadcast did not reach every socket");
            }
        }
    }

    /// Presence to every socket in the room; typing to all but the typer's own sockets.
    async fn signal(&self, signal: &Signal) {
        let except = signal.typing_user().map(user_room);
        self.broadcast(signal.name(), &signal.json, except).await;
    }

    /// After a lag: the missed messages as `msg:new`, then (`general`) a fresh `msg:get`.
    async fn catch_up(&mut self) -> Arc<Snapshot> {
        let page_size = self.hub.config().history;
        loop {
            match self.subscription.catch_up(page_size).await {
                Ok(page) => {
                    for entry in &page.entries {
                        let news = wire::msg_new(entry, &self.room);
                        self.broadcast(sio::MSG_NEW, &news, None).await;
                    }
                    if !page.more {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, room = %self.room, "Socket.IO catch-up failed");
                    break;
                }
            }
        }
        let snapshot = self.subscription.current();
        if self.is_general() {
            self.broadcast_snapshot(&snapshot.json).await;
        }
        snapshot
    }

    /// Lets a socket in between two messages: the history (or, resuming, the last page of
    /// what it missed), then the room. Bounded work: one emit, or one history-sized read.
    async fn join(&mut self, mut join: Join, current: &Arc<Snapshot>) {
        let socket = join.socket.clone();
        if !socket.connected() {
            return;
        }
        match join.start {
            JoinStart::Fresh => self.greet(&mut join, current, false),
            JoinStart::Reset => self.greet(&mut join, current, true),
            JoinStart::Resume { after } => {
                if after > self.subscription.last_seen() {
                    self.pending.push(join);
                    return;
                }
                match self.finish_resume(&socket, after, &current.epoch).await {
                    Ok(true) => {}
                    Ok(false) => return join.answer(Handover::Behind),
                    Err(e) => return join.answer(Handover::Failed(e.to_string())),
                }
            }
        }
        let rooms = self.target.rooms(join.member.snapshots());
        socket.join(rooms.clone());
        if !socket.connected() {
            // It left while joining: make sure no room keeps it.
            socket.leave_all();
        } else if !join.member.is_in(&self.room) {
            // It left the room meanwhile.
            socket.leave(rooms);
        }
        join.answer(Handover::Joined);
    }

    /// A fresh start's (or a reset's) greeting and history.
    fn greet(&self, join: &mut Join, current: &Snapshot, reset: bool) {
        let socket = &join.socket;
        match std::mem::replace(&mut join.greeting, Greeting::Done) {
            Greeting::Connect => {
                if reset {
                    emit_raw(socket, ROOM_GET, &current.reset_json(""));
                } else {
                    emit_raw(socket, ROOM_GET, &current.json);
                }
            }
            Greeting::Room { ack } => {
                if let Some(ack) = ack {
                    let _ = ack.send(&sio::Joined {
                        room: self.room.to_string(),
                        last: current.last_id,
                        epoch: current.epoch.to_string(),
                    });
                }
                let history = if reset {
                    wire::room_reset(current, &self.room)
                } else {
                    wire::room_history(current, &self.room)
                };
                emit_raw(socket, sio::ROOM_HISTORY, &history);
            }
            Greeting::Done => {}
        }
    }

    /// Joins the pending resumes the broadcasts have reached.
    async fn join_pending(&mut self, current: &Arc<Snapshot>) {
        if self.pending.is_empty() {
            return;
        }
        let upto = self.subscription.last_seen();
        let (ready, waiting) =
            std::mem::take(&mut self.pending)
                .into_iter()
                .partition(|join: &Join| match join.start {
                    JoinStart::Resume { after } => after <= upto,
                    _ => true,
                });
        self.pending = waiting;
        for join in ready {
            self.join(join, current).await;
        }
    }

    /// The last `msg:since` page of a resume: the messages after `after` up to the last one
    /// broadcast, from one history-sized read (the cached history, unless messages right
    /// after `after` were deleted). `Ok(false)`, sending nothing, when that read does not
    /// reach the last message broadcast.
    async fn finish_resume(
        &self,
        socket: &SocketRef,
        after: u64,
        epoch: &str,
    ) -> Result<bool, rtchat_core::StoreError> {
        let upto = self.subscription.last_seen();
        let (entries, truncated) = if after >= upto {
            (Vec::new(), false)
        } else {
            let history = self.hub.config().history;
            let page = self
                .hub
                .since(self.subscription.channel(), after, history)
                .await?;
            let reaches = !page.more || page.entries.last().is_some_and(|e| e.message.id >= upto);
            if !reaches {
                return Ok(false);
            }
            let entries: Vec<_> = page
                .entries
                .into_iter()
                .filter(|e| e.message.id <= upto)
                .collect();
            (entries, page.truncated)
        };
        let last = entries.last().map_or(after, |e| e.message.id);
        let body = wire::since_page(&entries, last, epoch, false, truncated, &self.room);
        emit_raw(socket, sio::MSG_SINCE, &body);
        Ok(true)
    }
}

/// A socket that missed a broadcast because its buffer was full (it left the rooms): once it
/// has read all but two of the packets queued before the one it missed, it gets `msg:error`
/// saying why, then a Socket.IO disconnect (the official client does not reconnect by itself
/// after one: the application decides, and may resume from the last message it holds). A
/// client that does not read that far within `within` is closed without them.
async fn fell_behind(socket: SocketRef, within: Duration) {
    let size = socket.buffer_size();
    tracing::warn!(sid = %socket.id, buffer = size, "Socket.IO client fell too far behind; disconnecting it");
    let error = ErrorBody::new(format!(
        "you fell too far behind: more than {size} events were waiting to be sent to you \
         (--sio-buffer), so you missed some; reconnect to resume from the last message you have"
    ));
    match tokio::time::timeout(within, socket.drained(size.saturating_sub(2))).await {
        Ok(Err(_)) => {} // Closed already.
        Ok(Ok(())) => {
            let sent = socket.emit(sio::MSG_ERROR, &error).is_ok();
            if !sent || socket.clone().disconnect().is_err() {
                socket.close_transport().await;
            }
        }
        Err(_) => socket.close_transport().await,
    }
}

//! The rooms this node's sockets are in, each fanned out by one broadcaster: one hub
//! subscription per room (with its presence and typing signals), whose messages go out as one
//! socketioxide broadcast each, encoded once. `general` has its broadcaster for the life of
//! the server; another room's starts with the first socket of this node that joins it and
//! ends when the last one leaves (its subscription dropped with it, so the hub may let the
//! room go from memory).
//!
//! A socket in a room holds its [`Handle`]; the registry holds only a weak reference, so the
//! room's broadcaster ends once the last handle is gone. Each broadcaster broadcasts into a
//! socketioxide room of its own (`a#7`: the room and a number), so one still winding down
//! never reaches the sockets of the next one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rtchat_core::{Channel, Hub, RoomError, GENERAL};
use socketioxide::SocketIo;
use tokio::sync::mpsc;

use super::fanout::{Broadcaster, Join};
use super::{ROOM_GET, ROOM_NEW};
use crate::state::AppState;

/// A socketioxide room's name.
pub(super) type Room = std::borrow::Cow<'static, str>;

/// Sockets waiting to be let into a room (other than `general`) by its broadcaster.
const JOIN_QUEUE: usize = 256;

/// Where a room's broadcasts go.
#[derive(Debug, Clone)]
pub(super) enum Target {
    /// `general`: the socketioxide rooms `msg:get` (the sockets that want the course's
    /// snapshots) and `msg:new` (every socket in `general`).
    General,
    /// Another room: a socketioxide room of this broadcaster's own.
    Room(Room),
}

impl Target {
    /// The socketioxide room every socket in the room is in (`msg:new`, presence, typing).
    pub fn news(&self) -> Room {
        match self {
            Target::General => Room::Borrowed(ROOM_NEW),
            Target::Room(room) => room.clone(),
        }
    }

    /// The socketioxide rooms a socket enters to be in the room.
    pub fn rooms(&self, snapshots: bool) -> Vec<Room> {
        match self {
            Target::General if snapshots => {
                vec![Room::Borrowed(ROOM_GET), Room::Borrowed(ROOM_NEW)]
            }
            Target::General => vec![Room::Borrowed(ROOM_NEW)],
            Target::Room(room) => vec![room.clone()],
        }
    }
}

/// A room as this node fans it out; held by every socket in it (see the module docs).
pub(super) struct Handle {
    pub room: Arc<str>,
    pub channel: Arc<Channel>,
    /// The broadcaster's door: sockets it should let in.
    pub joins: mpsc::Sender<Join>,
    pub target: Target,
    number: u64,
    rooms: Weak<Rooms>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(rooms) = self.rooms.upgrade() {
            let mut map = rooms.map();
            if map.get(&self.room).is_some_and(|e| e.number == self.number) {
                map.remove(&self.room);
            }
        }
    }
}

struct Entry {
    number: u64,
    handle: Weak<Handle>,
}

/// Every room this node's sockets are in.
pub(super) struct Rooms {
    state: AppState,
    /// Set once socketioxide is built (it needs the connect handlers, which need this).
    io: OnceLock<SocketIo>,
    general: Arc<Handle>,
    map: Mutex<HashMap<Arc<str>, Entry>>,
    next: AtomicU64,
}

impl Rooms {
    /// The registry, with `general`'s door (`routes` starts its broadcaster).
    pub fn new(state: &AppState, general_joins: mpsc::Sender<Join>) -> Arc<Rooms> {
        Arc::new_cyclic(|rooms| Rooms {
            state: state.clone(),
            io: OnceLock::new(),
            general: Arc::new(Handle {
                room: Arc::from(GENERAL),
                channel: state.hub.general(),
                joins: general_joins,
                target: Target::General,
                number: 0,
                rooms: rooms.clone(),
            }),
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    pub fn set_io(&self, io: SocketIo) {
        let _ = self.io.set(io);
    }

    pub fn hub(&self) -> &Hub {
        &self.state.hub
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `general`, always fanned out.
    pub fn general(&self) -> &Arc<Handle> {
        &self.general
    }

    /// The room `name` as fanned out here, if a socket of this node is in it.
    fn find(&self, name: &str) -> Option<Arc<Handle>> {
        self.map().get(name).and_then(|e| e.handle.upgrade())
    }

    /// A place in room `name` for a socket that joins it: its broadcaster, started if no
    /// socket of this node is in the room yet (which opens the room: refused for a bad name
    /// or one room more than `--max-rooms`).
    pub async fn enter(self: &Arc<Self>, name: &str) -> Result<Arc<Handle>, RoomError> {
        if name == GENERAL {
            return Ok(self.general.clone());
        }
        if let Some(handle) = self.find(name) {
            return Ok(handle);
        }
        let io = (self.io.get().cloned()).expect("set by routes(), before any socket connects");
        let mut opened = self.state.hub.subscribe(name, None).await?;
        opened.subscription.with_signals();
        let (handle, joins) = {
            let mut map = self.map();
            if let Some(handle) = map.get(name).and_then(|e| e.handle.upgrade()) {
                // Another socket started it meanwhile: this subscription is not needed.
                return Ok(handle);
            }
            let number = self.next.fetch_add(1, Ordering::Relaxed);
            let room: Arc<str> = opened.subscription.channel().name().clone();
            let (joins, joins_rx) = mpsc::channel(JOIN_QUEUE);
            let handle = Arc::new(Handle {
                room: room.clone(),
                channel: opened.subscription.channel().clone(),
                joins,
                target: Target::Room(Room::Owned(format!("{room}#{number}"))),
                number,
                rooms: Arc::downgrade(self),
            });
            map.insert(
                room,
                Entry {
                    number,
                    handle: Arc::downgrade(&handle),
                },
            );
            (handle, joins_rx)
        };
        let broadcaster = Broadcaster::new(
            io,
            opened.subscription,
            handle.room.clone(),
            handle.target.clone(),
            Arc::downgrade(&handle),
            &self.state,
        );
        let internal = self.state.clone();
        internal
            .internal_subscriptions
            .fetch_add(1, Ordering::Relaxed);
        let drain = self.state.drain.clone();
        tokio::spawn(async move {
            broadcaster.run(joins, drain, false).await;
            internal
                .internal_subscriptions
                .fetch_sub(1, Ordering::Relaxed);
        });
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn general_goes_to_the_course_rooms() {
        assert_eq!(Target::General.rooms(true), vec![ROOM_GET, ROOM_NEW]);
        assert_eq!(Target::General.rooms(false), vec![ROOM_NEW]);
        assert_eq!(Target::General.news(), ROOM_NEW);
        let room = Target::Room(Room::Owned("a#3".into()));
        assert_eq!(room.rooms(true), vec!["a#3"]);
        assert_eq!(room.news(), "a#3");
    }
}

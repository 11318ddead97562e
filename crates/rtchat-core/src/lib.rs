//! The chat itself, independent of any transport.
//!
//! * [`message`] — what a chat message is and how a post is validated;
//! * [`store`] — where each channel's messages live ([`SqliteStore`] by default,
//!   [`MemoryStore`] for the course's behaviour), with their ids and epochs;
//! * [`broker`] — between stored and delivered: feeds every node's channels
//!   ([`LocalBroker`] in one process);
//! * [`channel`] — a channel as a node holds it: cached history snapshot, subscribers;
//! * [`hub`] — the writer (one order per channel, batched commits) and the door every
//!   transport enters through ([`Hub::subscribe`] with a [`Position`], [`Hub::submit`]);
//! * [`entry`] — a message encoded once, snapshots and the shared `{"msg":[...]}` shape;
//! * [`room`] — room names and why a room can be refused;
//! * [`presence`] — who is in a room and who is typing (signals, never stored);
//! * [`directory`] — accounts, revoked tokens and room access, kept by the store;
//! * [`observer`] — what the hub reports about its work (commits, lag), for metrics.
//!
//! Transports (polling, streams, WebSockets, Socket.IO) are thin adapters over [`Hub`].

pub mod broker;
pub mod channel;
pub mod directory;
pub mod entry;
pub mod hub;
pub mod message;
pub mod observer;
pub mod presence;
pub mod room;
pub mod store;

pub use broker::{Broker, BrokerError, Deliver, LocalBroker, Publication};
pub use channel::{Channel, Deletion, Delivery, Event, Subscription};
pub use directory::{Account, Directory, DirectoryError, RoomAccess};
pub use entry::{encode_list, encode_list_with, page_flags, Encodings, Entry, Since, Snapshot};
pub use hub::{
    decide, now_millis, Hub, HubConfig, Opened, Position, RoomSummary, Start, Ticket,
    TrySubmitError, GENERAL,
};
pub use message::{Limits, Message, NewPost, PostError, Poster, MAX_KEY};
pub use observer::HubObserver;
pub use presence::{
    Attendee, Member, PresenceGuard, Signal, SignalKind, TYPING_INTERVAL, TYPING_PER_ROOM,
};
pub use room::{check_room_name, is_dm_room, RoomError, DM_PREFIX};
pub use store::{
    Append, Appended, ChannelInfo, ChannelSummary, MemoryStore, Page, RedisStore, Retention,
    SqliteStore, Store, StoreError, StoreErrorKind,
};

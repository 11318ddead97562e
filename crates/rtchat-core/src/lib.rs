//! The chat itself, independent of any transport.
//!
//! * [`message`] — what a chat message is and how a post is validated;
//! * [`store`] — where messages live ([`SqliteStore`] by default, [`MemoryStore`] for the
//!   course's behaviour);
//! * [`hub`] — assigns ids in one total order, keeps the cached history snapshot and fans
//!   each new message out to every subscriber, whatever transport it is on.
//!
//! Transports (polling, streams, WebSockets, Socket.IO) are thin adapters over [`Hub`].

pub mod hub;
pub mod message;
pub mod store;

pub use hub::{
    encode_list, encode_list_with, now_millis, page_flags, Delivery, Encodings, Entry, Event, Hub,
    HubConfig, Since, Snapshot, Subscription, Ticket, TrySubmitError,
};
pub use message::{Limits, Message, NewPost, PostError};
pub use store::{MemoryStore, Page, Retention, SqliteStore, Store, StoreError};

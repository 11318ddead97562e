//! Between "stored" and "delivered": the broker. The hub's writer stores a batch, then hands
//! each stored message to [`Broker::publish`]; every node's channels (their history caches and
//! subscribers) are fed only by what the broker delivers back through [`Deliver`] — a node
//! receives its own publications back, as in centrifuge's broker/hub split. [`LocalBroker`]
//! delivers in-process, at once; [`RedisBroker`] delivers to every node through Redis.

mod redis;

pub use self::redis::RedisBroker;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::broadcast;

use crate::entry::Entry;
use crate::presence::{Member, Signal};

/// How long a node's share of a room's presence counts without being renewed (it renews it
/// every third of that while it lives). With the other nodes' check every
/// [`crate::presence::PRESENCE_CHECK`], a dead node's users leave within 30 s.
pub const PRESENCE_TTL: std::time::Duration = std::time::Duration::from_secs(24);

/// One thing a channel's subscribers must learn about.
#[derive(Debug, Clone)]
pub enum Publication {
    /// A new message (already stored).
    Message {
        channel: Arc<str>,
        entry: Arc<Entry>,
    },
    /// A message was deleted (its tombstone is stored): history leaves it out from now on.
    Deleted { channel: Arc<str>, id: u64 },
    /// Presence or typing: told to the channel's listening subscribers, never stored.
    Signal(Arc<Signal>),
}

impl Publication {
    /// The channel it concerns.
    pub fn channel(&self) -> &Arc<str> {
        match self {
            Publication::Message { channel, .. } | Publication::Deleted { channel, .. } => channel,
            Publication::Signal(signal) => &signal.room,
        }
    }
}

/// Why a publication could not be handed on (the message is stored; its delivery is not
/// certain).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the broker could not deliver: {0}")]
pub struct BrokerError(pub String);

/// The receiving end on each node: the hub implements it, and the broker calls it for every
/// publication on every channel, in each channel's order.
pub trait Deliver: Send + Sync + 'static {
    fn deliver(&self, publication: Publication);

    /// The channel's history began again under a new epoch (a shared store lost it or went
    /// back in time): the node reads it again from the store. Awaited before the broker
    /// delivers anything more of the channel.
    fn restart(
        &self,
        channel: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

    /// Where this node is in `channel`: its epoch and the newest message id it holds, or
    /// `None` when it does not hold the channel. A broker that can miss publications
    /// compares the next one with this and refills the gap first.
    fn position(&self, channel: &str) -> Option<(Arc<str>, u64)>;

    /// Another node's members of `channel` changed ([`Broker::share_presence`]): look again.
    fn presence_changed(&self, _channel: &str) {}
}

/// Hands stored messages to every node's subscribers.
///
/// What an implementation must guarantee: each node's [`Deliver`] sees the publications of a
/// channel in the order they were published (ids increasing), each once; a node gets its own
/// publications back. A broker that can lose publications (a Redis connection drop) must let
/// the node find out and refill from the store (the next message's id shows the gap).
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Called once by the hub before anything is published: where deliveries go.
    fn start(&self, deliver: Arc<dyn Deliver>);

    /// Hands `publication` to every node (this one included). Returns once it is on its way.
    async fn publish(&self, publication: Publication) -> Result<(), BrokerError>;

    /// This node now holds `channel` (a shared broker starts listening to it).
    fn subscribe(&self, _channel: &str) {}

    /// This node let `channel` go.
    fn unsubscribe(&self, _channel: &str) {}

    /// Shares this node's members of `channel` (empty: none any more) with the other nodes,
    /// for a while ([`PRESENCE_TTL`]): a node that dies drops out of every room's presence.
    /// `changed`: they changed (not a renewal), so each other node's
    /// [`Deliver::presence_changed`] is called. One process: nobody to tell.
    async fn share_presence(&self, _channel: &str, _members: &[Member], _changed: bool) {}

    /// The members of `channel` on the *other* nodes (none with one process).
    async fn presence_elsewhere(&self, _channel: &str) -> Result<Vec<Member>, BrokerError> {
        Ok(Vec::new())
    }

    /// Delivers now whatever of `channel` this node has not received yet (a client arrived
    /// from a node further ahead). One process: nothing is ever behind.
    async fn sync(&self, _channel: &str) {}

    /// Whether publications flow (a shared broker's connection is up); `/readyz` asks.
    fn is_connected(&self) -> bool {
        true
    }

    /// Tells every *other* node something that is not a room's (a ban, a revoked token, a
    /// room turned private: the server's business, opaque here). One process: nobody to tell.
    async fn announce(&self, _notice: Bytes) -> Result<(), BrokerError> {
        Ok(())
    }

    /// What the other nodes announce, as it arrives. One process: nothing ever does.
    fn notices(&self) -> broadcast::Receiver<Bytes> {
        broadcast::channel(1).1
    }
}

/// One process, no network: publications are delivered at once, in the caller's task.
#[derive(Default)]
pub struct LocalBroker {
    deliver: OnceLock<Arc<dyn Deliver>>,
}

impl LocalBroker {
    pub fn new() -> LocalBroker {
        LocalBroker::default()
    }
}

#[async_trait]
impl Broker for LocalBroker {
    fn start(&self, deliver: Arc<dyn Deliver>) {
        let _ = self.deliver.set(deliver);
    }

    async fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        match self.deliver.get() {
            Some(deliver) => {
                deliver.deliver(publication);
                Ok(())
            }
            None => Err(BrokerError("not started".to_owned())),
        }
    }
}

//! Between "stored" and "delivered": the broker. The hub's writer stores a batch, then hands
//! each stored message to [`Broker::publish`]; every node's channels (their history caches and
//! subscribers) are fed only by what the broker delivers back through [`Deliver`] — a node
//! receives its own publications back, as in centrifuge's broker/hub split. [`LocalBroker`]
//! delivers in-process, at once; a Redis broker will deliver to every node.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;

use crate::entry::Entry;
use crate::presence::Signal;

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

    /// This node now has subscribers on `channel` (a shared broker starts listening to it).
    fn subscribe(&self, _channel: &str) {}

    /// This node has no subscribers left on `channel`.
    fn unsubscribe(&self, _channel: &str) {}
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

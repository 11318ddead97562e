//! A stored message as every transport sends it, encoded once; a channel's history snapshot;
//! and the `{"msg":[...],"last":N,"epoch":E}` wire shape they share.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

use crate::message::Message;

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
    /// When this node made the entry: for a message delivered live, right after the store
    /// committed it (the hub's writer makes it then); for one read back from the store, when
    /// it was read. The fan-out latency metric is measured from it.
    pub created: Instant,
    encodings: Encodings,
}

impl Entry {
    /// A message with its JSON made once; brokers deliver these.
    pub fn new(message: Message) -> Arc<Entry> {
        let json = serde_json::to_vec(&message).expect("a Message always serializes");
        Arc::new(Entry {
            message,
            json: json.into(),
            created: Instant::now(),
            encodings: Encodings::default(),
        })
    }

    /// This message in the wire format `T`, encoded by `encode` on first use and shared by
    /// every later caller (see [`Encodings`]).
    pub fn encoded<T: Clone + Send + Sync + 'static>(&self, encode: impl FnOnce(&Entry) -> T) -> T {
        self.encodings.get_or_insert_with(|| encode(self))
    }
}

/// A channel's history as clients see it at one moment: the newest messages, newest first,
/// and the course's `{"msg":[...],"last":N,"epoch":E}` encoding of them.
#[derive(Debug)]
pub struct Snapshot {
    /// Newest first, at most [`HubConfig::history`](crate::HubConfig::history) of them.
    pub entries: Vec<Arc<Entry>>,
    /// Id of the newest message the channel ever handed out (0 if none), deleted or not.
    pub last_id: u64,
    /// The channel's epoch: ids are positions within it.
    pub epoch: Arc<str>,
    /// `{"msg":[...],"last":N,"epoch":E}`, the payload of `GET /poll` and of every snapshot
    /// transport.
    pub json: Bytes,
    /// The same followed by a newline, for newline-delimited streams (same allocation).
    pub json_line: Bytes,
    encodings: Encodings,
}

impl Snapshot {
    /// The snapshot of `entries` (newest first) in a channel whose newest id is `last_id`.
    pub fn new(entries: Vec<Arc<Entry>>, last_id: u64, epoch: Arc<str>) -> Snapshot {
        let json_line = encode_list(entries.iter(), last_id, &epoch, "\n");
        let json = json_line.slice(..json_line.len() - 1);
        Snapshot {
            entries,
            last_id,
            epoch,
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

    /// This snapshot with `newest` added (and the oldest dropped past `history`).
    pub(crate) fn with(&self, newest: Arc<Entry>, history: usize) -> Snapshot {
        let mut entries = Vec::with_capacity(history.min(self.entries.len() + 1));
        let last_id = newest.message.id.max(self.last_id);
        entries.push(newest);
        entries.extend(self.entries.iter().take(history - 1).cloned());
        Snapshot::new(entries, last_id, self.epoch.clone())
    }

    /// The same history as a `reset` answer: the whole snapshot, telling the client that
    /// the position it named means nothing here and it must start over.
    pub fn reset_json(&self, after: &str) -> Bytes {
        encode_list_with(
            self.entries.iter(),
            self.last_id,
            &self.epoch,
            &["reset"],
            after,
        )
    }
}

/// Encodes `{"msg":[...],"last":N,"epoch":E}` from already encoded entries, given newest
/// first, and appends `after` (e.g. a newline). The course's wire shape (plus the epoch),
/// shared by all transports.
pub fn encode_list<'a>(
    entries: impl Iterator<Item = &'a Arc<Entry>>,
    last: u64,
    epoch: &str,
    after: &str,
) -> Bytes {
    encode_list_with(entries, last, epoch, &[], after)
}

/// Like [`encode_list`], adding `"flag":true` for each of `flags` (`more`, `reset`, ...).
pub fn encode_list_with<'a>(
    entries: impl Iterator<Item = &'a Arc<Entry>>,
    last: u64,
    epoch: &str,
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
    // Epochs are made of [a-z0-9] (see `new_epoch`), nothing to escape.
    out.put_slice(b",\"epoch\":\"");
    out.put_slice(epoch.as_bytes());
    out.put_u8(b'"');
    for flag in flags {
        out.put_slice(b",\"");
        out.put_slice(flag.as_bytes());
        out.put_slice(b"\":true");
    }
    out.put_u8(b'}');
    out.put_slice(after.as_bytes());
    out.freeze()
}

/// Messages after a given id, as answered by [`Hub::since`](crate::Hub::since).
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
    /// This page as the wire shape of every `since` answer: `{"msg":[...],"last":N,"epoch":E}`,
    /// newest first, with the [`page_flags`], then `after` (e.g. a newline).
    pub fn encode(&self, last: u64, epoch: &str, after: &str) -> Bytes {
        let flags = page_flags(self.more, self.truncated);
        encode_list_with(self.entries.iter().rev(), last, epoch, flags, after)
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

//! What this transport sends, made from the hub's pre-encoded JSON: passed to socketioxide as
//! raw JSON values (never parsed or re-serialized), with `"room"` spliced in where an event
//! names its room, each made once per message (or snapshot) and shared by every socket.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use rtchat_core::{encode_list_with, page_flags, Entry, Snapshot};
use rtchat_protocol::socketio::Refusal;
use serde_json::value::RawValue;
use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::{FromMessageParts, Value as SioValue};
use socketioxide::socket::Socket;

/// `json` (an object) with `"room":R` added as its last member.
pub(super) fn with_room(json: &[u8], room: &str) -> Bytes {
    let body = json.strip_suffix(b"}").unwrap_or(json);
    let room = serde_json::to_string(room).expect("a string serializes");
    let mut out = BytesMut::with_capacity(body.len() + room.len() + 10);
    out.put_slice(body);
    if body.last().is_some_and(|&b| b != b'{') {
        out.put_u8(b',');
    }
    out.put_slice(b"\"room\":");
    out.put_slice(room.as_bytes());
    out.put_u8(b'}');
    out.freeze()
}

/// `msg:new`'s payload, `{"id","user","text","time","room"}`.
#[derive(Clone)]
struct NewWithRoom(Bytes);

/// The `msg:new` of `entry`, a message of `room`: made once per message.
pub(super) fn msg_new(entry: &Entry, room: &str) -> Bytes {
    entry.encoded(|e| NewWithRoom(with_room(&e.json, room))).0
}

/// `room:history`'s payload, the snapshot with `"room"`.
#[derive(Clone)]
struct HistoryWithRoom(Bytes);

/// The `room:history` of `snapshot`, the history of `room`: made once per snapshot, however
/// many sockets join while it is the newest.
pub(super) fn room_history(snapshot: &Snapshot, room: &str) -> Bytes {
    snapshot
        .encoded(|s| HistoryWithRoom(with_room(&s.json, room)))
        .0
}

/// The same history as a `reset` (the position the client named means nothing here).
pub(super) fn room_reset(snapshot: &Snapshot, room: &str) -> Bytes {
    with_room(&snapshot.reset_json(""), room)
}

/// A `msg:since` page: `entries` (oldest first) as a `{"msg":[...],"last","epoch","room"}`
/// list, newest first, with its flags.
pub(super) fn since_page(
    entries: &[std::sync::Arc<Entry>],
    last: u64,
    epoch: &str,
    more: bool,
    truncated: bool,
    room: &str,
) -> Bytes {
    let flags = page_flags(more, truncated);
    with_room(
        &encode_list_with(entries.iter().rev(), last, epoch, flags, ""),
        room,
    )
}

/// Emits pre-encoded JSON to one socket.
pub(super) fn emit_raw(socket: &SocketRef, event: &str, json: &[u8]) {
    if let Some(raw) = raw(json) {
        if let Err(e) = socket.emit(event, raw) {
            tracing::debug!(error = %e, event, "Socket.IO emit failed");
        }
    }
}

/// The hub's JSON bytes as a value socketioxide writes out verbatim.
pub(super) fn raw(json: &[u8]) -> Option<&RawValue> {
    match serde_json::from_slice::<&RawValue>(json) {
        Ok(raw) => Some(raw),
        Err(e) => {
            tracing::error!(error = %e, "hub JSON is not valid JSON");
            None
        }
    }
}

/// How a client asked for an answer: with an acknowledgement callback, or not (then only a
/// refusal comes back, as `msg:error`).
pub(super) struct Answer {
    pub ack: AckSender,
    pub wants_ack: bool,
    pub socket: SocketRef,
}

impl Answer {
    /// What an extractor reads of an event (past its name): the payload as JSON (or why it is
    /// none), and how to answer it.
    pub fn read(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut SioValue,
        ack_id: &Option<i64>,
    ) -> (Result<Value, String>, Answer) {
        let Ok(ack) = AckSender::from_message_parts(s, v, ack_id);
        let Ok(TryData(data)) = TryData::<Value>::from_message_parts(s, v, ack_id);
        let Ok(socket) = SocketRef::from_message_parts(s, v, ack_id);
        let answer = Answer {
            ack,
            wants_ack: ack_id.is_some(),
            socket,
        };
        (data.map_err(|e| e.to_string()), answer)
    }

    /// Acknowledges with `body`, if an acknowledgement was asked for.
    pub fn ok<T: serde::Serialize + ?Sized>(self, body: &T) {
        if self.wants_ack {
            let _ = self.ack.send(body);
        }
    }

    /// Answers a refusal: the error acknowledgement, or `msg:error` without one.
    pub fn refuse(self, refusal: &Refusal) {
        if self.wants_ack {
            let _ = self.ack.send(refusal);
        } else {
            let _ = self
                .socket
                .emit(rtchat_protocol::socketio::MSG_ERROR, refusal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_json_is_borrowed_verbatim() {
        let json =
            Bytes::from_static(br#"{"msg":[{"id":1,"user":"a","text":"\u00e9 \"q\""}],"last":1}"#);
        let raw = raw(&json).unwrap();
        assert_eq!(raw.get().as_bytes(), &json[..]);
        assert!(super::raw(b"{nope").is_none());
    }

    #[test]
    fn the_room_is_spliced_in_last() {
        assert_eq!(
            &with_room(br#"{"id":1,"user":"a"}"#, "b-2")[..],
            br#"{"id":1,"user":"a","room":"b-2"}"#
        );
        assert_eq!(&with_room(b"{}", "general")[..], br#"{"room":"general"}"#);
        let spliced = with_room(br#"{"msg":[],"last":0,"epoch":"e","more":true}"#, "x");
        let value: serde_json::Value = serde_json::from_slice(&spliced).unwrap();
        assert_eq!(value["room"], "x");
        assert_eq!(value["more"], true);
    }
}

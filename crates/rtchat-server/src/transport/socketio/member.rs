//! A socket's rooms and its room requests.
//!
//! Each socket keeps, as a socketioxide extension made at its handshake, the name it is
//! present under (`auth.user`) and its place in each room it is in: the room's [`Handle`]
//! (which keeps the room's broadcaster on this node) and its presence guard. It starts in
//! `general`. `room:join`, `room:leave` and `typing` are handled one after the other, in the
//! order the socket sent them (after its connect's history or resume), each answered with an
//! acknowledgement or, refused without one, a `msg:error` naming the room. At disconnect the
//! socket leaves every room at once.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::auth::lifetime::Credential;
use crate::auth::token::Identity;

use rtchat_core::{check_room_name, Attendee, Position, PresenceGuard, RoomError, GENERAL};
use rtchat_protocol::shapes::Removed;
use rtchat_protocol::socketio::{self as sio, Refusal, RoomName};
use serde_json::{Map, Value};
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::SocketRef;
use socketioxide::handler::{FromMessageParts, Value as SioValue};
use socketioxide::socket::Socket;

use super::chain::{Chain, Place};
use super::fanout::{Greeting, Handover, JoinStart};
use super::handshake::user_name;
use super::resume::{hand_over, resume, Resumed};
use super::rooms::{Handle, Room};
use super::wire::Answer;
use super::Chat;

/// Room requests one socket may have waiting at once.
const REQUESTS_IN_FLIGHT: usize = 32;

/// The socketioxide room of every socket named `user`: typing signals skip it.
pub(super) fn user_room(user: &str) -> Room {
    Room::Owned(format!("u:{user}"))
}

/// A socket's place in one room.
pub(super) struct Membership {
    handle: Arc<Handle>,
    _presence: PresenceGuard,
}

impl Membership {
    /// `handle`'s room, with the socket present in it as `user`.
    pub fn new(chat: &Chat, handle: Arc<Handle>, user: Option<Attendee>) -> Membership {
        let presence = chat.rooms.hub().present_as(&handle.channel, user);
        Membership {
            handle,
            _presence: presence,
        }
    }
}

/// A socket's rooms (see the module docs). Cheap to clone: every clone is the same.
#[derive(Clone)]
pub(super) struct Member(Arc<MemberState>);

struct MemberState {
    user: Option<Arc<str>>,
    snapshots: bool,
    rooms: Mutex<Rooms>,
    requests: Mutex<Chain>,
    /// The connect's place at the head of the request chain, taken by its task.
    connecting: Mutex<Option<Place>>,
    /// Set once a broadcast found its buffer full (it is being disconnected).
    behind: AtomicBool,
}

#[derive(Default)]
struct Rooms {
    joined: Vec<Membership>,
    /// Disconnected: it joins nothing more.
    closed: bool,
}

impl Member {
    /// The state of a socket that connects, named `user`, in no room yet; its connect holds
    /// the first place among its requests (see [`Member::connect_turn`]).
    pub fn new(user: Option<Arc<str>>, snapshots: bool) -> Member {
        let mut requests = Chain::default();
        let first = requests.take(REQUESTS_IN_FLIGHT);
        Member(Arc::new(MemberState {
            user,
            snapshots,
            rooms: Mutex::new(Rooms::default()),
            requests: Mutex::new(requests),
            connecting: Mutex::new(first),
            behind: AtomicBool::new(false),
        }))
    }

    /// The state of `socket`, made at its handshake.
    pub fn of(socket: &SocketRef) -> Option<Member> {
        socket.extensions.get::<Member>()
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.0.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Chain> {
        self.0.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The name it is present under.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.0.user.as_ref()
    }

    /// Whether it gets `general`'s `msg:get` after every message.
    pub fn snapshots(&self) -> bool {
        self.0.snapshots
    }

    /// Whether it is in `room`.
    pub fn is_in(&self, room: &str) -> bool {
        self.rooms().joined.iter().any(|m| &*m.handle.room == room)
    }

    /// Adds a room; false (dropping it) once the socket is gone.
    pub fn add(&self, membership: Membership) -> bool {
        let mut rooms = self.rooms();
        if rooms.closed {
            drop(rooms);
            drop(membership);
            return false;
        }
        rooms.joined.push(membership);
        true
    }

    fn remove(&self, room: &str) -> Option<Membership> {
        let mut rooms = self.rooms();
        let i = rooms.joined.iter().position(|m| &*m.handle.room == room)?;
        Some(rooms.joined.swap_remove(i))
    }

    fn count(&self) -> usize {
        self.rooms().joined.len()
    }

    /// Disconnected: out of every room now (presence told, broadcasters of rooms nobody of
    /// this node is in any more stopped).
    pub fn close(&self) {
        let joined = {
            let mut rooms = self.rooms();
            rooms.closed = true;
            std::mem::take(&mut rooms.joined)
        };
        drop(joined);
    }

    /// The connect's place at the head of the request chain: requests wait until the connect
    /// has its history (or resume), and the connect releases it with [`Member::done`].
    pub fn connect_turn(&self) -> Option<Place> {
        self.0
            .connecting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A request (or the connect) is answered: the next one may go.
    pub fn done(&self, place: Place) {
        drop(place.done);
        self.requests().release();
    }

    /// The first time a broadcast finds its buffer full: true (once).
    pub fn falls_behind(&self) -> bool {
        !self.0.behind.swap(true, Ordering::Relaxed)
    }
}

/// The disconnect handler: out of every room at once.
pub(super) fn on_disconnect(socket: SocketRef) -> std::future::Ready<()> {
    if let Some(member) = Member::of(&socket) {
        member.close();
    }
    super::session::forget(&socket);
    std::future::ready(())
}

/// What a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Join,
    Leave,
    Typing,
}

/// A room request as socketioxide reads it (in arrival order): the event, its payload and
/// how to answer it. The handler of every event but `msg:post`; others are ignored.
pub(super) struct Request {
    event: String,
    data: Result<Value, String>,
    answer: Answer,
}

impl FromMessageParts<LocalAdapter> for Request {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut SioValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let event = socketioxide::extract::Event::from_message_parts(s, v, ack_id)
            .map(|e| e.0)
            .unwrap_or_default();
        let (data, answer) = Answer::read(s, v, ack_id);
        Ok(Request {
            event,
            data,
            answer,
        })
    }
}

/// The handler of room requests: takes the request's place in the socket's chain now (in
/// arrival order), then handles it once the requests before it are answered.
pub(super) fn on_request(
    chat: Chat,
    request: Request,
) -> impl Future<Output = ()> + Send + 'static {
    let kind = match request.event.as_str() {
        sio::ROOM_JOIN => Some(Kind::Join),
        sio::ROOM_LEAVE => Some(Kind::Leave),
        sio::TYPING => Some(Kind::Typing),
        _ => None,
    };
    let member = Member::of(&request.answer.socket);
    let place = match (kind, &member) {
        (Some(_), Some(member)) => member.requests().take(REQUESTS_IN_FLIGHT),
        _ => None,
    };
    async move {
        // Events rtchat does not know are ignored, as before rooms.
        let (Some(kind), Some(member)) = (kind, member) else {
            return;
        };
        let Request { data, answer, .. } = request;
        let Some(mut place) = place else {
            let refusal = Refusal::new(
                format!(
                    "too many room requests in flight (more than {REQUESTS_IN_FLIGHT}); \
                     wait for their acknowledgements"
                ),
                named_room(&data),
            );
            return answer.refuse(&refusal);
        };
        place.turn().await;
        match kind {
            Kind::Join => join(&chat, &member, data, answer).await,
            Kind::Leave => leave(&member, data, answer),
            Kind::Typing => typing(&chat, &member, data, answer).await,
        }
        member.done(place);
    }
}

/// The room a request names, if it names one (for its refusal).
fn named_room(data: &Result<Value, String>) -> Option<&str> {
    data.as_ref().ok()?.get("room")?.as_str()
}

/// The request's payload as an object, or its refusal.
fn object<'a>(
    data: &'a Result<Value, String>,
    usage: &str,
) -> Result<&'a Map<String, Value>, Refusal> {
    match data {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(Refusal::new(
            format!("{usage}: the payload must be a JSON object"),
            None,
        )),
        Err(e) => Err(Refusal::new(format!("{usage}: {e}"), None)),
    }
}

/// The request's `room`: `default` when it names none (`None`: it must name one). Checked
/// against the rule of room names.
fn room_field(
    obj: &Map<String, Value>,
    usage: &str,
    default: Option<&str>,
) -> Result<String, Refusal> {
    let room = match obj.get("room") {
        None | Some(Value::Null) => match default {
            Some(room) => room.to_owned(),
            None => return Err(Refusal::new(format!("{usage}: \"room\" is missing"), None)),
        },
        Some(Value::String(room)) => room.clone(),
        Some(_) => {
            return Err(Refusal::new(
                format!("{usage}: \"room\" must be a string"),
                None,
            ))
        }
    };
    check_room_name(&room).map_err(|e| Refusal::new(e.to_string(), Some(&room)))?;
    Ok(room)
}

const JOIN_USAGE: &str = "room:join takes {room, last?, epoch?}";
const LEAVE_USAGE: &str = "room:leave takes {room}";
const TYPING_USAGE: &str = "typing takes {room}";

/// `room:join`'s payload.
struct JoinRequest {
    room: String,
    position: Option<Position>,
}

fn join_request(data: &Result<Value, String>) -> Result<JoinRequest, Refusal> {
    let obj = object(data, JOIN_USAGE)?;
    let room = room_field(obj, JOIN_USAGE, None)?;
    let refuse = |e: String| Refusal::new(format!("{JOIN_USAGE}: {e}"), Some(&room));
    let last = match obj.get("last") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            refuse(format!(
                "\"last\" must be a message id (a whole number, 0 or more), got {v}"
            ))
        })?),
    };
    let epoch = match obj.get("epoch") {
        None | Some(Value::Null) => None,
        Some(Value::String(e)) => Some(e.clone()),
        Some(v) => return Err(refuse(format!("\"epoch\" must be a string, got {v}"))),
    };
    Ok(JoinRequest {
        position: last.map(|after| Position::new(after, epoch)),
        room,
    })
}

/// `room:join`: acknowledged, then the room's history (or what was missed since `last`),
/// then its messages live.
async fn join(chat: &Chat, member: &Member, data: Result<Value, String>, answer: Answer) {
    let request = match join_request(&data) {
        Ok(request) => request,
        Err(refusal) => return answer.refuse(&refusal),
    };
    let room = request.room.as_str();
    let refuse = |error: String| Refusal::new(error, Some(room));
    if member.is_in(room) {
        return answer.refuse(&refuse(format!(
            "this socket is already in room \"{room}\"; leave it first to join it again"
        )));
    }
    let max = chat.max_joined;
    if member.count() >= max {
        return answer.refuse(&refuse(crate::transport::too_many_joined(max)));
    }
    let who = answer.socket.extensions.get::<Arc<Identity>>();
    let access = chat.poster.state.auth.access();
    if let Err(e) = access.enter(who.as_deref(), room) {
        return answer.refuse(&refuse(e.to_string()));
    }
    let handle = match chat.rooms.enter(room).await {
        Ok(handle) => handle,
        Err(e) => {
            if let RoomError::Store(e) = &e {
                tracing::warn!(error = %e, room, "Socket.IO join failed");
            }
            return answer.refuse(&refuse(e.to_string()));
        }
    };
    let user = member.user().map(|u| &**u);
    let present = crate::transport::attendee(who.as_deref(), user);
    if !member.add(Membership::new(chat, handle.clone(), present)) {
        return; // Disconnected meanwhile.
    }
    let Answer {
        ack,
        wants_ack,
        socket,
    } = answer;
    let greeting = Greeting::Room {
        ack: wants_ack.then_some(ack),
    };
    let failed = match request.position {
        None => match hand_over(&handle, &socket, member, JoinStart::Fresh, greeting).await {
            Some(Handover::Failed(error)) => Some((error, Greeting::Done)),
            _ => None,
        },
        Some(position) => {
            let hub = chat.rooms.hub();
            match resume(hub, &handle, &socket, member, greeting, position).await {
                Resumed::Joined | Resumed::Gone => None,
                Resumed::Failed { error, greeting } => Some((error, greeting)),
            }
        }
    };
    if let Some((error, greeting)) = failed {
        // Not let in: out of the room again, and told why.
        tracing::warn!(%error, room, "Socket.IO resume failed");
        drop(member.remove(room));
        let refusal = refuse(format!(
            "could not resume in room \"{room}\": {error}; join it again to try again"
        ));
        match greeting {
            Greeting::Room { ack: Some(ack) } => {
                let _ = ack.send(&refusal);
            }
            _ => {
                let _ = socket.emit(sio::MSG_ERROR, &refusal);
            }
        }
    }
}

/// `room:leave`: out of the room (no message of it after the acknowledgement).
fn leave(member: &Member, data: Result<Value, String>, answer: Answer) {
    let room = match object(&data, LEAVE_USAGE).and_then(|obj| room_field(obj, LEAVE_USAGE, None)) {
        Ok(room) => room,
        Err(refusal) => return answer.refuse(&refusal),
    };
    let Some(membership) = member.remove(&room) else {
        let error = format!("this socket is not in room \"{room}\"");
        return answer.refuse(&Refusal::new(error, Some(&room)));
    };
    answer.socket.leave(membership.handle.target.rooms(true));
    drop(membership);
    answer.ok(&RoomName { room });
}

/// The socket's access to a room narrowed (`None`: maybe several): out of each room it may
/// no longer be in, told by `room:left` `{room, reason}`.
pub(super) fn narrowed(socket: &SocketRef, credential: &Credential, room: Option<Arc<str>>) {
    let Some(member) = Member::of(socket) else {
        return;
    };
    let rooms: Vec<Arc<str>> = {
        let rooms = member.rooms();
        let names = rooms.joined.iter().map(|m| m.handle.room.clone());
        match &room {
            Some(room) => names.filter(|name| name == room).collect(),
            None => names.collect(),
        }
    };
    for room in rooms {
        let Err(denied) = credential.may_stay(&room) else {
            continue;
        };
        let Some(membership) = member.remove(&room) else {
            continue;
        };
        socket.leave(membership.handle.target.rooms(true));
        drop(membership);
        let removed = Removed {
            room: room.to_string(),
            reason: denied.to_string(),
        };
        let _ = socket.emit(sio::ROOM_LEFT, &removed);
    }
}

/// `typing`: told to the room's other sockets (at most once a second per user and room; the
/// extra ones are dropped silently). Needs a name and the room.
async fn typing(chat: &Chat, member: &Member, data: Result<Value, String>, answer: Answer) {
    let obj = match object(&data, TYPING_USAGE) {
        Ok(obj) => obj,
        Err(refusal) => return answer.refuse(&refusal),
    };
    let room = match room_field(obj, TYPING_USAGE, Some(GENERAL)) {
        Ok(room) => room,
        Err(refusal) => return answer.refuse(&refusal),
    };
    let refuse = |error: String| Refusal::new(error, Some(&room));
    if !member.is_in(&room) {
        return answer.refuse(&refuse(format!(
            "this socket is not in room \"{room}\"; join it before saying you are typing"
        )));
    }
    let user = match (member.user(), obj.get("user")) {
        (Some(user), _) => user.clone(),
        (None, Some(user)) if !user.is_null() => match user_name(user, &chat.poster.limits) {
            Ok(user) => user,
            Err(e) => return answer.refuse(&refuse(e.to_string())),
        },
        (None, _) => {
            return answer.refuse(&refuse(
                "typing needs a name: connect with auth {user} (or send {room, user})".to_owned(),
            ))
        }
    };
    match chat.rooms.hub().typing(&room, &user).await {
        Ok(_) => answer.ok(&RoomName { room }),
        Err(e) => answer.refuse(&refuse(e.to_string())),
    }
}

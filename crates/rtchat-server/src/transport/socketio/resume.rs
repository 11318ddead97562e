//! A resume, off the broadcasters: the socket's own task opens a subscription through the
//! hub's door (which decides resume or reset and caps how far back, `--max-resume`), greets
//! the socket (`msg:get` at connect, the `room:join` acknowledgement), then pages through what
//! it missed with `catch_up`, one `msg:since` page (`"more":true`) at a time, each once the
//! client has read all but [`PAGES_AHEAD`] of what was sent before (so a resume goes at its
//! client's pace and never fills its buffer), until the socket is within one history-sized
//! page of the newest message. Then it hands the socket to the room's broadcaster, which,
//! between two messages, sends the last page (from the position the socket reached up to the
//! last message it broadcast: one history-sized read, served from the cached history) and
//! lets the socket into the room; if the broadcasts ran more than a page ahead meanwhile, it
//! sends the socket back to page on, and if the socket's own pages went past the broadcasts,
//! it waits for them. So the socket gets every message exactly once and in order, whatever is
//! posted meanwhile, and the other sockets never wait for a resume.

use rtchat_core::{Hub, Opened, Position, Start};
use rtchat_protocol::socketio as sio;
use socketioxide::extract::SocketRef;
use tokio::sync::oneshot;

use super::fanout::{Greeting, Handover, Join, JoinStart};
use super::member::Member;
use super::rooms::Handle;
use super::wire::{self, emit_raw};
use super::{PAGES_AHEAD, ROOM_GET};

/// How a resume ended.
pub(super) enum Resumed {
    /// In the room.
    Joined,
    /// The socket, or the server, went away.
    Gone,
    /// Not let in (the store failed): why, and the greeting if it was not used yet.
    Failed { error: String, greeting: Greeting },
}

/// Resumes `socket` in `handle`'s room after `position` (see the module docs); a position
/// that means nothing here (another epoch, an id never handed out) gets the history with
/// `"reset":true` instead.
pub(super) async fn resume(
    hub: &Hub,
    handle: &Handle,
    socket: &SocketRef,
    member: &Member,
    greeting: Greeting,
    position: Position,
) -> Resumed {
    let mut subscription = match hub.subscribe(&handle.room, Some(&position)).await {
        Ok(Opened {
            start: Start::Resume { .. },
            subscription,
        }) => subscription,
        Ok(_) => {
            return match hand_over(handle, socket, member, JoinStart::Reset, greeting).await {
                Some(Handover::Joined) => Resumed::Joined,
                Some(Handover::Failed(error)) => Resumed::Failed {
                    error,
                    greeting: Greeting::Done,
                },
                Some(Handover::Behind) | None => Resumed::Gone,
            };
        }
        Err(e) => {
            return Resumed::Failed {
                error: e.to_string(),
                greeting,
            }
        }
    };
    let snapshot = subscription.snapshot().clone();
    match greeting {
        Greeting::Connect => emit_raw(socket, ROOM_GET, &snapshot.json),
        Greeting::Room { ack: Some(ack) } => {
            let _ = ack.send(&sio::Joined {
                room: handle.room.to_string(),
                last: snapshot.last_id,
                epoch: snapshot.epoch.to_string(),
            });
        }
        Greeting::Room { ack: None } | Greeting::Done => {}
    }
    let epoch = snapshot.epoch.clone();
    let history = hub.config().history;
    let cap = hub.config().max_resume;
    let mut read = false;
    let mut caught_up = false;
    loop {
        let behind = subscription
            .current()
            .last_id
            .saturating_sub(subscription.last_seen());
        // A resume the door caps starts with a read, which skips and says `truncated`.
        let capped = !read && cap > 0 && behind > cap;
        if caught_up || (!capped && behind <= history as u64) {
            let after = subscription.last_seen();
            let start = JoinStart::Resume { after };
            match hand_over(handle, socket, member, start, Greeting::Done).await {
                Some(Handover::Behind) => {} // The broadcasts ran ahead: page on.
                Some(Handover::Joined) => return Resumed::Joined,
                Some(Handover::Failed(error)) => {
                    return Resumed::Failed {
                        error,
                        greeting: Greeting::Done,
                    }
                }
                None => return Resumed::Gone,
            }
        }
        if socket.drained(PAGES_AHEAD).await.is_err() {
            return Resumed::Gone;
        }
        let page = match subscription.catch_up(history).await {
            Ok(page) => page,
            Err(e) => {
                return Resumed::Failed {
                    error: e.to_string(),
                    greeting: Greeting::Done,
                }
            }
        };
        read = true;
        caught_up = !page.more;
        if page.entries.is_empty() && !page.truncated {
            continue;
        }
        // Never the last page: that one comes from the broadcaster.
        let last = subscription.last_seen();
        let body = wire::since_page(
            &page.entries,
            last,
            &epoch,
            true,
            page.truncated,
            &handle.room,
        );
        emit_raw(socket, sio::MSG_SINCE, &body);
    }
}

/// Hands a socket to the room's broadcaster and waits for its answer (`None`: the server
/// stops).
pub(super) async fn hand_over(
    handle: &Handle,
    socket: &SocketRef,
    member: &Member,
    start: JoinStart,
    greeting: Greeting,
) -> Option<Handover> {
    let (reply, answer) = oneshot::channel();
    let join = Join {
        socket: socket.clone(),
        member: member.clone(),
        start,
        greeting,
        reply: Some(reply),
    };
    handle.joins.send(join).await.ok()?;
    answer.await.ok()
}

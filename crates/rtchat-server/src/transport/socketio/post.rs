//! `msg:post`: validated like `POST /poll`, stored in its room (`general` unless it names
//! one; a first post creates the room, within `--max-rooms`), then broadcast to every
//! transport. Posts from one socket are stored in the order sent; they obey the post rate
//! limits ([`crate::rate_limit`]), a refused one answered at once with `"retry_after_ms"`.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::token::Identity;
use crate::auth::Auth;

use rtchat_core::{Hub, Limits, NewPost, GENERAL};
use rtchat_protocol::socketio::Refusal;
use rtchat_protocol::PostAck;
use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::handler::{FromMessageParts, Value as SioValue};
use socketioxide::socket::Socket;
use tokio::sync::oneshot;

use super::chain::{Chain, Place};
use super::wire::Answer;
use crate::metrics::{Metrics, PostRefusal, Via};
use crate::rate_limit::{ConnectionBucket, PostLimiter, Refused};
use crate::state::AppState;

/// The answer to a `msg:post` carrying binary attachments.
const BINARY_REFUSED: &str =
    "binary attachments are not accepted: \"user\" and \"text\" must be strings";
/// Posts one socket may have in flight (stored in order, one after the other).
pub(super) const POSTS_IN_FLIGHT: usize = 64;

/// Stores `msg:post`s, each socket's in the order sent.
#[derive(Clone)]
pub(super) struct Poster {
    pub hub: Hub,
    pub limits: Limits,
    /// The post rate limits and the trusted proxies.
    pub state: AppState,
}

impl Poster {
    /// Takes a post in arrival order: it gets its place in the socket's [`PostChain`] now, and
    /// the returned future (run as a task by socketioxide) hands it to the hub once every
    /// earlier post of the socket has been handed over (the hub stores posts in the order
    /// they are handed to it), then answers it once stored. A socket's posts are thus stored
    /// in the order sent, and one slow commit does not hold up the next posts' way to the
    /// store.
    pub fn enqueue(
        &self,
        post: QueuedPost,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let socket = &post.answer.socket;
        let chain = socket.extensions.get::<PostChain>().unwrap_or_else(|| {
            let parts = socket.req_parts();
            let client = self
                .state
                .proxies
                .client_of(&parts.extensions, &parts.headers);
            let chain = PostChain::new(self.state.posts.connection_bucket(), client.map(|c| c.ip));
            socket.extensions.insert(chain.clone());
            chain
        });
        // Counted in arrival order; a refused post is answered at once, not after the posts
        // still waiting for the store.
        let refused = chain.check_rate(&self.state.posts).err();
        if let Some(refused) = &refused {
            self.state.metrics.rate_limited(refused);
        }
        let place = refused.is_none().then(|| chain.take_place()).flatten();
        let (hub, limits) = (self.hub.clone(), self.limits);
        let metrics = self.state.metrics.clone();
        let auth = self.state.auth.clone();
        // `--auth token`: the socket's token holder posts (one lookup per post, none without).
        let who = self
            .state
            .auth
            .enabled()
            .then(|| socket.extensions.get::<Arc<Identity>>())
            .flatten();
        async move {
            if let Some(refused) = refused {
                let room = post.room().map(str::to_owned);
                return post.answer.refuse(&Refusal {
                    error: refused.to_string(),
                    room,
                    retry_after_ms: Some(refused.retry_after_ms()),
                });
            }
            let Some(mut place) = place else {
                metrics.post_refused(PostRefusal::InFlight);
                let refusal = Refusal::new(
                    format!(
                        "too many messages in flight (more than {POSTS_IN_FLIGHT}); wait for the acknowledgements"
                    ),
                    post.room(),
                );
                return post.answer.refuse(&refusal);
            };
            place.turn().await;
            let who = who.as_deref();
            store_post(&hub, &limits, (&auth, who), &metrics, post, place.done).await;
            chain.release();
        }
    }
}

/// A socket's posts in flight, chained so that each is handed to the hub after the one sent
/// before it, and its post rate limits. Made on the socket's first post: an idle socket holds
/// no queue, no bucket and no task.
#[derive(Clone, Default)]
pub(super) struct PostChain(Arc<std::sync::Mutex<ChainState>>);

#[derive(Default)]
struct ChainState {
    /// The posts taken and not answered yet, in order.
    chain: Chain,
    /// The socket's own post bucket (`None`: posts are not limited per connection).
    bucket: Option<Box<ConnectionBucket>>,
    /// The socket's client address, for the per-address bucket.
    client: Option<IpAddr>,
}

impl PostChain {
    fn new(bucket: Option<Box<ConnectionBucket>>, client: Option<IpAddr>) -> PostChain {
        PostChain(Arc::new(std::sync::Mutex::new(ChainState {
            bucket,
            client,
            ..ChainState::default()
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one post from the socket's bucket and its address's, or says why not.
    fn check_rate(&self, limiter: &PostLimiter) -> Result<(), Refused> {
        let state = self.state();
        limiter.check(state.bucket.as_deref(), state.client)
    }

    /// A place at the end of the chain: what to wait for first, and the signal to drop once
    /// handed to the hub. `None` when [`POSTS_IN_FLIGHT`] posts are not answered yet.
    fn take_place(&self) -> Option<Place> {
        self.state().chain.take(POSTS_IN_FLIGHT)
    }

    /// Leaves the chain once answered (its signal was dropped before), and forgets the tail
    /// when nothing follows.
    fn release(&self) {
        self.state().chain.release();
    }
}

/// One `msg:post`, as read.
pub(super) struct QueuedPost {
    data: Result<Value, String>,
    answer: Answer,
}

impl QueuedPost {
    /// The room the post names, if it names one as a string.
    fn room(&self) -> Option<&str> {
        self.data.as_ref().ok()?.get("room")?.as_str()
    }
}

/// The `msg:post` extractor: everything a post needs, including whether the client asked for
/// an acknowledgement (which [`AckSender`](socketioxide::extract::AckSender) does not tell).
pub(super) struct Enqueued(pub QueuedPost);

impl FromMessageParts<LocalAdapter> for Enqueued {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<LocalAdapter>>,
        v: &mut SioValue,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let (data, answer) = Answer::read(s, v, ack_id);
        Ok(Enqueued(QueuedPost { data, answer }))
    }
}

/// The room of a post: `general` unless it names another (as a string).
fn post_room(value: &Value) -> Result<&str, Refusal> {
    match value.get("room") {
        None | Some(Value::Null) => Ok(GENERAL),
        Some(Value::String(room)) => Ok(room),
        Some(_) => Err(Refusal::new("\"room\" must be a string", None)),
    }
}

/// Validates, stores and answers one post.
/// `handed_over` is dropped as soon as the hub has the post (or it is refused), so that the
/// socket's next post may follow it.
async fn store_post(
    hub: &Hub,
    limits: &Limits,
    (auth, who): (&Auth, Option<&Identity>),
    metrics: &Metrics,
    post: QueuedPost,
    handed_over: oneshot::Sender<()>,
) {
    let QueuedPost { data, answer } = post;
    let value = match data {
        Ok(value) => value,
        Err(e) if e.contains("byte array") => {
            metrics.post_refused(PostRefusal::Invalid);
            return answer.refuse(&Refusal::new(BINARY_REFUSED, None));
        }
        Err(_) => Value::Null,
    };
    let named = value.get("room").and_then(Value::as_str).map(str::to_owned);
    let room = match post_room(&value) {
        Ok(room) => room,
        Err(refusal) => {
            metrics.post_refused(PostRefusal::Invalid);
            return answer.refuse(&refusal);
        }
    };
    // `--auth token`: the token's `rooms` claim, private rooms, direct messages.
    if let Err(e) = auth.may_post(who, room) {
        metrics.post_refused(PostRefusal::Unauthorized);
        return answer.refuse(&Refusal::new(e.to_string(), Some(room)));
    }
    let poster = who.map(Identity::poster);
    let result = match NewPost::from_value_by(&value, limits, poster.as_ref()) {
        Ok(new) => match hub.submit(room, new).await {
            Ok(ticket) => {
                drop(handed_over);
                ticket.await.map(|entry| entry.message.id)
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    metrics.post_result(Via::SocketIo, &result);
    match result {
        Ok(id) => answer.ok(&PostAck::ok(id)),
        Err(e) => {
            if !e.is_client_error() {
                tracing::warn!(error = %e, room, "Socket.IO post not stored");
            }
            answer.refuse(&Refusal::new(e.to_string(), named.as_deref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn post_chain_orders_and_limits() {
        let chain = PostChain::default();
        let mut places: Vec<_> = (0..POSTS_IN_FLIGHT)
            .map(|_| chain.take_place().expect("a place"))
            .collect();
        assert!(chain.take_place().is_none(), "more than POSTS_IN_FLIGHT");
        assert!(
            places[0].previous.is_none(),
            "the first post waits for nothing"
        );
        let second = places.remove(1);
        let first = places.remove(0);
        let second_waits = second.previous.expect("the second waits for the first");
        // The first is handed to the hub: the second may follow, though the first is not
        // answered yet (its place stays taken until it is).
        drop(first.done);
        second_waits.await.unwrap_err();
        assert!(
            chain.take_place().is_none(),
            "handed over is still in flight"
        );
        chain.release();
        drop(second.done);
        chain.release();
        assert!(
            chain.take_place().is_some(),
            "answered posts free their places"
        );
        for place in places {
            drop(place.done);
            chain.release();
        }
        chain.release();
        let state = chain.state();
        assert_eq!(state.chain.in_flight(), 0);
        assert!(!state.chain.has_tail(), "an empty chain keeps no tail");
    }

    #[test]
    fn a_post_names_its_room_or_goes_to_general() {
        assert_eq!(
            post_room(&serde_json::json!({"user": "a"})).unwrap(),
            GENERAL
        );
        assert_eq!(
            post_room(&serde_json::json!({"room": null})).unwrap(),
            GENERAL
        );
        assert_eq!(post_room(&serde_json::json!({"room": "b"})).unwrap(), "b");
        assert!(post_room(&serde_json::json!({"room": 5})).is_err());
    }
}

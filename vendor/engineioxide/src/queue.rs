//! The packet buffer of a session: the packets emitted to a client, waiting for its transport.
//!
//! A bounded FIFO behind a mutex, replacing a `tokio::sync::mpsc` channel (and the `watch`
//! channel of volatile packets). It allocates nothing while it is empty (an mpsc channel holds a
//! block of 32 slots, about 5 KiB for `PacketBuf`s, for its whole life, plus its padded shared
//! state), so an idle session costs a few words here. It also tells what an mpsc channel does
//! not:
//! * [`Queue::overflowed`]: an emit was refused because the buffer was full (sticky), so the
//!   owner of many sockets can find the ones that missed a broadcast;
//! * [`Queue::drained`]: wait until at most `n` packets are waiting, so a producer can pace
//!   itself on the client instead of filling the buffer;
//! * control packets (ping, pong, close, noop) are never refused for want of room
//!   ([`Queue::force_send`]): a full buffer no longer turns into a heartbeat failure.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use engineioxide_core::PacketBuf;
use tokio::sync::{Notify, mpsc::error::TrySendError};

/// See the module docs.
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Wakes those waiting in [`Queue::drained`] and [`Queue::closed`].
    space: Notify,
    /// The most packet groups waiting (and reserved) at once.
    max: usize,
}

#[derive(Default)]
struct State {
    packets: VecDeque<PacketBuf>,
    /// Places taken by [`Permit`](crate::socket::Permit)s not used yet.
    reserved: usize,
    /// The latest volatile packets, sent when nothing else waits.
    volatile: Option<Box<PacketBuf>>,
    /// The transport waiting for packets.
    rx_waker: Option<Waker>,
    closed: bool,
    overflowed: bool,
    /// Someone waits in `drained` or `closed`: notify `space` on the next change.
    watched: bool,
}

impl State {
    fn take_watched(&mut self) -> bool {
        std::mem::take(&mut self.watched)
    }
}

impl Queue {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            space: Notify::new(),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for one packet group, or says why not (a full buffer is remembered, see
    /// [`Queue::overflowed`]).
    pub(crate) fn try_reserve(&self) -> Result<(), TrySendError<()>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(()));
        }
        if state.packets.len() + state.reserved >= self.max {
            state.overflowed = true;
            return Err(TrySendError::Full(()));
        }
        state.reserved += 1;
        Ok(())
    }

    /// Gives back a place taken by [`Queue::try_reserve`], with or without packets for it.
    pub(crate) fn release(&self, packets: Option<PacketBuf>) {
        let mut state = self.lock();
        state.reserved -= 1;
        let waker = match packets {
            Some(packets) if !state.closed => {
                state.packets.push_back(packets);
                state.rx_waker.take()
            }
            _ => None,
        };
        let watched = state.take_watched();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        if watched {
            self.space.notify_waiters();
        }
    }

    /// Queues packets if there is room (a full buffer is remembered, see
    /// [`Queue::overflowed`]).
    pub(crate) fn try_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        self.push(packets, false)
    }

    /// Queues control packets (ping, pong, close, noop) even when the buffer is full: there
    /// is at most one of each in flight, and refusing them would end the session for the
    /// wrong reason (a heartbeat failure).
    pub(crate) fn force_send(&self, packets: PacketBuf) -> Result<(), TrySendError<PacketBuf>> {
        self.push(packets, true)
    }

    fn push(&self, packets: PacketBuf, force: bool) -> Result<(), TrySendError<PacketBuf>> {
        let mut state = self.lock();
        if state.closed {
            return Err(TrySendError::Closed(packets));
        }
        if !force && state.packets.len() + state.reserved >= self.max {
            state.overflowed = true;
            return Err(TrySendError::Full(packets));
        }
        state.packets.push_back(packets);
        let waker = state.rx_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Replaces the volatile packets not sent yet. False once the queue is closed.
    pub(crate) fn send_volatile(&self, packets: PacketBuf) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.volatile = Some(Box::new(packets));
        let waker = state.rx_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// The next packets for the transport: the buffered ones first, then the volatile ones;
    /// `None` once closed and empty. Only one task receives at a time (the holder of the
    /// socket's `internal_rx` lock).
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<PacketBuf>> {
        let mut state = self.lock();
        if let Some(packets) = self.pop(&mut state) {
            return Poll::Ready(Some(packets));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.rx_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// [`Queue::poll_recv`] without waiting.
    pub(crate) fn try_recv(&self) -> Option<PacketBuf> {
        let mut state = self.lock();
        self.pop(&mut state)
    }

    #[cfg_attr(not(any(test, feature = "__test_harness")), allow(dead_code))]
    pub(crate) async fn recv(&self) -> Option<PacketBuf> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn pop(&self, state: &mut State) -> Option<PacketBuf> {
        let packets = match state.packets.pop_front() {
            Some(packets) => {
                if state.packets.is_empty() {
                    // Idle sessions hold no buffer: it is allocated again by the next burst.
                    state.packets = VecDeque::new();
                }
                packets
            }
            None => *state.volatile.take()?,
        };
        if state.take_watched() {
            self.space.notify_waiters();
        }
        Some(packets)
    }

    /// Closes the queue: no packet is accepted any more; those waiting can still be received.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        let waker = state.rx_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        self.space.notify_waiters();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Resolves once the queue is closed.
    pub(crate) async fn closed(&self) {
        self.wait(|state| state.closed.then_some(())).await
    }

    /// Resolves once at most `n` packet groups wait (reserved places included), or with
    /// `Err` once the queue is closed.
    pub(crate) async fn drained(&self, n: usize) -> Result<(), ()> {
        self.wait(|state| {
            if state.closed {
                Some(Err(()))
            } else if state.packets.len() + state.reserved <= n {
                Some(Ok(()))
            } else {
                None
            }
        })
        .await
    }

    async fn wait<T>(&self, mut ready: impl FnMut(&State) -> Option<T>) -> T {
        loop {
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(value) = ready(&state) {
                    return value;
                }
                state.watched = true;
            }
            notified.await;
        }
    }

    /// Packet groups waiting (reserved places included).
    pub(crate) fn len(&self) -> usize {
        let state = self.lock();
        state.packets.len() + state.reserved
    }

    /// The most packet groups that may wait.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// True once an emit was refused because the buffer was full.
    pub(crate) fn overflowed(&self) -> bool {
        self.lock().overflowed
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Queue")
            .field("len", &state.packets.len())
            .field("reserved", &state.reserved)
            .field("max", &self.max)
            .field("closed", &state.closed)
            .field("overflowed", &state.overflowed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use engineioxide_core::{Packet, Str};
    use smallvec::smallvec;
    use std::time::Duration;

    fn msg(s: &'static str) -> PacketBuf {
        smallvec![Packet::Message(Str::from(s))]
    }

    #[tokio::test]
    async fn bounded_fifo_that_remembers_overflows() {
        let q = Queue::new(2);
        q.try_send(msg("a")).unwrap();
        q.try_reserve().unwrap();
        assert!(!q.overflowed());
        assert!(matches!(q.try_send(msg("b")), Err(TrySendError::Full(_))));
        assert!(q.overflowed());
        q.force_send(smallvec![Packet::Ping]).unwrap();
        q.release(Some(msg("c")));
        let got: Vec<_> = std::iter::from_fn(|| q.try_recv()).collect();
        assert_eq!(got, vec![msg("a"), smallvec![Packet::Ping], msg("c")]);
        assert!(q.overflowed(), "overflows are sticky");
        q.close();
        assert!(matches!(q.try_send(msg("d")), Err(TrySendError::Closed(_))));
        assert_eq!(q.recv().await, None);
    }

    #[tokio::test]
    async fn volatile_packets_come_after_the_buffered_ones() {
        let q = Queue::new(4);
        assert!(q.send_volatile(msg("v1")));
        assert!(q.send_volatile(msg("v2")));
        q.try_send(msg("a")).unwrap();
        assert_eq!(q.recv().await, Some(msg("a")));
        assert_eq!(q.recv().await, Some(msg("v2")));
        assert_eq!(q.try_recv(), None);
    }

    #[tokio::test]
    async fn drained_waits_for_the_receiver() {
        let q = std::sync::Arc::new(Queue::new(8));
        for _ in 0..5 {
            q.try_send(msg("x")).unwrap();
        }
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.drained(2).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        q.try_recv().unwrap();
        q.try_recv().unwrap();
        q.try_recv().unwrap();
        assert_eq!(waiter.await.unwrap(), Ok(()));
        let closed = tokio::spawn({
            let q = q.clone();
            async move { q.drained(0).await }
        });
        q.close();
        assert_eq!(closed.await.unwrap(), Err(()));
        q.closed().await;
    }

    #[tokio::test]
    async fn the_receiver_is_woken() {
        let q = std::sync::Arc::new(Queue::new(8));
        let rx = tokio::spawn({
            let q = q.clone();
            async move { q.recv().await }
        });
        tokio::task::yield_now().await;
        q.try_send(msg("x")).unwrap();
        assert_eq!(rx.await.unwrap(), Some(msg("x")));
    }
}

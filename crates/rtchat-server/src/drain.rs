//! Stopping in two phases, so a load balancer moves clients away before they are cut off and
//! thousands of clients do not all reconnect in the same second.
//!
//! 1. **Draining** ([`Drain::begin`], on SIGTERM): `GET /readyz` answers 503 at once, and
//!    everything else goes on as before, accepting included, for `--drain-delay`: time for a
//!    balancer's readiness probe to notice and stop sending new clients.
//! 2. **Stopping** ([`Drain::stop`]): the listeners stop accepting (the stop token fires;
//!    idle HTTP/1.1 connections close, HTTP/2 and HTTP/3 ones get `GOAWAY`), and every live
//!    connection (a WebSocket, an SSE or `/msgs` stream, a parked long poll) ends at its own
//!    [`Deadline`]: a moment drawn at random, uniformly over the close window that starts
//!    there. SIGTERM's window is `--drain-seconds`; SIGINT stops with an empty window, so
//!    everything closes at once (a person at the terminal wants it gone), and a second signal
//!    during a drain ([`Drain::hurry`]) closes what is left at once too.
//!
//! The shell waits for connections at most until the end of the window plus [`GRACE`] (for
//! closing handshakes and last writes), and not at all when none is open.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How long connections get, after their deadline, to finish closing (a WebSocket's closing
/// handshake, the end of a response) before the server exits without them.
pub const GRACE: Duration = Duration::from_secs(2);

/// The server's shutdown state, shared by the listeners, the transports and `/readyz`.
/// Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Drain(Arc<Inner>);

struct Inner {
    /// `/readyz` answers 503 from the first signal on.
    draining: AtomicBool,
    /// Fires when the listeners stop accepting (phase 2).
    stop: CancellationToken,
    /// Fires when every remaining connection should close now (a second signal).
    hurry: CancellationToken,
    /// The close window: when phase 2 started and how long it spreads the closes over. Set
    /// once, just before `stop` fires.
    window: Mutex<Option<(Instant, Duration)>>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new(CancellationToken::new())
    }
}

impl Drain {
    /// A drain whose phase 2 is `stop` being cancelled (by [`Drain::stop`], or by whoever
    /// else holds the token: then everything closes at once, as with SIGINT).
    pub fn new(stop: CancellationToken) -> Drain {
        Drain(Arc::new(Inner {
            draining: AtomicBool::new(false),
            stop,
            hurry: CancellationToken::new(),
            window: Mutex::new(None),
        }))
    }

    /// Phase 1: readiness turns 503; nothing else changes.
    pub fn begin(&self) {
        self.0.draining.store(true, Ordering::Release);
    }

    /// True from [`Drain::begin`] (or [`Drain::stop`]) on: `/readyz` answers 503.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Acquire) || self.0.stop.is_cancelled()
    }

    /// Phase 2: stop accepting, and close every live connection at a random moment within
    /// `spread` from now (`Duration::ZERO`: all at once). A second call changes nothing.
    pub fn stop(&self, spread: Duration) {
        self.begin();
        {
            let mut window = self.0.window.lock().unwrap_or_else(|e| e.into_inner());
            if window.is_none() {
                *window = Some((Instant::now(), spread));
            }
        }
        self.0.stop.cancel();
    }

    /// Closes what is still open at once (a second signal during a drain); stops first if
    /// that has not happened yet.
    pub fn hurry(&self) {
        self.stop(Duration::ZERO);
        self.0.hurry.cancel();
    }

    /// The token that fires when the listeners stop accepting.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.0.stop
    }

    /// A new connection's (or request's) moment to close, drawn now.
    pub fn deadline(&self) -> Deadline {
        Deadline {
            drain: self.clone(),
            fraction: fastrand::f32(),
        }
    }

    /// The close window, once phase 2 has started. A stop token cancelled from outside
    /// (without [`Drain::stop`]) means an empty window starting at once.
    fn window(&self) -> (Instant, Duration) {
        let mut window = self.0.window.lock().unwrap_or_else(|e| e.into_inner());
        *window.get_or_insert_with(|| (Instant::now(), Duration::ZERO))
    }

    /// Resolves when the server should give up waiting for connections: the end of the close
    /// window plus [`GRACE`] (or, after [`Drain::hurry`], [`GRACE`] from then).
    pub async fn give_up(&self) {
        self.0.stop.cancelled().await;
        let (start, spread) = self.window();
        let hurried = async {
            self.0.hurry.cancelled().await;
            tokio::time::sleep(GRACE).await;
        };
        tokio::select! {
            () = tokio::time::sleep_until(start + spread + GRACE) => {}
            () = hurried => {}
        }
    }

    /// Resolves at the end of the close window (at once after [`Drain::hurry`]): when what
    /// can only be closed all together (Socket.IO sessions) is closed.
    pub async fn window_end(&self) {
        self.0.stop.cancelled().await;
        let (start, spread) = self.window();
        tokio::select! {
            () = tokio::time::sleep_until(start + spread) => {}
            () = self.0.hurry.cancelled() => {}
        }
    }
}

/// When one connection closes once the server stops: a fixed fraction of the close window,
/// drawn when the connection opened. [`Deadline::reached`] can be awaited afresh on every
/// turn of a loop: it always resolves at the same moment.
#[derive(Clone)]
pub struct Deadline {
    drain: Drain,
    fraction: f32,
}

impl Deadline {
    /// Resolves at this connection's moment in the close window (never before the server
    /// stops accepting; at once if it stops with an empty window, or hurries).
    pub async fn reached(&self) {
        self.drain.0.stop.cancelled().await;
        // Boxed: until the stop this future is only the token's (it sits in every idle
        // connection's task); the timer is allocated once the window opens.
        Box::pin(self.in_window()).await
    }

    async fn in_window(&self) {
        let inner = &self.drain.0;
        let (start, spread) = self.drain.window();
        if spread.is_zero() {
            return;
        }
        let at = start + spread.mul_f32(self.fraction);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = inner.hurry.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_spread_over_the_window_after_the_stop() {
        let drain = Drain::default();
        let deadlines: Vec<Deadline> = (0..200).map(|_| drain.deadline()).collect();
        drain.begin();
        assert!(drain.is_draining());
        // Nothing closes while draining, before the stop.
        let early = tokio::time::timeout(Duration::from_secs(60), deadlines[0].reached()).await;
        assert!(early.is_err());
        let start = Instant::now();
        drain.stop(Duration::from_secs(10));
        let mut at = Vec::new();
        for d in &deadlines {
            d.reached().await;
            at.push(Instant::now() - start);
        }
        // Awaited in order of creation, so each resolves at max(its moment, the previous).
        let last = *at.last().unwrap();
        assert!(last <= Duration::from_secs(10), "{last:?}");
        assert!(
            last >= Duration::from_secs(9),
            "200 draws reach the end: {last:?}"
        );
        // The same deadline again resolves at the same moment (it is already past).
        let again = Instant::now();
        deadlines[0].reached().await;
        assert_eq!(Instant::now(), again);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_window_or_a_hurry_closes_at_once() {
        let drain = Drain::default();
        let d = drain.deadline();
        drain.stop(Duration::ZERO);
        let start = Instant::now();
        d.reached().await;
        assert_eq!(Instant::now(), start);

        let drain = Drain::default();
        let d = drain.deadline();
        drain.stop(Duration::from_secs(3600));
        drain.hurry();
        let start = Instant::now();
        d.reached().await;
        drain.window_end().await;
        assert_eq!(Instant::now(), start);
    }
}

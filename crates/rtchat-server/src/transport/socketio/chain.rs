//! A socket's requests of one kind (its posts; its room requests) handled in the order sent,
//! though socketioxide runs each as a task of its own: each takes its place at the end of a
//! chain while socketioxide reads its packet (in arrival order), waits for the one before it,
//! and lets the next one go by dropping its signal. At most a given number wait at once.

use tokio::sync::oneshot;

/// One request's place in a [`Chain`].
pub(super) struct Place {
    /// Completes once the request before this one let go (`None`: nothing before).
    pub previous: Option<oneshot::Receiver<()>>,
    /// Dropped to let the next request go.
    pub done: oneshot::Sender<()>,
}

impl Place {
    /// Waits for the request before this one to let go.
    pub async fn turn(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = previous.await;
        }
    }
}

/// The end of the chain and how many requests are in it.
#[derive(Default)]
pub(super) struct Chain {
    /// Completes (its sender is dropped) once the newest request taken so far lets go.
    tail: Option<oneshot::Receiver<()>>,
    /// Requests taken and not released yet.
    in_flight: usize,
}

impl Chain {
    /// A place at the end of the chain; `None` when `max` requests are in it already.
    pub fn take(&mut self, max: usize) -> Option<Place> {
        if self.in_flight >= max {
            return None;
        }
        self.in_flight += 1;
        let (done, next) = oneshot::channel();
        Some(Place {
            previous: self.tail.replace(next),
            done,
        })
    }

    /// A request left the chain (answered); the tail is forgotten when nothing follows.
    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if self.in_flight == 0 {
            self.tail = None;
        }
    }

    /// Requests in the chain.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the chain keeps a tail (it does not once empty).
    #[cfg(test)]
    pub fn has_tail(&self) -> bool {
        self.tail.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_follow_one_another() {
        let mut chain = Chain::default();
        let mut first = chain.take(2).unwrap();
        let mut second = chain.take(2).unwrap();
        assert!(chain.take(2).is_none(), "at most 2");
        first.turn().await; // nothing before it
        let waiting = tokio::spawn(async move {
            second.turn().await;
            second
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the second waits for the first");
        drop(first.done);
        let second = waiting.await.unwrap();
        chain.release();
        drop(second.done);
        chain.release();
        assert_eq!(chain.in_flight(), 0);
        assert!(!chain.has_tail());
    }
}

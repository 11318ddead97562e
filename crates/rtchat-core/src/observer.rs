//! What the hub tells whoever watches it (the server's `/metrics`) about its own work: store
//! commits and lagging subscribers. The core knows no transport and no metrics library; it
//! calls a [`HubObserver`] set once with [`Hub::set_observer`](crate::Hub::set_observer).

use std::time::Duration;

/// Receives the hub's events. Called on the hub's hot paths (the writer after each commit, a
/// subscriber when it lags), so an implementation must be cheap and must not block. Every
/// method does nothing by default.
pub trait HubObserver: Send + Sync + 'static {
    /// The writer stored a batch of `posts` posts (of any channels) in one commit that took
    /// `took` (one SQLite transaction and its fsync, with the SQLite store).
    fn committed(&self, _posts: usize, _took: Duration) {}

    /// A subscriber fell more than [`HubConfig::queue`](crate::HubConfig::queue) events
    /// behind; `missed` events were dropped for it (see [`crate::channel`]).
    fn lagged(&self, _missed: u64) {}
}

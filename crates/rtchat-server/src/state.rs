//! The state every handler shares.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use rtchat_core::Hub;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::auth::Auth;
use crate::client_addr::TrustedProxies;
use crate::config::ServerConfig;
use crate::drain::Drain;
use crate::metrics::Metrics;
use crate::origin::OriginPolicy;
use crate::rate_limit::PostLimiter;

/// What every handler can reach: the chat, the settings, and the shutdown signal (parked
/// requests answer when it fires). Cloned several times per request (router, middleware,
/// extractors), so it is one `Arc`: a clone is one atomic increment.
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

/// The fields behind [`AppState`], reached through `Deref` (`state.hub`, `state.config`...).
pub struct SharedState {
    pub hub: Hub,
    pub config: Arc<ServerConfig>,
    /// Fires when the server stops accepting (the drain's stop token): what closes at once
    /// then uses it; live connections close at their [`Drain::deadline`] instead.
    pub shutdown: CancellationToken,
    /// Readiness (`/readyz`) and each live connection's moment to close (see
    /// [`crate::drain`]).
    pub drain: Drain,
    /// Hub subscriptions rtchat holds for itself (the Socket.IO fan-out), which
    /// `rtchat_subscribers` does not count.
    pub internal_subscriptions: AtomicUsize,
    /// What `GET /metrics` reports (see [`crate::metrics`]); also the hub's observer.
    pub metrics: Arc<Metrics>,
    /// Which browser origins may post, open WebSockets and Socket.IO sessions.
    pub origins: OriginPolicy,
    /// Tasks that outlive their request (upgraded WebSockets): shutdown waits for them to
    /// finish their closing handshakes.
    pub tasks: TaskTracker,
    /// The connection caps, shared by both listeners.
    pub admission: Arc<Admission>,
    /// Whose `Forwarded` headers are believed.
    pub proxies: TrustedProxies,
    /// How fast connections and client addresses may post (`--post-rate`...).
    pub posts: PostLimiter,
    /// The HTTPS port bound and whether HTTP/3 is served, for `GET /config`.
    pub listening: crate::page_config::Listening,
    /// Who is who (`--auth`): token checks, revocations, and the accounts' directory.
    pub auth: Arc<Auth>,
    /// With `--store redis://`: the shared store and this node's address for the others
    /// (set once at start; see [`crate::transport::socketio::owner`]).
    pub cluster: std::sync::OnceLock<Cluster>,
}

/// This node as the other nodes of a cluster reach it.
#[derive(Clone)]
pub struct Cluster {
    pub store: rtchat_core::RedisStore,
    /// `host:port` of this node's plain HTTP listener (`--cluster-addr`).
    pub addr: String,
}

impl AppState {
    pub fn new(config: Arc<ServerConfig>, hub: Hub, drain: Drain, auth: Arc<Auth>) -> AppState {
        let limits = &config.connections;
        let proxies = TrustedProxies::new(limits.trusted_proxies.clone());
        let metrics = Arc::new(Metrics::new());
        hub.set_observer(metrics.clone());
        AppState(Arc::new(SharedState {
            hub,
            shutdown: drain.stop_token().clone(),
            drain,
            internal_subscriptions: AtomicUsize::new(0),
            origins: OriginPolicy::new(&config.allow_origins, proxies.clone()),
            tasks: TaskTracker::new(),
            admission: Admission::new(
                limits.max_total,
                limits.max_per_ip,
                proxies.clone(),
                metrics.clone(),
            ),
            metrics,
            proxies,
            posts: PostLimiter::new(config.posts),
            listening: Default::default(),
            auth,
            config,
            cluster: Default::default(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

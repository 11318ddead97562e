//! rtchat's server shell: configuration, listeners, routing, static assets and the
//! transports, each a thin adapter from its wire format to the [`rtchat_core::Hub`].
//!
//! [`Server::bind`] opens the listener (so address errors surface before anything else),
//! and [`Server::run`] serves until the shutdown token is cancelled.

mod api;
mod assets;
pub mod config;
mod listener;
mod request_log;
mod router;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use rtchat_core::Hub;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::ServerConfig;
pub use router::AppState;

/// A bound, not yet serving rtchat server.
pub struct Server {
    listener: TcpListener,
    state: AppState,
}

/// Why the server could not start; the text is shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: the address is already in use (is another rtchat running? choose another with --listen or PORT)")]
    AddrInUse { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl Server {
    /// Binds the listener for `config.listen`.
    pub async fn bind(
        config: ServerConfig,
        hub: Hub,
        shutdown: CancellationToken,
    ) -> Result<Server, StartError> {
        let addr = config.listen;
        let listener = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                StartError::AddrInUse { addr }
            } else {
                StartError::Bind { addr, source }
            }
        })?;
        let state = AppState::new(Arc::new(config), hub, shutdown);
        Ok(Server { listener, state })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting, answers parked
    /// requests and waits (briefly) for open connections to finish.
    pub async fn run(self) {
        let app = router::build(self.state.clone());
        listener::serve(self.listener, app, self.state.shutdown.clone()).await;
    }
}

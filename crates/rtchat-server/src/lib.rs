//! rtchat's server shell: configuration, listeners, TLS, routing, static assets and the
//! transports, each a thin adapter from its wire format to the [`rtchat_core::Hub`].
//!
//! [`Server::bind`] opens the listeners (so address and certificate errors surface before
//! anything else), and [`Server::run`] serves until the shutdown token is cancelled.

pub mod admission;
mod api;
mod assets;
pub mod client_addr;
pub mod config;
mod listener;
pub mod origin;
mod request_log;
mod router;
pub mod tls;
pub mod transport;
mod write_stall;

use std::net::SocketAddr;
use std::sync::Arc;

use rtchat_core::Hub;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{ConnectionLimits, ServerConfig, Timeouts, TlsListen};
pub use router::AppState;

/// A bound, not yet serving rtchat server.
pub struct Server {
    listener: TcpListener,
    tls: Option<(TcpListener, tls::Tls)>,
    state: AppState,
}

/// Why the server could not start; the text is shown to the user as is.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: the address is already in use (is another rtchat running? choose another with {flag})")]
    AddrInUse {
        addr: SocketAddr,
        flag: &'static str,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

async fn bind(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            StartError::AddrInUse { addr, flag }
        } else {
            StartError::Bind { addr, source }
        }
    })
}

impl Server {
    /// Loads TLS material and binds the listeners.
    pub async fn bind(
        config: ServerConfig,
        hub: Hub,
        shutdown: CancellationToken,
    ) -> Result<Server, StartError> {
        let tls = match &config.tls {
            None => None,
            Some(tls_listen) => {
                let tls = tls::load(&tls_listen.cert)?;
                match bind(tls_listen.addr, "--tls-listen").await {
                    Ok(listener) => Some((listener, tls)),
                    Err(StartError::AddrInUse { addr, .. }) if !tls_listen.explicit => {
                        tracing::warn!(%addr, "the default HTTPS address is in use; serving plain HTTP only (choose another with --tls-listen)");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let listener = bind(config.listen, "--listen or PORT").await?;
        let state = AppState::new(Arc::new(config), hub, shutdown);
        Ok(Server {
            listener,
            tls,
            state,
        })
    }

    /// The plain HTTP address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The HTTPS address actually bound, if HTTPS is served.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The certificate in use, if HTTPS is served.
    pub fn tls_info(&self) -> Option<&tls::Tls> {
        self.tls.as_ref().map(|(_, t)| t)
    }

    /// Serves until the shutdown token is cancelled, then stops accepting, answers parked
    /// requests and waits (briefly) for open connections to finish.
    pub async fn run(self) {
        let app = router::build(self.state.clone());
        let settings = listener::HttpSettings {
            h2_max_streams: self.state.config.h2_max_streams,
            timeouts: self.state.config.timeouts,
        };
        let admission = self.state.admission.clone();
        let shutdown = self.state.shutdown.clone();
        let plain = listener::serve(
            self.listener,
            None,
            app.clone(),
            settings,
            admission.clone(),
            shutdown.clone(),
        );
        let secure = async {
            if let Some((tls_listener, tls)) = self.tls {
                let config = Some(tls.config);
                listener::serve(
                    tls_listener,
                    config,
                    app,
                    settings,
                    admission,
                    shutdown.clone(),
                )
                .await;
            }
        };
        // Upgraded connections (WebSockets) are no longer HTTP connections: wait for their
        // closing handshakes alongside, which they start when shutdown fires.
        let tasks = self.state.tasks.clone();
        let upgraded = async {
            shutdown.cancelled().await;
            tasks.close();
            if tokio::time::timeout(std::time::Duration::from_secs(2), tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = tasks.len(),
                    "WebSockets still open after 2 s; closing anyway"
                );
            }
        };
        tokio::join!(plain, secure, upgraded);
    }
}

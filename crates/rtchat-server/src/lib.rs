//! rtchat's server shell: configuration, listeners, TLS, routing, static assets and the
//! transports, each a thin adapter from its wire format to the [`rtchat_core::Hub`].
//!
//! [`Server::bind`] opens the listeners (so address and certificate errors surface before
//! anything else), and [`Server::run`] serves until the shutdown token is cancelled.

pub mod admission;
mod api;
mod assets;
pub mod auth;
pub mod client_addr;
pub mod config;
pub mod drain;
pub mod h3;
mod health;
mod listener;
pub mod metrics;
pub mod origin;
mod page_config;
pub mod rate_limit;
mod request_log;
mod router;
mod state;
pub mod tls;
pub mod transport;
mod write_stall;

use std::net::SocketAddr;
use std::sync::Arc;

use rtchat_core::Hub;
use tokio::net::TcpListener;

pub use config::{
    Congestion, ConnectionLimits, H3Listen, PostLimits, ServerConfig, Timeouts, TlsListen,
};
pub use drain::Drain;
pub use state::{AppState, Cluster};

/// A bound, not yet serving rtchat server.
pub struct Server {
    listener: TcpListener,
    tls: Option<(TcpListener, tls::Tls)>,
    /// The HTTP/3 (QUIC) endpoint, served with the HTTPS listener.
    h3: Option<quinn::Endpoint>,
    /// The `GET /metrics` listener (`--metrics-listen`).
    metrics: Option<TcpListener>,
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
    /// Loads TLS material and binds the listeners. The server stops as `drain` says (see
    /// [`crate::drain`]).
    pub async fn bind(
        config: ServerConfig,
        hub: Hub,
        drain: Drain,
        auth: Arc<auth::Auth>,
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
        let h3 = match (&tls, config.h3) {
            (Some((tls_listener, tls)), Some(h3_listen)) => {
                bind_h3(&config, tls_listener, tls, h3_listen)?
            }
            _ => None,
        };
        let listener = bind(config.listen, "--listen or PORT").await?;
        let metrics = match config.metrics_listen {
            Some(addr) => Some(bind(addr, "--metrics-listen").await?),
            None => None,
        };
        let state = AppState::new(Arc::new(config), hub, drain, auth);
        state.listening.set(
            tls.as_ref()
                .and_then(|(l, _)| l.local_addr().ok())
                .map(|a| a.port()),
            h3.is_some(),
        );
        Ok(Server {
            listener,
            tls,
            h3,
            metrics,
            state,
        })
    }

    /// The plain HTTP address actually bound (useful with port 0).
    /// Makes this node one of a cluster (`--store redis://`): Socket.IO sessions opened here
    /// are noted as this node's, and requests for other nodes' sessions forwarded to them.
    pub fn join_cluster(&self, cluster: state::Cluster) {
        let _ = self.state.cluster.set(cluster);
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The HTTPS address actually bound, if HTTPS is served.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// The UDP address HTTP/3 is served on, if it is.
    pub fn h3_addr(&self) -> Option<SocketAddr> {
        self.h3.as_ref().and_then(|e| e.local_addr().ok())
    }

    /// The address `GET /metrics` is served on, if it is (`--metrics-listen`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The certificate in use, if HTTPS is served.
    pub fn tls_info(&self) -> Option<&tls::Tls> {
        self.tls.as_ref().map(|(_, t)| t)
    }

    /// Serves until the drain stops it (see [`crate::drain`]), then stops accepting, closes
    /// every live connection at its deadline and returns once none is open (at once if none
    /// was), or at the end of the close window plus [`drain::GRACE`] at the latest. The
    /// metrics listener answers until then, so a drain can be watched.
    pub async fn run(self) {
        let app = router::build(self.state.clone());
        let h3_addr = self.h3_addr();
        let settings = listener::HttpSettings {
            h2_max_streams: self.state.config.h2_max_streams,
            timeouts: self.state.config.timeouts,
        };
        let admission = self.state.admission.clone();
        let drain = self.state.drain.clone();
        let shutdown = self.state.shutdown.clone();
        let plain = listener::serve(
            self.listener,
            None,
            app.clone(),
            settings,
            admission.clone(),
            drain.clone(),
        );
        // HTTPS answers point browsers to HTTP/3 (Alt-Svc) when it is served.
        let tls_app = match h3_addr {
            Some(addr) => router::with_alt_svc(app.clone(), addr.port()),
            None => app.clone(),
        };
        let quic = {
            let h3_settings = h3::H3Settings {
                max_streams: self.state.config.h2_max_streams,
                timeouts: self.state.config.timeouts,
                listen: self.state.config.h3.unwrap_or_default(),
            };
            let (app, admission, drain) = (app.clone(), admission.clone(), drain.clone());
            let endpoint = self.h3;
            async move {
                if let Some(endpoint) = endpoint {
                    h3::serve(endpoint, app, h3_settings, admission, drain).await;
                }
            }
        };
        let secure = async {
            if let Some((tls_listener, tls)) = self.tls {
                let config = Some(tls.config);
                listener::serve(
                    tls_listener,
                    config,
                    tls_app,
                    settings,
                    admission,
                    drain.clone(),
                )
                .await;
            }
        };
        // Upgraded connections (WebSockets) are no longer HTTP connections: wait for their
        // closing handshakes alongside, which each starts at its deadline.
        let tasks = self.state.tasks.clone();
        let upgraded = async {
            shutdown.cancelled().await;
            tasks.close();
            tokio::select! {
                () = tasks.wait() => {}
                () = drain.give_up() => tracing::warn!(
                    open = tasks.len(),
                    "WebSockets still open after the close window (--drain-seconds) and {:?}; closing anyway",
                    drain::GRACE
                ),
            }
        };
        // The metrics listener stops last, once everything it reports on is closed.
        let metrics_stop = tokio_util::sync::CancellationToken::new();
        let metrics = {
            let (state, stop) = (self.state.clone(), metrics_stop.clone());
            async move {
                if let Some(listener) = self.metrics {
                    metrics::serve(listener, state, stop).await;
                }
            }
        };
        let serving = async {
            tokio::join!(plain, secure, quic, upgraded);
            metrics_stop.cancel();
        };
        tokio::join!(serving, metrics);
    }
}

/// Opens the HTTP/3 endpoint: on `--h3-listen`, or on the HTTPS listener's address and port
/// over UDP. A taken default port only costs HTTP/3 (with a warning); a taken explicit one
/// stops the start.
fn bind_h3(
    config: &ServerConfig,
    tls_listener: &TcpListener,
    tls: &tls::Tls,
    h3_listen: H3Listen,
) -> Result<Option<quinn::Endpoint>, StartError> {
    let addr = match h3_listen.addr {
        Some(addr) => addr,
        None => tls_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.tls.as_ref().map_or(config.listen, |t| t.addr),
                source,
            })?,
    };
    let settings = h3::H3Settings {
        max_streams: config.h2_max_streams,
        timeouts: config.timeouts,
        listen: h3_listen,
    };
    match h3::bind(addr, &tls.config, settings) {
        Ok(endpoint) => Ok(Some(endpoint)),
        Err(source) if h3_listen.addr.is_none() => {
            tracing::warn!(%addr, error = %source, "cannot serve HTTP/3 on the HTTPS address over UDP; serving HTTPS without it (choose another with --h3-listen, or --no-h3)");
            Ok(None)
        }
        Err(source) if source.kind() == std::io::ErrorKind::AddrInUse => {
            Err(StartError::AddrInUse {
                addr,
                flag: "--h3-listen",
            })
        }
        Err(source) => Err(StartError::Bind { addr, source }),
    }
}

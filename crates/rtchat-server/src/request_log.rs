//! One log line per request: method, path, client address, status and duration, filtered by
//! `RUST_LOG` (target `rtchat::http`, level info). The client is the forwarded one behind a
//! `--trusted-proxy`.
//!
//! Built on tower-http's `TraceLayer`, whose future is not boxed: when the level is off, a
//! request costs a disabled span and one level check, which matters at tens of thousands of
//! requests per second.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing::Span;

use crate::client_addr::TrustedProxies;

/// The layer type [`layer`] returns.
pub type RequestLogLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    RequestSpan,
    (),
    fn(&Response<Body>, Duration, &Span),
    (),
    (),
    (),
>;

/// Logs each request once its response head is ready. For streams, the duration is the time
/// to the first byte, not the life of the stream.
pub fn layer(proxies: TrustedProxies) -> RequestLogLayer {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan(proxies))
        .on_request(())
        .on_response(log_response as fn(&Response<Body>, Duration, &Span))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Opens each request's span; the client address is worked out only when the span is on.
#[derive(Clone)]
pub struct RequestSpan(TrustedProxies);

impl MakeSpan<Body> for RequestSpan {
    fn make_span(&mut self, req: &Request<Body>) -> Span {
        tracing::info_span!(
            target: "rtchat::http",
            "request",
            method = %req.method(),
            path = %req.uri().path(),
            client = %self.0.client(req).map_or_else(|| "-".to_owned(), |c| c.ip.to_string()),
        )
    }
}

fn log_response(res: &Response<Body>, latency: Duration, _span: &Span) {
    tracing::info!(
        target: "rtchat::http",
        status = res.status().as_u16(),
        duration_ms = format_args!("{:.3}", latency.as_secs_f64() * 1000.0),
        "answered"
    );
}

//! One log line per request: method, path, status and duration, filtered by `RUST_LOG`
//! (target `rtchat::http`, level info).
//!
//! Built on tower-http's `TraceLayer`, whose future is not boxed: when the level is off, a
//! request costs a disabled span and one level check, which matters at tens of thousands of
//! requests per second.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::TraceLayer;
use tracing::Span;

/// The layer type [`layer`] returns.
pub type RequestLogLayer = TraceLayer<
    SharedClassifier<ServerErrorsAsFailures>,
    fn(&Request<Body>) -> Span,
    (),
    fn(&Response<Body>, Duration, &Span),
    (),
    (),
    (),
>;

/// Logs each request once its response head is ready. For streams, the duration is the time
/// to the first byte, not the life of the stream.
pub fn layer() -> RequestLogLayer {
    TraceLayer::new_for_http()
        .make_span_with(request_span as fn(&Request<Body>) -> Span)
        .on_request(())
        .on_response(log_response as fn(&Response<Body>, Duration, &Span))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

fn request_span(req: &Request<Body>) -> Span {
    tracing::info_span!(
        target: "rtchat::http",
        "request",
        method = %req.method(),
        path = %req.uri().path(),
    )
}

fn log_response(res: &Response<Body>, latency: Duration, _span: &Span) {
    tracing::info!(
        target: "rtchat::http",
        status = res.status().as_u16(),
        duration_ms = format_args!("{:.3}", latency.as_secs_f64() * 1000.0),
        "answered"
    );
}

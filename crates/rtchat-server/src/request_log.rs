//! One log line per request: method, path, status and duration, filtered by `RUST_LOG`.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Middleware that logs each request once its response head is ready. For streams, the
/// duration is the time to the first byte, not the life of the stream.
pub async fn log_request(req: Request, next: Next) -> Response {
    // Checked per request (the filter can change); skips the copies below when off.
    if !tracing::enabled!(target: "rtchat::http", tracing::Level::INFO) {
        return next.run(req).await;
    }
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    tracing::info!(
        target: "rtchat::http",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = format_args!("{:.3}", start.elapsed().as_secs_f64() * 1000.0),
        "request"
    );
    response
}

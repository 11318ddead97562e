//! What every HTTP endpoint shares: JSON error responses and reading a posted message.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use rtchat_core::{PostError, RoomError, StoreError};
use rtchat_protocol::ErrorBody;

use crate::rate_limit::Refused;

/// An error answered as `{"error": "..."}` with a precise status.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// A post refused by a rate limit: `Retry-After` and `"retry_after_ms"`.
    pub retry_after_ms: Option<u64>,
    /// A machine-readable reason (`"code"`), where a client acts on it.
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            retry_after_ms: None,
            code: None,
        }
    }

    /// The same refusal with a machine-readable `"code"`.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }
}

impl From<Refused> for ApiError {
    /// `429 Too Many Requests`, with `Retry-After` (whole seconds, rounded up) and the wait in
    /// milliseconds in the body.
    fn from(refused: Refused) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: refused.to_string(),
            retry_after_ms: Some(refused.retry_after_ms()),
            code: None,
        }
    }
}

impl From<PostError> for ApiError {
    fn from(e: PostError) -> ApiError {
        let status = match e {
            PostError::Json(_) | PostError::NotAnObject => StatusCode::BAD_REQUEST,
            PostError::Missing(_)
            | PostError::NotAString(_)
            | PostError::Empty(_)
            | PostError::Invisible { .. }
            | PostError::ControlChar { .. }
            | PostError::BidiControl { .. }
            | PostError::TooLong { .. }
            | PostError::BadKey => StatusCode::UNPROCESSABLE_ENTITY,
            PostError::KeyConflict { .. } => StatusCode::CONFLICT,
            PostError::NotYourName { .. } => {
                return ApiError::new(StatusCode::FORBIDDEN, e.to_string())
                    .with_code("not_your_name")
            }
            PostError::ShuttingDown | PostError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            PostError::Room(e) => return e.into(),
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    /// `503`: the store failed (the client may try again).
    fn from(e: StoreError) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

impl From<RoomError> for ApiError {
    /// `400` for a bad room name, `403` for one room more than `--max-rooms`, `503` when the
    /// store fails.
    fn from(e: RoomError) -> ApiError {
        let status = match e {
            RoomError::BadName(_) => StatusCode::BAD_REQUEST,
            RoomError::TooMany { .. } => StatusCode::FORBIDDEN,
            RoomError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&ErrorBody {
            error: self.message,
            retry_after_ms: self.retry_after_ms,
            code: self.code.map(str::to_owned),
        })
        .expect("errors serialize");
        let mut response = (self.status, [(header::CONTENT_TYPE, JSON)], body).into_response();
        if let Some(ms) = self.retry_after_ms {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(ms.div_ceil(1000).max(1)),
            );
        }
        response
    }
}

/// `application/json`, the content type of every API answer.
pub const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A `200 application/json` response from already encoded bytes (shared, not copied).
pub fn json_bytes(bytes: Bytes) -> Response {
    ([(header::CONTENT_TYPE, JSON)], bytes).into_response()
}

/// Reads a post's body: JSON content type, at most `limit` bytes, all of it within `timeout`
/// (a client trickling its body holds nothing for long). The body is then parsed and
/// validated by the hub.
pub async fn read_json_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json(content_type) {
        let got = if content_type.is_empty() {
            "none"
        } else {
            content_type
        };
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("content type must be application/json, got {got}"),
        ));
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let timed_out = || {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s (--body-timeout)",
                timeout.as_secs_f64()
            ),
        )
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut body = body;
    let mut read = bytes::BytesMut::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .map_err(|_| timed_out())?;
        let Some(frame) = frame else {
            return Ok(read.freeze());
        };
        let frame = frame.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("could not read body: {e}"))
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if read.len() + data.len() > limit {
            drain_rest(body, limit, deadline).await;
            return Err(too_large());
        }
        read.extend_from_slice(&data);
    }
}

/// Reads and discards what is left of a body that is over the limit (up to 16 times the
/// limit more, within the body's deadline), so that the client, still sending, gets to read
/// the 413 instead of a reset: closing a connection with unread bytes resets it, and a
/// client whose write fails first never sees the answer.
async fn drain_rest(mut body: Body, limit: usize, deadline: tokio::time::Instant) {
    let mut budget = limit.saturating_mul(16);
    while budget > 0 {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, |d| d.len());
                budget = budget.saturating_sub(n.max(1));
            }
            _ => return,
        }
    }
}

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::is_json;

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}

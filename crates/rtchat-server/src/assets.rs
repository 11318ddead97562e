//! The front end: the embedded `web/` folder, or the user's own folder (`--web-root`).

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::api::ApiError;

/// The `web/` folder of the repository, compiled into the binary so the server runs offline
/// with no files beside it.
#[derive(RustEmbed)]
#[folder = "../../web/"]
struct Web;

/// Serves an embedded page or asset: `/` is `index.html`, `/polling` is `polling.html`,
/// anything else is looked up as a file.
pub async fn embedded(headers: HeaderMap, req: Request) -> Response {
    let path = req.uri().path().trim_start_matches('/');
    let candidates = if path.is_empty() {
        vec!["index.html".to_owned()]
    } else {
        vec![path.to_owned(), format!("{path}.html")]
    };
    for name in candidates {
        if let Some(file) = Web::get(&name) {
            let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
            if headers
                .get(header::IF_NONE_MATCH)
                .is_some_and(|v| v.as_bytes() == etag.as_bytes())
            {
                return StatusCode::NOT_MODIFIED.into_response();
            }
            let mime = file.metadata.mimetype().to_owned();
            return (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::ETAG, etag),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response();
        }
    }
    not_found(req.uri().path())
}

/// The JSON 404 every unknown path gets.
pub fn not_found(path: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such page or endpoint: {path}"),
    )
    .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds `X-Content-Type-Options: nosniff` so browsers never reinterpret served files.
pub const NOSNIFF: (header::HeaderName, HeaderValue) = (
    header::X_CONTENT_TYPE_OPTIONS,
    HeaderValue::from_static("nosniff"),
);

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
            let mime = with_charset(file.metadata.mimetype());
            let is_page = mime.starts_with("text/html");
            let mut res = (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::ETAG, etag),
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response();
            if is_page {
                res.headers_mut().extend(PAGE_HEADERS.iter().cloned());
            }
            return res;
        }
    }
    not_found(req.uri().path())
}

/// What rtchat's own pages are allowed to do, and nothing more: scripts, styles, fetches and
/// WebSockets from this origin only (no inline script or style anywhere in `web/`), no
/// framing (clickjacking), no plugins, no referrer leaking the page's address. Pages from
/// `--web-root` are the user's (the course's front ends may use inline scripts) and get none of
/// this.
pub const PAGE_HEADERS: [(header::HeaderName, HeaderValue); 4] = [
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    ),
];

/// Text types get `; charset=utf-8`, so browsers never guess the encoding.
fn with_charset(mime: &str) -> String {
    let is_text = mime.starts_with("text/") || mime == "application/javascript";
    if is_text && !mime.contains("charset") {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

/// With `--web-root`: `/name` is also served from `name.html` when there is no file `name`,
/// like the embedded pages (`/polling` → `polling.html`).
pub async fn web_root_page(dir: std::path::PathBuf, req: Request) -> Response {
    use tower::ServiceExt;
    let path = req.uri().path().trim_start_matches('/').to_owned();
    let safe = !path.is_empty()
        && std::path::Path::new(&path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    let page = dir.join(format!("{path}.html"));
    if safe && page.is_file() {
        let served = tower_http::services::ServeFile::new(page)
            .oneshot(req)
            .await;
        return match served {
            Ok(res) => res.map(axum::body::Body::new),
            Err(never) => match never {},
        };
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

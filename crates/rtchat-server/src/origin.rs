//! Which browser origins may open long-lived sessions (WebSockets, Socket.IO). Browsers do not
//! apply CORS to WebSocket upgrades, so without this check any site a user visits could chat
//! in their name (cross-site WebSocket hijacking).

use axum::http::{header, HeaderMap};

/// Same-origin pages, `--allow-origin` origins (or `*`) and clients that send no `Origin`
/// (not browsers) are allowed; anything else is refused.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allow_any: bool,
    /// Lower-cased, without a trailing slash.
    allow: Vec<String>,
}

impl OriginPolicy {
    /// The policy for the `--allow-origin` list.
    pub fn new(allow_origins: &[String]) -> OriginPolicy {
        OriginPolicy {
            allow_any: allow_origins.iter().any(|o| o.trim() == "*"),
            allow: allow_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// True when every origin is allowed (`--allow-origin '*'`).
    pub fn allows_any(&self) -> bool {
        self.allow_any
    }

    /// `Ok` when the request may go on; otherwise the refused origin. `uri_host` is the
    /// request's authority, for HTTP/2 requests that carry no `Host` header.
    pub fn check(&self, headers: &HeaderMap, uri_host: Option<&str>) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if self.allow_any || self.allow.contains(&origin) {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(uri_host)
            .unwrap_or("")
            .to_ascii_lowercase();
        let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
        if !host.is_empty() && origin_host == host {
            return Ok(());
        }
        Err(origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn same_origin_allow_list_and_non_browsers_pass() {
        let policy = OriginPolicy::new(&["http://localhost:3000/".into()]);
        let mut headers = HeaderMap::new();
        assert!(
            policy.check(&headers, None).is_ok(),
            "no Origin: not a browser"
        );
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(policy.check(&headers, None).is_ok(), "same origin");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:3000"),
        );
        assert!(policy.check(&headers, None).is_ok(), "allowed origin");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert_eq!(
            policy.check(&headers, None),
            Err("http://evil.example".into())
        );
        assert!(OriginPolicy::new(&["*".into()])
            .check(&headers, None)
            .is_ok());
    }
}

//! Which browser origins may change anything here, and which `Host` names this server answers
//! to.
//!
//! **Origins.** One policy for every state-changing request on every transport: posts
//! (`POST /poll`, `POST /msgs`), WebSocket upgrades and Socket.IO sessions. Browsers do not
//! apply CORS to WebSocket upgrades, and a cross-site `fetch` POST reaches the server whatever
//! CORS answers, so without this check any site a user visits could chat in their name. Allowed:
//! the same origin (scheme, host and port; behind a `--trusted-proxy`, the forwarded scheme),
//! an `--allow-origin` origin (or `*`), and requests without an `Origin` header (curl, Node, the
//! Rust client: not browsers). `Origin: null` (sandboxed frames, `file://` pages) is refused
//! unless `--allow-origin null` says otherwise.
//!
//! **Hosts.** A page on an attacker's domain whose name resolves to 127.0.0.1 (DNS rebinding)
//! is same-origin with itself, not with rtchat: the `Host` it sends is the attacker's name.
//! `--allowed-hosts` lists the names served (by default, when every listener is on a loopback
//! address, the loopback names and addresses; anything otherwise); other names get 421.

use std::net::IpAddr;

use axum::http::{header, Request};

use crate::client_addr::TrustedProxies;

/// The origin policy (see the module doc).
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allow_any: bool,
    /// Lower-cased, without a trailing slash.
    allow: Vec<String>,
    /// To tell the scheme the client used behind a reverse proxy.
    proxies: TrustedProxies,
}

impl OriginPolicy {
    /// The policy for the `--allow-origin` list.
    pub fn new(allow_origins: &[String], proxies: TrustedProxies) -> OriginPolicy {
        OriginPolicy {
            allow_any: allow_origins.iter().any(|o| o.trim() == "*"),
            allow: allow_origins
                .iter()
                .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            proxies,
        }
    }

    /// True when every origin is allowed (`--allow-origin '*'`).
    pub fn allows_any(&self) -> bool {
        self.allow_any
    }

    /// `Ok` when the request may change something; otherwise the refused origin.
    pub fn check<B>(&self, req: &Request<B>) -> Result<(), String> {
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .unwrap_or("")
            .trim()
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if self.allow.contains(&origin) || (self.allow_any && origin != "null") {
            return Ok(());
        }
        let https = self.proxies.client(req).is_some_and(|c| c.https);
        let scheme = if https { "https" } else { "http" };
        match request_host(req) {
            Some(host) if origin == format!("{scheme}://{}", host.to_ascii_lowercase()) => Ok(()),
            _ => Err(origin),
        }
    }

    /// [`OriginPolicy::check`] with the refusal in words, naming what was refused (`what`,
    /// e.g. "open WebSockets") and the flag that would allow it.
    pub fn check_for<B>(&self, req: &Request<B>, what: &str) -> Result<(), String> {
        self.check(req).map_err(|origin| {
            if origin == "null" {
                format!("origin null (a sandboxed or file:// page) may not {what} here; start rtchat with --allow-origin null to allow it")
            } else {
                format!("origin {origin} may not {what} here (only the same origin, scheme and port included, may); start rtchat with --allow-origin {origin} to allow it")
            }
        })
    }
}

/// The request's `Host` (HTTP/1.1) or authority (HTTP/2 and HTTP/3).
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

/// The `Host` names this server answers to (`--allowed-hosts`).
#[derive(Debug, Clone)]
pub enum AllowedHosts {
    /// Any name (a server on a public address, or `--allowed-hosts '*'`).
    Any,
    /// These names, lower-cased, without ports; IP literals always compare as addresses.
    Only(Vec<String>),
}

impl AllowedHosts {
    /// The loopback names and addresses: the default when every listener is on loopback.
    pub fn loopback() -> AllowedHosts {
        AllowedHosts::Only(vec!["localhost".to_owned()])
    }

    /// Whether a request for `host` (with or without a port) is served. Loopback addresses
    /// are always served under [`AllowedHosts::Only`]: a page cannot make a browser send an
    /// IP literal it did not load from. Names ending in `.localhost` count as `localhost`
    /// (browsers resolve them to loopback themselves).
    pub fn allows(&self, host: &str) -> bool {
        let names = match self {
            AllowedHosts::Any => return true,
            AllowedHosts::Only(names) => names,
        };
        let name = strip_port(host).to_ascii_lowercase();
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return ip.is_loopback() || names.iter().any(|n| n.parse::<IpAddr>() == Ok(ip));
        }
        names.iter().any(|n| {
            *n == name
                || (n == "localhost" && name.ends_with(".localhost"))
                || (n.starts_with("*.") && name.ends_with(&n[1..]))
        })
    }
}

/// `host:port` → `host`; `[v6]:port` → `[v6]`; a bare v6 address stays whole.
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_addr::Peer;

    fn req(host: &str, origin: Option<&str>, tls: bool) -> Request<()> {
        let mut b = Request::builder().uri("/poll").header(header::HOST, host);
        if let Some(o) = origin {
            b = b.header(header::ORIGIN, o);
        }
        let mut r = b.body(()).unwrap();
        r.extensions_mut().insert(Peer {
            addr: "127.0.0.1:5000".parse().unwrap(),
            tls,
        });
        r
    }

    #[test]
    fn same_origin_means_same_scheme_host_and_port() {
        let policy = OriginPolicy::new(
            &["http://localhost:3000/".into()],
            TrustedProxies::default(),
        );
        assert!(
            policy.check(&req("127.0.0.1:8080", None, false)).is_ok(),
            "no Origin: not a browser"
        );
        assert!(policy
            .check(&req("127.0.0.1:8080", Some("http://127.0.0.1:8080"), false))
            .is_ok());
        assert!(policy
            .check(&req("127.0.0.1:8443", Some("https://127.0.0.1:8443"), true))
            .is_ok());
        assert_eq!(
            policy.check(&req(
                "127.0.0.1:8080",
                Some("https://127.0.0.1:8080"),
                false
            )),
            Err("https://127.0.0.1:8080".into()),
            "another scheme is another origin"
        );
        assert!(
            policy
                .check(&req("127.0.0.1:8080", Some("http://localhost:3000"), false))
                .is_ok(),
            "allowed"
        );
        assert_eq!(
            policy.check(&req("127.0.0.1:8080", Some("http://evil.example"), false)),
            Err("http://evil.example".into())
        );
        assert_eq!(
            policy.check(&req("127.0.0.1:8080", Some("null"), false)),
            Err("null".into())
        );
        let any = OriginPolicy::new(&["*".into()], TrustedProxies::default());
        assert!(any
            .check(&req("h", Some("http://evil.example"), false))
            .is_ok());
        assert!(
            any.check(&req("h", Some("null"), false)).is_err(),
            "* does not cover null"
        );
        let null = OriginPolicy::new(&["null".into()], TrustedProxies::default());
        assert!(null.check(&req("h", Some("null"), false)).is_ok());
    }

    #[test]
    fn the_forwarded_scheme_counts_behind_a_trusted_proxy() {
        let proxies = TrustedProxies::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let policy = OriginPolicy::new(&[], proxies);
        let mut r = req("chat.example", Some("https://chat.example"), false);
        assert!(
            policy.check(&r).is_err(),
            "plain HTTP without a forwarded scheme"
        );
        r.headers_mut()
            .insert("x-forwarded-proto", "https".parse().unwrap());
        assert!(policy.check(&r).is_ok());
    }

    #[test]
    fn hosts() {
        let only = AllowedHosts::loopback();
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST",
            "a.localhost:1",
            "127.0.0.1:8080",
            "127.0.0.2",
            "[::1]:8080",
            "::1",
        ] {
            assert!(only.allows(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.0.0.1:80",
            "",
        ] {
            assert!(!only.allows(no), "{no}");
        }
        let named = AllowedHosts::Only(vec![
            "chat.example".into(),
            "*.chat.example".into(),
            "10.0.0.1".into(),
        ]);
        assert!(named.allows("chat.example:443"));
        assert!(named.allows("eu.chat.example"));
        assert!(named.allows("10.0.0.1:8080"));
        assert!(!named.allows("evilchat.example"));
        assert!(AllowedHosts::Any.allows("anything"));
    }
}

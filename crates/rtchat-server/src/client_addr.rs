//! Who a request comes from. Every request carries the connection's [`Peer`] (inserted by the
//! listener); behind a reverse proxy that is the proxy, so when the connection comes from a
//! `--trusted-proxy` the client's address is taken from `Forwarded` or `X-Forwarded-For` and
//! the scheme from `X-Forwarded-Proto` (or `Forwarded: proto=`). From anyone else those
//! headers are ignored: a client cannot make itself look like another address.

use std::net::{IpAddr, SocketAddr};

use axum::http::{Extensions, HeaderMap, Request};
use ipnet::IpNet;

/// The TCP peer of the connection a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: SocketAddr,
    /// True on the HTTPS listener.
    pub tls: bool,
}

/// The networks whose connections are reverse proxies (`--trusted-proxy CIDR`).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    /// True when `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind a request: the forwarded address and scheme when the connection
    /// comes from a trusted proxy, else the connection's own. `None` for a request that did
    /// not come through a listener (tests calling the router directly).
    pub fn client<B>(&self, req: &Request<B>) -> Option<Client> {
        let peer = req.extensions().get::<Peer>()?;
        Some(self.resolve(*peer, req.headers()))
    }

    /// [`TrustedProxies::client`] from a request's parts (what a handler or a Socket.IO
    /// session keeps of its request).
    pub fn client_of(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<Client> {
        let peer = extensions.get::<Peer>()?;
        Some(self.resolve(*peer, headers))
    }

    fn resolve(&self, peer: Peer, headers: &HeaderMap) -> Client {
        let own = Client {
            ip: peer.addr.ip().to_canonical(),
            https: peer.tls,
        };
        if self.0.is_empty() || !self.contains(own.ip) {
            return own;
        }
        let forwarded = forwarded_chain(headers);
        // The nearest hop that is not one of our proxies is the client; if every hop is a
        // proxy, the farthest one is.
        let ip = forwarded
            .iter()
            .rev()
            .find(|ip| !self.contains(**ip))
            .or(forwarded.first())
            .copied()
            .unwrap_or(own.ip);
        let https = forwarded_proto(headers).map_or(own.https, |p| p.eq_ignore_ascii_case("https"));
        Client { ip, https }
    }
}

/// The client of a request, as far as rtchat can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub ip: IpAddr,
    /// The scheme the client used (the proxy's, when a trusted proxy says so).
    pub https: bool,
}

/// The addresses a request passed through, farthest (the original client) first: from
/// `Forwarded` (RFC 7239) if present, else `X-Forwarded-For`. Unparseable entries (`unknown`,
/// obfuscated identifiers) are skipped.
fn forwarded_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .filter_map(|element| forwarded_param(element, "for"))
            .filter_map(|node| parse_node(&node))
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .filter_map(|node| parse_node(node))
        .collect()
}

/// The scheme a trusted proxy reports: `X-Forwarded-Proto`, else the last `Forwarded: proto=`.
fn forwarded_proto(headers: &HeaderMap) -> Option<String> {
    if let Some(proto) = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        // Several proxies may each have appended theirs: the first is the client's.
        return proto.split(',').next().map(|p| p.trim().to_owned());
    }
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|element| forwarded_param(element, "proto"))
}

/// The value of `name` in one `Forwarded` element (`for=192.0.2.1;proto=https`), unquoted.
fn forwarded_param(element: &str, name: &str) -> Option<String> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    let bracketed = node.strip_prefix('[')?.split(']').next()?;
    bracketed.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn peer(ip: &str) -> Peer {
        Peer {
            addr: SocketAddr::new(ip.parse().unwrap(), 5000),
            tls: false,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let proxies = trusted(&["10.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
        ]);
        let from_proxy = proxies.resolve(peer("10.1.2.3"), &h);
        assert_eq!(from_proxy.ip, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert!(from_proxy.https);
        let from_anyone = proxies.resolve(peer("198.51.100.7"), &h);
        assert_eq!(from_anyone.ip, "198.51.100.7".parse::<IpAddr>().unwrap());
        assert!(!from_anyone.https);
    }

    #[test]
    fn the_nearest_untrusted_hop_is_the_client() {
        let proxies = trusted(&["10.0.0.0/8"]);
        // A client that sends its own X-Forwarded-For cannot hide behind it: the proxy appends
        // the address it saw, and that is the one taken.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        let c = proxies.resolve(peer("10.0.0.1"), &h);
        assert_eq!(c.ip, "203.0.113.9".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn rfc_7239_forwarded_wins_and_takes_ports_and_brackets() {
        let proxies = trusted(&["127.0.0.0/8"]);
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::7]:4711\";proto=https, for=127.0.0.5",
            ),
            ("x-forwarded-for", "192.0.2.44"),
        ]);
        let c = proxies.resolve(peer("127.0.0.1"), &h);
        assert_eq!(c.ip, "2001:db8::7".parse::<IpAddr>().unwrap());
        assert!(c.https);
        assert_eq!(parse_node("192.0.2.1:80"), "192.0.2.1".parse().ok());
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("::ffff:192.0.2.1"), "192.0.2.1".parse().ok());
    }
}

//! Who is on the other end: the client IP used by the per-IP limit and the logs.
//!
//! Without `trust_proxy` it is the TCP peer, always. With it, it is the right-most entry of
//! `X-Forwarded-For`: the address that the proxy in front of Vestnik saw, appended by that proxy
//! (nginx's `$proxy_add_x_forwarded_for`, Caddy's default). Entries to its left were sent by the
//! client and cannot be trusted, which is why the right-most one is taken, not the first. Behind
//! several proxies, the last one must pass the client's address as the right-most entry. This
//! module must never trust the header unless the operator said so.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

/// The header a reverse proxy appends the client address to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The header a reverse proxy sets to the scheme the client used (`https` when it ended TLS).
pub const FORWARDED_PROTO: &str = "x-forwarded-proto";

/// Whether the client reached us over TLS: natively (`native_tls`), or through a trusted proxy that
/// says so in `X-Forwarded-Proto` (its last value, for the same reason as `X-Forwarded-For`). Used to
/// mark cookies `Secure`.
pub fn is_https(headers: &HeaderMap, native_tls: bool, trust_proxy: bool) -> bool {
    native_tls
        || (trust_proxy
            && headers
                .get_all(FORWARDED_PROTO)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|p| p.trim().eq_ignore_ascii_case("https")))
}

/// The client IP of a request from `peer` with `headers`.
///
/// Only the last `X-Forwarded-For` entry is read, the one the trusted proxy appended; any earlier
/// one came from the client. Without `trust_proxy` the header is ignored entirely, since anyone
/// could send it to spread their sockets over invented addresses and dodge the per-IP limit.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trust_proxy: bool) -> IpAddr {
    if !trust_proxy {
        return peer.ip();
    }
    headers
        .get_all(FORWARDED_FOR)
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(parse_entry)
        .unwrap_or_else(|| peer.ip())
}

/// One `X-Forwarded-For` entry: an IPv4 or IPv6 address, possibly with a port (`1.2.3.4:5`,
/// `[::1]:5`), as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .and_then(|e| e.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `X-Forwarded-Proto: https` counts only behind a trusted proxy: from anyone else the header
    /// is just the client's own claim.
    #[test]
    fn https_natively_or_from_a_trusted_proxy_only() {
        let mut h = HeaderMap::new();
        assert!(!is_https(&h, false, true));
        assert!(is_https(&h, true, false));
        h.append(FORWARDED_PROTO, "http, https".parse().unwrap());
        assert!(
            is_https(&h, false, true),
            "the proxy's own (last) value counts"
        );
        assert!(
            !is_https(&h, false, false),
            "an untrusted header is ignored"
        );
        h.append(FORWARDED_PROTO, "http".parse().unwrap());
        assert!(!is_https(&h, false, true));
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(FORWARDED_FOR, v.parse().unwrap());
        }
        h
    }

    /// The right-most `X-Forwarded-For` entry is the one the trusted proxy wrote; entries to its
    /// left came from the client and could be forged to dodge the per-IP limit.
    #[test]
    fn takes_the_right_most_entry_only_when_trusted() {
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let h = headers(&["6.6.6.6, 203.0.113.7"]);
        assert_eq!(client_ip(peer, &h, false), peer.ip());
        assert_eq!(
            client_ip(peer, &h, true),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Several header lines: the last line's last entry.
        let h = headers(&["6.6.6.6", "198.51.100.2"]);
        assert_eq!(
            client_ip(peer, &h, true),
            "198.51.100.2".parse::<IpAddr>().unwrap()
        );
        // Ports and IPv6.
        let h = headers(&["203.0.113.7:5555"]);
        assert_eq!(
            client_ip(peer, &h, true),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        let h = headers(&["[2001:db8::1]:443"]);
        assert_eq!(
            client_ip(peer, &h, true),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        let h = headers(&["[2001:db8::1]"]);
        assert_eq!(
            client_ip(peer, &h, true),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    /// Even behind a trusted proxy, a missing or unreadable header leaves the TCP peer as the
    /// client.
    #[test]
    fn falls_back_to_the_peer() {
        let peer: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(client_ip(peer, &HeaderMap::new(), true), peer.ip());
        assert_eq!(client_ip(peer, &headers(&["not-an-ip"]), true), peer.ip());
        assert_eq!(client_ip(peer, &headers(&["1.2.3.4, "]), true), peer.ip());
    }
}

//! What the generator talks to: the app's credentials and the broker's WebSocket and HTTP addresses.
//!
//! The generator only ever connects to the addresses given here. Unless `--allow-remote` is set, they
//! must be loopback addresses, so a load run cannot leave the machine by mistake.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context, Result};

/// An app on the broker: the id used in API paths, the public key sockets connect with, the secret
/// that signs API calls and private-channel subscriptions.
#[derive(Debug, Clone)]
pub struct App {
    /// App id, as in `/apps/{id}/events`.
    pub id: String,
    /// Public key, as in `/app/{key}`.
    pub key: String,
    /// Secret that signs requests.
    pub secret: String,
}

/// A resolved `host:port` with the authority to put in `Host` headers and URLs.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The address connected to.
    pub addr: SocketAddr,
    /// `host:port` as given.
    pub authority: String,
}

impl Endpoint {
    /// Parses `scheme://host:port[/...]` or `host:port`, accepting only the plain schemes in
    /// `schemes` (TLS is not supported), and resolves it.
    pub fn parse(url: &str, schemes: &[&str], allow_remote: bool) -> Result<Self> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) => {
                if !schemes.contains(&scheme) {
                    bail!(
                        "{url}: scheme {scheme:?} is not supported here (use {})",
                        schemes.join(" or ")
                    );
                }
                rest
            }
            None => url,
        };
        let authority = rest.split('/').next().unwrap_or(rest).to_owned();
        if authority.is_empty() {
            bail!("{url}: no host:port");
        }
        let addrs: Vec<SocketAddr> = authority
            .to_socket_addrs()
            .with_context(|| format!("{url}: cannot resolve {authority} (give host:port)"))?
            .collect();
        // Prefer IPv4, where the loopback source spreading applies.
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| addrs.first())
            .copied()
            .with_context(|| format!("{url}: {authority} resolves to no address"))?;
        if !allow_remote && !addr.ip().is_loopback() {
            bail!(
                "{url} resolves to {}, which is not a loopback address; pass --allow-remote to \
                 load a broker on another host you own",
                addr.ip()
            );
        }
        Ok(Self { addr, authority })
    }
}

/// The source address for socket `index` when spreading over `sources` loopback addresses:
/// `127.0.0.(1 + index % sources)`. `None` (let the kernel choose) when the target is not IPv4
/// loopback or there is only one source.
pub fn source_for(index: usize, sources: u8, target: &SocketAddr) -> Option<Ipv4Addr> {
    let IpAddr::V4(ip) = target.ip() else {
        return None;
    };
    if !ip.is_loopback() || sources <= 1 {
        return None;
    }
    let last = 1 + (index % usize::from(sources));
    Some(Ipv4Addr::new(127, 0, 0, u8::try_from(last).unwrap_or(1)))
}

/// How bench channels are named: `bench-N`, or `private-bench-N` when subscriptions are signed.
#[derive(Debug, Clone)]
pub struct Channels {
    prefix: &'static str,
    count: usize,
}

impl Channels {
    /// `count` channels, private (signed) or public.
    pub fn new(count: usize, private: bool) -> Self {
        Self {
            prefix: if private { "private-bench-" } else { "bench-" },
            count: count.max(1),
        }
    }

    /// How many channels there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The name of channel `i`.
    pub fn name(&self, i: usize) -> String {
        format!("{}{i}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_refuses_remote() {
        let e = Endpoint::parse("ws://127.0.0.1:6001/", &["ws"], false).expect("loopback is fine");
        assert_eq!(e.authority, "127.0.0.1:6001");
        assert_eq!(e.addr.port(), 6001);
        assert!(Endpoint::parse("127.0.0.1:7", &["http"], false).is_ok());
        assert!(Endpoint::parse("wss://127.0.0.1:6001", &["ws"], false).is_err());
        assert!(Endpoint::parse("http://192.0.2.1:80", &["http"], false).is_err());
    }

    #[test]
    fn spreads_sources_over_loopback_only() {
        let lo: SocketAddr = "127.0.0.1:6001".parse().expect("valid");
        assert_eq!(source_for(0, 4, &lo), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_for(5, 4, &lo), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source_for(5, 1, &lo), None);
        let remote: SocketAddr = "192.0.2.1:80".parse().expect("valid");
        assert_eq!(source_for(5, 4, &remote), None);
    }
}

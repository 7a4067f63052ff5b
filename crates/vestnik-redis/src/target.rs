//! Where Redis is: one server named by a `redis://`, `rediss://` or unix-socket URL, or a master
//! found through Redis Sentinel (`redis+sentinel://`). The master is looked up again on every
//! (re)connect, so a Sentinel failover is followed by the ordinary reconnect path.
//!
//! This module must never log or return a password: errors and descriptions use redacted URLs.

use std::fmt;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, RedisConnectionInfo, RedisError, RedisResult, Value};

use crate::Error;

/// The Sentinel port when a `redis+sentinel://` host names none (Redis's documented default).
const SENTINEL_PORT: u16 = 26379;

/// A Redis server to connect to, resolved anew for each connection.
pub(crate) enum Target {
    /// A fixed server.
    Direct(Client),
    /// A Redis Cluster: its masters, found by asking the seeds for `CLUSTER SLOTS`.
    Cluster(Cluster),
    /// The current master of `service`, asked from a set of Sentinels.
    Sentinel {
        /// The Sentinel client (it caches its Sentinel connections).
        sentinels: SentinelClient,
        /// The service (master) name, for logs.
        service: String,
    },
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Direct(client) => write!(f, "Direct({:?})", client.get_connection_info().addr()),
            Self::Sentinel { service, .. } => write!(f, "Sentinel({service})"),
            Self::Cluster(cluster) => write!(f, "{cluster:?}"),
        }
    }
}

impl Target {
    /// Parses a URL. Accepted: `redis://`, `rediss://` (TLS, the server's certificate checked
    /// against the system roots; `SSL_CERT_FILE` adds a private CA), `redis+unix://` / `unix://`,
    /// and
    /// `redis+sentinel://[[user]:password@]host[:port][,host[:port]…]/service[/db]`, where the
    /// credentials and db are the master's and the Sentinels need none.
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let scheme = url.split_once("://").map_or("", |(s, _)| s);
        match scheme {
            "redis" | "rediss" | "redis+unix" | "unix" => {
                if scheme == "rediss" {
                    install_crypto_provider();
                }
                Client::open(url)
                    .map(Self::Direct)
                    .map_err(|e| Error::InvalidUrl(format!("{}: {e}", redact(url))))
            }
            "redis+sentinel" => sentinel(&url[scheme.len() + 3..]),
            "redis+cluster" | "rediss+cluster" => {
                let tls = scheme == "rediss+cluster";
                if tls {
                    install_crypto_provider();
                }
                Cluster::parse(tls, &url[scheme.len() + 3..]).map(Self::Cluster)
            }
            "rediss+sentinel" => Err(Error::InvalidUrl(
                "rediss+sentinel:// (TLS through Sentinel) is not supported yet".into(),
            )),
            _ => Err(Error::InvalidUrl(format!(
                "{}: expected redis://, rediss://, redis+unix://, redis+sentinel:// or \
                 redis+cluster://",
                redact(url)
            ))),
        }
    }

    /// A client for the server to use now: the fixed one, or the master Sentinel names now. A
    /// cluster has no one server: callers ask [`Cluster::topology`] instead (this answers the
    /// first seed).
    pub(crate) async fn client(&mut self) -> RedisResult<Client> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel { sentinels, .. } => sentinels.async_get_client().await,
            Self::Cluster(cluster) => cluster.client(&cluster.seeds[0]),
        }
    }
}

/// A Redis Cluster named by `redis+cluster://[[user]:password@]host:port[,host:port…]`: the seeds
/// are asked for `CLUSTER SLOTS` in rotation (the next one when one fails), and every master is
/// reached with the same scheme and credentials.
pub(crate) struct Cluster {
    /// TLS (`rediss+cluster://`).
    tls: bool,
    /// `user:password@` exactly as given (still percent-encoded), or empty. Never printed.
    userinfo: String,
    /// `host:port` of each seed.
    seeds: Vec<String>,
    /// The seed to ask first next time.
    next: usize,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.userinfo.is_empty() { "" } else { "***@" };
        write!(f, "Cluster({auth}{})", self.seeds.join(","))
    }
}

/// Which master owns which slots, as one seed saw it.
#[derive(Debug, Clone)]
pub(crate) struct Topology {
    /// `(first slot, last slot, master host:port)`, sorted by first slot.
    ranges: Vec<(u16, u16, String)>,
}

impl Topology {
    /// The master owning `slot`, if any.
    pub(crate) fn master(&self, slot: u16) -> Option<&str> {
        let i = self.ranges.partition_point(|r| r.0 <= slot);
        let (first, last, addr) = self.ranges.get(i.checked_sub(1)?)?;
        (*first <= slot && slot <= *last).then_some(addr.as_str())
    }

    /// Every master, each once, in slot order.
    pub(crate) fn masters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, _, addr) in &self.ranges {
            if !out.contains(addr) {
                out.push(addr.clone());
            }
        }
        out
    }
}

impl Cluster {
    /// Parses the part after `redis+cluster://`.
    fn parse(tls: bool, rest: &str) -> Result<Self, Error> {
        let scheme = if tls {
            "rediss+cluster"
        } else {
            "redis+cluster"
        };
        let bad = |why: &str| Error::InvalidUrl(format!("{scheme}://{}: {why}", redact(rest)));
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, p),
            None => (rest, ""),
        };
        if !path.is_empty() && path != "0" {
            return Err(bad(
                "a Redis Cluster has only database 0: remove the /db path",
            ));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), authority),
        };
        let mut seeds = Vec::new();
        for h in hosts.split(',').filter(|h| !h.is_empty()) {
            let port_ok = !h.ends_with(']')
                && h.rsplit_once(':')
                    .is_some_and(|(host, p)| !host.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(bad("every seed must be host:port"));
            }
            seeds.push(h.to_owned());
        }
        if seeds.is_empty() {
            return Err(bad("no seed host"));
        }
        let cluster = Self {
            tls,
            userinfo,
            seeds,
            next: 0,
        };
        // Check each seed's URL now, so a typo fails `connect` rather than every reconnect.
        for seed in &cluster.seeds {
            cluster.client(seed).map_err(|e| bad(&e.to_string()))?;
        }
        Ok(cluster)
    }

    /// A client for the node at `addr` (`host:port`), with the cluster's scheme and credentials.
    pub(crate) fn client(&self, addr: &str) -> RedisResult<Client> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        Client::open(format!("{scheme}://{}{addr}", self.userinfo))
    }

    /// Asks the seeds, in rotation starting after the last one that answered, for the slot map;
    /// the first answer wins. Fails with the last seed's error when none answers.
    pub(crate) async fn topology(&mut self, limit: Duration) -> RedisResult<Topology> {
        let mut last = None;
        for i in 0..self.seeds.len() {
            let seed = self.seeds[(self.next + i) % self.seeds.len()].clone();
            match tokio::time::timeout(limit, self.ask(&seed)).await {
                Ok(Ok(topology)) => {
                    self.next = (self.next + i) % self.seeds.len();
                    return Ok(topology);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "CLUSTER SLOTS timed out",
                    )))
                }
            }
        }
        // The next call starts with another seed.
        self.next = (self.next + 1) % self.seeds.len();
        Err(last
            .unwrap_or_else(|| RedisError::from((redis::ErrorKind::Io, "no Redis Cluster seed"))))
    }

    /// One seed's `CLUSTER SLOTS`.
    async fn ask(&self, seed: &str) -> RedisResult<Topology> {
        let mut conn = self
            .client(seed)?
            .get_multiplexed_async_connection()
            .await?;
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await?;
        let seed_host = seed.rsplit_once(':').map_or(seed, |(h, _)| h);
        let topology = topology_of(reply, seed_host).ok_or_else(|| {
            RedisError::from((redis::ErrorKind::Parse, "unexpected CLUSTER SLOTS answer"))
        })?;
        if topology.ranges.is_empty() {
            return Err(RedisError::from((
                redis::ErrorKind::Parse,
                "CLUSTER SLOTS names no slot (is the cluster created?)",
            )));
        }
        Ok(topology)
    }
}

/// Reads a `CLUSTER SLOTS` answer: `[[first, last, [host, port, id…], replicas…]…]`. An empty
/// host means the node that answered (`seed_host`).
fn topology_of(reply: Value, seed_host: &str) -> Option<Topology> {
    let Value::Array(entries) = reply else {
        return None;
    };
    let mut ranges = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else {
            return None;
        };
        let mut parts = parts.into_iter();
        let first: u16 = redis::from_redis_value(parts.next()?).ok()?;
        let last: u16 = redis::from_redis_value(parts.next()?).ok()?;
        let Value::Array(master) = parts.next()? else {
            return None;
        };
        let mut master = master.into_iter();
        let host: String = redis::from_redis_value(master.next()?).ok()?;
        let port: u16 = redis::from_redis_value(master.next()?).ok()?;
        let host = if host.is_empty() || host == "?" {
            seed_host.to_owned()
        } else if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        ranges.push((first, last, format!("{host}:{port}")));
    }
    ranges.sort();
    Some(Topology { ranges })
}

/// Builds a Sentinel target from the part after `redis+sentinel://`.
fn sentinel(rest: &str) -> Result<Target, Error> {
    let bad = |why: &str| Error::InvalidUrl(format!("redis+sentinel://{}: {why}", redact(rest)));
    let (authority, path) = rest
        .split_once('/')
        .ok_or_else(|| bad("the path must name the service: /mymaster"))?;
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((user, hosts)) => (Some(user), hosts),
        None => (None, authority),
    };
    let sentinels: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let has_port = !h.ends_with(']')
                && h.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            if has_port {
                format!("redis://{h}")
            } else {
                format!("redis://{h}:{SENTINEL_PORT}")
            }
        })
        .collect();
    if sentinels.is_empty() {
        return Err(bad("no Sentinel host"));
    }
    let mut segments = path.split('/');
    let service = decode(segments.next().unwrap_or_default());
    if service.is_empty() {
        return Err(bad("the path must name the service: /mymaster"));
    }
    let mut master = RedisConnectionInfo::default();
    if let Some(db) = segments.next().filter(|s| !s.is_empty()) {
        master = master.set_db(db.parse().map_err(|_| bad("the db must be a number"))?);
    }
    if segments.next().is_some() {
        return Err(bad("the path is /service or /service/db"));
    }
    if let Some(userinfo) = userinfo {
        let (user, password) = userinfo.split_once(':').unwrap_or(("", userinfo));
        if !user.is_empty() {
            master = master.set_username(decode(user));
        }
        if !password.is_empty() {
            master = master.set_password(decode(password));
        }
    }
    let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
    let client = SentinelClient::build(
        sentinels,
        service.clone(),
        Some(node),
        SentinelServerType::Master,
    )
    .map_err(|e| bad(&e.to_string()))?;
    Ok(Target::Sentinel {
        sentinels: client,
        service,
    })
}

/// redis's TLS builds its rustls config from the process-wide crypto provider, which rustls can
/// only pick by itself when exactly one provider is compiled in. Install ring (the workspace's
/// choice) unless the process already chose one, so `rediss://` never panics on that.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing the race to another installer is fine: a provider is then in place.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// The URL with any `user:password@` replaced by `***@`, for errors and logs.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_schemes() {
        for url in [
            "redis://127.0.0.1:6379",
            "redis://:secret@127.0.0.1:6379/2",
            "rediss://example.invalid:6380/0",
            "redis+unix:///tmp/redis.sock",
            "redis+sentinel://127.0.0.1:26379,127.0.0.2/mymaster",
            "redis+sentinel://:pa%40ss@127.0.0.1/mymaster/3",
            "redis+cluster://127.0.0.1:7000,127.0.0.1:7001",
            "redis+cluster://u:pa%40ss@127.0.0.1:7000/",
            "rediss+cluster://example.invalid:7000",
        ] {
            Target::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn refuses_others_without_leaking_the_password() {
        for url in [
            "http://u:secret@127.0.0.1",
            "redis+sentinel://u:secret@127.0.0.1",
            "redis+sentinel://u:secret@127.0.0.1/",
            "redis+sentinel://u:secret@127.0.0.1/m/x",
            "rediss+sentinel://127.0.0.1/m",
            "redis+cluster://u:secret@127.0.0.1:7000/3",
            "redis+cluster://u:secret@127.0.0.1",
            "redis+cluster://u:secret@",
        ] {
            let err = Target::parse(url).expect_err(url).to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn cluster_urls_refuse_a_db_and_redact_credentials() {
        let err = Target::parse("redis+cluster://u:secret@127.0.0.1:7000/3")
            .expect_err("db")
            .to_string();
        assert!(err.contains("database 0"), "{err}");
        let target = Target::parse("redis+cluster://u:secret@127.0.0.1:7000,h:7001").unwrap();
        let shown = format!("{target:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("127.0.0.1:7000,h:7001"), "{shown}");
    }

    #[test]
    fn reads_cluster_slots() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![Value::Int(5461), Value::Int(16383), node("", 7001)]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.2", 7003),
            ]),
        ]);
        let t = topology_of(reply, "seed").unwrap();
        assert_eq!(t.master(0), Some("10.0.0.1:7000"));
        assert_eq!(t.master(5460), Some("10.0.0.1:7000"));
        assert_eq!(t.master(5461), Some("seed:7001"));
        assert_eq!(t.master(16383), Some("seed:7001"));
        assert_eq!(t.masters(), vec!["10.0.0.1:7000", "seed:7001"]);
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1/a@b"), "redis://h:1/a@b");
        assert_eq!(redact("u:p@h,h2/m"), "***@h,h2/m");
        assert_eq!(
            redact("redis+cluster://u:p@h:1,h:2"),
            "redis+cluster://***@h:1,h:2"
        );
    }
}

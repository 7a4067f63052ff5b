//! Where Redis is: one server named by a `redis://`, `rediss://` or unix-socket URL, or a master
//! found through Redis Sentinel (`redis+sentinel://`). The master is looked up again on every
//! (re)connect, so a Sentinel failover is followed by the ordinary reconnect path.
//!
//! This module must never log or return a password: errors and descriptions use redacted URLs.

use std::fmt;

use percent_encoding::percent_decode_str;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, RedisConnectionInfo, RedisResult};

use crate::Error;

/// The Sentinel port when a `redis+sentinel://` host names none (Redis's documented default).
const SENTINEL_PORT: u16 = 26379;

/// A Redis server to connect to, resolved anew for each connection.
pub(crate) enum Target {
    /// A fixed server.
    Direct(Client),
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
            "rediss+sentinel" => Err(Error::InvalidUrl(
                "rediss+sentinel:// (TLS through Sentinel) is not supported yet".into(),
            )),
            _ => Err(Error::InvalidUrl(format!(
                "{}: expected redis://, rediss://, redis+unix:// or redis+sentinel://",
                redact(url)
            ))),
        }
    }

    /// A client for the server to use now: the fixed one, or the master Sentinel names now.
    pub(crate) async fn client(&mut self) -> RedisResult<Client> {
        match self {
            Self::Direct(client) => Ok(client.clone()),
            Self::Sentinel { sentinels, .. } => sentinels.async_get_client().await,
        }
    }
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
        ] {
            let err = Target::parse(url).expect_err(url).to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    #[test]
    fn redacts_credentials() {
        assert_eq!(redact("redis://u:p@h:1/0"), "redis://***@h:1/0");
        assert_eq!(redact("redis://h:1/a@b"), "redis://h:1/a@b");
        assert_eq!(redact("u:p@h,h2/m"), "***@h,h2/m");
    }
}

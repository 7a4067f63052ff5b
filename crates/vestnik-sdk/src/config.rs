//! Where the broker is and which app the SDK acts as.
//!
//! Plain data with defaults that match a local Vestnik (`127.0.0.1:6001`, plain http). It never
//! reads the environment: the application decides where its settings come from.

use std::fmt;
use std::time::Duration;

/// How to reach the broker's HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP, for a broker on the same host or network.
    Http,
    /// HTTPS with rustls and the Mozilla root certificates (Pusher's hosted API).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// Parses `http` or `https` (any case).
    ///
    /// For settings read from an environment variable or a URL, where the case is the user's.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }
}

/// The default local broker port (Vestnik's and soketi's default).
pub const DEFAULT_PORT: u16 = 6001;

/// How long one API call may take, connect included, unless the config says otherwise. Pusher's
/// Node SDK uses 30 s; a web request handler should not wait that long for a realtime side effect.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker and app credentials. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// http or https.
    pub scheme: Scheme,
    /// Host name or address of the broker's HTTP API, e.g. `api-eu.pusher.com`.
    pub host: String,
    /// Port of the broker's HTTP API.
    pub port: u16,
    /// The app id used in `/apps/{app_id}/…` paths.
    pub app_id: String,
    /// The app key (public).
    pub key: String,
    /// The app secret (signs every request and authorisation).
    pub secret: String,
    /// Deadline for one API call.
    pub timeout: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Config {
    /// A broker on `127.0.0.1:6001` over plain http.
    pub fn local(app_id: &str, key: &str, secret: &str) -> Self {
        Self {
            scheme: Scheme::Http,
            host: "127.0.0.1".into(),
            port: DEFAULT_PORT,
            app_id: app_id.into(),
            key: key.into(),
            secret: secret.into(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Pusher's hosted API for `cluster` (e.g. `eu`): `https://api-{cluster}.pusher.com:443`.
    pub fn pusher_cluster(cluster: &str, app_id: &str, key: &str, secret: &str) -> Self {
        Self {
            scheme: Scheme::Https,
            host: format!("api-{cluster}.pusher.com"),
            port: 443,
            ..Self::local(app_id, key, secret)
        }
    }

    /// `scheme://host:port`, without a trailing slash.
    pub fn base_url(&self) -> String {
        format!("{}://{}:{}", self.scheme.as_str(), self.host, self.port)
    }
}

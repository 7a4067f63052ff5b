//! Configuration: one struct tree with serde defaults, read from TOML, then environment, then flags.
//!
//! Precedence, lowest first: built-in defaults, the `--config` file, `VESTNIK_*` environment variables,
//! command-line flags (clap resolves the last two: a flag beats its variable). The layers are put
//! together in a [`Draft`] and checked once: every unknown key, unreadable value and value that
//! cannot be served is reported at once, each where the user wrote it (the file's line, the flag or
//! the variable; see [`draft`], [`recover`], [`validate`] and [`lines`]). This module must never
//! start anything.

use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;
use vestnik_broker::App;
use vestnik_protocol::limits;
use vestnik_webhooks::WebhookSettings;

mod draft;
mod lines;
mod recover;
mod validate;

pub use draft::Draft;
pub use lines::line_of;
pub use recover::boolish;
pub use validate::Problem;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Node-wide settings.
    pub server: ServerConfig,
    /// The apps served. Empty in the file means the one default app.
    pub apps: Vec<App>,
    /// Webhook delivery settings (the targets are per app); see docs/webhooks.md.
    pub webhooks: WebhookSettings,
    /// How this node joins others; see docs/scaling.md.
    pub cluster: ClusterConfig,
    /// The debug console at `/console`; see docs/console.md.
    pub console: ConsoleConfig,
    /// Where apps live when not in this file: `postgres://…` or `mysql://…` (`--apps-url`,
    /// `VESTNIK_APPS_URL`). Unset: the `[[apps]]` above are served, and `SIGHUP` reloads them.
    /// See docs/apps.md.
    pub apps_url: Option<DatabaseUrl>,
    /// The admin API at `/admin/apps`; see docs/apps.md.
    pub admin: AdminConfig,
    /// Usage recording per app and hour; see docs/apps.md.
    pub usage: UsageConfig,
}

/// Usage recording: the `[usage]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// Milliseconds between two flushes of the counted usage to the ledger (the app database, or
    /// the usage files). A flush also happens at every UTC hour and at shutdown. Ten seconds keeps
    /// billing figures fresh at one small write per node and interval.
    pub flush_interval_ms: u64,
    /// Where the usage files go when apps come from the config file (`--usage-dir`,
    /// `VESTNIK_USAGE_DIR`); unset: `usage/` under `webhooks.data_dir`. Unused with `apps_url`,
    /// whose database keeps the usage.
    pub data_dir: Option<std::path::PathBuf>,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            flush_interval_ms: 10_000,
            data_dir: None,
        }
    }
}

impl UsageConfig {
    /// The directory of the usage files: `data_dir`, else `usage/` under the webhooks' data dir.
    pub fn dir(&self, webhooks: &WebhookSettings) -> std::path::PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| webhooks.data_dir.join("usage"))
    }
}

/// A database URL that never prints its password (`Debug` shows `scheme://host/db` only).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(pub String);

impl DatabaseUrl {
    /// The URL itself, for connecting. Never log what this returns.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its user and password, for logs.
    pub fn redacted(&self) -> String {
        match self.0.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
                format!("{scheme}://{host}")
            }
            None => "<unparsed URL>".into(),
        }
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The admin API: the `[admin]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The bearer token of `/admin/apps` (`--admin-token`, `VESTNIK_ADMIN_TOKEN`); unset, the
    /// routes answer 404. `Debug` redacts it.
    pub token: Option<vestnik_protocol::AppSecret>,
    /// Failed admin authentications per client IP per minute before 429. Ten lets a person
    /// mistype; a token cannot be guessed at that rate.
    pub failed_attempts: u32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: None,
            failed_attempts: 10,
        }
    }
}

/// Which backbone joins the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdapterKind {
    /// A single node; nothing crosses processes.
    #[default]
    Local,
    /// Redis pub/sub.
    Redis,
    /// NATS subjects.
    Nats,
}

/// Cluster settings: the `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `local`, `redis` or `nats`.
    pub adapter: AdapterKind,
    /// Redis URL for the redis adapter.
    pub redis_url: String,
    /// NATS URL for the nats adapter.
    pub nats_url: String,
    /// Prefix of the backbone's channels or subjects; nodes with the same prefix form one cluster.
    pub prefix: String,
    /// Milliseconds between heartbeats.
    pub heartbeat_interval_ms: u64,
    /// Milliseconds of silence after which a node counts as dead and its members are removed.
    pub node_timeout_ms: u64,
    /// Milliseconds an API query waits for the other nodes.
    pub query_timeout_ms: u64,
    /// Milliseconds a starting node waits for the backbone before it serves anyway.
    pub join_timeout_ms: u64,
    /// Milliseconds a relay the backbone cannot take (link down) is held for the other nodes
    /// before it counts as lost; 0 holds nothing, and a trigger is then refused with 503 while
    /// the link is down. The hold is also bounded by memory (64 MiB).
    pub relay_hold_ms: u64,
    /// Route shards of interest routing: a channel's event relays go only to the nodes with a
    /// subscriber of a channel in its shard. 0 relays every event to every node (as before
    /// interest routing; set it on every node while a rolling upgrade mixes in older ones). Every
    /// node of a cluster must use the same value.
    pub route_shards: u32,
    /// Milliseconds a node keeps listening to a route shard after its last subscriber there left,
    /// so channels that empty and fill again cost no backbone (un)subscribe.
    pub route_linger_ms: u64,
    /// Answer a trigger only once the history store numbered its events (see
    /// `AppState::publish_all`), so a 200 survives the node's SIGKILL (docs/recovery.md, "What a
    /// 200 promises"). On by default; `false` answers once the events are queued, for a publisher
    /// that wants the throughput more than the promise.
    pub durable_triggers: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            adapter: AdapterKind::Local,
            redis_url: "redis://127.0.0.1:6379".into(),
            nats_url: "nats://127.0.0.1:4222".into(),
            prefix: "vestnik".into(),
            heartbeat_interval_ms: 2_000,
            node_timeout_ms: 10_000,
            query_timeout_ms: 1_000,
            join_timeout_ms: 5_000,
            relay_hold_ms: 10_000,
            route_shards: 4096,
            route_linger_ms: 2_000,
            durable_triggers: true,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            apps: vec![App::default()],
            webhooks: WebhookSettings::default(),
            cluster: ClusterConfig::default(),
            console: ConsoleConfig::default(),
            apps_url: None,
            admin: AdminConfig::default(),
            usage: UsageConfig::default(),
        }
    }
}

/// The debug console: the `[console]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Whether `/console` is served at all.
    pub enabled: bool,
    /// Seconds a console sign-in lasts. An hour: a working session, short enough that a forgotten
    /// browser does not stay signed in for days.
    pub session_ttl_secs: u64,
    /// Events a console may fall behind before it loses the oldest (and is told how many). 1024 holds
    /// several seconds of a busy app; at the 10 KiB data limit that is at most ~10 MiB per app.
    pub stream_capacity: usize,
    /// Milliseconds between the counts and channel list pushed to each console. A second reads as live
    /// without costing the broker more than one channel listing per console per second.
    pub stats_interval_ms: u64,
    /// Sign-in attempts per client IP per minute; over it, 429 with `Retry-After`. Ten is plenty for
    /// a person mistyping, and makes guessing a secret hopeless. 0 turns the limit off.
    pub signin_attempts: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_secs: 3_600,
            stream_capacity: 1_024,
            stats_interval_ms: 1_000,
            signin_attempts: 10,
        }
    }
}

/// Node-wide settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 lets the OS pick one (the log says which).
    pub port: u16,
    /// Most sockets on this node; 0 means no cap.
    pub max_connections: usize,
    /// Seconds of silence before the server pings a socket; sent in the handshake.
    pub activity_timeout: u64,
    /// Seconds to wait for a pong before closing with 4201.
    pub pong_timeout: u64,
    /// Frames a socket may have queued before it is closed as a slow consumer (4100).
    pub outbox_capacity: usize,
    /// Largest WebSocket message a client may send, in bytes.
    pub max_message_bytes: usize,
    /// Seconds to wait for in-flight requests and socket closes on shutdown.
    pub shutdown_timeout: u64,
    /// Port of the Prometheus metrics listener (on `host`); 0 picks a free one and logs it.
    pub metrics_port: u16,
    /// Whether to serve metrics at all.
    pub metrics: bool,
    /// The most bytes one read takes from a socket (capped at 16 KiB). The buffer is on the
    /// reading thread's stack for the length of one read, not kept per socket: an idle socket owns
    /// no read buffer whatever this is. Larger messages arrive in several reads.
    pub socket_read_buffer: usize,
    /// Milliseconds between the drain's start (`/ready` 503, upgrades refused) and its first socket
    /// close, so load balancers see the node leave before its clients come back to them.
    pub drain_grace_ms: u64,
    /// Milliseconds over which a drain spreads the 4200 closes of its sockets, so that clients
    /// reconnect to the other nodes gradually instead of all at once. 0 closes them together.
    pub drain_window_ms: u64,
    /// Seconds a client has to send its request headers (WebSocket upgrade included), and then its
    /// request body; slowloris protection.
    pub handshake_timeout: u64,
    /// Milliseconds one write to a socket (a batch of frames, a close) may take; a client that reads
    /// nothing for that long is dropped as a slow consumer (4100). See
    /// [`limits::WRITE_TIMEOUT_MS`].
    pub write_timeout_ms: u64,
    /// Seconds a client has to finish the TLS handshake when TLS is on.
    pub tls_handshake_timeout: u64,
    /// PEM certificate chain; with `tls_key`, the port serves `wss://` and `https://` only.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Take the client IP from the right-most `X-Forwarded-For` entry (the address the proxy in
    /// front saw). Only set it behind a proxy you run: anyone can send that header.
    pub trust_proxy: bool,
    /// New sockets one client IP may open per `ip_connection_window`; over it the upgrade gets 429.
    /// 0 means no limit.
    pub ip_connection_rate: u32,
    /// Seconds of the per-IP connection window.
    pub ip_connection_window: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "0.0.0.0".into(),
            port: 6001,
            max_connections: 0,
            activity_timeout: limits::ACTIVITY_TIMEOUT_SECS,
            pong_timeout: limits::PONG_TIMEOUT_SECS,
            outbox_capacity: limits::OUTBOX_CAPACITY,
            max_message_bytes: limits::MAX_CLIENT_MESSAGE_BYTES,
            shutdown_timeout: 10,
            socket_read_buffer: 4096,
            metrics_port: 9601,
            metrics: true,
            drain_grace_ms: limits::DRAIN_GRACE_MS,
            drain_window_ms: limits::DRAIN_WINDOW_MS,
            handshake_timeout: limits::HANDSHAKE_TIMEOUT_SECS,
            write_timeout_ms: limits::WRITE_TIMEOUT_MS,
            tls_handshake_timeout: limits::HANDSHAKE_TIMEOUT_SECS,
            tls_cert: None,
            tls_key: None,
            trust_proxy: false,
            ip_connection_rate: 0,
            ip_connection_window: limits::IP_CONNECTION_WINDOW_SECS,
        }
    }
}

impl ServerConfig {
    /// How long one write to a socket may take.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }

    /// How long a client has to send a request body once its headers are in.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout)
    }

    /// The drain's grace before the first close.
    pub fn drain_grace(&self) -> Duration {
        Duration::from_millis(self.drain_grace_ms)
    }

    /// The window the drain spreads its closes over.
    pub fn drain_window(&self) -> Duration {
        Duration::from_millis(self.drain_window_ms)
    }

    /// Whether the port serves TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }
}

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not TOML: nothing after a syntax error can be trusted, so it is the only report.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Unknown keys, unreadable values, or values that do not make a servable set: every one.
    #[error("{}", render_invalid(.problems))]
    Invalid {
        /// Each problem, placed where it was written.
        problems: Vec<Located>,
    },
}

/// A problem placed where the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// `file:line` (or only `file` for a default the file made invalid); `None` when the message
    /// names its flag or variable, or the value is a default.
    pub place: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Located {
    fn new(place: Option<String>, message: String) -> Self {
        Self { place, message }
    }
}

fn render_invalid(problems: &[Located]) -> String {
    problems
        .iter()
        .map(|p| match &p.place {
            Some(place) => format!("{place}: {}", p.message),
            None => p.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and checks a TOML file: every problem at once (see [`Draft`] to add flags first).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Draft::from_file(path)?.finish()
    }

    /// Reads and checks a TOML file as `vestnik config check` does: like [`Config::from_file`],
    /// and also loads the TLS certificate and key with the server's loader.
    pub fn check_file(path: &Path) -> Result<Self, ConfigError> {
        Draft::from_file(path)?.finish_with_tls()
    }

    /// Parses and checks TOML text; `path` only labels errors.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        Draft::from_toml(text, path)?.finish()
    }

    /// Whether the default app still has the public development credentials.
    pub fn uses_development_credentials(&self) -> bool {
        self.apps.iter().any(|a| a.secret == App::default().secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::from_toml("", "x.toml").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.uses_development_credentials());
    }

    #[test]
    fn apps_and_server() {
        let c = Config::from_toml(
            "[server]\nport = 7000\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nclient_events = false\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.server.port, 7000);
        assert_eq!(c.apps.len(), 1);
        assert!(!c.apps[0].client_events);
        assert_eq!(c.apps[0].max_event_bytes, 10240);
    }

    #[test]
    fn unknown_key_reports_its_line() {
        let e = Config::from_toml("[server]\nport = 7000\nprot = 1\n", "x.toml").unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("x.toml:3: unknown key `prot`: did you mean `port`?"),
            "{text}"
        );
    }

    #[test]
    fn operational_settings_parse_and_bad_ones_are_refused() {
        let c = Config::from_toml(
            "[server]\ndrain_window_ms = 2000\ndrain_grace_ms = 0\ntrust_proxy = true\n\
             ip_connection_rate = 20\nhandshake_timeout = 5\n\
             [[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\napi_rate_limit = 50\nmax_channels_per_socket = 0\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.server.drain_window(), Duration::from_secs(2));
        assert!(c.server.trust_proxy && !c.server.tls());
        assert_eq!(
            (c.apps[0].api_rate_limit, c.apps[0].max_channels_per_socket),
            (50, 0)
        );
        let invalid = |toml: &str| match Config::from_toml(toml, "x.toml") {
            Err(e @ ConfigError::Invalid { .. }) => e.to_string(),
            other => panic!("{toml}: {other:?}"),
        };
        assert!(invalid("[server]\nhandshake_timeout = 0\n").contains("handshake_timeout"));
        assert!(invalid("[server]\ndrain_window_ms = 9999999\n").contains("drain_window_ms"));
        assert!(invalid("[server]\nwrite_timeout_ms = 0\n").contains("write_timeout_ms"));
        assert!(invalid("[server]\ntls_cert = \"/etc/hostname\"\n").contains("go together"));
        assert!(invalid(
            "[server]\ntls_cert = \"/nonexistent.pem\"\ntls_key = \"/nonexistent.key\"\n"
        )
        .contains("/nonexistent.pem"));
        assert!(
            invalid("[server]\nip_connection_rate = 5\nip_connection_window = 0\n")
                .contains("ip_connection_window")
        );
        // A negative number is reported on its line.
        assert!(invalid("[server]\nport = 1\ndrain_window_ms = -1\n").starts_with("x.toml:3:"));
    }

    #[test]
    fn history_is_on_by_default_and_tuned_per_app_and_prefix() {
        let c = Config::from_toml(
            "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n\
             [apps.history]\nsize = 20\n\
             [[apps.history.channels]]\nprefix = \"noisy-\"\nenabled = false\n\
             [[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s\"\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.apps[0].history.for_channel("a").unwrap().size, 20);
        assert_eq!(c.apps[0].history.for_channel("noisy-a"), None);
        assert_eq!(
            c.apps[1].history.for_channel("a").unwrap().size,
            limits::HISTORY_SIZE
        );
        let e = Config::from_toml(
            "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[apps.history]\nttl = 0\n",
            "x.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("history.ttl"), "{e}");
    }

    #[test]
    fn bad_value_and_duplicates() {
        let e = Config::from_toml("[server]\nport = \"x\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().starts_with("x.toml:2:"), "{e}");
        assert!(matches!(
            Config::from_toml("[[apps]]\nid=\"1\"\n[[apps]]\nid=\"2\"\n", "x.toml"),
            Err(ConfigError::Invalid { .. })
        ));
    }
}

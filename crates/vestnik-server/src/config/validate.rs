//! What serde cannot check in a parsed [`Config`]: credentials, uniqueness, sane limits and settings
//! that only make sense together. Every problem is collected, not only the first, and each names the
//! key it is about as a dotted path (see [`super::lines`]), so `vestnik config check` can point at
//! the line of each one.
//!
//! [`Config::problems`] only looks at the values (and whether TLS files exist);
//! [`Config::tls_problems`] also loads the certificate and key the way the server does. This module
//! must never change a value or start anything.

use std::net::IpAddr;

use serde::Serialize;
use vestnik_broker::app::AppStoreError;
use vestnik_protocol::limits;
use vestnik_webhooks::ValidateTarget;

use super::{Config, ServerConfig};

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key it is about, as a dotted path into the file: `server.port`,
    /// `apps.2.max_batch_events`, `apps.0.webhooks.1.url` (numbers index `[[…]]` arrays).
    pub key: String,
    /// What is wrong, naming the key.
    pub message: String,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Every problem of the values, in file order of their tables; empty when the set is servable.
    ///
    /// The cluster timing rule exists because a node is declared dead after `node_timeout_ms`
    /// without a heartbeat: a timeout at or below the heartbeat interval would declare live nodes
    /// dead between two beats. The 30 s ceiling bounds how long a crashed node's presence members
    /// linger on the others.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        self.server.problems(&mut out);
        self.app_problems(&mut out);
        if let Err(e) = self.webhooks.validate() {
            let message = e.to_string();
            let fields = field_names(&self.webhooks);
            let field = first_mentioned(&message, &fields);
            out.push(Problem::new(join("webhooks", field), message));
        }
        let c = &self.cluster;
        if c.heartbeat_interval_ms == 0 || c.node_timeout_ms <= c.heartbeat_interval_ms {
            let key = if c.heartbeat_interval_ms == 0 {
                "cluster.heartbeat_interval_ms"
            } else {
                "cluster.node_timeout_ms"
            };
            out.push(Problem::new(
                key,
                "cluster.node_timeout_ms must be larger than cluster.heartbeat_interval_ms, which must be positive",
            ));
        }
        if c.node_timeout_ms > 30_000 {
            out.push(Problem::new(
                "cluster.node_timeout_ms",
                "cluster.node_timeout_ms is at most 30000: a dead node's members must go within 30 s",
            ));
        }
        // A node subscribes to at most this many backbone channels; past 2^20 the per-shard
        // bookkeeping costs memory and a shard saves nothing more.
        if c.route_shards > 1 << 20 {
            out.push(Problem::new(
                "cluster.route_shards",
                "cluster.route_shards is at most 1048576 (0 turns interest routing off)",
            ));
        }
        if self.usage.flush_interval_ms == 0 {
            out.push(Problem::new(
                "usage.flush_interval_ms",
                "usage.flush_interval_ms must be at least 1",
            ));
        }
        let console = &self.console;
        for (key, value) in [
            ("session_ttl_secs", console.session_ttl_secs),
            ("stream_capacity", console.stream_capacity as u64),
            ("stats_interval_ms", console.stats_interval_ms),
        ] {
            if value == 0 {
                out.push(Problem::new(
                    format!("console.{key}"),
                    format!("console.{key} must be at least 1"),
                ));
            }
        }
        out
    }

    /// Checks what serde cannot: credentials, uniqueness and sane limits. Every problem, one per
    /// line, when there are any.
    pub fn validate(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        Err(problems
            .into_iter()
            .map(|p| p.message)
            .collect::<Vec<_>>()
            .join("\n"))
    }

    /// Loads the TLS certificate and key with the server's own loader ([`crate::tls::acceptor`]),
    /// so a file that exists but holds no usable PEM is caught before a start. Nothing when TLS is
    /// off or the files are missing ([`Config::problems`] reports those).
    pub fn tls_problems(&self) -> Vec<Problem> {
        let s = &self.server;
        let (Some(cert), Some(key)) = (&s.tls_cert, &s.tls_key) else {
            return Vec::new();
        };
        if !cert.is_file() || !key.is_file() {
            return Vec::new();
        }
        match crate::tls::acceptor(s) {
            Ok(_) => Vec::new(),
            Err(e) => {
                let key = match e {
                    crate::tls::TlsError::Key { .. } => "server.tls_key",
                    crate::tls::TlsError::Cert { .. } | crate::tls::TlsError::Pair(_) => {
                        "server.tls_cert"
                    }
                };
                vec![Problem::new(key, format!("server.{e}"))]
            }
        }
    }

    /// The app checks: first every credential problem, spelled out one by one; then, only if those
    /// pass, the store's own constructor, which stays the authority on what it refuses.
    fn app_problems(&self, out: &mut Vec<Problem>) {
        let before = out.len();
        self.credential_problems(out);
        if out.len() == before {
            // The store is the authority; the checks above only spell out all of its refusals.
            if let Err(e) = vestnik_broker::StaticAppStore::new(self.apps.clone()) {
                out.push(Problem::new(self.store_error_key(&e), e.to_string()));
            }
        }
        for (i, app) in self.apps.iter().enumerate() {
            for (j, target) in app.webhooks.iter().enumerate() {
                if let Err(e) = target.validate() {
                    let message = format!("app {:?}: {e}", app.id);
                    let fields = field_names(target);
                    let field = first_mentioned(&message, &fields).or(Some("url"));
                    out.push(Problem::new(
                        join(&format!("apps.{i}.webhooks.{j}"), field),
                        message,
                    ));
                }
            }
            history_problems(i, app, out);
            for (key, value) in [
                ("max_channels_per_trigger", app.max_channels_per_trigger),
                ("max_batch_events", app.max_batch_events),
            ] {
                if value == 0 {
                    out.push(Problem::new(
                        format!("apps.{i}.{key}"),
                        format!("app {:?}: {key} must be at least 1", app.id),
                    ));
                }
            }
        }
    }

    /// Every refusal of [`vestnik_broker::StaticAppStore::new`], not only its first: empty
    /// credentials, each later app that repeats an id or a key, and a key that is another's id.
    fn credential_problems(&self, out: &mut Vec<Problem>) {
        for (i, app) in self.apps.iter().enumerate() {
            let earlier = &self.apps[..i];
            for (what, value) in [
                ("id", app.id.as_str()),
                ("key", app.key.as_str()),
                ("secret", app.secret.expose()),
            ] {
                let error = if value.is_empty() {
                    AppStoreError::EmptyField { index: i, what }
                } else if what != "secret"
                    && earlier
                        .iter()
                        .any(|a| value == if what == "id" { &*a.id } else { &*a.key })
                {
                    AppStoreError::Duplicate {
                        what,
                        value: value.to_owned(),
                    }
                } else {
                    continue;
                };
                out.push(Problem::new(format!("apps.{i}.{what}"), error.to_string()));
            }
            let key_is_other_id = self
                .apps
                .iter()
                .enumerate()
                .any(|(j, other)| j != i && other.id == app.key);
            if !app.key.is_empty() && key_is_other_id && app.key != app.id {
                let error = AppStoreError::KeyIsAnotherId {
                    value: app.key.clone(),
                };
                out.push(Problem::new(format!("apps.{i}.key"), error.to_string()));
            }
        }
    }

    /// The key of the app the store refused: the later of two duplicates, the app whose key is
    /// another's id, the empty field.
    fn store_error_key(&self, e: &AppStoreError) -> String {
        let last = |pick: &dyn Fn(&vestnik_broker::App) -> bool| self.apps.iter().rposition(pick);
        match e {
            AppStoreError::Empty => "apps".into(),
            AppStoreError::EmptyField { index, what } => format!("apps.{index}.{what}"),
            AppStoreError::Duplicate { what, value } => {
                let index = last(&|a| if *what == "id" { &a.id } else { &a.key } == value);
                index.map_or("apps".into(), |i| format!("apps.{i}.{what}"))
            }
            AppStoreError::KeyIsAnotherId { value } => {
                last(&|a| &a.key == value).map_or("apps".into(), |i| format!("apps.{i}.key"))
            }
        }
    }
}

impl ServerConfig {
    /// The operational settings: timeouts, the drain, the listeners, TLS files and the per-IP window.
    fn problems(&self, out: &mut Vec<Problem>) {
        let mut bad = |key: &str, message: String| out.push(Problem::new(key, message));
        if self.activity_timeout == 0 {
            bad(
                "server.activity_timeout",
                "server.activity_timeout must be at least 1 (pusher-js refuses 0)".into(),
            );
        }
        if self.outbox_capacity == 0 {
            bad(
                "server.outbox_capacity",
                "server.outbox_capacity must be at least 1".into(),
            );
        }
        if self.max_message_bytes < 1024 {
            bad(
                "server.max_message_bytes",
                "server.max_message_bytes must be at least 1024".into(),
            );
        }
        if !is_host(&self.host) {
            bad(
                "server.host",
                format!(
                    "server.host {:?} is neither an IP address nor a host name (the port goes in server.port)",
                    self.host
                ),
            );
        }
        if self.metrics && self.port != 0 && self.metrics_port == self.port {
            bad(
                "server.metrics_port",
                format!(
                    "server.metrics_port {} is also server.port: metrics need a port of their own \
                     (or metrics = false)",
                    self.metrics_port
                ),
            );
        }
        for (key, value) in [
            ("handshake_timeout", self.handshake_timeout),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
        ] {
            if value == 0 {
                bad(
                    &format!("server.{key}"),
                    format!(
                        "server.{key} must be at least 1 (0 would let slow clients hold sockets forever)"
                    ),
                );
            }
        }
        if self.write_timeout_ms == 0 {
            bad(
                "server.write_timeout_ms",
                "server.write_timeout_ms must be at least 1 (0 would let a client that stops \
                 reading hold its socket forever)"
                    .into(),
            );
        }
        if self.drain_window_ms > limits::MAX_DRAIN_WINDOW_MS {
            bad(
                "server.drain_window_ms",
                format!(
                    "server.drain_window_ms is at most {} (an orchestrator kills a node that drains longer)",
                    limits::MAX_DRAIN_WINDOW_MS
                ),
            );
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                let key = if self.tls_cert.is_some() {
                    "server.tls_cert"
                } else {
                    "server.tls_key"
                };
                bad(
                    key,
                    "server.tls_cert and server.tls_key go together: set both or neither".into(),
                );
            }
            (Some(cert), Some(key)) => {
                for (what, path) in [("tls_cert", cert), ("tls_key", key)] {
                    if !path.is_file() {
                        bad(
                            &format!("server.{what}"),
                            format!("server.{what}: {} is not a readable file", path.display()),
                        );
                    }
                }
            }
            (None, None) => {}
        }
        if self.ip_connection_rate > 0 && self.ip_connection_window == 0 {
            bad(
                "server.ip_connection_window",
                "server.ip_connection_window must be at least 1 when ip_connection_rate is set"
                    .into(),
            );
        }
    }
}

/// Longest DNS name and label (RFC 1035 section 2.3.4).
const MAX_HOST_NAME: usize = 253;
const MAX_HOST_LABEL: usize = 63;

/// Whether `host` can be listened on: an IP address (IPv6 with or without brackets) or a
/// syntactically valid host name (resolved only when the server binds).
fn is_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= MAX_HOST_NAME
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= MAX_HOST_LABEL
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The field names `value` serializes with (a table's keys), so messages from other crates can be
/// traced to a key without a second list of names here.
fn field_names<T: Serialize>(value: &T) -> Vec<String> {
    toml::Table::try_from(value)
        .map(|t| t.keys().cloned().collect())
        .unwrap_or_default()
}

/// The field of `fields` that `message` mentions first (the longest one at a tie).
fn first_mentioned<'a>(message: &str, fields: &'a [String]) -> Option<&'a str> {
    fields
        .iter()
        .filter_map(|f| message.find(f.as_str()).map(|at| (at, f)))
        .min_by_key(|(at, f)| (*at, usize::MAX - f.len()))
        .map(|(_, f)| f.as_str())
}

/// `table.field`, or `table` alone when the message named no field.
fn join(table: &str, field: Option<&str>) -> String {
    match field {
        Some(f) => format!("{table}.{f}"),
        None => table.to_owned(),
    }
}

/// `[apps.history]`: bounds of at least 1 and prefixes that name something.
fn history_problems(i: usize, app: &vestnik_broker::App, out: &mut Vec<Problem>) {
    let h = &app.history;
    let at_least_one = |out: &mut Vec<Problem>, key: String, value: u64| {
        if value == 0 {
            let message = format!("app {:?}: {key} must be at least 1", app.id);
            out.push(Problem::new(key, message));
        }
    };
    at_least_one(out, format!("apps.{i}.history.size"), h.size as u64);
    at_least_one(out, format!("apps.{i}.history.ttl"), h.ttl);
    at_least_one(
        out,
        format!("apps.{i}.history.max_bytes"),
        h.max_bytes as u64,
    );
    for (j, rule) in h.channels.iter().enumerate() {
        let at = format!("apps.{i}.history.channels.{j}");
        if let Some(size) = rule.size {
            at_least_one(out, format!("{at}.size"), size as u64);
        }
        if let Some(ttl) = rule.ttl {
            at_least_one(out, format!("{at}.ttl"), ttl);
        }
        if rule.prefix.is_empty() {
            out.push(Problem::new(
                format!("{at}.prefix"),
                format!("app {:?}: a history rule needs a non-empty prefix", app.id),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IP literals (IPv6 with or without brackets) and valid names pass; an address with a port, a
    /// space, a leading hyphen or an empty label fails.
    #[test]
    fn hosts() {
        for ok in [
            "0.0.0.0",
            "127.0.0.1",
            "::",
            "[::1]",
            "localhost",
            "vestnik-1.internal",
        ] {
            assert!(is_host(ok), "{ok}");
        }
        for bad in ["", "0.0.0.0:6001", "local host", "-x", "a..b", "[nope]"] {
            assert!(!is_host(bad), "{bad}");
        }
    }

    /// A config with several mistakes reports all of them at once, each under its own key, so a
    /// user fixes them in one pass rather than one start at a time.
    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut c = Config::default();
        c.server.handshake_timeout = 0;
        c.server.metrics_port = c.server.port;
        c.webhooks.batch_max = 0;
        c.apps[0].max_batch_events = 0;
        c.console.stream_capacity = 0;
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.metrics_port",
                "server.handshake_timeout",
                "apps.0.max_batch_events",
                "webhooks.batch_max",
                "console.stream_capacity"
            ]
        );
        let all = c.validate().unwrap_err();
        assert_eq!(all.lines().count(), 5, "{all}");
    }

    /// Two listeners on port 0 do not clash (each gets its own free port), and a metrics port equal
    /// to the main port is no clash while metrics are off.
    #[test]
    fn metrics_may_share_port_0_or_be_off() {
        let mut c = Config::default();
        c.server.port = 0;
        c.server.metrics_port = 0;
        assert!(c.problems().is_empty());
        c.server.port = 9601;
        c.server.metrics = false;
        assert!(c.problems().is_empty());
    }

    /// The problem names the later of two apps with one id, which is the one the user just added.
    #[test]
    fn duplicate_apps_point_at_the_later_one() {
        let mut c = Config::default();
        let mut second = c.apps[0].clone();
        second.key = "other".into();
        c.apps.push(second);
        let p = c.problems();
        assert_eq!(p[0].key, "apps.1.id", "{p:?}");
        // Sharing both the id and the key reports both.
        c.apps[1].key = c.apps[0].key.clone();
        let keys: Vec<String> = c.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["apps.1.id", "apps.1.key"]);
    }
}

//! What an app is in the catalogue: [`AppRecord`] with its credentials, switches, limits, options,
//! quotas and webhook targets, and the inputs of the admin operations ([`NewApp`], [`AppUpdate`]).
//!
//! Limits, options and quotas are grouped so that an update replaces a group at once (an admin API
//! merges a JSON patch into the current group and sends `expected_revision`). Every group defaults to
//! the broker's defaults from `vestnik_protocol::limits`, the same as an `[[apps]]` table that names
//! nothing. This module must never touch a database: the stores read and write these types.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use vestnik_protocol::limits;
use vestnik_protocol::webhook::WebhookTarget;

use crate::error::StoreError;
use crate::secret::Secret;

/// Longest id or key accepted. Both appear in URL paths and index columns (`VARCHAR(64)`).
pub const MAX_ID_LEN: usize = 64;

/// Longest secret accepted.
pub const MAX_SECRET_LEN: usize = 128;

/// Longest grace period a rotation may keep the old secret: a week covers the slowest rolling
/// redeploy; longer is a leaked secret that stays valid.
pub const MAX_ROTATION_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// One app as the catalogue holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct AppRecord {
    /// The app id used in the HTTP API path.
    pub id: String,
    /// The public key clients connect with.
    pub key: String,
    /// The current secret.
    pub secret: Secret,
    /// The secret before the last rotation, valid until its grace ends.
    pub previous_secret: Option<PreviousSecret>,
    /// A disabled app refuses sockets (4003) and API calls (403).
    pub enabled: bool,
    /// Per-node limits, as in `[[apps]]`.
    pub limits: Limits,
    /// Feature switches, as in `[[apps]]`.
    pub options: Options,
    /// Cluster-wide quotas.
    pub quotas: Quotas,
    /// Where this app's webhooks go, as `[[apps.webhooks]]`.
    pub webhooks: Vec<WebhookTarget>,
    /// When the app was created.
    pub created_at: SystemTime,
    /// When the row last changed.
    pub updated_at: SystemTime,
    /// The catalogue revision of the row's last change: increases with every write to any app, so a
    /// larger number is always the newer state.
    pub revision: u64,
}

/// A secret replaced by a rotation, still accepted until `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviousSecret {
    /// The old secret.
    pub secret: Secret,
    /// When the old secret stops being accepted.
    pub expires_at: SystemTime,
}

impl AppRecord {
    /// The secrets valid at `now`: the current one, then the previous one while its grace lasts.
    /// Signature checks try them in this order; webhooks are signed with the first only.
    pub fn valid_secrets(&self, now: SystemTime) -> impl Iterator<Item = &Secret> {
        let previous = self
            .previous_secret
            .as_ref()
            .filter(|p| now < p.expires_at)
            .map(|p| &p.secret);
        std::iter::once(&self.secret).chain(previous)
    }
}

/// Per-node limits: what `[[apps]]` calls by the same names. Zero means "no limit" where the
/// config says so (`max_connections`, `client_event_rate`, `max_channels_per_socket`,
/// `api_rate_limit`); the others must be at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most concurrent sockets for this app on one node; 0: no limit. Over it: 4004.
    pub max_connections: u32,
    /// Client events each socket may send per second; 0: no limit.
    pub client_event_rate: u32,
    /// Largest event data in bytes (413 for the API, 4301 for client events).
    pub max_event_bytes: u32,
    /// Most distinct users in one presence channel.
    pub max_presence_members: u32,
    /// Largest presence `user_info`, in bytes.
    pub max_user_info_bytes: u32,
    /// Most channels in one trigger.
    pub max_channels_per_trigger: u32,
    /// Most events in one batch.
    pub max_batch_events: u32,
    /// Most channels one socket may join; 0: no limit.
    pub max_channels_per_socket: u32,
    /// Signed API requests per second on each node; 0: no limit.
    pub api_rate_limit: u32,
}

/// The broker's protocol limits (`vestnik_protocol::limits`, each with its source), so an app made
/// with no limits behaves exactly like an `[[apps]]` entry in the config file that names none.
impl Default for Limits {
    fn default() -> Self {
        let n = |v: usize| u32::try_from(v).expect("default limits fit in u32");
        Self {
            max_connections: 0,
            client_event_rate: limits::CLIENT_EVENTS_PER_SECOND,
            max_event_bytes: n(limits::MAX_EVENT_BYTES),
            max_presence_members: n(limits::MAX_PRESENCE_MEMBERS),
            max_user_info_bytes: n(limits::MAX_USER_INFO_BYTES),
            max_channels_per_trigger: n(limits::MAX_CHANNELS_PER_TRIGGER),
            max_batch_events: n(limits::MAX_BATCH_EVENTS),
            max_channels_per_socket: n(limits::MAX_CHANNELS_PER_SOCKET),
            api_rate_limit: 0,
        }
    }
}

/// Feature switches and timings: what `[[apps]]` calls by the same names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Whether sockets may send client events.
    pub client_events: bool,
    /// Origins allowed to open sockets; empty allows any.
    pub allowed_origins: Vec<String>,
    /// Seconds a socket has to sign in (4009 after); 0: sign-in optional.
    pub signin_timeout: u32,
    /// Whether signed-in users receive watchlist events.
    pub watchlist: bool,
    /// Whether non-presence channels send `pusher_internal:subscription_count`.
    pub subscription_count: bool,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl: u32,
}

/// As in `[[apps]]`: client events on, any origin, sign-in optional, watchlist on, no subscription
/// counts, the protocol's cache TTL.
impl Default for Options {
    fn default() -> Self {
        Self {
            client_events: true,
            allowed_origins: Vec::new(),
            signin_timeout: 0,
            watchlist: true,
            subscription_count: false,
            cache_ttl: u32::try_from(limits::CACHE_TTL_SECS).expect("default TTL fits in u32"),
        }
    }
}

/// Quotas that hold across the cluster (a plan's allowance); 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Most concurrent sockets across every node; over it a new socket gets 4004.
    pub max_connections: u64,
    /// Most messages per UTC day (API messages received plus messages delivered, as Pusher counts);
    /// over it the API answers with its limit error.
    pub max_messages_per_day: u64,
}

/// What `create` needs. Id, key and secret are generated when absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewApp {
    /// A chosen id, or `None` for nine random digits.
    pub id: Option<String>,
    /// A chosen key, or `None` for 20 random hex digits.
    pub key: Option<String>,
    /// A chosen secret, or `None` for 32 random hex digits.
    pub secret: Option<Secret>,
    /// Whether the app starts enabled.
    pub enabled: bool,
    /// Limits; defaults as in `[[apps]]`.
    pub limits: Limits,
    /// Options; defaults as in `[[apps]]`.
    pub options: Options,
    /// Quotas; none by default.
    pub quotas: Quotas,
    /// Webhook targets; none by default.
    pub webhooks: Vec<WebhookTarget>,
}

impl NewApp {
    /// An enabled app with every default and generated credentials.
    ///
    /// `NewApp::default()` is disabled (`enabled: false`, the `bool` default); this is the
    /// constructor for the common case.
    pub fn generated() -> Self {
        Self {
            enabled: true,
            ..Self::default()
        }
    }
}

/// What `update` changes: each group given replaces the stored group whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppUpdate {
    /// New limits.
    pub limits: Option<Limits>,
    /// New options.
    pub options: Option<Options>,
    /// New quotas.
    pub quotas: Option<Quotas>,
    /// New webhook targets.
    pub webhooks: Option<Vec<WebhookTarget>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Refuse the update with a conflict unless the record is still at this revision, so that two
    /// admins merging patches into the same group do not lose one another's change.
    pub expected_revision: Option<u64>,
}

impl AppUpdate {
    /// Applies the update to the current record, refusing it if the record moved past
    /// `expected_revision`.
    pub(crate) fn apply(self, record: &mut AppRecord) -> Result<(), StoreError> {
        if let Some(expected) = self.expected_revision {
            if expected != record.revision {
                return Err(StoreError::Conflict(format!(
                    "app {:?} is at revision {}, not {expected}; read it again and retry",
                    record.id, record.revision
                )));
            }
        }
        if let Some(l) = self.limits {
            record.limits = l;
        }
        if let Some(o) = self.options {
            record.options = o;
        }
        if let Some(q) = self.quotas {
            record.quotas = q;
        }
        if let Some(w) = self.webhooks {
            record.webhooks = w;
        }
        if let Some(e) = self.enabled {
            record.enabled = e;
        }
        Ok(())
    }
}

/// Checks an id or key: 1 to 64 characters of `A-Z a-z 0-9 - _ .` (they go into URL paths).
pub(crate) fn check_name(field: &str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_ID_LEN {
        return Err(StoreError::invalid(
            field,
            format!("must be 1 to {MAX_ID_LEN} characters"),
        ));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(StoreError::invalid(
            field,
            "may hold only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(())
}

/// Checks a secret: 8 to 128 printable ASCII characters without spaces. The value is never echoed.
pub(crate) fn check_secret(secret: &Secret) -> Result<(), StoreError> {
    let s = secret.expose();
    if s.len() < 8 || s.len() > MAX_SECRET_LEN || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(StoreError::invalid(
            "secret",
            format!("must be 8 to {MAX_SECRET_LEN} printable ASCII characters without spaces"),
        ));
    }
    Ok(())
}

/// Largest number a limit or option may hold: the columns are SQL `integer`.
const MAX_COLUMN_INT: u32 = i32::MAX as u32;

/// Checks the limits that must be at least 1, as the config's validation does, and that every
/// limit fits its column.
pub(crate) fn check_limits(l: &Limits) -> Result<(), StoreError> {
    for (name, value) in [
        ("limits.max_connections", l.max_connections),
        ("limits.client_event_rate", l.client_event_rate),
        ("limits.max_channels_per_socket", l.max_channels_per_socket),
        ("limits.api_rate_limit", l.api_rate_limit),
        ("limits.max_event_bytes", l.max_event_bytes),
        ("limits.max_presence_members", l.max_presence_members),
        ("limits.max_user_info_bytes", l.max_user_info_bytes),
        (
            "limits.max_channels_per_trigger",
            l.max_channels_per_trigger,
        ),
        ("limits.max_batch_events", l.max_batch_events),
    ] {
        if value > MAX_COLUMN_INT {
            return Err(StoreError::invalid(
                name,
                format!("may be at most {MAX_COLUMN_INT}"),
            ));
        }
    }
    for (name, value) in [
        ("limits.max_event_bytes", l.max_event_bytes),
        ("limits.max_presence_members", l.max_presence_members),
        ("limits.max_user_info_bytes", l.max_user_info_bytes),
        (
            "limits.max_channels_per_trigger",
            l.max_channels_per_trigger,
        ),
        ("limits.max_batch_events", l.max_batch_events),
    ] {
        if value == 0 {
            return Err(StoreError::invalid(name, "must be at least 1"));
        }
    }
    Ok(())
}

/// Checks the options: a cache TTL of at least a second, origins that are not empty strings.
pub(crate) fn check_options(o: &Options) -> Result<(), StoreError> {
    for (name, value) in [
        ("options.signin_timeout", o.signin_timeout),
        ("options.cache_ttl", o.cache_ttl),
    ] {
        if value > MAX_COLUMN_INT {
            return Err(StoreError::invalid(
                name,
                format!("may be at most {MAX_COLUMN_INT}"),
            ));
        }
    }
    if o.cache_ttl == 0 {
        return Err(StoreError::invalid(
            "options.cache_ttl",
            "must be at least 1",
        ));
    }
    if o.allowed_origins.iter().any(|s| s.trim().is_empty()) {
        return Err(StoreError::invalid(
            "options.allowed_origins",
            "may not hold an empty origin",
        ));
    }
    Ok(())
}

/// Checks webhook targets: an `http://` or `https://` URL with a host. The sender checks the rest
/// (headers it refuses) when it loads them.
pub(crate) fn check_webhooks(targets: &[WebhookTarget]) -> Result<(), StoreError> {
    for (i, t) in targets.iter().enumerate() {
        let rest = t
            .url
            .strip_prefix("https://")
            .or_else(|| t.url.strip_prefix("http://"));
        let host_ok = rest.is_some_and(|r| {
            let host = r.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains(char::is_whitespace)
        });
        if !host_ok {
            return Err(StoreError::invalid(
                format!("webhooks.{i}.url"),
                "must be an http:// or https:// URL with a host",
            ));
        }
    }
    Ok(())
}

/// Checks that quotas fit their `bigint` columns.
pub(crate) fn check_quotas(q: &Quotas) -> Result<(), StoreError> {
    for (name, value) in [
        ("quotas.max_connections", q.max_connections),
        ("quotas.max_messages_per_day", q.max_messages_per_day),
    ] {
        if value > i64::MAX as u64 {
            return Err(StoreError::invalid(
                name,
                format!("may be at most {}", i64::MAX),
            ));
        }
    }
    Ok(())
}

/// Checks everything a new app holds except the generated parts.
///
/// Checked here before any SQL runs, so the admin gets a 422 naming the field; the table's
/// `CHECK`s are the second line, for writes that bypass Vestnik.
pub(crate) fn check_new(app: &NewApp) -> Result<(), StoreError> {
    if let Some(id) = &app.id {
        check_name("id", id)?;
    }
    if let Some(key) = &app.key {
        check_name("key", key)?;
    }
    if let Some(secret) = &app.secret {
        check_secret(secret)?;
    }
    check_limits(&app.limits)?;
    check_options(&app.options)?;
    check_quotas(&app.quotas)?;
    check_webhooks(&app.webhooks)
}

/// Checks every group of an update.
pub(crate) fn check_update(u: &AppUpdate) -> Result<(), StoreError> {
    if let Some(l) = &u.limits {
        check_limits(l)?;
    }
    if let Some(o) = &u.options {
        check_options(o)?;
    }
    if let Some(q) = &u.quotas {
        check_quotas(q)?;
    }
    if let Some(w) = &u.webhooks {
        check_webhooks(w)?;
    }
    Ok(())
}

/// Checks a rotation's grace period.
/// A zero grace is allowed: it drops the old secret at once (an emergency rotation after a leak).
pub(crate) fn check_grace(grace: Duration) -> Result<(), StoreError> {
    if grace > MAX_ROTATION_GRACE {
        return Err(StoreError::invalid(
            "grace",
            format!("may be at most {} seconds", MAX_ROTATION_GRACE.as_secs()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AppRecord {
        AppRecord {
            id: "1".into(),
            key: "k".into(),
            secret: Secret::new("new-secret"),
            previous_secret: Some(PreviousSecret {
                secret: Secret::new("old-secret"),
                expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(100),
            }),
            enabled: true,
            limits: Limits::default(),
            options: Options::default(),
            quotas: Quotas::default(),
            webhooks: Vec::new(),
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            revision: 1,
        }
    }

    /// A rotated-out secret must verify signatures during its grace and never after, or a leaked
    /// old secret stays valid.
    #[test]
    fn previous_secret_only_during_grace() {
        let r = record();
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        let during: Vec<&str> = r.valid_secrets(at(99)).map(Secret::expose).collect();
        assert_eq!(during, ["new-secret", "old-secret"]);
        let after: Vec<&str> = r.valid_secrets(at(100)).map(Secret::expose).collect();
        assert_eq!(after, ["new-secret"]);
    }

    /// Records are logged on admin changes: neither the current nor the previous secret may print.
    #[test]
    fn record_debug_hides_both_secrets() {
        let shown = format!("{:?}", record());
        assert!(
            !shown.contains("new-secret") && !shown.contains("old-secret"),
            "{shown}"
        );
        assert!(shown.contains(crate::secret::REDACTED));
    }

    #[test]
    fn checks() {
        assert!(check_name("id", "1001").is_ok());
        assert!(check_name("id", "").is_err());
        assert!(check_name("id", "a/b").is_err());
        assert!(check_name("key", &"x".repeat(65)).is_err());
        assert!(check_secret(&Secret::new("short")).is_err());
        assert!(check_secret(&Secret::new("with space inside")).is_err());
        let zero = Limits {
            max_batch_events: 0,
            ..Limits::default()
        };
        assert!(matches!(
            check_limits(&zero),
            Err(StoreError::Invalid { field, .. }) if field == "limits.max_batch_events"
        ));
        let bad = WebhookTarget::every_event("ftp://x");
        assert!(check_webhooks(&[bad]).is_err());
        assert!(check_webhooks(&[WebhookTarget::every_event("https://h.example/hook")]).is_ok());
        assert!(check_webhooks(&[WebhookTarget::every_event("https:///nohost")]).is_err());
        let huge = Limits {
            api_rate_limit: u32::MAX,
            ..Limits::default()
        };
        assert!(check_limits(&huge).is_err());
        assert!(check_grace(MAX_ROTATION_GRACE + Duration::from_secs(1)).is_err());
    }

    /// An admin patch that names a key the group does not have (a typo) must be refused, not
    /// ignored.
    #[test]
    fn groups_deserialize_with_defaults_and_refuse_unknown_keys() {
        let l: Limits = serde_json::from_str(r#"{"api_rate_limit":5}"#).unwrap();
        assert_eq!(l.api_rate_limit, 5);
        assert_eq!(l.max_batch_events, 10);
        assert!(serde_json::from_str::<Limits>(r#"{"nope":1}"#).is_err());
    }
}

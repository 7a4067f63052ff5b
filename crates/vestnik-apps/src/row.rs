//! The apps table's columns, shared by both databases: the order they are read and written in, the
//! row as plain values ([`RawApp`]), and its conversion to and from [`AppRecord`].
//!
//! Each backend writes its own SQL (placeholders, timestamp and JSON expressions differ) over the
//! same column order, so a new column is added here once. This module must never run a query.

use sqlx::{ColumnIndex, Decode, Row, Type};
use vestnik_protocol::webhook::WebhookTarget;

use crate::record::{AppRecord, Limits, Options, PreviousSecret, Quotas};
use crate::secret::Secret;
use crate::usage::from_unix_millis;

/// The columns `create` and `update` write after `id`, `app_key` and `secret`, in bind order. The
/// JSON columns are marked so that PostgreSQL can cast them (`$n::jsonb`).
pub(crate) const GROUP_COLUMNS: [(&str, bool); 19] = [
    ("enabled", false),
    ("max_connections", false),
    ("client_event_rate", false),
    ("max_event_bytes", false),
    ("max_presence_members", false),
    ("max_user_info_bytes", false),
    ("max_channels_per_trigger", false),
    ("max_batch_events", false),
    ("max_channels_per_socket", false),
    ("api_rate_limit", false),
    ("client_events", false),
    ("allowed_origins", true),
    ("signin_timeout", false),
    ("watchlist", false),
    ("subscription_count", false),
    ("cache_ttl", false),
    ("webhooks", true),
    ("quota_max_connections", false),
    ("quota_max_messages_per_day", false),
];

/// The values of [`GROUP_COLUMNS`] for one app, in database types.
pub(crate) struct GroupValues {
    /// `enabled`: a disabled app is kept but refuses connections and triggers.
    pub enabled: bool,
    /// The nine limits of [`Limits`], in the order of [`GROUP_COLUMNS`] entries 1 to 9; `i32`
    /// because the columns are SQL `integer`.
    pub ints: [i32; 9],
    pub client_events: bool,
    /// The origin list as JSON text; the database stores it as `jsonb` or `JSON`.
    pub allowed_origins: String,
    pub signin_timeout: i32,
    pub watchlist: bool,
    pub subscription_count: bool,
    pub cache_ttl: i32,
    /// The webhook targets as JSON text, in the shape of `[[apps.webhooks]]` in the config file.
    pub webhooks: String,
    /// `quota_max_connections` and `quota_max_messages_per_day`, as `bigint`.
    pub quotas: [i64; 2],
}

/// Binds [`GroupValues`] in [`GROUP_COLUMNS`] order onto a query, for either database.
macro_rules! bind_groups {
    ($query:expr, $v:expr) => {{
        let v = $v;
        let mut q = $query.bind(v.enabled);
        for n in v.ints {
            q = q.bind(n);
        }
        q.bind(v.client_events)
            .bind(v.allowed_origins)
            .bind(v.signin_timeout)
            .bind(v.watchlist)
            .bind(v.subscription_count)
            .bind(v.cache_ttl)
            .bind(v.webhooks)
            .bind(v.quotas[0])
            .bind(v.quotas[1])
    }};
}
pub(crate) use bind_groups;

/// A limit as the `integer` column holds it.
fn db_int(n: u32) -> i32 {
    // Validation keeps every stored limit within i32 (the `integer` column).
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A quota as the `bigint` column holds it; saturates rather than wrapping to a negative quota.
fn db_big(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl GroupValues {
    /// The group columns of a record about to be written.
    pub fn of(
        enabled: bool,
        limits: &Limits,
        options: &Options,
        quotas: &Quotas,
        webhooks: &[WebhookTarget],
    ) -> Self {
        let l = limits;
        Self {
            enabled,
            ints: [
                l.max_connections,
                l.client_event_rate,
                l.max_event_bytes,
                l.max_presence_members,
                l.max_user_info_bytes,
                l.max_channels_per_trigger,
                l.max_batch_events,
                l.max_channels_per_socket,
                l.api_rate_limit,
            ]
            .map(db_int),
            client_events: options.client_events,
            allowed_origins: serde_json::to_string(&options.allowed_origins)
                .expect("a list of strings serialises"),
            signin_timeout: db_int(options.signin_timeout),
            watchlist: options.watchlist,
            subscription_count: options.subscription_count,
            cache_ttl: db_int(options.cache_ttl),
            webhooks: serde_json::to_string(webhooks).expect("webhook targets serialise"),
            quotas: [
                db_big(quotas.max_connections),
                db_big(quotas.max_messages_per_day),
            ],
        }
    }
}

/// One apps row as the database returns it, in the order of each backend's `SELECT` list: id,
/// app_key, secret, previous_secret, previous_secret_expires_at (ms), then [`GROUP_COLUMNS`], then
/// created_at (ms), updated_at (ms), revision.
pub(crate) struct RawApp {
    id: String,
    app_key: String,
    secret: String,
    /// The secret before the last rotation, still accepted until `previous_expires_ms`.
    previous_secret: Option<String>,
    /// Unix ms, computed by the SELECT so both databases hand over the same representation.
    previous_expires_ms: Option<i64>,
    enabled: bool,
    /// The nine limits, as in [`GroupValues::ints`].
    ints: [i32; 9],
    client_events: bool,
    /// JSON text, checked in `into_record`.
    allowed_origins: String,
    signin_timeout: i32,
    watchlist: bool,
    subscription_count: bool,
    cache_ttl: i32,
    /// JSON text, checked in `into_record`.
    webhooks: String,
    quotas: [i64; 2],
    created_ms: i64,
    updated_ms: i64,
    /// The catalogue revision of the app's last write; the feed compares it to skip stale rows.
    revision: i64,
}

impl RawApp {
    /// Reads a row of either database by position.
    ///
    /// Generic over the row type so PostgreSQL and MySQL share one reader; the positions are the
    /// `SELECT` lists' and must move with them.
    pub fn decode<'r, R>(row: &'r R) -> Result<Self, sqlx::Error>
    where
        R: Row,
        usize: ColumnIndex<R>,
        String: Decode<'r, R::Database> + Type<R::Database>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        i32: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
    {
        let mut ints = [0i32; 9];
        for (i, slot) in ints.iter_mut().enumerate() {
            *slot = row.try_get(6 + i)?;
        }
        Ok(Self {
            id: row.try_get(0)?,
            app_key: row.try_get(1)?,
            secret: row.try_get(2)?,
            previous_secret: row.try_get(3)?,
            previous_expires_ms: row.try_get(4)?,
            enabled: row.try_get(5)?,
            ints,
            client_events: row.try_get(15)?,
            allowed_origins: row.try_get(16)?,
            signin_timeout: row.try_get(17)?,
            watchlist: row.try_get(18)?,
            subscription_count: row.try_get(19)?,
            cache_ttl: row.try_get(20)?,
            webhooks: row.try_get(21)?,
            quotas: [row.try_get(22)?, row.try_get(23)?],
            created_ms: row.try_get(24)?,
            updated_ms: row.try_get(25)?,
            revision: row.try_get(26)?,
        })
    }

    /// The row's id, for reporting a row that does not convert.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Converts the row into a record, or says why it cannot be served (a negative limit, JSON
    /// that is not a list of origins or of webhook targets).
    pub fn into_record(self) -> Result<AppRecord, String> {
        let unsigned =
            |name: &str, n: i32| u32::try_from(n).map_err(|_| format!("{name} is negative ({n})"));
        let mut l = [0u32; 9];
        for (i, n) in self.ints.iter().enumerate() {
            l[i] = unsigned(GROUP_COLUMNS[1 + i].0, *n)?;
        }
        let allowed_origins: Vec<String> = serde_json::from_str(&self.allowed_origins)
            .map_err(|e| format!("allowed_origins is not a JSON list of strings: {e}"))?;
        let webhooks: Vec<WebhookTarget> = serde_json::from_str(&self.webhooks)
            .map_err(|e| format!("webhooks is not a JSON list of webhook targets: {e}"))?;
        let big =
            |name: &str, n: i64| u64::try_from(n).map_err(|_| format!("{name} is negative ({n})"));
        let previous_secret = match (self.previous_secret, self.previous_expires_ms) {
            (Some(secret), Some(ms)) => Some(PreviousSecret {
                secret: Secret::new(secret),
                expires_at: from_unix_millis(ms),
            }),
            // A previous secret without an end would be valid forever: not served.
            _ => None,
        };
        Ok(AppRecord {
            id: self.id,
            key: self.app_key,
            secret: Secret::new(self.secret),
            previous_secret,
            enabled: self.enabled,
            limits: Limits {
                max_connections: l[0],
                client_event_rate: l[1],
                max_event_bytes: l[2],
                max_presence_members: l[3],
                max_user_info_bytes: l[4],
                max_channels_per_trigger: l[5],
                max_batch_events: l[6],
                max_channels_per_socket: l[7],
                api_rate_limit: l[8],
            },
            options: Options {
                client_events: self.client_events,
                allowed_origins,
                signin_timeout: unsigned("signin_timeout", self.signin_timeout)?,
                watchlist: self.watchlist,
                subscription_count: self.subscription_count,
                cache_ttl: unsigned("cache_ttl", self.cache_ttl)?,
            },
            quotas: Quotas {
                max_connections: big("quota_max_connections", self.quotas[0])?,
                max_messages_per_day: big("quota_max_messages_per_day", self.quotas[1])?,
            },
            webhooks,
            created_at: from_unix_millis(self.created_ms),
            updated_at: from_unix_millis(self.updated_ms),
            revision: u64::try_from(self.revision).unwrap_or(0),
        })
    }
}

//! The MariaDB/MySQL store: [`MySqlStore`] implements [`Catalogue`] and [`UsageLedger`] like the
//! PostgreSQL store, over the same columns. There is no `NOTIFY`, so the table's triggers log every
//! change's revision and app id in `vestnik_app_changes`, and the feed polls it (see `signal`).
//!
//! Sessions run in UTC (`time_zone = '+00:00'`), so `DATETIME` usage hours and `FROM_UNIXTIME`
//! agree on every node. This module must never cache an app: the feed's view is the cache.

mod schema;
mod signal;

use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions, MySqlRow};
use sqlx::{MySql, MySqlPool, Transaction};

use crate::error::StoreError;
use crate::feed::{ChangeFeed, FeedOptions, Loaded};
use crate::postgres::usage_row;
use crate::record::{self, AppRecord, AppUpdate, NewApp};
use crate::row::{bind_groups, GroupValues, RawApp, GROUP_COLUMNS};
use crate::secret;
use crate::store::{Catalogue, Migrated, Rejected, Snapshot, StoreFuture, UsageLedger};
use crate::usage::{self, Day, Hour, UsageRow};

/// Connections the store's pool holds at most (the feed's polls share it).
const POOL_SIZE: u32 = 4;

/// How long a query waits for a pooled connection before the store reports the database down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a write retries when a generated id or key is taken, or a usage flush deadlocks.
const RETRIES: usize = 5;

/// How long change rows are kept. A feed polls every half second and resyncs after any outage, so
/// it never needs old rows; a day leaves room to look at them by hand.
const CHANGES_KEPT: &str = "INTERVAL 1 DAY";

/// The `SELECT` list in [`RawApp`]'s order.
/// Text columns are read through `CAST(.. AS CHAR)`: their `utf8mb4_bin` collation (ids are
/// case-sensitive, as in PostgreSQL) makes the driver see them as binary.
const SELECT: &str = "SELECT CAST(id AS CHAR), CAST(app_key AS CHAR), CAST(secret AS CHAR), \
     CAST(previous_secret AS CHAR), \
     CAST(UNIX_TIMESTAMP(previous_secret_expires_at) * 1000 AS SIGNED), \
     enabled, max_connections, client_event_rate, max_event_bytes, max_presence_members, \
     max_user_info_bytes, max_channels_per_trigger, max_batch_events, max_channels_per_socket, \
     api_rate_limit, client_events, CAST(allowed_origins AS CHAR), signin_timeout, watchlist, \
     subscription_count, cache_ttl, CAST(webhooks AS CHAR), quota_max_connections, \
     quota_max_messages_per_day, CAST(UNIX_TIMESTAMP(created_at) * 1000 AS SIGNED), \
     CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED), revision FROM vestnik_apps";

/// Apps in MariaDB or MySQL.
///
/// `Debug` names the store only: the pool's options hold the database URL and its password.
#[derive(Clone)]
pub struct MySqlStore {
    /// Up to [`POOL_SIZE`] connections, each set to UTC at connect; shared by clones and by the
    /// feed's polls.
    pool: MySqlPool,
}

impl std::fmt::Debug for MySqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MySqlStore")
    }
}

impl MySqlStore {
    /// Connects to `url` (`mysql://user:password@host:port/db`; `mariadb://` is accepted as a
    /// synonym). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let url = match url.strip_prefix("mariadb://") {
            Some(rest) => format!("mysql://{rest}"),
            None => url.to_owned(),
        };
        let options = MySqlConnectOptions::from_str(&url)?.timezone(Some("+00:00".into()));
        let pool = MySqlPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }
}

/// One row to an app or to a [`Rejected`]; see the PostgreSQL store's `decode`, which this mirrors.
fn decode(row: &MySqlRow) -> Result<Result<AppRecord, Rejected>, StoreError> {
    let raw = RawApp::decode(row)?;
    let id = raw.id().to_owned();
    Ok(raw.into_record().map_err(|reason| Rejected { id, reason }))
}

/// For reads that must return one app: a row that cannot be served is an error here.
fn served(row: &MySqlRow) -> Result<AppRecord, StoreError> {
    decode(row)?.map_err(|r| StoreError::BadRow {
        id: r.id,
        reason: r.reason,
    })
}

/// Reads every app in one repeatable-read transaction with the catalogue revision.
///
/// MySQL's `SET TRANSACTION` applies to the next transaction of the connection, so the connection
/// is held explicitly rather than taken from the pool per statement.
pub(crate) async fn load_all(pool: &MySqlPool) -> Result<Snapshot, StoreError> {
    let mut conn = pool.acquire().await?;
    // Applies to the next transaction on this connection only.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let revision: i64 =
        sqlx::query_scalar("SELECT revision FROM vestnik_catalogue WHERE singleton = 1")
            .fetch_one(&mut *tx)
            .await?;
    let rows = sqlx::query(&format!("{SELECT} ORDER BY id"))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut snapshot = Snapshot {
        revision: u64::try_from(revision).unwrap_or(0),
        ..Snapshot::default()
    };
    for row in &rows {
        match decode(row)? {
            Ok(app) => snapshot.apps.push(std::sync::Arc::new(app)),
            Err(rejected) => snapshot.rejected.push(rejected),
        }
    }
    Ok(snapshot)
}

/// Reads the current rows of `ids`.
///
/// An empty `ids` asks nothing: `IN ()` is a syntax error in MySQL.
pub(crate) async fn load(
    pool: &MySqlPool,
    ids: Vec<String>,
) -> Result<Vec<(String, Loaded)>, StoreError> {
    let mut found = std::collections::HashMap::new();
    if !ids.is_empty() {
        let marks = vec!["?"; ids.len()].join(", ");
        let sql = format!("{SELECT} WHERE id IN ({marks})");
        let mut query = sqlx::query(&sql);
        for id in &ids {
            query = query.bind(id);
        }
        for row in &query.fetch_all(pool).await? {
            match decode(row)? {
                Ok(app) => found.insert(app.id.clone(), Loaded::Found(Box::new(app))),
                Err(r) => found.insert(r.id, Loaded::Bad(r.reason)),
            };
        }
    }
    Ok(ids
        .into_iter()
        .map(|id| {
            let loaded = found.remove(&id).unwrap_or(Loaded::Missing);
            (id, loaded)
        })
        .collect())
}

/// One app read inside `tx`; with `lock`, `FOR UPDATE`, so a read-modify-write cannot lose a
/// concurrent change.
async fn show_in(
    tx: &mut Transaction<'_, MySql>,
    id: &str,
    lock: bool,
) -> Result<AppRecord, StoreError> {
    let sql = format!(
        "{SELECT} WHERE id = ?{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
    served(&row)
}

/// Which of a unique id, a unique key, or the key/id rule a write broke; decides retry or conflict.
#[derive(Debug, PartialEq, Eq)]
enum Clash {
    /// The id is taken.
    Id,
    /// The key is taken.
    Key,
    /// The key is another app's id or the id another's key (the trigger's `SIGNAL`).
    KeyIsId,
}

/// MySQL error numbers: duplicate entry, and the `SIGNAL` the triggers raise.
const ER_DUP_ENTRY: u16 = 1062;
const ER_SIGNAL_EXCEPTION: u16 = 1644;
const ER_LOCK_DEADLOCK: u16 = 1213;

/// MySQL reports a duplicate by number, not by constraint name, so the message tells id from key;
/// the trigger's own error starts with `vestnik:` to be told from other `SIGNAL`s.
fn clash(error: &sqlx::Error) -> Option<Clash> {
    let db = error
        .as_database_error()?
        .try_downcast_ref::<MySqlDatabaseError>()?;
    match db.number() {
        ER_DUP_ENTRY if db.message().contains("app_key") => Some(Clash::Key),
        ER_DUP_ENTRY => Some(Clash::Id),
        ER_SIGNAL_EXCEPTION if db.message().starts_with("vestnik:") => Some(Clash::KeyIsId),
        _ => None,
    }
}

/// InnoDB chose this transaction as a deadlock victim: running it again is the documented answer.
fn is_deadlock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|d| d.try_downcast_ref::<MySqlDatabaseError>())
        .is_some_and(|d| d.number() == ER_LOCK_DEADLOCK)
}

/// The message names the taken value, so an admin can see which one to change.
fn conflict(clash: Clash, id: &str, key: &str) -> StoreError {
    StoreError::Conflict(match clash {
        Clash::Id => format!("an app with the id {id:?} exists"),
        Clash::Key => format!("an app with the key {key:?} exists"),
        Clash::KeyIsId => format!(
            "the key {key:?} or the id {id:?} is another app's id or key; /apps/{{segment}} would name two apps"
        ),
    })
}

/// Built from [`GROUP_COLUMNS`], shared with the PostgreSQL store; JSON columns take text here, so
/// no cast is needed as in PostgreSQL.
fn insert_sql() -> String {
    let names: Vec<&str> = GROUP_COLUMNS.iter().map(|(n, _)| *n).collect();
    format!(
        "INSERT INTO vestnik_apps (id, app_key, secret, {}) VALUES (?, ?, ?, {})",
        names.join(", "),
        vec!["?"; GROUP_COLUMNS.len()].join(", ")
    )
}

/// Sets every group column; the id is bound last, after the group values.
fn update_sql() -> String {
    let sets: Vec<String> = GROUP_COLUMNS
        .iter()
        .map(|(n, _)| format!("{n} = ?"))
        .collect();
    format!("UPDATE vestnik_apps SET {} WHERE id = ?", sets.join(", "))
}

impl MySqlStore {
    /// Deletes change rows older than [`CHANGES_KEPT`], inside a write that adds one, so the table
    /// stays small without a scheduled job. A feed that was behind the pruned rows sees a hole and
    /// reloads everything (see `signal`).
    async fn prune(&self, tx: &mut Transaction<'_, MySql>) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "DELETE FROM vestnik_app_changes WHERE changed_at < CURRENT_TIMESTAMP(3) - {CHANGES_KEPT}"
        ))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Draws a fresh id and key on each try: a clash on a generated value is retried up to
    /// [`RETRIES`], a clash on a given one is a conflict. Read back in the transaction, for the
    /// revision and timestamps the triggers set.
    async fn create_app(&self, app: NewApp) -> Result<AppRecord, StoreError> {
        record::check_new(&app)?;
        let values = || {
            GroupValues::of(
                app.enabled,
                &app.limits,
                &app.options,
                &app.quotas,
                &app.webhooks,
            )
        };
        let secret = app.secret.clone().unwrap_or_else(secret::generate_secret);
        let sql = insert_sql();
        for _ in 0..RETRIES {
            let id = app.id.clone().unwrap_or_else(secret::generate_id);
            let key = app.key.clone().unwrap_or_else(secret::generate_key);
            let mut tx = self.pool.begin().await?;
            let query = sqlx::query(&sql).bind(&id).bind(&key).bind(secret.expose());
            match bind_groups!(query, values()).execute(&mut *tx).await {
                Ok(_) => {
                    let created = show_in(&mut tx, &id, false).await?;
                    self.prune(&mut tx).await?;
                    tx.commit().await?;
                    return Ok(created);
                }
                Err(e) => {
                    let Some(clash) = clash(&e) else {
                        return Err(e.into());
                    };
                    let generated = (clash == Clash::Id && app.id.is_none())
                        || (clash == Clash::Key && app.key.is_none())
                        || (clash == Clash::KeyIsId && app.id.is_none() && app.key.is_none());
                    if !generated {
                        return Err(conflict(clash, &id, &key));
                    }
                }
            }
        }
        Err(StoreError::Conflict(
            "could not draw a free id and key".into(),
        ))
    }

    /// A read-modify-write under the row lock, so validation sees the row it changes.
    async fn update_app(&self, id: &str, update: AppUpdate) -> Result<AppRecord, StoreError> {
        record::check_update(&update)?;
        let mut tx = self.pool.begin().await?;
        let mut current = show_in(&mut tx, id, true).await?;
        update.apply(&mut current)?;
        let values = GroupValues::of(
            current.enabled,
            &current.limits,
            &current.options,
            &current.quotas,
            &current.webhooks,
        );
        let sql = update_sql();
        bind_groups!(sqlx::query(&sql), values)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let updated = show_in(&mut tx, id, false).await?;
        self.prune(&mut tx).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// One statement, relying on MySQL's left-to-right assignment (see the comment inside); the
    /// expiry uses the database's clock, which every node shares.
    async fn rotate(&self, id: &str, grace: Duration) -> Result<AppRecord, StoreError> {
        record::check_grace(grace)?;
        let secret = secret::generate_secret();
        let micros = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
        let mut tx = self.pool.begin().await?;
        // Assignments run left to right: previous_secret takes the old secret before it changes.
        let done = sqlx::query(
            "UPDATE vestnik_apps SET \
               previous_secret = IF(? > 0, secret, NULL), \
               previous_secret_expires_at = IF(? > 0, CURRENT_TIMESTAMP(3) + INTERVAL ? MICROSECOND, NULL), \
               secret = ? \
             WHERE id = ?",
        )
        .bind(micros)
        .bind(micros)
        .bind(micros)
        .bind(secret.expose())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        let rotated = show_in(&mut tx, id, false).await?;
        tx.commit().await?;
        Ok(rotated)
    }

    /// Adds a node's usage rows, sorted into one lock order; a deadlock is retried up to
    /// [`RETRIES`].
    async fn record(&self, mut rows: Vec<UsageRow>) -> Result<(), StoreError> {
        // One lock order for every flush; InnoDB's gap locks can still deadlock two upserts of new
        // rows, and the loser simply retries.
        rows.sort_by(|a, b| (&a.app_id, a.hour).cmp(&(&b.app_id, b.hour)));
        let mut attempt = 0;
        loop {
            match self.record_once(&rows).await {
                Err(StoreError::Database(e)) if is_deadlock(&e) && attempt < RETRIES => {
                    attempt += 1
                }
                other => return other,
            }
        }
    }

    /// One upsert per row: counts add up, `peak_connections` keeps the larger value (a peak is a
    /// maximum, not a count).
    async fn record_once(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for row in rows {
            let u = &row.usage;
            sqlx::query(
                "INSERT INTO vestnik_usage (app_id, hour_start, peak_connections, \
                   messages_delivered, messages_received, bytes_out, webhooks_sent) \
                 VALUES (?, FROM_UNIXTIME(?), ?, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE \
                   peak_connections = GREATEST(peak_connections, VALUES(peak_connections)), \
                   messages_delivered = messages_delivered + VALUES(messages_delivered), \
                   messages_received = messages_received + VALUES(messages_received), \
                   bytes_out = bytes_out + VALUES(bytes_out), \
                   webhooks_sent = webhooks_sent + VALUES(webhooks_sent)",
            )
            .bind(&row.app_id)
            .bind(row.hour.unix())
            .bind(usage::to_db(u.peak_connections))
            .bind(usage::to_db(u.messages_delivered))
            .bind(usage::to_db(u.messages_received))
            .bind(usage::to_db(u.bytes_out))
            .bind(usage::to_db(u.webhooks_sent))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Each method boxes the matching inherent `async fn`; the feed polls `vestnik_app_changes` through
/// `signal::MySqlSource` over the same pool.
impl Catalogue for MySqlStore {
    fn migrate(&self) -> StoreFuture<'_, Migrated> {
        Box::pin(schema::migrate(&self.pool))
    }

    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(load_all(&self.pool))
    }

    fn watch(&self, options: FeedOptions) -> StoreFuture<'_, ChangeFeed> {
        let source = signal::MySqlSource::new(self.pool.clone());
        Box::pin(ChangeFeed::start(source, options))
    }

    fn show<'a>(&'a self, id: &'a str) -> StoreFuture<'a, AppRecord> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            let app = show_in(&mut tx, id, false).await?;
            tx.commit().await?;
            Ok(app)
        })
    }

    fn create(&self, app: NewApp) -> StoreFuture<'_, AppRecord> {
        Box::pin(self.create_app(app))
    }

    fn update<'a>(&'a self, id: &'a str, update: AppUpdate) -> StoreFuture<'a, AppRecord> {
        Box::pin(self.update_app(id, update))
    }

    fn rotate_secret<'a>(&'a self, id: &'a str, grace: Duration) -> StoreFuture<'a, AppRecord> {
        Box::pin(self.rotate(id, grace))
    }

    fn delete<'a>(&'a self, id: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM vestnik_apps WHERE id = ?")
                .bind(id)
                .execute(&self.pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound { id: id.to_owned() });
            }
            Ok(())
        })
    }
}

/// Usage reads go straight to `vestnik_usage`; hours are `DATETIME` in UTC (the session time zone),
/// so the rows of every node line up.
impl UsageLedger for MySqlStore {
    fn record_usage(&self, rows: Vec<UsageRow>) -> StoreFuture<'_, ()> {
        Box::pin(self.record(rows))
    }

    fn usage<'a>(
        &'a self,
        app_id: &'a str,
        from: Hour,
        to: Hour,
    ) -> StoreFuture<'a, Vec<UsageRow>> {
        Box::pin(async move {
            let rows: Vec<(String, i64, i64, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT CAST(app_id AS CHAR), CAST(UNIX_TIMESTAMP(hour_start) AS SIGNED), peak_connections, \
                   messages_delivered, messages_received, bytes_out, webhooks_sent \
                 FROM vestnik_usage \
                 WHERE app_id = ? AND hour_start >= FROM_UNIXTIME(?) AND hour_start < FROM_UNIXTIME(?) \
                 ORDER BY hour_start",
            )
            .bind(app_id)
            .bind(from.unix())
            .bind(to.unix())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows.into_iter().map(usage_row).collect())
        })
    }

    fn daily_messages(&self, day: Day) -> StoreFuture<'_, Vec<(String, u64)>> {
        Box::pin(async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT CAST(app_id AS CHAR), CAST(SUM(messages_delivered + messages_received) AS SIGNED) \
                 FROM vestnik_usage \
                 WHERE hour_start >= FROM_UNIXTIME(?) AND hour_start < FROM_UNIXTIME(?) \
                 GROUP BY app_id ORDER BY app_id",
            )
            .bind(day.first_hour().unix())
            .bind(day.end_hour().unix())
            .fetch_all(&self.pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, n)| (id, usage::from_db(n)))
                .collect())
        })
    }
}

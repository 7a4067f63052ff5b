//! The PostgreSQL store: [`PgStore`] implements [`Catalogue`] and [`UsageLedger`] over a small
//! connection pool, and its change feed follows `LISTEN vestnik_apps` (see `signal`).
//!
//! Writes run in transactions and leave revisions, timestamps and the key/id check to the table's
//! triggers, so that an admin panel writing SQL gets the same guarantees. This module must never
//! cache an app: the feed's view is the cache, and reads here always go to the database.

mod schema;
mod signal;

use std::time::Duration;

use sqlx::postgres::{PgDatabaseError, PgPoolOptions, PgRow};
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::StoreError;
use crate::feed::{ChangeFeed, FeedOptions, Loaded};
use crate::record::{self, AppRecord, AppUpdate, NewApp};
use crate::row::{bind_groups, GroupValues, RawApp, GROUP_COLUMNS};
use crate::secret;
use crate::store::{Catalogue, Migrated, Rejected, Snapshot, StoreFuture, UsageLedger};
use crate::usage::{self, Day, Hour, Usage, UsageRow};

/// Connections the store's pool holds at most: admin writes and feed reloads are rare, usage
/// flushes are periodic; the feed's `LISTEN` takes one more of its own.
const POOL_SIZE: u32 = 4;

/// How long a query waits for a pooled connection before the store reports the database down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often a write retries when a generated id or key is taken, or a usage flush deadlocks.
const RETRIES: usize = 5;

/// The `SELECT` list in [`RawApp`]'s order.
const SELECT: &str = "SELECT id, app_key, secret, previous_secret, \
     (extract(epoch FROM previous_secret_expires_at) * 1000)::bigint, \
     enabled, max_connections, client_event_rate, max_event_bytes, max_presence_members, \
     max_user_info_bytes, max_channels_per_trigger, max_batch_events, max_channels_per_socket, \
     api_rate_limit, client_events, allowed_origins::text, signin_timeout, watchlist, \
     subscription_count, cache_ttl, webhooks::text, quota_max_connections, \
     quota_max_messages_per_day, (extract(epoch FROM created_at) * 1000)::bigint, \
     (extract(epoch FROM updated_at) * 1000)::bigint, revision FROM vestnik_apps";

/// Apps in PostgreSQL.
///
/// `Debug` names the store only: the pool's options hold the database URL and its password.
#[derive(Clone)]
pub struct PgStore {
    /// Up to [`POOL_SIZE`] connections, shared by clones of the store (a clone is a cheap handle).
    pool: PgPool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host:port/db`). Does not migrate.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        Ok(Self { pool })
    }

    /// A store over an existing pool.
    /// For a caller that already has a pool (tests, or a server that shares one); the pool's sizes
    /// are then the caller's choice.
    pub fn with_pool(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// One row to an app, or to a [`Rejected`] naming what is wrong with it. The outer error is a
/// database error (a column of the wrong type); the inner one is a row that reads but cannot be
/// served, which a snapshot lists rather than fails on.
fn decode(row: &PgRow) -> Result<Result<AppRecord, Rejected>, StoreError> {
    let raw = RawApp::decode(row)?;
    let id = raw.id().to_owned();
    Ok(raw.into_record().map_err(|reason| Rejected { id, reason }))
}

/// For reads that must return one app (`show`, and the read-back after a write): a row that cannot
/// be served is an error there, not something to skip.
fn served(row: &PgRow) -> Result<AppRecord, StoreError> {
    decode(row)?.map_err(|r| StoreError::BadRow {
        id: r.id,
        reason: r.reason,
    })
}

/// Reads every app in one repeatable-read transaction with the catalogue revision.
///
/// Repeatable read makes the counter and the rows one consistent picture: the snapshot's revision
/// is exactly the last write it contains, which is what lets the feed follow on from it without a
/// gap.
pub(crate) async fn load_all(pool: &PgPool) -> Result<Snapshot, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM vestnik_catalogue")
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
/// Every asked id comes back once, in the asked order; an id with no row is [`Loaded::Missing`],
/// which the feed takes as a delete.
pub(crate) async fn load(
    pool: &PgPool,
    ids: Vec<String>,
) -> Result<Vec<(String, Loaded)>, StoreError> {
    let rows = sqlx::query(&format!("{SELECT} WHERE id = ANY($1)"))
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    let mut found = std::collections::HashMap::new();
    for row in &rows {
        match decode(row)? {
            Ok(app) => found.insert(app.id.clone(), Loaded::Found(Box::new(app))),
            Err(r) => found.insert(r.id, Loaded::Bad(r.reason)),
        };
    }
    Ok(ids
        .into_iter()
        .map(|id| {
            let loaded = found.remove(&id).unwrap_or(Loaded::Missing);
            (id, loaded)
        })
        .collect())
}

/// One app read inside `tx`. With `lock`, the row is taken `FOR UPDATE`, so a read-modify-write
/// (an update of some groups) cannot lose a concurrent writer's change.
async fn show_in(
    tx: &mut Transaction<'_, Postgres>,
    id: &str,
    lock: bool,
) -> Result<AppRecord, StoreError> {
    let sql = format!(
        "{SELECT} WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound { id: id.to_owned() })?;
    served(&row)
}

/// Which of a unique id, a unique key, or the key/id rule a database error broke.
#[derive(Debug, PartialEq, Eq)]
enum Clash {
    /// The id is taken (primary key).
    Id,
    /// The key is taken (unique key).
    Key,
    /// The key equals another app's id or the id another app's key (the trigger's `VK001`): either
    /// would make `/apps/{segment}` ambiguous, since the API accepts an id or a key there.
    KeyIsId,
}

/// Reads the SQLSTATE and constraint name, so a clash on a generated value can be retried and one
/// on a given value reported as a conflict; any other error passes through.
fn clash(error: &sqlx::Error) -> Option<Clash> {
    let db = error
        .as_database_error()?
        .try_downcast_ref::<PgDatabaseError>()?;
    match (db.code(), db.constraint()) {
        ("23505", Some("vestnik_apps_pkey")) => Some(Clash::Id),
        ("23505", Some("vestnik_apps_app_key_key")) => Some(Clash::Key),
        ("VK001", _) => Some(Clash::KeyIsId),
        _ => None,
    }
}

/// Deadlock (`40P01`) or serialization failure (`40001`): both mean "run the transaction again".
fn is_deadlock(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "40P01" || c == "40001")
}

/// Built from [`GROUP_COLUMNS`], the one list of group columns both backends share, so adding a
/// column is one edit there plus a migration; placeholders start at `$4` after id, key and secret.
fn insert_sql() -> String {
    let names: Vec<&str> = GROUP_COLUMNS.iter().map(|(n, _)| *n).collect();
    let values: Vec<String> = GROUP_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, json))| format!("${}{}", i + 4, if *json { "::jsonb" } else { "" }))
        .collect();
    format!(
        "INSERT INTO vestnik_apps (id, app_key, secret, {}) VALUES ($1, $2, $3, {})",
        names.join(", "),
        values.join(", ")
    )
}

/// Sets every group column; `$1` is the id. The caller has applied the update to the current row,
/// so columns the update did not name are written back unchanged.
fn update_sql() -> String {
    let sets: Vec<String> = GROUP_COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (n, json))| format!("{n} = ${}{}", i + 2, if *json { "::jsonb" } else { "" }))
        .collect();
    format!("UPDATE vestnik_apps SET {} WHERE id = $1", sets.join(", "))
}

impl PgStore {
    /// Draws a fresh id and key on each try: a clash on a value this call generated is bad luck and
    /// is retried (up to [`RETRIES`]); a clash on a value the caller gave is a conflict at once.
    /// The row is read back in the same transaction so the caller sees the revision and timestamps
    /// the triggers set.
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

    /// A read-modify-write under the row lock, so validation (`AppUpdate::apply`) sees the row it
    /// changes.
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
        bind_groups!(sqlx::query(&sql).bind(id), values)
            .execute(&mut *tx)
            .await?;
        let updated = show_in(&mut tx, id, false).await?;
        tx.commit().await?;
        Ok(updated)
    }

    /// One statement, so the old secret moves to `previous_secret` and the new one takes its place
    /// atomically; the expiry uses the database's clock (`now()`), the one clock every node shares.
    async fn rotate(&self, id: &str, grace: Duration) -> Result<AppRecord, StoreError> {
        record::check_grace(grace)?;
        let secret = secret::generate_secret();
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE vestnik_apps SET \
               previous_secret = CASE WHEN $2 > 0 THEN secret END, \
               previous_secret_expires_at = CASE WHEN $2 > 0 \
                 THEN now() + make_interval(secs => $2::float8 / 1000) END, \
               secret = $3 \
             WHERE id = $1",
        )
        .bind(id)
        .bind(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX))
        .bind(secret.expose())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { id: id.to_owned() });
        }
        let rotated = show_in(&mut tx, id, false).await?;
        tx.commit().await?;
        Ok(rotated)
    }

    /// Adds a node's usage rows. Several nodes flush at once into the same `(app, hour)` rows, so
    /// the rows are sorted into one lock order, and a deadlock that still happens is retried.
    async fn record(&self, mut rows: Vec<UsageRow>) -> Result<(), StoreError> {
        // One lock order for every flush, so that concurrent flushes queue instead of deadlocking.
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

    /// One upsert per row: counts add up, `peak_connections` keeps the larger value, since a peak
    /// is a maximum, and two flushes of one hour must not add theirs together.
    async fn record_once(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for row in rows {
            let u = &row.usage;
            sqlx::query(
                "INSERT INTO vestnik_usage AS u (app_id, hour_start, peak_connections, \
                   messages_delivered, messages_received, bytes_out, webhooks_sent) \
                 VALUES ($1, to_timestamp($2::float8), $3, $4, $5, $6, $7) \
                 ON CONFLICT (app_id, hour_start) DO UPDATE SET \
                   peak_connections = GREATEST(u.peak_connections, EXCLUDED.peak_connections), \
                   messages_delivered = u.messages_delivered + EXCLUDED.messages_delivered, \
                   messages_received = u.messages_received + EXCLUDED.messages_received, \
                   bytes_out = u.bytes_out + EXCLUDED.bytes_out, \
                   webhooks_sent = u.webhooks_sent + EXCLUDED.webhooks_sent",
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

/// Each method boxes the matching inherent `async fn`; the feed runs over `signal::PgSource`, a
/// clone of the same pool, whose `LISTEN` connection is opened separately from the pool's four.
impl Catalogue for PgStore {
    fn migrate(&self) -> StoreFuture<'_, Migrated> {
        Box::pin(schema::migrate(&self.pool))
    }

    fn snapshot(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(load_all(&self.pool))
    }

    fn watch(&self, options: FeedOptions) -> StoreFuture<'_, ChangeFeed> {
        let source = signal::PgSource::new(self.pool.clone());
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
            let done = sqlx::query("DELETE FROM vestnik_apps WHERE id = $1")
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

/// Usage reads go straight to the table (`vestnik_usage`, keyed by app and hour); nothing is
/// cached, since quotas and billing must read what every node flushed.
impl UsageLedger for PgStore {
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
                "SELECT app_id, extract(epoch FROM hour_start)::bigint, peak_connections, \
                   messages_delivered, messages_received, bytes_out, webhooks_sent \
                 FROM vestnik_usage \
                 WHERE app_id = $1 AND hour_start >= to_timestamp($2::float8) \
                   AND hour_start < to_timestamp($3::float8) \
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
                "SELECT app_id, sum(messages_delivered + messages_received)::bigint \
                 FROM vestnik_usage \
                 WHERE hour_start >= to_timestamp($1::float8) AND hour_start < to_timestamp($2::float8) \
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

/// A usage row from its columns: app, hour (Unix seconds), then the five counts.
pub(crate) fn usage_row(
    (app_id, hour, peak, delivered, received, bytes, webhooks): (
        String,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ),
) -> UsageRow {
    UsageRow {
        app_id,
        hour: Hour::from_unix(hour),
        usage: Usage {
            peak_connections: usage::from_db(peak),
            messages_delivered: usage::from_db(delivered),
            messages_received: usage::from_db(received),
            bytes_out: usage::from_db(bytes),
            webhooks_sent: usage::from_db(webhooks),
        },
    }
}

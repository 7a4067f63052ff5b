//! The MariaDB/MySQL schema, as numbered migrations of single statements, and `migrate`. DDL is not
//! transactional there, so every statement is idempotent on its own (`IF NOT EXISTS`, `DROP TRIGGER
//! IF EXISTS` before `CREATE TRIGGER`, `INSERT IGNORE`) and a migration interrupted half-way is
//! simply run again; `GET_LOCK` serialises nodes migrating at once. docs/apps.md describes every
//! table and column; keep them in step. This module must never drop or rewrite applied data.

use sqlx::{Executor, MySqlPool};

use crate::error::StoreError;
use crate::store::Migrated;

/// The named lock that serialises concurrent `migrate` calls, and how long to wait for it (seconds).
const MIGRATE_LOCK: &str = "vestnik_apps_migrate";
/// Long enough for another node's migration to finish; a node that waits longer fails its start
/// rather than running DDL beside another.
const MIGRATE_LOCK_WAIT_SECS: i64 = 60;

/// The migrations, in order; a version is applied once and never edited afterwards.
///
/// Statements are separate entries, run one at a time, each idempotent on its own (see the module
/// docs), so a migration interrupted half-way can be run again from the top.
const MIGRATIONS: &[(i64, &[&str])] = &[(1, V1)];

/// Version 1: the catalogue counter, apps with their triggers, the changes table, and usage.
///
/// - `vestnik_catalogue`: the one revision counter, locked by each write until commit, so revisions
///   commit in order and `vestnik_app_changes` has no holes except where rows were pruned.
/// - `vestnik_apps`: the same columns and `CHECK`s as the PostgreSQL table; JSON columns as `JSON`.
/// - `vestnik_app_changes`: one row per change (revision, app id), written by the triggers; the
///   MySQL feed polls it in place of `NOTIFY`, and writes prune rows older than a day.
/// - The triggers set the revision and timestamps, refuse a key that is another app's id with a
///   `vestnik:` `SIGNAL`, and log each change, so writes from outside Vestnik follow the same rules.
/// - `vestnik_usage`: one row per app and UTC hour, merged by upsert.
const V1: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS vestnik_catalogue (
        singleton TINYINT NOT NULL PRIMARY KEY,
        revision  BIGINT  NOT NULL
    ) ENGINE=InnoDB",
    "INSERT IGNORE INTO vestnik_catalogue (singleton, revision) VALUES (1, 0)",
    "CREATE TABLE IF NOT EXISTS vestnik_apps (
        id                          VARCHAR(64)  NOT NULL PRIMARY KEY,
        app_key                     VARCHAR(64)  NOT NULL,
        secret                      VARCHAR(128) NOT NULL,
        previous_secret             VARCHAR(128) NULL,
        previous_secret_expires_at  TIMESTAMP(3) NULL DEFAULT NULL,
        enabled                     BOOLEAN NOT NULL DEFAULT TRUE,
        max_connections             INT NOT NULL DEFAULT 0     CHECK (max_connections >= 0),
        client_event_rate           INT NOT NULL DEFAULT 10    CHECK (client_event_rate >= 0),
        max_event_bytes             INT NOT NULL DEFAULT 10240 CHECK (max_event_bytes >= 1),
        max_presence_members        INT NOT NULL DEFAULT 100   CHECK (max_presence_members >= 1),
        max_user_info_bytes         INT NOT NULL DEFAULT 1024  CHECK (max_user_info_bytes >= 1),
        max_channels_per_trigger    INT NOT NULL DEFAULT 100   CHECK (max_channels_per_trigger >= 1),
        max_batch_events            INT NOT NULL DEFAULT 10    CHECK (max_batch_events >= 1),
        max_channels_per_socket     INT NOT NULL DEFAULT 100   CHECK (max_channels_per_socket >= 0),
        api_rate_limit              INT NOT NULL DEFAULT 0     CHECK (api_rate_limit >= 0),
        client_events               BOOLEAN NOT NULL DEFAULT TRUE,
        allowed_origins             JSON NOT NULL DEFAULT ('[]'),
        signin_timeout              INT NOT NULL DEFAULT 0     CHECK (signin_timeout >= 0),
        watchlist                   BOOLEAN NOT NULL DEFAULT TRUE,
        subscription_count          BOOLEAN NOT NULL DEFAULT FALSE,
        cache_ttl                   INT NOT NULL DEFAULT 1800  CHECK (cache_ttl >= 1),
        webhooks                    JSON NOT NULL DEFAULT ('[]'),
        quota_max_connections       BIGINT NOT NULL DEFAULT 0  CHECK (quota_max_connections >= 0),
        quota_max_messages_per_day  BIGINT NOT NULL DEFAULT 0  CHECK (quota_max_messages_per_day >= 0),
        created_at                  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        updated_at                  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
        revision                    BIGINT NOT NULL DEFAULT 0,
        UNIQUE KEY vestnik_apps_app_key (app_key)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    "CREATE TABLE IF NOT EXISTS vestnik_app_changes (
        revision    BIGINT NOT NULL PRIMARY KEY,
        app_id      VARCHAR(64) NOT NULL,
        changed_at  TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
    // Every write takes the next catalogue revision (the counter row stays locked until commit, so
    // revisions commit in order and the changes table has no holes) and logs the app's id.
    "DROP TRIGGER IF EXISTS vestnik_apps_before_insert",
    "CREATE TRIGGER vestnik_apps_before_insert BEFORE INSERT ON vestnik_apps FOR EACH ROW
    BEGIN
        UPDATE vestnik_catalogue SET revision = revision + 1 WHERE singleton = 1;
        SET NEW.revision = (SELECT revision FROM vestnik_catalogue WHERE singleton = 1);
        IF EXISTS (SELECT 1 FROM vestnik_apps WHERE id = NEW.app_key AND id <> NEW.id)
           OR EXISTS (SELECT 1 FROM vestnik_apps WHERE app_key = NEW.id AND id <> NEW.id) THEN
            SIGNAL SQLSTATE '45000'
                SET MESSAGE_TEXT = 'vestnik: the key of one app may not be the id of another';
        END IF;
        SET NEW.updated_at = CURRENT_TIMESTAMP(3);
        INSERT INTO vestnik_app_changes (revision, app_id) VALUES (NEW.revision, NEW.id);
    END",
    "DROP TRIGGER IF EXISTS vestnik_apps_before_update",
    "CREATE TRIGGER vestnik_apps_before_update BEFORE UPDATE ON vestnik_apps FOR EACH ROW
    BEGIN
        IF NEW.id <> OLD.id THEN
            UPDATE vestnik_catalogue SET revision = revision + 1 WHERE singleton = 1;
            INSERT INTO vestnik_app_changes (revision, app_id)
                SELECT revision, OLD.id FROM vestnik_catalogue WHERE singleton = 1;
        END IF;
        UPDATE vestnik_catalogue SET revision = revision + 1 WHERE singleton = 1;
        SET NEW.revision = (SELECT revision FROM vestnik_catalogue WHERE singleton = 1);
        IF EXISTS (SELECT 1 FROM vestnik_apps WHERE id = NEW.app_key AND id <> OLD.id)
           OR EXISTS (SELECT 1 FROM vestnik_apps WHERE app_key = NEW.id AND id <> OLD.id) THEN
            SIGNAL SQLSTATE '45000'
                SET MESSAGE_TEXT = 'vestnik: the key of one app may not be the id of another';
        END IF;
        SET NEW.created_at = OLD.created_at, NEW.updated_at = CURRENT_TIMESTAMP(3);
        INSERT INTO vestnik_app_changes (revision, app_id) VALUES (NEW.revision, NEW.id);
    END",
    "DROP TRIGGER IF EXISTS vestnik_apps_after_delete",
    "CREATE TRIGGER vestnik_apps_after_delete AFTER DELETE ON vestnik_apps FOR EACH ROW
    BEGIN
        UPDATE vestnik_catalogue SET revision = revision + 1 WHERE singleton = 1;
        INSERT INTO vestnik_app_changes (revision, app_id)
            SELECT revision, OLD.id FROM vestnik_catalogue WHERE singleton = 1;
    END",
    "CREATE TABLE IF NOT EXISTS vestnik_usage (
        app_id              VARCHAR(64) NOT NULL,
        hour_start          DATETIME NOT NULL,
        peak_connections    BIGINT NOT NULL DEFAULT 0,
        messages_delivered  BIGINT NOT NULL DEFAULT 0,
        messages_received   BIGINT NOT NULL DEFAULT 0,
        bytes_out           BIGINT NOT NULL DEFAULT 0,
        webhooks_sent       BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (app_id, hour_start),
        KEY vestnik_usage_hour (hour_start)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin",
];

/// The newest version this build knows; a database at a higher one is refused.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Applies the missing migrations, holding the named lock on one connection.
///
/// `GET_LOCK` is per connection, so the whole migration runs on the one connection that holds it,
/// and the lock is released whether the migration succeeded or not. Since MySQL DDL commits on its
/// own, each statement is idempotent instead of the whole being one transaction; the version row is
/// written after a version's last statement, so an interrupted version is run again in full.
pub(crate) async fn migrate(pool: &MySqlPool) -> Result<Migrated, StoreError> {
    let mut conn = pool.acquire().await?;
    let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, ?)")
        .bind(MIGRATE_LOCK)
        .bind(MIGRATE_LOCK_WAIT_SECS)
        .fetch_one(&mut *conn)
        .await?;
    if locked != Some(1) {
        return Err(StoreError::Conflict(
            "another node has been migrating the schema for a minute; try again".into(),
        ));
    }
    let result = async {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS vestnik_schema_version (
                version    BIGINT NOT NULL PRIMARY KEY,
                applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
            ) ENGINE=InnoDB",
        )
        .execute(&mut *conn)
        .await?;
        let from: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(MAX(version), 0) AS SIGNED) FROM vestnik_schema_version",
        )
        .fetch_one(&mut *conn)
        .await?;
        if from > latest() {
            return Err(StoreError::SchemaTooNew {
                found: from,
                known: latest(),
            });
        }
        for (version, statements) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
            for statement in *statements {
                // Text protocol: CREATE TRIGGER cannot be a prepared statement.
                (&mut *conn).execute(*statement).await?;
            }
            sqlx::query("INSERT INTO vestnik_schema_version (version) VALUES (?)")
                .bind(version)
                .execute(&mut *conn)
                .await?;
            tracing::info!(version, "app catalogue schema upgraded (MySQL)");
        }
        Ok(Migrated { from, to: latest() })
    }
    .await;
    sqlx::query("SELECT RELEASE_LOCK(?)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *conn)
        .await?;
    result
}

//! The PostgreSQL schema, as numbered migrations, and `migrate`, which applies the missing ones in
//! one transaction under an advisory lock (DDL is transactional in PostgreSQL, so a failed upgrade
//! leaves the old schema whole). docs/apps.md describes every table and column; keep them in step.
//! This module must never drop or rewrite data of an applied version.

use sqlx::{Executor, PgPool};

use crate::error::StoreError;
use crate::store::Migrated;

/// The advisory lock key that serialises concurrent `migrate` calls ("vestnik" in ASCII, truncated).
///
/// A transaction-scoped advisory lock (`pg_advisory_xact_lock`): it is released by the commit or
/// rollback, so a node that dies mid-migration cannot leave the lock held.
const MIGRATE_LOCK: i64 = 0x0076_6573_746e_696b;

/// The migrations, in order; a version is applied once and never edited afterwards.
///
/// A version is never edited once released: a database that applied it would never see the edit.
/// A change is a new version appended here.
const MIGRATIONS: &[(i64, &str)] = &[(1, V1)];

/// Version 1: the catalogue counter, apps with their triggers, and usage.
///
/// - `vestnik_catalogue`: one row holding the catalogue revision. Every write to an app takes the
///   next value inside its own transaction and keeps the row locked until commit, so revisions
///   commit in order and a snapshot's revision is exact.
/// - `vestnik_apps`: one row per app; the limits and options as columns with `CHECK`s that mirror
///   the validation in `record`, the origins and webhook targets as `jsonb`.
/// - The before-write trigger sets the revision and the timestamps and refuses a key that is another
///   app's id (`VK001`), so writes from outside Vestnik (an admin panel's SQL) keep the same rules.
/// - The after-write and after-truncate triggers `NOTIFY vestnik_apps` with the id and revision (or
///   `{"id":null}` for a TRUNCATE, which fires no row triggers), which is what the feed listens to.
/// - `vestnik_usage`: one row per app and UTC hour, merged by upsert.
const V1: &str = r#"
CREATE TABLE vestnik_catalogue (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    revision  bigint  NOT NULL
);
INSERT INTO vestnik_catalogue (singleton, revision) VALUES (true, 0);

CREATE TABLE vestnik_apps (
    id                          varchar(64)  PRIMARY KEY,
    app_key                     varchar(64)  NOT NULL UNIQUE,
    secret                      varchar(128) NOT NULL,
    previous_secret             varchar(128),
    previous_secret_expires_at  timestamptz,
    enabled                     boolean NOT NULL DEFAULT true,
    max_connections             integer NOT NULL DEFAULT 0     CHECK (max_connections >= 0),
    client_event_rate           integer NOT NULL DEFAULT 10    CHECK (client_event_rate >= 0),
    max_event_bytes             integer NOT NULL DEFAULT 10240 CHECK (max_event_bytes >= 1),
    max_presence_members        integer NOT NULL DEFAULT 100   CHECK (max_presence_members >= 1),
    max_user_info_bytes         integer NOT NULL DEFAULT 1024  CHECK (max_user_info_bytes >= 1),
    max_channels_per_trigger    integer NOT NULL DEFAULT 100   CHECK (max_channels_per_trigger >= 1),
    max_batch_events            integer NOT NULL DEFAULT 10    CHECK (max_batch_events >= 1),
    max_channels_per_socket     integer NOT NULL DEFAULT 100   CHECK (max_channels_per_socket >= 0),
    api_rate_limit              integer NOT NULL DEFAULT 0     CHECK (api_rate_limit >= 0),
    client_events               boolean NOT NULL DEFAULT true,
    allowed_origins             jsonb   NOT NULL DEFAULT '[]',
    signin_timeout              integer NOT NULL DEFAULT 0     CHECK (signin_timeout >= 0),
    watchlist                   boolean NOT NULL DEFAULT true,
    subscription_count          boolean NOT NULL DEFAULT false,
    cache_ttl                   integer NOT NULL DEFAULT 1800  CHECK (cache_ttl >= 1),
    webhooks                    jsonb   NOT NULL DEFAULT '[]',
    quota_max_connections       bigint  NOT NULL DEFAULT 0     CHECK (quota_max_connections >= 0),
    quota_max_messages_per_day  bigint  NOT NULL DEFAULT 0     CHECK (quota_max_messages_per_day >= 0),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    revision                    bigint  NOT NULL DEFAULT 0
);

-- Every write takes the next catalogue revision. The counter row stays locked until commit, so
-- revisions commit in order, and a snapshot that reads the counter and the apps in one transaction
-- is exact. The key/id check holds for writes that bypass Vestnik (an admin panel's SQL) too.
CREATE FUNCTION vestnik_apps_before_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rev bigint;
BEGIN
    UPDATE vestnik_catalogue SET revision = revision + 1 RETURNING revision INTO rev;
    IF EXISTS (SELECT 1 FROM vestnik_apps WHERE id = NEW.app_key AND id <> NEW.id)
       OR EXISTS (SELECT 1 FROM vestnik_apps WHERE app_key = NEW.id AND id <> NEW.id) THEN
        RAISE EXCEPTION 'vestnik: the key of one app may not be the id of another (app %)', NEW.id
            USING ERRCODE = 'VK001';
    END IF;
    NEW.revision := rev;
    IF TG_OP = 'UPDATE' THEN
        NEW.created_at := OLD.created_at;
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER vestnik_apps_before_write BEFORE INSERT OR UPDATE ON vestnik_apps
    FOR EACH ROW EXECUTE FUNCTION vestnik_apps_before_write();

-- Every change NOTIFYs the app's id (and the old id of a renamed row) at commit.
CREATE FUNCTION vestnik_apps_after_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rev bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE vestnik_catalogue SET revision = revision + 1 RETURNING revision INTO rev;
        PERFORM pg_notify('vestnik_apps', json_build_object('id', OLD.id, 'revision', rev)::text);
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN
        PERFORM pg_notify('vestnik_apps', json_build_object('id', OLD.id, 'revision', NEW.revision)::text);
    END IF;
    PERFORM pg_notify('vestnik_apps', json_build_object('id', NEW.id, 'revision', NEW.revision)::text);
    RETURN NEW;
END
$$;
CREATE TRIGGER vestnik_apps_after_write AFTER INSERT OR UPDATE OR DELETE ON vestnik_apps
    FOR EACH ROW EXECUTE FUNCTION vestnik_apps_after_write();

-- TRUNCATE fires no row triggers: tell the feeds to reload everything.
CREATE FUNCTION vestnik_apps_after_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE vestnik_catalogue SET revision = revision + 1;
    PERFORM pg_notify('vestnik_apps', '{"id":null}');
    RETURN NULL;
END
$$;
CREATE TRIGGER vestnik_apps_after_truncate AFTER TRUNCATE ON vestnik_apps
    FOR EACH STATEMENT EXECUTE FUNCTION vestnik_apps_after_truncate();

CREATE TABLE vestnik_usage (
    app_id              varchar(64) NOT NULL,
    hour_start          timestamptz NOT NULL,
    peak_connections    bigint NOT NULL DEFAULT 0,
    messages_delivered  bigint NOT NULL DEFAULT 0,
    messages_received   bigint NOT NULL DEFAULT 0,
    bytes_out           bigint NOT NULL DEFAULT 0,
    webhooks_sent       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (app_id, hour_start)
);
CREATE INDEX vestnik_usage_hour ON vestnik_usage (hour_start);
"#;

/// The newest version this build knows.
/// Stored in `vestnik_schema_version`; compared at every start.
pub(crate) fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |(v, _)| *v)
}

/// Applies the missing migrations.
///
/// All of it runs in one transaction under the advisory lock: a second node waits, then finds the
/// versions applied and does nothing. A schema newer than this build is refused rather than used,
/// so an old node in a rolling upgrade never writes rows in a shape it does not know.
pub(crate) async fn migrate(pool: &PgPool) -> Result<Migrated, StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATE_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS vestnik_schema_version (
            version    bigint PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await?;
    let from: i64 =
        sqlx::query_scalar("SELECT COALESCE(max(version), 0) FROM vestnik_schema_version")
            .fetch_one(&mut *tx)
            .await?;
    if from > latest() {
        return Err(StoreError::SchemaTooNew {
            found: from,
            known: latest(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
        // Several statements with function bodies: the simple query protocol takes them at once.
        (&mut *tx).execute(*sql).await?;
        sqlx::query("INSERT INTO vestnik_schema_version (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, "app catalogue schema upgraded (PostgreSQL)");
    }
    tx.commit().await?;
    Ok(Migrated { from, to: latest() })
}

//! The SQLite store: opening it, running the migrations in order, and running queries off the async
//! threads.
//!
//! Migrations are the numbered files in `migrations/`, compiled in; `PRAGMA user_version` records
//! how many ran, so a restart runs only the new ones. One connection behind a mutex is enough for a
//! demo shop; each query runs in `spawn_blocking`, and the lock is never held across an `.await`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::error::ApiError;

/// The migrations, in order. Each runs once, in its own transaction.
const MIGRATIONS: [(&str, &str); 4] = [
    ("001_schema", include_str!("../migrations/001_schema.sql")),
    ("002_seed", include_str!("../migrations/002_seed.sql")),
    (
        "003_destinations",
        include_str!("../migrations/003_destinations.sql"),
    ),
    (
        "004_payment_bonuses_titles",
        include_str!("../migrations/004_payment_bonuses_titles.sql"),
    ),
];

/// The shared database handle.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Db")
    }
}

impl Db {
    /// Opens (creating it and its directory if needed) the database at `path` and brings its schema
    /// up to date.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on a blocking thread.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| ApiError::internal("database lock poisoned"))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| ApiError::internal(format!("database task failed: {e}")))?
    }
}

/// Runs every migration newer than the database's `user_version`.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| anyhow::anyhow!("migration {name} failed: {e}"))?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
        tracing::info!(migration = name, "migrated");
    }
    Ok(())
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix seconds as an RFC 3339 / ISO 8601 UTC time, e.g. `2026-01-01T00:00:00Z`.
pub fn iso(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    // Howard Hinnant's civil-from-days algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(iso(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }

    #[test]
    fn the_database_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("order-tracking-data").join("shop.sqlite3");
        Db::open(&path).expect("opens under a directory that does not exist yet");
        assert!(path.is_file());
    }

    #[test]
    fn seeded_statuses_have_russian_titles_and_orders_their_payment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.sqlite3");
        Db::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        let title = |p: &str| -> String {
            conn.query_row(
                "SELECT title FROM custom_statuses WHERE permalink = ?1",
                [p],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(title("pending"), "Ожидает подтверждения");
        assert_eq!(title("shipped"), "В доставке");
        assert_eq!(title("cancelled"), "Отменён");
        let (method, bonuses): (String, i64) = conn
            .query_row(
                "SELECT payment_method, used_bonuses_minor FROM orders WHERE id = 1003",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((method.as_str(), bonuses), ("card_online", 3000));
    }

    #[test]
    fn migrations_run_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.sqlite3");
        Db::open(&path).unwrap();
        Db::open(&path).expect("a second open runs nothing and keeps the seed");
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 6);
    }
}

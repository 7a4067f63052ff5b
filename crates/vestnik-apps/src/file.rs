//! [`FileLedger`]: usage kept in the data dir, for nodes whose apps come from the config file.
//!
//! One append-only log per UTC day, `usage-YYYY-MM-DD.jsonl`, one JSON [`UsageRow`] (an increment)
//! per line. A flush appends its rows and syncs the file, so usage survives a restart; a read merges
//! the lines of the days it spans (peak by maximum, counts by sum), exactly as the database stores
//! merge their upserts. A line cut short by a crash is skipped on read. Every file operation runs on
//! a blocking thread. This ledger belongs to one node (its data dir): it is not shared by a cluster.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::StoreError;
use crate::store::{StoreFuture, UsageLedger};
use crate::usage::{Day, Hour, Usage, UsageRow};

/// Seconds in a UTC day.
const DAY_SECS: i64 = 86_400;

/// The most days one usage read may span (a year and a day), so a careless range cannot make a
/// node open thousands of files.
const MAX_READ_DAYS: i64 = 367;

/// Usage per app and hour in a directory, one append-only file per UTC day.
#[derive(Debug, Clone)]
pub struct FileLedger {
    /// The directory the day files live in.
    dir: Arc<PathBuf>,
}

impl FileLedger {
    /// A ledger in `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .map_err(|e| StoreError::File(format!("cannot create {}: {e}", dir.display())))?;
        Ok(Self { dir: Arc::new(dir) })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `day`.
    fn day_file(&self, day: i64) -> PathBuf {
        self.dir.join(format!("usage-{}.jsonl", civil_date(day)))
    }

    /// Appends `rows` to their days' files and syncs each file written.
    fn append(&self, rows: &[UsageRow]) -> Result<(), StoreError> {
        let mut by_day: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
        for row in rows {
            let day = row.hour.unix().div_euclid(DAY_SECS) * DAY_SECS;
            let buf = by_day.entry(day).or_default();
            serde_json::to_writer(&mut *buf, row).map_err(|e| StoreError::File(e.to_string()))?;
            buf.push(b'\n');
        }
        for (day, buf) in by_day {
            let path = self.day_file(day);
            let io = |e: std::io::Error| StoreError::File(format!("{}: {e}", path.display()));
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io)?;
            // One write per day file: with `O_APPEND` the lines of one flush stay together.
            file.write_all(&buf).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// Every row of `day`'s file, merged by app and hour.
    fn read_day(&self, day: i64) -> Result<BTreeMap<(String, Hour), Usage>, StoreError> {
        let path = self.day_file(day);
        let mut merged: BTreeMap<(String, Hour), Usage> = BTreeMap::new();
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(merged),
            Err(e) => return Err(StoreError::File(format!("{}: {e}", path.display()))),
        };
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| StoreError::File(format!("{}: {e}", path.display())))?;
            // A line cut short by a crash mid-append is not a row: skip it.
            let Ok(row) = serde_json::from_str::<UsageRow>(&line) else {
                continue;
            };
            merged
                .entry((row.app_id, row.hour))
                .or_default()
                .merge(&row.usage);
        }
        Ok(merged)
    }

    /// `app_id`'s rows in `from..to`, oldest first.
    fn read_range(&self, app_id: &str, from: Hour, to: Hour) -> Result<Vec<UsageRow>, StoreError> {
        let first = from.unix().div_euclid(DAY_SECS) * DAY_SECS;
        let last = to.unix().min(from.unix() + MAX_READ_DAYS * DAY_SECS);
        let mut rows = Vec::new();
        let mut day = first;
        while day < last {
            for ((app, hour), usage) in self.read_day(day)? {
                if app == app_id && hour >= from && hour < to {
                    rows.push(UsageRow {
                        app_id: app,
                        hour,
                        usage,
                    });
                }
            }
            day += DAY_SECS;
        }
        rows.sort_by_key(|r| r.hour);
        Ok(rows)
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::File(format!("usage file task failed: {e}")))?
}

impl UsageLedger for FileLedger {
    fn record_usage(&self, rows: Vec<UsageRow>) -> StoreFuture<'_, ()> {
        let me = self.clone();
        Box::pin(async move {
            if rows.is_empty() {
                return Ok(());
            }
            blocking(move || me.append(&rows)).await
        })
    }

    fn usage<'a>(
        &'a self,
        app_id: &'a str,
        from: Hour,
        to: Hour,
    ) -> StoreFuture<'a, Vec<UsageRow>> {
        let me = self.clone();
        let app_id = app_id.to_owned();
        Box::pin(async move { blocking(move || me.read_range(&app_id, from, to)).await })
    }

    fn daily_messages(&self, day: Day) -> StoreFuture<'_, Vec<(String, u64)>> {
        let me = self.clone();
        Box::pin(async move {
            blocking(move || {
                let mut per_app: BTreeMap<String, u64> = BTreeMap::new();
                for ((app, _), usage) in me.read_day(day.unix())? {
                    let n = per_app.entry(app).or_default();
                    *n = n.saturating_add(usage.messages());
                }
                Ok(per_app.into_iter().collect())
            })
            .await
        })
    }
}

/// `YYYY-MM-DD` of the UTC day starting at Unix time `day` (Howard Hinnant's `civil_from_days`).
fn civil_date(day: i64) -> String {
    let z = day.div_euclid(DAY_SECS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn row(app: &str, hour: i64, peak: u64, received: u64) -> UsageRow {
        UsageRow {
            app_id: app.into(),
            hour: Hour::from_unix(hour),
            usage: Usage {
                peak_connections: peak,
                messages_received: received,
                messages_delivered: 2 * received,
                bytes_out: 10,
                webhooks_sent: 1,
            },
        }
    }

    /// Day files are named by their civil date, including leap days and the epoch.
    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_764_892_800), "2025-12-05");
    }

    /// Increments merge on read as the databases merge them, per day file, survive a reopen
    /// (a restart), and a torn last line is skipped.
    #[tokio::test]
    async fn rows_merge_survive_a_reopen_and_skip_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let day = Day::containing(SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_892_800));
        let h0 = day.unix();
        let ledger = FileLedger::open(dir.path().join("usage")).unwrap();
        ledger
            .record_usage(vec![row("a", h0, 3, 1), row("b", h0 + 3_600, 1, 5)])
            .await
            .unwrap();
        ledger
            .record_usage(vec![row("a", h0, 7, 2), row("a", h0 + DAY_SECS, 1, 4)])
            .await
            .unwrap();
        let path = ledger.day_file(h0);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"app_id\":\"a\",\"hou").unwrap();
        drop(f);
        let reopened = FileLedger::open(dir.path().join("usage")).unwrap();
        let rows = reopened
            .usage("a", day.first_hour(), Hour::from_unix(h0 + 2 * DAY_SECS))
            .await
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].usage.peak_connections, 7);
        assert_eq!(rows[0].usage.messages_received, 3);
        assert_eq!(rows[0].usage.messages_delivered, 6);
        assert_eq!(rows[0].usage.webhooks_sent, 2);
        assert_eq!(rows[1].hour.unix(), h0 + DAY_SECS);
        let daily = reopened.daily_messages(day).await.unwrap();
        assert_eq!(daily, vec![("a".into(), 9), ("b".into(), 15)]);
    }
}

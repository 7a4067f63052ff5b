//! The MariaDB/MySQL change signal: a task that polls `vestnik_app_changes` for revisions after the
//! last one seen, every `poll_interval` (one indexed range query), and forwards the ids. Revisions
//! commit in order (the triggers hold the catalogue counter's row lock until commit), so a hole
//! before the first new row means pruned rows: the feed then reloads everything. This module must
//! never retry on its own: a failed poll ends the task and the feed reconnects.

use sqlx::MySqlPool;
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::feed::{FeedOptions, Loaded, Signal, Source, Wake};
use crate::store::Snapshot;

/// Most change rows one poll reads; more than that is a burst better served by a full reload.
const POLL_LIMIT: i64 = 500;

/// Wake-ups a signal may queue before it waits for the feed.
const SIGNAL_QUEUE: usize = 16;

/// The feed's view of a MySQL store.
pub(crate) struct MySqlSource {
    /// The store's pool; a poll borrows one connection for one query.
    pool: MySqlPool,
}

impl MySqlSource {
    pub(crate) fn new(pool: MySqlPool) -> Self {
        Self { pool }
    }
}

/// What a poll found: the ids changed after `since`, or that the feed must reload everything.
///
/// Two cases reload everything: a first row that is not `since + 1` (rows were pruned, so some
/// change may be unseen) and a full page of [`POLL_LIMIT`] rows (a burst, cheaper to reload whole).
/// Ids are deduplicated in first-seen order, so an app written ten times is reloaded once.
/// Returns the revision to poll from next; `None` when nothing changed.
fn wake_for(since: i64, rows: &[(i64, String)]) -> Option<(Wake, i64)> {
    let (first, _) = rows.first()?;
    let (last, _) = rows.last()?;
    if *first != since + 1 || rows.len() as i64 >= POLL_LIMIT {
        return Some((Wake::Everything, *last));
    }
    let mut ids: Vec<String> = Vec::new();
    for (_, id) in rows {
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    Some((
        Wake::Ids {
            ids,
            revision: u64::try_from(*last).unwrap_or(0),
        },
        *last,
    ))
}

impl Source for MySqlSource {
    type Listening = ();

    /// Nothing to do: changes are rows, so a change between snapshot and first poll is still there.
    async fn listen(&self) -> Result<(), StoreError> {
        // The changes table is durable: nothing to set up before the snapshot.
        Ok(())
    }

    /// The polling task: every `poll_interval`, one indexed range query for revisions after the
    /// last seen, starting from the snapshot's revision. A failed query is sent as [`Wake::Lost`]
    /// and ends the task; the feed reconnects and resyncs. Missed ticks are delayed, not burst, so
    /// a slow database is not polled harder after a stall.
    fn follow(&self, _: (), revision: u64, options: FeedOptions) -> Signal {
        let (tx, wakes) = mpsc::channel(SIGNAL_QUEUE);
        let pool = self.pool.clone();
        let mut since = i64::try_from(revision).unwrap_or(i64::MAX);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(options.poll_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let rows: Result<Vec<(i64, String)>, sqlx::Error> = sqlx::query_as(
                    "SELECT revision, CAST(app_id AS CHAR) FROM vestnik_app_changes \
                     WHERE revision > ? ORDER BY revision LIMIT ?",
                )
                .bind(since)
                .bind(POLL_LIMIT)
                .fetch_all(&pool)
                .await;
                let wake = match rows {
                    Ok(rows) => match wake_for(since, &rows) {
                        Some((wake, last)) => {
                            since = last;
                            wake
                        }
                        None => continue,
                    },
                    Err(e) => Wake::Lost(e.into()),
                };
                let lost = matches!(wake, Wake::Lost(_));
                if tx.send(wake).await.is_err() || lost {
                    return;
                }
            }
        });
        Signal { wakes, task }
    }

    async fn load_all(&self) -> Result<Snapshot, StoreError> {
        super::load_all(&self.pool).await
    }

    async fn load(&self, ids: Vec<String>) -> Result<Vec<(String, Loaded)>, StoreError> {
        super::load(&self.pool, ids).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the hole rule: a gap before the first row must reload everything, or pruned changes
    /// would be missed silently.
    #[test]
    fn polls() {
        assert!(wake_for(5, &[]).is_none());
        let rows = vec![
            (6, "a".to_owned()),
            (7, "b".to_owned()),
            (8, "a".to_owned()),
        ];
        match wake_for(5, &rows) {
            Some((Wake::Ids { ids, revision: 8 }, 8)) => assert_eq!(ids, ["a", "b"]),
            other => panic!("{other:?}"),
        }
        // A hole before the first row: rows were pruned while the feed was behind.
        assert!(matches!(wake_for(3, &rows), Some((Wake::Everything, 8))));
    }
}

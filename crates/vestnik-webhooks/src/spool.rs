//! The durable spool: pending batches and dead letters in one redb file under the data dir, so a
//! stop, a crash or a receiver outage loses no webhook that was spooled.
//!
//! Two tables, both keyed by a growing `u64`: `pending_v1` holds batches waiting for delivery, and
//! `dead_v1` holds single events whose retry window ran out. New batches are committed durably
//! (fsync) before anyone tries to send them. Removals after delivery and moves to the dead-letter
//! list are committed without waiting for the disk: if a crash undoes them, the batch is simply
//! sent again (at least once; receivers dedupe by id). Every call here blocks on the disk, so async
//! code must call it from a blocking task. This module must never send anything or decide when to
//! retry.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Batches waiting for delivery, by key. Values are JSON [`StoredBatch`]es: JSON rather than a
/// binary format so a spool stays readable across versions and by hand in an emergency. The `_v1`
/// suffix leaves room for a changed record shape to live in a new table beside the old one.
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_v1");
/// Dead letters, one event each, by key: one per event so that replay and purge can pick single
/// events by id.
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_v1");
/// `next_key`: keys are never reused, even across restarts, so a key names one batch for good
/// (in logs, for example).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta_v1");
const NEXT_KEY: &str = "next_key";

/// The spool's file name inside the data dir.
pub const SPOOL_FILE: &str = "webhooks.redb";

/// One event as stored and sent: its id and its JSON object (which includes the id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredEvent {
    /// The event id (UUID v7), kept apart from the JSON so the `X-Vestnik-Webhook-Id` header and
    /// replay by id need no parsing.
    pub id: String,
    /// The finished JSON object, written once by the planner and sent as is on every attempt.
    pub json: String,
}

/// A batch waiting for delivery to one target. The target's URL and headers are kept with it, so
/// a batch spooled before a config change still goes where it was meant to go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredBatch {
    /// The app whose key and secret sign the batch at send time.
    pub app_id: String,
    /// The receiver URL when the batch was spooled.
    pub url: String,
    /// The target's extra headers when the batch was spooled; `default` so spools written before
    /// headers existed still load.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Unix ms when the batch was spooled (or replayed), shown on dead letters.
    pub created_ms: u64,
    /// In release order; Pusher's receivers expect events of one channel in the order they
    /// happened.
    pub events: Vec<StoredEvent>,
}

/// A dead letter as stored: one event and why it could not be delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DeadRecord {
    app_id: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    event: StoredEvent,
    attempts: u32,
    last_error: String,
    created_ms: u64,
    dead_lettered_ms: u64,
}

/// An event whose delivery gave up after the retry window, as the admin endpoint shows it.
///
/// The target's extra headers are not shown: they often carry credentials.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The event id (also in `event.id`); pass it to `replay` or `purge`.
    pub id: String,
    /// The app the event belongs to.
    pub app_id: String,
    /// The target URL that did not accept it.
    pub url: String,
    /// The event object exactly as it would be sent.
    pub event: serde_json::Value,
    /// Requests made before giving up.
    pub attempts: u32,
    /// The last failure: an HTTP status, a timeout or a connection error.
    pub last_error: String,
    /// When the event's batch was spooled (Unix ms).
    pub created_ms: u64,
    /// When it became a dead letter (Unix ms).
    pub dead_lettered_ms: u64,
}

/// What the sender needs to know about a spooled batch without keeping its events in memory.
#[derive(Debug, Clone)]
pub(crate) struct PendingSummary {
    /// The batch's key in `pending_v1`.
    pub key: u64,
    pub app_id: String,
    pub url: String,
    /// How many events the batch holds, for the counters.
    pub events: usize,
}

/// The redb-backed spool. Opening it takes an exclusive lock on the file: one process at a time.
/// Shared as `Arc<Spool>` by the intake, the lanes and the admin calls; redb serialises writers
/// internally, and every method here is one short transaction, so no extra lock is needed.
#[derive(Debug)]
pub struct Spool {
    db: Database,
    /// The next key to hand out, shared by both tables; taken with `fetch_add` so keys are unique
    /// without a lock, and saved to `meta_v1` in every transaction that uses one.
    next_key: AtomicU64,
}

/// Reads one record; a record that does not parse is reported with its key, so an operator can find
/// it, rather than failing the whole spool silently.
fn decode<T: for<'de> Deserialize<'de>>(key: u64, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Record { key, source })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records of strings and integers always serialise")
}

impl Spool {
    /// Opens (or creates) the spool in `data_dir`, creating the directory when missing.
    ///
    /// Fails with a spool error if another process has it open.
    ///
    /// redb takes an exclusive lock on the file, which is what stops two brokers from sharing a
    /// data dir and sending every webhook twice.
    pub fn open(data_dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(data_dir).map_err(|source| Error::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        Self::with(Database::create(data_dir.join(SPOOL_FILE))?)
    }

    /// Opens the spool that a broker left in `data_dir`, for the offline replay and purge: never
    /// creates the directory or the file, and says which is missing, or that a running broker
    /// holds the spool.
    pub fn open_existing(data_dir: &Path) -> Result<Self, Error> {
        let file = existing_file(data_dir)?;
        match Database::open(file) {
            Ok(db) => Self::with(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(Error::InUse {
                path: data_dir.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates the tables if needed and sets the key counter past every key in use. The stored
    /// counter alone is not trusted: the largest key present also counts, so keys never go back
    /// even if the counter was not saved.
    fn with(db: Database) -> Result<Self, Error> {
        let tx = db.begin_write()?;
        let next_key = {
            let pending = tx.open_table(PENDING)?;
            let dead = tx.open_table(DEAD)?;
            let last = |t: &redb::Table<u64, &[u8]>| -> Result<u64, Error> {
                Ok(t.last()?.map_or(0, |(k, _)| k.value()))
            };
            let meta = tx.open_table(META)?;
            let stored = meta.get(NEXT_KEY)?.map_or(1, |v| v.value());
            stored.max(last(&pending)?.max(last(&dead)?) + 1)
        };
        tx.commit()?;
        Ok(Self {
            db,
            next_key: AtomicU64::new(next_key),
        })
    }

    /// Every app id with a pending batch or a dead letter, so a CLI can tell an app the spool has
    /// never seen from one without dead letters.
    pub fn app_ids(&self) -> Result<BTreeSet<String>, Error> {
        app_ids(&self.db.begin_read()?)
    }

    /// Hands out a fresh key. Relaxed is enough: only uniqueness matters, and the transaction that
    /// uses the key orders everything else.
    fn key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }

    /// Records the key counter in the transaction that used it.
    fn save_next_key(&self, tx: &redb::WriteTransaction) -> Result<(), Error> {
        let next = self.next_key.load(Ordering::Relaxed);
        tx.open_table(META)?.insert(NEXT_KEY, next)?;
        Ok(())
    }

    /// Spools new batches durably, in one transaction; returns their keys in the same order.
    /// This is the one write that is fsynced before it returns (redb's default durability): a batch
    /// is never handed to a lane before it is on disk.
    pub(crate) fn insert(&self, batches: &[StoredBatch]) -> Result<Vec<u64>, Error> {
        let tx = self.db.begin_write()?;
        let mut keys = Vec::with_capacity(batches.len());
        {
            let mut pending = tx.open_table(PENDING)?;
            for batch in batches {
                let key = self.key();
                pending.insert(key, encode(batch).as_slice())?;
                keys.push(key);
            }
        }
        self.save_next_key(&tx)?;
        tx.commit()?;
        Ok(keys)
    }

    /// Reads one pending batch; `None` if it was delivered or dead-lettered meanwhile.
    /// A lane reads the batch back on each retry instead of keeping it in memory.
    pub(crate) fn get(&self, key: u64) -> Result<Option<StoredBatch>, Error> {
        let tx = self.db.begin_read()?;
        let pending = tx.open_table(PENDING)?;
        let value = pending.get(key)?;
        value.map(|v| decode(key, v.value())).transpose()
    }

    /// Forgets a delivered batch. Not fsynced: see the module docs.
    /// A crash can undo the removal; the batch is then sent once more and the receiver dedupes by
    /// id.
    pub(crate) fn remove(&self, key: u64) -> Result<(), Error> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Eventual);
        tx.open_table(PENDING)?.remove(key)?;
        tx.commit()?;
        Ok(())
    }

    /// Moves a pending batch to the dead-letter list, one record per event. Returns the number of
    /// events moved (0 if the batch was gone).
    ///
    /// Each dead record keeps the batch's URL and headers, so replay sends the event where it was
    /// meant to go even after the target was reconfigured.
    pub(crate) fn bury(
        &self,
        key: u64,
        attempts: u32,
        last_error: &str,
        now_ms: u64,
    ) -> Result<usize, Error> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Eventual);
        let moved = {
            let mut pending = tx.open_table(PENDING)?;
            let Some(bytes) = pending.remove(key)? else {
                return Ok(0);
            };
            let batch: StoredBatch = decode(key, bytes.value())?;
            drop(bytes);
            let mut dead = tx.open_table(DEAD)?;
            for event in &batch.events {
                let record = DeadRecord {
                    app_id: batch.app_id.clone(),
                    url: batch.url.clone(),
                    headers: batch.headers.clone(),
                    event: event.clone(),
                    attempts,
                    last_error: last_error.to_owned(),
                    created_ms: batch.created_ms,
                    dead_lettered_ms: now_ms,
                };
                dead.insert(self.key(), encode(&record).as_slice())?;
            }
            batch.events.len()
        };
        self.save_next_key(&tx)?;
        tx.commit()?;
        Ok(moved)
    }

    /// Every pending batch, oldest first, without its events: what a restart must resume.
    /// Reads every batch in full to summarise it; done once per start.
    pub(crate) fn pending(&self) -> Result<Vec<PendingSummary>, Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(PENDING)?;
        let mut out = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
        for entry in table.iter()? {
            let (key, value) = entry?;
            let key = key.value();
            let batch: StoredBatch = decode(key, value.value())?;
            out.push(PendingSummary {
                key,
                app_id: batch.app_id,
                url: batch.url,
                events: batch.events.len(),
            });
        }
        Ok(out)
    }

    /// Pending event deliveries of one app (every target), for the CLI and tests.
    pub fn pending_events(&self, app_id: &str) -> Result<usize, Error> {
        Ok(self
            .pending()?
            .iter()
            .filter(|p| p.app_id == app_id)
            .map(|p| p.events)
            .sum())
    }

    /// The dead letters of one app, oldest first.
    pub fn dead_letters(&self, app_id: &str) -> Result<Vec<DeadLetter>, Error> {
        dead_letters(&self.db.begin_read()?, app_id)
    }

    /// Moves dead letters of `app_id` back to the pending table: those whose id is in `ids`, or all
    /// of them with `None`. Events keep their ids, so a receiver that did get one after all can
    /// still dedupe. Returns the new pending batches (at most `batch_max` events each, grouped by
    /// target) so a running service can send them at once; a stopped one sends them at its next
    /// start.
    pub(crate) fn replay_batches(
        &self,
        app_id: &str,
        ids: Option<&[String]>,
        batch_max: usize,
        now_ms: u64,
    ) -> Result<Vec<(u64, StoredBatch)>, Error> {
        let wanted: Option<HashSet<&str>> = ids.map(|ids| ids.iter().map(String::as_str).collect());
        let tx = self.db.begin_write()?;
        let mut batches = Vec::new();
        {
            let mut dead = tx.open_table(DEAD)?;
            let mut groups: BTreeMap<(String, BTreeMap<String, String>), Vec<StoredEvent>> =
                BTreeMap::new();
            let mut keys = Vec::new();
            for entry in dead.iter()? {
                let (key, value) = entry?;
                let record: DeadRecord = decode(key.value(), value.value())?;
                let selected = wanted
                    .as_ref()
                    .is_none_or(|w| w.contains(record.event.id.as_str()));
                if record.app_id == app_id && selected {
                    keys.push(key.value());
                    groups
                        .entry((record.url, record.headers))
                        .or_default()
                        .push(record.event);
                }
            }
            for key in keys {
                dead.remove(key)?;
            }
            let mut pending = tx.open_table(PENDING)?;
            for ((url, headers), events) in groups {
                for chunk in events.chunks(batch_max.max(1)) {
                    let batch = StoredBatch {
                        app_id: app_id.to_owned(),
                        url: url.clone(),
                        headers: headers.clone(),
                        created_ms: now_ms,
                        events: chunk.to_vec(),
                    };
                    let key = self.key();
                    pending.insert(key, encode(&batch).as_slice())?;
                    batches.push((key, batch));
                }
            }
        }
        self.save_next_key(&tx)?;
        tx.commit()?;
        Ok(batches)
    }

    /// Offline replay (the broker is stopped): moves the selected dead letters back to pending, to
    /// be sent at the next start. Returns the number of events moved.
    pub fn replay(
        &self,
        app_id: &str,
        ids: Option<&[String]>,
        batch_max: usize,
    ) -> Result<usize, Error> {
        let batches = self.replay_batches(app_id, ids, batch_max, crate::event::unix_ms())?;
        Ok(batches.iter().map(|(_, b)| b.events.len()).sum())
    }

    /// Deletes dead letters of `app_id` for good: those whose id is in `ids`, or all with `None`.
    /// Returns the number deleted.
    /// Fsynced, unlike removals after delivery: a purge is an operator's decision that must not
    /// come back after a crash.
    pub fn purge(&self, app_id: &str, ids: Option<&[String]>) -> Result<usize, Error> {
        let wanted: Option<HashSet<&str>> = ids.map(|ids| ids.iter().map(String::as_str).collect());
        let tx = self.db.begin_write()?;
        let removed = {
            let mut dead = tx.open_table(DEAD)?;
            let mut keys = Vec::new();
            for entry in dead.iter()? {
                let (key, value) = entry?;
                let record: DeadRecord = decode(key.value(), value.value())?;
                let selected = wanted
                    .as_ref()
                    .is_none_or(|w| w.contains(record.event.id.as_str()));
                if record.app_id == app_id && selected {
                    keys.push(key.value());
                }
            }
            for key in &keys {
                dead.remove(*key)?;
            }
            keys.len()
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Makes every earlier commit durable (removals and moves are not fsynced on their own).
    /// An empty write transaction with the default durability fsyncs everything committed before
    /// it.
    pub fn sync(&self) -> Result<(), Error> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }
}

/// The spool file in `data_dir`, when both exist.
pub(crate) fn existing_file(data_dir: &Path) -> Result<PathBuf, Error> {
    if !data_dir.is_dir() {
        return Err(Error::NoDataDir {
            path: data_dir.to_owned(),
        });
    }
    let file = data_dir.join(SPOOL_FILE);
    if !file.is_file() {
        return Err(Error::NoSpool {
            path: data_dir.to_owned(),
        });
    }
    Ok(file)
}

/// Opens `table` for reading; a table that was never created reads as `None` (a spool written
/// before that table existed, or opened read-only before its first start finished).
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, Error> {
    match tx.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The dead letters of one app in `tx`, oldest first.
pub(crate) fn dead_letters(tx: &ReadTransaction, app_id: &str) -> Result<Vec<DeadLetter>, Error> {
    let Some(table) = read_table(tx, DEAD)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        let record: DeadRecord = decode(key.value(), value.value())?;
        if record.app_id != app_id {
            continue;
        }
        let event = serde_json::from_str(&record.event.json).map_err(|source| Error::Record {
            key: key.value(),
            source,
        })?;
        out.push(DeadLetter {
            id: record.event.id,
            app_id: record.app_id,
            url: record.url,
            event,
            attempts: record.attempts,
            last_error: record.last_error,
            created_ms: record.created_ms,
            dead_lettered_ms: record.dead_lettered_ms,
        });
    }
    Ok(out)
}

/// Every app id of a pending batch or a dead letter in `tx`.
pub(crate) fn app_ids(tx: &ReadTransaction) -> Result<BTreeSet<String>, Error> {
    /// Only the app id of a record, whichever table it is in.
    #[derive(Deserialize)]
    struct AppOnly {
        app_id: String,
    }
    let mut out = BTreeSet::new();
    for table in [PENDING, DEAD] {
        let Some(table) = read_table(tx, table)? else {
            continue;
        };
        for entry in table.iter()? {
            let (key, value) = entry?;
            out.insert(decode::<AppOnly>(key.value(), value.value())?.app_id);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(app: &str, url: &str, ids: &[&str]) -> StoredBatch {
        StoredBatch {
            app_id: app.into(),
            url: url.into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer t".into())]),
            created_ms: 1,
            events: ids
                .iter()
                .map(|id| StoredEvent {
                    id: (*id).into(),
                    json: format!(r#"{{"name":"cache_miss","channel":"c","id":"{id}"}}"#),
                })
                .collect(),
        }
    }

    /// The durability promise itself: what was spooled is pending after a reopen, and keys never
    /// repeat, so a key in an old log line still names one batch.
    #[test]
    fn batches_survive_reopen_and_keys_keep_growing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = {
            let spool = Spool::open(dir.path()).expect("open");
            let keys = spool
                .insert(&[
                    batch("1", "http://a/", &["e1", "e2"]),
                    batch("2", "http://b/", &["e3"]),
                ])
                .expect("insert");
            spool.remove(keys[1]).expect("remove");
            keys
        };
        let spool = Spool::open(dir.path()).expect("reopen");
        let pending = spool.pending().expect("scan");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].key, keys[0]);
        assert_eq!(
            spool.get(keys[0]).expect("get"),
            Some(batch("1", "http://a/", &["e1", "e2"]))
        );
        assert_eq!(spool.get(keys[1]).expect("get"), None);
        let next = spool
            .insert(&[batch("1", "http://a/", &["e4"])])
            .expect("insert");
        assert!(next[0] > keys[1], "keys are never reused");
        assert!(Spool::open(dir.path()).is_err(), "one process at a time");
    }

    /// The dead-letter life cycle an operator drives: bury splits a batch into events, replay by id
    /// moves only those back, purge deletes for good.
    #[test]
    fn bury_replay_and_purge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let keys = spool
            .insert(&[
                batch("1", "http://a/", &["e1", "e2", "e3"]),
                batch("2", "http://a/", &["x"]),
            ])
            .expect("insert");
        assert_eq!(spool.bury(keys[0], 4, "HTTP 500", 99).expect("bury"), 3);
        assert_eq!(
            spool.bury(keys[0], 4, "HTTP 500", 99).expect("bury again"),
            0
        );
        assert_eq!(spool.bury(keys[1], 1, "refused", 99).expect("bury"), 1);
        let dead = spool.dead_letters("1").expect("list");
        assert_eq!(dead.len(), 3);
        assert_eq!(dead[0].id, "e1");
        assert_eq!(dead[0].event["channel"], "c");
        assert_eq!(
            (dead[0].attempts, dead[0].last_error.as_str()),
            (4, "HTTP 500")
        );
        assert_eq!(spool.pending_events("1").expect("count"), 0);

        let replayed = spool
            .replay_batches("1", Some(&["e1".into(), "e3".into()]), 1, 100)
            .expect("replay");
        assert_eq!(replayed.len(), 2, "batch_max 1 splits them");
        assert_eq!(
            replayed[0].1.headers["Authorization"], "Bearer t",
            "headers kept"
        );
        assert_eq!(spool.pending_events("1").expect("count"), 2);
        assert_eq!(spool.dead_letters("1").expect("list").len(), 1);

        assert_eq!(spool.purge("1", None).expect("purge"), 1);
        assert!(spool.dead_letters("1").expect("list").is_empty());
        assert_eq!(
            spool.dead_letters("2").expect("list").len(),
            1,
            "other apps untouched"
        );
        assert_eq!(spool.replay("2", None, 20).expect("offline replay"), 1);
        assert_eq!(spool.pending_events("2").expect("count"), 1);
        spool.sync().expect("sync");
    }
}

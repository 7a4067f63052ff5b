//! The change feed: a snapshot kept current from a database's change signal, with a state the caller
//! can read for logs and metrics.
//!
//! One task per feed. It follows the backend's wake-ups (PostgreSQL `NOTIFY`, MySQL polling), reloads
//! the apps they name, and emits [`Change::Upsert`] / [`Change::Delete`] only for real changes (by
//! revision), into a bounded queue. A full refresh runs every `refresh_interval` as the fallback for
//! anything a signal missed. When the database is lost the feed keeps its snapshot, reports
//! [`FeedState::Down`], reconnects with backoff and resyncs (emitting the differences). A consumer
//! that falls behind the queue gets one [`Change::Resync`] with the whole snapshot once it catches
//! up, instead of a blocked feed: the feed never awaits its consumer's progress on a change. This
//! module must never run SQL itself; the backends do, through `Source`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::error::StoreError;
use crate::record::AppRecord;
use crate::store::{Rejected, Snapshot};

/// One change to the catalogue, as the broker applies it.
///
/// A consumer applies changes in the order received. An `Upsert` is emitted only when the app's
/// revision differs from the one the feed last emitted for it, so repeated signals and the periodic
/// refresh do not repeat changes.
#[derive(Debug, Clone)]
pub enum Change {
    /// An app was created or changed: serve this version from now on.
    Upsert(Arc<AppRecord>),
    /// An app was deleted: close its sockets with 4001 and forget it.
    Delete {
        /// The deleted app's id.
        id: String,
    },
    /// The consumer fell behind and changes were dropped: replace the whole view with this one.
    Resync(Snapshot),
}

/// Whether the feed is following the database.
///
/// The feed never stops serving on its own: while `Down`, [`ChangeFeed::snapshot`] returns the last
/// good view, so a broker keeps accepting sockets for the apps it knows during a database outage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedState {
    /// Following: changes arrive within a second.
    Up,
    /// The database is unreachable: the last snapshot is kept and served, and the feed reconnects.
    Down {
        /// When the feed went down.
        since: SystemTime,
        /// Why, for the log (never a secret: database errors do not carry credentials).
        reason: String,
    },
}

/// Timings and sizes of a feed. The defaults suit a broker: changes within a second, a full
/// refresh every 30 s, reconnects from 100 ms up to 5 s apart.
///
/// Intervals below [`MIN_INTERVAL`] are raised to it, and a zero capacity to one.
///
/// The capacity bounds memory, not correctness: a consumer that falls behind gets one `Resync`
/// instead of the changes it missed, so no change is lost, only coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedOptions {
    /// Time between full refreshes, the fallback for a missed signal.
    pub refresh_interval: Duration,
    /// Time between two polls where the database has no notifications (MySQL); 500 ms keeps
    /// changes well within a second at one indexed query per poll.
    pub poll_interval: Duration,
    /// First delay before a reconnect; doubled after each failure.
    pub reconnect_min: Duration,
    /// Longest delay between two reconnects.
    pub reconnect_max: Duration,
    /// Changes the queue holds before the consumer counts as behind and gets a resync.
    pub capacity: usize,
}

/// The shortest interval a feed accepts for its refresh and its polls: a zero interval would spin.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

impl FeedOptions {
    /// The options with every interval at least [`MIN_INTERVAL`] and a queue of at least one.
    /// Applied once in `ChangeFeed::start`, so the loop can use the options without checking them.
    pub(crate) fn sane(self) -> Self {
        Self {
            refresh_interval: self.refresh_interval.max(MIN_INTERVAL),
            poll_interval: self.poll_interval.max(MIN_INTERVAL),
            reconnect_min: self.reconnect_min.max(MIN_INTERVAL),
            reconnect_max: self.reconnect_max.max(self.reconnect_min).max(MIN_INTERVAL),
            capacity: self.capacity.max(1),
        }
    }
}

impl Default for FeedOptions {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            capacity: 1_024,
        }
    }
}

/// What a backend's change signal says.
#[derive(Debug)]
pub(crate) enum Wake {
    /// These apps changed (or were deleted) up to catalogue revision `revision`: reload them.
    Ids {
        /// The apps to reload.
        ids: Vec<String>,
        /// The revision of the last change named (0 when unknown).
        revision: u64,
    },
    /// Something changed that the signal cannot name: reload everything.
    Everything,
    /// The signal's connection is lost.
    Lost(StoreError),
}

/// A backend's change signal, running in its own task; dropping it stops the task.
/// The backend owns how it learns of changes (a `LISTEN` connection, a polling loop); the feed only
/// reads wake-ups, so both databases share one feed loop.
pub(crate) struct Signal {
    /// Wake-ups; a closed channel counts as a lost connection.
    pub wakes: mpsc::Receiver<Wake>,
    /// The task that produces them.
    pub task: JoinHandle<()>,
}

impl Drop for Signal {
    /// Aborting the task also drops its database connection, so a replaced signal never lingers and
    /// holds a connection slot.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a loaded id turned out to be.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// The app's current row.
    Found(Box<AppRecord>),
    /// No row: the app was deleted.
    Missing,
    /// A row that cannot be served.
    Bad(String),
}

/// What a backend gives the feed: a change signal and the reads it triggers.
/// Implemented by each backend over its pool. The feed calls only these four methods, which keeps
/// the SQL (and its dialect) out of this module and makes the feed testable over a fake source.
pub(crate) trait Source: Send + Sync + 'static {
    /// The part of the signal set up before the snapshot is read (PostgreSQL's `LISTEN`), so that no
    /// change between the two is missed.
    type Listening: Send;

    /// Sets up the signal's connection.
    fn listen(&self) -> impl Future<Output = Result<Self::Listening, StoreError>> + Send;

    /// Starts the signal after a snapshot at `revision`.
    fn follow(&self, listening: Self::Listening, revision: u64, options: FeedOptions) -> Signal;

    /// Every app, in one transaction.
    fn load_all(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;

    /// The current rows of these ids.
    fn load(
        &self,
        ids: Vec<String>,
    ) -> impl Future<Output = Result<Vec<(String, Loaded)>, StoreError>> + Send;
}

/// The view a feed keeps and shares with its handle.
/// Written only by the feed's task; read by the handle for `snapshot()`. The lock is a short
/// `parking_lot` one, never held across an await.
#[derive(Debug, Default)]
struct View {
    /// Apps by id, as last emitted; `Arc` so an upsert shares one record with the consumer's index.
    apps: HashMap<String, Arc<AppRecord>>,
    /// The highest catalogue revision seen, from rows or from the signal (a delete leaves no row).
    revision: u64,
    /// Rows that could not be served, kept so the admin view can say why an app is missing.
    rejected: Vec<Rejected>,
}

impl View {
    /// Sorted by id, so two snapshots of the same view compare and print alike.
    fn snapshot(&self) -> Snapshot {
        let mut apps: Vec<Arc<AppRecord>> = self.apps.values().cloned().collect();
        apps.sort_by(|a, b| a.id.cmp(&b.id));
        Snapshot {
            revision: self.revision,
            apps,
            rejected: self.rejected.clone(),
        }
    }
}

/// The consumer's end of a feed: changes, the current snapshot and the feed's state.
/// Dropping it stops the feed's task.
#[derive(Debug)]
pub struct ChangeFeed {
    /// The bounded queue of changes (`capacity` long).
    changes: mpsc::Receiver<Change>,
    /// A watch, not a queue: readers only ever need the latest state.
    state: watch::Receiver<FeedState>,
    /// The feed task's view, shared so `snapshot()` answers without a round trip to the task.
    view: Arc<RwLock<View>>,
    /// The feed's task, aborted when the handle drops: a feed nobody reads must not keep a database
    /// connection open.
    task: JoinHandle<()>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChangeFeed {
    /// The next change; `None` only if the feed's task ended (it does not on its own).
    pub async fn recv(&mut self) -> Option<Change> {
        self.changes.recv().await
    }

    /// A change already queued, without waiting.
    pub fn try_recv(&mut self) -> Option<Change> {
        self.changes.try_recv().ok()
    }

    /// The feed's current view, kept while the database is down.
    pub fn snapshot(&self) -> Snapshot {
        self.view.read().snapshot()
    }

    /// Whether the feed is following the database now.
    pub fn state(&self) -> FeedState {
        self.state.borrow().clone()
    }

    /// A receiver that wakes on every state change, for logs and metrics.
    pub fn state_changes(&self) -> watch::Receiver<FeedState> {
        self.state.clone()
    }

    /// Reads the first snapshot and starts the feed's task over `source`.
    ///
    /// The signal is set up (`listen`) before the first snapshot is read, and followed from that
    /// snapshot's revision: a change committed between the two is then seen by the signal rather
    /// than lost. Fails if the database cannot be reached: a broker must not start on an empty
    /// catalogue it believes is complete.
    pub(crate) async fn start<S: Source>(
        source: S,
        options: FeedOptions,
    ) -> Result<Self, StoreError> {
        let options = options.sane();
        let (tx, changes) = mpsc::channel(options.capacity);
        let (state_tx, state) = watch::channel(FeedState::Up);
        let view = Arc::new(RwLock::new(View::default()));
        let feed = Feed {
            view: view.clone(),
            tx,
            state: state_tx,
            lagged: false,
        };
        // The first snapshot is the consumer's starting view (`snapshot()`), not a list of changes.
        let listening = source.listen().await?;
        let first = source.load_all().await?;
        let revision = first.revision;
        {
            let mut view = feed.view.write();
            view.revision = first.revision;
            view.apps = first.apps.into_iter().map(|a| (a.id.clone(), a)).collect();
            view.rejected = first.rejected;
        }
        let signal = source.follow(listening, revision, options);
        let task = tokio::spawn(feed.run(source, signal, options));
        Ok(Self {
            changes,
            state,
            view,
            task,
        })
    }
}

/// The feed's task state.
struct Feed {
    view: Arc<RwLock<View>>,
    /// Sent to with `try_send` only (see `emit`); its `closed()` tells the loop the handle is gone.
    tx: mpsc::Sender<Change>,
    state: watch::Sender<FeedState>,
    /// A change could not be queued; the consumer is owed a resync.
    lagged: bool,
}

impl Feed {
    /// The change feed loop: the feed's one task, from `start` until the handle drops.
    ///
    /// # The loop
    /// While connected, each turn waits for the first of: the handle dropping (`tx.closed()`, the
    /// only way out), a resync owed to a lagging consumer and a free slot to send it in, a wake-up
    /// from the signal (reload the named ids, or everything), or the refresh tick (a full reload,
    /// the fallback for a missed signal). Any database error drops the signal and marks the feed
    /// down. While disconnected, it sleeps the backoff (doubling up to `reconnect_max`, plus up to
    /// a fifth of jitter so a fleet of nodes does not reconnect in step), then tries `connect`,
    /// which resyncs and emits the differences. The snapshot is served throughout; nothing here
    /// awaits the consumer except the owed resync, and that only in a `select` beside everything
    /// else.
    async fn run<S: Source>(mut self, source: S, signal: Signal, options: FeedOptions) {
        let mut signal = Some(signal);
        let mut backoff = options.reconnect_min;
        let mut refresh = tokio::time::interval(options.refresh_interval);
        refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
        refresh.tick().await; // the first tick is immediate; the snapshot is fresh
        let resync_tx = self.tx.clone();
        loop {
            let Some(live) = signal.as_mut() else {
                let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 5);
                tokio::select! {
                    _ = self.tx.closed() => return,
                    _ = tokio::time::sleep(backoff + Duration::from_millis(jitter)) => {}
                }
                backoff = (backoff * 2).min(options.reconnect_max);
                match self.connect(&source, options).await {
                    Ok(s) => {
                        signal = Some(s);
                        backoff = options.reconnect_min;
                        refresh.reset();
                        self.set_state(FeedState::Up);
                        tracing::info!("app catalogue feed reconnected and resynced");
                    }
                    Err(e) => self.down(&e),
                }
                continue;
            };
            let result = tokio::select! {
                _ = self.tx.closed() => return,
                permit = resync_tx.reserve(), if self.lagged => {
                    if let Ok(permit) = permit {
                        permit.send(Change::Resync(self.view.read().snapshot()));
                        self.lagged = false;
                    }
                    Ok(())
                }
                wake = live.wakes.recv() => match wake {
                    Some(Wake::Ids { ids, revision }) => self.reload(&source, ids, revision).await,
                    Some(Wake::Everything) => self.resync(&source).await,
                    Some(Wake::Lost(e)) => Err(e),
                    None => Err(StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the change signal ended",
                    )))),
                },
                _ = refresh.tick() => self.resync(&source).await,
            };
            if let Err(e) = result {
                signal = None;
                self.down(&e);
            }
        }
    }

    /// Sets up the signal, reads a snapshot, applies it, and starts the signal from its revision.
    async fn connect<S: Source>(
        &mut self,
        source: &S,
        options: FeedOptions,
    ) -> Result<Signal, StoreError> {
        let listening = source.listen().await?;
        let snapshot = source.load_all().await?;
        let revision = snapshot.revision;
        self.apply_snapshot(snapshot);
        Ok(source.follow(listening, revision, options))
    }

    /// A full reload compared with the view; emits only the differences.
    async fn resync<S: Source>(&mut self, source: &S) -> Result<(), StoreError> {
        let snapshot = source.load_all().await?;
        self.apply_snapshot(snapshot);
        Ok(())
    }

    /// Reloads the apps a wake-up named. A row that no longer validates keeps the last good version
    /// in service: a bad admin write must not take a live app offline.
    async fn reload<S: Source>(
        &mut self,
        source: &S,
        ids: Vec<String>,
        revision: u64,
    ) -> Result<(), StoreError> {
        let loaded = source.load(ids).await?;
        // A delete leaves no row to take a revision from: the signal's own counts.
        {
            let mut view = self.view.write();
            view.revision = view.revision.max(revision);
        }
        for (id, loaded) in loaded {
            match loaded {
                Loaded::Found(record) => self.upsert(*record),
                Loaded::Missing => self.remove(&id),
                Loaded::Bad(reason) => {
                    tracing::warn!(app = %id, %reason, "app row cannot be served; keeping its last good version");
                }
            }
        }
        Ok(())
    }

    /// Applies a full snapshot: upserts what is new or newer, deletes what is gone. Rejected rows
    /// keep their last good version.
    fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let mut changes = Vec::new();
        {
            let mut view = self.view.write();
            let mut seen: HashMap<&str, ()> = HashMap::new();
            for app in &snapshot.apps {
                seen.insert(&app.id, ());
                let newer = view
                    .apps
                    .get(&app.id)
                    .is_none_or(|held| held.revision != app.revision);
                if newer {
                    view.apps.insert(app.id.clone(), app.clone());
                    changes.push(Change::Upsert(app.clone()));
                }
            }
            for r in &snapshot.rejected {
                seen.insert(&r.id, ());
                tracing::warn!(app = %r.id, reason = %r.reason, "app row cannot be served; keeping its last good version");
            }
            let gone: Vec<String> = view
                .apps
                .keys()
                .filter(|id| !seen.contains_key(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                view.apps.remove(&id);
                changes.push(Change::Delete { id });
            }
            view.revision = view.revision.max(snapshot.revision);
            view.rejected = snapshot.rejected;
        }
        for change in changes {
            self.emit(change);
        }
    }

    /// Applies one app unless the view already holds this revision or a newer one: wake-ups and
    /// refreshes can race, and an older row must never replace a newer one.
    fn upsert(&mut self, record: AppRecord) {
        let record = Arc::new(record);
        {
            let mut view = self.view.write();
            if view
                .apps
                .get(&record.id)
                .is_some_and(|held| held.revision >= record.revision)
            {
                return;
            }
            view.revision = view.revision.max(record.revision);
            view.rejected.retain(|r| r.id != record.id);
            view.apps.insert(record.id.clone(), record.clone());
        }
        self.emit(Change::Upsert(record));
    }

    /// Forgets a deleted app and emits a `Delete` only if the view had it, so a repeated signal is
    /// harmless.
    fn remove(&mut self, id: &str) {
        let removed = {
            let mut view = self.view.write();
            view.rejected.retain(|r| r.id != id);
            view.apps.remove(id).is_some()
        };
        if removed {
            self.emit(Change::Delete { id: id.to_owned() });
        }
    }

    /// Queues a change without waiting; a full queue marks the consumer as owed a resync, which
    /// then replaces every change until it is delivered.
    fn emit(&mut self, change: Change) {
        if self.lagged {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(change) {
            tracing::warn!("app catalogue consumer fell behind; it will get a full resync");
            self.lagged = true;
        }
    }

    /// Marks the feed down. Logs at warn on the transition only; every retry after is debug, so an
    /// outage of hours writes one warning, not thousands.
    fn down(&mut self, error: &StoreError) {
        let was_up = matches!(*self.state.borrow(), FeedState::Up);
        if was_up {
            tracing::warn!(%error, "app catalogue unreachable; serving the last snapshot and reconnecting");
            self.set_state(FeedState::Down {
                since: SystemTime::now(),
                reason: error.to_string(),
            });
        } else {
            tracing::debug!(%error, "app catalogue still unreachable");
        }
    }

    /// `send_replace` so the state is stored even while no receiver is waiting.
    fn set_state(&self, state: FeedState) {
        self.state.send_replace(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zero interval from a config would make the loop spin on a ready timer; `sane` must prevent
    /// it.
    #[test]
    fn zero_options_are_raised() {
        let zero = FeedOptions {
            refresh_interval: Duration::ZERO,
            poll_interval: Duration::ZERO,
            reconnect_min: Duration::from_secs(2),
            reconnect_max: Duration::from_secs(1),
            capacity: 0,
        }
        .sane();
        assert_eq!(zero.refresh_interval, MIN_INTERVAL);
        assert_eq!(zero.poll_interval, MIN_INTERVAL);
        assert_eq!(zero.reconnect_max, Duration::from_secs(2));
        assert_eq!(zero.capacity, 1);
    }
}

//! The state the running tasks share: the apps with their credentials and counters, the HTTP
//! client, the spool, and one lane per receiver URL, created on first use.
//!
//! This module routes spooled batches to their lane and owns nothing else. It must never hold a
//! lock across an `.await`, and it must never be the only place a batch lives: every job it routes
//! is already in the spool.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vestnik_protocol::AppSecret;

use crate::config::{AppHooks, EventTypeSet, WebhookSettings, WebhookTarget};
use crate::lane::{run_lane, Job};
use crate::sender::HttpClient;
use crate::spool::Spool;
use crate::stats::AppCounters;

/// One configured app as the tasks see it. `Debug` hides the secret.
pub(crate) struct AppEntry {
    /// Position in the planner's app list.
    pub index: usize,
    /// The app id as configured; the key of `Shared::by_id` and of every spool record.
    pub app_id: String,
    /// The app key, sent as `X-Pusher-Key` so the receiver knows which secret verifies the
    /// signature.
    pub key: String,
    /// Signs each webhook body (`X-Pusher-Signature`, HMAC-SHA256 as Pusher does). Never logged.
    pub secret: AppSecret,
    /// Kinds `submit` accepts for this app (what targets want, plus hold partners).
    pub accepted: EventTypeSet,
    /// Shared with the planner and the stats view; an `Arc` so counting needs no lock on `Shared`.
    /// Kept across the app's changes (and a removal and return), so its figures never restart.
    pub counters: Arc<AppCounters>,
    /// The app's targets, for the planner.
    pub targets: Vec<Arc<WebhookTarget>>,
    /// The table generation this version of the app was set at (0: at start); the planner
    /// rebuilds the app's routes when it changes.
    pub version: u64,
}

impl std::fmt::Debug for AppEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppEntry")
            .field("app_id", &self.app_id)
            .field("key", &self.key)
            .field("secret", &"<hidden>")
            .finish_non_exhaustive()
    }
}

impl AppEntry {
    /// Builds the runtime view of one app at `index` in the planner's list, with `counters`
    /// (fresh at start: they are not persisted with the spool) and the table's `version`.
    pub(crate) fn new(
        index: usize,
        app: &AppHooks,
        counters: Arc<AppCounters>,
        version: u64,
    ) -> Self {
        Self {
            index,
            app_id: app.app_id.clone(),
            key: app.key.clone(),
            secret: app.secret.clone(),
            accepted: app.accepted_types(),
            counters,
            targets: app.targets.iter().cloned().map(Arc::new).collect(),
            version,
        }
    }
}

/// The apps with webhooks, changeable while the service runs. An app keeps its index for the
/// service's life (a removed app leaves an empty slot its return fills again), so the planner's
/// per-index state and the submissions in the queue never point at another app.
#[derive(Debug, Default)]
pub(crate) struct AppTable {
    /// By index; `None` once removed.
    entries: Vec<Option<Arc<AppEntry>>>,
    /// App id to index, removed apps included.
    by_id: HashMap<String, usize>,
    /// Index to app id, removed apps included.
    ids: Vec<String>,
    /// Counters by index, kept after a removal.
    counters: Vec<Arc<AppCounters>>,
}

/// Retry and concurrency rules of the lanes, from the settings.
/// Copied out of [`WebhookSettings`] once at start as `Duration`s, so the hot paths do no unit
/// conversion and the settings struct need not be shared.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// How long after its first attempt a batch is still retried before it becomes a dead letter.
    pub retry_window: Duration,
    /// The first backoff delay; it doubles per failed attempt.
    pub retry_initial: Duration,
    /// The cap on one backoff delay, so a long outage still retries at a steady rate.
    pub retry_max: Duration,
    /// The limit on one HTTP attempt, so a receiver that never answers cannot hold a lane slot
    /// forever.
    pub request_timeout: Duration,
    /// Attempts one lane (one receiver URL) runs at once.
    pub max_in_flight: usize,
}

impl From<&WebhookSettings> for Timing {
    fn from(s: &WebhookSettings) -> Self {
        Self {
            retry_window: Duration::from_secs(s.retry_window_secs),
            retry_initial: Duration::from_millis(s.retry_initial_ms),
            retry_max: Duration::from_millis(s.retry_max_ms),
            request_timeout: Duration::from_millis(s.request_timeout_ms),
            max_in_flight: s.max_in_flight,
        }
    }
}

/// Everything the intake, the lanes and the admin calls share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The apps with webhooks, by index and id; read on every submit (a read lock and a hash
    /// lookup), written when an app is set or removed.
    apps: RwLock<AppTable>,
    /// Raised by every change of `apps`, so the intake's planner notices changes with one load.
    generation: AtomicU64,
    /// One pooled HTTP client for every lane, so connections to a receiver are reused.
    pub client: HttpClient,
    pub timing: Timing,
    /// Tracks the intake, the lanes, their attempts and blocking spool work, so shutdown can wait
    /// for all of them before the spool is closed.
    pub tracker: TaskTracker,
    /// The one signal every task of this crate selects on.
    pub shutdown: CancellationToken,
    /// The runtime the service was started on: `dispatch` can be called from a blocking thread
    /// (replay from the admin API), where there is no ambient runtime to spawn a lane on.
    runtime: Handle,
    /// `None` once the service has stopped, so the file is closed even while handles live on.
    spool: RwLock<Option<Arc<Spool>>>,
    /// Lanes by receiver URL. Several targets (even of several apps) with one URL share a lane, so
    /// `max_in_flight` bounds what one receiver sees.
    lanes: Mutex<HashMap<Arc<str>, mpsc::UnboundedSender<Job>>>,
}

impl Shared {
    /// Builds the shared state; the lanes map starts empty and fills as URLs are first dispatched
    /// to.
    #[allow(clippy::too_many_arguments)] // a constructor of plain fields, called once
    pub(crate) fn new(
        apps: Vec<Arc<AppEntry>>,
        client: HttpClient,
        timing: Timing,
        tracker: TaskTracker,
        shutdown: CancellationToken,
        runtime: Handle,
        spool: Arc<Spool>,
    ) -> Self {
        let table = AppTable {
            by_id: apps.iter().map(|a| (a.app_id.clone(), a.index)).collect(),
            ids: apps.iter().map(|a| a.app_id.clone()).collect(),
            counters: apps.iter().map(|a| Arc::clone(&a.counters)).collect(),
            entries: apps.into_iter().map(Some).collect(),
        };
        Self {
            apps: RwLock::new(table),
            generation: AtomicU64::new(0),
            client,
            timing,
            tracker,
            shutdown,
            runtime,
            spool: RwLock::new(Some(spool)),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// The app with this id, if it has webhooks now.
    pub(crate) fn app(&self, app_id: &str) -> Option<Arc<AppEntry>> {
        let table = self.apps.read();
        let index = *table.by_id.get(app_id)?;
        table.entries[index].clone()
    }

    /// The app at `index`, if it has webhooks now.
    pub(crate) fn app_at(&self, index: usize) -> Option<Arc<AppEntry>> {
        self.apps.read().entries.get(index).cloned().flatten()
    }

    /// The id of the app at `index` (also after its removal, for batches it left).
    pub(crate) fn app_id_at(&self, index: usize) -> Option<String> {
        self.apps.read().ids.get(index).cloned()
    }

    /// Every app with webhooks now, by index.
    pub(crate) fn apps(&self) -> Vec<Arc<AppEntry>> {
        self.apps.read().entries.iter().flatten().cloned().collect()
    }

    /// How many indexes the table has given out (removed apps included).
    pub(crate) fn app_slots(&self) -> usize {
        self.apps.read().entries.len()
    }

    /// The table's generation: changes whenever an app is set or removed.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Sets the app's key, secret and targets (a new app, or a change: a rotation signs with the
    /// new secret from the next attempt on). Keeps its index and counters.
    pub(crate) fn set_app(&self, app: &AppHooks) {
        let mut table = self.apps.write();
        let version = self.generation.load(Ordering::Relaxed) + 1;
        let index = match table.by_id.get(&app.app_id) {
            Some(&i) => i,
            None => {
                let i = table.entries.len();
                table.entries.push(None);
                table.counters.push(Arc::new(AppCounters::default()));
                table.by_id.insert(app.app_id.clone(), i);
                table.ids.push(app.app_id.clone());
                i
            }
        };
        let counters = Arc::clone(&table.counters[index]);
        table.entries[index] = Some(Arc::new(AppEntry::new(index, app, counters, version)));
        self.generation.store(version, Ordering::Release);
    }

    /// Stops the app's webhooks: new events are ignored; what its targets still had to send is
    /// dead-lettered when a lane reaches it. Returns whether it had webhooks.
    pub(crate) fn remove_app(&self, app_id: &str) -> bool {
        let mut table = self.apps.write();
        let Some(&index) = table.by_id.get(app_id) else {
            return false;
        };
        if table.entries[index].take().is_none() {
            return false;
        }
        let version = self.generation.load(Ordering::Relaxed) + 1;
        self.generation.store(version, Ordering::Release);
        true
    }

    /// The open spool, or `None` after shutdown.
    pub(crate) fn spool(&self) -> Option<Arc<Spool>> {
        self.spool.read().clone()
    }

    /// Closes the spool for good (the last step of shutdown) and returns it for a final sync.
    pub(crate) fn close_spool(&self) -> Option<Arc<Spool>> {
        self.spool.write().take()
    }

    /// Hands a spooled batch to the lane of its URL, starting the lane if needed. After shutdown
    /// the job is left alone: the spool still has it for the next start.
    ///
    /// A lane whose queue is closed (its task ended) is replaced by a new one, so a job is never
    /// lost to a dead lane. The lock is held only to look up or insert the sender, never across an
    /// await.
    pub(crate) fn dispatch(self: &Arc<Self>, url: &str, job: Job) {
        if self.shutdown.is_cancelled() {
            return;
        }
        let mut lanes = self.lanes.lock();
        let job = match lanes.get(url) {
            Some(lane) => match lane.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let url: Arc<str> = Arc::from(url);
        let (tx, rx) = mpsc::unbounded_channel();
        // The lane's queue only holds keys of spooled batches, so its length is bounded by the spool.
        tx.send(job).expect("the receiver is alive: we hold it");
        lanes.insert(Arc::clone(&url), tx);
        drop(lanes);
        self.tracker
            .spawn_on(run_lane(url, rx, Arc::clone(self)), &self.runtime);
    }
}

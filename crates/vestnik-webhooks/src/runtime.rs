//! The state the running tasks share: the apps with their credentials and counters, the HTTP
//! client, the spool, and one lane per receiver URL, created on first use.
//!
//! This module routes spooled batches to their lane and owns nothing else. It must never hold a
//! lock across an `.await`, and it must never be the only place a batch lives: every job it routes
//! is already in the spool.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use vestnik_protocol::AppSecret;

use crate::config::{AppHooks, EventTypeSet, WebhookSettings};
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
    pub counters: Arc<AppCounters>,
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
    /// Builds the runtime view of one configured app at `index` in the planner's list; the counters
    /// start at zero on every start (they are not persisted with the spool).
    pub(crate) fn new(index: usize, app: &AppHooks) -> Self {
        Self {
            index,
            app_id: app.app_id.clone(),
            key: app.key.clone(),
            secret: app.secret.clone(),
            accepted: app.accepted_types(),
            counters: Arc::new(AppCounters::default()),
        }
    }
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
    /// The configured apps in the order the planner uses; fixed for the service's life.
    pub apps: Vec<Arc<AppEntry>>,
    /// App id to index in `apps`, for spool records and admin calls that name an app by id.
    pub by_id: HashMap<String, usize>,
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
        let by_id = apps.iter().map(|a| (a.app_id.clone(), a.index)).collect();
        Self {
            apps,
            by_id,
            client,
            timing,
            tracker,
            shutdown,
            runtime,
            spool: RwLock::new(Some(spool)),
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// The app with this id, if it is configured.
    pub(crate) fn app(&self, app_id: &str) -> Option<&Arc<AppEntry>> {
        self.by_id.get(app_id).map(|&i| &self.apps[i])
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

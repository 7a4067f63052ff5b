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
    pub app_id: String,
    pub key: String,
    pub secret: AppSecret,
    /// Kinds `submit` accepts for this app (what targets want, plus hold partners).
    pub accepted: EventTypeSet,
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
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub retry_window: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub request_timeout: Duration,
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
    pub apps: Vec<Arc<AppEntry>>,
    pub by_id: HashMap<String, usize>,
    pub client: HttpClient,
    pub timing: Timing,
    pub tracker: TaskTracker,
    pub shutdown: CancellationToken,
    runtime: Handle,
    /// `None` once the service has stopped, so the file is closed even while handles live on.
    spool: RwLock<Option<Arc<Spool>>>,
    /// Lanes by receiver URL. Several targets (even of several apps) with one URL share a lane, so
    /// `max_in_flight` bounds what one receiver sees.
    lanes: Mutex<HashMap<Arc<str>, mpsc::UnboundedSender<Job>>>,
}

impl Shared {
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

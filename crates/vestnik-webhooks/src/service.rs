//! [`Webhooks`], the handle the broker and the admin edges hold: `start` opens the spool, resumes
//! what a previous run left pending and spawns the tasks; `submit` queues an event without ever
//! blocking; the admin calls list, replay and purge dead letters.
//!
//! `submit` is called from the broker's synchronous code, possibly under its locks and outside any
//! async context, so it must never block, await, allocate much or log per event. When the queue is
//! full the event is dropped, counted in `dropped` and logged at error level at most once a second:
//! blocking would stall publishing for every app because one receiver is slow, and an unbounded
//! queue would turn an outage into an out-of-memory crash.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AppHooks, EventType, WebhookSettings};
use crate::error::Error;
use crate::event::{unix_ms, WebhookEvent};
use crate::intake::{run_intake, Submission};
use crate::lane::Job;
use crate::plan::{PlanRules, Planner};
use crate::runtime::{AppEntry, Shared, Timing};
use crate::sender;
use crate::spool::{DeadLetter, Spool};
use crate::stats::AppWebhookStats;

/// At most one "dropped" log line per this many milliseconds, however many events are dropped.
const DROP_LOG_INTERVAL_MS: u64 = 1_000;

/// The webhook service. Cheap to clone; every clone talks to the same tasks and spool.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// One allocation shared by every clone, so the broker can hand a clone to each app cheaply.
    inner: Arc<Inner>,
}

/// What the handle's clones share.
#[derive(Debug)]
struct Inner {
    /// The state the tasks use too; the handle reads apps and the spool through it.
    shared: Arc<Shared>,
    /// The bounded queue into the intake task (`queue_capacity` long); `submit` only ever
    /// `try_send`s.
    tx: mpsc::Sender<Submission>,
    /// Kept for replay, which cuts dead letters into batches of this size again.
    batch_max: usize,
    /// Unix ms of the last "events lost" log line, shared by every app, so a flood of drops logs
    /// once a second in total rather than once per event.
    drop_logged_ms: AtomicU64,
}

impl Webhooks {
    /// Validates the config, opens the spool under `settings.data_dir`, resumes every batch a
    /// previous run left pending, and starts delivering.
    ///
    /// Must be called inside a Tokio runtime. It does blocking disk IO (opening and scanning the
    /// spool), which is fine once at startup. The returned task finishes after `shutdown` is
    /// cancelled and every held or batching event is spooled; it closes the spool file. Cancel
    /// `shutdown` only after the broker has stopped submitting (after its drain), or the vacates
    /// of the last sockets are dropped.
    ///
    /// Order matters here: pending batches are dispatched before the intake starts, so work left by
    /// the previous run goes out ahead of new events. A supervisor task, the returned handle, waits
    /// for `shutdown`, then for every tracked task (the intake's final spool, the lanes, blocking
    /// spool work), and only then closes and syncs the spool, so no task writes to a closed file.
    pub fn start(
        apps: Vec<AppHooks>,
        settings: WebhookSettings,
        shutdown: CancellationToken,
    ) -> Result<(Webhooks, JoinHandle<()>), Error> {
        settings.validate()?;
        let mut seen = std::collections::HashSet::new();
        for app in &apps {
            app.validate()?;
            if !seen.insert(app.app_id.as_str()) {
                return Err(Error::Config(format!(
                    "app {:?} is listed twice",
                    app.app_id
                )));
            }
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let timing = Timing::from(&settings);
        let client = sender::client(timing.request_timeout, timing.max_in_flight)?;
        let spool = Arc::new(Spool::open(&settings.data_dir)?);
        let pending = spool.pending()?;

        let entries: Vec<Arc<AppEntry>> = apps
            .iter()
            .enumerate()
            .map(|(i, app)| Arc::new(AppEntry::new(i, app, Arc::default(), 0)))
            .collect();
        let counters: Vec<_> = entries.iter().map(|e| Arc::clone(&e.counters)).collect();
        let rules = PlanRules {
            hold: Duration::from_millis(settings.hold_ms),
            batch_window: Duration::from_millis(settings.batch_ms),
            batch_max: settings.batch_max,
        };
        let planner = Planner::new(&apps, &counters, rules);
        let tracker = TaskTracker::new();
        let shared = Arc::new(Shared::new(
            entries,
            client,
            timing,
            tracker.clone(),
            shutdown.clone(),
            runtime,
            spool,
        ));

        if !pending.is_empty() {
            let events: usize = pending.iter().map(|p| p.events).sum();
            tracing::info!(
                batches = pending.len(),
                events,
                "resuming webhook deliveries left pending by the previous run"
            );
        }
        for p in pending {
            if let Some(app) = shared.app(&p.app_id) {
                app.counters
                    .spooled(u64::try_from(p.events).unwrap_or(u64::MAX));
            }
            shared.dispatch(&p.url, Job::new(p.key, &p.app_id, p.events, None));
        }

        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        tracker.spawn(run_intake(Arc::clone(&shared), rx, planner));

        let supervisor_shared = Arc::clone(&shared);
        let supervisor = tokio::spawn(async move {
            let shared = supervisor_shared;
            shared.shutdown.cancelled().await;
            shared.tracker.close();
            shared.tracker.wait().await;
            if let Some(spool) = shared.close_spool() {
                // Removals and dead-letter moves are not fsynced on their own; make them durable.
                match tokio::task::spawn_blocking(move || spool.sync()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "final webhook spool sync failed"),
                    Err(e) => tracing::error!(error = %e, "final webhook spool sync failed"),
                }
            }
            tracing::info!("webhook service stopped");
        });

        let inner = Inner {
            shared,
            tx,
            batch_max: settings.batch_max,
            drop_logged_ms: AtomicU64::new(0),
        };
        Ok((
            Webhooks {
                inner: Arc::new(inner),
            },
            supervisor,
        ))
    }

    /// Queues an event of app `app_id`. Never blocks and needs no async context.
    ///
    /// Events of unknown apps, and kinds no target of the app wants, are ignored at once. If the
    /// queue is full (or the service has stopped), the event is dropped and counted: see the module
    /// docs for why this does not block.
    pub fn submit(&self, app_id: &str, event: WebhookEvent) {
        let shared = &self.inner.shared;
        let Some(app) = shared.app(app_id) else {
            return;
        };
        if !app.accepted.contains(event.kind()) {
            return;
        }
        app.counters.enqueue(1);
        let submission = Submission {
            app: app.index,
            event,
            cancel_only: false,
        };
        match self.inner.tx.try_send(submission) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                app.counters.unqueue(1);
                self.report_drop(&app, "the webhook queue is full");
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                app.counters.unqueue(1);
                self.report_drop(&app, "the webhook service has stopped");
            }
        }
    }

    /// Voids what this node holds back for `event`'s channel (and user, for presence): a
    /// `channel_vacated` for a `channel_occupied`, a `member_removed` for a `member_added`. Sends
    /// nothing. For a cluster: another node reported the channel occupied or the member added (and
    /// sent that webhook), so this node's held leave would make a receiver that applies webhooks in
    /// id order end with the wrong state. Never blocks; when the queue is full the cancel is
    /// skipped (the held event is then sent, as before).
    pub fn cancel_held(&self, app_id: &str, event: &WebhookEvent) {
        let Some(app) = self.inner.shared.app(app_id) else {
            return;
        };
        if !app.accepted.contains(event.kind()) {
            return;
        }
        let _ = self.inner.tx.try_send(Submission {
            app: app.index,
            event: event.clone(),
            cancel_only: true,
        });
    }

    /// Counts one dropped event and logs it, rate-limited by [`DROP_LOG_INTERVAL_MS`]. The
    /// compare-exchange lets exactly one of several racing callers log. Loud on purpose: a lost
    /// webhook is a silent inconsistency at the receiver.
    fn report_drop(&self, app: &AppEntry, reason: &'static str) {
        let total = app.counters.dropped(1);
        let now = unix_ms();
        let last = self.inner.drop_logged_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= DROP_LOG_INTERVAL_MS
            && self
                .inner
                .drop_logged_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                app = %app.app_id,
                dropped_total = total,
                reason,
                "WEBHOOK EVENTS LOST: submit dropped an event (raise [webhooks] queue_capacity or check the receiver)"
            );
        }
    }

    /// Whether some target of `app_id` wants events of `kind` (hold partners included), so the
    /// broker can skip building an event nobody will receive.
    /// Cheap (one map lookup and one bit test), so the broker can call it on its hot path before it
    /// clones the data of a client event.
    pub fn wants(&self, app_id: &str, kind: EventType) -> bool {
        self.inner
            .shared
            .app(app_id)
            .is_some_and(|app| app.accepted.contains(kind))
    }

    /// A snapshot of every configured app's counters, in config order.
    /// For the metrics export and `GET /apps/{id}/webhooks/stats`; reads atomics only, never the
    /// spool.
    pub fn stats(&self) -> Vec<AppWebhookStats> {
        self.inner
            .shared
            .apps()
            .iter()
            .map(|app| app.counters.snapshot(&app.app_id))
            .collect()
    }

    /// Sets an app's webhooks while the service runs: a new app with targets, or a change of its
    /// targets, key or secret (a rotation: later attempts sign with the new secret). Events
    /// already batched for targets the change drops still go to them. Refused, changing nothing,
    /// when a target is invalid.
    pub fn set_app(&self, app: &AppHooks) -> Result<(), Error> {
        app.validate()?;
        self.inner.shared.set_app(app);
        Ok(())
    }

    /// Stops an app's webhooks (it was disabled, deleted, or lost its targets): its new events
    /// are ignored, events in the hold are dropped, and batches not yet delivered are moved to
    /// the dead-letter list when their lane reaches them (replayable if the app comes back).
    /// Returns whether it had webhooks.
    pub fn remove_app(&self, app_id: &str) -> bool {
        self.inner.shared.remove_app(app_id)
    }

    /// The open spool, or [`Error::Stopped`] so admin calls after shutdown fail cleanly.
    fn spool(&self) -> Result<Arc<Spool>, Error> {
        self.inner.shared.spool().ok_or(Error::Stopped)
    }

    /// The dead letters of `app_id`, oldest first. Blocking disk IO: call it from a blocking task
    /// in async code.
    pub fn dead_letters(&self, app_id: &str) -> Result<Vec<DeadLetter>, Error> {
        self.spool()?.dead_letters(app_id)
    }

    /// Sends the dead letters of `app_id` with these event ids again, with their original ids and
    /// a fresh retry window; unknown ids are ignored. Returns how many were queued. Blocking disk IO.
    pub fn replay(&self, app_id: &str, ids: &[String]) -> Result<usize, Error> {
        self.replay_selected(app_id, Some(ids))
    }

    /// Sends every dead letter of `app_id` again. Returns how many were queued. Blocking disk IO.
    pub fn replay_all(&self, app_id: &str) -> Result<usize, Error> {
        self.replay_selected(app_id, None)
    }

    /// Moves the selected dead letters back to pending in one transaction (re-batched to
    /// `batch_max`), then dispatches them. Their original event ids are kept, so a receiver that
    /// did get a batch before it was dead-lettered can still dedupe it.
    fn replay_selected(&self, app_id: &str, ids: Option<&[String]>) -> Result<usize, Error> {
        let shared = &self.inner.shared;
        let batches = self
            .spool()?
            .replay_batches(app_id, ids, self.inner.batch_max, unix_ms())?;
        let mut replayed = 0;
        for (key, batch) in batches {
            let events = batch.events.len();
            replayed += events;
            if let Some(app) = shared.app(app_id) {
                app.counters
                    .replayed(u64::try_from(events).unwrap_or(u64::MAX));
            }
            let url = batch.url.clone();
            shared.dispatch(&url, Job::new(key, app_id, events, Some(Arc::new(batch))));
        }
        if replayed > 0 {
            tracing::info!(
                app = app_id,
                events = replayed,
                "dead-lettered webhooks replayed"
            );
        }
        Ok(replayed)
    }

    /// Deletes the dead letters of `app_id` with these event ids for good. Returns how many were
    /// deleted. Blocking disk IO.
    pub fn purge(&self, app_id: &str, ids: &[String]) -> Result<usize, Error> {
        self.spool()?.purge(app_id, Some(ids))
    }

    /// Deletes every dead letter of `app_id` for good. Returns how many were deleted. Blocking disk
    /// IO.
    pub fn purge_all(&self, app_id: &str) -> Result<usize, Error> {
        self.spool()?.purge(app_id, None)
    }
}

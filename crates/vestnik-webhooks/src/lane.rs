//! One receiver URL's delivery lane: at most `max_in_flight` requests at once, retries with
//! exponential backoff and jitter, and the move to the dead-letter list when a batch's retry window
//! ends.
//!
//! While the receiver fails, the lane sends one request at a time (a probe) instead of
//! `max_in_flight`, so a struggling receiver is not hammered by a backlog; the first success opens
//! it up again. A lane keeps only keys in memory after a first failed attempt and reads the batch
//! back from the spool for each retry, so a long outage costs disk, not memory. This module must
//! never create or change events: it sends what the spool holds.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, Instant};

use crate::event::unix_ms;
use crate::runtime::Shared;
use crate::sender::Attempt;
use crate::spool::StoredBatch;

/// A spooled batch on its way to a receiver.
#[derive(Debug)]
pub(crate) struct Job {
    /// The batch's key in the spool's pending table: all a lane needs to find the batch again.
    key: u64,
    /// The owning app, for its counters and its key and secret at send time.
    app_id: Arc<str>,
    /// Events in the batch, so the counters move by events, not batches, without loading it.
    events: u64,
    /// The batch itself for its first attempt (it was just spooled); dropped after a failure.
    cached: Option<Arc<StoredBatch>>,
    /// Failed attempts so far.
    failures: u32,
    /// When retries stop; set when the lane first sees the job, so a restart gives every pending
    /// batch a full window again.
    deadline: Option<Instant>,
}

impl Job {
    /// A job for the batch spooled under `key`.
    /// `events` is the batch's event count; `cached` is the batch itself when the caller has just
    /// spooled it (saves a read for the first attempt), `None` for batches found pending at start.
    pub(crate) fn new(
        key: u64,
        app_id: &str,
        events: usize,
        cached: Option<Arc<StoredBatch>>,
    ) -> Self {
        Self {
            key,
            app_id: Arc::from(app_id),
            events: u64::try_from(events).unwrap_or(u64::MAX),
            cached,
            failures: 0,
            deadline: None,
        }
    }
}

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    /// A 2xx answer; the batch has been removed from the spool.
    Delivered,
    /// The batch is no longer in the spool (delivered before a restart, for example).
    Gone,
    /// The attempt failed; retry unless the window is over.
    Failed(String),
    /// The batch can never be sent as it is (its app is no longer configured): dead-letter it now.
    Unsendable(String),
}

/// A job waiting for its retry time; the heap is a min-heap on (time, arrival).
struct Waiting {
    /// When the job becomes ready again.
    at: Instant,
    /// Arrival order, the tie-break for equal times so jobs due together leave in the order they
    /// failed.
    seq: u64,
    job: Job,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
/// Reversed on purpose: `BinaryHeap` is a max-heap, and the lane wants the earliest retry on top.
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The delay before retry number `failures`: `initial · 2^(failures-1)` capped at `max`, then
/// "equal jitter" (half fixed, half random) so that batches failed together do not retry together.
pub(crate) fn backoff(failures: u32, initial: Duration, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let base = initial.saturating_mul(1u32 << exponent).min(max);
    let half = u64::try_from(base.as_millis() / 2).unwrap_or(u64::MAX / 2);
    Duration::from_millis(half + rand::random_range(0..=half))
}

/// The state of one lane's loop.
struct Lane {
    /// The receiver URL; this lane is the only sender to it.
    url: Arc<str>,
    shared: Arc<Shared>,
    /// Jobs to send as soon as a slot is free, in arrival order.
    ready: VecDeque<Job>,
    /// Jobs waiting for their retry time.
    waiting: BinaryHeap<Waiting>,
    /// The last `seq` handed out in `waiting`.
    waiting_seq: u64,
    /// The attempts running now, one task each; its length is compared with the in-flight limit.
    in_flight: JoinSet<Outcome>,
    /// The job of each in-flight task, so a panicking task still gives its job back.
    flying: HashMap<tokio::task::Id, Job>,
    /// Whether the last finished request succeeded; while not, one request at a time.
    healthy: bool,
}

impl Lane {
    /// Starts ready jobs while slots are free.
    fn start_ready(&mut self) {
        let limit = if self.healthy {
            self.shared.timing.max_in_flight
        } else {
            1
        };
        while self.in_flight.len() < limit {
            let Some(mut job) = self.ready.pop_front() else {
                return;
            };
            if job.failures > 0 {
                if let Some(app) = self.shared.app(&job.app_id) {
                    app.counters.retried_request();
                }
            }
            let task = deliver(
                Arc::clone(&self.shared),
                job.key,
                Arc::clone(&job.app_id),
                job.cached.take(),
                job.failures + 1,
            );
            let handle = self.in_flight.spawn(task);
            self.flying.insert(handle.id(), job);
        }
    }

    /// Takes a job from the queue. The retry window starts here, when the lane first sees the job,
    /// so a batch found pending after a restart gets a full window again rather than one already
    /// spent while the broker was down.
    fn accept(&mut self, mut job: Job) {
        let window = self.shared.timing.retry_window;
        job.deadline.get_or_insert_with(|| Instant::now() + window);
        self.ready.push_back(job);
    }

    /// Moves every job whose retry time has come from `waiting` to the back of `ready`.
    fn wake_due(&mut self) {
        let now = Instant::now();
        while self.waiting.peek().is_some_and(|w| w.at <= now) {
            self.ready
                .push_back(self.waiting.pop().expect("peeked").job);
        }
    }

    /// Settles one finished attempt: counts it, marks the lane healthy or not (which switches
    /// between the full in-flight limit and one probe), and schedules a retry or dead-letters the
    /// job. A task that panicked counts as a failed attempt, so its batch is retried rather than
    /// forgotten.
    fn finished(&mut self, done: Result<(tokio::task::Id, Outcome), tokio::task::JoinError>) {
        let (id, outcome) = match done {
            Ok((id, outcome)) => (id, outcome),
            Err(e) => (
                e.id(),
                Outcome::Failed(format!("delivery task failed: {e}")),
            ),
        };
        let Some(job) = self.flying.remove(&id) else {
            return;
        };
        let counters = self
            .shared
            .app(&job.app_id)
            .map(|a| Arc::clone(&a.counters));
        match outcome {
            Outcome::Delivered => {
                self.healthy = true;
                if let Some(c) = counters {
                    c.delivered(job.events);
                }
                if job.failures > 0 {
                    let attempt = job.failures + 1;
                    tracing::info!(url = %self.url, app = %job.app_id, attempt, "webhook delivered after retrying");
                }
            }
            Outcome::Gone => {
                if let Some(c) = counters {
                    c.forget_pending(job.events);
                }
            }
            Outcome::Failed(reason) => {
                self.healthy = false;
                if let Some(c) = counters {
                    c.failed_request();
                }
                if let Some((at, job)) = fail(&self.shared, &self.url, job, reason) {
                    self.waiting_seq += 1;
                    let seq = self.waiting_seq;
                    self.waiting.push(Waiting { at, seq, job });
                }
            }
            Outcome::Unsendable(reason) => bury(&self.shared, &self.url, job, reason),
        }
    }
}

/// Runs the lane of `url` until shutdown. In-flight requests are abandoned then: their batches stay
/// in the spool and are sent again after a restart.
///
/// # The loop
/// One task per receiver URL, started by [`Shared::dispatch`] on the first job for that URL. Each
/// turn first starts as many ready jobs as the limit allows (`max_in_flight`, or one while the
/// receiver is failing), then waits for the first of: shutdown, an attempt finishing, a new job on
/// the queue, or the earliest retry falling due. The lane outlives its queue's senders (`open`
/// turns false) so jobs in flight and waiting still finish. Nothing here awaits the network
/// directly: each attempt is its own task in `in_flight`, so a slow receiver holds a slot, never
/// the loop.
pub(crate) async fn run_lane(
    url: Arc<str>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    shared: Arc<Shared>,
) {
    let shutdown = shared.shutdown.clone();
    let mut lane = Lane {
        url,
        shared,
        ready: VecDeque::new(),
        waiting: BinaryHeap::new(),
        waiting_seq: 0,
        in_flight: JoinSet::new(),
        flying: HashMap::new(),
        healthy: true,
    };
    let mut open = true;
    loop {
        lane.start_ready();
        let wake = lane.waiting.peek().map(|w| w.at);
        let busy = !lane.in_flight.is_empty();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = lane.in_flight.join_next_with_id(), if busy => lane.finished(done),
            job = rx.recv(), if open => match job {
                Some(job) => lane.accept(job),
                None => open = false,
            },
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => lane.wake_due(),
        }
    }
    lane.in_flight.shutdown().await;
}

/// After a failed attempt: the job's next try, or `None` if it was dead-lettered.
/// The backoff is clipped to the deadline, so the last retry happens at the end of the window
/// rather than being skipped. The cached batch is dropped: a job waiting for a retry holds only its
/// key, which keeps a long outage's memory cost flat.
fn fail(shared: &Arc<Shared>, url: &str, mut job: Job, reason: String) -> Option<(Instant, Job)> {
    job.failures += 1;
    let now = Instant::now();
    let deadline = *job.deadline.get_or_insert(now);
    if now >= deadline {
        bury(shared, url, job, reason);
        return None;
    }
    let timing = shared.timing;
    let at = (now + backoff(job.failures, timing.retry_initial, timing.retry_max)).min(deadline);
    if job.failures == 1 {
        tracing::warn!(%url, app = %job.app_id, %reason, "webhook request failed; retrying with backoff");
    } else {
        tracing::debug!(%url, app = %job.app_id, attempt = job.failures, %reason, "webhook retry failed");
    }
    job.cached = None;
    Some((at, job))
}

/// Moves a job's batch to the dead-letter list, off the lane's loop.
/// A stopped service leaves the batch pending rather than burying it: a shutdown is not the
/// receiver's failure. If the move fails, the batch stays pending and is tried again at next start.
fn bury(shared: &Arc<Shared>, url: &str, job: Job, reason: String) {
    let Some(spool) = shared.spool() else {
        return; // stopped: the batch stays pending and is retried after a restart
    };
    let counters = shared.app(&job.app_id).map(|a| Arc::clone(&a.counters));
    let url = url.to_owned();
    shared.tracker.spawn_blocking(move || {
        match spool.bury(job.key, job.failures, &reason, unix_ms()) {
            Ok(moved) => {
                if let Some(counters) = counters {
                    counters.dead_lettered(u64::try_from(moved).unwrap_or(u64::MAX));
                }
                tracing::error!(%url, app = %job.app_id, events = moved, attempts = job.failures, %reason,
                    "webhook retry window over: events moved to the dead-letter list");
            }
            Err(e) => {
                tracing::error!(%url, app = %job.app_id, error = %e, "cannot dead-letter a webhook batch; it stays pending");
            }
        }
    });
}

/// One attempt: load the batch if needed, send it, and forget it on success.
/// A batch that is already gone from the spool (delivered by an earlier run, or replayed) is
/// `Gone`, not a failure. The app's credentials are read at send time, from the running config.
async fn deliver(
    shared: Arc<Shared>,
    key: u64,
    app_id: Arc<str>,
    cached: Option<Arc<StoredBatch>>,
    number: u32,
) -> Outcome {
    let Some(app) = shared.app(&app_id) else {
        return Outcome::Unsendable(format!("app {app_id:?} is no longer configured"));
    };
    let Some(spool) = shared.spool() else {
        return Outcome::Failed("the webhook service has stopped".into());
    };
    let batch = match cached {
        Some(batch) => batch,
        None => {
            let spool = Arc::clone(&spool);
            match shared.tracker.spawn_blocking(move || spool.get(key)).await {
                Ok(Ok(Some(batch))) => Arc::new(batch),
                Ok(Ok(None)) => return Outcome::Gone,
                Ok(Err(e)) => return Outcome::Failed(format!("spool read failed: {e}")),
                Err(e) => return Outcome::Failed(format!("spool read failed: {e}")),
            }
        }
    };
    let attempt = Attempt {
        url: &batch.url,
        key: &app.key,
        secret: &app.secret,
        headers: &batch.headers,
        events: &batch.events,
        number,
        time_ms: unix_ms(),
    };
    match attempt
        .send(&shared.client, shared.timing.request_timeout)
        .await
    {
        Ok(_) => {
            // If the removal fails the batch stays spooled: it is sent again after a restart, and
            // the receiver dedupes it by id.
            let error = match shared
                .tracker
                .spawn_blocking(move || spool.remove(key))
                .await
            {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = error {
                tracing::error!(key, %error, "cannot remove a delivered webhook batch from the spool");
            }
            Outcome::Delivered
        }
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Equal jitter keeps every delay within [base/2, base]: never zero (no hot loop against a dead
    /// receiver) and never above the cap.
    #[test]
    fn backoff_doubles_caps_and_jitters_within_half() {
        let initial = Duration::from_millis(1_000);
        let max = Duration::from_millis(60_000);
        for _ in 0..200 {
            let first = backoff(1, initial, max);
            assert!((500..=1_000).contains(&first.as_millis()), "{first:?}");
            let third = backoff(3, initial, max);
            assert!((2_000..=4_000).contains(&third.as_millis()), "{third:?}");
            let late = backoff(40, initial, max);
            assert!((30_000..=60_000).contains(&late.as_millis()), "{late:?}");
        }
    }
}

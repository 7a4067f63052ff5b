//! Ramping up: open and subscribe N sockets with at most K opening at once, show progress, and stop
//! early, saying why, when a limit (descriptors, ports, broker capacity) is reached.
//!
//! Each socket's task opens it and then keeps reading it until the run's cancel token fires, so a
//! ramped socket is a live receiver. The ramp never retries: a failed socket is counted, not hidden.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::pusher::{self, WsTarget};
use crate::tracker::{new_histogram, Tracker};

/// Failed sockets after which the ramp stops even when no limit was recognised.
const MAX_FAILURES: usize = 50;
/// Distinct open errors kept for the report.
const MAX_ERRORS: usize = 5;
/// Time allowed for every socket task to end after cancel.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// The sockets of a run, opened.
#[derive(Debug)]
pub struct Ramp {
    /// Sockets tried.
    pub attempted: usize,
    /// Sockets subscribed.
    pub connected: usize,
    /// Sockets that failed to open or subscribe.
    pub failed: usize,
    /// Why the ramp stopped before trying every socket, if it did.
    pub stopped_by: Option<String>,
    /// The first few distinct open errors.
    pub errors: Vec<String>,
    /// From the first attempt to the last subscription.
    pub elapsed: Duration,
    /// Time from starting to open a socket to its subscription succeeding, µs.
    pub latency: Histogram<u64>,
    tasks: Vec<JoinHandle<()>>,
    cancel: CancellationToken,
}

impl Ramp {
    /// Subscribed sockets per second over the ramp.
    pub fn per_sec(&self) -> f64 {
        self.connected as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Closes every socket and waits (bounded) for their tasks to end.
    pub async fn close(self) {
        self.cancel.cancel();
        let all = futures_util::future::join_all(self.tasks);
        let _ = tokio::time::timeout(SHUTDOWN_WAIT, all).await;
    }
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    connected: AtomicUsize,
    failed: AtomicUsize,
    stopped_by: Mutex<Option<String>>,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, message: String, limit: Option<String>) {
        let failed = self.failed.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut errors = self.errors.lock();
            if errors.len() < MAX_ERRORS && !errors.contains(&message) {
                errors.push(message);
            }
        }
        let reason = limit.or_else(|| {
            (failed >= MAX_FAILURES).then(|| format!("{failed} sockets failed to open"))
        });
        if let Some(reason) = reason {
            self.stopped_by.lock().get_or_insert(reason);
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

/// Opens socket `i` on channel `channels[i]` for every `i`, at most `concurrency` at once.
pub async fn ramp(
    target: Arc<WsTarget>,
    channels: &[String],
    concurrency: usize,
    tracker: Arc<Tracker>,
    show_progress: bool,
) -> Ramp {
    let total = channels.len();
    let bar = if show_progress {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {pos}/{len} sockets, {per_sec}, eta {eta}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_message("subscribing");
        bar
    } else {
        ProgressBar::hidden()
    };
    let concurrency = concurrency.clamp(1, Semaphore::MAX_PERMITS);
    let sem = Arc::new(Semaphore::new(concurrency));
    let shared = Arc::new(Shared::default());
    let latency = Arc::new(Mutex::new(new_histogram()));
    let last_done = Arc::new(Mutex::new(Instant::now()));
    let cancel = CancellationToken::new();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total);
    let mut attempted = 0;
    for (i, channel) in channels.iter().enumerate() {
        let permit = Arc::clone(&sem)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        attempted += 1;
        let (target, tracker, shared, latency, last_done, cancel, bar, channel) = (
            Arc::clone(&target),
            Arc::clone(&tracker),
            Arc::clone(&shared),
            Arc::clone(&latency),
            Arc::clone(&last_done),
            cancel.clone(),
            bar.clone(),
            channel.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let t0 = clock::now_us();
            let opened = pusher::open(&target, i, &channel).await;
            match opened {
                Ok((ws, _socket_id)) => {
                    latency
                        .lock()
                        .saturating_record(clock::now_us().saturating_sub(t0).max(1));
                    *last_done.lock() = Instant::now();
                    tracker.mark_live(i);
                    shared.connected.fetch_add(1, Ordering::SeqCst);
                    bar.inc(1);
                    drop(permit);
                    pusher::receive(ws, i, tracker, cancel).await;
                }
                Err(e) => {
                    shared.fail(e.to_string(), e.limit(target.sources));
                    drop(permit);
                }
            }
        }));
    }
    // Every open attempt holds a permit until it finishes.
    let all = u32::try_from(concurrency).expect("clamped to MAX_PERMITS, which fits u32");
    let _ = sem.acquire_many(all).await;
    bar.finish_and_clear();
    let connected = shared.connected.load(Ordering::SeqCst);
    let elapsed = last_done.lock().saturating_duration_since(start);
    let latency = latency.lock().clone();
    let stopped_by = shared.stopped_by.lock().clone();
    let errors = shared.errors.lock().clone();
    Ramp {
        attempted,
        connected,
        failed: shared.failed.load(Ordering::SeqCst),
        stopped_by,
        errors,
        elapsed,
        latency,
        tasks,
        cancel,
    }
}

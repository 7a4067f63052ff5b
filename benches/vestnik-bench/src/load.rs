//! The trigger side: open-loop triggering at a fixed rate, closed-loop triggering as fast as the
//! broker answers, and a one-event-per-channel probe.
//!
//! Open loop is what fan-out latency needs: events are due at fixed times whatever the broker does,
//! so a slow broker shows up as latency instead of as a lower offered rate. Each event is stamped
//! when its request is built, just before it is sent. The number of events and the time are bounded
//! up front, so every run ends by itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, Mutex};

use crate::api::{ApiConn, ApiTarget, BenchEvent};
use crate::clock;
use crate::tracker::{new_histogram, Issued};

/// Calls queued per HTTP connection before the pacer waits: enough to ride out a slow answer,
/// small enough that a saturated API shows up as late sends rather than a long queue.
const QUEUE_PER_CONN: usize = 4;
/// Distinct API error messages kept for the report.
const MAX_ERRORS: usize = 5;

/// What the trigger side did in one run.
#[derive(Debug)]
pub struct SendLog {
    /// HTTP calls made.
    pub calls: u64,
    /// Events in those calls.
    pub events: u64,
    /// Calls that failed (transport error or non-2xx).
    pub failed_calls: u64,
    /// Events sent per channel, and those whose call failed.
    pub issued: Issued,
    /// Duration of each call, µs.
    pub latency: Histogram<u64>,
    /// Start of the first call, µs since the time base (`u64::MAX` if none).
    pub first_send_us: u64,
    /// Start of the last call, µs since the time base.
    pub last_send_us: u64,
    /// The first few distinct errors.
    pub errors: Vec<String>,
}

impl SendLog {
    fn new(channels: usize) -> Self {
        Self {
            calls: 0,
            events: 0,
            failed_calls: 0,
            issued: Issued {
                per_channel: vec![0; channels],
                failed: Vec::new(),
            },
            latency: new_histogram(),
            first_send_us: u64::MAX,
            last_send_us: 0,
            errors: Vec::new(),
        }
    }

    fn merge(&mut self, other: SendLog) {
        self.calls += other.calls;
        self.events += other.events;
        self.failed_calls += other.failed_calls;
        for (a, b) in self
            .issued
            .per_channel
            .iter_mut()
            .zip(&other.issued.per_channel)
        {
            *a += b;
        }
        self.issued.failed.extend(other.issued.failed);
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds add");
        self.first_send_us = self.first_send_us.min(other.first_send_us);
        self.last_send_us = self.last_send_us.max(other.last_send_us);
        for e in other.errors {
            self.note_error(e);
        }
    }

    fn note_error(&mut self, e: String) {
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    /// Sends `events` of run `run` in one call on `conn` and logs the outcome.
    async fn call(
        &mut self,
        conn: &mut ApiConn,
        target: &ApiTarget,
        run: u32,
        events: &[BenchEvent],
    ) {
        let (path, body) = target.body(run, events);
        let t0 = clock::now_us();
        let result = conn.post(&path, body).await;
        let t1 = clock::now_us();
        self.latency.saturating_record(t1.saturating_sub(t0).max(1));
        self.first_send_us = self.first_send_us.min(t0);
        self.last_send_us = self.last_send_us.max(t0);
        self.calls += 1;
        self.events += events.len() as u64;
        for e in events {
            if let Some(n) = self.issued.per_channel.get_mut(e.channel) {
                *n += 1;
            }
        }
        if let Err(e) = result {
            self.failed_calls += 1;
            self.issued
                .failed
                .extend(events.iter().map(|e| (e.channel, e.seq)));
            self.note_error(e.to_string());
        }
    }

    /// Seconds between the first and the last call's start.
    pub fn send_window_secs(&self) -> f64 {
        if self.first_send_us == u64::MAX {
            return 0.0;
        }
        self.last_send_us.saturating_sub(self.first_send_us) as f64 / 1e6
    }
}

/// An open-loop load: `rate` events per second for `duration`, `batch` events per call, over
/// `conns` HTTP connections.
#[derive(Debug, Clone, Copy)]
pub struct Paced {
    /// Events per second.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Events per call (1: `/events`; more: `/batch_events`).
    pub batch: usize,
    /// Concurrent HTTP connections.
    pub conns: usize,
}

impl Paced {
    /// Events this load sends in total.
    pub fn total_events(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }
}

/// Event `k` of a run goes to channel `k % C` with sequence `k / C`, so every channel gets a dense
/// run of sequence numbers.
fn event_for(k: u64, channels: usize) -> BenchEvent {
    let c = channels as u64;
    BenchEvent {
        channel: usize::try_from(k % c).expect("below the channel count"),
        seq: k / c,
    }
}

/// Sends `plan` for run `run` and returns when every call has been answered.
pub async fn paced(target: Arc<ApiTarget>, run: u32, plan: Paced) -> SendLog {
    let channels = target.channels.count();
    let conns = plan.conns.max(1);
    let (tx, rx) = mpsc::channel::<Vec<BenchEvent>>(conns * QUEUE_PER_CONN);
    let rx = Arc::new(Mutex::new(rx));
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let rx = Arc::clone(&rx);
            let target = Arc::clone(&target);
            tokio::spawn(async move {
                let mut conn = ApiConn::new(Arc::clone(&target));
                let mut log = SendLog::new(channels);
                loop {
                    let job = rx.lock().await.recv().await;
                    let Some(events) = job else { break };
                    log.call(&mut conn, &target, run, &events).await;
                }
                log
            })
        })
        .collect();

    let total = plan.total_events();
    let batch = plan.batch.max(1) as u64;
    let start = Instant::now();
    let per_call = Duration::from_secs_f64(batch as f64 / plan.rate.max(f64::MIN_POSITIVE));
    for j in 0..total.div_ceil(batch) {
        let due = start + per_call.mul_f64(j as f64);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        let events: Vec<BenchEvent> = (j * batch..((j + 1) * batch).min(total))
            .map(|k| event_for(k, channels))
            .collect();
        if tx.send(events).await.is_err() {
            break;
        }
    }
    drop(tx);
    collect(workers, channels).await
}

/// Sends as fast as the broker answers for `duration`, with `concurrency` calls in flight, `batch`
/// events per call, all on channel 0.
pub async fn closed_loop(
    target: Arc<ApiTarget>,
    run: u32,
    concurrency: usize,
    duration: Duration,
    batch: usize,
) -> SendLog {
    let channels = target.channels.count();
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let batch = batch.max(1) as u64;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let target = Arc::clone(&target);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut conn = ApiConn::new(Arc::clone(&target));
                let mut log = SendLog::new(channels);
                while Instant::now() < deadline {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    let events: Vec<BenchEvent> = (first..first + batch)
                        .map(|seq| BenchEvent { channel: 0, seq })
                        .collect();
                    log.call(&mut conn, &target, run, &events).await;
                }
                log
            })
        })
        .collect();
    collect(workers, channels).await
}

/// Sends one event (sequence 0) to every channel, to check that every socket still receives.
pub async fn probe(target: Arc<ApiTarget>, run: u32) -> SendLog {
    let channels = target.channels.count();
    let mut conn = ApiConn::new(Arc::clone(&target));
    let mut log = SendLog::new(channels);
    for channel in 0..channels {
        log.call(&mut conn, &target, run, &[BenchEvent { channel, seq: 0 }])
            .await;
    }
    log
}

async fn collect(workers: Vec<tokio::task::JoinHandle<SendLog>>, channels: usize) -> SendLog {
    let mut log = SendLog::new(channels);
    for w in workers {
        match w.await {
            Ok(l) => log.merge(l),
            Err(e) => log.note_error(format!("trigger task failed: {e}")),
        }
    }
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_spread_densely_over_channels() {
        let evs: Vec<_> = (0..7).map(|k| event_for(k, 3)).collect();
        assert_eq!(evs[0], BenchEvent { channel: 0, seq: 0 });
        assert_eq!(evs[4], BenchEvent { channel: 1, seq: 1 });
        assert_eq!(evs[6], BenchEvent { channel: 0, seq: 2 });
        let plan = Paced {
            rate: 2000.0,
            duration: Duration::from_secs(10),
            batch: 1,
            conns: 1,
        };
        assert_eq!(plan.total_events(), 20_000);
    }
}

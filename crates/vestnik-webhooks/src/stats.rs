//! Per-app delivery counters, updated with relaxed atomics from every task, and the plain snapshot
//! the metrics export and the admin endpoint read.
//!
//! Counts are per delivery: an event sent to two targets counts twice in `delivered`, `pending` and
//! `dead_lettered`; `failed` and `retried` count requests. This module must never block, lock or
//! log: it sits on the submit path.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// A snapshot of one app's webhook counters since the service started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AppWebhookStats {
    /// The app.
    pub app_id: String,
    /// Event deliveries a receiver acknowledged with a 2xx.
    pub delivered: u64,
    /// Requests that failed: non-2xx, timeout, refused or broken connection.
    pub failed: u64,
    /// Requests that were retries of an earlier failed request.
    pub retried: u64,
    /// Event deliveries in the spool, not yet acknowledged or dead-lettered (a gauge).
    pub pending: u64,
    /// Event deliveries moved to the dead-letter list after their retry window.
    pub dead_lettered: u64,
    /// Event deliveries put back from the dead-letter list by a replay.
    pub replayed: u64,
    /// Events `submit` refused because the queue was full or the service had stopped: lost.
    pub dropped: u64,
    /// Events cancelled by the hold (a leave and the re-join that followed it), on purpose.
    pub suppressed: u64,
    /// Events accepted by `submit` and not yet spooled: queued, held or batching (a gauge).
    pub queued: u64,
}

/// The live counters of one app.
/// The fields mirror [`AppWebhookStats`]; each transition of an event moves the gauges in pairs
/// (for example `delivered` adds to `delivered` and takes from `pending`), so the sums stay
/// consistent without a lock. Relaxed ordering: the counters are read for display, never to
/// synchronise.
#[derive(Debug, Default)]
pub(crate) struct AppCounters {
    delivered: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    pending: AtomicU64,
    dead_lettered: AtomicU64,
    replayed: AtomicU64,
    dropped: AtomicU64,
    suppressed: AtomicU64,
    queued: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Gauges go down as well as up; saturate so that a miscount can never wrap to 2^64.
fn sub(counter: &AtomicU64, n: u64) {
    // fetch_update only fails if the closure returns None, and this one never does.
    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}

impl AppCounters {
    /// `submit` accepted `n` events into the queue.
    pub(crate) fn enqueue(&self, n: u64) {
        add(&self.queued, n);
    }

    /// `n` events left the queue or the hold: released into a batch, suppressed, or dropped.
    pub(crate) fn unqueue(&self, n: u64) {
        sub(&self.queued, n);
    }

    /// `n` events were cancelled by the hold (a leave and the join that undid it).
    pub(crate) fn suppressed(&self, n: u64) {
        add(&self.suppressed, n);
    }

    /// Returns the total dropped so far, for the log line.
    pub(crate) fn dropped(&self, n: u64) -> u64 {
        self.dropped.fetch_add(n, Ordering::Relaxed) + n
    }

    /// `n` event deliveries were committed to the spool (or found there at start).
    pub(crate) fn spooled(&self, n: u64) {
        add(&self.pending, n);
    }

    /// `n` event deliveries were acknowledged with a 2xx and left the spool.
    pub(crate) fn delivered(&self, n: u64) {
        add(&self.delivered, n);
        sub(&self.pending, n);
    }

    /// One request failed; counts requests, not events.
    pub(crate) fn failed_request(&self) {
        add(&self.failed, 1);
    }

    /// One request was a retry of a batch that failed before.
    pub(crate) fn retried_request(&self) {
        add(&self.retried, 1);
    }

    /// `n` event deliveries gave up and moved to the dead-letter list.
    pub(crate) fn dead_lettered(&self, n: u64) {
        add(&self.dead_lettered, n);
        sub(&self.pending, n);
    }

    /// `n` dead letters were put back to pending by a replay.
    pub(crate) fn replayed(&self, n: u64) {
        add(&self.replayed, n);
        add(&self.pending, n);
    }

    /// Pending deliveries that vanished from the spool (delivered before a restart whose removal
    /// was not yet durable, for example).
    pub(crate) fn forget_pending(&self, n: u64) {
        sub(&self.pending, n);
    }

    /// Reads every counter once. The fields are loaded one by one, so a snapshot taken while events
    /// move may be off by the events in transit; fine for metrics, not for accounting.
    pub(crate) fn snapshot(&self, app_id: &str) -> AppWebhookStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AppWebhookStats {
            app_id: app_id.to_owned(),
            delivered: get(&self.delivered),
            failed: get(&self.failed),
            retried: get(&self.retried),
            pending: get(&self.pending),
            dead_lettered: get(&self.dead_lettered),
            replayed: get(&self.replayed),
            dropped: get(&self.dropped),
            suppressed: get(&self.suppressed),
            queued: get(&self.queued),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A miscounted decrement must read as 0, not as 18 quintillion pending events on a dashboard.
    #[test]
    fn gauges_saturate_instead_of_wrapping() {
        let c = AppCounters::default();
        c.spooled(2);
        c.delivered(3);
        c.unqueue(1);
        let s = c.snapshot("a");
        assert_eq!((s.pending, s.delivered, s.queued), (0, 3, 0));
        assert_eq!(c.dropped(2), 2);
        assert_eq!(c.dropped(1), 3);
    }
}

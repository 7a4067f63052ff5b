//! [`UsageCounters`]: what one app did on this node since the last flush, and its messages today,
//! for billing (usage per hour) and for the daily message quota.
//!
//! Plain relaxed atomics in the app's runtime: the publish path adds to them once per publish (never
//! per socket), with no lock, no allocation and no clock read. The edge's flusher takes the counts
//! now and then ([`UsageCounters::take`]) into the ledger, and keeps the day's figures current
//! ([`UsageCounters::start_day`], [`UsageCounters::set_elsewhere`]). This module must never do IO.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Counts of one app on this node. Relaxed ordering throughout: the counts are sums read for
/// billing and quotas, never used to synchronise anything.
#[derive(Debug, Default)]
pub struct UsageCounters {
    /// Messages written to sockets (API and client events) since the last take.
    delivered: AtomicU64,
    /// Events received through the HTTP API since the last take.
    received: AtomicU64,
    /// Bytes of those messages' frames since the last take.
    bytes_out: AtomicU64,
    /// Most sockets at once since the last take.
    peak: AtomicU64,
    /// The UTC day (Unix time of its midnight) that `today` counts.
    day: AtomicI64,
    /// Messages (received + delivered) this node counted on `day`, for the daily quota.
    today: AtomicU64,
    /// Of `today`, what the flusher has written to the ledger.
    flushed_today: AtomicU64,
    /// Messages of `day` counted elsewhere: the other live nodes, and what the ledger holds from
    /// nodes no longer live (or from this node before a restart). Set by the edge.
    elsewhere: AtomicU64,
}

/// What [`UsageCounters::take`] took: the counts since the previous take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TakenUsage {
    /// Most sockets at once over the span.
    pub peak_connections: u64,
    /// Messages written to sockets.
    pub messages_delivered: u64,
    /// Events received through the HTTP API.
    pub messages_received: u64,
    /// Bytes of the delivered frames.
    pub bytes_out: u64,
}

impl TakenUsage {
    /// Messages as the daily quota counts them.
    pub fn messages(&self) -> u64 {
        self.messages_delivered
            .saturating_add(self.messages_received)
    }
}

impl UsageCounters {
    /// `n` events were received through the API.
    pub(crate) fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        self.today.fetch_add(n, Ordering::Relaxed);
    }

    /// `messages` frames of `bytes` in total were written to sockets.
    pub(crate) fn delivered(&self, messages: u64, bytes: u64) {
        if messages == 0 {
            return;
        }
        self.delivered.fetch_add(messages, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.today.fetch_add(messages, Ordering::Relaxed);
    }

    /// The app now has `sockets` sockets on this node.
    pub(crate) fn connections(&self, sockets: u64) {
        self.peak.fetch_max(sockets, Ordering::Relaxed);
    }

    /// Takes the counts since the last take. The peak starts again from `sockets_now`, the sockets
    /// open at the take, so a span with no connect still reports the sockets it held.
    pub fn take(&self, sockets_now: u64) -> TakenUsage {
        TakenUsage {
            peak_connections: self.peak.swap(sockets_now, Ordering::Relaxed),
            messages_delivered: self.delivered.swap(0, Ordering::Relaxed),
            messages_received: self.received.swap(0, Ordering::Relaxed),
            bytes_out: self.bytes_out.swap(0, Ordering::Relaxed),
        }
    }

    /// Starts counting `day` (at UTC midnight): `today`, `flushed_today` and `elsewhere` begin at
    /// zero. A no-op when `day` is the day counted already; counters that counted no day yet (an
    /// app's first messages on this node, before the flusher's next tick) adopt `day` and keep
    /// their counts.
    pub fn start_day(&self, day: i64) {
        let before = self.day.swap(day, Ordering::Relaxed);
        if before != day && before != 0 {
            self.today.store(0, Ordering::Relaxed);
            self.flushed_today.store(0, Ordering::Relaxed);
            self.elsewhere.store(0, Ordering::Relaxed);
        }
    }

    /// `messages` of today's were written to the ledger.
    pub fn flushed(&self, messages: u64) {
        self.flushed_today.fetch_add(messages, Ordering::Relaxed);
    }

    /// Sets what other nodes (and the ledger, for nodes no longer live) counted today.
    pub fn set_elsewhere(&self, messages: u64) {
        self.elsewhere.store(messages, Ordering::Relaxed);
    }

    /// The day counted, this node's messages on it, and how many of them are in the ledger: what
    /// a heartbeat tells the other nodes.
    pub fn today(&self) -> (i64, u64, u64) {
        (
            self.day.load(Ordering::Relaxed),
            self.today.load(Ordering::Relaxed),
            self.flushed_today.load(Ordering::Relaxed),
        )
    }

    /// Messages today across the cluster, as this node knows them: its own plus elsewhere.
    pub fn messages_today(&self) -> u64 {
        self.today
            .load(Ordering::Relaxed)
            .saturating_add(self.elsewhere.load(Ordering::Relaxed))
    }

    /// Whether a daily quota of `quota` messages (0: none) is used up.
    pub fn over_quota(&self, quota: u64) -> bool {
        quota > 0 && self.messages_today() >= quota
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A take returns the counts since the previous one and starts the next span, the peak from the
    /// sockets still open.
    #[test]
    fn take_resets_each_span() {
        let c = UsageCounters::default();
        c.connections(3);
        c.connections(5);
        c.connections(4);
        c.received(2);
        c.delivered(10, 1_000);
        c.delivered(0, 0);
        let t = c.take(4);
        assert_eq!(
            t,
            TakenUsage {
                peak_connections: 5,
                messages_delivered: 10,
                messages_received: 2,
                bytes_out: 1_000
            }
        );
        assert_eq!(t.messages(), 12);
        let quiet = c.take(4);
        assert_eq!(
            quiet.peak_connections, 4,
            "the sockets held count as the peak"
        );
        assert_eq!(quiet.messages(), 0);
        c.received(1);
        let again = c.take(0);
        assert_eq!(again.messages_received, 1);
        assert_eq!(again.peak_connections, 4);
    }

    /// The day's count adds this node's messages and the rest of the cluster's, reaches the quota
    /// at exactly `quota`, and starts again with a new day (not with the same one).
    #[test]
    fn daily_count_and_quota() {
        let c = UsageCounters::default();
        c.received(3);
        c.start_day(86_400);
        c.delivered(2, 20);
        c.set_elsewhere(4);
        assert_eq!(c.messages_today(), 9);
        assert!(!c.over_quota(10) && !c.over_quota(0));
        c.received(1);
        assert!(c.over_quota(10));
        c.flushed(5);
        assert_eq!(c.today(), (86_400, 6, 5));
        c.start_day(86_400);
        assert_eq!(c.messages_today(), 10, "the same day keeps its count");
        c.start_day(2 * 86_400);
        assert_eq!(c.messages_today(), 0);
        assert_eq!(c.today(), (2 * 86_400, 0, 0));
    }
}

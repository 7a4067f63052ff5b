//! Exact delivery accounting: which bench events each socket received, and how long each took.
//!
//! Every bench event carries a run number, its sequence number within its channel, and the moment it
//! was sent (µs since the shared time base). Each socket keeps a bitset of the sequence numbers it
//! has seen in the current run, so losses and duplicates are counted exactly, not estimated. Latency
//! goes to a few sharded HDR histograms, so sockets on different threads rarely share a lock.
//!
//! The receive path takes only uncontended locks and never awaits while holding one.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hdrhistogram::Histogram;
use parking_lot::Mutex;

/// Largest latency tracked exactly; slower deliveries are recorded at this value.
pub const MAX_TRACKED_US: u64 = 60_000_000;
/// Significant figures kept by every histogram.
const SIGFIGS: u8 = 3;
/// Latency histograms shared by the sockets (socket `i` uses shard `i % SHARDS`).
const SHARDS: usize = 16;

/// A histogram of microseconds from 1 µs to [`MAX_TRACKED_US`].
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, SIGFIGS)
        .expect("bounds 1..MAX_TRACKED_US with 3 significant figures are valid")
}

/// One socket's state for the current run.
#[derive(Debug, Default)]
struct Slot {
    /// Bit `s` set: sequence `s` of this socket's channel was received.
    received: Vec<u64>,
    duplicates: u64,
    /// Subscribed and not closed.
    live: bool,
    /// Why the broker or the network closed the socket, if it did.
    closed: Option<String>,
}

impl Slot {
    /// Marks `seq` received; true the first time.
    fn mark(&mut self, seq: u64) -> bool {
        let word = usize::try_from(seq / 64).unwrap_or(usize::MAX);
        if word >= self.received.len() {
            if word > BITSET_WORDS_MAX {
                return false;
            }
            self.received.resize(word + 1, 0);
        }
        let bit = 1u64 << (seq % 64);
        let new = self.received[word] & bit == 0;
        self.received[word] |= bit;
        new
    }

    fn has(&self, seq: u64) -> bool {
        usize::try_from(seq / 64)
            .ok()
            .and_then(|w| self.received.get(w))
            .is_some_and(|w| w & (1u64 << (seq % 64)) != 0)
    }

    /// Received sequence numbers below `n`.
    fn count_below(&self, n: u64) -> u64 {
        let full = usize::try_from(n / 64).unwrap_or(usize::MAX);
        let mut c: u64 = self
            .received
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        if let Some(w) = self.received.get(full) {
            let mask = (1u64 << (n % 64)) - 1;
            c += u64::from((w & mask).count_ones());
        }
        c
    }

    fn count_all(&self) -> u64 {
        self.received
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum()
    }
}

/// Bound on a socket's bitset (64 Mi sequence numbers per channel per run, 8 MiB per socket): a
/// corrupt sequence number must not allocate without limit.
const BITSET_WORDS_MAX: usize = 1 << 20;

/// What the sockets of one run received, against what was sent.
#[derive(Debug)]
pub struct RunCounts {
    /// Deliveries owed: for every socket live at the start of the run, the events accepted on its
    /// channel.
    pub expected: u64,
    /// Distinct owed events received.
    pub delivered: u64,
    /// `expected - delivered`.
    pub lost: u64,
    /// Events received more than once by the same socket.
    pub duplicates: u64,
    /// Events received that were not owed (sent by a call that failed, or out of range).
    pub unexpected: u64,
    /// Bench events of an earlier run received during this one.
    pub stale: u64,
    /// Sockets live at the start of the run that were closed before its end.
    pub sockets_dropped: u64,
    /// Sockets live at the start of the run.
    pub sockets_live: u64,
    /// Latency of each first receipt, send to receipt, µs.
    pub latency: Histogram<u64>,
    /// When the last delivery of the run arrived (µs since the time base), 0 if none did.
    pub last_rx_us: u64,
}

/// The events sent in one run, per channel: sequence numbers `0..issued[c]`, less those whose API
/// call failed.
#[derive(Debug, Clone, Default)]
pub struct Issued {
    /// Events sent per channel.
    pub per_channel: Vec<u64>,
    /// `(channel, seq)` of events whose call failed.
    pub failed: Vec<(usize, u64)>,
}

impl Issued {
    /// Accepted events on channel `c`.
    pub fn accepted(&self, c: usize) -> u64 {
        let failed = self.failed.iter().filter(|(fc, _)| *fc == c).count() as u64;
        self.per_channel
            .get(c)
            .copied()
            .unwrap_or(0)
            .saturating_sub(failed)
    }
}

/// Shared receive-side state for all sockets.
#[derive(Debug)]
pub struct Tracker {
    run: AtomicU32,
    slots: Vec<Mutex<Slot>>,
    shards: Vec<Mutex<Histogram<u64>>>,
    live_at_start: Mutex<Vec<bool>>,
    delivered: AtomicU64,
    last_rx_us: AtomicU64,
    stale: AtomicU64,
}

impl Tracker {
    /// Room for `sockets` sockets; no run is active (run 0 is never measured).
    pub fn new(sockets: usize) -> Self {
        Self {
            run: AtomicU32::new(0),
            slots: (0..sockets).map(|_| Mutex::new(Slot::default())).collect(),
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            live_at_start: Mutex::new(Vec::new()),
            delivered: AtomicU64::new(0),
            last_rx_us: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    /// Socket `slot` is subscribed.
    pub fn mark_live(&self, slot: usize) {
        self.slots[slot].lock().live = true;
    }

    /// Socket `slot` was closed, for `reason`.
    pub fn mark_closed(&self, slot: usize, reason: String) {
        let mut s = self.slots[slot].lock();
        s.live = false;
        s.closed.get_or_insert(reason);
    }

    /// Why sockets were closed, in socket order.
    pub fn close_reasons(&self) -> Vec<String> {
        self.slots
            .iter()
            .filter_map(|s| s.lock().closed.clone())
            .collect()
    }

    /// Clears per-run state and starts counting events of run `run` (must be > 0).
    pub fn begin_run(&self, run: u32) {
        // Stop counting the old run first, so nothing lands in a cleared slot under the old number.
        self.run.store(0, Ordering::SeqCst);
        let mut live = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let mut s = s.lock();
            s.received.clear();
            s.duplicates = 0;
            live.push(s.live);
        }
        *self.live_at_start.lock() = live;
        for h in &self.shards {
            h.lock().reset();
        }
        self.delivered.store(0, Ordering::SeqCst);
        self.last_rx_us.store(0, Ordering::SeqCst);
        self.stale.store(0, Ordering::SeqCst);
        self.run.store(run, Ordering::SeqCst);
    }

    /// First receipts so far in the current run.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Records that socket `slot` received event `seq` of run `run`, sent at `sent_us`, now.
    pub fn record(&self, slot: usize, run: u32, seq: u64, sent_us: u64, now_us: u64) {
        if run == 0 || run != self.run.load(Ordering::Relaxed) {
            self.stale.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let first = {
            let mut s = self.slots[slot].lock();
            let first = s.mark(seq);
            if !first {
                s.duplicates += 1;
            }
            first
        };
        if first {
            self.delivered.fetch_add(1, Ordering::Relaxed);
            self.last_rx_us.fetch_max(now_us, Ordering::Relaxed);
            let latency = now_us.saturating_sub(sent_us).max(1);
            self.shards[slot % SHARDS].lock().saturating_record(latency);
        }
    }

    /// Deliveries owed by `issued` to the sockets live at the start of the run.
    pub fn expected(&self, issued: &Issued, channel_of: &[usize]) -> u64 {
        let live = self.live_at_start.lock();
        live.iter()
            .zip(channel_of)
            .filter(|(l, _)| **l)
            .map(|(_, &c)| issued.accepted(c))
            .sum()
    }

    /// Counts the current run against `issued`; `channel_of[i]` is socket `i`'s channel.
    pub fn finish(&self, issued: &Issued, channel_of: &[usize]) -> RunCounts {
        let live_at_start = self.live_at_start.lock().clone();
        let mut counts = RunCounts {
            expected: 0,
            delivered: 0,
            lost: 0,
            duplicates: 0,
            unexpected: 0,
            stale: self.stale.load(Ordering::SeqCst),
            sockets_dropped: 0,
            sockets_live: 0,
            latency: new_histogram(),
            last_rx_us: self.last_rx_us.load(Ordering::SeqCst),
        };
        for ((slot, &c), &was_live) in self.slots.iter().zip(channel_of).zip(&live_at_start) {
            let s = slot.lock();
            counts.duplicates += s.duplicates;
            let sent = issued.per_channel.get(c).copied().unwrap_or(0);
            let in_range = s.count_below(sent);
            let failed_received = issued
                .failed
                .iter()
                .filter(|(fc, seq)| *fc == c && s.has(*seq))
                .count() as u64;
            let got = in_range - failed_received;
            counts.unexpected += s.count_all() - got;
            if !was_live {
                continue;
            }
            counts.sockets_live += 1;
            if !s.live {
                counts.sockets_dropped += 1;
            }
            let owed = issued.accepted(c);
            counts.expected += owed;
            counts.delivered += got;
            counts.lost += owed.saturating_sub(got);
        }
        for h in &self.shards {
            counts
                .latency
                .add(&*h.lock())
                .expect("histograms with the same bounds add");
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_losses_duplicates_and_failed_calls_exactly() {
        let t = Tracker::new(3);
        for i in 0..3 {
            t.mark_live(i);
        }
        let channel_of = [0, 1, 0];
        t.begin_run(1);
        // Channel 0 got seqs 0..4 (seq 2 failed), channel 1 got 0..2.
        let issued = Issued {
            per_channel: vec![4, 2],
            failed: vec![(0, 2)],
        };
        for seq in [0, 1, 3, 3] {
            t.record(0, 1, seq, 10, 20);
        }
        t.record(1, 1, 0, 10, 30);
        t.record(1, 2, 1, 10, 30); // another run: stale
        t.record(2, 1, 2, 10, 30); // the failed one: unexpected
        t.record(2, 1, 9, 10, 30); // out of range: unexpected
        assert_eq!(t.expected(&issued, &channel_of), 3 + 2 + 3);
        let c = t.finish(&issued, &channel_of);
        assert_eq!(c.expected, 8);
        assert_eq!(c.delivered, 3 + 1);
        assert_eq!(c.lost, 4);
        assert_eq!(c.duplicates, 1);
        assert_eq!(c.unexpected, 2);
        assert_eq!(c.stale, 1);
        assert_eq!(c.latency.len(), 6);
        assert_eq!(c.last_rx_us, 30);
    }

    #[test]
    fn closed_sockets_count_as_dropped() {
        let t = Tracker::new(2);
        t.mark_live(0);
        t.mark_live(1);
        t.begin_run(1);
        t.mark_closed(1, "4100".into());
        let issued = Issued {
            per_channel: vec![1],
            failed: vec![],
        };
        t.record(0, 1, 0, 1, 2);
        let c = t.finish(&issued, &[0, 0]);
        assert_eq!(
            (c.expected, c.delivered, c.lost, c.sockets_dropped),
            (2, 1, 1, 1)
        );
    }

    #[test]
    fn count_below_handles_word_edges() {
        let mut s = Slot::default();
        for seq in [0, 63, 64, 127, 128] {
            assert!(s.mark(seq));
        }
        assert!(!s.mark(64));
        assert_eq!(s.count_below(64), 2);
        assert_eq!(s.count_below(65), 3);
        assert_eq!(s.count_below(128), 4);
        assert_eq!(s.count_below(1000), 5);
    }
}

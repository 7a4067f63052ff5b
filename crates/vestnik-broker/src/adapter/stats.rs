//! Counters of what the adapter moved, read by the metrics export as a plain snapshot.
//!
//! Counting must never block or allocate: the counters are bumped on the hot path of `send` and of
//! every received message.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of an adapter's counters since it was created. Every field only grows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdapterStats {
    /// Messages the backbone accepted (Redis: PUBLISH answered; NATS: handed to the client, since
    /// core NATS has no per-message ack).
    pub sent: u64,
    /// Messages handed to the cluster layer through `events()`.
    pub received: u64,
    /// Outgoing messages lost: refused by `send` (backbone down, queue full, over the server's max
    /// payload, adapter closed) or in a publish that failed with the connection.
    pub dropped_sends: u64,
    /// Of `dropped_sends`, the messages `send` had accepted (returned `true` for) and that were
    /// lost afterwards: held past the relay hold's age bound or still held at close, in a publish
    /// that failed with the connection, or still queued when the backbone's task ended. The
    /// cluster layer counts `send`'s refusals itself; these are the losses only the adapter sees.
    pub lost_after_send: u64,
    /// Incoming messages lost because the cluster layer's event queue was full or gone (NATS adds
    /// its client's slow-consumer reports, best effort).
    pub dropped_receives: u64,
    /// How many times the backbone connection was lost (each one emitted `Disconnected`).
    pub disconnects: u64,
}

impl AdapterStats {
    /// All lost messages, both ways.
    pub fn dropped(&self) -> u64 {
        self.dropped_sends + self.dropped_receives
    }
}

/// The live counters behind [`AdapterStats`], shared by every adapter implementation.
#[derive(Debug, Default)]
pub struct AdapterCounters {
    /// See [`AdapterStats::sent`].
    pub sent: AtomicU64,
    /// See [`AdapterStats::received`].
    pub received: AtomicU64,
    /// See [`AdapterStats::dropped_sends`].
    pub dropped_sends: AtomicU64,
    /// See [`AdapterStats::lost_after_send`].
    pub lost_after_send: AtomicU64,
    /// See [`AdapterStats::dropped_receives`].
    pub dropped_receives: AtomicU64,
    /// See [`AdapterStats::disconnects`].
    pub disconnects: AtomicU64,
}

impl AdapterCounters {
    /// Adds `n` to `counter`. Relaxed: the counters order nothing, they only count.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts `n` messages that `send` had accepted and that were lost afterwards: both
    /// `dropped_sends` and `lost_after_send`.
    pub fn lost_after_send(&self, n: u64) {
        if n > 0 {
            Self::add(&self.dropped_sends, n);
            Self::add(&self.lost_after_send, n);
        }
    }

    /// The current values.
    pub fn snapshot(&self) -> AdapterStats {
        AdapterStats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            dropped_sends: self.dropped_sends.load(Ordering::Relaxed),
            lost_after_send: self.lost_after_send.load(Ordering::Relaxed),
            dropped_receives: self.dropped_receives.load(Ordering::Relaxed),
            disconnects: self.disconnects.load(Ordering::Relaxed),
        }
    }
}

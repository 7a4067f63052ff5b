//! The relay hold: while the backbone link is down, the shell keeps the messages `send` accepted,
//! in order, bounded by age ([`HoldLimits::time`]) and by memory ([`HoldLimits::bytes`]), and
//! hands them to the backbone, oldest first, before any newer message once the link is back.
//!
//! [`Hold`] is plain data: it never blocks, never awaits and never reads the clock itself (the
//! caller passes `now`), so its bounds are unit-tested exactly. It must never drop a message
//! without the caller learning of it: `push` refuses what does not fit, and `expire` returns how
//! many it let go, for the lost counters.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Destination;

/// How much a shell may hold while its link is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldLimits {
    /// How long a held message stays deliverable; older ones are dropped and counted as lost.
    /// Zero disables the hold: `send` refuses while the link is down, as before the hold existed.
    pub time: Duration,
    /// The most bytes held at once (payloads plus a fixed per-message overhead); a message that
    /// does not fit is refused by `send`.
    pub bytes: usize,
}

impl HoldLimits {
    /// The default age bound: 10 s, the "backbone restart or cut" budget, and as long as
    /// the default `node_timeout_ms`, after which the other nodes judge this one dead anyway.
    pub const DEFAULT_TIME: Duration = Duration::from_secs(10);
    /// The default memory bound: 64 MiB, about 10 s of 60,000 relays/s of 100-byte events.
    pub const DEFAULT_BYTES: usize = 64 * 1024 * 1024;
    /// No hold at all.
    pub const NONE: Self = Self {
        time: Duration::ZERO,
        bytes: 0,
    };
}

impl Default for HoldLimits {
    fn default() -> Self {
        Self {
            time: Self::DEFAULT_TIME,
            bytes: Self::DEFAULT_BYTES,
        }
    }
}

/// What one held message costs beyond its payload: its slot and the `Bytes` handle.
const OVERHEAD: usize = std::mem::size_of::<Held>();

/// One held message and when it was accepted.
#[derive(Debug)]
struct Held {
    at: Instant,
    to: Destination,
    payload: Bytes,
}

/// The held messages, oldest first, with their byte total.
#[derive(Debug)]
pub(super) struct Hold {
    limits: HoldLimits,
    queue: VecDeque<Held>,
    bytes: usize,
}

impl Hold {
    /// An empty hold with `limits`.
    pub(super) fn new(limits: HoldLimits) -> Self {
        Self {
            limits,
            queue: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Whether nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many messages are held.
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Drops the messages older than the age bound at `now`; returns how many.
    pub(super) fn expire(&mut self, now: Instant) -> u64 {
        let mut n = 0;
        while let Some(front) = self.queue.front() {
            if now.saturating_duration_since(front.at) < self.limits.time {
                break;
            }
            self.take_front();
            n += 1;
        }
        n
    }

    /// Holds `payload` for `to`, accepted at `now`. Refuses it (returning it) when the hold is
    /// disabled or the message would pass the memory bound; the caller counts the refusal.
    pub(super) fn push(
        &mut self,
        now: Instant,
        to: Destination,
        payload: Bytes,
    ) -> Result<(), Bytes> {
        let cost = payload.len().saturating_add(OVERHEAD);
        if self.limits.time.is_zero() || self.bytes.saturating_add(cost) > self.limits.bytes {
            return Err(payload);
        }
        self.bytes += cost;
        self.queue.push_back(Held {
            at: now,
            to,
            payload,
        });
        Ok(())
    }

    /// Whether a message of `len` payload bytes would be held now (before any expiry).
    pub(super) fn has_room(&self, len: usize) -> bool {
        !self.limits.time.is_zero()
            && self.bytes.saturating_add(len.saturating_add(OVERHEAD)) <= self.limits.bytes
    }

    /// Takes the oldest held message.
    pub(super) fn pop(&mut self) -> Option<(Destination, Bytes)> {
        self.take_front().map(|h| (h.to, h.payload))
    }

    /// When the oldest held message expires, if any is held.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.queue.front().map(|h| h.at + self.limits.time)
    }

    /// Empties the hold; returns how many messages it held.
    pub(super) fn clear(&mut self) -> u64 {
        let n = self.queue.len() as u64;
        self.queue.clear();
        self.bytes = 0;
        n
    }

    fn take_front(&mut self) -> Option<Held> {
        let held = self.queue.pop_front()?;
        self.bytes -= held.payload.len() + OVERHEAD;
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ms: u64, bytes: usize) -> HoldLimits {
        HoldLimits {
            time: Duration::from_millis(ms),
            bytes,
        }
    }

    #[test]
    fn keeps_order_and_gives_back_oldest_first() {
        let mut h = Hold::new(HoldLimits::default());
        let t = Instant::now();
        for i in 0..5u8 {
            h.push(t, Destination::Node(u64::from(i)), Bytes::from(vec![i]))
                .expect("room");
        }
        assert_eq!(h.len(), 5);
        for i in 0..5u8 {
            assert_eq!(
                h.pop(),
                Some((Destination::Node(u64::from(i)), Bytes::from(vec![i])))
            );
        }
        assert!(h.is_empty());
        assert_eq!(h.bytes, 0, "the byte total returns to zero");
    }

    #[test]
    fn the_age_bound_expires_exactly_the_old_ones() {
        let mut h = Hold::new(limits(1000, usize::MAX));
        let t = Instant::now();
        for ms in [0u64, 100, 500, 999, 1000] {
            let at = t + Duration::from_millis(ms);
            h.push(at, Destination::All, Bytes::from(ms.to_string()))
                .expect("room");
        }
        assert_eq!(h.next_expiry(), Some(t + Duration::from_millis(1000)));
        assert_eq!(h.expire(t + Duration::from_millis(999)), 0);
        // At 1.1 s the ones accepted at 0 and 100 ms are 1 s old or more.
        assert_eq!(h.expire(t + Duration::from_millis(1100)), 2);
        assert_eq!(h.pop().map(|(_, p)| p), Some(Bytes::from("500")));
        assert_eq!(h.expire(t + Duration::from_secs(10)), 2);
        assert!(h.is_empty() && h.next_expiry().is_none());
    }

    #[test]
    fn the_memory_bound_refuses_what_does_not_fit_and_frees_on_pop() {
        let room = 3 * (100 + OVERHEAD);
        let mut h = Hold::new(limits(10_000, room));
        let t = Instant::now();
        let p = Bytes::from(vec![7u8; 100]);
        for _ in 0..3 {
            h.push(t, Destination::All, p.clone()).expect("room for 3");
        }
        assert!(!h.has_room(100) && !h.has_room(0));
        assert_eq!(h.push(t, Destination::All, p.clone()), Err(p.clone()));
        assert_eq!(h.push(t, Destination::All, Bytes::new()), Err(Bytes::new()));
        h.pop();
        assert!(h.has_room(100) && !h.has_room(101));
        h.push(t, Destination::All, p.clone())
            .expect("room again after a pop");
        assert_eq!(h.clear(), 3);
        h.push(t, Destination::All, p).expect("room after clear");
    }

    #[test]
    fn a_zero_time_disables_the_hold() {
        let mut h = Hold::new(HoldLimits::NONE);
        assert!(h
            .push(Instant::now(), Destination::All, Bytes::new())
            .is_err());
        let mut h = Hold::new(limits(0, usize::MAX));
        assert!(h
            .push(Instant::now(), Destination::All, Bytes::new())
            .is_err());
    }
}

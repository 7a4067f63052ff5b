//! Channel history on this node: each channel's recent events with their positions, and the
//! settings that bound it.
//!
//! A channel's [`Stream`] numbers its events (the offset rises by exactly 1 per event) under one
//! mutex, and the publisher fans each event out while it still holds that mutex, so every subscriber
//! sees a channel's events in offset order. A subscribe that recovers takes the same mutex around
//! its registry join and its history read, so no event slips between the missed ones and the live
//! ones. The stream keeps the encoded frames themselves (shared `Bytes`, no copy), bounded by events
//! per channel, seconds kept, and bytes per app; a stream that is dropped (expired or evicted) is
//! gone with its epoch, and the next one starts a new epoch.
//!
//! Lock order: the history map's shard, then a stream's mutex, then the registry's channel shard.
//! A stream's mutex is never held while taking the history map's shard. This module must never
//! do IO, never await, and never serialise per subscriber.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Deserialize;
use vestnik_protocol::limits::{HISTORY_MAX_BYTES, HISTORY_SIZE, HISTORY_TTL_SECS};
use vestnik_protocol::message::{Position, Recover, RecoveryFailure};
use vestnik_protocol::ChannelName;

/// Bytes counted per kept event beyond its frame: the entry, its slot in the deque, the `Bytes`
/// header. An estimate, so the byte bound also holds for tiny events.
const ENTRY_OVERHEAD: usize = 64;

/// The share of `max_bytes` an eviction brings an app's history down to, in percent, so that one
/// eviction makes room for many publishes rather than one.
const EVICT_TO_PERCENT: usize = 90;

/// History settings of one app: the `[apps.history]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Whether channels keep history (and their events carry positions) unless a rule says otherwise.
    pub enabled: bool,
    /// Events each channel keeps.
    pub size: usize,
    /// Seconds an event is kept.
    pub ttl: u64,
    /// Bytes of history the app may hold on this node; over it, the channels published to longest
    /// ago lose theirs.
    pub max_bytes: usize,
    /// Per channel-name prefix overrides (`[[apps.history.channels]]`); the longest matching prefix
    /// wins.
    pub channels: Vec<HistoryRule>,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            size: HISTORY_SIZE,
            ttl: HISTORY_TTL_SECS,
            max_bytes: HISTORY_MAX_BYTES,
            channels: Vec::new(),
        }
    }
}

/// History settings for the channels whose names start with `prefix`; what it leaves out comes from
/// the app's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRule {
    /// The channel-name prefix, for example `private-chat-`.
    pub prefix: String,
    /// Whether these channels keep history.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Events each of these channels keeps.
    #[serde(default)]
    pub size: Option<usize>,
    /// Seconds an event is kept.
    #[serde(default)]
    pub ttl: Option<u64>,
}

/// The bounds of one channel's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Events kept.
    pub size: usize,
    /// How long an event is kept.
    pub ttl: Duration,
}

impl HistoryConfig {
    /// The bounds of `channel`'s history, or `None` where it keeps none.
    pub fn for_channel(&self, channel: &str) -> Option<StreamLimits> {
        let rule = self
            .channels
            .iter()
            .filter(|r| channel.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len());
        let enabled = rule.and_then(|r| r.enabled).unwrap_or(self.enabled);
        if !enabled {
            return None;
        }
        Some(StreamLimits {
            size: rule.and_then(|r| r.size).unwrap_or(self.size).max(1),
            ttl: Duration::from_secs(rule.and_then(|r| r.ttl).unwrap_or(self.ttl)),
        })
    }
}

/// One kept event.
#[derive(Debug)]
struct Entry {
    offset: u64,
    frame: Bytes,
    at: Instant,
}

impl Entry {
    fn cost(&self) -> usize {
        self.frame.len() + ENTRY_OVERHEAD
    }
}

/// One channel's history: its epoch, its last offset, and its kept events, oldest first, with
/// consecutive offsets.
#[derive(Debug)]
pub struct Stream {
    epoch: Arc<str>,
    top: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    limits: StreamLimits,
    /// When the stream last changed (created or published to), for expiry and eviction.
    touched: Instant,
    /// Dropped from the map: whoever locked it late must look the channel up again.
    dead: bool,
}

impl Stream {
    fn new(limits: StreamLimits, now: Instant) -> Self {
        Self {
            epoch: new_epoch(),
            top: 0,
            entries: VecDeque::new(),
            bytes: 0,
            limits,
            touched: now,
            dead: false,
        }
    }

    /// The position of the channel's last event (offset 0 before the first).
    pub fn position(&self) -> Position<'_> {
        Position {
            epoch: &self.epoch,
            offset: self.top,
        }
    }

    /// Events kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no event is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Numbers the next event, has `encode` build its frame at that position, and keeps it. Returns
    /// the frame and the bytes added and freed.
    fn append(
        &mut self,
        now: Instant,
        encode: impl FnOnce(Position<'_>) -> Bytes,
    ) -> (Bytes, usize, usize) {
        self.top += 1;
        self.touched = now;
        let frame = encode(Position {
            epoch: &self.epoch,
            offset: self.top,
        });
        let entry = Entry {
            offset: self.top,
            frame: frame.clone(),
            at: now,
        };
        let added = entry.cost();
        self.bytes += added;
        self.entries.push_back(entry);
        let freed = self.trim(now);
        (frame, added, freed)
    }

    /// Drops events over the size bound or past their time; returns the bytes freed.
    fn trim(&mut self, now: Instant) -> usize {
        let mut freed = 0;
        while let Some(front) = self.entries.front() {
            let expired = now.saturating_duration_since(front.at) >= self.limits.ttl;
            if self.entries.len() <= self.limits.size && !expired {
                break;
            }
            freed += front.cost();
            self.entries.pop_front();
        }
        self.bytes -= freed;
        freed
    }

    /// The frames of the events after `from`, oldest first, if this stream can tell all of them and
    /// they are at most `max`.
    pub fn since(&self, from: &Recover, max: usize) -> Result<Vec<Bytes>, RecoveryFailure> {
        if *from.epoch != *self.epoch || from.offset > self.top {
            return Err(RecoveryFailure::EpochChanged);
        }
        let missed = self.top - from.offset;
        if missed == 0 {
            return Ok(Vec::new());
        }
        let Some(first) = self.entries.front().map(|e| e.offset) else {
            return Err(RecoveryFailure::TooOld);
        };
        if first > from.offset + 1 || missed > max as u64 {
            return Err(RecoveryFailure::TooOld);
        }
        let skip = usize::try_from(from.offset + 1 - first).unwrap_or(usize::MAX);
        Ok(self
            .entries
            .iter()
            .skip(skip)
            .map(|e| e.frame.clone())
            .collect())
    }

    /// Whether the stream has outlived its events: nothing kept and untouched for a whole `ttl`.
    fn expired(&self, now: Instant) -> bool {
        self.entries.is_empty() && now.saturating_duration_since(self.touched) >= self.limits.ttl
    }
}

/// A fresh epoch: 48 random bits in hex. A restart or a dropped stream gets another one, so a
/// position from before can never be taken for one after.
fn new_epoch() -> Arc<str> {
    let bits: u64 = rand::random::<u64>() & 0xffff_ffff_ffff;
    Arc::from(format!("{bits:012x}"))
}

/// The history of one app's channels on this node.
#[derive(Debug, Default)]
pub struct History {
    streams: DashMap<ChannelName, Arc<Mutex<Stream>>>,
    /// Bytes kept over all streams (frames plus [`ENTRY_OVERHEAD`] each).
    bytes: AtomicUsize,
    /// One eviction at a time; the others publish on.
    evicting: AtomicBool,
}

impl History {
    /// Runs `f` on `channel`'s stream under its mutex, creating the stream (with a new epoch) if it
    /// has none. Whatever `f` fans out is ordered with every other use of the stream.
    pub(crate) fn with_stream<R>(
        &self,
        channel: &ChannelName,
        limits: StreamLimits,
        now: Instant,
        f: impl FnOnce(&mut Stream) -> R,
    ) -> R {
        let mut f = Some(f);
        loop {
            let stream = match self.streams.get(channel) {
                Some(s) => s.clone(),
                None => self
                    .streams
                    .entry(channel.clone())
                    .or_insert_with(|| Arc::new(Mutex::new(Stream::new(limits, now))))
                    .clone(),
            };
            let mut s = stream.lock();
            if s.dead {
                // Dropped between the lookup and the lock: the next lookup finds or makes its heir.
                continue;
            }
            s.limits = limits;
            let f = f.take().expect("the loop returns right after the one call");
            return f(&mut s);
        }
    }

    /// Appends an event to `channel`'s stream and hands its frame to `deliver` while the stream is
    /// still locked, so that deliveries keep offset order. `encode` builds the frame at its
    /// position; it runs once.
    pub(crate) fn publish<R>(
        &self,
        channel: &ChannelName,
        limits: StreamLimits,
        now: Instant,
        encode: impl FnOnce(Position<'_>) -> Bytes,
        deliver: impl FnOnce(&Bytes) -> R,
    ) -> R {
        self.with_stream(channel, limits, now, |s| {
            let (frame, added, freed) = s.append(now, encode);
            self.bytes.fetch_add(added, Ordering::Relaxed);
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            deliver(&frame)
        })
    }

    /// If the app holds more than `max_bytes`, drops whole streams, those published to longest ago
    /// first, until it holds at most [`EVICT_TO_PERCENT`] of it. Their channels start new epochs.
    /// Call it with no stream locked.
    pub(crate) fn evict_over(&self, max_bytes: usize) {
        if self.bytes.load(Ordering::Relaxed) <= max_bytes
            || self.evicting.swap(true, Ordering::Acquire)
        {
            return;
        }
        let mut by_age: Vec<(Instant, ChannelName)> = self
            .streams
            .iter()
            .map(|e| (e.value().lock().touched, e.key().clone()))
            .collect();
        by_age.sort_unstable_by_key(|(touched, _)| *touched);
        let target = max_bytes / 100 * EVICT_TO_PERCENT;
        for (_, channel) in by_age {
            if self.bytes.load(Ordering::Relaxed) <= target {
                break;
            }
            self.streams.remove_if(&channel, |_, s| self.drop_stream(s));
        }
        self.evicting.store(false, Ordering::Release);
    }

    /// Drops events past their time, and the streams left with none for a whole `ttl`.
    pub(crate) fn purge_expired(&self, now: Instant) {
        self.streams.retain(|_, s| {
            let mut g = s.lock();
            let freed = g.trim(now);
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            if !g.expired(now) {
                return true;
            }
            drop(g);
            !self.drop_stream(s)
        });
    }

    /// Marks a stream dead and takes its bytes off the app's count; always `true`, for `remove_if`.
    fn drop_stream(&self, s: &Mutex<Stream>) -> bool {
        let mut g = s.lock();
        g.dead = true;
        self.bytes.fetch_sub(g.bytes, Ordering::Relaxed);
        g.bytes = 0;
        g.entries = VecDeque::new();
        true
    }

    /// Bytes of history this app holds on this node.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Channels with a stream on this node.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The position of `channel`'s last event, if it has a stream here.
    pub fn position(&self, channel: &str) -> Option<(String, u64)> {
        let s = self.streams.get(channel)?.clone();
        let g = s.lock();
        Some((g.epoch.to_string(), g.top))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(size: usize, ttl_secs: u64) -> StreamLimits {
        StreamLimits {
            size,
            ttl: Duration::from_secs(ttl_secs),
        }
    }

    fn frame(p: Position<'_>) -> Bytes {
        Bytes::from(format!("{}:{}", p.epoch, p.offset))
    }

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn recover(epoch: &str, offset: u64) -> Recover {
        Recover {
            epoch: epoch.into(),
            offset,
        }
    }

    #[test]
    fn offsets_rise_by_one_and_frames_are_kept_in_order() {
        let h = History::default();
        let c = channel("c");
        let now = Instant::now();
        let seen: Vec<Bytes> = (0..5)
            .map(|_| h.publish(&c, limits(10, 60), now, frame, Bytes::clone))
            .collect();
        let (epoch, top) = h.position("c").unwrap();
        assert_eq!(top, 5);
        let want: Vec<Bytes> = (1..=5)
            .map(|o| Bytes::from(format!("{epoch}:{o}")))
            .collect();
        assert_eq!(seen, want);
        let missed = h.with_stream(&c, limits(10, 60), now, |s| {
            s.since(&recover(&epoch, 2), 100).unwrap()
        });
        assert_eq!(missed, want[2..]);
    }

    #[test]
    fn size_and_time_bound_a_stream_and_recovery_says_too_old() {
        let h = History::default();
        let c = channel("c");
        let t0 = Instant::now();
        for _ in 0..5 {
            h.publish(&c, limits(3, 60), t0, frame, |_| ());
        }
        let (epoch, _) = h.position("c").unwrap();
        h.with_stream(&c, limits(3, 60), t0, |s| {
            assert_eq!(s.len(), 3);
            // Events 3, 4, 5 kept: from 2 all are there, from 1 event 2 is gone.
            assert_eq!(s.since(&recover(&epoch, 2), 100).unwrap().len(), 3);
            assert_eq!(
                s.since(&recover(&epoch, 1), 100),
                Err(RecoveryFailure::TooOld)
            );
            assert_eq!(
                s.since(&recover(&epoch, 2), 2),
                Err(RecoveryFailure::TooOld),
                "more missed than one recovery replays"
            );
            assert_eq!(s.since(&recover(&epoch, 5), 100).unwrap().len(), 0);
            assert_eq!(
                s.since(&recover(&epoch, 6), 100),
                Err(RecoveryFailure::EpochChanged)
            );
            assert_eq!(
                s.since(&recover("other", 5), 100),
                Err(RecoveryFailure::EpochChanged)
            );
        });
        assert_eq!(
            h.bytes(),
            3 * (frame(Position {
                epoch: &epoch,
                offset: 3
            })
            .len()
                + ENTRY_OVERHEAD)
        );
        // Past the ttl the events go, then the stream, and its bytes.
        h.purge_expired(t0 + Duration::from_secs(61));
        assert_eq!(h.bytes(), 0);
        assert_eq!(h.stream_count(), 0);
        // The next event starts another epoch at offset 1.
        h.publish(
            &c,
            limits(3, 60),
            t0 + Duration::from_secs(62),
            frame,
            |_| (),
        );
        let (epoch2, top) = h.position("c").unwrap();
        assert_ne!(epoch2, epoch);
        assert_eq!(top, 1);
    }

    #[test]
    fn expired_history_of_many_channels_is_freed() {
        let h = History::default();
        let t0 = Instant::now();
        for i in 0..10_000 {
            h.publish(
                &channel(&format!("c-{i}")),
                limits(10, 5),
                t0,
                frame,
                |_| (),
            );
        }
        assert_eq!(h.stream_count(), 10_000);
        assert!(h.bytes() > 10_000 * ENTRY_OVERHEAD);
        h.purge_expired(t0 + Duration::from_secs(5));
        assert_eq!(h.stream_count(), 0);
        assert_eq!(h.bytes(), 0);
    }

    #[test]
    fn over_the_byte_bound_the_oldest_streams_are_evicted() {
        let h = History::default();
        let t0 = Instant::now();
        for i in 0..100u64 {
            let at = t0 + Duration::from_millis(i);
            h.publish(
                &channel(&format!("c-{i}")),
                limits(10, 60),
                at,
                frame,
                |_| (),
            );
        }
        let per = h.bytes() / 100;
        let old_epoch = h.position("c-0").unwrap().0;
        h.evict_over(per * 50);
        assert!(
            h.bytes() <= per * 50 / 100 * EVICT_TO_PERCENT,
            "{}",
            h.bytes()
        );
        assert!(h.position("c-0").is_none(), "the oldest went first");
        assert!(h.position("c-99").is_some(), "the newest stayed");
        // The evicted channel starts a new epoch: an old position no longer recovers.
        let c0 = channel("c-0");
        h.publish(&c0, limits(10, 60), t0, frame, |_| ());
        h.with_stream(&c0, limits(10, 60), t0, |s| {
            assert_eq!(
                s.since(&recover(&old_epoch, 1), 100),
                Err(RecoveryFailure::EpochChanged)
            );
        });
    }

    #[test]
    fn settings_per_prefix_longest_wins() {
        let cfg = HistoryConfig {
            channels: vec![
                HistoryRule {
                    prefix: "private-".into(),
                    enabled: None,
                    size: Some(500),
                    ttl: None,
                },
                HistoryRule {
                    prefix: "private-noisy-".into(),
                    enabled: Some(false),
                    size: None,
                    ttl: None,
                },
            ],
            ..HistoryConfig::default()
        };
        assert_eq!(
            cfg.for_channel("public"),
            Some(limits(HISTORY_SIZE, HISTORY_TTL_SECS))
        );
        assert_eq!(
            cfg.for_channel("private-a"),
            Some(limits(500, HISTORY_TTL_SECS))
        );
        assert_eq!(cfg.for_channel("private-noisy-a"), None);
        let off = HistoryConfig {
            enabled: false,
            channels: vec![HistoryRule {
                prefix: "orders-".into(),
                enabled: Some(true),
                size: None,
                ttl: Some(10),
            }],
            ..HistoryConfig::default()
        };
        assert_eq!(off.for_channel("chat"), None);
        assert_eq!(off.for_channel("orders-1"), Some(limits(HISTORY_SIZE, 10)));
    }
}

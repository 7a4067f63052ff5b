//! Channel history on this node: each channel's recent events with their positions, and the
//! settings that bound it.
//!
//! A channel's [`Stream`] numbers its events (the offset rises by exactly 1 per event) under one
//! mutex, and the publisher fans each event out while it still holds that mutex, so every subscriber
//! sees a channel's events in offset order. A subscribe that recovers takes the same mutex around
//! its registry join and its history read, so no event slips between the missed ones and the live
//! ones. The stream keeps the encoded frames themselves (shared `Bytes`, no copy), bounded by events
//! per channel, seconds kept, and bytes per app. A stream evicted for the byte bound is gone with
//! its epoch, and the next one starts a new epoch. A stream that expired (a quiet channel: all its
//! events past their time) leaves its epoch and last offset behind for [`QUIET_KEEP`], and the
//! channel's next stream goes on from them, so a client that saw the last event before the quiet
//! spell recovers with nothing missed instead of being told to reload.
//!
//! Lock order: the history map's shard, then a stream's mutex, then the registry's channel shard.
//! The map of quiet channels' positions is a leaf: taken under a history map's shard, never the
//! other way round.
//! A stream's mutex is never held while taking the history map's shard. This module must never
//! do IO, never await, and never serialise per subscriber.

use std::collections::{BTreeMap, VecDeque};
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

mod mirror;
mod page;

pub(crate) use mirror::Held;
use page::WallClock;
pub use page::{EventFields, HistoryPage, HistoryRefusal, KeptEvent};

/// Bytes counted per kept event beyond its frame: the entry, its slot in the deque, the `Bytes`
/// header. An estimate, so the byte bound also holds for tiny events.
const ENTRY_OVERHEAD: usize = 64;

/// The share of `max_bytes` an eviction brings an app's history down to, in percent, so that one
/// eviction makes room for many publishes rather than one.
const EVICT_TO_PERCENT: usize = 90;

/// How long a quiet channel's epoch and last offset outlive its expired stream.
pub const QUIET_KEEP: Duration = Duration::from_secs(24 * 3600);

/// Most quiet channels' positions kept per app on a node (about 100 bytes each); over it, the
/// longest-quiet are forgotten first, and their channels start a new epoch.
pub const QUIET_MAX: usize = 100_000;

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
    /// In a cluster with a history store: events numbered beyond `top + 1`, held until the ones
    /// before them arrive (see `mirror`). Always empty on a single node.
    pending: BTreeMap<u64, Held>,
    /// In a cluster with a history store: the epoch and offsets are the store's (set by the first
    /// numbered event or read). A stream made by a subscribe before that tells no position.
    numbered: bool,
    /// A gap fill is scheduled for this stream (at most one at a time; see `mirror`).
    fill_scheduled: bool,
    /// Epochs the stream left for newer ones (the last few; see `mirror`).
    retired: Vec<Arc<str>>,
}

/// The epoch and last offset of a channel whose stream expired.
#[derive(Debug, Clone)]
struct Quiet {
    epoch: Arc<str>,
    top: u64,
    since: Instant,
}

impl Stream {
    /// A stream for a channel: it goes on from `quiet` (the epoch and last offset of the channel's
    /// expired stream) when there is one, else it starts a new epoch at offset 0.
    fn new(limits: StreamLimits, now: Instant, quiet: Option<Quiet>) -> Self {
        let (epoch, top) = quiet.map_or_else(|| (new_epoch(), 0), |q| (q.epoch, q.top));
        Self {
            epoch,
            top,
            entries: VecDeque::new(),
            bytes: 0,
            limits,
            touched: now,
            dead: false,
            pending: BTreeMap::new(),
            numbered: false,
            fill_scheduled: false,
            retired: Vec::new(),
        }
    }

    /// Whether the stream's position is the store's (in a cluster with a history store).
    pub(crate) fn is_numbered(&self) -> bool {
        self.numbered
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

    /// Up to `limit` kept events after `after` (from the oldest kept without it), oldest first, with
    /// the stream's bounds; events past their time that no publish trimmed yet are left out. A
    /// position of another epoch, or one older than the oldest kept event, is refused with the
    /// stream's bounds, so that the caller knows where to go on from.
    fn page(
        &self,
        after: Option<&Recover>,
        limit: usize,
        now: Instant,
        clock: &WallClock,
    ) -> Result<HistoryPage, HistoryRefusal> {
        let kept = self
            .entries
            .iter()
            .skip_while(|e| now.saturating_duration_since(e.at) >= self.limits.ttl);
        let first_offset = kept.clone().next().map_or(self.top + 1, |e| e.offset);
        let mut page = HistoryPage {
            epoch: Some(self.epoch.to_string()),
            first_offset,
            last_offset: self.top,
            events: Vec::new(),
        };
        let from = match after {
            None => 0,
            Some(r) if *r.epoch != *self.epoch || r.offset > self.top => {
                return Err(HistoryRefusal::new(RecoveryFailure::EpochChanged, page));
            }
            Some(r) if r.offset + 1 < first_offset => {
                return Err(HistoryRefusal::new(RecoveryFailure::TooOld, page));
            }
            Some(r) => r.offset,
        };
        page.events = kept
            .skip_while(|e| e.offset <= from)
            .take(limit)
            .map(|e| KeptEvent {
                offset: e.offset,
                frame: e.frame.clone(),
                published_at_ms: clock.millis(e.at),
            })
            .collect();
        Ok(page)
    }

    /// Whether the stream has outlived its events: nothing kept and untouched for a whole `ttl`.
    fn expired(&self, now: Instant) -> bool {
        self.entries.is_empty() && now.saturating_duration_since(self.touched) >= self.limits.ttl
    }
}

/// A fresh epoch: 48 random bits in hex. A restart or a dropped stream gets another one, so a
/// position from before can never be taken for one after.
fn new_epoch() -> Arc<str> {
    crate::adapter::new_epoch()
}

/// The history of one app's channels on this node.
#[derive(Debug, Default)]
pub struct History {
    streams: DashMap<ChannelName, Arc<Mutex<Stream>>>,
    /// Bytes kept over all streams (frames plus [`ENTRY_OVERHEAD`] each).
    bytes: AtomicUsize,
    /// One eviction at a time; the others publish on.
    evicting: AtomicBool,
    /// For the wall-clock times of the history API.
    clock: WallClock,
    /// Positions of quiet channels, whose streams expired (see [`QUIET_KEEP`]).
    quiet: DashMap<ChannelName, Quiet>,
    /// In a cluster with a history store: channels this node delivered an event of without a
    /// position (the store was out of reach), and since when (see `mirror`).
    unnumbered: DashMap<ChannelName, Instant>,
    /// Events this node published without a position because the store failed.
    unnumbered_sends: std::sync::atomic::AtomicU64,
    /// Gaps before held events that the store could not fill (their events were lost here).
    gaps_skipped: std::sync::atomic::AtomicU64,
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
                    .or_insert_with(|| {
                        let quiet = self.quiet.remove(channel).map(|(_, q)| q);
                        Arc::new(Mutex::new(Stream::new(limits, now, quiet)))
                    })
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

    /// Drops events past their time, and the streams left with none for a whole `ttl` (keeping
    /// their positions as quiet ones); forgets quiet positions past [`QUIET_KEEP`] or over
    /// [`QUIET_MAX`].
    pub(crate) fn purge_expired(&self, now: Instant) {
        self.streams.retain(|channel, s| {
            let mut g = s.lock();
            let freed = g.trim(now);
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            if !g.expired(now) {
                return true;
            }
            let quiet = Quiet {
                epoch: Arc::clone(&g.epoch),
                top: g.top,
                since: g.touched,
            };
            drop(g);
            self.drop_stream(s);
            if quiet.top > 0 {
                self.quiet.insert(channel.clone(), quiet);
            }
            false
        });
        self.quiet
            .retain(|_, q| now.saturating_duration_since(q.since) < QUIET_KEEP);
        self.unnumbered
            .retain(|_, since| now.saturating_duration_since(*since) < QUIET_KEEP);
        let over = self.quiet.len().saturating_sub(QUIET_MAX);
        if over > 0 {
            let mut by_age: Vec<(Instant, ChannelName)> = self
                .quiet
                .iter()
                .map(|e| (e.value().since, e.key().clone()))
                .collect();
            by_age.sort_unstable_by_key(|(since, _)| *since);
            for (_, channel) in by_age.into_iter().take(over) {
                self.quiet.remove(&channel);
            }
        }
    }

    /// Quiet channels whose positions are kept.
    pub fn quiet_count(&self) -> usize {
        self.quiet.len()
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

    /// Up to `limit` of `channel`'s kept events after `after` (from the oldest kept without it), for
    /// the history API. Reads only: a channel without a stream gets an empty page with no epoch,
    /// and a position then is refused as `epoch_changed`.
    pub fn page(
        &self,
        channel: &str,
        after: Option<&Recover>,
        limit: usize,
        now: Instant,
    ) -> Result<HistoryPage, HistoryRefusal> {
        if let Some(stream) = self.streams.get(channel).map(|s| s.clone()) {
            let g = stream.lock();
            if !g.dead {
                return g.page(after, limit, now, &self.clock);
            }
        }
        if let Some(q) = self.quiet.get(channel).map(|q| q.clone()) {
            let page = HistoryPage {
                epoch: Some(q.epoch.to_string()),
                first_offset: q.top + 1,
                last_offset: q.top,
                events: Vec::new(),
            };
            return match after {
                Some(r) if *r.epoch != *q.epoch || r.offset > q.top => {
                    Err(HistoryRefusal::new(RecoveryFailure::EpochChanged, page))
                }
                Some(r) if r.offset < q.top => {
                    Err(HistoryRefusal::new(RecoveryFailure::TooOld, page))
                }
                _ => Ok(page),
            };
        }
        let none = HistoryPage {
            first_offset: 1,
            ..HistoryPage::default()
        };
        match after {
            Some(_) => Err(HistoryRefusal::new(RecoveryFailure::EpochChanged, none)),
            None => Ok(none),
        }
    }

    /// The position of `channel`'s last event, if it has a stream here.
    pub fn position(&self, channel: &str) -> Option<(String, u64)> {
        if let Some(s) = self.streams.get(channel).map(|s| s.clone()) {
            let g = s.lock();
            if !g.dead {
                return Some((g.epoch.to_string(), g.top));
            }
        }
        let q = self.quiet.get(channel)?;
        Some((q.epoch.to_string(), q.top))
    }
}

#[cfg(test)]
mod tests;

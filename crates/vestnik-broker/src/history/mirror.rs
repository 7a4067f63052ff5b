//! A node's history in a cluster with a [`HistoryStore`](crate::adapter::HistoryStore): the
//! store numbers every event for the whole cluster, and each node's streams mirror what it
//! delivered, at the store's positions.
//!
//! Numbered events reach a node in any order (two nodes publish to one channel at once; a relay
//! is resent after a backbone restart), so a stream takes an event only at `top + 1`: one further
//! on is held (`pending`) until the ones before it arrive, or until the cluster layer fetched them
//! from the store ([`History::fill`]) or gave them up ([`History::skip_gap`]). One at or below
//! `top` was delivered already and is dropped. So a node's subscribers see each channel's events
//! in offset order, once each, as on a single node, and the recovery read ([`Stream::since`]) and
//! its lock work unchanged. A stream's kept events may start later than the channel's history
//! (the node began hearing the channel then): a recovery that reaches further back first has the
//! cluster layer [`fill`](History::fill) the older events in from the store.
//!
//! Same lock order as the rest of the history. This module must never do IO or await.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use vestnik_protocol::message::Recover;
use vestnik_protocol::{ChannelName, SocketId};

use super::{Entry, History, Stream, StreamLimits};
use crate::adapter::Appended;

/// Events held behind one gap before the gap is given up at once (a bound on memory).
const MAX_PENDING: usize = 10_000;

/// Epochs a stream remembers having left, so that a late event of one is delivered rather than
/// taken for a newer epoch.
const RETIRED: usize = 4;

/// A numbered event as a node delivers it: the frame (with its position), who to leave out, and,
/// on cache channels, the data string the cache keeps.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// The frame, with the event's position.
    pub frame: Bytes,
    /// The socket that must not get it (the publisher's `socket_id`, a client event's sender).
    pub except: Option<SocketId>,
    /// The data string, kept only on cache channels.
    pub cache_data: Option<String>,
}

/// What [`History::accept`] did with an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// Sockets the delivered events reached (the event, and held ones it released).
    pub delivered: usize,
    /// The event opened a gap: events before it are missing, and it is held. The cluster layer
    /// fetches the missing ones from the store after a moment.
    pub gap_opened: bool,
}

impl Stream {
    /// Starts the stream over in `epoch` just before `offset`, forgetting what it kept.
    fn restart(&mut self, epoch: &Arc<str>, offset: u64) -> usize {
        let freed = self.bytes;
        self.epoch = Arc::clone(epoch);
        self.top = offset.saturating_sub(1);
        self.entries.clear();
        self.bytes = 0;
        self.pending.clear();
        self.numbered = true;
        self.fill_scheduled = false;
        freed
    }

    /// Keeps `frame` at `offset` (`top + 1`). Returns the bytes added and freed.
    fn keep(&mut self, offset: u64, frame: Bytes, now: Instant) -> (usize, usize) {
        self.top = offset;
        self.touched = now;
        let entry = Entry {
            offset,
            frame,
            at: now,
        };
        let added = entry.cost();
        self.bytes += added;
        self.entries.push_back(entry);
        (added, self.trim(now))
    }

    /// Whether a recovery from `from` can be answered from this stream alone.
    fn covers(&self, from: &Recover) -> bool {
        if !self.numbered || *from.epoch != *self.epoch || from.offset > self.top {
            return false;
        }
        from.offset == self.top
            || self
                .entries
                .front()
                .is_some_and(|e| e.offset <= from.offset + 1)
    }
}

impl History {
    /// Takes an event the store numbered `at`: delivers it (with `deliver`, under
    /// the stream's lock) if it is the next one, then any held ones it releases; holds it if
    /// events before it are missing; drops it if it was delivered already.
    pub(crate) fn accept(
        &self,
        channel: &ChannelName,
        limits: StreamLimits,
        now: Instant,
        at: &Appended,
        event: Held,
        mut deliver: impl FnMut(&Held) -> usize,
    ) -> Accepted {
        let (epoch, offset) = (&at.epoch, at.offset);
        self.with_stream(channel, limits, now, |s| {
            let mut delivered = 0;
            if !s.numbered {
                // The first numbered event this stream sees: it starts here.
                let freed = s.restart(epoch, offset);
                self.bytes.fetch_sub(freed, Ordering::Relaxed);
            } else if s.epoch != *epoch {
                if s.retired.iter().any(|r| r == epoch) {
                    // A late event of an epoch this stream already left: out it goes, untracked.
                    return Accepted {
                        delivered: deliver(&event),
                        gap_opened: false,
                    };
                }
                // A new epoch, which the store starts at offset 1: what is held of the old one
                // goes out first, then the stream waits for the new epoch's first event.
                while !s.pending.is_empty() {
                    delivered += self.release_all(s, now, &mut deliver);
                }
                let old = std::mem::replace(&mut s.epoch, Arc::clone(epoch));
                s.retired.push(old);
                if s.retired.len() > RETIRED {
                    s.retired.remove(0);
                }
                let freed = s.restart(epoch, 1);
                self.bytes.fetch_sub(freed, Ordering::Relaxed);
                // Whatever went out unnumbered lies before the new epoch.
                self.unnumbered.remove(channel);
            }
            if offset <= s.top || s.pending.contains_key(&offset) {
                return Accepted {
                    delivered,
                    gap_opened: false,
                };
            }
            if offset > s.top + 1 {
                s.pending.insert(offset, event);
                if s.pending.len() > MAX_PENDING {
                    delivered = self.release_all(s, now, &mut deliver);
                }
            } else {
                delivered = self.deliver_at(s, offset, event, now, &mut deliver);
                delivered += self.release(s, now, &mut deliver);
            }
            // Events held behind a gap and nobody fetching it yet: the caller schedules a fill.
            let gap_opened = !s.pending.is_empty() && !s.fill_scheduled;
            s.fill_scheduled |= gap_opened;
            Accepted {
                delivered,
                gap_opened,
            }
        })
    }

    /// Keeps and delivers `event` at `offset` (`top + 1`).
    fn deliver_at(
        &self,
        s: &mut Stream,
        offset: u64,
        event: Held,
        now: Instant,
        deliver: &mut impl FnMut(&Held) -> usize,
    ) -> usize {
        let n = deliver(&event);
        let (added, freed) = s.keep(offset, event.frame, now);
        self.bytes.fetch_add(added, Ordering::Relaxed);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        n
    }

    /// Delivers the held events that now follow `top`, in order.
    fn release(
        &self,
        s: &mut Stream,
        now: Instant,
        deliver: &mut impl FnMut(&Held) -> usize,
    ) -> usize {
        let mut delivered = 0;
        while let Some(entry) = s.pending.first_entry() {
            if *entry.key() <= s.top {
                // Filled in from the store meanwhile: delivered already.
                entry.remove();
                continue;
            }
            if *entry.key() != s.top + 1 {
                break;
            }
            let (offset, event) = entry.remove_entry();
            delivered += self.deliver_at(s, offset, event, now, deliver);
        }
        delivered
    }

    /// Gives up the gap before the held events: delivers them all, in order, and keeps only them
    /// (a recovery across the gap then reads the store).
    fn release_all(
        &self,
        s: &mut Stream,
        now: Instant,
        deliver: &mut impl FnMut(&Held) -> usize,
    ) -> usize {
        let Some(first) = s.pending.keys().next().copied() else {
            return 0;
        };
        let pending = std::mem::take(&mut s.pending);
        let epoch = Arc::clone(&s.epoch);
        let freed = s.restart(&epoch, first);
        self.bytes.fetch_sub(freed, Ordering::Relaxed);
        s.pending = pending;
        self.release(s, now, deliver)
    }

    /// The gap of `channel`, if events are held behind one: the stream's epoch, the last offset
    /// delivered and the first offset held.
    pub(crate) fn gap(&self, channel: &str) -> Option<(Arc<str>, u64, u64)> {
        let stream = self.streams.get(channel)?.clone();
        let g = stream.lock();
        let first = *g.pending.keys().next()?;
        (!g.dead).then(|| (Arc::clone(&g.epoch), g.top, first))
    }

    /// Gives up `channel`'s gap before offset `first` if it is still open (the stream has not
    /// reached `first - 1`): delivers the held events as they are.
    pub(crate) fn skip_gap(
        &self,
        channel: &ChannelName,
        limits: StreamLimits,
        now: Instant,
        first: u64,
        mut deliver: impl FnMut(&Held) -> usize,
    ) -> usize {
        if self.gap(channel.as_str()).is_none() {
            return 0;
        }
        self.with_stream(channel, limits, now, |s| {
            if s.top + 1 >= first || s.pending.is_empty() {
                return 0;
            }
            self.release_all(s, now, &mut deliver)
        })
    }

    /// Ends a scheduled gap fill: `false` when no event is held any more (the next gap schedules
    /// a new fill), `true` when one still is (the fill goes on).
    pub(crate) fn gap_fill_goes_on(&self, channel: &str) -> bool {
        let Some(stream) = self.streams.get(channel).map(|s| s.clone()) else {
            return false;
        };
        let mut g = stream.lock();
        let goes_on = !g.dead && !g.pending.is_empty();
        g.fill_scheduled = goes_on;
        goes_on
    }

    /// Merges what the store holds of `channel` into its stream: `events` are the store's events
    /// after offset `after` (consecutive, oldest first; starting later than `after + 1` when the
    /// store dropped some), `top` its last offset. Those after the stream's `top` are delivered
    /// like [`accept`](Self::accept)ed ones (they fill a gap); those just before its oldest kept
    /// one are kept without delivery (a recovery reaches back to them). A stream that never took
    /// a numbered event starts at the store's epoch; one of another epoch that holds anything is
    /// left as it is. Returns the sockets reached.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn fill(
        &self,
        channel: &ChannelName,
        limits: StreamLimits,
        now: Instant,
        epoch: &Arc<str>,
        after: u64,
        top: u64,
        events: Vec<(u64, Held, Instant)>,
        mut deliver: impl FnMut(&Held) -> usize,
    ) -> usize {
        self.with_stream(channel, limits, now, |s| {
            if s.epoch != *epoch || !s.numbered {
                if s.numbered && (!s.entries.is_empty() || !s.pending.is_empty()) {
                    return 0;
                }
                let freed = s.restart(epoch, after.saturating_add(1));
                self.bytes.fetch_sub(freed, Ordering::Relaxed);
            } else if s.top < after {
                // Behind what the store tells (this node stopped hearing the channel for a
                // while): what it kept cannot be joined on to the events read. Held ones stay.
                let pending = std::mem::take(&mut s.pending);
                let freed = s.restart(epoch, after.saturating_add(1));
                self.bytes.fetch_sub(freed, Ordering::Relaxed);
                s.pending = pending;
            }
            let contiguous = events
                .first()
                .map_or(top <= after, |(o, _, _)| *o == after.saturating_add(1));
            if !contiguous {
                // The store lost events after `after`: nothing here may claim to follow on.
                if s.entries.is_empty() && s.pending.is_empty() && s.top < top {
                    s.top = top;
                }
                return 0;
            }
            let oldest = s.entries.front().map_or(s.top + 1, |e| e.offset);
            let mut delivered = 0;
            let mut older = Vec::new();
            for (offset, event, at) in events {
                if offset < oldest {
                    older.push((offset, event, at));
                } else if offset == s.top + 1 {
                    delivered += self.deliver_at(s, offset, event, now, &mut deliver);
                    delivered += self.release(s, now, &mut deliver);
                }
            }
            // Kept without delivery, newest first, while they join on to the oldest kept one.
            let mut next = oldest;
            for (offset, event, at) in older.into_iter().rev() {
                if offset + 1 != next || now.saturating_duration_since(at) >= s.limits.ttl {
                    break;
                }
                let entry = Entry {
                    offset,
                    frame: event.frame,
                    at,
                };
                let added = entry.cost();
                s.bytes += added;
                self.bytes.fetch_add(added, Ordering::Relaxed);
                s.entries.push_front(entry);
                next = offset;
            }
            delivered += self.release(s, now, &mut deliver);
            let freed = s.trim(now);
            self.bytes.fetch_sub(freed, Ordering::Relaxed);
            delivered
        })
    }

    /// Whether `channel`'s stream took its position from the store (an event, or a read).
    pub(crate) fn is_numbered(&self, channel: &str) -> bool {
        let Some(stream) = self.streams.get(channel).map(|s| s.clone()) else {
            return false;
        };
        let g = stream.lock();
        !g.dead && g.numbered
    }

    /// Whether a recovery from `from` on `channel` can be answered from this node's stream alone.
    pub(crate) fn covers(&self, channel: &str, from: &Recover) -> bool {
        let Some(stream) = self.streams.get(channel).map(|s| s.clone()) else {
            return false;
        };
        let g = stream.lock();
        !g.dead && g.covers(from)
    }

    /// This node delivered an event of `channel` without a position (the store was out of
    /// reach): refuses recoveries (`epoch_changed`) until an event of a new epoch arrives, since
    /// no position from before tells every event after it any more.
    pub(crate) fn mark_unnumbered(&self, channel: &ChannelName, now: Instant) {
        // The stream stays: it still orders the numbered events that come meanwhile.
        self.unnumbered.insert(channel.clone(), now);
    }

    /// Whether `channel` had an event delivered without a position since its last new epoch.
    pub(crate) fn is_unnumbered(&self, channel: &str) -> bool {
        self.unnumbered.contains_key(channel)
    }

    /// `at` in milliseconds since the Unix epoch.
    pub(crate) fn millis_of(&self, at: Instant) -> u64 {
        self.clock.millis(at)
    }

    /// The instant `unix_ms` milliseconds since the Unix epoch stands for on this node's clock.
    pub(crate) fn instant_of(&self, unix_ms: u64) -> Instant {
        self.clock.instant_of(unix_ms)
    }

    /// Counts an event this node published without a position (the store failed).
    pub(crate) fn count_unnumbered(&self) {
        self.unnumbered_sends.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a gap the store could not fill.
    pub(crate) fn count_gap_skipped(&self) {
        self.gaps_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Events this node published without a position because the history store failed.
    pub fn unnumbered_sends(&self) -> u64 {
        self.unnumbered_sends.load(Ordering::Relaxed)
    }

    /// Gaps before held events that the history store could not fill: their events never
    /// reached this node's subscribers.
    pub fn gaps_skipped(&self) -> u64 {
        self.gaps_skipped.load(Ordering::Relaxed)
    }
}

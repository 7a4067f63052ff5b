//! Relays that survive a backbone restart: the sender's [`SentLog`] and the receivers'
//! [`Inboxes`].
//!
//! Redis pub/sub and core NATS keep nothing for a subscriber that is away. After a backbone
//! restart the nodes reconnect one after another, and what a node that is back relays reaches
//! only the nodes already back: a node that reconnects a moment later never gets it. So every node
//! numbers its relays (1, 2, 3, … per process; a restarted node has a new id and starts again) and
//! keeps the encoded ones it sent in a [`SentLog`], bounded like the relay hold by age and bytes.
//! Every other message it sends carries the number of its last relay. A receiver keeps, per
//! origin, the last relay it delivered; a number above it (on a relay, a heartbeat, the `Sync`
//! that answers its `Hello`) means it missed some. It holds back what came after the gap, asks
//! the origin to `Resend` after its last, and delivers in order once the gap is filled, dropping
//! what it already delivered. What the origin no longer has comes back as `Missed` and is counted
//! lost; a gap nobody fills within the replay window is given up and counted the same way. So no
//! relay reaches a socket twice, the order within an origin is kept, and none is lost silently.
//!
//! With interest routing, a channel's relays go only to the nodes listening to its route shard,
//! so numbers are kept per origin and *lane* ([`Lane`]): the all-nodes lane, and one lane per
//! route shard. A node only sees the lanes it listens to, and a lane it starts listening to starts
//! at the number it first hears there, so a newly wanted shard never reads as a gap. The last
//! numbers of an origin's shard lanes travel in its `Sync`, so a node back from a backbone
//! restart sees the tail it missed on the lanes it knows; otherwise the next relay on the lane
//! shows the gap.
//!
//! Both types are plain data: they never block, never send, never read the clock (the caller
//! passes `now`), so every rule is unit-tested here. They must never deliver a relay twice or out
//! of order, and never drop one without returning it in a lost count.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::adapter::{HoldLimits, NodeId};

/// A relay sequence of one origin: `None`, the relays every node gets (terminations, cache
/// channels, and every relay when the cluster does not route by interest); `Some(shard)`, the
/// relays of one route shard, which only the nodes listening to it get. Each lane is numbered on
/// its own, so a node that does not listen to a shard never sees its numbers go by as a gap.
pub(super) type Lane = Option<u32>;

/// What one logged relay costs beyond its payload.
const OVERHEAD: usize = std::mem::size_of::<Sent>();

/// Relays held back behind one gap before the gap is given up at once: a bound on memory when an
/// origin relays far faster than its gap can be filled.
pub(super) const MAX_PENDING: usize = 1 << 16;

/// How often a receiver asks an origin again for the same gap: the `Resend` or its answer may be
/// lost while either node is still reconnecting.
pub(super) const ASK_AGAIN: Duration = Duration::from_millis(500);

/// An inbox not heard from for this long is forgotten (its origin died or left long ago); should
/// the origin speak again, it is treated as one this node never heard.
pub(super) const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// One relay this node sent, encoded, with its lane, number and when it was sent.
#[derive(Debug)]
struct Sent {
    lane: Lane,
    seq: u64,
    at: Instant,
    payload: Bytes,
}

/// A lane's numbering on the sending side.
#[derive(Debug, Clone, Copy)]
struct Numbering {
    /// The number the next relay of the lane gets.
    next: u64,
    /// When the lane's last relay was sent.
    last_at: Instant,
}

/// The relays this node sent recently, oldest first, within an age and a byte bound shared by
/// every lane, for peers that missed them.
#[derive(Debug)]
pub(super) struct SentLog {
    limits: HoldLimits,
    entries: VecDeque<Sent>,
    bytes: usize,
    lanes: HashMap<Lane, Numbering>,
}

/// What a peer that asked for relays after some number gets.
#[derive(Debug, PartialEq)]
pub(super) struct Replay {
    /// The relays that cannot be sent again end with this number (`Missed`), if any.
    pub(super) missed_upto: Option<u64>,
    /// The encoded relays to send again, in order.
    pub(super) payloads: Vec<Bytes>,
}

impl SentLog {
    /// An empty log; the first relay of every lane is number 1.
    pub(super) fn new(limits: HoldLimits) -> Self {
        Self {
            limits,
            entries: VecDeque::new(),
            bytes: 0,
            lanes: HashMap::new(),
        }
    }

    /// The number the next relay of `lane` gets.
    pub(super) fn next_seq(&self, lane: Lane) -> u64 {
        self.lanes.get(&lane).map_or(1, |n| n.next)
    }

    /// Logs relay `seq` of `lane` (which must be [`next_seq`](Self::next_seq)) sent at `now`,
    /// and lets go of what passes the bounds.
    pub(super) fn record(&mut self, now: Instant, lane: Lane, seq: u64, payload: Bytes) {
        debug_assert_eq!(seq, self.next_seq(lane), "relays are logged in order");
        self.lanes.insert(
            lane,
            Numbering {
                next: seq + 1,
                last_at: now,
            },
        );
        self.expire(now);
        let cost = payload.len().saturating_add(OVERHEAD);
        if self.limits.time.is_zero() || cost > self.limits.bytes {
            return;
        }
        while self.bytes + cost > self.limits.bytes {
            self.pop();
        }
        self.bytes += cost;
        self.entries.push_back(Sent {
            lane,
            seq,
            at: now,
            payload,
        });
    }

    /// The relays of `lane` numbered above `after`, and which of them are gone from the log.
    pub(super) fn since(&mut self, now: Instant, lane: Lane, after: u64) -> Replay {
        self.expire(now);
        let next = self.next_seq(lane);
        let last = next - 1;
        let kept = self.entries.iter().filter(|s| s.lane == lane);
        let first_kept = kept.clone().next().map_or(next, |s| s.seq);
        let missed_upto = (after < last && after + 1 < first_kept).then(|| first_kept - 1);
        let payloads = kept
            .filter(|s| s.seq > after)
            .map(|s| s.payload.clone())
            .collect();
        Replay {
            missed_upto,
            payloads,
        }
    }

    /// The last number of every shard lane that relayed within the log's age bound (10 s when
    /// the log keeps nothing), for a `Sync`: a receiver that missed the tail of a lane while it
    /// was away sees it there. Older lanes could not be resent anyway.
    pub(super) fn recent_lanes(&self, now: Instant) -> Vec<(u32, u64)> {
        let window = if self.limits.time.is_zero() {
            HoldLimits::DEFAULT_TIME
        } else {
            self.limits.time
        };
        let mut lanes: Vec<(u32, u64)> = self
            .lanes
            .iter()
            .filter(|(_, n)| now.saturating_duration_since(n.last_at) < window)
            .filter_map(|(lane, n)| lane.map(|shard| (shard, n.next - 1)))
            .collect();
        lanes.sort_unstable();
        lanes
    }

    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            if now.saturating_duration_since(front.at) < self.limits.time {
                break;
            }
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(s) = self.entries.pop_front() {
            self.bytes -= s.payload.len() + OVERHEAD;
        }
    }
}

/// What this node knows of one origin's relays on one lane.
#[derive(Debug)]
struct Inbox<T> {
    /// The last relay delivered (or counted lost).
    last: u64,
    /// The highest number known to exist.
    top: u64,
    /// Relays received past a gap, waiting for it to fill.
    pending: BTreeMap<u64, T>,
    /// Since when `top > last`.
    gap_since: Option<Instant>,
    /// When the origin was last asked to resend.
    asked: Option<Instant>,
    /// When the origin was last heard.
    heard: Instant,
    /// When the inbox was made.
    created: Instant,
    /// Whether it started at 0: the origin was first heard after this node's joining window, so
    /// everything it sent was for this node.
    owed: bool,
}

impl<T> Inbox<T> {
    /// Delivers what follows `last` without a gap.
    fn drain(&mut self, out: &mut Vec<T>) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() != self.last + 1 {
                break;
            }
            self.last += 1;
            out.push(entry.remove());
        }
        self.settle();
    }

    /// Counts the numbers up to `upto` that are neither delivered nor pending, delivers the
    /// pending ones among them in order, and moves `last` to `upto`; returns the count.
    fn skip_to(&mut self, upto: u64, out: &mut Vec<T>) -> u64 {
        let mut lost = 0;
        while self.last < upto {
            let next = self.last + 1;
            let held = self.pending.remove(&next);
            match held {
                Some(t) => out.push(t),
                None => lost += 1,
            }
            self.last = next;
        }
        self.drain(out);
        lost
    }

    fn settle(&mut self) {
        self.top = self.top.max(self.last);
        if self.top == self.last {
            self.gap_since = None;
            self.asked = None;
        }
    }

    fn note_top(&mut self, seq: u64, now: Instant) {
        if seq > self.top {
            self.top = seq;
        }
        if self.top > self.last && self.gap_since.is_none() {
            self.gap_since = Some(now);
        }
    }
}

/// Per origin and lane, the last relay delivered and what waits behind a gap. `T` is the relay
/// as the cluster loop applies it.
#[derive(Debug)]
pub(super) struct Inboxes<T> {
    inboxes: HashMap<(NodeId, Lane), Inbox<T>>,
    /// When this node first connected; an origin first heard within `joining` of it starts at the
    /// number it is first heard with (this node is new: the relays before it joined were not for
    /// it), one first heard later starts at 0 (it is new, or spoke while this node could not
    /// hear: every relay it sent was for this node).
    joined: Option<Instant>,
    joining: Duration,
    /// The route shards this node listens to, and since when.
    listening: HashMap<u32, Instant>,
}

/// What to do after a message: relays to deliver now, in order, and relays counted lost.
#[derive(Debug)]
pub(super) struct Outcome<T> {
    /// Relays to apply now, in order.
    pub(super) deliver: Vec<T>,
    /// Relays that will never come, to add to the lost counter.
    pub(super) lost: u64,
    /// The relay was delivered before (a resend crossing the live copy) and was dropped.
    pub(super) repeat: bool,
}

impl<T> Outcome<T> {
    fn none() -> Self {
        Self {
            deliver: Vec::new(),
            lost: 0,
            repeat: false,
        }
    }
}

impl<T> Inboxes<T> {
    /// No origin heard yet; `joining` is how long after its first connection this node counts as
    /// joining (see [`Inboxes::joined`]).
    pub(super) fn new(joining: Duration) -> Self {
        Self {
            inboxes: HashMap::new(),
            joined: None,
            joining,
            listening: HashMap::new(),
        }
    }

    /// This node's backbone connected; the first call starts its joining window.
    pub(super) fn connected(&mut self, now: Instant) {
        self.joined.get_or_insert(now);
    }

    /// This node listens to `shard` from `now` on.
    pub(super) fn listen(&mut self, shard: u32, now: Instant) {
        self.listening.entry(shard).or_insert(now);
    }

    /// This node no longer listens to `shard`: what it knew of the shard's lanes goes (what was
    /// held behind a gap there had no subscriber here any more). A later `listen` starts afresh,
    /// at the numbers the origins are heard with then.
    pub(super) fn unlisten(&mut self, shard: u32) {
        self.listening.remove(&shard);
        self.inboxes.retain(|(_, lane), _| *lane != Some(shard));
    }

    /// Where a new inbox of `from` on `lane` starts. The all-nodes lane: at the number heard while
    /// this node joins (a relay `seq` follows `seq - 1`), at 0 after (owed everything). A shard
    /// lane: at the number heard (what came before was sent to a shard this node did not listen
    /// to), unless this node listened to the shard since before it first heard `from` at all and
    /// `from` owes everything: then its whole lane was for this node too.
    fn start(&self, from: NodeId, lane: Lane, seq: u64, relay: bool, now: Instant) -> (u64, bool) {
        let heard = if relay { seq.saturating_sub(1) } else { seq };
        let owed = match lane {
            None => self
                .joined
                .is_some_and(|at| now.saturating_duration_since(at) > self.joining),
            Some(shard) => {
                let all = self.inboxes.get(&(from, None));
                let since = self.listening.get(&shard);
                matches!((all, since), (Some(all), Some(since)) if all.owed && *since <= all.created)
            }
        };
        if owed {
            (0, true)
        } else {
            (heard, false)
        }
    }

    fn inbox(
        &mut self,
        from: NodeId,
        lane: Lane,
        seq: u64,
        relay: bool,
        now: Instant,
    ) -> &mut Inbox<T> {
        if !self.inboxes.contains_key(&(from, lane)) {
            let (start, owed) = self.start(from, lane, seq, relay, now);
            self.inboxes.insert(
                (from, lane),
                Inbox {
                    last: start,
                    top: start,
                    pending: BTreeMap::new(),
                    gap_since: None,
                    asked: None,
                    heard: now,
                    created: now,
                    owed,
                },
            );
        }
        self.inboxes
            .get_mut(&(from, lane))
            .expect("the inbox was just made")
    }

    /// Relay number `seq` of `lane` from `from`: delivered now (with whatever it unblocks), held
    /// behind a gap, or dropped as already delivered.
    /// Number 0 is a relay from a node that does not number them (a version from before the
    /// replay, during a rolling upgrade): delivered as it comes, as before.
    pub(super) fn relay(
        &mut self,
        from: NodeId,
        lane: Lane,
        seq: u64,
        relay: T,
        now: Instant,
    ) -> Outcome<T> {
        if seq == 0 {
            let mut out = Outcome::none();
            out.deliver.push(relay);
            return out;
        }
        let inbox = self.inbox(from, lane, seq, true, now);
        inbox.heard = now;
        let mut out = Outcome::none();
        if seq <= inbox.last || inbox.pending.contains_key(&seq) {
            out.repeat = true;
            return out;
        }
        inbox.note_top(seq, now);
        if seq == inbox.last + 1 {
            inbox.last = seq;
            out.deliver.push(relay);
            inbox.drain(&mut out.deliver);
        } else {
            inbox.pending.insert(seq, relay);
            if inbox.pending.len() > MAX_PENDING {
                let top = inbox.top;
                out.lost = inbox.skip_to(top, &mut out.deliver);
            }
        }
        out
    }

    /// Any other message from `from`, sent after its relay number `seq` of the all-nodes lane.
    pub(super) fn stamp(&mut self, from: NodeId, seq: u64, now: Instant) {
        let inbox = self.inbox(from, None, seq, false, now);
        inbox.heard = now;
        inbox.note_top(seq, now);
    }

    /// The last numbers of `from`'s shard lanes, from its `Sync`. Only lanes this node already
    /// has an inbox for take it: the `Sync` does not travel with the shard's relays, so for a lane
    /// not heard yet it cannot tell what came before this node listened from what came after.
    pub(super) fn stamp_lanes(&mut self, from: NodeId, lanes: &[(u32, u64)], now: Instant) {
        for (shard, seq) in lanes {
            if let Some(inbox) = self.inboxes.get_mut(&(from, Some(*shard))) {
                inbox.heard = now;
                inbox.note_top(*seq, now);
            }
        }
    }

    /// The origin says its relays of `lane` up to `upto` cannot be sent again.
    pub(super) fn missed(&mut self, from: NodeId, lane: Lane, upto: u64) -> Outcome<T> {
        let mut out = Outcome::none();
        if let Some(inbox) = self.inboxes.get_mut(&(from, lane)) {
            inbox.top = inbox.top.max(upto);
            out.lost = inbox.skip_to(upto, &mut out.deliver);
        }
        out
    }

    /// Whether to ask `from` to resend `lane` now, and after which number: it has a gap, and was
    /// not asked within [`ASK_AGAIN`].
    pub(super) fn ask(&mut self, from: NodeId, lane: Lane, now: Instant) -> Option<u64> {
        let inbox = self.inboxes.get_mut(&(from, lane))?;
        if inbox.top <= inbox.last {
            return None;
        }
        if inbox
            .asked
            .is_some_and(|at| now.saturating_duration_since(at) < ASK_AGAIN)
        {
            return None;
        }
        inbox.asked = Some(now);
        Some(inbox.last)
    }

    /// Every origin and lane with a gap to ask about again now.
    pub(super) fn asks_due(&mut self, now: Instant) -> Vec<(NodeId, Lane, u64)> {
        let gaps: Vec<(NodeId, Lane)> = self
            .inboxes
            .iter()
            .filter(|(_, i)| i.top > i.last)
            .map(|(key, _)| *key)
            .collect();
        gaps.into_iter()
            .filter_map(|(id, lane)| self.ask(id, lane, now).map(|after| (id, lane, after)))
            .collect()
    }

    /// Gives up every gap open for longer than `limit` (the origin's log has let go of it by
    /// now, or the origin is gone): the missing relays are counted lost and what waited behind
    /// them is delivered. Also forgets inboxes unheard for [`FORGET_AFTER`].
    pub(super) fn give_up(&mut self, now: Instant, limit: Duration) -> Vec<(NodeId, Outcome<T>)> {
        self.inboxes
            .retain(|_, i| now.saturating_duration_since(i.heard) < FORGET_AFTER);
        let mut out = Vec::new();
        for ((id, _), inbox) in &mut self.inboxes {
            let old = inbox
                .gap_since
                .is_some_and(|at| now.saturating_duration_since(at) > limit);
            if old {
                let mut outcome = Outcome::none();
                let top = inbox.top;
                outcome.lost = inbox.skip_to(top, &mut outcome.deliver);
                out.push((*id, outcome));
            }
        }
        out
    }

    /// Forgets an origin that said it is leaving for good, on every lane.
    pub(super) fn forget(&mut self, from: NodeId) {
        self.inboxes.retain(|(id, _), _| *id != from);
    }
}

#[cfg(test)]
mod tests;

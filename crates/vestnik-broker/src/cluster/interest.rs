//! Interest routing: which route shards this node listens to.
//!
//! A channel's event relays (API publishes and client events) go to the route shard of its
//! (app, channel) ([`route_shard`]): a fixed hash into `route_shards` shards, the same on every
//! node. A node listens to a shard only while it holds at least one local subscriber of a channel
//! in it, plus a linger after the last one leaves, so a channel that empties and fills again (a
//! page reload) costs no unsubscribe/subscribe round on the backbone.
//!
//! [`Interest`] is the bookkeeping, plain data under one small lock taken on the subscribe path
//! (after a channel shard, before nothing else): counts of occupied channels per shard, the
//! lingering shards, the set last handed to the adapter. The cluster loop's router
//! (`ClusterNode::route_loop`) recomputes the set at most once per [`BATCH`] window and hands it
//! to the adapter whole, which subscribes and unsubscribes the difference in one batch: thousands
//! of channels coming and going each second cost one backbone round trip per window, not one per
//! channel.
//!
//! This module must never block or await, and never talk to the adapter itself.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::adapter::{Routes, ShardSet};

/// How long the router collects interest changes before it hands the adapter one new set: short
/// enough that a first subscriber waits a few ms more at most, long enough that a burst of
/// subscribes becomes one backbone command.
pub(super) const BATCH: Duration = Duration::from_millis(5);

/// The route shard of a channel: FNV-1a (64 bit) over the app id, a 0xff separator (never in a
/// UTF-8 string) and the channel name, modulo `shards`. Fixed forever: every node of a cluster
/// must compute the same shard, whatever its version. `shards` must be at least 1.
pub fn route_shard(app_id: &str, channel: &str, shards: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in app_id
        .as_bytes()
        .iter()
        .chain(&[0xff])
        .chain(channel.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(PRIME);
    }
    (h % u64::from(shards.max(1))) as u32
}

/// What the router must do after a recompute.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Change {
    /// The new wanted set, if it changed.
    pub(super) wanted: Option<ShardSet>,
    /// Shards newly wanted.
    pub(super) added: Vec<u32>,
    /// Shards no longer wanted.
    pub(super) dropped: Vec<u32>,
    /// When the next lingering shard expires.
    pub(super) next_expiry: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    /// Occupied channels here per shard (only shards with at least one).
    occupied: HashMap<u32, usize>,
    /// Shards with no occupied channel that stay wanted until the given time.
    lingering: HashMap<u32, Instant>,
    /// The set last handed to the adapter.
    wanted: ShardSet,
    /// Whether a shard became wanted since the last recompute.
    dirty: bool,
    /// Holders of a want for every shard (a console stream shows the whole cluster's events).
    everywhere: usize,
}

/// This node's interest in the route shards.
#[derive(Debug)]
pub(super) struct Interest {
    /// The number of route shards (at least 1).
    pub(super) shards: u32,
    linger: Duration,
    state: Mutex<State>,
    /// Wakes the router: a shard became wanted.
    pub(super) wake: Notify,
}

impl Interest {
    /// No interest yet, over `shards` shards, lingering `linger` after the last subscriber.
    pub(super) fn new(shards: u32, linger: Duration) -> Self {
        Self {
            shards: shards.max(1),
            linger,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    /// The shard of a channel.
    pub(super) fn shard(&self, app_id: &str, channel: &str) -> u32 {
        route_shard(app_id, channel, self.shards)
    }

    /// A channel of `shard` got its first subscriber here.
    pub(super) fn occupied(&self, shard: u32) {
        let mut st = self.state.lock();
        *st.occupied.entry(shard).or_default() += 1;
        st.lingering.remove(&shard);
        if !st.wanted.contains(&shard) {
            st.dirty = true;
            drop(st);
            self.wake.notify_one();
        }
    }

    /// A channel of `shard` lost its last subscriber here: the shard lingers once it has none.
    pub(super) fn vacated(&self, shard: u32, now: Instant) {
        let mut st = self.state.lock();
        let Some(n) = st.occupied.get_mut(&shard) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            st.occupied.remove(&shard);
            st.lingering.insert(shard, now + self.linger);
        }
    }

    /// A subscribe to a channel of `shard` is about to run: want the shard now (it lingers if the
    /// subscribe fails). Returns `None` when the backbone has confirmed the latest wanted set and
    /// it holds the shard (the subscribe need not wait), or the generation of [`Routes`] whose
    /// confirmation the subscribe must wait for: the current one if the shard is in it, else the
    /// next, which the router makes within [`BATCH`] and which holds the shard for the linger.
    pub(super) fn touch(&self, shard: u32, now: Instant, routes: &Routes) -> Option<u64> {
        let mut st = self.state.lock();
        if !st.occupied.contains_key(&shard) {
            st.lingering.insert(shard, now + self.linger);
        }
        // Read under the lock: `recompute` hands over its set under it too.
        let wanted = routes.wanted_now().generation;
        if st.wanted.contains(&shard) {
            return (routes.confirmed_now().generation < wanted).then_some(wanted);
        }
        st.dirty = true;
        drop(st);
        self.wake.notify_one();
        Some(wanted + 1)
    }

    /// Wants every shard (`true`), or drops one such want (`false`): a console stream shows the
    /// events of every channel of its app, wherever they are published, so its node listens to
    /// every shard while one is open. When the last want goes, the shards nobody subscribes to
    /// here linger, then go.
    pub(super) fn everywhere(&self, on: bool, now: Instant) {
        let mut st = self.state.lock();
        if on {
            st.everywhere += 1;
            st.dirty = true;
            drop(st);
            self.wake.notify_one();
            return;
        }
        st.everywhere = st.everywhere.saturating_sub(1);
        if st.everywhere == 0 {
            let until = now + self.linger;
            for shard in 0..self.shards {
                if !st.occupied.contains_key(&shard) {
                    st.lingering.entry(shard).or_insert(until);
                }
            }
            drop(st);
            self.wake.notify_one();
        }
    }

    /// Recomputes the wanted set (occupied shards and lingering ones not expired at `now`, or
    /// every shard while a console stream wants them all) and, if it changed, hands it to
    /// `routes`.
    pub(super) fn recompute(&self, now: Instant, routes: &Routes) -> Change {
        let mut st = self.state.lock();
        st.dirty = false;
        st.lingering.retain(|_, until| *until > now);
        let wanted: ShardSet = if st.everywhere > 0 {
            (0..self.shards).collect()
        } else {
            st.occupied
                .keys()
                .chain(st.lingering.keys())
                .copied()
                .collect()
        };
        let next_expiry = st.lingering.values().min().copied();
        if wanted == st.wanted {
            return Change {
                next_expiry,
                ..Change::default()
            };
        }
        let added = wanted.difference(&st.wanted).copied().collect();
        let dropped = st.wanted.difference(&wanted).copied().collect();
        st.wanted = wanted.clone();
        routes.want(wanted.clone());
        Change {
            wanted: Some(wanted),
            added,
            dropped,
            next_expiry,
        }
    }

    /// How many shards are wanted now.
    pub(super) fn wanted_len(&self) -> usize {
        self.state.lock().wanted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_is_stable_and_spread() {
        // Fixed values: a change of the hash would split a cluster of mixed versions.
        assert_eq!(
            route_shard("app", "news", 4096),
            route_shard("app", "news", 4096)
        );
        assert_ne!(
            route_shard("a", "bc", 1 << 20),
            route_shard("ab", "c", 1 << 20)
        );
        assert_eq!(route_shard("app", "x", 1), 0);
        let mut seen = vec![0u32; 16];
        for i in 0..16_000 {
            seen[route_shard("app", &format!("chan-{i}"), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
    }

    #[test]
    fn interest_follows_occupancy_with_a_linger() {
        let t = Instant::now();
        let i = Interest::new(64, Duration::from_secs(2));
        let r = Routes::default();
        i.occupied(3);
        i.occupied(3);
        let c = i.recompute(t, &r);
        assert_eq!((c.wanted, c.added), (Some(ShardSet::from([3])), vec![3]));
        assert_eq!(i.recompute(t, &r), Change::default(), "nothing new");
        i.vacated(3, t);
        assert_eq!(i.recompute(t, &r).wanted, None, "one channel left");
        i.vacated(3, t);
        let c = i.recompute(t + Duration::from_secs(1), &r);
        assert_eq!(c.wanted, None, "lingering");
        assert_eq!(c.next_expiry, Some(t + Duration::from_secs(2)));
        // Back within the linger: never dropped.
        i.occupied(3);
        i.vacated(3, t + Duration::from_secs(1));
        let c = i.recompute(t + Duration::from_secs(4), &r);
        assert_eq!((c.wanted, c.dropped), (Some(ShardSet::new()), vec![3]));
    }

    #[test]
    fn a_touch_wants_the_shard_and_lingers_if_nobody_subscribes() {
        let t = Instant::now();
        let i = Interest::new(64, Duration::from_secs(2));
        let r = Routes::default();
        // Not wanted: wait for the next generation, which the recompute makes.
        assert_eq!(i.touch(7, t, &r), Some(1));
        assert_eq!(i.recompute(t, &r).added, vec![7]);
        assert_eq!(r.wanted_now().generation, 1);
        // Wanted but not confirmed yet: wait for the current generation.
        assert_eq!(i.touch(7, t, &r), Some(1));
        r.confirm(r.wanted_now());
        assert_eq!(i.touch(7, t, &r), None, "wanted and confirmed");
        assert_eq!(i.wanted_len(), 1);
        assert_eq!(i.recompute(t + Duration::from_secs(3), &r).dropped, vec![7]);
    }
}

//! Interest routing between the cluster layer and a backbone: which route shards this node
//! listens to. The cluster layer decides the set (from its local subscribers, batched and with a
//! linger, see `cluster::interest`) and hands it over whole with [`Routes::want`]; the backbone's
//! task applies the difference on the wire (Redis `SSUBSCRIBE`/`SUNSUBSCRIBE`, NATS SUB/UNSUB) and
//! reports what is in place with [`Routes::confirm`]. A shard counts as confirmed only once the
//! backbone has acknowledged the subscription, so a relay published to it afterwards reaches this
//! node: that is what lets a subscribe wait for its shard before `subscription_succeeded`.
//!
//! This module must never block: both sides only swap a value in a `watch` channel.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::watch;

/// A set of route shards.
pub type ShardSet = BTreeSet<u32>;

/// One version of the wanted set: each [`Routes::want`] numbers the set it hands over, and the
/// backbone confirms the number it applied, so the cluster layer can tell "confirmed" from
/// "confirmed, but before the latest change".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteSet {
    /// The version, from 1 (0: nothing wanted yet).
    pub generation: u64,
    /// The shards.
    pub shards: Arc<ShardSet>,
}

/// The wanted set and the confirmed set of route shards of one adapter.
#[derive(Debug)]
pub struct Routes {
    wanted: watch::Sender<RouteSet>,
    confirmed: watch::Sender<RouteSet>,
}

impl Default for Routes {
    fn default() -> Self {
        Self {
            wanted: watch::channel(RouteSet::default()).0,
            confirmed: watch::channel(RouteSet::default()).0,
        }
    }
}

impl Routes {
    /// The cluster layer: this node now wants exactly `shards`. Returns the set's generation.
    /// Never blocks.
    pub fn want(&self, shards: ShardSet) -> u64 {
        let mut generation = 0;
        self.wanted.send_modify(|w| {
            w.generation += 1;
            w.shards = Arc::new(shards);
            generation = w.generation;
        });
        generation
    }

    /// The backbone: the set to be subscribed to, and a receiver that wakes on changes.
    pub fn wanted(&self) -> watch::Receiver<RouteSet> {
        self.wanted.subscribe()
    }

    /// The set wanted now.
    pub fn wanted_now(&self) -> RouteSet {
        self.wanted.borrow().clone()
    }

    /// The backbone: the wanted set `set` is subscribed and acknowledged (and no other shard).
    pub fn confirm(&self, set: RouteSet) {
        self.confirmed.send_replace(set);
    }

    /// The set the backbone last confirmed, and a receiver to wait for a later one.
    pub fn confirmed(&self) -> watch::Receiver<RouteSet> {
        self.confirmed.subscribe()
    }

    /// The set the backbone last confirmed.
    pub fn confirmed_now(&self) -> RouteSet {
        self.confirmed.borrow().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wanted_set_is_waited_for_until_confirmed() {
        let routes = Routes::default();
        let mut wanted = routes.wanted();
        assert_eq!(routes.want(ShardSet::from([3, 5])), 1);
        wanted.changed().await.expect("the sender lives");
        assert_eq!(*wanted.borrow().shards, ShardSet::from([3, 5]));
        assert_eq!(routes.confirmed_now().generation, 0);
        let mut confirmed = routes.confirmed();
        routes.confirm(routes.wanted_now());
        let set = confirmed
            .wait_for(|s| s.generation >= 1)
            .await
            .expect("live")
            .clone();
        assert!(set.shards.contains(&5));
        assert_eq!(routes.want(ShardSet::new()), 2);
    }
}

//! The cluster loop's interest side: the router that turns this node's interest into the set of
//! route shards the adapter subscribes to, the lanes' stamps a `Sync` brings, and the counters of
//! relays received (and of those for channels nobody here serves).
//!
//! The router runs beside the cluster loop, in the same task. It wakes when a shard becomes
//! wanted (a first subscriber, a subscribe about to run) or when a lingering shard expires,
//! collects for [`BATCH`], then hands the adapter the whole new set at once: a burst of
//! subscribes is one backbone command, and a channel that empties and fills within the linger
//! costs nothing on the backbone. This module must never block or hold a lock across an await.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tracing::debug;

use super::interest::BATCH;
use super::message::{Msg, Query};
use super::node::ClusterNode;
use crate::adapter::{Destination, NodeId};

impl ClusterNode {
    /// Keeps the adapter's wanted route shards equal to this node's interest, forever. Without
    /// interest routing it waits forever.
    pub(super) async fn route_loop(&self) {
        let link = &self.link;
        let (Some(interest), Some(routes)) = (link.interest.as_ref(), link.adapter.routes()) else {
            return std::future::pending().await;
        };
        let mut next_expiry: Option<Instant> = None;
        loop {
            let expiry = async {
                match next_expiry {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = interest.wake.notified() => {}
                () = expiry => {}
            }
            // Collect what else comes within the window into the same change.
            tokio::time::sleep(BATCH).await;
            let now = Instant::now();
            let change = interest.recompute(now, routes);
            next_expiry = change.next_expiry;
            if change.wanted.is_some() {
                let mut inboxes = self.inboxes.lock();
                for shard in &change.added {
                    inboxes.listen(*shard, now);
                }
                for shard in &change.dropped {
                    inboxes.unlisten(*shard);
                }
                drop(inboxes);
                debug!(
                    node = link.node,
                    added = change.added.len(),
                    dropped = change.dropped.len(),
                    listening = interest.wanted_len(),
                    "route shards changed"
                );
            }
        }
    }

    /// On a backbone whose interest spreads between its servers by itself
    /// ([`Adapter::interest_is_eventual`](crate::adapter::Adapter::interest_is_eventual): a NATS
    /// cluster of several servers), a route set the adapter confirmed is known to this node's
    /// server only. This loop then asks every live node a [`Query::Ping`] after each confirmed
    /// set: the query leaves through this node's server after its subscriptions, so a server
    /// that passes it on to a node has heard of them, and every answer proves that an event that
    /// node publishes now reaches this one. The generation it covered goes into
    /// `ClusterLink::reached`, which a subscribe waits for. Sets confirmed while a round runs
    /// share the next round, so a burst of subscribes costs a few queries, not one each.
    pub(super) async fn reach_loop(&self) {
        let link = &self.link;
        let (Some(_), Some(routes)) = (link.interest.as_ref(), link.adapter.routes()) else {
            return std::future::pending().await;
        };
        let mut confirmed = routes.confirmed();
        loop {
            if confirmed.changed().await.is_err() {
                return std::future::pending().await;
            }
            let generation = confirmed.borrow_and_update().generation;
            if link.adapter.interest_is_eventual() {
                link.ask(Query::Ping).await;
            }
            link.reached.send_if_modified(|r| {
                let newer = generation > *r;
                if newer {
                    *r = generation;
                }
                newer
            });
        }
    }

    /// Counts a channel event relay applied here, and whether any of its channels has a
    /// subscriber here.
    pub(super) fn count_relay(&self, app_id: &str, channels: &[String]) {
        let counters = &self.link.counters;
        counters.relays_received.fetch_add(1, Ordering::Relaxed);
        let served = channels
            .iter()
            .any(|c| self.broker.local_subscriptions(app_id, c) > 0);
        if !served {
            counters.relays_unserved.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The last numbers of `from`'s shard lanes, from its `Sync`: a lane this node knows and
    /// whose tail it missed is asked for again at once.
    pub(super) fn stamp_lanes(&self, from: NodeId, lanes: &[(u32, u64)]) {
        if lanes.is_empty() {
            return;
        }
        let now = Instant::now();
        let asks: Vec<(Option<u32>, u64)> = {
            let mut inboxes = self.inboxes.lock();
            inboxes.stamp_lanes(from, lanes, now);
            lanes
                .iter()
                .filter_map(|(shard, _)| {
                    let lane = Some(*shard);
                    inboxes.ask(from, lane, now).map(|after| (lane, after))
                })
                .collect()
        };
        for (lane, after) in asks {
            debug!(
                node = self.link.node,
                origin = from,
                after,
                ?lane,
                "missed the tail of a shard lane; asking for it again"
            );
            self.link
                .send(Destination::Node(from), Msg::Resend { after, lane });
        }
    }
}

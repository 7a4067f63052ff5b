//! Where a channel event relay goes under interest routing, and the subscribe's wait for its
//! route shard.
//!
//! - API events and client events go to the route shard of their (app, channel): only the nodes
//!   with a subscriber of a channel in that shard get them. An API event for several channels is
//!   split into one relay per shard (each with its own channels), so each node still gets each
//!   channel once.
//! - Events for cache channels stay on the all-nodes lane: every node keeps a cache channel's last
//!   event, so that a first subscriber anywhere gets it.
//! - Everything else (presence, occupancy, heartbeats, queries, terminations, resends) goes where
//!   it went before interest routing.
//!
//! A subscribe waits, before `subscription_succeeded`, until the backbone confirmed the shard:
//! an event published after the client saw `subscription_succeeded` then always reaches it. On a
//! backbone of several servers that spread interest among themselves (a NATS cluster), it waits
//! until every live node answered a query sent after the confirmation (`reach_loop`).
//!
//! This module must never block: the wait is a future the edge awaits, bounded by [`ROUTE_WAIT`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use vestnik_protocol::ChannelName;

use super::ClusterLink;
use crate::adapter::Destination;
use crate::app::App;
use crate::hook::HookFuture;

/// The longest a subscribe waits for its shard's confirmation. A backbone that takes longer is
/// in trouble; the subscribe then goes ahead, and the shard's relays arrive once it is in place.
pub(super) const ROUTE_WAIT: Duration = Duration::from_secs(2);

impl ClusterLink {
    /// Where a client event on `channel` goes.
    pub(super) fn route_of(&self, app: &App, channel: &ChannelName) -> Destination {
        match &self.interest {
            Some(interest) => Destination::Shard(interest.shard(&app.id, channel.as_str())),
            None => Destination::All,
        }
    }

    /// Where an API event for `channels` goes: one destination per group of channels.
    pub(super) fn routes_of(
        &self,
        app: &App,
        channels: &[ChannelName],
    ) -> Vec<(Destination, Vec<String>)> {
        let Some(interest) = &self.interest else {
            let all = channels.iter().map(ToString::to_string).collect();
            return vec![(Destination::All, all)];
        };
        let mut groups: Vec<(Destination, Vec<String>)> = Vec::new();
        for channel in channels {
            let to = if channel.is_cache() {
                Destination::All
            } else {
                Destination::Shard(interest.shard(&app.id, channel.as_str()))
            };
            match groups.iter_mut().find(|(d, _)| *d == to) {
                Some((_, list)) => list.push(channel.to_string()),
                None => groups.push((to, vec![channel.to_string()])),
            }
        }
        groups
    }

    /// Wants `channel`'s route shard now, and returns what to wait for before the subscribe runs
    /// (`None`: nothing; the shard is confirmed, or routing is off, or the backbone is down and
    /// nothing could reach this node anyway).
    pub(super) fn route_ready(
        &self,
        app: &App,
        channel: &ChannelName,
    ) -> Option<HookFuture<'static, ()>> {
        let interest = self.interest.as_ref()?;
        let routes = self.adapter.routes()?;
        let shard = interest.shard(&app.id, channel.as_str());
        let generation = interest.touch(shard, Instant::now(), routes)?;
        if !self.is_connected() {
            return None;
        }
        if self.adapter.interest_is_eventual() {
            // The other servers of the backbone must know the shard too (`reach_loop`).
            let mut reached = self.reached.subscribe();
            return Some(Box::pin(async move {
                let _ =
                    tokio::time::timeout(ROUTE_WAIT, reached.wait_for(|r| *r >= generation)).await;
            }));
        }
        let mut confirmed = routes.confirmed();
        Some(Box::pin(async move {
            let _ = tokio::time::timeout(
                ROUTE_WAIT,
                confirmed.wait_for(|c| c.generation >= generation),
            )
            .await;
        }))
    }

    /// Has this node listen to every route shard until the guard is dropped: what a console
    /// stream needs, which shows every event of its app wherever it was published. Without
    /// interest routing the node hears everything anyway, and the guard does nothing.
    pub fn listen_everywhere(self: &Arc<Self>) -> EverywhereGuard {
        if let Some(interest) = &self.interest {
            interest.everywhere(true, Instant::now());
        }
        EverywhereGuard(Arc::clone(self))
    }

    /// How many route shards this node listens to (wants) now; 0 without interest routing.
    pub fn route_shards_listened(&self) -> usize {
        self.interest.as_ref().map_or(0, |i| i.wanted_len())
    }

    /// The number of route shards, 0 without interest routing.
    pub fn route_shards(&self) -> u32 {
        self.interest.as_ref().map_or(0, |i| i.shards)
    }
}

/// Keeps its node listening to every route shard (see [`ClusterLink::listen_everywhere`]).
#[derive(Debug)]
pub struct EverywhereGuard(Arc<ClusterLink>);

impl Drop for EverywhereGuard {
    fn drop(&mut self) {
        if let Some(interest) = &self.0.interest {
            interest.everywhere(false, Instant::now());
        }
    }
}

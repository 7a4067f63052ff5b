//! Applying another node's `Sync`: its whole state (occupied channels, presence members, cache
//! entries) replaces what this node knew of it, and a node written off for its silence that comes
//! back is reported as occupied and added again where the cluster-wide view changes.
//!
//! This module must never block; it calls the broker's local API only.

use std::collections::HashSet;

use tracing::info;
use vestnik_protocol::ChannelName;

use super::message::{CacheEntry, SyncMember};
use super::node::ClusterNode;
use crate::adapter::NodeId;

impl ClusterNode {
    /// Another node's whole state replaces what this node knew of it: its occupied channels are
    /// exactly the ones it lists, members it no longer has leave, new ones join, and its cache
    /// fills gaps here.
    ///
    /// The first `Sync` of a node this node had written off for its silence is its return: it was
    /// stopped or cut off, not dead, and the cluster reported its channels vacated and its members
    /// removed. If this node reported that, every channel and member that the return puts back
    /// into the cluster-wide view (nobody here or elsewhere had it) is reported again, as
    /// `channel_occupied` and `member_added`, so that the webhooks end in the truth. Members and
    /// channels that never left the cluster-wide view are not reported twice.
    pub(super) fn apply_sync(
        &self,
        from: NodeId,
        members: Vec<SyncMember>,
        channels: Vec<(String, String)>,
        cache: Vec<CacheEntry>,
    ) {
        let link = &self.link;
        let returned = self.written_off.lock().take(from);
        if let Some(reported) = returned {
            info!(
                node = from,
                reporting = reported,
                "cluster node written off for its silence is back; restoring its members"
            );
        }
        let report = returned == Some(true);
        let listed: HashSet<(String, String)> = channels.iter().cloned().collect();
        for (app, channel) in link.occupancy.of_node(from) {
            if !listed.contains(&(app.clone(), channel.clone())) {
                link.occupancy.vacate(from, &app, &channel);
            }
        }
        for (app, channel) in channels {
            if link.occupancy.occupy(from, &app, &channel) && report {
                if let (Some(app), Ok(channel)) =
                    (self.broker.apps().by_id(&app), ChannelName::parse(&channel))
                {
                    self.broker.report_remote_occupied(&app, &channel);
                }
            }
        }
        let now: HashSet<(String, String, String)> = members
            .iter()
            .map(|m| (m.app.clone(), m.channel.clone(), m.user_id.clone()))
            .collect();
        for (app, channel, user) in link.presence.of_node(from) {
            if !now.contains(&(app.clone(), channel.clone(), user.clone())) {
                self.remote_member_left(from, &app, &channel, &user);
            }
        }
        for m in members {
            let back = self.remote_member_joined(from, &m);
            if back && report {
                if let (Some(app), Ok(channel)) = (
                    self.broker.apps().by_id(&m.app),
                    ChannelName::parse(&m.channel),
                ) {
                    self.broker
                        .report_remote_member_added(&app, &channel, &m.user_id);
                }
            }
        }
        self.apply_cache(cache);
    }

    /// Keeps another node's cache events this node does not have.
    fn apply_cache(&self, entries: Vec<CacheEntry>) {
        for e in entries {
            let (Some(app), Ok(channel)) = (
                self.broker.apps().by_id(&e.app),
                ChannelName::parse(&e.channel),
            ) else {
                continue;
            };
            let cached = e.into_local(channel);
            self.broker.apply_cached(&app, cached);
        }
    }
}

//! What the HTTP API asks about channels: one channel's stats, the occupied channels, a presence
//! channel's users, over the whole cluster; and one channel's history on this node.
//!
//! Subscription counts of other nodes come from a query through the [`ClusterHook`] (answered
//! within the cluster's query timeout); user counts come from the replicated roster, which needs no
//! question. This module must never change state.
//!
//! [`ClusterHook`]: crate::hook::ClusterHook

use std::collections::BTreeMap;
use std::time::Instant;

use vestnik_protocol::message::{Recover, RecoveryFailure};
use vestnik_protocol::{ChannelKind, ChannelName};

use super::{Broker, Keeping};
use crate::app::App;
use crate::history::{HistoryPage, HistoryRefusal};
use crate::registry::ChannelStats;

impl Broker {
    /// Stats of one channel over the whole cluster: subscription counts are summed over the nodes
    /// that answer, user counts come from the replicated roster.
    pub async fn channel_stats(&self, app: &App, channel: &ChannelName) -> Option<ChannelStats> {
        let rt = self.runtime(app);
        let local = rt.registry.stats(channel.as_str());
        let Some(hook) = self.hook() else {
            return local;
        };
        let remote = hook.remote_subscriptions(app, channel).await;
        let subscription_count = local.map_or(0, |s| s.subscription_count) + remote;
        if subscription_count == 0 {
            return None;
        }
        let user_count = (channel.kind() == ChannelKind::Presence)
            .then(|| self.presence_user_ids(app, channel.as_str()).len());
        Some(ChannelStats {
            subscription_count,
            user_count,
        })
    }

    /// Occupied channels with a prefix over the whole cluster, with their stats.
    pub async fn channel_list(&self, app: &App, prefix: &str) -> Vec<(ChannelName, ChannelStats)> {
        let rt = self.runtime(app);
        let local = rt.registry.list(prefix);
        let Some(hook) = self.hook() else {
            return local;
        };
        let mut counts: BTreeMap<String, usize> = local
            .iter()
            .map(|(c, s)| (c.to_string(), s.subscription_count))
            .collect();
        for (name, n) in hook.remote_channels(app, prefix).await {
            *counts.entry(name).or_default() += n;
        }
        counts
            .into_iter()
            .filter_map(|(name, subscription_count)| {
                let channel = ChannelName::parse(&name).ok()?;
                let user_count = (channel.kind() == ChannelKind::Presence)
                    .then(|| self.presence_user_ids(app, &name).len());
                Some((
                    channel,
                    ChannelStats {
                        subscription_count,
                        user_count,
                    },
                ))
            })
            .collect()
    }

    /// User ids of a presence channel over the whole cluster.
    pub fn presence_user_ids(&self, app: &App, channel: &str) -> Vec<String> {
        let mut ids = self.runtime(app).registry.user_ids(channel);
        if let Some(hook) = self.hook() {
            for (u, _) in hook.remote_members(app, channel) {
                if !ids.iter().any(|i| **i == *u) {
                    ids.push(u.to_string());
                }
            }
        }
        ids
    }

    /// Up to `limit` of `channel`'s kept events after `after` (from the oldest kept without it),
    /// oldest first, for the history API. Refused with the same reasons a recovery gives: history
    /// off for the channel, a node in a cluster whose backbone keeps no history (or could not be
    /// read), another epoch, or events already dropped. In a cluster whose backbone keeps the
    /// history, the page is read from the history store.
    pub async fn channel_history(
        &self,
        app: &App,
        channel: &ChannelName,
        after: Option<&Recover>,
        limit: usize,
    ) -> Result<HistoryPage, HistoryRefusal> {
        let refuse = |reason| Err(HistoryRefusal::new(reason, HistoryPage::default()));
        match self.keeping(app, channel.as_str()) {
            Keeping::Local(_) => {
                self.runtime(app)
                    .history
                    .page(channel.as_str(), after, limit, Instant::now())
            }
            Keeping::Cluster(limits) => self.store_page(app, channel, limits, after, limit).await,
            Keeping::Off if app.history.for_channel(channel.as_str()).is_none() => {
                refuse(RecoveryFailure::HistoryOff)
            }
            Keeping::Off => refuse(RecoveryFailure::ClusterHistoryUnavailable),
        }
    }
}

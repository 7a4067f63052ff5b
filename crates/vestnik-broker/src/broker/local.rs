//! The broker's local API for the cluster layer: what it calls when another node's news arrives,
//! and what it reads to tell other nodes about this one.
//!
//! Together with `publish_local`, `client_event_local` and `terminate_local` this is all the cluster
//! layer may do to the broker: apply a remote member change to local sockets, report what a dead
//! node can no longer report (and what a written-off node brings back when it returns), take a snapshot of this node's state for a `Sync`, keep another node's
//! cache entries, and count what a query asks for. Everything is in the broker's types (apps,
//! channel names, frames); this module must never know how the cluster encodes or routes them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::value::RawValue;
use vestnik_protocol::message::MemberView;
use vestnik_protocol::{ChannelName, ServerMessage};

use super::Broker;
use crate::app::App;
use crate::events::BrokerEvent;
use crate::registry::CachedEvent;

/// How a remote node's roster changed for one user.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RemoteMemberChange<'a> {
    /// The node's first socket of the user joined; its user info.
    Joined(Option<&'a RawValue>),
    /// The node's last socket of the user left.
    Left,
}

/// A presence member whose socket is on this node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LocalMember {
    /// App id.
    pub(crate) app: String,
    /// The presence channel.
    pub(crate) channel: ChannelName,
    /// The user.
    pub(crate) user_id: String,
    /// The user's info as raw JSON text.
    pub(crate) info: Option<String>,
}

/// A cache channel's last event on this node.
#[derive(Debug, Clone)]
pub(crate) struct LocalCached {
    /// App id.
    pub(crate) app: String,
    /// The cache channel.
    pub(crate) channel: ChannelName,
    /// The encoded frame, replayed as is.
    pub(crate) frame: Bytes,
    /// The data string, for `info=cache`.
    pub(crate) data: String,
    /// How long it has left to live.
    pub(crate) ttl: Duration,
}

/// This node's whole state as other nodes need it.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalSnapshot {
    /// Every presence member whose socket is here.
    pub(crate) members: Vec<LocalMember>,
    /// Every (app id, channel) with a subscriber here.
    pub(crate) channels: Vec<(String, ChannelName)>,
    /// Every live cache-channel event here.
    pub(crate) cache: Vec<LocalCached>,
}

impl Broker {
    /// Applies a change of another node's roster to this node's sockets. `record` updates the
    /// cluster's remote roster and returns whether the user appeared in it (for `Joined`) or left it
    /// (for `Left`); it runs under the channel's shard lock (lock order: the channel shard first, then
    /// the remote roster), so a socket subscribing at the same moment sees either the roster before
    /// or after, never half. If the user changed and has no socket here, the channel's local
    /// subscribers get `member_added` or `member_removed`. Returns whether they did.
    pub(crate) fn apply_remote_member(
        &self,
        app: &App,
        channel: &str,
        user_id: &str,
        change: RemoteMemberChange<'_>,
        record: impl FnOnce() -> bool,
    ) -> bool {
        let rt = self.runtime(app);
        let local = rt.registry.channels.get(channel);
        let local_has = local
            .as_ref()
            .and_then(|c| c.members.as_ref())
            .is_some_and(|members| members.contains(user_id));
        let changed = record();
        if changed {
            if let (RemoteMemberChange::Joined(_), Ok(name)) =
                (&change, ChannelName::parse(channel))
            {
                self.report(
                    app,
                    BrokerEvent::MemberJoinedElsewhere {
                        channel: &name,
                        user_id,
                    },
                );
            }
        }
        if !changed || local_has {
            return false;
        }
        if let Some(ch) = &local {
            let frame = match change {
                RemoteMemberChange::Joined(info) => ServerMessage::MemberAdded {
                    channel,
                    member: MemberView {
                        user_id,
                        user_info: info,
                    },
                },
                RemoteMemberChange::Left => ServerMessage::MemberRemoved { channel, user_id },
            }
            .encode();
            ch.fan_out(&frame, None);
        }
        true
    }

    /// A dead node's channel lost its last remote subscriber: `channel_vacated`, unless a socket here
    /// still holds it. The cluster layer calls it on one node only, so the webhook goes out once.
    pub(crate) fn report_remote_vacated(&self, app: &App, channel: &ChannelName) {
        if self.runtime(app).registry.stats(channel.as_str()).is_none() {
            self.report(app, BrokerEvent::ChannelVacated { channel });
        }
    }

    /// Another node got a channel's first subscriber while no other remote node had it: reported
    /// for webhooks as [`BrokerEvent::OccupiedElsewhere`], so a vacate held back here is dropped.
    pub(crate) fn report_occupied_elsewhere(&self, app: &App, channel: &ChannelName) {
        self.report(app, BrokerEvent::OccupiedElsewhere { channel });
    }

    /// A channel came back to the cluster with a node that had been written off for its silence
    /// (stopped or cut off, not dead): `channel_occupied`, unless a socket here holds it (then it
    /// was never vacated). The cluster layer calls it on the node that reported the vacate only.
    pub(crate) fn report_remote_occupied(&self, app: &App, channel: &ChannelName) {
        if self.runtime(app).registry.stats(channel.as_str()).is_none() {
            self.report(app, BrokerEvent::ChannelOccupied { channel });
        }
    }

    /// A member came back to the cluster with a node that had been written off for its silence:
    /// `member_added`, reported by the node that reported its removal, and only when nobody else
    /// had the user meanwhile (the caller checks it against the cluster-wide roster).
    pub(crate) fn report_remote_member_added(
        &self,
        app: &App,
        channel: &ChannelName,
        user_id: &str,
    ) {
        self.report(app, BrokerEvent::MemberAdded { channel, user_id });
    }

    /// A dead node's presence member is gone from the cluster: `member_removed`, reported on one
    /// node only by the cluster layer.
    pub(crate) fn report_remote_member_removed(
        &self,
        app: &App,
        channel: &ChannelName,
        user_id: &str,
    ) {
        self.report(app, BrokerEvent::MemberRemoved { channel, user_id });
    }

    /// This node's presence members, occupied channels and cache, for another node's catch-up.
    pub(crate) fn local_snapshot(&self) -> LocalSnapshot {
        let now = Instant::now();
        let mut snap = LocalSnapshot::default();
        for rt in self.inner.runtimes.iter() {
            let app = rt.key();
            for (channel, _) in rt.registry.list("") {
                snap.channels.push((app.clone(), channel));
            }
            for ch in rt.registry.channels.iter() {
                let Some(m) = &ch.members else { continue };
                for v in m.views() {
                    snap.members.push(LocalMember {
                        app: app.clone(),
                        channel: ch.key().clone(),
                        user_id: v.user_id.to_owned(),
                        info: v.user_info.map(|r| r.get().to_owned()),
                    });
                }
            }
            for e in rt.registry.cache.iter() {
                let Some(ttl) = e.expires.checked_duration_since(now) else {
                    continue;
                };
                snap.cache.push(LocalCached {
                    app: app.clone(),
                    channel: e.key().clone(),
                    frame: e.frame.clone(),
                    data: e.data.clone(),
                    ttl,
                });
            }
        }
        snap
    }

    /// Keeps another node's cache event if this node has none for the channel.
    pub(crate) fn apply_cached(&self, app: &App, cached: LocalCached) {
        if !cached.channel.is_cache() {
            return;
        }
        let expires = Instant::now() + cached.ttl;
        self.runtime(app)
            .registry
            .cache
            .entry(cached.channel)
            .or_insert_with(|| CachedEvent {
                frame: cached.frame,
                data: cached.data,
                expires,
            });
    }

    /// Sockets per app on this node, for heartbeats.
    pub(crate) fn connection_counts(&self) -> Vec<(String, usize)> {
        self.inner
            .runtimes
            .iter()
            .map(|e| (e.key().clone(), e.value().connection_count()))
            .collect()
    }

    /// The UTC day this node counts messages of, and per app its messages that day and how many of
    /// them are in the usage ledger, for heartbeats (the other nodes' daily quotas). Apps with no
    /// message today are left out.
    pub(crate) fn message_counts(&self) -> (i64, Vec<(String, u64, u64)>) {
        let mut day = 0;
        let counts = self
            .inner
            .runtimes
            .iter()
            .filter_map(|e| {
                let (d, counted, flushed) = e.value().usage.today();
                day = day.max(d);
                (counted > 0).then(|| (e.key().clone(), counted, flushed))
            })
            .collect();
        (day, counts)
    }

    /// This node's subscription count of one channel (0 for an unknown app or channel).
    pub(crate) fn local_subscriptions(&self, app_id: &str, channel: &str) -> usize {
        self.inner
            .runtimes
            .get(app_id)
            .and_then(|rt| rt.registry.stats(channel))
            .map_or(0, |s| s.subscription_count)
    }

    /// This node's occupied channels with `prefix` and their subscription counts.
    pub(crate) fn local_channels(&self, app_id: &str, prefix: &str) -> Vec<(String, usize)> {
        self.inner
            .runtimes
            .get(app_id)
            .map(|rt| {
                rt.registry
                    .list(prefix)
                    .into_iter()
                    .map(|(name, stats)| (name.to_string(), stats.subscription_count))
                    .collect()
            })
            .unwrap_or_default()
    }
}

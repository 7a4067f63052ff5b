//! The channel registry of one app: a sharded map from channel name to its subscribers and roster.
//!
//! The registry owns channels, and a channel holds connection handles, so fan-out is one shard read
//! lock and a loop of non-blocking queue pushes: no second lookup, no global lock, no JSON. This module
//! must never hold a shard guard across an `.await` or while taking a connection's state lock.

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use dashmap::DashMap;
use vestnik_protocol::{ChannelName, SocketId};

use crate::connection::ConnectionHandle;
use crate::presence::Members;

/// One channel: who is subscribed and, for presence channels, the roster.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    pub(crate) subscribers: HashMap<SocketId, ConnectionHandle>,
    pub(crate) members: Option<Members>,
    /// When the last throttled subscription-count event went out.
    pub(crate) last_count_sent: Option<Instant>,
}

impl Channel {
    /// Queues `frame` for every subscriber but `except`; returns how many got it.
    pub(crate) fn fan_out(&self, frame: &Bytes, except: Option<SocketId>) -> usize {
        let mut n = 0;
        for (id, conn) in &self.subscribers {
            if Some(*id) != except {
                conn.send_shared(frame);
                n += 1;
            }
        }
        n
    }
}

/// The last event of a cache channel.
#[derive(Debug, Clone)]
pub(crate) struct CachedEvent {
    pub(crate) frame: Bytes,
    pub(crate) data: String,
    pub(crate) expires: Instant,
}

/// What the HTTP API reports about one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChannelStats {
    /// Sockets subscribed.
    pub subscription_count: usize,
    /// Distinct users, for presence channels.
    pub user_count: Option<usize>,
}

/// Channels and cached events of one app.
#[derive(Debug, Default)]
pub struct Registry {
    pub(crate) channels: DashMap<ChannelName, Channel>,
    pub(crate) cache: DashMap<ChannelName, CachedEvent>,
}

impl Registry {
    /// Queues `frame` for every subscriber of `channel` but `except`; returns how many got it.
    pub fn fan_out(&self, channel: &str, frame: &Bytes, except: Option<SocketId>) -> usize {
        self.channels
            .get(channel)
            .map_or(0, |c| c.fan_out(frame, except))
    }

    /// Stats of an occupied channel, or `None` when nobody is subscribed.
    pub fn stats(&self, channel: &str) -> Option<ChannelStats> {
        self.channels.get(channel).map(|c| ChannelStats {
            subscription_count: c.subscribers.len(),
            user_count: c.members.as_ref().map(Members::count),
        })
    }

    /// Every occupied channel whose name starts with `prefix`, with its stats.
    pub fn list(&self, prefix: &str) -> Vec<(ChannelName, ChannelStats)> {
        self.channels
            .iter()
            .filter(|e| e.key().as_str().starts_with(prefix) && !e.subscribers.is_empty())
            .map(|e| {
                (
                    e.key().clone(),
                    ChannelStats {
                        subscription_count: e.subscribers.len(),
                        user_count: e.members.as_ref().map(Members::count),
                    },
                )
            })
            .collect()
    }

    /// User ids of a presence channel's members.
    pub fn user_ids(&self, channel: &str) -> Vec<String> {
        self.channels
            .get(channel)
            .and_then(|c| c.members.as_ref().map(Members::user_ids))
            .unwrap_or_default()
    }

    /// The cached event of a cache channel and its remaining time to live, if still fresh.
    pub fn cached(&self, channel: &str, now: Instant) -> Option<(String, u64)> {
        let e = self.cache.get(channel)?;
        let left = e.expires.checked_duration_since(now)?;
        Some((e.data.clone(), left.as_secs()))
    }

    pub(crate) fn cached_frame(&self, channel: &str, now: Instant) -> Option<Bytes> {
        let e = self.cache.get(channel)?;
        (e.expires > now).then(|| e.frame.clone())
    }

    /// Number of occupied channels.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Subscriptions over every channel (a socket in three channels counts three times). Walks every
    /// shard, so it is for scrapes and stats, never for the hot path.
    pub fn subscription_count(&self) -> usize {
        self.channels.iter().map(|c| c.subscribers.len()).sum()
    }

    /// Drops expired cache entries; called periodically so an idle cache does not hold memory.
    pub fn purge_expired(&self, now: Instant) {
        self.cache.retain(|_, e| e.expires > now);
    }
}

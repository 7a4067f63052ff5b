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
    ///
    /// Subscribers go in batches of [`FAN_OUT_BATCH`]: the batch's outboxes and then their direct
    /// writers are asked into the cache before the first push (see [`crate::cache`]), so the cache
    /// misses of a batch overlap instead of stalling each delivery in turn. Each socket still gets
    /// the channel's frames in publish order; only the order among sockets changes.
    pub(crate) fn fan_out(&self, frame: &Bytes, except: Option<SocketId>) -> usize {
        let mut n = 0;
        let mut batch: [Option<&ConnectionHandle>; FAN_OUT_BATCH] = [None; FAN_OUT_BATCH];
        let mut len = 0;
        for (id, conn) in &self.subscribers {
            if Some(*id) != except {
                batch[len] = Some(conn);
                len += 1;
                if len == FAN_OUT_BATCH {
                    send_batch(&batch, frame);
                    n += len;
                    len = 0;
                }
            }
        }
        send_batch(&batch[..len], frame);
        n + len
    }
}

/// Subscribers pushed to as one batch by a fan-out: enough cache misses in flight at once to hide
/// most of their latency, few enough that the first lines are still cached when their turn comes.
const FAN_OUT_BATCH: usize = 16;

/// Pushes `frame` to each connection of `batch`, after asking their state into the cache.
fn send_batch(batch: &[Option<&ConnectionHandle>], frame: &Bytes) {
    for conn in batch.iter().flatten() {
        conn.outbox().prefetch();
    }
    for conn in batch.iter().flatten() {
        conn.outbox().prefetch_direct();
    }
    for conn in batch.iter().flatten() {
        conn.send_shared(frame);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::connection::Connection;
    use std::collections::VecDeque;
    use std::sync::Arc;

    /// Over several batches and a partial last one, every subscriber but the excluded one gets
    /// the frame exactly once, and frames reach each socket in the order they were fanned out.
    #[test]
    fn a_batched_fan_out_reaches_every_subscriber_once_and_in_order() {
        let app = Arc::new(App::default());
        let mut channel = Channel::default();
        let n = 2 * FAN_OUT_BATCH + 5;
        for i in 0..n as u64 {
            let id = SocketId::new(1, i);
            channel
                .subscribers
                .insert(id, Arc::new(Connection::new(id, Arc::clone(&app), 8)));
        }
        let except = SocketId::new(1, 7);
        let first = Bytes::from_static(b"first");
        let second = Bytes::from_static(b"second");
        assert_eq!(channel.fan_out(&first, Some(except)), n - 1);
        assert_eq!(channel.fan_out(&second, None), n);
        for (id, conn) in &channel.subscribers {
            let mut out = VecDeque::new();
            conn.outbox().drain_now(&mut out);
            let expected: Vec<&Bytes> = if *id == except {
                vec![&second]
            } else {
                vec![&first, &second]
            };
            assert_eq!(out.iter().collect::<Vec<_>>(), expected, "socket {id}");
        }
    }
}

//! Presence members on other nodes, per (app, channel) and user, with the set of nodes each user
//! has a socket on. The local roster stays in the registry; the cluster-wide roster is the union.
//!
//! A user counts as present on a node from that node's `MemberJoined` until its `MemberLeft`, its
//! `Sync` without the user, or its death. This module must never send anything: it reports whether a
//! change made the user appear or disappear among remote nodes, and the caller decides what to say.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::value::RawValue;

use crate::adapter::NodeId;

/// A user present on some other nodes.
#[derive(Debug, Clone)]
pub struct RemoteMember {
    /// The user's info, from the first node that reported the user.
    pub info: Option<Box<RawValue>>,
    /// Nodes with at least one of the user's sockets in the channel.
    pub nodes: Vec<NodeId>,
}

/// (app id, channel name).
pub type PresenceKey = (String, String);

/// Presence rosters of other nodes.
#[derive(Debug, Default)]
pub struct RemotePresence {
    rosters: DashMap<PresenceKey, HashMap<Arc<str>, RemoteMember>>,
}

fn key(app: &str, channel: &str) -> PresenceKey {
    (app.to_owned(), channel.to_owned())
}

impl RemotePresence {
    /// Records that `node` has `user`; returns whether the user was absent from every remote node.
    pub fn join(
        &self,
        node: NodeId,
        app: &str,
        channel: &str,
        user: &str,
        info: Option<Box<RawValue>>,
    ) -> bool {
        let mut roster = self.rosters.entry(key(app, channel)).or_default();
        match roster.get_mut(user) {
            Some(m) => {
                if !m.nodes.contains(&node) {
                    m.nodes.push(node);
                }
                false
            }
            None => {
                roster.insert(
                    Arc::from(user),
                    RemoteMember {
                        info,
                        nodes: vec![node],
                    },
                );
                true
            }
        }
    }

    /// Records that `node` no longer has `user`; returns whether the user is now absent from every
    /// remote node (and was present before).
    pub fn leave(&self, node: NodeId, app: &str, channel: &str, user: &str) -> bool {
        let k = key(app, channel);
        let (gone, empty) = {
            let Some(mut roster) = self.rosters.get_mut(&k) else {
                return false;
            };
            let gone = match roster.get_mut(user) {
                Some(m) => {
                    m.nodes.retain(|n| *n != node);
                    m.nodes.is_empty()
                }
                None => false,
            };
            if gone {
                roster.remove(user);
            }
            (gone, roster.is_empty())
        };
        if empty {
            self.rosters.remove_if(&k, |_, r| r.is_empty());
        }
        gone
    }

    /// Whether `user` is on some remote node.
    pub fn has(&self, app: &str, channel: &str, user: &str) -> bool {
        self.rosters
            .get(&key(app, channel))
            .is_some_and(|r| r.contains_key(user))
    }

    /// The remote members of a channel.
    pub fn members(&self, app: &str, channel: &str) -> Vec<(Arc<str>, Option<Box<RawValue>>)> {
        self.rosters
            .get(&key(app, channel))
            .map(|r| r.iter().map(|(u, m)| (u.clone(), m.info.clone())).collect())
            .unwrap_or_default()
    }

    /// Every (app, channel, user) that `node` has.
    pub fn of_node(&self, node: NodeId) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for entry in self.rosters.iter() {
            let (app, channel) = entry.key();
            for (user, m) in entry.value() {
                if m.nodes.contains(&node) {
                    out.push((app.clone(), channel.clone(), user.to_string()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_node() {
        let p = RemotePresence::default();
        assert!(p.join(1, "a", "presence-x", "u", None));
        assert!(!p.join(2, "a", "presence-x", "u", None));
        assert!(!p.join(2, "a", "presence-x", "u", None));
        assert!(p.has("a", "presence-x", "u"));
        assert!(!p.leave(1, "a", "presence-x", "u"));
        assert_eq!(p.of_node(2).len(), 1);
        assert!(p.leave(2, "a", "presence-x", "u"));
        assert!(!p.has("a", "presence-x", "u"));
        assert!(!p.leave(2, "a", "presence-x", "u"));
        assert!(p.members("a", "presence-x").is_empty());
    }
}

/// Which other nodes have at least one subscriber on a channel, so that `channel_occupied` and
/// `channel_vacated` follow the first and last subscriber of the whole cluster.
#[derive(Debug, Default)]
pub struct RemoteOccupancy {
    channels: DashMap<PresenceKey, Vec<NodeId>>,
}

impl RemoteOccupancy {
    /// `node` got its first subscriber on the channel; returns whether no remote node had the
    /// channel before.
    pub fn occupy(&self, node: NodeId, app: &str, channel: &str) -> bool {
        let mut nodes = self.channels.entry(key(app, channel)).or_default();
        let first = nodes.is_empty();
        if !nodes.contains(&node) {
            nodes.push(node);
        }
        first
    }

    /// `node` lost its last subscriber; returns whether no remote node has the channel now (and
    /// one had it before).
    pub fn vacate(&self, node: NodeId, app: &str, channel: &str) -> bool {
        let k = key(app, channel);
        let empty = match self.channels.get_mut(&k) {
            Some(mut nodes) => {
                let before = nodes.len();
                nodes.retain(|n| *n != node);
                nodes.is_empty() && before > 0
            }
            None => false,
        };
        if empty {
            self.channels.remove_if(&k, |_, n| n.is_empty());
        }
        empty
    }

    /// Whether some remote node has a subscriber on the channel.
    pub fn has(&self, app: &str, channel: &str) -> bool {
        self.channels
            .get(&key(app, channel))
            .is_some_and(|n| !n.is_empty())
    }

    /// Every (app, channel) that `node` occupies.
    pub fn of_node(&self, node: NodeId) -> Vec<(String, String)> {
        self.channels
            .iter()
            .filter(|e| e.value().contains(&node))
            .map(|e| e.key().clone())
            .collect()
    }
}

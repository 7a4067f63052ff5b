//! The NATS subjects of one node: `{prefix}.all`, which every node subscribes to,
//! `{prefix}.node.{id}`, this node's own, `{prefix}.shard.{n}`, the route shards of interest
//! routing, and `{prefix}.probe.{id}.{random}`, which only this adapter uses to confirm its
//! subscriptions (see `watch` and `route`).
//!
//! This module must never build a subject with a wildcard or an empty token: a wildcard would
//! make a node hear other nodes' private traffic.

use async_nats::Subject;
use vestnik_broker::adapter::{Destination, NodeId};

use crate::Error;

/// The subject names of one node.
#[derive(Debug, Clone)]
pub(crate) struct Subjects {
    prefix: String,
    /// Every node's subject.
    pub(crate) all: Subject,
    /// This node's own subject.
    pub(crate) own: Subject,
    /// This adapter's private round-trip subject.
    pub(crate) probe: Subject,
    /// The router's private round-trip subject (it confirms route shard subscriptions).
    pub(crate) route_probe: Subject,
}

impl Subjects {
    /// Names for `node` under `prefix`. The prefix is one or more dot-separated tokens without
    /// whitespace, control characters or the wildcards `*` and `>`.
    pub(crate) fn new(prefix: &str, node: NodeId) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        };
        vestnik_broker::adapter::check_prefix(prefix).map_err(invalid)?;
        if prefix.contains(['*', '>']) {
            return Err(invalid("it contains a NATS wildcard (* or >)"));
        }
        if prefix.split('.').any(str::is_empty) {
            return Err(invalid(
                "it has an empty token (a leading, trailing or double dot)",
            ));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            all: Subject::from(format!("{prefix}.all")),
            own: Subject::from(format!("{prefix}.node.{node}")),
            probe: Subject::from(format!("{prefix}.probe.{node}.{}", rand::random::<u64>())),
            route_probe: Subject::from(format!("{prefix}.probe.{node}.{}", rand::random::<u64>())),
        })
    }

    /// The subject a destination maps to.
    pub(crate) fn of(&self, to: Destination) -> Subject {
        match to {
            Destination::All => self.all.clone(),
            Destination::Node(id) => Subject::from(format!("{}.node.{id}", self.prefix)),
            Destination::Shard(n) => self.shard(n),
        }
    }

    /// A route shard's subject: `{prefix}.shard.{n}`.
    pub(crate) fn shard(&self, n: u32) -> Subject {
        Subject::from(format!("{}.shard.{n}", self.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_validation() {
        let s = Subjects::new("vestnik.prod", 7).expect("valid");
        assert_eq!(s.all.as_str(), "vestnik.prod.all");
        assert_eq!(s.own.as_str(), "vestnik.prod.node.7");
        assert_eq!(s.of(Destination::Node(9)).as_str(), "vestnik.prod.node.9");
        assert_eq!(s.of(Destination::Shard(4)).as_str(), "vestnik.prod.shard.4");
        assert_ne!(s.probe, s.route_probe);
        assert!(s.probe.as_str().starts_with("vestnik.prod.probe.7."));
        for bad in ["", "a b", "a.*", "a.>", ".a", "a.", "a..b", "a\nb"] {
            assert!(Subjects::new(bad, 1).is_err(), "{bad:?}");
        }
    }
}

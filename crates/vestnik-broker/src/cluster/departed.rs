//! [`WrittenOff`]: the nodes this node declared dead by their silence, remembered so that their
//! return is told as what it is.
//!
//! A node that was only stopped or cut off for longer than `node_timeout` comes back with the same
//! id and its members still connected. Its first `Sync` then puts back members and channels that
//! the cluster already reported gone (`member_removed`, `channel_vacated`); a receiver mirroring
//! presence from webhooks must hear `member_added` and `channel_occupied` for them, from the node
//! that reported them gone, exactly once. This module only remembers who was written off and
//! whether this node reported it; it must never send or report anything itself.

use std::collections::VecDeque;

use crate::adapter::NodeId;

/// How many written-off nodes are remembered. A node killed for good never returns (a restarted
/// process has a new id), so the memory is bounded; a node returns only after a fault, and far
/// fewer than this many nodes fail between one fault and its end.
const REMEMBERED: usize = 64;

/// A node declared dead by its silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct WriteOff {
    /// The node.
    node: NodeId,
    /// Whether this node reported its members' removals and its channels' vacates (it was the
    /// lowest surviving id), and so reports their return.
    reported: bool,
}

/// The most recent nodes written off by their silence, oldest first.
#[derive(Debug, Default)]
pub(crate) struct WrittenOff {
    nodes: VecDeque<WriteOff>,
}

impl WrittenOff {
    /// Remembers that `node` was declared dead, and whether this node reported it.
    pub(crate) fn insert(&mut self, node: NodeId, reported: bool) {
        self.nodes.retain(|w| w.node != node);
        if self.nodes.len() == REMEMBERED {
            self.nodes.pop_front();
        }
        self.nodes.push_back(WriteOff { node, reported });
    }

    /// `node` is back: forgets it and returns whether this node reported its departure, or `None`
    /// if it was not written off.
    pub(crate) fn take(&mut self, node: NodeId) -> Option<bool> {
        let at = self.nodes.iter().position(|w| w.node == node)?;
        self.nodes.remove(at).map(|w| w.reported)
    }

    /// `node` left for good (it said `Leaving`): nothing of it will come back.
    pub(crate) fn forget(&mut self, node: NodeId) {
        self.nodes.retain(|w| w.node != node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_return_is_told_once_and_the_memory_is_bounded() {
        let mut w = WrittenOff::default();
        w.insert(7, true);
        w.insert(8, false);
        assert_eq!(w.take(7), Some(true));
        assert_eq!(w.take(7), None, "a second Sync is no second return");
        assert_eq!(w.take(8), Some(false));
        for n in 0..(REMEMBERED as u64 + 5) {
            w.insert(n, true);
        }
        assert_eq!(w.take(0), None, "the oldest were dropped");
        assert_eq!(w.take(REMEMBERED as u64 + 4), Some(true));
        w.insert(1000, true);
        w.forget(1000);
        assert_eq!(w.take(1000), None);
    }
}

//! The route shard subscriptions of a NATS adapter: one task keeps this node's SUBs on
//! `{prefix}.shard.{n}` equal to the set the cluster layer wants, and confirms a set only after a
//! probe round trip proved the server has every SUB sent before it. Each shard's messages are
//! forwarded to the cluster layer by a small task of its own, which ends (and so UNSUBs) when the
//! shard is no longer wanted. After a reconnect the client re-sends the SUBs by itself; `watch`
//! reports `Connected` only once they are in place.
//!
//! This task must never block `send`, and never buffer without bound: incoming messages beyond the
//! event queue are dropped and counted, as on the node's own subscriptions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, Subscriber};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use vestnik_broker::adapter::{AdapterEvent, LinkState, NodeId, RouteSet, Routes};

use crate::pump;
use crate::subjects::Subjects;
use crate::watch::Probe;

/// What the routing task needs.
pub(crate) struct Router {
    pub(crate) node: NodeId,
    pub(crate) client: Client,
    pub(crate) subjects: Subjects,
    /// A private subject for the round trip that confirms the SUBs.
    pub(crate) probe: Probe,
    pub(crate) routes: Arc<Routes>,
    pub(crate) wanted: watch::Receiver<RouteSet>,
    pub(crate) events: mpsc::Sender<AdapterEvent>,
    pub(crate) state: Arc<LinkState>,
    pub(crate) stop: CancellationToken,
    pub(crate) confirm_timeout: Duration,
}

impl Router {
    /// Follows the wanted set until stopped.
    pub(crate) async fn run(mut self) {
        let mut subscribed: HashMap<u32, CancellationToken> = HashMap::new();
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                changed = self.wanted.changed() => if changed.is_err() { break },
            }
            let wanted = self.wanted.borrow_and_update().clone();
            subscribed.retain(|shard, done| {
                let keep = wanted.shards.contains(shard);
                if !keep {
                    // The forwarding task ends and drops its subscriber: the client UNSUBs.
                    done.cancel();
                }
                keep
            });
            for shard in wanted.shards.iter() {
                if subscribed.contains_key(shard) {
                    continue;
                }
                match self.client.subscribe(self.subjects.shard(*shard)).await {
                    Ok(subscriber) => {
                        let done = self.stop.child_token();
                        subscribed.insert(*shard, done.clone());
                        tokio::spawn(forward(
                            self.node,
                            subscriber,
                            self.events.clone(),
                            self.state.clone(),
                            done,
                        ));
                    }
                    Err(e) => {
                        warn!(node = self.node, error = %e, "nats adapter: cannot subscribe to a route shard");
                    }
                }
            }
            self.confirm(wanted).await;
        }
        for done in subscribed.values() {
            done.cancel();
        }
        debug!(node = self.node, "nats adapter: router ended");
    }

    /// Confirms `wanted` once a probe round trip comes back, retrying while the link is down,
    /// unless a newer set is wanted meanwhile (its own confirmation covers this one).
    async fn confirm(&mut self, wanted: RouteSet) {
        loop {
            let stop = self.stop.clone();
            let back = tokio::select! {
                () = stop.cancelled() => return,
                back = self.probe.round_trip(&self.client, self.confirm_timeout) => back,
            };
            if back {
                self.routes.confirm(wanted);
                return;
            }
            if self.wanted.has_changed().unwrap_or(true) {
                return;
            }
            debug!(
                node = self.node,
                "nats adapter: route shards not confirmed yet; retrying"
            );
        }
    }
}

/// Forwards one route shard's messages to the cluster layer until `done`.
async fn forward(
    node: NodeId,
    mut subscriber: Subscriber,
    events: mpsc::Sender<AdapterEvent>,
    state: Arc<LinkState>,
    done: CancellationToken,
) {
    let mut overflowing = false;
    loop {
        let message = tokio::select! {
            () = done.cancelled() => break,
            message = subscriber.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        pump::hand_over(node, &events, &state, message.payload, &mut overflowing);
    }
}

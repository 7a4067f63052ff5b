//! The two data tasks of a NATS adapter: one drains the send queue into the NATS client in order,
//! the other forwards messages from this node's two subscriptions to the cluster layer.
//!
//! These tasks must never block `send`, never panic, and never buffer without bound: incoming
//! messages beyond the event queue are dropped and counted.

use std::sync::Arc;

use async_nats::{Client, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use vestnik_broker::adapter::{AdapterEvent, Destination, LinkState, NodeId};

use crate::subjects::Subjects;
use vestnik_broker::adapter::AdapterCounters as Counters;

/// Messages taken off the send queue per wake-up: amortises the wake-ups under load without
/// holding anything back (the NATS client batches the socket writes itself).
const BATCH: usize = 256;

/// What the publishing task needs.
pub(crate) struct Publisher {
    pub(crate) node: NodeId,
    pub(crate) client: Client,
    pub(crate) subjects: Subjects,
    pub(crate) queue: mpsc::Receiver<(Destination, Bytes)>,
    /// Shared with the shell: whether the link is up, what moved.
    pub(crate) state: Arc<LinkState>,
    /// Cancelled when the adapter is dropped, or by this task once `close` has flushed.
    pub(crate) stop: CancellationToken,
    /// Cancelled by `close`: publish what is queued, flush, then stop everything.
    pub(crate) closing: CancellationToken,
}

impl Publisher {
    /// Publishes queued messages in order until stopped, or until closed and flushed.
    pub(crate) async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        let mut draining = false;
        let mut warned = false;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.closing.cancelled(), if !draining => {
                    draining = true;
                    self.queue.close();
                }
                n = self.queue.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        // Closed and drained: wait until the client has written it all, then end
                        // the other tasks too.
                        tokio::select! {
                            () = self.stop.cancelled() => {}
                            _ = self.client.flush() => {}
                        }
                        self.stop.cancel();
                        break;
                    }
                    let stop = self.stop.clone();
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = self.publish(&mut batch, &mut warned) => {}
                    }
                }
            }
        }
        self.queue.close();
        let mut left = batch.len() as u64;
        while self.queue.try_recv().is_ok() {
            left += 1;
        }
        self.state.counters().lost_after_send(left);
        debug!(
            node = self.node,
            dropped = left,
            "nats adapter: publisher ended"
        );
    }

    /// Hands a batch to the client, in order. The client buffers while it reconnects and only
    /// makes this wait when its own command queue is full.
    async fn publish(&self, batch: &mut Vec<(Destination, Bytes)>, warned: &mut bool) {
        let counters = self.state.counters();
        for (to, payload) in batch.drain(..) {
            match self.client.publish(self.subjects.of(to), payload).await {
                Ok(()) => Counters::add(&counters.sent, 1),
                Err(e) => {
                    counters.lost_after_send(1);
                    if !std::mem::replace(warned, true) {
                        warn!(node = self.node, error = %e, "nats adapter: publish failed; message dropped");
                    }
                }
            }
        }
    }
}

/// Forwards this node's messages to the cluster layer until stopped or the client closes.
/// Order is kept per subscription; `All` and `Node` traffic are two subscriptions, merged fairly.
pub(crate) async fn receive(
    node: NodeId,
    all: Subscriber,
    own: Subscriber,
    events: mpsc::Sender<AdapterEvent>,
    state: Arc<LinkState>,
    stop: CancellationToken,
) {
    let mut messages = futures_util::stream::select(all, own);
    let mut overflowing = false;
    loop {
        let message = tokio::select! {
            () = stop.cancelled() => break,
            message = messages.next() => match message {
                Some(message) => message,
                None => break,
            },
        };
        hand_over(node, &events, &state, message.payload, &mut overflowing);
    }
    debug!(node, "nats adapter: receiver ended");
}

/// Hands one received payload to the cluster layer, or drops and counts it when the cluster layer
/// is that far behind (warning once per episode, tracked in `overflowing`).
pub(crate) fn hand_over(
    node: NodeId,
    events: &mpsc::Sender<AdapterEvent>,
    state: &LinkState,
    payload: Bytes,
    overflowing: &mut bool,
) {
    let counters = state.counters();
    match events.try_send(AdapterEvent::Message(payload)) {
        Ok(()) => {
            Counters::add(&counters.received, 1);
            *overflowing = false;
        }
        Err(TrySendError::Full(_)) => {
            Counters::add(&counters.dropped_receives, 1);
            if !std::mem::replace(overflowing, true) {
                warn!(
                    node,
                    capacity = events.max_capacity(),
                    "nats adapter: the cluster layer is behind; dropping incoming messages"
                );
            }
        }
        Err(TrySendError::Closed(_)) => Counters::add(&counters.dropped_receives, 1),
    }
}

//! The one long-lived task of a Redis adapter: it serves a session (forwarding received messages
//! to the cluster layer, publishing the send queue in pipelined batches, PINGing both connections),
//! and when the session dies it emits `Disconnected` once, reconnects with capped, jittered
//! exponential backoff for as long as it takes, and emits `Connected` again.
//!
//! This task must never panic and never buffer without bound: incoming messages beyond the event
//! queue are dropped and counted, and while the link is down the shell holds new messages (bounded) instead of queueing them.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vestnik_broker::adapter::{AdapterEvent, Destination, LinkState, NodeId, RouteSet, Routes};

use crate::session::{Channels, Push, Session};
use crate::target::Target;
use crate::RedisOptions;
use vestnik_broker::adapter::AdapterCounters as Counters;

/// Why a session stopped being served.
enum End {
    /// The adapter was dropped: stop at once.
    Stopped,
    /// `close` asked to flush and stop, and the queue is flushed.
    Closed,
    /// A connection failed: reconnect.
    Lost(String),
}

/// The task's state.
pub(crate) struct Link {
    pub(crate) node: NodeId,
    pub(crate) target: Target,
    pub(crate) channels: Channels,
    pub(crate) options: RedisOptions,
    /// Shared with the shell: whether a session is up (`send` holds or refuses while not), what moved.
    pub(crate) state: Arc<LinkState>,
    pub(crate) events: mpsc::Sender<AdapterEvent>,
    pub(crate) outgoing: mpsc::Receiver<(Destination, Bytes)>,
    /// Cancelled when the adapter is dropped: end now, without flushing.
    pub(crate) stop: CancellationToken,
    /// Cancelled by `close`: publish what is queued, then end.
    pub(crate) closing: CancellationToken,
    /// Whether incoming messages are being dropped, so the warning is logged once per episode.
    pub(crate) overflowing: bool,
    /// The route shards wanted (by the cluster layer) and confirmed (by this task).
    pub(crate) routes: Arc<Routes>,
    /// Wakes this task when the wanted route shards change.
    pub(crate) wanted: watch::Receiver<RouteSet>,
}

impl Link {
    /// Serves `first` (already announced by `connect`), then reconnects forever until stopped or
    /// closed.
    pub(crate) async fn run(mut self, first: Session) {
        let mut next = Some(first);
        while let Some(session) = next.take() {
            match self.serve(session).await {
                End::Stopped | End::Closed => break,
                End::Lost(reason) => {
                    self.down(&reason).await;
                    next = self.reconnect().await;
                    if next.is_some() {
                        self.up().await;
                    }
                }
            }
        }
        self.finish();
    }

    /// Moves messages both ways until the session fails or the adapter ends.
    async fn serve(&mut self, mut session: Session) -> End {
        let period = self.options.health_interval;
        let mut health = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        health.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(self.options.publish_batch);
        let mut closing = false;
        loop {
            tokio::select! {
                () = self.stop.cancelled() => return End::Stopped,
                () = self.closing.cancelled(), if !closing => {
                    // Refuse new messages; the queue drains below and recv_many then returns 0.
                    closing = true;
                    self.outgoing.close();
                }
                push = session.pushes.recv() => match session.read(push) {
                    Push::Message(payload) => self.deliver(payload),
                    Push::Lost => return End::Lost("the subscriber connection closed".into()),
                    Push::Moved(channel) => {
                        return End::Lost(format!("Redis ended the subscription of {channel} (its slot moved)"));
                    }
                    Push::Other => {}
                },
                changed = self.wanted.changed() => {
                    if changed.is_err() {
                        // The shell is gone; `stop` follows.
                        continue;
                    }
                    let wanted = self.wanted.borrow_and_update().clone();
                    let routed = tokio::time::timeout(
                        self.options.response_timeout,
                        session.route(&self.channels, &wanted.shards),
                    );
                    match routed.await {
                        Ok(Ok(())) => self.routes.confirm(wanted),
                        Ok(Err(e)) => return End::Lost(format!("SSUBSCRIBE failed: {e}")),
                        Err(_) => return End::Lost("SSUBSCRIBE went unanswered".into()),
                    }
                }
                n = self.outgoing.recv_many(&mut batch, self.options.publish_batch.max(1)) => {
                    if n == 0 {
                        return End::Closed;
                    }
                    let n = n as u64;
                    match session.publish(&self.channels, &mut batch).await {
                        Ok(()) => Counters::add(&self.state.counters().sent, n),
                        Err(e) => {
                            self.state.counters().lost_after_send(n);
                            return End::Lost(format!("PUBLISH failed: {e}"));
                        }
                    }
                }
                _ = health.tick() => {
                    if let Err(reason) = session.ping(self.options.response_timeout).await {
                        return End::Lost(reason);
                    }
                }
            }
        }
    }

    /// Hands one received payload to the cluster layer, or drops and counts it when the cluster
    /// layer is that far behind.
    fn deliver(&mut self, payload: Bytes) {
        let counters = self.state.counters();
        match self.events.try_send(AdapterEvent::Message(payload)) {
            Ok(()) => {
                Counters::add(&counters.received, 1);
                self.overflowing = false;
            }
            Err(TrySendError::Full(_)) => {
                Counters::add(&counters.dropped_receives, 1);
                if !self.overflowing {
                    self.overflowing = true;
                    warn!(
                        node = self.node,
                        capacity = self.options.event_queue,
                        "redis adapter: the cluster layer is behind; dropping incoming messages"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => Counters::add(&counters.dropped_receives, 1),
        }
    }

    /// Marks the link down and tells the cluster layer, once per loss.
    async fn down(&mut self, reason: &str) {
        self.state.set_connected(false);
        Counters::add(&self.state.counters().disconnects, 1);
        warn!(
            node = self.node,
            reason, "redis adapter: lost Redis; reconnecting"
        );
        self.emit(AdapterEvent::Disconnected).await;
    }

    /// Marks the link up and tells the cluster layer.
    async fn up(&mut self) {
        self.state.set_connected(true);
        self.emit(AdapterEvent::Connected).await;
    }

    /// Opens a new session, waiting a backoff delay before each attempt; `None` when the adapter
    /// ends first.
    async fn reconnect(&mut self) -> Option<Session> {
        let since = Instant::now();
        let (stop, closing) = (self.stop.clone(), self.closing.clone());
        for attempt in 0u32.. {
            let wait = vestnik_broker::adapter::reconnect_delay(
                attempt,
                self.options.reconnect_min,
                self.options.reconnect_max,
            );
            let opened = tokio::select! {
                () = stop.cancelled() => return None,
                () = closing.cancelled() => return None,
                opened = async {
                    tokio::time::sleep(wait).await;
                    let wanted = self.wanted.borrow_and_update().clone();
                    let session =
                        Session::open(&mut self.target, &self.channels, &self.options, &wanted.shards)
                            .await;
                    session.map(|s| (s, wanted))
                } => opened,
            };
            match opened {
                Ok((session, wanted)) => {
                    // The shards wanted when the session opened are in place; a later change
                    // wakes `serve`.
                    self.routes.confirm(wanted);
                    info!(
                        node = self.node,
                        attempts = attempt + 1,
                        down_ms = since.elapsed().as_millis() as u64,
                        "redis adapter: reconnected to Redis and resubscribed"
                    );
                    return Some(session);
                }
                // The first failure says why; the rest would repeat it every few seconds.
                Err(e) if attempt == 0 => warn!(
                    node = self.node,
                    error = %e,
                    "redis adapter: reconnect failed; retrying with backoff"
                ),
                Err(e) => {
                    debug!(node = self.node, attempt, error = %e, "redis adapter: reconnect failed")
                }
            }
        }
        None
    }

    /// Sends a control event, waiting for room (they are rare and must not be lost), unless the
    /// adapter is dropped meanwhile. A gone receiver is fine: nobody listens.
    async fn emit(&self, event: AdapterEvent) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            _ = self.events.send(event) => {}
        }
    }

    /// The task ends: refuse further sends and count what was still queued as dropped.
    fn finish(&mut self) {
        self.state.set_connected(false);
        self.outgoing.close();
        let mut left = 0u64;
        while self.outgoing.try_recv().is_ok() {
            left += 1;
        }
        self.state.counters().lost_after_send(left);
        debug!(
            node = self.node,
            dropped = left,
            "redis adapter: task ended"
        );
    }
}

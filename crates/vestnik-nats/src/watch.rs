//! Turns the NATS client's connection events into the adapter's `Connected` and `Disconnected`.
//! The client reconnects by itself (forever, with our backoff) and re-sends the subscriptions;
//! this task only reports, once per transition, and logs.
//!
//! This task must never report `Connected` before the server has this node's subscriptions. The
//! client announces a reconnect before it re-sends them, and its `flush` only empties the socket
//! buffer, so the proof is a [`Probe`]: a message to a private subject that comes back only after
//! the server has processed every earlier SUB on the connection.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, Event, Subject, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use vestnik_broker::adapter::{AdapterEvent, LinkState, NodeId};

use vestnik_broker::adapter::AdapterCounters as Counters;

/// A private subscription used for round trips to the server.
#[derive(Debug)]
pub(crate) struct Probe {
    subject: Subject,
    subscriber: Subscriber,
    sent: u64,
}

impl Probe {
    /// Subscribes to `subject` (unique to this adapter).
    pub(crate) async fn subscribe(
        client: &Client,
        subject: Subject,
    ) -> Result<Self, async_nats::SubscribeError> {
        let subscriber = client.subscribe(subject.clone()).await?;
        Ok(Self {
            subject,
            subscriber,
            sent: 0,
        })
    }

    /// Publishes a numbered probe and waits, at most `limit`, for it to come back. The server
    /// handles a connection's commands in order, so when it returns `true` every SUB sent before
    /// is in place. Older probes (from a timed-out try) are skipped.
    pub(crate) async fn round_trip(&mut self, client: &Client, limit: Duration) -> bool {
        self.sent += 1;
        let token = Bytes::from(self.sent.to_be_bytes().to_vec());
        let back = async {
            if client
                .publish(self.subject.clone(), token.clone())
                .await
                .is_err()
            {
                return false;
            }
            while let Some(message) = self.subscriber.next().await {
                if message.payload == token {
                    return true;
                }
            }
            false
        };
        tokio::time::timeout(limit, back).await.unwrap_or(false)
    }
}

/// What the watching task needs.
pub(crate) struct Watch {
    pub(crate) node: NodeId,
    pub(crate) client: Client,
    /// The client's events, forwarded by its event callback.
    pub(crate) connection: mpsc::UnboundedReceiver<Event>,
    pub(crate) probe: Probe,
    pub(crate) events: mpsc::Sender<AdapterEvent>,
    /// Shared with the shell: whether the link is up, what moved.
    pub(crate) state: Arc<LinkState>,
    /// The server's max payload, refreshed on every reconnect (servers of a cluster may differ).
    pub(crate) max_payload: Arc<AtomicUsize>,
    /// Whether the NATS is a cluster of several servers, refreshed on every reconnect.
    pub(crate) several_servers: Arc<AtomicBool>,
    /// How many server addresses were configured.
    pub(crate) configured: usize,
    pub(crate) stop: CancellationToken,
    pub(crate) confirm_timeout: Duration,
}

impl Watch {
    /// Reports transitions until stopped or the client is gone.
    pub(crate) async fn run(mut self) {
        loop {
            let event = tokio::select! {
                () = self.stop.cancelled() => break,
                event = self.connection.recv() => match event {
                    Some(event) => event,
                    None => break,
                },
            };
            match event {
                Event::Connected => self.connected().await,
                Event::Disconnected => {
                    if self.state.set_connected(false) {
                        Counters::add(&self.state.counters().disconnects, 1);
                        warn!(node = self.node, "nats adapter: lost NATS; reconnecting");
                        self.emit(AdapterEvent::Disconnected).await;
                    }
                }
                Event::SlowConsumer(sid) => {
                    Counters::add(&self.state.counters().dropped_receives, 1);
                    debug!(
                        node = self.node,
                        sid, "nats adapter: slow consumer; message dropped"
                    );
                }
                Event::LameDuckMode => warn!(
                    node = self.node,
                    "nats adapter: server entering lame duck mode; the client will move"
                ),
                Event::ServerError(e) => {
                    warn!(node = self.node, error = %e, "nats adapter: server error")
                }
                // Every failed reconnect attempt arrives here; the Disconnected above said it all.
                Event::ClientError(e) => {
                    debug!(node = self.node, error = %e, "nats adapter: client error")
                }
                Event::Draining | Event::Closed => debug!(node = self.node, %event, "nats adapter"),
            }
        }
        debug!(node = self.node, "nats adapter: watcher ended");
    }

    /// The client is (re)connected: confirm the subscriptions, then report once. Retries the
    /// probe while the client stays connected; if it is lost meanwhile, the next Disconnected /
    /// Connected pair from the client starts over.
    async fn connected(&mut self) {
        let stop = self.stop.clone();
        loop {
            let confirmed = tokio::select! {
                () = stop.cancelled() => return,
                ok = self.probe.round_trip(&self.client, self.confirm_timeout) => ok,
            };
            if confirmed {
                break;
            }
            if self.client.connection_state() != State::Connected {
                return;
            }
            warn!(
                node = self.node,
                "nats adapter: subscriptions not confirmed within {:?}; retrying",
                self.confirm_timeout
            );
        }
        self.max_payload
            .store(self.client.server_info().max_payload, Ordering::Release);
        self.several_servers.store(
            crate::adapter::spans_servers(&self.client, self.configured),
            Ordering::Release,
        );
        if !self.state.set_connected(true) {
            info!(
                node = self.node,
                "nats adapter: reconnected to NATS and resubscribed"
            );
            self.emit(AdapterEvent::Connected).await;
        }
    }

    /// Sends a control event, waiting for room (they are rare and must not be lost), unless the
    /// adapter is dropped meanwhile. A gone receiver is fine: nobody listens.
    async fn emit(&self, event: AdapterEvent) {
        tokio::select! {
            () = self.stop.cancelled() => {}
            _ = self.events.send(event) => {}
        }
    }
}

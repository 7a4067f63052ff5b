//! [`NatsAdapter`]: the handle the cluster layer holds. `send` only checks two numbers and pushes
//! onto a bounded queue; everything that touches the network runs in the adapter's tasks (`pump`,
//! `watch`) and in the NATS client.
//!
//! This module must never block or await on the `send` path, and never interpret a payload.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use vestnik_broker::adapter::{Adapter, AdapterEvent, Destination, NodeId};

use crate::pump::{self, Publisher};
use crate::subjects::Subjects;
use crate::watch::{Probe, Watch};
use crate::{servers, Error, NatsOptions};
use vestnik_broker::adapter::{AdapterCounters as Counters, AdapterStats};

/// What the adapter handle and its tasks share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Whether the client is connected with this node's subscriptions in place.
    pub(crate) connected: AtomicBool,
    /// The server's max payload, so that `send` refuses what the client would refuse later.
    pub(crate) max_payload: AtomicUsize,
    /// What moved.
    pub(crate) counters: Counters,
}

/// An [`Adapter`] over NATS core pub/sub. Node `id` subscribes to `{prefix}.all` and
/// `{prefix}.node.{id}`; [`Destination::All`] publishes to the first (so the sender hears its own
/// message too), [`Destination::Node`] to the second.
///
/// Dropping the last `Arc` ends the adapter's tasks and the connection at once;
/// [`close`](Self::close) first publishes what is still queued.
pub struct NatsAdapter {
    node: NodeId,
    outgoing: mpsc::Sender<(Destination, Bytes)>,
    events: Mutex<Option<mpsc::Receiver<AdapterEvent>>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    closing: CancellationToken,
    tasks: TaskTracker,
    close_timeout: Duration,
}

impl NatsAdapter {
    /// Connects node `node` to the NATS server(s) at `url` (one address or a comma-separated
    /// list) with the default [`NatsOptions`].
    ///
    /// Fails when the URL or prefix is invalid or when the first connection cannot be made: a
    /// misconfigured backbone should stop a node at boot, not leave it silently alone. After this
    /// returns, the client reconnects forever by itself (see [`AdapterEvent::Disconnected`]).
    /// The first event is always [`AdapterEvent::Connected`].
    pub async fn connect(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
    ) -> Result<Arc<Self>, Error> {
        Self::connect_with(url, cluster_prefix, node, NatsOptions::default()).await
    }

    /// Like [`connect`](Self::connect), with explicit queue sizes and timings.
    pub async fn connect_with(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
        options: NatsOptions,
    ) -> Result<Arc<Self>, Error> {
        let subjects = Subjects::new(cluster_prefix, node)?;
        let addresses = servers::parse(url)?;
        let (connection_tx, connection_rx) = mpsc::unbounded_channel();
        let (min, max) = (options.reconnect_min, options.reconnect_max);
        let client = async_nats::ConnectOptions::new()
            .name(format!("vestnik-node-{node}"))
            .event_callback(move |event| {
                let tx = connection_tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .max_reconnects(None)
            // The client counts the first try of each connection as attempt 1: make it at once,
            // then back off.
            .reconnect_delay_callback(move |attempts| match attempts {
                0 | 1 => Duration::ZERO,
                n => vestnik_broker::adapter::reconnect_delay(
                    u32::try_from(n - 2).unwrap_or(u32::MAX),
                    min,
                    max,
                ),
            })
            .connection_timeout(options.connect_timeout)
            .ping_interval(options.ping_interval)
            .subscription_capacity(options.event_queue.max(1))
            .connect(addresses)
            .await?;
        let all = client.subscribe(subjects.all.clone()).await?;
        let own = client.subscribe(subjects.own.clone()).await?;
        let mut probe = Probe::subscribe(&client, subjects.probe.clone()).await?;
        if !probe.round_trip(&client, options.confirm_timeout).await {
            return Err(Error::Timeout(options.confirm_timeout));
        }
        info!(
            node,
            url = %servers::redact(url),
            subjects = ?[subjects.all.as_str(), subjects.own.as_str()],
            "nats adapter: connected and subscribed"
        );

        let (outgoing, queue) = mpsc::channel(options.send_queue.max(1));
        let (events_tx, events_rx) = mpsc::channel(options.event_queue.max(1));
        let shared = Arc::new(Shared::default());
        shared
            .max_payload
            .store(client.server_info().max_payload, Ordering::Release);
        shared.connected.store(true, Ordering::Release);
        // The queue is new and has room: the cluster layer's first event is Connected.
        let _ = events_tx.try_send(AdapterEvent::Connected);

        let (stop, closing, tasks) = (
            CancellationToken::new(),
            CancellationToken::new(),
            TaskTracker::new(),
        );
        tasks.spawn(
            Publisher {
                node,
                client: client.clone(),
                subjects,
                queue,
                shared: shared.clone(),
                stop: stop.clone(),
                closing: closing.clone(),
            }
            .run(),
        );
        tasks.spawn(pump::receive(
            node,
            all,
            own,
            events_tx.clone(),
            shared.clone(),
            stop.clone(),
        ));
        tasks.spawn(
            Watch {
                node,
                client,
                connection: connection_rx,
                probe,
                events: events_tx,
                shared: shared.clone(),
                stop: stop.clone(),
                confirm_timeout: options.confirm_timeout,
            }
            .run(),
        );
        tasks.close();
        Ok(Arc::new(Self {
            node,
            outgoing,
            events: Mutex::new(Some(events_rx)),
            shared,
            stop,
            closing,
            tasks,
            close_timeout: options.close_timeout,
        }))
    }

    /// What the adapter moved so far, for the metrics export.
    pub fn stats(&self) -> AdapterStats {
        self.shared.counters.snapshot()
    }

    /// The largest payload `send` accepts: the server's `max_payload` (1 MiB by default).
    pub fn max_payload(&self) -> usize {
        self.shared.max_payload.load(Ordering::Acquire)
    }

    /// Stops taking messages, hands what is queued to the client and flushes it (for at most
    /// [`NatsOptions::close_timeout`]), then ends the adapter's tasks and the connection; the event
    /// stream then ends. Use it in the drain, after the last "leaving" message.
    pub async fn close(&self) {
        self.closing.cancel();
        if tokio::time::timeout(self.close_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                node = self.node,
                "nats adapter: queue not flushed within {:?}; dropping the rest",
                self.close_timeout
            );
        }
        self.stop.cancel();
        self.shared.connected.store(false, Ordering::Release);
    }
}

impl Adapter for NatsAdapter {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn send(&self, to: Destination, payload: Bytes) -> bool {
        let queued = self.shared.connected.load(Ordering::Acquire)
            && payload.len() <= self.shared.max_payload.load(Ordering::Acquire)
            && self.outgoing.try_send((to, payload)).is_ok();
        if !queued {
            Counters::add(&self.shared.counters.dropped_sends, 1);
        }
        queued
    }

    fn events(&self) -> Option<mpsc::Receiver<AdapterEvent>> {
        self.events.lock().take()
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Acquire)
    }

    fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(Self::close(self))
    }
}

impl Drop for NatsAdapter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for NatsAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsAdapter")
            .field("node", &self.node)
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

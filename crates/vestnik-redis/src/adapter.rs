//! [`RedisAdapter`]: the handle the cluster layer holds. `send` only checks a flag and pushes onto a
//! bounded queue; everything that touches the network runs in the adapter's task (`link`).
//!
//! This module must never block or await on the `send` path, and never interpret a payload.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use vestnik_broker::adapter::{Adapter, AdapterEvent, Destination, NodeId};

use crate::link::{Link, Shared};
use crate::session::{Channels, Session};
use crate::target::{redact, Target};
use crate::{Error, RedisOptions};
use vestnik_broker::adapter::{AdapterCounters as Counters, AdapterStats};

/// An [`Adapter`] over Redis pub/sub. Node `id` listens on `{prefix}:all` and
/// `{prefix}:node:{id}`; [`Destination::All`] publishes to the first (so the sender hears its own
/// message too), [`Destination::Node`] to the second.
///
/// Dropping the last `Arc` ends the adapter's task at once; [`close`](Self::close) first publishes
/// what is still queued.
pub struct RedisAdapter {
    node: NodeId,
    outgoing: mpsc::Sender<(Destination, Bytes)>,
    events: Mutex<Option<mpsc::Receiver<AdapterEvent>>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
    closing: CancellationToken,
    tasks: TaskTracker,
    close_timeout: Duration,
}

impl RedisAdapter {
    /// Connects node `node` to the Redis at `url` with the default [`RedisOptions`].
    ///
    /// Fails when the URL or prefix is invalid or when the first connection cannot be made: a
    /// misconfigured backbone should stop a node at boot, not leave it silently alone. After
    /// this returns, connection losses are handled inside (see [`AdapterEvent::Disconnected`]).
    /// The first event is always [`AdapterEvent::Connected`].
    pub async fn connect(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
    ) -> Result<Arc<Self>, Error> {
        Self::connect_with(url, cluster_prefix, node, RedisOptions::default()).await
    }

    /// Like [`connect`](Self::connect), with explicit queue sizes and timings.
    pub async fn connect_with(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
        options: RedisOptions,
    ) -> Result<Arc<Self>, Error> {
        let channels = Channels::new(cluster_prefix, node)?;
        let mut target = Target::parse(url)?;
        let first = Session::open(&mut target, &channels, &options).await?;
        info!(
            node,
            url = %redact(url),
            channels = ?[&channels.all, &channels.own],
            "redis adapter: connected and subscribed"
        );

        let (outgoing, outgoing_rx) = mpsc::channel(options.send_queue.max(1));
        let (events_tx, events_rx) = mpsc::channel(options.event_queue.max(1));
        let shared = Arc::new(Shared::default());
        shared.connected.store(true, Ordering::Release);
        // The queue is new and has room: the cluster layer's first event is Connected.
        let _ = events_tx.try_send(AdapterEvent::Connected);

        let (stop, closing, tasks) = (
            CancellationToken::new(),
            CancellationToken::new(),
            TaskTracker::new(),
        );
        let close_timeout = options.close_timeout;
        let link = Link {
            node,
            target,
            channels,
            options,
            shared: shared.clone(),
            events: events_tx,
            outgoing: outgoing_rx,
            stop: stop.clone(),
            closing: closing.clone(),
            overflowing: false,
        };
        tasks.spawn(link.run(first));
        tasks.close();
        Ok(Arc::new(Self {
            node,
            outgoing,
            events: Mutex::new(Some(events_rx)),
            shared,
            stop,
            closing,
            tasks,
            close_timeout,
        }))
    }

    /// What the adapter moved so far, for the metrics export.
    pub fn stats(&self) -> AdapterStats {
        self.shared.counters.snapshot()
    }

    /// Stops taking messages, publishes what is queued (for at most
    /// [`RedisOptions::close_timeout`], and only while connected), then ends the adapter's task;
    /// the event stream then ends. Use it in the drain, after the last "leaving" message.
    pub async fn close(&self) {
        self.closing.cancel();
        if tokio::time::timeout(self.close_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                node = self.node,
                "redis adapter: queue not flushed within {:?}; dropping the rest",
                self.close_timeout
            );
        }
        self.stop.cancel();
        self.shared.connected.store(false, Ordering::Release);
    }
}

impl Adapter for RedisAdapter {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn send(&self, to: Destination, payload: Bytes) -> bool {
        let queued = self.shared.connected.load(Ordering::Acquire)
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

impl Drop for RedisAdapter {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("node", &self.node)
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

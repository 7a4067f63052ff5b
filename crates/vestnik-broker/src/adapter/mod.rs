//! The cross-node boundary: an [`Adapter`] moves opaque, already-encoded cluster messages between
//! nodes and says when its backbone connection comes and goes. It knows nothing else: no channels,
//! no presence, no apps. The cluster semantics live once, in the core, over any adapter, so Redis and
//! NATS behave the same and each backend stays small.
//!
//! A backbone adapter is an [`AdapterShell`] (the send gate, the queues, the counters, close and
//! drop, written once) over a small [`Transport`] (connect, spawn the tasks that move bytes), so
//! a new backbone writes only what is its own, and `vestnik-testkit::conformance` checks it.
//!
//! This module must never interpret a payload.

mod backoff;
mod hold;
mod routes;
mod shell;
mod stats;
mod store;

pub use backoff::reconnect_delay;
pub use hold::HoldLimits;
pub use routes::{RouteSet, Routes, ShardSet};
pub use shell::{AdapterShell, LinkState, ShellOptions, Transport, Wiring};
pub use stats::{AdapterCounters, AdapterStats};
pub use store::{
    new_epoch, Append, Appended, HistoryStore, MemoryStore, StoreError, StoreErrorKind, StoredPage,
    StreamRef, DEDUPE_KEEP,
};

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Checks a cluster prefix every backend accepts: non-empty, no whitespace or control characters,
/// so channel and subject names read well in logs and admin tools. Returns the reason otherwise.
pub fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.is_empty() {
        return Err("it is empty");
    }
    if prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace or control characters");
    }
    Ok(())
}

/// A node's id in the cluster: random per process start, so a restarted node is a new node.
pub type NodeId = u64;

/// Where a cluster message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Every node (the sender may receive its own message back; the cluster layer drops it).
    All,
    /// One node.
    Node(NodeId),
    /// Every node that listens to this route shard (see [`Routes`]): the channel event relays of
    /// interest routing. An adapter without [`Adapter::routes`] never gets one.
    Shard(u32),
}

/// What an adapter reports to the cluster layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterEvent {
    /// A message from the backbone.
    Message(Bytes),
    /// The backbone is (again) reachable and this node's subscriptions are in place: the cluster
    /// layer announces itself and resyncs its state.
    Connected,
    /// The backbone was lost; the adapter is reconnecting with backoff.
    Disconnected,
}

/// Moves bytes between nodes. Implementations must never block the caller.
pub trait Adapter: Send + Sync + 'static {
    /// A short name for logs and metrics: `local`, `redis`, `nats`.
    fn name(&self) -> &'static str;

    /// Queues `payload` for `to`. Returns `false` when the message could not be queued (backbone
    /// down, queue full); the caller counts it as lost remotely.
    fn send(&self, to: Destination, payload: Bytes) -> bool;

    /// The stream of events for this node. Called once, at start; a second call returns `None`.
    fn events(&self) -> Option<mpsc::Receiver<AdapterEvent>>;

    /// Whether the backbone is currently connected.
    fn is_connected(&self) -> bool;

    /// Whether `send` would take a message of `len` bytes now: the link is up, or the message
    /// fits in the relay hold. The API asks before it publishes, so that an event is answered 200
    /// only when it is on its way to the other nodes or held for them.
    fn can_take(&self, len: usize) -> bool {
        let _ = len;
        self.is_connected()
    }

    /// How long, and within how many bytes, the cluster layer keeps the relays it sent for nodes
    /// that missed them (a backbone restart reconnects nodes one after another): as long as the
    /// relay hold, so that what a node held and sent late can still be had again by a node that
    /// came back later still. With the hold disabled, the default bounds.
    fn replay_limits(&self) -> HoldLimits {
        HoldLimits::default()
    }

    /// The adapter's interest routing: the route shards this node listens to, wanted by the
    /// cluster layer and confirmed by the backbone. `None` (the default): the adapter has no
    /// interest routing, and the cluster layer sends every relay to [`Destination::All`].
    fn routes(&self) -> Option<&Routes> {
        None
    }

    /// Whether a route shard this adapter confirmed may still be unknown to the parts of the
    /// backbone other nodes publish through: a NATS cluster of several servers tells its other
    /// servers of a subscription asynchronously, so an event published through another server in
    /// the next moments can miss it. The cluster layer then confirms a new route set by a round
    /// trip through every live node before a subscribe goes ahead. `false` (the default): the
    /// adapter's confirmation is enough (one Redis server; a Redis Cluster's sharded channels
    /// live on the one master that owns their slot).
    fn interest_is_eventual(&self) -> bool {
        false
    }

    /// The backbone's channel history, when it keeps one: positions and history are then
    /// cluster-wide (see [`HistoryStore`]). `None` (the default): nodes in a cluster keep no
    /// history and answer a `recover` with `cluster_history_unavailable`.
    fn history(&self) -> Option<Arc<dyn HistoryStore>> {
        None
    }

    /// What the adapter moved and lost so far; adapters that count nothing report zeros.
    fn stats(&self) -> AdapterStats {
        AdapterStats::default()
    }

    /// Sends what is still queued (bounded in time) and stops. Called once, at shutdown, after the
    /// node said it is leaving, so that the goodbye is not lost with the process.
    fn close(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
}

/// The single-node adapter: there is nobody to talk to, and it is always connected.
#[derive(Debug, Default)]
pub struct LocalAdapter;

impl Adapter for LocalAdapter {
    fn name(&self) -> &'static str {
        "local"
    }
    fn send(&self, _to: Destination, _payload: Bytes) -> bool {
        true
    }
    fn events(&self) -> Option<mpsc::Receiver<AdapterEvent>> {
        None
    }
    fn is_connected(&self) -> bool {
        true
    }
}

/// An in-process backbone joining several brokers in one process, for tests of the cluster layer
/// and the adapter conformance suite. [`MemoryHub::adapter`] makes one node's adapter.
#[derive(Debug, Clone, Default)]
pub struct MemoryHub {
    nodes: Arc<Mutex<HashMap<NodeId, mpsc::UnboundedSender<AdapterEvent>>>>,
    /// The hub's history store, shared by its nodes, if it keeps one.
    store: Option<MemoryStore>,
}

/// One node's end of a [`MemoryHub`].
#[derive(Debug)]
pub struct MemoryAdapter {
    hub: MemoryHub,
    events: Mutex<Option<mpsc::Receiver<AdapterEvent>>>,
}

impl MemoryHub {
    /// A new, empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new, empty hub whose nodes share a [`MemoryStore`]: cluster-wide history.
    pub fn with_history() -> Self {
        Self {
            store: Some(MemoryStore::new()),
            ..Self::default()
        }
    }

    /// The hub's history store, if it keeps one.
    pub fn store(&self) -> Option<&MemoryStore> {
        self.store.as_ref()
    }

    /// Joins node `id` to the hub.
    pub fn adapter(&self, id: NodeId) -> MemoryAdapter {
        let (tx, mut rx_unbounded) = mpsc::unbounded_channel();
        let (btx, brx) = mpsc::channel(1024);
        // Bridge to a bounded receiver so every adapter hands out the same type.
        tokio::spawn(async move {
            while let Some(ev) = rx_unbounded.recv().await {
                if btx.send(ev).await.is_err() {
                    break;
                }
            }
        });
        let _ = tx.send(AdapterEvent::Connected);
        self.nodes.lock().insert(id, tx);
        MemoryAdapter {
            hub: self.clone(),
            events: Mutex::new(Some(brx)),
        }
    }

    /// Removes node `id`, as if its process died.
    pub fn remove(&self, id: NodeId) {
        self.nodes.lock().remove(&id);
    }
}

impl Adapter for MemoryAdapter {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn send(&self, to: Destination, payload: Bytes) -> bool {
        let nodes = self.hub.nodes.lock();
        match to {
            // The memory hub has no interest routing; a shard reaches everyone, like `All`.
            Destination::All | Destination::Shard(_) => {
                for tx in nodes.values() {
                    let _ = tx.send(AdapterEvent::Message(payload.clone()));
                }
                true
            }
            Destination::Node(id) => nodes
                .get(&id)
                .is_some_and(|tx| tx.send(AdapterEvent::Message(payload)).is_ok()),
        }
    }
    fn events(&self) -> Option<mpsc::Receiver<AdapterEvent>> {
        self.events.lock().take()
    }
    fn is_connected(&self) -> bool {
        true
    }
    fn history(&self) -> Option<Arc<dyn HistoryStore>> {
        self.hub
            .store
            .clone()
            .map(|s| Arc::new(s) as Arc<dyn HistoryStore>)
    }
}

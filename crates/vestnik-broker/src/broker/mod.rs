//! [`Broker`]: the one API the edges call: connect, subscribe, client events, sign-in, publish, queries.
//!
//! It owns one [`AppRuntime`] per app (channels, signed-in users, watchers, counts) and talks back to
//! sockets only through their outboxes. The methods live in one file per concern:
//!
//! - [`connections`]: admit a socket (node cap, app quota) and forget it.
//! - [`channels`]: subscribe in named steps (authorise → join the registry → presence roster →
//!   replies and events) and leave.
//! - [`users`]: sign-in, the watchlist, terminating a user's sockets.
//! - [`publish`]: API events and client events.
//! - [`queries`]: channel stats, channel lists and presence rosters for the HTTP API.
//! - [`local`]: the narrow local API the cluster layer calls (apply a remote change, take a snapshot).
//!
//! The broker knows nothing of other nodes' wire format. When it joins a cluster it holds the
//! cluster layer only as a [`ClusterHook`], told about the moments that matter to other nodes; a
//! one-node broker holds none and takes none of those branches.
//!
//! Lock order, outermost first: a connection's state, then a channel's history stream (see
//! [`crate::history`]), then a channel shard, then the cluster's
//! remote roster (behind the hook), then the users shard, then the watchers shard, then an outbox.
//! No lock is held across an `.await`. This module must never know about HTTP, WebSocket or disk,
//! and must never name a cluster wire message.

mod channels;
mod connections;
mod local;
mod numbered;
mod publish;
mod queries;
mod sequencer;
mod users;

use std::any::Any;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use dashmap::DashMap;
use vestnik_protocol::limits::OUTBOX_CAPACITY;

use crate::adapter::{Adapter, NodeId};
use crate::app::{App, AppStore};
use crate::cluster::{ClusterLink, ClusterNode, ClusterSettings};
use crate::connection::ConnectionHandle;
use crate::events::{BrokerEvent, EventSink, NoEvents};
use crate::history::History;
use crate::hook::ClusterHook;
use crate::registry::Registry;
use crate::usage::UsageCounters;

pub(crate) use local::{LocalCached, LocalSnapshot, RemoteMemberChange};
pub(crate) use numbered::Keeping;
pub use numbered::{Numbering, SubscribeReady};
pub use publish::PublishEvent;

/// Node-wide settings of the core.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Most sockets on this node; 0 means no cap. Over it: 4100.
    pub max_connections: usize,
    /// Frames each socket may have queued before it is closed as a slow consumer.
    pub outbox_capacity: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: 0,
            outbox_capacity: OUTBOX_CAPACITY,
        }
    }
}

/// The live state of one app on this node.
#[derive(Debug, Default)]
pub struct AppRuntime {
    /// Channels and cache.
    pub registry: Registry,
    /// Channel history and positions; empty on a node in a cluster.
    pub history: History,
    /// Signed-in sockets by user id.
    users: DashMap<Arc<str>, Vec<ConnectionHandle>>,
    /// Sockets watching a user id.
    watchers: DashMap<Arc<str>, Vec<ConnectionHandle>>,
    /// Sockets of this app on this node.
    connections: AtomicUsize,
    /// Usage since the last flush and messages today, counted once per publish (never per socket).
    pub usage: UsageCounters,
}

impl AppRuntime {
    /// Sockets of this app on this node.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Distinct signed-in users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }
}

/// Counts for `/usage` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStats {
    /// Sockets connected.
    pub connections: usize,
    /// Occupied channels, over all apps.
    pub channels: usize,
}

/// The cluster layer as the broker holds it: the hook it calls, and the same object once more as
/// `Any` so that [`Broker::cluster`] can hand the edges their typed handle without the broker's own
/// paths ever depending on the concrete type.
struct Attached {
    /// What the broker calls.
    hook: Arc<dyn ClusterHook>,
    /// The same object, boxed as its own `Arc` type, for [`Broker::cluster`].
    handle: Box<dyn Any + Send + Sync>,
}

/// Everything a broker is; shared by its clones.
struct Inner {
    /// Where apps are found by key and id.
    apps: Arc<dyn AppStore>,
    /// Who hears about channel happenings (webhooks, console, metrics); never blocks.
    events: Arc<dyn EventSink>,
    /// Node-wide settings.
    config: BrokerConfig,
    /// The live state of each app with sockets or events on this node, by app id.
    runtimes: DashMap<String, Arc<AppRuntime>>,
    /// Sockets on this node, over all apps, for the node's cap.
    connections: AtomicUsize,
    /// The cluster layer, once joined; never replaced.
    cluster: OnceLock<Attached>,
    /// The numbering queue (see `sequencer`), started on first use.
    numbering: OnceLock<tokio::sync::mpsc::Sender<sequencer::Job>>,
    /// Events queued for numbering and not yet sent out.
    numbering_pending: AtomicUsize,
    /// The next history append's id: random at start, then counted up, so that ids are unique
    /// across the cluster's nodes and incarnations (see `Append::id`).
    append_ids: AtomicU64,
}

/// The broker core. Cheap to clone; every clone is the same broker.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("connections", &self.inner.connections)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over `apps` that reports nothing.
    pub fn new(apps: Arc<dyn AppStore>, config: BrokerConfig) -> Self {
        Self::with_events(apps, config, Arc::new(NoEvents))
    }

    /// A broker over `apps` that reports channel happenings to `events`.
    pub fn with_events(
        apps: Arc<dyn AppStore>,
        config: BrokerConfig,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                apps,
                events,
                config,
                runtimes: DashMap::new(),
                connections: AtomicUsize::new(0),
                cluster: OnceLock::new(),
                numbering: OnceLock::new(),
                numbering_pending: AtomicUsize::new(0),
                append_ids: AtomicU64::new(rand::random()),
            }),
        }
    }

    /// The app store.
    pub fn apps(&self) -> &Arc<dyn AppStore> {
        &self.inner.apps
    }

    /// The version of `app` served now, for its secrets: a socket keeps the version it connected
    /// with, but a rotation since then must apply to its channel auth and sign-in. Falls back to
    /// `app` itself when the app is gone or now has another key (its sockets are being closed).
    pub fn current_app(&self, app: &Arc<App>) -> Arc<App> {
        self.inner
            .apps
            .by_id(&app.id)
            .filter(|now| now.key == app.key)
            .unwrap_or_else(|| app.clone())
    }

    /// The live state of `app`, created on first use.
    pub fn runtime(&self, app: &App) -> Arc<AppRuntime> {
        if let Some(rt) = self.inner.runtimes.get(&app.id) {
            return rt.clone();
        }
        self.inner
            .runtimes
            .entry(app.id.clone())
            .or_default()
            .clone()
    }

    /// Counts for `/usage` and metrics.
    pub fn stats(&self) -> BrokerStats {
        BrokerStats {
            connections: self.inner.connections.load(Ordering::Relaxed),
            channels: self
                .inner
                .runtimes
                .iter()
                .map(|r| r.registry.channel_count())
                .sum(),
        }
    }

    /// Every app with live state on this node, by id, for the usage flusher and the quota refresh.
    pub fn runtimes(&self) -> Vec<(String, Arc<AppRuntime>)> {
        self.inner
            .runtimes
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect()
    }

    /// Whether `app`'s daily message quota is used up, counting the whole cluster as this node
    /// knows it (its own count plus the other nodes' from their heartbeats and the ledger's).
    pub fn over_message_quota(&self, app: &App) -> bool {
        app.max_messages_per_day > 0 && self.runtime(app).usage.over_quota(app.max_messages_per_day)
    }

    /// Drops expired cache entries and expired history of every app.
    pub fn purge_expired(&self) {
        let now = Instant::now();
        for rt in self.inner.runtimes.iter() {
            rt.registry.purge_expired(now);
            rt.history.purge_expired(now);
        }
    }

    /// Joins the cluster as `node` through `adapter` (which must deliver `Destination::Node(node)`
    /// messages to this node). Returns the task that runs the cluster loop until `shutdown`
    /// resolves; spawn it. Call once, before serving sockets.
    ///
    /// A thin entry for the edges: the cluster layer ([`ClusterNode`]) builds the link, attaches it
    /// here as this broker's [`ClusterHook`] and owns the loop.
    pub fn join_cluster(
        &self,
        node: NodeId,
        adapter: Arc<dyn Adapter>,
        settings: ClusterSettings,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        ClusterNode::join(self.clone(), node, adapter, settings).run(shutdown)
    }

    /// This node's cluster link, if it joined one: the edges' view of the cluster (health, metrics,
    /// drain). The broker's own paths never use it; they go through the [`ClusterHook`].
    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.inner.cluster.get()?.handle.downcast_ref()
    }

    /// Attaches the cluster layer; `false` (and nothing changes) if one is attached already.
    pub(crate) fn attach_cluster<H: ClusterHook>(&self, hook: Arc<H>) -> bool {
        let attached = Attached {
            hook: hook.clone(),
            handle: Box::new(hook),
        };
        self.inner.cluster.set(attached).is_ok()
    }

    /// The cluster layer, if this node joined one. `None` on a single node: every cluster branch of
    /// the broker hangs off this one check.
    fn hook(&self) -> Option<&dyn ClusterHook> {
        self.inner.cluster.get().map(|a| &*a.hook)
    }

    /// Reports a channel happening to the event sink (webhooks, console, metrics).
    fn report(&self, app: &App, event: BrokerEvent<'_>) {
        self.inner.events.on_event(app, event);
    }
}

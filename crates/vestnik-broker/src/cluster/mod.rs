//! Cluster semantics over any [`Adapter`]: several nodes behave as one broker.
//!
//! - API and client events are relayed to every node, which fans them out to its own sockets once
//!   (exclusions by socket id hold everywhere, since socket ids are unique in the cluster).
//! - Presence is replicated: each node announces its first and last socket of a user in a channel;
//!   every node keeps the union, so `member_added` and `member_removed` go out once per user.
//! - Heartbeats carry socket counts (for app quotas) and detect dead nodes, whose members are then
//!   removed everywhere. A (re)connected node says `Hello` and everyone answers with a `Sync` of its
//!   own state, so a new node, or one that lost the backbone, catches up at once.
//! - Channel counts are asked of every live node when the API needs them.
//!
//! The adapter only moves bytes. This module must never block the publish path: sending is a
//! non-blocking queue push, and a message that cannot be queued is counted as lost.

pub mod message;
pub mod presence;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::adapter::{Adapter, AdapterEvent, Destination, NodeId};
use message::{Answer, CacheEntry, Envelope, Msg, Query, SyncMember};
use presence::{RemoteOccupancy, RemotePresence};

/// Timings of the cluster protocol.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// How often a node says it is alive.
    pub heartbeat_interval: Duration,
    /// Silence after which a node counts as dead and its members are removed (at most 30 s).
    pub node_timeout: Duration,
    /// How long an API query waits for the other nodes' answers.
    pub query_timeout: Duration,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_millis(1000),
        }
    }
}

#[derive(Debug)]
struct Peer {
    last_seen: Instant,
    connections: HashMap<String, usize>,
    /// The peer said it is draining: its sockets are on their way to other nodes.
    draining: bool,
}

/// Counters for logs and metrics.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Messages handed to the adapter.
    pub sent: AtomicU64,
    /// Messages received from other nodes.
    pub received: AtomicU64,
    /// Messages that could not be handed to the adapter (backbone down or queue full).
    pub lost: AtomicU64,
}

/// What an outstanding query hears: a node's answer, or that a node it waits for is gone.
#[derive(Debug)]
enum QueryNews {
    /// `from` answered.
    Answer(NodeId, Answer),
    /// `node` left or died: it will not answer, so nobody waits for it.
    Gone(NodeId),
}

/// This node's membership of the cluster: its id, its adapter and what it knows of the others.
pub struct ClusterLink {
    /// This node's id.
    pub node: NodeId,
    adapter: Arc<dyn Adapter>,
    settings: ClusterSettings,
    pub(crate) presence: RemotePresence,
    pub(crate) occupancy: RemoteOccupancy,
    peers: Mutex<HashMap<NodeId, Peer>>,
    queries: Mutex<HashMap<u64, mpsc::UnboundedSender<QueryNews>>>,
    next_query: AtomicU64,
    /// Counters for logs and metrics.
    pub counters: ClusterCounters,
    connected: AtomicBool,
    ready: watch::Sender<bool>,
    last_loss_log: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("node", &self.node)
            .field("adapter", &self.adapter.name())
            .finish_non_exhaustive()
    }
}

impl ClusterLink {
    pub(crate) fn new(node: NodeId, adapter: Arc<dyn Adapter>, settings: ClusterSettings) -> Self {
        Self {
            node,
            adapter,
            settings,
            presence: RemotePresence::default(),
            occupancy: RemoteOccupancy::default(),
            peers: Mutex::new(HashMap::new()),
            queries: Mutex::new(HashMap::new()),
            next_query: AtomicU64::new(1),
            counters: ClusterCounters::default(),
            connected: AtomicBool::new(false),
            ready: watch::channel(false).0,
            last_loss_log: Mutex::new(None),
        }
    }

    /// Sends a message; counts it as lost if the adapter cannot take it.
    pub(crate) fn send(&self, to: Destination, msg: Msg) {
        let bytes = Envelope {
            from: self.node,
            msg,
        }
        .encode();
        if self.adapter.send(to, bytes) {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            let lost = self.counters.lost.fetch_add(1, Ordering::Relaxed) + 1;
            // Say so, but at most once a second: an outage can refuse thousands of relays.
            let now = Instant::now();
            let mut last = self.last_loss_log.lock();
            if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                *last = Some(now);
                warn!(
                    lost_total = lost,
                    adapter = self.adapter.name(),
                    "cluster message not relayed (backbone down or queue full); local sockets still got it"
                );
            }
        }
    }

    /// The adapter's name.
    pub fn adapter_name(&self) -> &'static str {
        self.adapter.name()
    }

    /// Whether the backbone is connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.adapter.is_connected()
    }

    /// Whether another node has `user` in the presence channel.
    pub fn remote_has_member(&self, app_id: &str, channel: &str, user: &str) -> bool {
        self.presence.has(app_id, channel, user)
    }

    /// Whether another node has a subscriber on the channel.
    pub fn remote_occupied(&self, app_id: &str, channel: &str) -> bool {
        self.occupancy.has(app_id, channel)
    }

    /// Other live nodes.
    pub fn peers(&self) -> Vec<NodeId> {
        self.peers.lock().keys().copied().collect()
    }

    /// Sockets of `app_id` on other live nodes, from their last heartbeat. Draining nodes are left
    /// out: their sockets are reconnecting here and elsewhere, and counting them twice while their
    /// heartbeats catch up would refuse those clients with 4004.
    pub fn remote_connections(&self, app_id: &str) -> usize {
        self.peers
            .lock()
            .values()
            .filter(|p| !p.draining)
            .map(|p| p.connections.get(app_id).copied().unwrap_or(0))
            .sum()
    }

    /// Other live nodes that said they are draining.
    pub fn draining_peers(&self) -> usize {
        self.peers.lock().values().filter(|p| p.draining).count()
    }

    /// Tells the other nodes that this one is draining (nats-server's lame-duck notice): they stop
    /// counting its sockets against app quotas while those sockets move to them.
    pub fn announce_draining(&self) {
        info!(
            node = self.node,
            "telling the cluster this node is draining"
        );
        self.send(Destination::All, Msg::Draining);
    }

    /// Asks every live node and collects the answers that come within the query timeout. A node that
    /// leaves or dies while the query runs is no longer waited for, so a query racing a node's
    /// goodbye answers as soon as the others have, instead of at the timeout.
    pub(crate) async fn ask(&self, query: Query) -> Vec<Answer> {
        let mut waiting: HashSet<NodeId> = self.peers.lock().keys().copied().collect();
        // With the backbone down nobody can answer: answer from this node at once.
        if waiting.is_empty() || !self.is_connected() {
            return Vec::new();
        }
        let id = self.next_query.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.queries.lock().insert(id, tx);
        self.send(Destination::All, Msg::Query { id, query });
        let mut answers = Vec::with_capacity(waiting.len());
        let deadline = tokio::time::Instant::now() + self.settings.query_timeout;
        while !waiting.is_empty() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(QueryNews::Answer(from, a))) => {
                    // A node that joined after the query was sent is not counted twice or waited for.
                    if waiting.remove(&from) {
                        answers.push(a);
                    }
                }
                Ok(Some(QueryNews::Gone(node))) => {
                    waiting.remove(&node);
                }
                Ok(None) | Err(_) => {
                    warn!(
                        missing = waiting.len(),
                        got = answers.len(),
                        "cluster query timed out; answering with the nodes that replied"
                    );
                    break;
                }
            }
        }
        self.queries.lock().remove(&id);
        answers
    }

    /// Resolves once the node has joined the backbone and heard from the others, or after
    /// `timeout` (then it serves its own sockets and catches up when the backbone comes).
    pub async fn ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        let ready = tokio::time::timeout(timeout, rx.wait_for(|r| *r)).await;
        ready.is_ok()
    }
}

/// The node id for this process: random, so a restarted node is a new node.
pub fn new_node_id() -> NodeId {
    rand::random::<u64>() >> 1
}

impl crate::Broker {
    /// Joins the cluster as `node` through `adapter` (which must deliver `Destination::Node(node)`
    /// messages to this node). Returns the task that runs the cluster protocol until `shutdown`
    /// resolves; spawn it. Call once, before serving sockets.
    pub fn join_cluster(
        &self,
        node: NodeId,
        adapter: Arc<dyn Adapter>,
        settings: ClusterSettings,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = ()> + Send + 'static {
        let events = adapter.events();
        let link = Arc::new(ClusterLink::new(node, adapter, settings));
        if self.inner.cluster.set(link.clone()).is_err() {
            warn!("join_cluster called twice; the second call is ignored");
        }
        info!(node, adapter = link.adapter_name(), "joining the cluster");
        let broker = self.clone();
        async move {
            match events {
                Some(events) => broker.run_cluster(link, events, shutdown).await,
                None => {
                    // Single node: nothing to hear from.
                    let _ = link.ready.send(true);
                    shutdown.await;
                }
            }
        }
    }

    /// This node's cluster link, if it joined one.
    pub fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.inner.cluster.get()
    }

    async fn run_cluster(
        &self,
        link: Arc<ClusterLink>,
        mut events: mpsc::Receiver<AdapterEvent>,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(link.settings.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // After connecting, give the others one round trip to answer Hello before saying "ready".
        let settle = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(settle);
        loop {
            tokio::select! {
                () = &mut shutdown => {
                    link.send(Destination::All, Msg::Leaving);
                    link.adapter.close().await;
                    info!(node = link.node, "left the cluster");
                    return;
                }
                ev = events.recv() => match ev {
                    None => {
                        warn!("cluster adapter stopped; serving local sockets only");
                        shutdown.await;
                        return;
                    }
                    Some(AdapterEvent::Message(bytes)) => match Envelope::decode(&bytes) {
                        Some(env) if env.from == link.node => {}
                        Some(env) => {
                            link.counters.received.fetch_add(1, Ordering::Relaxed);
                            self.handle_cluster_message(&link, env);
                        }
                        None => debug!("dropped a malformed cluster message"),
                    },
                    Some(AdapterEvent::Connected) => {
                        info!(node = link.node, adapter = link.adapter_name(), "cluster backbone connected; resyncing");
                        link.connected.store(true, Ordering::Relaxed);
                        link.send(Destination::All, Msg::Hello);
                        link.send(Destination::All, self.local_sync());
                        self.send_heartbeat(&link);
                        settle.as_mut().reset(tokio::time::Instant::now() + link.settings.query_timeout.min(Duration::from_millis(500)));
                    }
                    Some(AdapterEvent::Disconnected) => {
                        warn!(node = link.node, adapter = link.adapter_name(), "cluster backbone lost; serving local sockets and reconnecting");
                        link.connected.store(false, Ordering::Relaxed);
                    }
                },
                () = &mut settle => {
                    let _ = link.ready.send(true);
                    settle.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
                _ = tick.tick() => {
                    self.send_heartbeat(&link);
                    self.sweep_dead_nodes(&link);
                }
            }
        }
    }

    fn send_heartbeat(&self, link: &ClusterLink) {
        let connections = self
            .inner
            .runtimes
            .iter()
            .map(|e| (e.key().clone(), e.value().connection_count()))
            .collect();
        link.send(Destination::All, Msg::Heartbeat { connections });
    }

    fn sweep_dead_nodes(&self, link: &ClusterLink) {
        let now = Instant::now();
        let dead: Vec<NodeId> = link
            .peers
            .lock()
            .iter()
            .filter(|(_, p)| now.duration_since(p.last_seen) > link.settings.node_timeout)
            .map(|(id, _)| *id)
            .collect();
        for node in dead {
            warn!(
                node,
                "cluster node stopped sending heartbeats; removing its members"
            );
            self.forget_node(link, node);
        }
    }

    fn forget_node(&self, link: &ClusterLink, node: NodeId) {
        link.peers.lock().remove(&node);
        for tx in link.queries.lock().values() {
            let _ = tx.send(QueryNews::Gone(node));
        }
        // The departed node cannot send its member_removed webhooks; the lowest surviving node id
        // does, so they go out once.
        let leader = link.peers.lock().keys().all(|peer| *peer > link.node);
        for (app, channel) in link.occupancy.of_node(node) {
            let gone = link.occupancy.vacate(node, &app, &channel);
            let Some(app) = self.apps().by_id(&app) else {
                continue;
            };
            let here = self.runtime(&app).registry.stats(&channel).is_some();
            if gone && !here && leader {
                self.inner.events.on_event(
                    &app,
                    crate::BrokerEvent::ChannelVacated { channel: &channel },
                );
            }
        }
        for (app, channel, user) in link.presence.of_node(node) {
            if self.remote_member_left(link, node, &app, &channel, &user) && leader {
                if let Some(app) = self.apps().by_id(&app) {
                    self.inner.events.on_event(
                        &app,
                        crate::BrokerEvent::MemberRemoved {
                            channel: &channel,
                            user_id: &user,
                        },
                    );
                }
            }
        }
    }

    /// This node's whole state, for a `Sync`.
    fn local_sync(&self) -> Msg {
        let channels = self
            .inner
            .runtimes
            .iter()
            .flat_map(|rt| {
                let app = rt.key().clone();
                rt.registry
                    .list("")
                    .into_iter()
                    .map(move |(c, _)| (app.clone(), c.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let now = Instant::now();
        let mut cache = Vec::new();
        for rt in self.inner.runtimes.iter() {
            for e in rt.registry.cache.iter() {
                let Some(left) = e.expires.checked_duration_since(now) else {
                    continue;
                };
                cache.push(CacheEntry {
                    app: rt.key().clone(),
                    channel: e.key().to_string(),
                    frame: String::from_utf8_lossy(&e.frame).into_owned(),
                    data: e.data.clone(),
                    ttl_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                });
            }
        }
        Msg::Sync {
            members: self.local_members(),
            channels,
            cache,
        }
    }

    /// Keeps another node's cache events this node does not have.
    fn apply_cache(&self, entries: Vec<CacheEntry>) {
        let now = Instant::now();
        for e in entries {
            let (Some(app), Ok(channel)) = (
                self.apps().by_id(&e.app),
                vestnik_protocol::ChannelName::parse(&e.channel),
            ) else {
                continue;
            };
            if !channel.is_cache() {
                continue;
            }
            let rt = self.runtime(&app);
            rt.registry
                .cache
                .entry(channel)
                .or_insert_with(|| crate::registry::CachedEvent {
                    frame: bytes::Bytes::from(e.frame),
                    data: e.data,
                    expires: now + Duration::from_millis(e.ttl_ms),
                });
        }
    }

    /// Every presence member whose socket is on this node.
    fn local_members(&self) -> Vec<SyncMember> {
        let mut out = Vec::new();
        for rt in self.inner.runtimes.iter() {
            for ch in rt.registry.channels.iter() {
                if let Some(m) = &ch.members {
                    for v in m.views() {
                        out.push(SyncMember {
                            app: rt.key().clone(),
                            channel: ch.key().to_string(),
                            user_id: v.user_id.to_owned(),
                            info: v.user_info.map(|r| r.get().to_owned()),
                        });
                    }
                }
            }
        }
        out
    }

    fn handle_cluster_message(&self, link: &ClusterLink, env: Envelope) {
        let from = env.from;
        let known = {
            let mut peers = link.peers.lock();
            let known = peers.contains_key(&from);
            let peer = peers.entry(from).or_insert_with(|| Peer {
                last_seen: Instant::now(),
                connections: HashMap::new(),
                draining: false,
            });
            if matches!(env.msg, Msg::Draining) {
                peer.draining = true;
            }
            peer.last_seen = Instant::now();
            if let Msg::Heartbeat { connections } = &env.msg {
                peer.connections = connections.iter().cloned().collect();
            }
            known
        };
        if !known && !matches!(env.msg, Msg::Leaving) {
            info!(node = from, "cluster node joined");
            if !matches!(env.msg, Msg::Hello | Msg::Sync { .. }) {
                // We missed its announcement (it started while we were disconnected): ask for state.
                link.send(Destination::Node(from), Msg::Hello);
            }
        }
        match env.msg {
            Msg::Publish {
                app,
                channels,
                name,
                data,
                except,
            } => {
                self.apply_remote_publish(&app, &channels, &name, &data, except.as_deref());
            }
            Msg::ClientEvent {
                app,
                channel,
                event,
                data,
                except,
                user_id,
            } => {
                self.apply_remote_client_event(
                    &app,
                    &channel,
                    &event,
                    &data,
                    &except,
                    user_id.as_deref(),
                );
            }
            Msg::Terminate { app, user_id } => {
                if let Some(app) = self.apps().by_id(&app) {
                    self.terminate_local(&app, &user_id);
                }
            }
            Msg::MemberJoined(m) => self.remote_member_joined(link, from, m),
            Msg::MemberLeft {
                app,
                channel,
                user_id,
            } => {
                self.remote_member_left(link, from, &app, &channel, &user_id);
            }
            Msg::Heartbeat { .. } => {}
            Msg::Hello => {
                link.send(Destination::Node(from), self.local_sync());
                self.send_heartbeat(link);
            }
            Msg::Sync {
                members,
                channels,
                cache,
            } => {
                self.apply_sync(link, from, members);
                self.apply_cache(cache);
                let now: std::collections::HashSet<(String, String)> =
                    channels.iter().cloned().collect();
                for (app, channel) in link.occupancy.of_node(from) {
                    if !now.contains(&(app.clone(), channel.clone())) {
                        link.occupancy.vacate(from, &app, &channel);
                    }
                }
                for (app, channel) in channels {
                    link.occupancy.occupy(from, &app, &channel);
                }
            }
            Msg::Occupied { app, channel } => link.occupancy.occupy(from, &app, &channel),
            Msg::Vacated { app, channel } => {
                link.occupancy.vacate(from, &app, &channel);
            }
            Msg::Draining => info!(node = from, "cluster node is draining"),
            Msg::Leaving => {
                info!(node = from, "cluster node left");
                self.forget_node(link, from);
            }
            Msg::Query { id, query } => {
                let answer = self.answer_query(&query);
                link.send(Destination::Node(from), Msg::Reply { id, answer });
            }
            Msg::Reply { id, answer } => {
                if let Some(tx) = link.queries.lock().get(&id) {
                    let _ = tx.send(QueryNews::Answer(from, answer));
                }
            }
        }
    }

    fn apply_sync(&self, link: &ClusterLink, from: NodeId, members: Vec<SyncMember>) {
        let had: Vec<(String, String, String)> = link.presence.of_node(from);
        let now: std::collections::HashSet<(String, String, String)> = members
            .iter()
            .map(|m| (m.app.clone(), m.channel.clone(), m.user_id.clone()))
            .collect();
        for (app, channel, user) in had {
            if !now.contains(&(app.clone(), channel.clone(), user.clone())) {
                self.remote_member_left(link, from, &app, &channel, &user);
            }
        }
        for m in members {
            self.remote_member_joined(link, from, m);
        }
    }

    fn answer_query(&self, query: &Query) -> Answer {
        match query {
            Query::Channels { app, prefix } => Answer::Channels(
                self.inner
                    .runtimes
                    .get(app)
                    .map(|rt| {
                        rt.registry
                            .list(prefix)
                            .into_iter()
                            .map(|(name, stats)| (name.to_string(), stats.subscription_count))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            Query::Channel { app, channel } => Answer::Channel(
                self.inner
                    .runtimes
                    .get(app)
                    .and_then(|rt| rt.registry.stats(channel))
                    .map_or(0, |s| s.subscription_count),
            ),
        }
    }

    /// A remote node's first socket of a user joined: announce the user locally if nobody had it.
    fn remote_member_joined(&self, link: &ClusterLink, from: NodeId, m: SyncMember) {
        let Some(app) = self.apps().by_id(&m.app) else {
            return;
        };
        let info = m.info.and_then(|i| RawValue::from_string(i).ok());
        let rt = self.runtime(&app);
        // Lock order: the channel shard first, then the remote roster.
        let local = rt.registry.channels.get(m.channel.as_str());
        let local_has = local
            .as_ref()
            .and_then(|c| c.members.as_ref())
            .is_some_and(|members| members.contains(&m.user_id));
        let first_remote = link
            .presence
            .join(from, &m.app, &m.channel, &m.user_id, info.clone());
        if first_remote && !local_has {
            if let Some(ch) = &local {
                let frame = vestnik_protocol::ServerMessage::MemberAdded {
                    channel: &m.channel,
                    member: vestnik_protocol::message::MemberView {
                        user_id: &m.user_id,
                        user_info: info.as_deref(),
                    },
                }
                .encode();
                ch.fan_out(&frame, None);
            }
        }
    }

    /// A remote node's last socket of a user left: announce it locally if nobody has the user now.
    /// Returns whether the user left the cluster-wide roster.
    fn remote_member_left(
        &self,
        link: &ClusterLink,
        from: NodeId,
        app_id: &str,
        channel: &str,
        user: &str,
    ) -> bool {
        let Some(app) = self.apps().by_id(app_id) else {
            return false;
        };
        let rt = self.runtime(&app);
        let local = rt.registry.channels.get(channel);
        let local_has = local
            .as_ref()
            .and_then(|c| c.members.as_ref())
            .is_some_and(|members| members.contains(user));
        let gone = link.presence.leave(from, app_id, channel, user);
        if gone && !local_has {
            if let Some(ch) = &local {
                let frame = vestnik_protocol::ServerMessage::MemberRemoved {
                    channel,
                    user_id: user,
                }
                .encode();
                ch.fan_out(&frame, None);
            }
        }
        gone && !local_has
    }
}

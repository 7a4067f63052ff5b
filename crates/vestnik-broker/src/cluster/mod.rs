//! Cluster semantics over any [`Adapter`]: several nodes behave as one broker.
//!
//! - API and client events are relayed to every node, which fans them out to its own sockets once
//!   (exclusions by socket id hold everywhere, since socket ids are unique in the cluster).
//! - Presence is replicated: each node announces its first and last socket of a user in a channel;
//!   every node keeps the union, so `member_added` and `member_removed` go out once per user.
//! - Heartbeats carry socket counts (for app quotas) and detect dead nodes, whose members are then
//!   removed everywhere. A (re)connected node says `Hello` and everyone answers with a `Sync` of its
//!   own state, so a new node, or one that lost the backbone, catches up at once.
//! - Silence is judged only while this node could hear (`hearing`): a node that was stopped or cut
//!   off writes nobody off for it. A node the others wrote off and that comes back is told as a
//!   return (`departed`): what its `Sync` brings back is reported as occupied and added again.
//! - Channel counts are asked of every live node when the API needs them.
//!
//! # Layers
//! The cluster is a layer over the broker, as centrifuge's `Node` sits over its `Broker`:
//! - [`ClusterLink`] is this node's membership (its id, the adapter, the peers, the remote rosters)
//!   and the broker's [`ClusterHook`]: the broker tells it about local happenings in its own words,
//!   and the link turns them into wire messages.
//! - [`ClusterNode`] owns the cluster loop: it hears the adapter, decodes each message and calls the
//!   broker's narrow local API (publish locally, apply a remote member change, take a snapshot).
//! - `message` is the wire format, private to this module: the broker never names a variant.
//!
//! The adapter only moves bytes. This module must never block the publish path: sending is a
//! non-blocking queue push, and a message that cannot be queued is counted as lost. It must never
//! reach into the broker's state; it goes through the broker's local API.

mod departed;
mod hearing;
mod message;
mod node;
mod presence;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use vestnik_protocol::ChannelName;

use crate::adapter::{Adapter, Destination, NodeId};
use crate::app::App;
use crate::broker::PublishEvent;
use crate::hook::{ClusterHook, HookFuture, RelayedClientEvent, RemoteMembers};
use message::{Answer, Envelope, Msg, Query, SyncMember};
pub(crate) use node::ClusterNode;
use presence::{RemoteOccupancy, RemotePresence};

/// Timings of the cluster protocol.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// How often a node says it is alive.
    pub heartbeat_interval: Duration,
    /// Silence after which a node counts as dead and its members are removed (at most 30 s),
    /// measured only while this node could hear it (see `hearing`).
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

/// What this node knows of another live node.
#[derive(Debug)]
struct Peer {
    /// When it last said anything; silence past the node timeout means it died.
    last_seen: Instant,
    /// Its sockets per app id, from its last heartbeat, for app quotas.
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
///
/// It is the broker's [`ClusterHook`] (the outgoing half: local happenings become wire messages)
/// and the edges' handle on the cluster (health, metrics, drain, readiness). The incoming half is
/// the cluster loop in [`ClusterNode`], which shares this link.
///
/// Lock order: the remote rosters come after a channel shard (the broker calls them under one);
/// `peers` and `queries` are never held while another lock is taken.
pub struct ClusterLink {
    /// This node's id.
    pub node: NodeId,
    /// The backbone: moves encoded envelopes, knows nothing of their meaning.
    adapter: Arc<dyn Adapter>,
    /// Heartbeat, node timeout and query timeout.
    settings: ClusterSettings,
    /// Presence members on other nodes, by (app, channel) and user.
    presence: RemotePresence,
    /// Which other nodes have a subscriber on each (app, channel).
    occupancy: RemoteOccupancy,
    /// Other live nodes.
    peers: Mutex<HashMap<NodeId, Peer>>,
    /// Outstanding queries by correlation id, each with the channel its answers go to.
    queries: Mutex<HashMap<u64, mpsc::UnboundedSender<QueryNews>>>,
    /// The next query's correlation id.
    next_query: AtomicU64,
    /// Counters for logs and metrics.
    pub counters: ClusterCounters,
    /// Whether the cluster loop has seen the adapter connect (and not lose the backbone since).
    connected: AtomicBool,
    /// Flips to `true` once the node has heard from the others (or has nobody to hear from).
    ready: watch::Sender<bool>,
    /// When a lost message was last logged, to log an outage at most once a second.
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
    /// A link that has not heard from anyone yet: no peers, empty remote rosters, not ready.
    fn new(node: NodeId, adapter: Arc<dyn Adapter>, settings: ClusterSettings) -> Self {
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
    fn send(&self, to: Destination, msg: Msg) {
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
    async fn ask(&self, query: Query) -> Vec<Answer> {
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

impl ClusterHook for ClusterLink {
    fn published(&self, app: &App, event: &PublishEvent<'_>) {
        self.send(
            Destination::All,
            Msg::Publish {
                app: app.id.clone(),
                channels: event.channels.iter().map(|c| c.to_string()).collect(),
                name: event.name.to_owned(),
                data: event.data.to_owned(),
                except: event.except.map(|s| s.to_string()),
            },
        );
    }

    fn client_event(&self, app: &App, event: &RelayedClientEvent<'_>) {
        self.send(
            Destination::All,
            Msg::ClientEvent {
                app: app.id.clone(),
                channel: event.channel.to_string(),
                event: event.event.to_owned(),
                data: event.data.to_owned(),
                except: event.socket_id.to_string(),
                user_id: event.user_id.map(str::to_owned),
            },
        );
    }

    fn terminate(&self, app: &App, user_id: &str) {
        self.send(
            Destination::All,
            Msg::Terminate {
                app: app.id.clone(),
                user_id: user_id.to_owned(),
            },
        );
    }

    fn occupied(&self, app: &App, channel: &ChannelName) -> bool {
        self.send(
            Destination::All,
            Msg::Occupied {
                app: app.id.clone(),
                channel: channel.to_string(),
            },
        );
        self.occupancy.has(&app.id, channel.as_str())
    }

    fn vacated(&self, app: &App, channel: &ChannelName) -> bool {
        self.send(
            Destination::All,
            Msg::Vacated {
                app: app.id.clone(),
                channel: channel.to_string(),
            },
        );
        self.occupancy.has(&app.id, channel.as_str())
    }

    fn member_joined(
        &self,
        app: &App,
        channel: &ChannelName,
        user_id: &str,
        info: Option<&RawValue>,
    ) {
        self.send(
            Destination::All,
            Msg::MemberJoined(SyncMember {
                app: app.id.clone(),
                channel: channel.to_string(),
                user_id: user_id.to_owned(),
                info: info.map(|i| i.get().to_owned()),
            }),
        );
    }

    fn member_left(&self, app: &App, channel: &ChannelName, user_id: &str) {
        self.send(
            Destination::All,
            Msg::MemberLeft {
                app: app.id.clone(),
                channel: channel.to_string(),
                user_id: user_id.to_owned(),
            },
        );
    }

    fn remote_members(&self, app: &App, channel: &str) -> RemoteMembers {
        self.presence.members(&app.id, channel)
    }

    fn has_remote_member(&self, app: &App, channel: &str, user_id: &str) -> bool {
        self.presence.has(&app.id, channel, user_id)
    }

    fn remote_sockets(&self, app: &App) -> usize {
        self.remote_connections(&app.id)
    }

    fn remote_subscriptions<'a>(
        &'a self,
        app: &'a App,
        channel: &'a ChannelName,
    ) -> HookFuture<'a, usize> {
        Box::pin(async move {
            let query = Query::Channel {
                app: app.id.clone(),
                channel: channel.to_string(),
            };
            self.ask(query)
                .await
                .iter()
                .map(|a| match a {
                    Answer::Channel(n) => *n,
                    Answer::Channels(_) => 0,
                })
                .sum()
        })
    }

    fn remote_channels<'a>(
        &'a self,
        app: &'a App,
        prefix: &'a str,
    ) -> HookFuture<'a, Vec<(String, usize)>> {
        Box::pin(async move {
            let query = Query::Channels {
                app: app.id.clone(),
                prefix: prefix.to_owned(),
            };
            let mut out = Vec::new();
            for answer in self.ask(query).await {
                match answer {
                    Answer::Channels(list) => out.extend(list),
                    Answer::Channel(_) => {}
                }
            }
            out
        })
    }
}

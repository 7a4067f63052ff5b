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
//! - Relays are numbered per origin and logged by their sender for as long as the relay hold
//!   (`replay`): a node that reconnects to a restarted backbone later than another, and so missed
//!   what the other relayed meanwhile, sees the gap in the numbers and asks for it again; it
//!   delivers in order and drops repeats, and counts as lost what the log no longer has.
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
mod interest;
mod message;
mod node;
mod presence;
mod replay;
mod router;
mod routing;
mod sync;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::value::RawValue;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use vestnik_protocol::ChannelName;

use bytes::Bytes;

use crate::adapter::{Adapter, Appended, Destination, HistoryStore, NodeId};
use crate::app::App;
use crate::broker::PublishEvent;
use crate::hook::{ClusterHook, HookFuture, RelayedClientEvent, RemoteMembers};
pub use interest::route_shard;
use interest::Interest;
use message::{Answer, Envelope, Msg, Query, SyncMember, WirePosition};
pub(crate) use node::ClusterNode;
use presence::{RemoteOccupancy, RemotePresence};
use replay::{Lane, SentLog};
pub use routing::EverywhereGuard;

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
    /// Route shards of interest routing: a channel's event relays go only to the nodes listening
    /// to its shard (those with a subscriber of a channel in it). 0 sends every relay to every
    /// node, as before interest routing (and as a node from before it expects).
    pub route_shards: u32,
    /// How long a node keeps listening to a shard after its last local subscriber there left.
    pub route_linger: Duration,
}

impl ClusterSettings {
    /// The default number of route shards: 4096. See `docs/scaling.md` for the waste bound.
    pub const DEFAULT_ROUTE_SHARDS: u32 = 4096;
    /// The default linger: 2 s, longer than a page reload.
    pub const DEFAULT_ROUTE_LINGER: Duration = Duration::from_secs(2);
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(10),
            query_timeout: Duration::from_millis(1000),
            route_shards: Self::DEFAULT_ROUTE_SHARDS,
            route_linger: Self::DEFAULT_ROUTE_LINGER,
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
    /// The UTC day its `messages` count.
    day: i64,
    /// Its messages of `day` per app id, and how many of them it wrote to the usage ledger, from
    /// its last heartbeat, for the daily message quota.
    messages: HashMap<String, (u64, u64)>,
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
    /// Messages that could not be handed to the adapter (backbone down or queue full), and
    /// other nodes' relays this node missed and could not get again (older than their replay
    /// log, or a gap nobody filled in time).
    pub lost: AtomicU64,
    /// Relays sent again to a node that missed them.
    pub resent: AtomicU64,
    /// Relays received twice (a resend crossing the live copy) and dropped before any socket.
    pub repeats: AtomicU64,
    /// Channel event relays (API and client events) from other nodes applied here.
    pub relays_received: AtomicU64,
    /// Of those, the ones for channels with no subscriber here: the waste interest routing
    /// bounds (0 without shard collisions and lingering shards; every relay without routing).
    pub relays_unserved: AtomicU64,
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
/// `peers` and `queries` are never held while another lock is taken; `sent` is held while a relay
/// is handed to the adapter (so numbers reach the backbone in order) and is taken last, before
/// only the adapter's own locks.
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
    /// The relays this node sent recently, numbered, for nodes that missed them.
    sent: Mutex<SentLog>,
    /// The number of the last relay handed to the adapter, stamped on every other message.
    last_relay: AtomicU64,
    /// How long relays stay in the log (and so how long a receiver waits for a gap to fill).
    replay_window: Duration,
    /// Interest routing, when the adapter routes and `route_shards` is not 0.
    interest: Option<Interest>,
    /// The backbone's history store, when it keeps one: positions are then cluster-wide.
    history: Option<Arc<dyn HistoryStore>>,
    /// The newest route set generation that every live node's side of the backbone knows, on a
    /// backbone whose interest spreads between its servers by itself (see
    /// [`Adapter::interest_is_eventual`]); `ClusterNode::reach_loop` moves it.
    reached: watch::Sender<u64>,
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
        let replay = adapter.replay_limits();
        let interest = (adapter.routes().is_some() && settings.route_shards > 0)
            .then(|| Interest::new(settings.route_shards, settings.route_linger));
        Self {
            interest,
            history: adapter.history(),
            sent: Mutex::new(SentLog::new(replay)),
            last_relay: AtomicU64::new(0),
            replay_window: replay.time,
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
            reached: watch::channel(0).0,
        }
    }

    /// Sends a message; counts it as lost if the adapter cannot take it. A relay gets the next
    /// number of its lane (the shard it goes to, or the all-nodes lane) and is logged for
    /// resending; any other message carries the all-nodes lane's last number.
    fn send(&self, to: Destination, msg: Msg) {
        if msg.is_relay() {
            let lane: Lane = match to {
                Destination::Shard(shard) => Some(shard),
                Destination::All | Destination::Node(_) => None,
            };
            let mut sent = self.sent.lock();
            let seq = sent.next_seq(lane);
            let bytes = Envelope {
                from: self.node,
                seq,
                lane,
                msg,
            }
            .encode();
            // Numbered under the log's lock, so the backbone gets the numbers in order. A relay
            // the adapter refuses takes no number: it is counted lost here, once, and no peer
            // waits for it.
            if self.hand_over(to, bytes.clone()) {
                sent.record(Instant::now(), lane, seq, bytes);
                if lane.is_none() {
                    self.last_relay.store(seq, Ordering::Release);
                }
            }
            return;
        }
        let bytes = Envelope {
            from: self.node,
            seq: self.last_relay.load(Ordering::Acquire),
            lane: None,
            msg,
        }
        .encode();
        self.hand_over(to, bytes);
    }

    /// Sends `node` the relays of `lane` it missed after `after`: first `Missed` for those the
    /// log no longer has, then the others as they were sent.
    fn resend(&self, node: NodeId, lane: Lane, after: u64) {
        let replay = self.sent.lock().since(Instant::now(), lane, after);
        if let Some(upto) = replay.missed_upto {
            warn!(
                node = self.node,
                peer = node,
                after,
                upto,
                ?lane,
                "a node asked for relays older than the replay log keeps; they are lost to it"
            );
            self.send(Destination::Node(node), Msg::Missed { upto, lane });
        }
        // A resend the adapter refuses (its queue is full) is not lost: the peer still has the
        // gap, asks again, and counts it only if it gives the gap up.
        let mut resent = 0;
        for payload in replay.payloads {
            if self.adapter.send(Destination::Node(node), payload) {
                resent += 1;
            }
        }
        self.counters.resent.fetch_add(resent, Ordering::Relaxed);
        self.counters.sent.fetch_add(resent, Ordering::Relaxed);
    }

    /// Hands encoded bytes to the adapter; counts them as sent, or as lost if it cannot take them.
    fn hand_over(&self, to: Destination, bytes: Bytes) -> bool {
        if self.adapter.send(to, bytes) {
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            return true;
        }
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
        false
    }

    /// Counts relays from other nodes that this node missed for good.
    fn count_missed(&self, from: NodeId, lost: u64) {
        if lost > 0 {
            self.counters.lost.fetch_add(lost, Ordering::Relaxed);
            warn!(
                node = self.node,
                origin = from,
                lost,
                "relays from another node were missed and cannot be had again; counted as lost"
            );
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

    /// Messages of `app_id` that the other live nodes counted on `day` (Unix time of its UTC
    /// midnight), and how many of those they wrote to the usage ledger, from their last
    /// heartbeats. Draining nodes count: their messages were sent all the same.
    pub fn remote_messages(&self, app_id: &str, day: i64) -> (u64, u64) {
        self.peers
            .lock()
            .values()
            .filter(|p| p.day == day)
            .filter_map(|p| p.messages.get(app_id))
            .fold((0, 0), |(c, f), (pc, pf)| {
                (c.saturating_add(*pc), f.saturating_add(*pf))
            })
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
    pub(super) async fn ask(&self, query: Query) -> Vec<Answer> {
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
    fn published(&self, app: &App, event: &PublishEvent<'_>, positions: &[Option<Appended>]) {
        for (to, channels) in self.routes_of(app, event.channels) {
            // The positions of this group's channels, in its order (none when none has one).
            let positions: Vec<Option<WirePosition>> = if positions.iter().any(Option::is_some) {
                channels
                    .iter()
                    .map(|c| {
                        let i = event.channels.iter().position(|n| n.as_str() == c)?;
                        positions.get(i)?.as_ref().map(WirePosition::of)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            self.send(
                to,
                Msg::Publish {
                    app: app.id.clone(),
                    channels,
                    name: event.name.to_owned(),
                    data: event.data.to_owned(),
                    except: event.except.map(|s| s.to_string()),
                    positions,
                },
            );
        }
    }

    fn client_event(&self, app: &App, event: &RelayedClientEvent<'_>, position: Option<&Appended>) {
        self.send(
            self.route_of(app, event.channel),
            Msg::ClientEvent {
                app: app.id.clone(),
                channel: event.channel.to_string(),
                event: event.event.to_owned(),
                data: event.data.to_owned(),
                except: event.socket_id.to_string(),
                user_id: event.user_id.map(str::to_owned),
                position: position.map(WirePosition::of),
            },
        );
    }

    fn history_store(&self) -> Option<&Arc<dyn HistoryStore>> {
        self.history.as_ref()
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
        if let Some(interest) = &self.interest {
            interest.occupied(interest.shard(&app.id, channel.as_str()));
        }
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
        if let Some(interest) = &self.interest {
            interest.vacated(interest.shard(&app.id, channel.as_str()), Instant::now());
        }
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

    fn subscribe_ready(&self, app: &App, channel: &ChannelName) -> Option<HookFuture<'static, ()>> {
        self.route_ready(app, channel)
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
                    Answer::Channels(_) | Answer::Pong => 0,
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
                    Answer::Channel(_) | Answer::Pong => {}
                }
            }
            out
        })
    }
}

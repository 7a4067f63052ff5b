//! One connection lifetime to Redis: a subscriber connection listening on this node's two
//! channels, and a multiplexed connection that PUBLISHes; on a Redis Cluster, one such pair per
//! master (shard channels on the master of their slot, classic channels on the master of slot
//! 0). A session is opened whole (every connection up, every SUBSCRIBE confirmed) or not at all,
//! and is thrown away whole when any connection fails, a command is answered `MOVED` or
//! `CLUSTERDOWN`, or Redis ends a shard subscription by itself; the reconnect loop in `link` then
//! opens a new one (asking a cluster for its slot map again).
//!
//! This module must never retry or sleep: it reports failure and lets `link` decide.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, RedisError};
use tokio::sync::mpsc;
use vestnik_broker::adapter::{Destination, NodeId, ShardSet};

use crate::slots;
use crate::target::{Target, Topology};
use crate::{Error, RedisOptions};

/// The pub/sub channel names of one node: `{prefix}:all`, `{prefix}:node:{id}`, and the route
/// shards' `{prefix}:shard:{n}` (Redis 7 sharded pub/sub, which a Redis Cluster spreads over its
/// shards by hash slot instead of broadcasting every message to every cluster node).
#[derive(Debug, Clone)]
pub(crate) struct Channels {
    prefix: String,
    /// Every node's channel.
    pub(crate) all: String,
    /// This node's own channel.
    pub(crate) own: String,
}

impl Channels {
    /// Names for `node` under `prefix`. The prefix must be non-empty and free of whitespace and
    /// control characters, so that the names read well in `PUBSUB CHANNELS` and logs.
    pub(crate) fn new(prefix: &str, node: NodeId) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        };
        vestnik_broker::adapter::check_prefix(prefix).map_err(invalid)?;
        Ok(Self {
            prefix: prefix.to_owned(),
            all: format!("{prefix}:all"),
            own: format!("{prefix}:node:{node}"),
        })
    }

    /// The channel a destination maps to.
    pub(crate) fn of(&self, to: Destination) -> Cow<'_, str> {
        match to {
            Destination::All => Cow::Borrowed(&self.all),
            Destination::Node(id) => Cow::Owned(format!("{}:node:{id}", self.prefix)),
            Destination::Shard(n) => Cow::Owned(self.shard(n)),
        }
    }

    /// A route shard's sharded channel.
    pub(crate) fn shard(&self, n: u32) -> String {
        format!("{}:shard:{n}", self.prefix)
    }
}

/// The two connections to one server (a single Redis, or one master of a cluster).
struct Node {
    /// The subscribing connection (RESP3, so that one connection carries classic and sharded
    /// subscriptions and still answers PING); its messages arrive on the session's `pushes`.
    subscriber: MultiplexedConnection,
    /// The publishing connection.
    publisher: MultiplexedConnection,
}

/// All connections of one lifetime: one [`Node`] for a single Redis, one per master for a
/// Redis Cluster.
pub(crate) struct Session {
    /// The servers; for a cluster, in the order of `masters`.
    nodes: Vec<Node>,
    /// Messages on this node's channels and shards, from every subscriber connection; a
    /// `Disconnection` (or the end) means a subscriber connection is gone.
    pub(crate) pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// For a cluster: the slot map the session was opened with, and the address of each node.
    cluster: Option<(Topology, Vec<String>)>,
    /// The route shards subscribed on this session.
    shards: ShardSet,
    /// Shard channels this session asked to leave and whose `sunsubscribe` has not come back
    /// yet. Any other `sunsubscribe` is the server's (a cluster slot moved away).
    leaving: HashMap<String, u32>,
}

/// The same server, spoken to in RESP3: a RESP2 subscriber can neither issue `SSUBSCRIBE`
/// through the client library nor run PING alongside its subscriptions on a multiplexed
/// connection. Redis 6 and later speak RESP3.
fn resp3(client: &Client) -> Result<Client, RedisError> {
    let info = client.get_connection_info().clone();
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(redis))
}

/// Connects a subscriber (its pushes to `push_tx`) and a publisher to `client`'s server.
async fn node(
    client: &Client,
    options: &RedisOptions,
    push_tx: &mpsc::UnboundedSender<PushInfo>,
) -> Result<Node, RedisError> {
    let client = resp3(client)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(options.connect_timeout))
        .set_response_timeout(Some(options.response_timeout));
    let subscriber = client
        .get_multiplexed_async_connection_with_config(
            &config.clone().set_push_sender(push_tx.clone()),
        )
        .await?;
    let publisher = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    Ok(Node {
        subscriber,
        publisher,
    })
}

impl Session {
    /// Resolves the target (for a cluster: asks the seeds for the slot map), connects every
    /// server's connections, subscribes to this node's channels and to `shards`, all within
    /// `options.connect_timeout`.
    pub(crate) async fn open(
        target: &mut Target,
        channels: &Channels,
        options: &RedisOptions,
        shards: &ShardSet,
    ) -> Result<Self, Error> {
        let open = async {
            let (push_tx, pushes) = mpsc::unbounded_channel();
            let (nodes, cluster) = match target {
                Target::Cluster(seeds) => {
                    let topology = seeds.topology(options.connect_timeout).await?;
                    let masters = topology.masters();
                    let mut nodes = Vec::with_capacity(masters.len());
                    for addr in &masters {
                        nodes.push(node(&seeds.client(addr)?, options, &push_tx).await?);
                    }
                    (nodes, Some((topology, masters)))
                }
                _ => (
                    vec![node(&target.client().await?, options, &push_tx).await?],
                    None,
                ),
            };
            let mut session = Self {
                nodes,
                pushes,
                cluster,
                shards: ShardSet::new(),
                leaving: HashMap::new(),
            };
            // Classic channels: on the node of slot 0 (a cluster broadcasts classic PUBLISH to
            // every node, so any one consistent choice hears everything). One channel per
            // SUBSCRIBE: each answers once, so replies pair with requests.
            let classic = session.classic();
            let subscriber = &mut session.nodes[classic].subscriber;
            subscriber.subscribe(channels.all.as_str()).await?;
            subscriber.subscribe(channels.own.as_str()).await?;
            session.route(channels, shards).await?;
            Ok::<_, RedisError>(session)
        };
        match tokio::time::timeout(options.connect_timeout, open).await {
            Ok(session) => Ok(session?),
            Err(_) => Err(Error::Timeout(options.connect_timeout)),
        }
    }

    /// The node that carries classic (non-sharded) pub/sub: the master of slot 0.
    fn classic(&self) -> usize {
        self.node_of_slot(0)
    }

    /// The node owning `slot` (the only node of a single Redis). A slot no master owns (a
    /// cluster being resharded) goes to the first node, which answers `MOVED` or
    /// `CLUSTERDOWN`: the session then ends and the next one asks for the slot map again.
    fn node_of_slot(&self, slot: u16) -> usize {
        let Some((topology, masters)) = &self.cluster else {
            return 0;
        };
        topology
            .master(slot)
            .and_then(|addr| masters.iter().position(|m| m == addr))
            .unwrap_or(0)
    }

    /// The node of a sharded channel.
    fn node_of_shard(&self, channel: &str) -> usize {
        self.node_of_slot(slots::slot(channel.as_bytes()))
    }

    /// Subscribes to the shards of `wanted` not subscribed yet and unsubscribes from the others,
    /// in one pipeline per server (one channel per command, so each answers once). When it
    /// returns `Ok`, Redis has acknowledged every change: a message published to a new shard
    /// from now on reaches this node.
    pub(crate) async fn route(
        &mut self,
        channels: &Channels,
        wanted: &ShardSet,
    ) -> Result<(), RedisError> {
        let add: Vec<u32> = wanted.difference(&self.shards).copied().collect();
        let remove: Vec<u32> = self.shards.difference(wanted).copied().collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let mut pipes: Vec<Option<redis::Pipeline>> = vec![None; self.nodes.len()];
        for n in &add {
            let channel = channels.shard(*n);
            let at = self.node_of_shard(&channel);
            pipes[at]
                .get_or_insert_with(redis::pipe)
                .cmd("SSUBSCRIBE")
                .arg(channel)
                .ignore();
        }
        for n in &remove {
            let channel = channels.shard(*n);
            let at = self.node_of_shard(&channel);
            *self.leaving.entry(channel.clone()).or_default() += 1;
            pipes[at]
                .get_or_insert_with(redis::pipe)
                .cmd("SUNSUBSCRIBE")
                .arg(channel)
                .ignore();
        }
        for (at, pipe) in pipes.into_iter().enumerate() {
            if let Some(pipe) = pipe {
                pipe.query_async::<()>(&mut self.nodes[at].subscriber)
                    .await?;
            }
        }
        self.shards = wanted.clone();
        Ok(())
    }

    /// Publishes `batch` and empties it: `PUBLISH` to a node or to all, `SPUBLISH` to a route
    /// shard. Consecutive messages for one server go in one pipeline (one round trip, in order),
    /// and each pipeline is answered before the next is sent, so send order holds across
    /// servers. The publishing connections' response timeout bounds the wait. A cluster's
    /// `MOVED` or `CLUSTERDOWN` answer is an error, which ends the session.
    pub(crate) async fn publish(
        &mut self,
        channels: &Channels,
        batch: &mut Vec<(Destination, Bytes)>,
    ) -> Result<(), RedisError> {
        let mut run: Option<(usize, redis::Pipeline)> = None;
        for (to, payload) in batch.drain(..) {
            let channel = channels.of(to);
            let (command, at) = match to {
                Destination::Shard(_) => ("SPUBLISH", self.node_of_shard(&channel)),
                Destination::All | Destination::Node(_) => ("PUBLISH", self.classic()),
            };
            if run.as_ref().is_some_and(|(node, _)| *node != at) {
                if let Some((node, pipe)) = run.take() {
                    pipe.query_async::<()>(&mut self.nodes[node].publisher)
                        .await?;
                }
            }
            run.get_or_insert_with(|| (at, redis::pipe()))
                .1
                .cmd(command)
                .arg(channel.as_ref())
                .arg(payload.as_ref())
                .ignore();
        }
        if let Some((node, pipe)) = run {
            pipe.query_async::<()>(&mut self.nodes[node].publisher)
                .await?;
        }
        Ok(())
    }

    /// PINGs every connection; an error means the session is dead.
    pub(crate) async fn ping(&mut self, limit: Duration) -> Result<(), String> {
        for node in &mut self.nodes {
            for (name, conn) in [
                ("subscriber", &mut node.subscriber),
                ("publishing", &mut node.publisher),
            ] {
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<redis::Value>(conn);
                match tokio::time::timeout(limit, ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(format!("PING on the {name} connection failed: {e}")),
                    Err(_) => {
                        return Err(format!("PING on the {name} connection took over {limit:?}"))
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads a push from the subscriber connections. A `sunsubscribe` this session did not ask
    /// for means the server dropped a shard subscription (its slot moved to another master):
    /// the session is then [`Push::Lost`], so that the next one subscribes where the slot is now.
    pub(crate) fn read(&mut self, info: Option<PushInfo>) -> Push {
        if let Some(info) = &info {
            if info.kind == PushKind::SUnsubscribe {
                let channel = match info.data.first() {
                    Some(redis::Value::BulkString(c)) => String::from_utf8_lossy(c).into_owned(),
                    _ => String::new(),
                };
                return match self.leaving.get_mut(&channel) {
                    Some(n) => {
                        *n -= 1;
                        if *n == 0 {
                            self.leaving.remove(&channel);
                        }
                        Push::Other
                    }
                    None => Push::Moved(channel),
                };
            }
        }
        Push::of(info)
    }
}

/// What one push from the subscriber connection means.
pub(crate) enum Push {
    /// A message on one of this node's channels or shards.
    Message(Bytes),
    /// The connection is gone.
    Lost,
    /// The server ended the subscription of this shard channel (a cluster slot moved).
    Moved(String),
    /// A subscription's acknowledgement or anything else: nothing to do.
    Other,
}

impl Push {
    /// Reads a push.
    pub(crate) fn of(info: Option<PushInfo>) -> Self {
        let Some(info) = info else {
            return Self::Lost;
        };
        match info.kind {
            PushKind::Message | PushKind::SMessage => match info.data.into_iter().nth(1) {
                Some(redis::Value::BulkString(payload)) => Self::Message(Bytes::from(payload)),
                _ => Self::Other,
            },
            PushKind::Disconnection => Self::Lost,
            _ => Self::Other,
        }
    }
}

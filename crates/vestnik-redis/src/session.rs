//! One connection lifetime to Redis: a subscriber connection listening on this node's two
//! channels, and a multiplexed connection that PUBLISHes. A session is opened whole (both
//! connections up, both SUBSCRIBEs confirmed) or not at all, and is thrown away whole when either
//! connection fails; the reconnect loop in `link` then opens a new one.
//!
//! This module must never retry or sleep: it reports failure and lets `link` decide.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, RedisError};
use tokio::sync::mpsc;
use vestnik_broker::adapter::{Destination, NodeId, ShardSet};

use crate::target::Target;
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

/// Both connections of one lifetime.
pub(crate) struct Session {
    /// The subscribing connection (RESP3, so that one connection carries classic and sharded
    /// subscriptions and still answers PING); its messages arrive on `pushes`.
    subscriber: MultiplexedConnection,
    /// Messages on this node's channels and shards; a `Disconnection` (or the end) means the
    /// subscriber connection is gone.
    pub(crate) pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// The publishing connection.
    publisher: MultiplexedConnection,
    /// The route shards subscribed on this session.
    shards: ShardSet,
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

impl Session {
    /// Resolves the target, connects both connections, subscribes to this node's channels and to
    /// `shards`, all within `options.connect_timeout`.
    pub(crate) async fn open(
        target: &mut Target,
        channels: &Channels,
        options: &RedisOptions,
        shards: &ShardSet,
    ) -> Result<Self, Error> {
        let open = async {
            let client = resp3(&target.client().await?)?;
            let (push_tx, pushes) = mpsc::unbounded_channel();
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.connect_timeout))
                .set_response_timeout(Some(options.response_timeout));
            let mut subscriber = client
                .get_multiplexed_async_connection_with_config(
                    &config.clone().set_push_sender(push_tx),
                )
                .await?;
            // One channel per SUBSCRIBE: each answers once, so replies pair with requests.
            subscriber.subscribe(channels.all.as_str()).await?;
            subscriber.subscribe(channels.own.as_str()).await?;
            let publisher = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            let mut session = Self {
                subscriber,
                pushes,
                publisher,
                shards: ShardSet::new(),
            };
            session.route(channels, shards).await?;
            Ok::<_, RedisError>(session)
        };
        match tokio::time::timeout(options.connect_timeout, open).await {
            Ok(session) => Ok(session?),
            Err(_) => Err(Error::Timeout(options.connect_timeout)),
        }
    }

    /// Subscribes to the shards of `wanted` not subscribed yet and unsubscribes from the others,
    /// in one pipeline (one round trip; one channel per command, so each answers once). When it
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
        let mut pipe = redis::pipe();
        for n in &add {
            pipe.cmd("SSUBSCRIBE").arg(channels.shard(*n)).ignore();
        }
        for n in &remove {
            pipe.cmd("SUNSUBSCRIBE").arg(channels.shard(*n)).ignore();
        }
        pipe.query_async::<()>(&mut self.subscriber).await?;
        self.shards = wanted.clone();
        Ok(())
    }

    /// Publishes `batch` in one pipeline (one round trip, in order) and empties it: `PUBLISH`
    /// to a node or to all, `SPUBLISH` to a route shard. The publishing connection's response
    /// timeout bounds the wait.
    pub(crate) async fn publish(
        &mut self,
        channels: &Channels,
        batch: &mut Vec<(Destination, Bytes)>,
    ) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        for (to, payload) in batch.drain(..) {
            let command = match to {
                Destination::Shard(_) => "SPUBLISH",
                Destination::All | Destination::Node(_) => "PUBLISH",
            };
            pipe.cmd(command)
                .arg(channels.of(to).as_ref())
                .arg(payload.as_ref())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.publisher).await
    }

    /// PINGs both connections; an error means the session is dead.
    pub(crate) async fn ping(&mut self, limit: Duration) -> Result<(), String> {
        for (name, conn) in [
            ("subscriber", &mut self.subscriber),
            ("publishing", &mut self.publisher),
        ] {
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<redis::Value>(conn);
            match tokio::time::timeout(limit, ping).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("PING on the {name} connection failed: {e}")),
                Err(_) => return Err(format!("PING on the {name} connection took over {limit:?}")),
            }
        }
        Ok(())
    }
}

/// What one push from the subscriber connection means.
pub(crate) enum Push {
    /// A message on one of this node's channels or shards.
    Message(Bytes),
    /// The connection is gone.
    Lost,
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

//! One connection lifetime to Redis: a subscriber connection listening on this node's two
//! channels, and a multiplexed connection that PUBLISHes. A session is opened whole (both
//! connections up, both SUBSCRIBEs confirmed) or not at all, and is thrown away whole when either
//! connection fails; the reconnect loop in `link` then opens a new one.
//!
//! This module must never retry or sleep: it reports failure and lets `link` decide.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use redis::{AsyncConnectionConfig, RedisError};
use vestnik_broker::adapter::{Destination, NodeId};

use crate::target::Target;
use crate::{Error, RedisOptions};

/// The pub/sub channel names of one node: `{prefix}:all` and `{prefix}:node:{id}`.
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
        }
    }
}

/// Both connections of one lifetime.
pub(crate) struct Session {
    /// Sends PING on the subscriber connection (and would change subscriptions).
    sink: PubSubSink,
    /// Messages on this node's channels; ends when the subscriber connection closes.
    pub(crate) stream: PubSubStream,
    /// The publishing connection.
    publisher: MultiplexedConnection,
}

impl Session {
    /// Resolves the target, connects both connections and subscribes, all within
    /// `options.connect_timeout`.
    pub(crate) async fn open(
        target: &mut Target,
        channels: &Channels,
        options: &RedisOptions,
    ) -> Result<Self, Error> {
        let open = async {
            let client = target.client().await?;
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            // One channel per SUBSCRIBE: the sink pairs one reply with one request, and a
            // two-channel SUBSCRIBE answers twice.
            sink.subscribe(channels.all.as_str()).await?;
            sink.subscribe(channels.own.as_str()).await?;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(options.connect_timeout))
                .set_response_timeout(Some(options.response_timeout));
            let publisher = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            Ok::<_, RedisError>(Self {
                sink,
                stream,
                publisher,
            })
        };
        match tokio::time::timeout(options.connect_timeout, open).await {
            Ok(session) => Ok(session?),
            Err(_) => Err(Error::Timeout(options.connect_timeout)),
        }
    }

    /// Publishes `batch` in one pipeline (one round trip, in order) and empties it. The publishing
    /// connection's response timeout bounds the wait.
    pub(crate) async fn publish(
        &mut self,
        channels: &Channels,
        batch: &mut Vec<(Destination, Bytes)>,
    ) -> Result<(), RedisError> {
        let mut pipe = redis::pipe();
        for (to, payload) in batch.drain(..) {
            pipe.cmd("PUBLISH")
                .arg(channels.of(to).as_ref())
                .arg(payload.as_ref())
                .ignore();
        }
        pipe.query_async::<()>(&mut self.publisher).await
    }

    /// PINGs both connections; an error means the session is dead.
    pub(crate) async fn ping(&mut self, limit: Duration) -> Result<(), String> {
        // In subscribed mode Redis answers PING with an array, so accept any value.
        match tokio::time::timeout(limit, self.sink.ping::<redis::Value>()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("PING on the subscriber connection failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "PING on the subscriber connection took over {limit:?}"
                ))
            }
        }
        redis::cmd("PING")
            .query_async::<redis::Value>(&mut self.publisher)
            .await
            .map(drop)
            .map_err(|e| format!("PING on the publishing connection failed: {e}"))
    }
}

//! [`RedisAdapter`]: the shared [`AdapterShell`] over the [`Redis`] transport. The shell does the
//! send gate, the queues, the counters, `close` and drop; this module only connects and starts
//! the one task that touches the network (`link`).
//!
//! This module must never block or await on the `send` path, and never interpret a payload.

use std::sync::Arc;

use tracing::info;
use vestnik_broker::adapter::{AdapterShell, NodeId, ShellOptions, Transport};

use crate::history::RedisHistory;
use crate::link::Link;
use crate::session::{Channels, Session};
use crate::target::{redact, Target};
use crate::{Error, RedisOptions};

/// An [`Adapter`](vestnik_broker::adapter::Adapter) over Redis pub/sub. Node `id` listens on
/// `{prefix}:all` and `{prefix}:node:{id}`; `Destination::All` publishes to the first (so the
/// sender hears its own message too), `Destination::Node` to the second. Route shards are Redis 7
/// sharded channels `{prefix}:shard:{n}`: the node `SSUBSCRIBE`s the shards the cluster layer
/// wants, and `Destination::Shard(n)` is an `SPUBLISH` there.
///
/// `RedisAdapter::connect(url, prefix, node)` fails when the URL or prefix is invalid or when the
/// first connection cannot be made; after it returns, connection losses are handled inside.
/// Dropping the last `Arc` ends the adapter's task at once; `close` first publishes what is
/// still queued (for at most [`RedisOptions::close_timeout`]).
pub type RedisAdapter = AdapterShell<Redis>;

/// The Redis [`Transport`]: Redis accepts any payload, so all it adds to the shell is how to
/// connect and the link task.
#[derive(Debug, Clone, Copy, Default)]
pub struct Redis;

impl Transport for Redis {
    const NAME: &'static str = "redis";
    const ROUTED: bool = true;
    type Options = RedisOptions;
    type Error = Error;

    async fn connect(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
        options: RedisOptions,
    ) -> Result<Arc<RedisAdapter>, Error> {
        let channels = Channels::new(cluster_prefix, node)?;
        let mut target = Target::parse(url)?;
        // No route shard is wanted before the cluster layer starts.
        let first = Session::open(&mut target, &channels, &options, &Default::default()).await?;
        info!(
            node,
            url = %redact(url),
            channels = ?[&channels.all, &channels.own],
            "redis adapter: connected and subscribed"
        );
        let shell = ShellOptions {
            send_queue: options.send_queue,
            event_queue: options.event_queue,
            close_timeout: options.close_timeout,
            hold: options.relay_hold,
        };
        // The history store gets its own connection to the same server (resolved anew, like the
        // link's, through Sentinel).
        let history_target = Target::parse(url)?;
        let adapter = AdapterShell::start(node, Redis, shell, |wiring, tasks| {
            let link = Link {
                node,
                target,
                channels,
                options,
                state: wiring.state,
                events: wiring.events,
                outgoing: wiring.outgoing,
                stop: wiring.stop,
                closing: wiring.closing,
                overflowing: false,
                wanted: wiring.routes.wanted(),
                routes: wiring.routes,
            };
            tasks.spawn(link.run(first));
        });
        adapter.set_history(Arc::new(RedisHistory::new(
            history_target,
            cluster_prefix,
            Arc::downgrade(&adapter),
        )));
        Ok(adapter)
    }
}

//! [`NatsAdapter`]: the shared [`AdapterShell`] over the [`Nats`] transport. The shell does the
//! send gate, the queues, the counters, `close` and drop; this module connects, confirms the
//! subscriptions, and starts the tasks that touch the network (`pump`, `watch`); the NATS client
//! does the rest.
//!
//! This module must never block or await on the `send` path, and never interpret a payload.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::info;
use vestnik_broker::adapter::{AdapterShell, NodeId, ShellOptions, Transport};

use crate::history::NatsHistory;
use crate::pump::{self, Publisher};
use crate::route::Router;
use crate::subjects::Subjects;
use crate::watch::{Probe, Watch};
use crate::{servers, Error, NatsOptions};

/// An [`Adapter`](vestnik_broker::adapter::Adapter) over NATS core pub/sub. Node `id` subscribes
/// to `{prefix}.all` and `{prefix}.node.{id}`; `Destination::All` publishes to the first (so the
/// sender hears its own message too), `Destination::Node` to the second. Route shards are the
/// subjects `{prefix}.shard.{n}`: the node subscribes to those the cluster layer wants, and
/// `Destination::Shard(n)` publishes there.
///
/// `NatsAdapter::connect(url, prefix, node)` takes one address or a comma-separated list, and
/// fails when the URL or prefix is invalid or when the first connection cannot be made; after it
/// returns, the client reconnects forever by itself. Dropping the last `Arc` ends the adapter's
/// tasks and the connection at once; `close` first publishes what is still queued (for at most
/// [`NatsOptions::close_timeout`]).
pub type NatsAdapter = AdapterShell<Nats>;

/// The NATS [`Transport`]: it refuses in `send` what the server would refuse later (payloads
/// over its `max_payload`).
#[derive(Debug, Default)]
pub struct Nats {
    /// The server's max payload, refreshed by the watcher on every reconnect.
    max_payload: Arc<AtomicUsize>,
    /// Whether the backbone is a NATS cluster of several servers (see [`spans_servers`]),
    /// refreshed by the watcher on every reconnect.
    several_servers: Arc<AtomicBool>,
}

impl Nats {
    /// The largest payload `send` accepts: the server's `max_payload` (1 MiB by default).
    pub fn max_payload(&self) -> usize {
        self.max_payload.load(Ordering::Acquire)
    }
}

impl Transport for Nats {
    const NAME: &'static str = "nats";
    const ROUTED: bool = true;
    type Options = NatsOptions;
    type Error = Error;

    fn connect(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
        options: NatsOptions,
    ) -> impl Future<Output = Result<Arc<NatsAdapter>, Error>> + Send {
        connect(url, cluster_prefix, node, options)
    }

    fn accepts(&self, payload: &Bytes) -> bool {
        payload.len() <= self.max_payload()
    }

    /// A NATS cluster of several servers tells the others of a subscription asynchronously.
    fn interest_is_eventual(&self) -> bool {
        self.several_servers.load(Ordering::Acquire)
    }
}

/// Whether the node's NATS is a cluster of several servers: several addresses were configured, or
/// the server it is connected to advertises others (`connect_urls` in its INFO; a server on its
/// own advertises none).
pub(crate) fn spans_servers(client: &async_nats::Client, configured: usize) -> bool {
    configured > 1 || !client.server_info().connect_urls.is_empty()
}

/// Connects the client (with our backoff and the server list), subscribes, confirms the
/// subscriptions with a probe round trip, then starts the shell and the three tasks. When the
/// server has JetStream, the adapter keeps the cluster's channel history there ([`NatsHistory`]
/// on the same connection); without it, nodes keep none (`cluster_history_unavailable`).
async fn connect(
    url: &str,
    cluster_prefix: &str,
    node: NodeId,
    options: NatsOptions,
) -> Result<Arc<NatsAdapter>, Error> {
    let subjects = Subjects::new(cluster_prefix, node)?;
    let addresses = servers::parse(url)?;
    let configured = addresses.len();
    let (connection_tx, connection_rx) = mpsc::unbounded_channel();
    let (min, max) = (options.reconnect_min, options.reconnect_max);
    let client = async_nats::ConnectOptions::new()
        .name(format!("vestnik-node-{node}"))
        .event_callback(move |event| {
            let tx = connection_tx.clone();
            async move {
                let _ = tx.send(event);
            }
        })
        .max_reconnects(None)
        // The client counts the first try of each connection as attempt 1: make it at once,
        // then back off.
        .reconnect_delay_callback(move |attempts| match attempts {
            0 | 1 => Duration::ZERO,
            n => vestnik_broker::adapter::reconnect_delay(
                u32::try_from(n - 2).unwrap_or(u32::MAX),
                min,
                max,
            ),
        })
        .connection_timeout(options.connect_timeout)
        .ping_interval(options.ping_interval)
        .subscription_capacity(options.event_queue.max(1))
        .connect(addresses)
        .await?;
    let all = client.subscribe(subjects.all.clone()).await?;
    let own = client.subscribe(subjects.own.clone()).await?;
    let mut probe = Probe::subscribe(&client, subjects.probe.clone()).await?;
    let route_probe = Probe::subscribe(&client, subjects.route_probe.clone()).await?;
    if !probe.round_trip(&client, options.confirm_timeout).await {
        return Err(Error::Timeout(options.confirm_timeout));
    }
    info!(
        node,
        url = %servers::redact(url),
        subjects = ?[subjects.all.as_str(), subjects.own.as_str()],
        "nats adapter: connected and subscribed"
    );

    let jetstream = NatsHistory::available(&client).await;
    info!(
        node,
        jetstream,
        "nats adapter: {}",
        if jetstream {
            "the server has JetStream: positions and history are cluster-wide"
        } else {
            "the server has no JetStream: the cluster keeps no history"
        }
    );
    let history = jetstream.then(|| NatsHistory::new(client.clone(), cluster_prefix));

    let transport = Nats::default();
    transport
        .max_payload
        .store(client.server_info().max_payload, Ordering::Release);
    let max_payload = transport.max_payload.clone();
    transport
        .several_servers
        .store(spans_servers(&client, configured), Ordering::Release);
    let several_servers = transport.several_servers.clone();
    let shell = ShellOptions {
        send_queue: options.send_queue,
        event_queue: options.event_queue,
        close_timeout: options.close_timeout,
        hold: options.relay_hold,
    };
    let adapter = AdapterShell::start(node, transport, shell, |wiring, tasks| {
        tasks.spawn(
            Router {
                node,
                client: client.clone(),
                subjects: subjects.clone(),
                probe: route_probe,
                wanted: wiring.routes.wanted(),
                routes: wiring.routes,
                events: wiring.events.clone(),
                state: wiring.state.clone(),
                stop: wiring.stop.clone(),
                confirm_timeout: options.confirm_timeout,
            }
            .run(),
        );
        tasks.spawn(
            Publisher {
                node,
                client: client.clone(),
                subjects,
                queue: wiring.outgoing,
                state: wiring.state.clone(),
                stop: wiring.stop.clone(),
                closing: wiring.closing,
            }
            .run(),
        );
        tasks.spawn(pump::receive(
            node,
            all,
            own,
            wiring.events.clone(),
            wiring.state.clone(),
            wiring.stop.clone(),
        ));
        tasks.spawn(
            Watch {
                node,
                client,
                connection: connection_rx,
                probe,
                events: wiring.events,
                state: wiring.state,
                max_payload,
                several_servers,
                configured,
                stop: wiring.stop,
                confirm_timeout: options.confirm_timeout,
            }
            .run(),
        );
    });
    if let Some(history) = history {
        adapter.set_history(Arc::new(history));
    }
    Ok(adapter)
}

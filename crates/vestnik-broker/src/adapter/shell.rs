//! One adapter shell for every backbone, as sockudo's `HorizontalAdapterBase<Transport>`: the part
//! of an [`Adapter`] that does not depend on Redis, NATS or whatever comes next. [`AdapterShell`]
//! owns the bounded send queue and its gate, the event stream handed out once, the counters, the
//! two cancellation signals (`closing` flushes, `stop` ends at once), the task tracker that
//! `close` waits on, `Drop` and `Debug`. A backbone is a [`Transport`]: it connects, spawns its
//! tasks on the [`Wiring`] the shell gives it, and may refuse payloads it cannot carry.
//!
//! This module must never block or await on the `send` path, never interpret a payload, and never
//! name a backbone: everything backend-specific is behind [`Transport`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::{Adapter, AdapterCounters, AdapterEvent, AdapterStats, Destination, NodeId};

/// What a backbone adds to the shell: how to connect and start its tasks, and what it cannot
/// carry. Implement it, and `AdapterShell<YourTransport>` is a complete [`Adapter`] whose
/// `connect(url, prefix, node)` the server can call like any other.
pub trait Transport: Sized + Send + Sync + 'static {
    /// A short name for logs and metrics: `redis`, `nats`.
    const NAME: &'static str;

    /// The backbone's queue sizes, timings and other tunables; `Default` is what
    /// [`AdapterShell::connect`] uses.
    type Options: Default + Send;

    /// Why `connect` failed.
    type Error: Send;

    /// Connects node `node` to the backbone at `url`, with the cluster's names under
    /// `cluster_prefix`, and starts the adapter through [`AdapterShell::start`]. Fails when the
    /// URL or prefix is invalid or the first connection cannot be made: a misconfigured backbone
    /// should stop a node at boot, not leave it silently alone.
    fn connect(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
        options: Self::Options,
    ) -> impl Future<Output = Result<Arc<AdapterShell<Self>>, Self::Error>> + Send;

    /// Whether the backbone can carry `payload` at all (NATS: at most the server's
    /// `max_payload`). Checked by `send` before queueing, so a message the backbone would refuse
    /// later is refused and counted at once. Must be cheap and must never block.
    fn accepts(&self, payload: &Bytes) -> bool {
        let _ = payload;
        true
    }
}

/// The link's state, shared by the shell and the backbone's tasks: whether the backbone is up
/// (`send` refuses while it is not) and what moved.
#[derive(Debug, Default)]
pub struct LinkState {
    connected: AtomicBool,
    counters: AdapterCounters,
}

impl LinkState {
    /// Whether the backbone is connected with this node's subscriptions in place.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Marks the backbone up or down; returns whether it was up before, so a task reports each
    /// transition once.
    pub fn set_connected(&self, up: bool) -> bool {
        self.connected.swap(up, Ordering::AcqRel)
    }

    /// The live counters; bump them with [`AdapterCounters::add`].
    pub fn counters(&self) -> &AdapterCounters {
        &self.counters
    }
}

/// The sizes and the one timing the shell itself needs, taken from the backbone's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellOptions {
    /// Messages `send` may queue before it refuses more (at least 1).
    pub send_queue: usize,
    /// Events waiting for the cluster layer before the backbone drops new messages (at least 1).
    pub event_queue: usize,
    /// How long `close` waits for the backbone's tasks to flush the queue and end.
    pub close_timeout: Duration,
}

/// What a backbone's tasks get from the shell: the other ends of its queues, the link state, and
/// the two signals. A task must end when `stop` is cancelled, and when `closing` is cancelled it
/// must publish what is queued (while connected) and then end; `close` waits for that.
#[derive(Debug)]
pub struct Wiring {
    /// The node's id.
    pub node: NodeId,
    /// What `send` queued, in order.
    pub outgoing: mpsc::Receiver<(Destination, Bytes)>,
    /// Where the cluster layer's events go; the shell already put the first `Connected` there.
    pub events: mpsc::Sender<AdapterEvent>,
    /// Shared with the shell; starts connected.
    pub state: Arc<LinkState>,
    /// Cancelled when the adapter is dropped or closed: end now, without flushing.
    pub stop: CancellationToken,
    /// Cancelled by `close`: publish what is queued, then end.
    pub closing: CancellationToken,
}

/// An [`Adapter`] made of the shared shell and one backbone's [`Transport`]. Built only by
/// [`start`](Self::start), from a transport's `connect`.
///
/// Dropping the last `Arc` ends the backbone's tasks at once; [`close`](Self::close) first sends
/// what is still queued.
pub struct AdapterShell<T: Transport> {
    node: NodeId,
    transport: T,
    outgoing: mpsc::Sender<(Destination, Bytes)>,
    events: Mutex<Option<mpsc::Receiver<AdapterEvent>>>,
    state: Arc<LinkState>,
    stop: CancellationToken,
    closing: CancellationToken,
    tasks: TaskTracker,
    close_timeout: Duration,
}

impl<T: Transport> AdapterShell<T> {
    /// Connects node `node` to the backbone at `url` with the transport's default options. The
    /// first event is always [`AdapterEvent::Connected`]; after this returns, connection losses
    /// are handled inside (see [`AdapterEvent::Disconnected`]).
    pub async fn connect(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
    ) -> Result<Arc<Self>, T::Error> {
        T::connect(url, cluster_prefix, node, T::Options::default()).await
    }

    /// Like [`connect`](Self::connect), with explicit queue sizes and timings.
    pub async fn connect_with(
        url: &str,
        cluster_prefix: &str,
        node: NodeId,
        options: T::Options,
    ) -> Result<Arc<Self>, T::Error> {
        T::connect(url, cluster_prefix, node, options).await
    }

    /// Builds the shell around a connected `transport`: makes the queues, marks the link up,
    /// queues the first `Connected`, and lets `spawn` start the backbone's tasks on `tracker`
    /// with the [`Wiring`]. Call it once the first connection and subscriptions are in place.
    pub fn start(
        node: NodeId,
        transport: T,
        options: ShellOptions,
        spawn: impl FnOnce(Wiring, &TaskTracker),
    ) -> Arc<Self> {
        let (outgoing, outgoing_rx) = mpsc::channel(options.send_queue.max(1));
        let (events_tx, events_rx) = mpsc::channel(options.event_queue.max(1));
        let state = Arc::new(LinkState::default());
        state.set_connected(true);
        // The queue is new and has room: the cluster layer's first event is Connected.
        let _ = events_tx.try_send(AdapterEvent::Connected);
        let (stop, closing, tasks) = (
            CancellationToken::new(),
            CancellationToken::new(),
            TaskTracker::new(),
        );
        spawn(
            Wiring {
                node,
                outgoing: outgoing_rx,
                events: events_tx,
                state: state.clone(),
                stop: stop.clone(),
                closing: closing.clone(),
            },
            &tasks,
        );
        tasks.close();
        Arc::new(Self {
            node,
            transport,
            outgoing,
            events: Mutex::new(Some(events_rx)),
            state,
            stop,
            closing,
            tasks,
            close_timeout: options.close_timeout,
        })
    }

    /// What the adapter moved so far, for the metrics export.
    pub fn stats(&self) -> AdapterStats {
        self.state.counters().snapshot()
    }

    /// The node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The backbone's own part, for what only it knows (NATS: the server's `max_payload`).
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// Stops taking messages, lets the backbone's tasks send what is queued (for at most the
    /// close timeout, and only while connected), then ends them; the event stream then ends. Use
    /// it in the drain, after the last "leaving" message.
    pub async fn close(&self) {
        self.closing.cancel();
        if tokio::time::timeout(self.close_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                node = self.node,
                "{} adapter: queue not flushed within {:?}; dropping the rest",
                T::NAME,
                self.close_timeout
            );
        }
        self.stop.cancel();
        self.state.set_connected(false);
    }
}

impl<T: Transport> Adapter for AdapterShell<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn send(&self, to: Destination, payload: Bytes) -> bool {
        let queued = self.state.is_connected()
            && self.transport.accepts(&payload)
            && self.outgoing.try_send((to, payload)).is_ok();
        if !queued {
            AdapterCounters::add(&self.state.counters().dropped_sends, 1);
        }
        queued
    }

    fn events(&self) -> Option<mpsc::Receiver<AdapterEvent>> {
        self.events.lock().take()
    }

    fn is_connected(&self) -> bool {
        self.state.is_connected()
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Self::close(self))
    }
}

impl<T: Transport> Drop for AdapterShell<T> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl<T: Transport> fmt::Debug for AdapterShell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterShell")
            .field("backbone", &T::NAME)
            .field("node", &self.node)
            .field("connected", &self.is_connected())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback backbone: every queued message comes back to the same node, and payloads over
    /// `limit` bytes are refused, so each part of the shell can be seen from outside.
    #[derive(Debug)]
    struct Loopback {
        limit: usize,
    }

    #[derive(Debug, Default)]
    struct LoopbackOptions {
        limit: Option<usize>,
    }

    impl Transport for Loopback {
        const NAME: &'static str = "loopback";
        type Options = LoopbackOptions;
        type Error = std::convert::Infallible;

        async fn connect(
            _url: &str,
            _cluster_prefix: &str,
            node: NodeId,
            options: LoopbackOptions,
        ) -> Result<Arc<AdapterShell<Self>>, Self::Error> {
            let transport = Loopback {
                limit: options.limit.unwrap_or(usize::MAX),
            };
            let sizes = ShellOptions {
                send_queue: 4,
                event_queue: 16,
                close_timeout: Duration::from_secs(5),
            };
            Ok(AdapterShell::start(node, transport, sizes, |w, tasks| {
                tasks.spawn(relay(w));
            }))
        }

        fn accepts(&self, payload: &Bytes) -> bool {
            payload.len() <= self.limit
        }
    }

    /// Moves the queue back into the events until stopped, or until closed and drained.
    async fn relay(mut w: Wiring) {
        let mut closing = false;
        loop {
            tokio::select! {
                () = w.stop.cancelled() => break,
                () = w.closing.cancelled(), if !closing => {
                    closing = true;
                    w.outgoing.close();
                }
                next = w.outgoing.recv() => match next {
                    Some((_, payload)) => {
                        AdapterCounters::add(&w.state.counters().sent, 1);
                        let _ = w.events.send(AdapterEvent::Message(payload)).await;
                    }
                    None => break,
                },
            }
        }
    }

    #[tokio::test]
    async fn the_shell_gates_counts_flushes_and_ends() {
        let options = LoopbackOptions { limit: Some(3) };
        let a = AdapterShell::<Loopback>::connect_with("", "", 7, options)
            .await
            .unwrap();
        assert_eq!(a.name(), "loopback");
        assert_eq!(a.node(), 7);
        let mut events = a.events().expect("the first call");
        assert!(a.events().is_none(), "events() is taken once");
        assert_eq!(events.recv().await, Some(AdapterEvent::Connected));

        // The transport's limit and a link marked down both refuse, and count.
        assert!(!a.send(Destination::All, Bytes::from_static(b"long")));
        a.state.set_connected(false);
        assert!(!a.is_connected());
        assert!(!a.send(Destination::All, Bytes::from_static(b"x")));
        a.state.set_connected(true);
        assert_eq!(a.stats().dropped_sends, 2);

        for p in [&b"1"[..], b"2", b"3"] {
            assert!(a.send(Destination::Node(7), Bytes::from_static(p)));
        }
        a.close().await;
        for p in [&b"1"[..], b"2", b"3"] {
            assert_eq!(
                events.recv().await,
                Some(AdapterEvent::Message(Bytes::from_static(p)))
            );
        }
        assert_eq!(events.recv().await, None, "the stream ends after close");
        assert!(!a.is_connected());
        assert!(!a.send(Destination::All, Bytes::new()));
        let stats = a.stats();
        assert_eq!((stats.sent, stats.dropped_sends), (3, 3), "{stats:?}");
        let shown = format!("{a:?}");
        assert!(
            shown.contains("loopback") && shown.contains("node: 7"),
            "{shown}"
        );
    }

    #[tokio::test]
    async fn dropping_the_shell_stops_the_tasks() {
        let a = AdapterShell::<Loopback>::connect("", "", 1).await.unwrap();
        let mut events = a.events().expect("the first call");
        assert_eq!(events.recv().await, Some(AdapterEvent::Connected));
        drop(a);
        let end = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        assert_eq!(end, Ok(None), "the stream ends when the shell is dropped");
    }
}

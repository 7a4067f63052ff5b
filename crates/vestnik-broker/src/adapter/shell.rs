//! One adapter shell for every backbone, as sockudo's `HorizontalAdapterBase<Transport>`: the part
//! of an [`Adapter`] that does not depend on Redis, NATS or whatever comes next. [`AdapterShell`]
//! owns the bounded send queue and its gate, the event stream handed out once, the counters, the
//! two cancellation signals (`closing` flushes, `stop` ends at once), the task tracker that
//! `close` waits on, `Drop` and `Debug`, and the relay hold: while the link is down, `send` keeps
//! messages in a bounded [`Hold`] instead of refusing them, and the shell's releasing task hands
//! them to the backbone in order, before anything newer, once the link is back. A backbone is a [`Transport`]: it connects, spawns its
//! tasks on the [`Wiring`] the shell gives it, and may refuse payloads it cannot carry.
//!
//! This module must never block or await on the `send` path, never interpret a payload, and never
//! name a backbone: everything backend-specific is behind [`Transport`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use super::hold::{Hold, HoldLimits};
use super::{Adapter, AdapterCounters, AdapterEvent, AdapterStats, Destination, NodeId, Routes};

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

    /// Whether the backbone carries [`Destination::Shard`] and applies the shell's [`Routes`]
    /// (subscribes to the wanted shards and confirms them). `false`: the cluster layer is told the
    /// adapter has no interest routing and never sends to a shard.
    const ROUTED: bool = false;

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

    /// See [`Adapter::interest_is_eventual`]. Must be cheap and must never block.
    fn interest_is_eventual(&self) -> bool {
        false
    }

    /// Whether the backbone can carry `payload` at all (NATS: at most the server's
    /// `max_payload`). Checked by `send` before queueing, so a message the backbone would refuse
    /// later is refused and counted at once. Must be cheap and must never block.
    fn accepts(&self, payload: &Bytes) -> bool {
        let _ = payload;
        true
    }
}

/// The link's state, shared by the shell and the backbone's tasks: whether the backbone is up
/// (`send` holds or refuses while it is not) and what moved.
#[derive(Debug, Default)]
pub struct LinkState {
    connected: AtomicBool,
    counters: AdapterCounters,
    /// Wakes the shell's releasing task: the link came up, or something was held.
    wake: Notify,
}

impl LinkState {
    /// Whether the backbone is connected with this node's subscriptions in place.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Marks the backbone up or down; returns whether it was up before, so a task reports each
    /// transition once.
    pub fn set_connected(&self, up: bool) -> bool {
        let was = self.connected.swap(up, Ordering::AcqRel);
        if up {
            // The held messages can go now.
            self.wake.notify_one();
        }
        was
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
    /// What `send` may hold while the link is down ([`HoldLimits::NONE`]: refuse instead).
    pub hold: HoldLimits,
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
    /// The route shards the cluster layer wants; the backbone subscribes to them and confirms.
    pub routes: Arc<Routes>,
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
    /// Messages accepted while the link was down (or while older ones were still held).
    hold: Arc<Mutex<Hold>>,
    /// The hold's bounds, which are also the cluster layer's replay bounds.
    hold_limits: HoldLimits,
    /// The route shards wanted and confirmed (used only when the transport is `ROUTED`).
    routes: Arc<Routes>,
    /// The backbone's channel history, if the transport keeps one (set once, after connect).
    history: std::sync::OnceLock<Arc<dyn super::HistoryStore>>,
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
        let routes = Arc::new(Routes::default());
        spawn(
            Wiring {
                node,
                outgoing: outgoing_rx,
                events: events_tx,
                state: state.clone(),
                stop: stop.clone(),
                closing: closing.clone(),
                routes: routes.clone(),
            },
            &tasks,
        );
        let hold = Arc::new(Mutex::new(Hold::new(options.hold)));
        tasks.spawn(
            Releaser {
                hold: hold.clone(),
                outgoing: outgoing.clone(),
                state: state.clone(),
                stop: stop.clone(),
                closing: closing.clone(),
            }
            .run(),
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
            hold,
            hold_limits: options.hold,
            routes,
            history: std::sync::OnceLock::new(),
        })
    }

    /// Gives the adapter the backbone's channel history (see [`super::HistoryStore`]); the
    /// transport calls it once, right after `start`. A second call changes nothing.
    pub fn set_history(&self, store: Arc<dyn super::HistoryStore>) {
        let _ = self.history.set(store);
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
        // What is held goes first, into the queue the backbone's tasks flush, if the link is up
        // and there is room; whatever is left is lost, and counted.
        let left = {
            let mut hold = self.hold.lock();
            let expired = hold.expire(Instant::now());
            self.state.counters().lost_after_send(expired);
            while self.state.is_connected() {
                let Ok(permit) = self.outgoing.try_reserve() else {
                    break;
                };
                let Some(next) = hold.pop() else { break };
                permit.send(next);
            }
            hold.clear()
        };
        self.state.counters().lost_after_send(left);
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
        let counters = self.state.counters();
        if self.closing.is_cancelled() || !self.transport.accepts(&payload) {
            AdapterCounters::add(&counters.dropped_sends, 1);
            return false;
        }
        let now = Instant::now();
        let mut hold = self.hold.lock();
        counters.lost_after_send(hold.expire(now));
        // Straight to the queue only when nothing older waits in the hold, so order is kept.
        // Both paths run under the hold's lock, as does the releaser's move from hold to queue.
        let accepted = if self.state.is_connected() && hold.is_empty() {
            self.outgoing.try_send((to, payload)).is_ok()
        } else if hold.push(now, to, payload).is_ok() {
            self.state.wake.notify_one();
            true
        } else {
            false
        };
        drop(hold);
        if !accepted {
            AdapterCounters::add(&counters.dropped_sends, 1);
        }
        accepted
    }

    fn events(&self) -> Option<mpsc::Receiver<AdapterEvent>> {
        self.events.lock().take()
    }

    fn is_connected(&self) -> bool {
        self.state.is_connected()
    }

    fn can_take(&self, len: usize) -> bool {
        if self.closing.is_cancelled() {
            return false;
        }
        let hold = self.hold.lock();
        (self.state.is_connected() && hold.is_empty()) || hold.has_room(len)
    }

    fn stats(&self) -> AdapterStats {
        Self::stats(self)
    }

    fn interest_is_eventual(&self) -> bool {
        self.transport().interest_is_eventual()
    }

    fn routes(&self) -> Option<&Routes> {
        T::ROUTED.then_some(&*self.routes)
    }

    fn history(&self) -> Option<Arc<dyn super::HistoryStore>> {
        self.history.get().cloned()
    }

    fn replay_limits(&self) -> HoldLimits {
        if self.hold_limits.time.is_zero() {
            HoldLimits::default()
        } else {
            self.hold_limits
        }
    }

    fn close(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(Self::close(self))
    }
}

/// The shell's own task: moves held messages into the send queue, oldest first, while the link is
/// up, and drops (and counts) those that pass the age bound while it is down. Ends on `stop` or
/// `closing` (`close` moves what it can itself).
struct Releaser {
    hold: Arc<Mutex<Hold>>,
    outgoing: mpsc::Sender<(Destination, Bytes)>,
    state: Arc<LinkState>,
    stop: CancellationToken,
    closing: CancellationToken,
}

impl Releaser {
    async fn run(self) {
        loop {
            let (release, next_expiry) = {
                let mut hold = self.hold.lock();
                let expired = hold.expire(Instant::now());
                self.state.counters().lost_after_send(expired);
                (
                    self.state.is_connected() && !hold.is_empty(),
                    hold.next_expiry(),
                )
            };
            if release {
                // Wait for room in the queue without the lock, then move one message under it.
                let permit = tokio::select! {
                    () = self.stop.cancelled() => break,
                    () = self.closing.cancelled() => break,
                    permit = self.outgoing.reserve() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let mut hold = self.hold.lock();
                if self.state.is_connected() {
                    let expired = hold.expire(Instant::now());
                    self.state.counters().lost_after_send(expired);
                    if let Some(next) = hold.pop() {
                        permit.send(next);
                    }
                }
                continue;
            }
            let expiry = async {
                match next_expiry {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.stop.cancelled() => break,
                () = self.closing.cancelled() => break,
                () = self.state.wake.notified() => {}
                () = expiry => {}
            }
        }
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
            .field("held", &self.hold.lock().len())
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
        hold: HoldLimits,
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
                hold: options.hold,
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
        let options = LoopbackOptions {
            limit: Some(3),
            hold: HoldLimits::NONE,
        };
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

    async fn held_shell(
        hold: HoldLimits,
    ) -> (Arc<AdapterShell<Loopback>>, mpsc::Receiver<AdapterEvent>) {
        let options = LoopbackOptions { limit: None, hold };
        let a = AdapterShell::<Loopback>::connect_with("", "", 1, options)
            .await
            .unwrap();
        let mut events = a.events().expect("the first call");
        assert_eq!(events.recv().await, Some(AdapterEvent::Connected));
        (a, events)
    }

    async fn next(events: &mut mpsc::Receiver<AdapterEvent>) -> Option<AdapterEvent> {
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event within 5 s")
    }

    #[tokio::test]
    async fn the_hold_keeps_what_a_down_link_cannot_send_and_sends_it_first() {
        let (a, mut events) = held_shell(HoldLimits::default()).await;
        a.state.set_connected(false);
        // More than the send queue (4) holds: the hold is not the queue.
        for i in 0..20 {
            assert!(a.send(Destination::All, Bytes::from(format!("held {i}"))));
            assert!(a.can_take(10));
        }
        assert!(
            events.try_recv().is_err(),
            "nothing moves while the link is down"
        );
        a.state.set_connected(true);
        // Sent while the hold still drains: it must come after every held message.
        assert!(a.send(Destination::All, Bytes::from_static(b"newer")));
        for i in 0..20 {
            let want = Bytes::from(format!("held {i}"));
            assert_eq!(next(&mut events).await, Some(AdapterEvent::Message(want)));
        }
        let newer = Bytes::from_static(b"newer");
        assert_eq!(next(&mut events).await, Some(AdapterEvent::Message(newer)));
        let stats = a.stats();
        assert_eq!((stats.sent, stats.dropped_sends), (21, 0), "{stats:?}");
    }

    #[tokio::test]
    async fn what_outlives_the_hold_or_overflows_it_is_counted_lost() {
        let hold = HoldLimits {
            time: Duration::from_millis(100),
            bytes: 4096,
        };
        let (a, mut events) = held_shell(hold).await;
        a.state.set_connected(false);
        assert!(a.send(Destination::All, Bytes::from_static(b"old 1")));
        assert!(a.send(Destination::All, Bytes::from_static(b"old 2")));
        // Over the memory bound: refused at once, counted as a dropped send (the caller counts it
        // as lost), and the API is told before it publishes.
        assert!(!a.can_take(5000));
        assert!(!a.send(Destination::All, Bytes::from(vec![0u8; 5000])));
        // The two held ones expire while the link stays down, and are counted.
        let deadline = Instant::now() + Duration::from_secs(5);
        while a.stats().lost_after_send < 2 {
            assert!(Instant::now() < deadline, "{:?}", a.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        a.state.set_connected(true);
        assert!(a.send(Destination::All, Bytes::from_static(b"fresh")));
        let fresh = Bytes::from_static(b"fresh");
        assert_eq!(next(&mut events).await, Some(AdapterEvent::Message(fresh)));
        let stats = a.stats();
        assert_eq!(
            (stats.sent, stats.dropped_sends, stats.lost_after_send),
            (1, 3, 2),
            "{stats:?}"
        );
    }

    #[tokio::test]
    async fn close_sends_what_is_held_when_it_can_and_counts_the_rest() {
        let (a, mut events) = held_shell(HoldLimits::default()).await;
        a.state.set_connected(false);
        assert!(a.send(Destination::All, Bytes::from_static(b"lost at close")));
        a.close().await;
        assert_eq!(next(&mut events).await, None);
        assert_eq!(a.stats().lost_after_send, 1, "{:?}", a.stats());
        assert!(!a.can_take(0) && !a.send(Destination::All, Bytes::new()));

        let (b, mut events) = held_shell(HoldLimits::default()).await;
        b.state.set_connected(false);
        assert!(b.send(Destination::All, Bytes::from_static(b"1")));
        assert!(b.send(Destination::All, Bytes::from_static(b"2")));
        b.state.set_connected(true);
        b.close().await;
        for p in [&b"1"[..], b"2"] {
            let want = Bytes::from_static(p);
            assert_eq!(next(&mut events).await, Some(AdapterEvent::Message(want)));
        }
        assert_eq!(next(&mut events).await, None);
        assert_eq!(b.stats().dropped_sends, 0, "{:?}", b.stats());
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

//! The adapter conformance suite: the behaviour every [`Adapter`] must show, written once and run
//! against the in-process `MemoryHub`, Redis and NATS alike, so the cluster layer can rely on it
//! whatever the backbone. Each case is a `pub async fn` taking a factory that makes the adapter of
//! a node id; the Redis and NATS crates call them from their tests against real servers.
//!
//! Nothing here sleeps to wait for a condition: every wait has a deadline and fails with what did
//! not happen. Nothing here touches a shared server's process: [`BackboneServer`] starts private
//! `redis-server` / `nats-server` processes on free ports for the restart case, and kills only
//! those.
//!
//! # Cases
//! 1. [`all_reaches_every_node`]: `Destination::All` reaches every node, the sender included.
//! 2. [`node_reaches_only_that_node`]: `Destination::Node(id)` reaches that node and no other.
//! 3. [`order_is_kept`]: 1,000 messages from one sender arrive in order, per destination.
//! 4. [`payloads_pass_unchanged`]: empty, one-byte and 64 KiB binary payloads arrive byte-exact.
//! 5. [`events_is_taken_once`]: a second `events()` returns `None`.
//! 6. [`restart_recovers`]: when the backbone restarts, every adapter emits `Disconnected`, reports
//!    itself disconnected, emits `Connected` when back, and messages flow again.
//!
//! [`run_all`] runs 1 to 5.
//!
//! # Lifecycle cases of the adapter shell
//! Every backbone built on `vestnik_broker::adapter::AdapterShell` also takes the cases in
//! [`lifecycle`] (re-exported here): `close` publishes what is queued and ends the stream, drop
//! ends it at once, the counters count what moved, a slow cluster layer costs dropped and
//! counted messages rather than memory, and a silent (SIGSTOPped) backbone is noticed and
//! recovered from. The relay hold: a restart shorter than the hold loses nothing (what was sent
//! meanwhile arrives once, in order, before anything newer), and one longer than the hold loses
//! exactly what expired, and counts it. A third backbone gets the shell and these checks for free.
//!
//! # Layout
//! - this file: [`Node`], cases 1 to 6, [`unique_prefix`].
//! - [`lifecycle`]: the shell's lifecycle cases.
//! - [`backbone`]: [`BackboneServer`], private `redis-server` / `nats-server` processes.
//! - [`skew`]: three brokers over a real backbone, one reconnecting late after a restart through a
//!   [`skew::CutProxy`]: what it missed is replayed, once and in order (the cluster layer's case).
//! - [`routing`]: interest routing over a real backbone: a node gets the relays of the channels
//!   it serves only, and a subscribe followed at once by a publish elsewhere loses nothing.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use vestnik_broker::adapter::{Adapter, AdapterEvent, Destination, NodeId};

pub mod backbone;
pub mod lifecycle;
pub mod routing;
pub mod skew;
pub mod store;

pub use backbone::{BackboneServer, ServerKind};
pub use lifecycle::{
    a_restart_longer_than_the_relay_hold_counts_what_it_lost,
    a_restart_within_the_relay_hold_loses_nothing, a_silent_backbone_is_noticed,
    a_slow_cluster_layer_costs_dropped_messages_not_memory,
    close_publishes_what_is_queued_then_ends, drop_ends_the_tasks_and_the_stream,
    stats_count_what_moved, DropAccounting,
};

/// The wait for a message or an event that should come at once.
pub const EVENT_WAIT: Duration = Duration::from_secs(10);

/// The wait for an adapter to notice a lost backbone, or to be back after a restart. Generous:
/// reconnect backoff is capped at a few seconds, and the whole test machine may be busy.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(30);

/// How many messages [`order_is_kept`] sends per destination.
pub const ORDER_COUNT: u32 = 1_000;

/// The large payload of [`payloads_pass_unchanged`]: 64 KiB.
pub const LARGE_PAYLOAD: usize = 64 * 1024;

/// One node under test: its adapter and its event stream.
#[derive(Debug)]
pub struct Node<A: ?Sized> {
    /// The node's id.
    pub id: NodeId,
    /// Its adapter.
    pub adapter: Arc<A>,
    /// Its events, taken once.
    pub events: mpsc::Receiver<AdapterEvent>,
}

impl<A: Adapter + ?Sized> Node<A> {
    /// Makes node `id` with `make`, takes its events and waits for the first one, which must be
    /// `Connected`.
    ///
    /// The first event must be `Connected`: the cluster layer relies on it to know when it may
    /// send, so an adapter that stays silent at start fails here rather than in a later case.
    pub async fn join<F, Fut>(make: &mut F, id: NodeId) -> Self
    where
        F: FnMut(NodeId) -> Fut,
        Fut: Future<Output = Arc<A>>,
    {
        let adapter = make(id).await;
        let events = adapter
            .events()
            .unwrap_or_else(|| panic!("node {id}: the first events() must return the stream"));
        let mut node = Self {
            id,
            adapter,
            events,
        };
        node.expect_event(AdapterEvent::Connected, EVENT_WAIT, "its first event")
            .await;
        assert!(
            node.adapter.is_connected(),
            "node {id}: is_connected() after Connected"
        );
        node
    }

    /// Sends and asserts that the adapter queued it.
    ///
    /// `send` never waits; a `false` means the adapter refused the message (down, or its queue
    /// full), which must not happen while connected and idle.
    pub fn send(&self, to: Destination, payload: impl Into<Bytes>) {
        let name = self.adapter.name();
        assert!(
            self.adapter.send(to, payload.into()),
            "{name} node {}: send to {to:?} was refused while connected",
            self.id
        );
    }

    /// The next event within `wait`; panics on timeout or a closed stream.
    pub async fn next_event(&mut self, wait: Duration, what: &str) -> AdapterEvent {
        let name = self.adapter.name();
        match tokio::time::timeout(wait, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!(
                "{name} node {}: event stream ended while waiting for {what}",
                self.id
            ),
            Err(_) => panic!(
                "{name} node {}: nothing within {wait:?} while waiting for {what}",
                self.id
            ),
        }
    }

    /// The next message; panics if a control event or nothing comes first.
    pub async fn next_message(&mut self, what: &str) -> Bytes {
        match self.next_event(EVENT_WAIT, what).await {
            AdapterEvent::Message(payload) => payload,
            other => panic!(
                "{} node {}: got {other:?} while waiting for {what}",
                self.adapter.name(),
                self.id
            ),
        }
    }

    /// Asserts that the next message is exactly `expected`.
    pub async fn expect_message(&mut self, expected: &[u8], what: &str) {
        let got = self.next_message(what).await;
        assert!(
            got.as_ref() == expected,
            "{} node {}: {what}: expected {}, got {}",
            self.adapter.name(),
            self.id,
            describe(expected),
            describe(&got)
        );
    }

    /// Waits for control event `expected`, skipping messages (none are expected around a
    /// backbone restart, but a late one is no failure); any other control event fails.
    pub async fn expect_event(&mut self, expected: AdapterEvent, wait: Duration, what: &str) {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left, what).await {
                AdapterEvent::Message(_) => {}
                event if event == expected => return,
                other => panic!(
                    "{} node {}: got {other:?} while waiting for {expected:?} ({what})",
                    self.adapter.name(),
                    self.id
                ),
            }
        }
    }

    /// Asserts that nothing is waiting in the event stream right now.
    pub fn expect_idle(&mut self, what: &str) {
        if let Ok(event) = self.events.try_recv() {
            panic!(
                "{} node {}: unexpected {event:?} ({what})",
                self.adapter.name(),
                self.id
            );
        }
    }
}

/// A short description of a payload for failure messages.
/// Only the length and the first 16 bytes: a 64 KiB payload would drown the failure message.
fn describe(payload: &[u8]) -> String {
    let head: Vec<u8> = payload.iter().copied().take(16).collect();
    format!("{} bytes starting {head:?}", payload.len())
}

/// Case 1: `All` reaches every node, the sender included, from any sender.
///
/// Every backbone must behave alike here, sender included, so the cluster layer can treat its own
/// broadcasts the same way on every backbone instead of knowing which one it runs on.
pub async fn all_reaches_every_node<F, Fut, A>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    let mut nodes = join_many(&mut make, &[1, 2, 3]).await;
    for sender in 0..nodes.len() {
        let payload = format!("all from node {}", nodes[sender].id).into_bytes();
        nodes[sender].send(Destination::All, payload.clone());
        for node in &mut nodes {
            node.expect_message(&payload, "a message sent to All").await;
        }
    }
    for node in &mut nodes {
        node.expect_idle("after every All message arrived once");
    }
}

/// Case 2: `Node(id)` reaches that node only. After the target has the message, the server has
/// routed it; a marker sent afterwards to every other node must then be the next thing each of
/// them sees, so no time window is needed to prove the absence.
///
/// Directed messages carry query answers and snapshots for one node; a copy leaking to another
/// node would be taken as an answer to a question it never asked.
pub async fn node_reaches_only_that_node<F, Fut, A>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    let mut nodes = join_many(&mut make, &[1, 2, 3]).await;
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    for sender in 0..nodes.len() {
        for &target in &ids {
            let payload = format!("from {} to {target}", nodes[sender].id).into_bytes();
            nodes[sender].send(Destination::Node(target), payload.clone());
            let at = ids
                .iter()
                .position(|&id| id == target)
                .expect("target is a node");
            nodes[at]
                .expect_message(&payload, "a message sent to this node")
                .await;
            let marker = format!("marker after {} to {target}", nodes[sender].id).into_bytes();
            for &other in ids.iter().filter(|&&id| id != target) {
                nodes[sender].send(Destination::Node(other), marker.clone());
            }
            for node in nodes.iter_mut().filter(|n| n.id != target) {
                node.expect_message(&marker, "the marker (not the other node's message)")
                    .await;
            }
        }
    }
    for node in &mut nodes {
        node.expect_idle("after every directed message arrived once");
    }
}

/// Case 3: [`ORDER_COUNT`] messages from one sender arrive in order, to one node and to all.
///
/// Order per sender is what keeps replicated presence right: a member's join and leave relayed out
/// of order would leave the member listed on other nodes after it left.
pub async fn order_is_kept<F, Fut, A>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    let mut nodes = join_many(&mut make, &[1, 2]).await;
    let (sender, receiver) = nodes.split_at_mut(1);
    let (sender, receiver) = (&mut sender[0], &mut receiver[0]);

    let numbered = |i: u32| Bytes::from(format!("{i:08} {}", "x".repeat(64)));
    for i in 0..ORDER_COUNT {
        sender.send(Destination::Node(receiver.id), numbered(i));
    }
    for i in 0..ORDER_COUNT {
        receiver
            .expect_message(&numbered(i), "the next message sent to this node, in order")
            .await;
    }

    for i in 0..ORDER_COUNT {
        sender.send(Destination::All, numbered(i));
    }
    for node in [receiver, sender] {
        for i in 0..ORDER_COUNT {
            node.expect_message(&numbered(i), "the next message sent to All, in order")
                .await;
        }
    }
}

/// Case 4: empty, one-byte and 64 KiB binary payloads (every byte value) arrive byte-exact, to
/// one node and to all.
///
/// The cluster's wire format is binary; an adapter that treated payloads as text (or trimmed an
/// empty one) would corrupt it. Every byte value is sent so no encoding step can hide.
pub async fn payloads_pass_unchanged<F, Fut, A>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    let mut nodes = join_many(&mut make, &[1, 2]).await;
    let large: Vec<u8> = (0..LARGE_PAYLOAD)
        .map(|i| (i.wrapping_mul(31).wrapping_add(i >> 8) % 256) as u8)
        .collect();
    let payloads: Vec<Vec<u8>> = vec![Vec::new(), vec![0], vec![0xff, 0x00, 0x0d, 0x0a], large];
    for payload in &payloads {
        let what = format!("a {}-byte payload", payload.len());
        nodes[0].send(Destination::Node(nodes[1].id), payload.clone());
        nodes[1].expect_message(payload, &what).await;
        nodes[0].send(Destination::All, payload.clone());
        for node in &mut nodes {
            node.expect_message(payload, &what).await;
        }
    }
}

/// Case 5: `events()` hands out the stream once; the second call returns `None`.
///
/// The event stream has one reader, the cluster layer; a second reader would silently split the
/// messages between the two.
pub async fn events_is_taken_once<F, Fut, A>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    let node = Node::join(&mut make, 1).await;
    assert!(
        node.adapter.events().is_none(),
        "{}: a second events() must return None",
        node.adapter.name()
    );
}

/// Cases 1 to 5, in turn.
pub async fn run_all<F, Fut, A>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    all_reaches_every_node(&mut make).await;
    node_reaches_only_that_node(&mut make).await;
    order_is_kept(&mut make).await;
    payloads_pass_unchanged(&mut make).await;
    events_is_taken_once(&mut make).await;
}

/// A backbone the restart case can take down and bring back.
pub trait Backbone {
    /// Takes the backbone down hard, as a crash would.
    fn stop(&mut self);
    /// Brings it back at the same address, and returns once it accepts connections.
    fn start(&mut self);
}

/// Case 6: the backbone restarts. Every adapter emits `Disconnected`, reports itself
/// disconnected, emits `Connected` once back, and messages flow again both ways. (What `send`
/// does while down, hold or refuse, is the relay-hold cases' subject, in [`lifecycle`].)
///
/// The cluster layer relies on these events: `Disconnected` makes it stop trusting what it knows of
/// other nodes, `Connected` makes it announce itself again.
pub async fn restart_recovers<F, Fut, A>(mut make: F, backbone: &mut dyn Backbone)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    let mut nodes = join_many(&mut make, &[1, 2]).await;
    nodes[0].send(Destination::Node(2), &b"before the restart"[..]);
    nodes[1]
        .expect_message(b"before the restart", "a message before the restart")
        .await;

    backbone.stop();
    for node in &mut nodes {
        node.expect_event(
            AdapterEvent::Disconnected,
            RECONNECT_WAIT,
            "Disconnected after the backbone died",
        )
        .await;
        let name = node.adapter.name();
        assert!(
            !node.adapter.is_connected(),
            "{name} node {}: is_connected() after Disconnected",
            node.id
        );
    }

    let down = Instant::now();
    backbone.start();
    for node in &mut nodes {
        node.expect_event(
            AdapterEvent::Connected,
            RECONNECT_WAIT,
            "Connected after the backbone came back",
        )
        .await;
        assert!(
            node.adapter.is_connected(),
            "{} node {}: is_connected() after Connected",
            node.adapter.name(),
            node.id
        );
    }
    let back_after = down.elapsed();

    nodes[0].send(Destination::All, &b"after the restart"[..]);
    for node in &mut nodes {
        node.expect_message(b"after the restart", "All after the restart")
            .await;
    }
    nodes[1].send(Destination::Node(1), &b"reply after the restart"[..]);
    nodes[0]
        .expect_message(b"reply after the restart", "Node after the restart")
        .await;
    eprintln!(
        "{}: both nodes reconnected {back_after:?} after the backbone was started again",
        nodes[0].adapter.name()
    );
}

/// Joins nodes one after another, each waiting for its `Connected`, so every case starts with all
/// nodes subscribed and none misses the first message.
async fn join_many<F, Fut, A>(make: &mut F, ids: &[NodeId]) -> Vec<Node<A>>
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter + ?Sized,
{
    let mut nodes = Vec::with_capacity(ids.len());
    for &id in ids {
        nodes.push(Node::join(make, id).await);
    }
    nodes
}

/// A cluster prefix no other test run uses, so tests can share one Redis or NATS server.
/// Only `[a-z0-9-]`, valid for both Redis channels and NATS subjects.
///
/// The pid, the time and a counter together make it unique across runs, across parallel test
/// binaries and within one binary.
pub fn unique_prefix(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "vestnik-test-{tag}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

//! The lifecycle cases of the adapter shell: what every backbone built on
//! [`AdapterShell`] must show beyond moving bytes. `close` publishes what is queued and ends the
//! event stream, drop ends it at once, the counters count what moved, a slow cluster layer costs
//! dropped and counted messages rather than memory, and a silent backbone is noticed and
//! recovered from. Each case takes a factory that makes node `id`'s adapter, as cases 1 to 6 do;
//! the Redis and NATS crates call them against real servers.
//!
//! Nothing here sleeps to wait for a condition, and nothing here touches a server it did not
//! start: the silent-backbone case freezes only a [`BackboneServer`].

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use vestnik_broker::adapter::{
    Adapter, AdapterEvent, AdapterShell, Destination, NodeId, Transport,
};

use super::{Backbone, BackboneServer, Node, EVENT_WAIT, RECONNECT_WAIT};
use crate::wait_until;

/// How many messages the close and slow-consumer cases send.
/// Enough that a shell which dropped its queue on `close` would visibly lose messages.
const BURST: u32 = 500;

/// How many messages the slow-consumer case sends at a node whose event queue is small.
/// Far more than the small queue the case configures, so drops must happen.
const FLOOD: u32 = 100;

/// How exactly a backbone can count the messages it drops on the receiving side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropAccounting {
    /// Every message is either handed to the cluster layer or counted as dropped (Redis: one
    /// connection, read by the adapter's own task).
    Exact,
    /// The client library buffers up to another queue's worth and reports its own drops best
    /// effort (NATS: the subscription's capacity and its slow-consumer events).
    BestEffort,
}

/// Asserts that `events` ends (returns `None`) within [`EVENT_WAIT`].
async fn expect_end(name: &str, id: NodeId, events: &mut mpsc::Receiver<AdapterEvent>, what: &str) {
    match tokio::time::timeout(EVENT_WAIT, events.recv()).await {
        Ok(None) => {}
        Ok(Some(event)) => panic!("{name} node {id}: got {event:?}, but {what}"),
        Err(_) => panic!("{name} node {id}: the stream is still open, but {what}"),
    }
}

/// `close` publishes the messages queued before it, in order; afterwards the adapter reports
/// disconnected, refuses (and counts) sends, and its event stream ends.
///
/// This is the drain's promise for the cluster: the "leaving" message a node queues last is
/// published before its adapter closes.
pub async fn close_publishes_what_is_queued_then_ends<F, Fut, T>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<AdapterShell<T>>>,
    T: Transport,
{
    let mut a = Node::join(&mut make, 1).await;
    let mut b = Node::join(&mut make, 2).await;
    for i in 0..BURST {
        a.send(Destination::Node(2), i.to_string());
    }
    a.adapter.close().await;
    for i in 0..BURST {
        b.expect_message(
            i.to_string().as_bytes(),
            &format!("message {i} of those queued before close"),
        )
        .await;
    }
    assert!(
        !a.adapter.is_connected(),
        "closed adapter reports connected"
    );
    assert!(!a
        .adapter
        .send(Destination::All, Bytes::from_static(b"late")));
    expect_end(
        T::NAME,
        a.id,
        &mut a.events,
        "the event stream ends after close",
    )
    .await;
    let stats = a.adapter.stats();
    assert_eq!(
        (stats.sent, stats.dropped_sends),
        (u64::from(BURST), 1),
        "{stats:?}"
    );
}

/// Dropping the last handle ends the backbone's tasks, and with them the event stream.
///
/// A leaked backbone task would keep a connection open after a broker shut down, and a test suite
/// that makes many nodes would run out of connections.
pub async fn drop_ends_the_tasks_and_the_stream<F, Fut, T>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<AdapterShell<T>>>,
    T: Transport,
{
    let Node {
        id,
        adapter,
        mut events,
    } = Node::join(&mut make, 1).await;
    drop(adapter);
    expect_end(T::NAME, id, &mut events, "the event stream ends after drop").await;
}

/// The counters count what moved: sent by the sender, received by each receiver (the sender
/// hears its own `All` message), nothing dropped.
///
/// These counters feed the broker's metrics; a backbone that miscounts would make the cluster
/// dashboards lie.
pub async fn stats_count_what_moved<F, Fut, T>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<AdapterShell<T>>>,
    T: Transport,
{
    let mut a = Node::join(&mut make, 1).await;
    let mut b = Node::join(&mut make, 2).await;
    for _ in 0..10 {
        a.send(Destination::Node(2), &b"n"[..]);
    }
    a.send(Destination::All, &b"all"[..]);
    for _ in 0..11 {
        b.next_message("the 10 directed messages and the All one")
            .await;
    }
    a.next_message("its own All message").await;
    wait_until("a's sent counter", EVENT_WAIT, || async {
        a.adapter.stats().sent == 11
    })
    .await;
    assert_eq!(b.adapter.stats().received, 11, "{:?}", b.adapter.stats());
    assert_eq!(
        a.adapter.stats().received,
        1,
        "the sender hears its own All message"
    );
    assert_eq!(a.adapter.stats().dropped(), 0, "{:?}", a.adapter.stats());
}

/// A node whose event queue holds `queue` events and whose cluster layer reads nothing is sent
/// 100 messages (`FLOOD`): it keeps the first ones in order and drops (and counts) the rest instead
/// of buffering them. `make` makes the sender, `make_small` the node with the small queue.
pub async fn a_slow_cluster_layer_costs_dropped_messages_not_memory<F, Fut, G, Gut, T>(
    mut make: F,
    mut make_small: G,
    queue: usize,
    accounting: DropAccounting,
) where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<AdapterShell<T>>>,
    G: FnMut(NodeId) -> Gut,
    Gut: Future<Output = Arc<AdapterShell<T>>>,
    T: Transport,
{
    let a = Node::join(&mut make, 1).await;
    let mut b = Node::join(&mut make_small, 2).await;
    for i in 0..FLOOD {
        a.send(Destination::Node(2), i.to_string());
    }
    let queue_u64 = u64::try_from(queue).expect("a small queue");
    match accounting {
        DropAccounting::Exact => {
            wait_until("b to drop what does not fit", EVENT_WAIT, || async {
                let s = b.adapter.stats();
                s.received + s.dropped_receives == u64::from(FLOOD)
            })
            .await;
            assert_eq!(
                b.adapter.stats().received,
                queue_u64,
                "{:?}",
                b.adapter.stats()
            );
        }
        DropAccounting::BestEffort => {
            // Slow-consumer reports reach the counter best-effort, so wait for the first drop.
            wait_until("b to drop what does not fit", EVENT_WAIT, || async {
                b.adapter.stats().dropped_receives > 0
            })
            .await;
            assert!(
                b.adapter.stats().received <= 2 * queue_u64,
                "{:?}",
                b.adapter.stats()
            );
        }
    }
    for i in 0..queue {
        b.expect_message(i.to_string().as_bytes(), "the first messages, in order")
            .await;
    }
}

/// A backbone that stops answering without closing anything (SIGSTOP, as in a partition) is
/// noticed by the adapter's own health checks, reported once, and recovered from when it answers
/// again. `make` must connect to `server` with short health timings.
pub async fn a_silent_backbone_is_noticed<F, Fut, T>(mut make: F, server: &BackboneServer)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<AdapterShell<T>>>,
    T: Transport,
{
    let mut a = Node::join(&mut make, 1).await;
    server.freeze();
    let event = a
        .next_event(EVENT_WAIT, "Disconnected after the freeze")
        .await;
    assert_eq!(event, AdapterEvent::Disconnected);
    assert!(!a.adapter.is_connected());
    server.thaw();
    let event = a.next_event(EVENT_WAIT, "Connected after the thaw").await;
    assert_eq!(event, AdapterEvent::Connected);
    a.send(Destination::All, &b"back"[..]);
    a.expect_message(b"back", "a message after the thaw").await;
    assert_eq!(a.adapter.stats().disconnects, 1, "{:?}", a.adapter.stats());
}

/// How many relays the relay-hold cases send while the backbone is down.
const HELD: u32 = 200;

/// The `i`th relay sent while the backbone is down.
fn held(i: u32) -> Bytes {
    Bytes::from(format!("held {i:05} {}", "x".repeat(48)))
}

/// Reads events until `Connected` has come and `count` messages with it (the backbone's echo of
/// released messages may race the `Connected` event on some backbones); returns the messages.
async fn reconnect_and_collect<A: Adapter + ?Sized>(
    node: &mut Node<A>,
    count: usize,
    what: &str,
) -> Vec<Bytes> {
    let mut connected = false;
    let mut got = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + RECONNECT_WAIT;
    while !connected || got.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match node.next_event(left, what).await {
            AdapterEvent::Connected if !connected => connected = true,
            AdapterEvent::Message(payload) => got.push(payload),
            other => panic!(
                "{} node {}: got {other:?} while waiting for {what}",
                node.adapter.name(),
                node.id
            ),
        }
    }
    got
}

/// The relay hold covers a restart: while the backbone is down `send` accepts and holds; once it
/// is back every held message arrives exactly once, in send order, before a message sent after
/// the reconnect; nothing is counted as lost. `make` connects to `backbone` with the default
/// relay hold (10 s). The sender listens to `All` itself, so the check does not depend on which
/// node reconnects first.
pub async fn a_restart_within_the_relay_hold_loses_nothing<F, Fut, T>(
    mut make: F,
    backbone: &mut dyn Backbone,
) where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<AdapterShell<T>>>,
    T: Transport,
{
    let mut a = Node::join(&mut make, 1).await;
    backbone.stop();
    a.expect_event(AdapterEvent::Disconnected, RECONNECT_WAIT, "Disconnected")
        .await;
    assert!(!a.adapter.is_connected());
    for i in 0..HELD {
        a.send(Destination::All, held(i));
    }
    assert!(a.adapter.can_take(64), "{}: the hold has room", T::NAME);
    backbone.start();
    let got = reconnect_and_collect(&mut a, HELD as usize, "the held messages").await;
    for (i, payload) in (0..HELD).zip(&got) {
        assert_eq!(payload, &held(i), "{}: held message {i}, in order", T::NAME);
    }
    a.send(Destination::All, &b"after"[..]);
    a.expect_message(
        b"after",
        "the message sent after the reconnect, and no repeat",
    )
    .await;
    let stats = a.adapter.stats();
    assert_eq!(
        (stats.dropped_sends, stats.lost_after_send),
        (0, 0),
        "{}: {stats:?}",
        T::NAME
    );
}

/// A restart longer than the relay hold: the messages held past its age bound are dropped while
/// the backbone is still down and counted exactly (`lost_after_send`, also in `dropped_sends`);
/// the ones sent later still arrive, in order. `make` connects to `backbone` with a relay hold
/// of about 2 s and reconnect delays of a few hundred ms at most, so the later ones outlive the
/// reconnect.
pub async fn a_restart_longer_than_the_relay_hold_counts_what_it_lost<F, Fut, T>(
    mut make: F,
    backbone: &mut dyn Backbone,
) where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<AdapterShell<T>>>,
    T: Transport,
{
    const LATE: u32 = 3;
    let mut a = Node::join(&mut make, 1).await;
    backbone.stop();
    a.expect_event(AdapterEvent::Disconnected, RECONNECT_WAIT, "Disconnected")
        .await;
    for i in 0..HELD {
        a.send(Destination::All, held(i));
    }
    wait_until("the held messages to expire", RECONNECT_WAIT, || async {
        a.adapter.stats().lost_after_send >= u64::from(HELD)
    })
    .await;
    for i in HELD..HELD + LATE {
        a.send(Destination::All, held(i));
    }
    backbone.start();
    let got = reconnect_and_collect(&mut a, LATE as usize, "the late messages").await;
    for (i, payload) in (HELD..HELD + LATE).zip(&got) {
        assert_eq!(payload, &held(i), "{}: late message {i}, in order", T::NAME);
    }
    a.send(Destination::All, &b"after"[..]);
    a.expect_message(
        b"after",
        "the message sent after the reconnect, and nothing expired",
    )
    .await;
    let stats = a.adapter.stats();
    assert_eq!(
        (stats.dropped_sends, stats.lost_after_send),
        (u64::from(HELD), u64::from(HELD)),
        "{}: exactly the expired ones are counted: {stats:?}",
        T::NAME
    );
}

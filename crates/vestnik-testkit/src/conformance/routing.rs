//! Interest routing end to end, over a real backbone (issue 16): brokers joined through Redis or
//! NATS, each channel served by one node. What the cluster layer must show on every routed
//! backbone:
//!
//! 1. [`a_node_gets_only_the_relays_of_the_channels_it_serves`]: a node receives the event relays
//!    of its own channels, and none for a channel it does not serve (its
//!    `relays_unserved` counter stays 0, and a node with no subscriber receives no relay).
//! 2. [`a_first_subscriber_misses_nothing_published_right_after`]: many times over, a socket
//!    subscribes to a new channel (its node's first subscriber there, so its route shard is
//!    subscribed on the backbone just then) and another node publishes the moment the subscribe
//!    returned: every event arrives.
//!
//! The cases take a factory that connects a node's adapter (each run on its own prefix). Every
//! wait has a deadline and fails with what was seen.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vestnik_broker::adapter::{Adapter, NodeId};
use vestnik_broker::cluster::{route_shard, ClusterSettings};
use vestnik_broker::{ConnectionHandle, SubscribeReady};
use vestnik_protocol::message::Subscribe;
use vestnik_protocol::ChannelName;

use super::skew::{take_events, wait_for, SkewNode};
use super::RECONNECT_WAIT;

/// Events published per channel in case 1.
pub const ROUTED_EVENTS: usize = 50;

/// Subscribes a new socket of `node` to `channel` the way the WebSocket edge does: first the
/// wait for the channel's route shard, then the subscribe.
async fn subscribe_ready(node: &SkewNode, channel: &str) -> ConnectionHandle {
    let conn = node
        .broker
        .connect(node.app.clone())
        .expect("room for a socket");
    let sub = Subscribe {
        channel: ChannelName::parse(channel).expect("a valid channel"),
        auth: None,
        channel_data: None,
        recover: None,
    };
    let mut ready = SubscribeReady::default();
    if let Some(wait) = node.broker.subscribe_ready(&conn, &sub) {
        ready = wait.await;
    }
    node.broker
        .subscribe_with(&conn, sub, ready)
        .expect("a public channel subscribes");
    conn
}

/// Joins `n` brokers (ids 1..=n) and waits until each knows all the others.
async fn cluster<F, Fut, A>(make: &mut F, n: u64) -> Vec<SkewNode>
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter,
{
    let mut nodes = Vec::new();
    for id in 1..=n {
        nodes.push(SkewNode::join(id, make(id).await).await);
    }
    let want = usize::try_from(n - 1).unwrap_or(0);
    wait_for("the cluster forms", RECONNECT_WAIT, || {
        nodes.iter().all(|node| {
            node.connected()
                && node
                    .broker
                    .cluster()
                    .is_some_and(|c| c.peers().len() == want)
        })
    })
    .await;
    nodes
}

/// A channel name with `prefix` whose route shard is not in `taken`.
fn channel_off(prefix: &str, app: &str, taken: &[u32]) -> (String, u32) {
    let shards = ClusterSettings::DEFAULT_ROUTE_SHARDS;
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .map(|c| {
            let shard = route_shard(app, &c, shards);
            (c, shard)
        })
        .find(|(_, shard)| !taken.contains(shard))
        .expect("some name hashes elsewhere")
}

/// Case 1: node 1 publishes [`ROUTED_EVENTS`] to a channel served by node 2 and as many to one
/// served by node 3 (in another route shard); node 4 serves nothing. Nodes 2 and 3 get their own
/// channel's events, count every relay they received as served, and node 4 and node 1 receive
/// no channel event relay at all.
pub async fn a_node_gets_only_the_relays_of_the_channels_it_serves<F, Fut, A>(mut make: F)
where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter,
{
    let nodes = cluster(&mut make, 4).await;
    let app = nodes[0].app.id.clone();
    let (on_2, shard_2) = channel_off("served-by-2", &app, &[]);
    let (on_3, _) = channel_off("served-by-3", &app, &[shard_2]);
    let conn_2 = subscribe_ready(&nodes[1], &on_2).await;
    let conn_3 = subscribe_ready(&nodes[2], &on_3).await;
    for i in 0..ROUTED_EVENTS {
        nodes[0].publish(&on_2, &format!("two {i}"));
        nodes[0].publish(&on_3, &format!("three {i}"));
    }
    for (conn, what) in [(&conn_2, "node 2"), (&conn_3, "node 3")] {
        let mut seen = Vec::new();
        wait_for(what, RECONNECT_WAIT, || {
            take_events(conn, &mut seen);
            seen.len() >= ROUTED_EVENTS
        })
        .await;
        assert_eq!(seen.len(), ROUTED_EVENTS, "{what}: each event once");
    }
    let counts = |n: &SkewNode| {
        let c = n.broker.cluster().expect("in a cluster");
        (
            c.counters.relays_received.load(Ordering::Relaxed),
            c.counters.relays_unserved.load(Ordering::Relaxed),
        )
    };
    let want = ROUTED_EVENTS as u64;
    assert_eq!(
        counts(&nodes[1]),
        (want, 0),
        "node 2: its channel's relays only"
    );
    assert_eq!(
        counts(&nodes[2]),
        (want, 0),
        "node 3: its channel's relays only"
    );
    assert_eq!(counts(&nodes[3]), (0, 0), "node 4 serves nothing: no relay");
    assert_eq!(counts(&nodes[0]), (0, 0), "node 1 serves nothing: no relay");
}

/// Case 2: `trials` times, node 2 gets its first subscriber of a new channel and node 1
/// publishes to it the moment the subscribe returned. Every event must reach the socket.
pub async fn a_first_subscriber_misses_nothing_published_right_after<F, Fut, A>(
    mut make: F,
    trials: usize,
) where
    F: FnMut(NodeId) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter,
{
    let nodes = cluster(&mut make, 2).await;
    let mut conns = Vec::with_capacity(trials);
    for i in 0..trials {
        let channel = format!("fresh-{i}");
        let conn = subscribe_ready(&nodes[1], &channel).await;
        nodes[0].publish(&channel, &format!("first {i}"));
        conns.push(conn);
    }
    let deadline = Instant::now() + RECONNECT_WAIT;
    let mut lost: Vec<usize> = (0..trials).collect();
    let mut seen = vec![Vec::new(); trials];
    while !lost.is_empty() && Instant::now() < deadline {
        lost.retain(|i| {
            take_events(&conns[*i], &mut seen[*i]);
            seen[*i].is_empty()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        lost.is_empty(),
        "{} of {trials} events published right after their channel's first subscribe were lost: \
         channels {lost:?}",
        lost.len()
    );
    assert!(seen.iter().all(|s| s.len() == 1), "each event arrived once");
}

//! The adapter on a Redis Cluster (`redis+cluster://`): a private cluster of 3 masters and 3
//! replicas on free ports (`vestnik_testkit::redis_cluster`), started by each test.
//!
//! 1. Messages reach their nodes whichever master serves them: route shards whose slots live on
//!    every master, `All` and `Node` (classic pub/sub, on the master of slot 0).
//! 2. When a slot of a subscribed shard moves to another master, Redis ends the shard
//!    subscription; the adapters resync (`Disconnected`, `Connected`) and subscribe where the slot
//!    is now.
//! 3. After a master is SIGKILLed and its replica promoted, the adapters reconnect (one
//!    `Disconnected`, then `Connected`) and delivery resumes on every master.

use std::sync::Arc;

use vestnik_broker::adapter::{Adapter, AdapterEvent, Destination, NodeId, ShardSet};
use vestnik_redis::RedisAdapter;
use vestnik_testkit::conformance::{unique_prefix, Node, RECONNECT_WAIT};
use vestnik_testkit::redis_cluster::RedisCluster;

async fn connect(url: String, prefix: String, id: NodeId) -> Arc<RedisAdapter> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    RedisAdapter::connect(&url, &prefix, id)
        .await
        .unwrap_or_else(|e| panic!("cannot reach the test Redis Cluster: {e}"))
}

/// Route shards of `prefix` covering every master of `cluster` (at least one per master).
fn shards_on_every_master(cluster: &RedisCluster, prefix: &str) -> ShardSet {
    let masters = cluster.master_ports();
    let mut covered = Vec::new();
    let mut shards = ShardSet::new();
    for n in 0..256u32 {
        let slot = cluster.slot_of(&format!("{prefix}:shard:{n}"));
        let master = cluster.master_of_slot(slot);
        if !covered.contains(&master) {
            covered.push(master);
            shards.insert(n);
        }
        if covered.len() == masters.len() {
            return shards;
        }
    }
    panic!("256 shards of {prefix} do not cover the 3 masters");
}

/// Makes `node` want `shards` and waits until its adapter confirms them.
async fn route(node: &Node<RedisAdapter>, shards: &ShardSet) {
    let routes = node.adapter.routes().expect("redis routes");
    let generation = routes.want(shards.clone());
    let mut confirmed = routes.confirmed();
    tokio::time::timeout(
        RECONNECT_WAIT,
        confirmed.wait_for(|s| s.generation >= generation),
    )
    .await
    .expect("route shards confirmed in time")
    .expect("the adapter lives");
}

/// Sends one message per destination from `from` and checks that `to` gets each exactly once.
/// Messages through different masters travel on different connections, so their relative order
/// is not kept (order holds per master).
async fn round_trip(
    from: &Node<RedisAdapter>,
    to: &mut Node<RedisAdapter>,
    shards: &ShardSet,
    tag: &str,
) {
    let mut expected = Vec::new();
    for &n in shards {
        let payload = format!("{tag} shard {n}");
        from.send(Destination::Shard(n), payload.clone());
        expected.push(payload);
    }
    from.send(Destination::Node(to.id), format!("{tag} node"));
    expected.push(format!("{tag} node"));
    from.send(Destination::All, format!("{tag} all"));
    expected.push(format!("{tag} all"));
    let mut got = Vec::new();
    for _ in 0..expected.len() {
        let payload = to.next_message(tag).await;
        got.push(String::from_utf8_lossy(&payload).into_owned());
    }
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{tag}: every message once");
    to.expect_idle(tag);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_nodes_across_masters() {
    let cluster = RedisCluster::start();
    let prefix = unique_prefix("redis-cluster");
    let mut make = |id| connect(cluster.url(), prefix.clone(), id);
    let a = Node::join(&mut make, 1).await;
    let mut b = Node::join(&mut make, 2).await;
    let shards = shards_on_every_master(&cluster, &prefix);
    route(&b, &shards).await;
    round_trip(&a, &mut b, &shards, "first").await;
    // Leaving a shard is no loss of the session: an asked-for sunsubscribe is not a moved slot.
    let fewer: ShardSet = shards.iter().copied().skip(1).collect();
    route(&b, &fewer).await;
    round_trip(&a, &mut b, &fewer, "second").await;
    assert_eq!(b.adapter.stats().disconnects, 0, "no reconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_after_a_master_fails_over() {
    let mut cluster = RedisCluster::start();
    let prefix = unique_prefix("redis-cluster-failover");
    let url = cluster.url();
    let mut make = |id| connect(url.clone(), prefix.clone(), id);
    let mut a = Node::join(&mut make, 1).await;
    let mut b = Node::join(&mut make, 2).await;
    let shards = shards_on_every_master(&cluster, &prefix);
    route(&b, &shards).await;
    round_trip(&a, &mut b, &shards, "before").await;

    // The master of slot 0 carries the classic channels and some of the shards.
    let victim = cluster.master_of_slot(0);
    cluster.kill(victim);
    for node in [&mut a, &mut b] {
        node.expect_event(
            AdapterEvent::Disconnected,
            RECONNECT_WAIT,
            "the lost master",
        )
        .await;
    }
    tokio::task::block_in_place(|| cluster.wait_failover());
    for node in [&mut a, &mut b] {
        node.expect_event(
            AdapterEvent::Connected,
            RECONNECT_WAIT,
            "the promoted replica",
        )
        .await;
    }
    assert_ne!(
        cluster.master_of_slot(0),
        victim,
        "slot 0 moved to the replica"
    );
    route(&b, &shards).await;
    round_trip(&a, &mut b, &shards, "after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_slot_is_followed() {
    let cluster = RedisCluster::start();
    let prefix = unique_prefix("redis-cluster-moved");
    let url = cluster.url();
    let mut make = |id| connect(url.clone(), prefix.clone(), id);
    let a = Node::join(&mut make, 1).await;
    let mut b = Node::join(&mut make, 2).await;
    let shards = shards_on_every_master(&cluster, &prefix);
    route(&b, &shards).await;
    round_trip(&a, &mut b, &shards, "before").await;

    // A subscribed shard's slot (not slot 0: the classic channels stay put) goes to another
    // master.
    let (shard, slot) = shards
        .iter()
        .map(|&n| (n, cluster.slot_of(&format!("{prefix}:shard:{n}"))))
        .find(|&(_, slot)| cluster.master_of_slot(slot) != cluster.master_of_slot(0))
        .expect("a shard off the master of slot 0");
    let from = cluster.master_of_slot(slot);
    let to = cluster.master_of_slot(0);
    tokio::task::block_in_place(|| cluster.move_slot(slot, to));
    b.expect_event(
        AdapterEvent::Disconnected,
        RECONNECT_WAIT,
        "the ended shard subscription",
    )
    .await;
    b.expect_event(AdapterEvent::Connected, RECONNECT_WAIT, "the resync")
        .await;
    assert_ne!(from, to);
    route(&b, &shards).await;
    // Node A may publish to the old master once (MOVED ends its session too): resend until the
    // new owner delivers.
    let deadline = std::time::Instant::now() + RECONNECT_WAIT;
    loop {
        if a.adapter.is_connected() {
            a.send(Destination::Shard(shard), "moved");
        }
        match tokio::time::timeout(std::time::Duration::from_millis(200), b.events.recv()).await {
            Ok(Some(AdapterEvent::Message(p))) if p.as_ref() == b"moved" => break,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => panic!("node 2's events ended"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "shard {shard} never delivered after its slot moved"
        );
    }
}

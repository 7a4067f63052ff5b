//! Cluster-wide positions and recovery over the in-process MemoryHub with its shared history
//! store: the store numbers every event, every node delivers in offset order, and a socket
//! recovers on any node, also after the node it was on is gone.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::oneshot;
use vestnik_broker::adapter::MemoryHub;
use vestnik_broker::cluster::ClusterSettings;
use vestnik_broker::{
    App, Broker, BrokerConfig, ConnectionHandle, PublishEvent, StaticAppStore, SubscribeReady,
};
use vestnik_protocol::message::{Recover, Subscribe};
use vestnik_protocol::ChannelName;

struct Node {
    broker: Broker,
    app: Arc<App>,
    _stop: oneshot::Sender<()>,
}

async fn node(hub: &MemoryHub, id: u64) -> Node {
    let settings = ClusterSettings {
        heartbeat_interval: Duration::from_millis(50),
        node_timeout: Duration::from_millis(300),
        query_timeout: Duration::from_millis(500),
        ..ClusterSettings::default()
    };
    let config = BrokerConfig {
        outbox_capacity: 100_000,
        ..BrokerConfig::default()
    };
    let broker = Broker::new(
        Arc::new(StaticAppStore::new(vec![App::default()]).unwrap()),
        config,
    );
    let app = broker.apps().all()[0].clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(
        broker.join_cluster(id, Arc::new(hub.adapter(id)), settings, async {
            let _ = rx.await;
        }),
    );
    assert!(
        broker
            .cluster()
            .unwrap()
            .ready(Duration::from_secs(2))
            .await
    );
    Node {
        broker,
        app,
        _stop: tx,
    }
}

/// Subscribes the way the WebSocket edge does: what `subscribe_ready` asks for first.
async fn subscribe(n: &Node, channel: &str, recover: Option<(&str, u64)>) -> ConnectionHandle {
    let conn = n.broker.connect(n.app.clone()).unwrap();
    let sub = Subscribe {
        channel: ChannelName::parse(channel).unwrap(),
        auth: None,
        channel_data: None,
        recover: recover.map(|(epoch, offset)| Recover {
            epoch: epoch.into(),
            offset,
        }),
    };
    let mut ready = SubscribeReady::default();
    if let Some(wait) = n.broker.subscribe_ready(&conn, &sub) {
        ready = wait.await;
    }
    n.broker.subscribe_with(&conn, sub, ready).unwrap();
    conn
}

/// Publishes through the numbering queue and waits until the event went out (numbered or not).
async fn publish(n: &Node, channel: &str, data: &str) {
    n.broker
        .publish_numbered(
            &n.app,
            &PublishEvent {
                name: "e",
                data,
                channels: &[ChannelName::parse(channel).unwrap()],
                except: None,
            },
        )
        .await;
    n.broker.numbering_idle(Duration::from_secs(5)).await;
}

/// Publishes through the numbering queue without waiting for it.
async fn publish_queued(n: &Node, channel: &str, data: &str) {
    n.broker
        .publish_numbered(
            &n.app,
            &PublishEvent {
                name: "e",
                data,
                channels: &[ChannelName::parse(channel).unwrap()],
                except: None,
            },
        )
        .await;
}

fn drain(conn: &ConnectionHandle, into: &mut Vec<Value>) {
    let mut out = VecDeque::new();
    conn.outbox().drain_now(&mut out);
    into.extend(
        out.iter()
            .map(|b| serde_json::from_slice::<Value>(b).unwrap()),
    );
}

/// The channel events `conn` got, waiting until there are `n` (or failing after 5 s).
async fn events(conn: &ConnectionHandle, seen: &mut Vec<Value>, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        drain(conn, seen);
        let got: Vec<Value> = seen.iter().filter(|f| f["event"] == "e").cloned().collect();
        if got.len() >= n || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn position(frame: &Value) -> (String, u64) {
    let p = &frame["position"];
    (
        p["epoch"].as_str().unwrap_or_default().to_owned(),
        p["offset"].as_u64().unwrap_or(0),
    )
}

fn succeeded(seen: &[Value]) -> Value {
    let f = seen
        .iter()
        .find(|f| f["event"] == "pusher_internal:subscription_succeeded")
        .expect("subscription_succeeded");
    serde_json::from_str(f["data"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn positions_are_cluster_wide_and_a_socket_recovers_on_another_node() {
    let hub = MemoryHub::with_history();
    let nodes = [
        node(&hub, 1).await,
        node(&hub, 2).await,
        node(&hub, 3).await,
    ];
    let watcher = subscribe(&nodes[0], "orders", None).await;
    let mut seen = Vec::new();
    for i in 0..9 {
        publish(&nodes[i % 3], "orders", &format!("{i}")).await;
    }
    let got = events(&watcher, &mut seen, 9).await;
    let positions: Vec<(String, u64)> = got.iter().map(position).collect();
    let epoch = positions[0].0.clone();
    assert!(!epoch.is_empty(), "{got:?}");
    assert_eq!(
        positions,
        (1..=9).map(|o| (epoch.clone(), o)).collect::<Vec<_>>(),
        "one epoch, offsets 1..9 in order, wherever published"
    );
    // A socket that saw up to 4 (on node 1) comes back on node 3 and gets 5..9, once each.
    let back = subscribe(&nodes[2], "orders", Some((&epoch, 4))).await;
    let mut seen_back = Vec::new();
    let missed = events(&back, &mut seen_back, 5).await;
    assert_eq!(
        succeeded(&seen_back)["recovery"],
        json!({"recovered": true, "missed": 5})
    );
    let data: Vec<&str> = missed.iter().map(|f| f["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["4", "5", "6", "7", "8"]);
    // Live events follow on with no gap and no duplicate.
    publish(&nodes[1], "orders", "9").await;
    let all = events(&back, &mut seen_back, 6).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(position(&all[5]), (epoch.clone(), 10));
    // Node 3's subscription_succeeded told the channel's position.
    let fresh = subscribe(&nodes[1], "orders", None).await;
    let mut seen_fresh = Vec::new();
    drain(&fresh, &mut seen_fresh);
    let frame = seen_fresh
        .iter()
        .find(|f| f["event"] == "pusher_internal:subscription_succeeded")
        .unwrap();
    assert_eq!(frame["position"], json!({"epoch": epoch, "offset": 10}));
}

#[tokio::test]
async fn concurrent_publishers_on_two_nodes_reach_a_third_in_offset_order() {
    let hub = MemoryHub::with_history();
    let nodes = [
        node(&hub, 1).await,
        node(&hub, 2).await,
        node(&hub, 3).await,
    ];
    let watcher = subscribe(&nodes[2], "busy", None).await;
    let local = subscribe(&nodes[0], "busy", None).await;
    const EACH: usize = 300;
    let (a, b) = (&nodes[0], &nodes[1]);
    tokio::join!(
        async {
            for i in 0..EACH {
                publish_queued(a, "busy", &format!("a{i}")).await;
            }
        },
        async {
            for i in 0..EACH {
                publish_queued(b, "busy", &format!("b{i}")).await;
            }
        }
    );
    for conn in [&watcher, &local] {
        let mut seen = Vec::new();
        let got = events(conn, &mut seen, 2 * EACH).await;
        let offsets: Vec<u64> = got.iter().map(|f| position(f).1).collect();
        assert_eq!(offsets, (1..=2 * EACH as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn a_socket_whose_node_died_recovers_on_another_node() {
    let hub = MemoryHub::with_history();
    let a = node(&hub, 1).await;
    let b = node(&hub, 2).await;
    let on_a = subscribe(&a, "track", None).await;
    let mut seen = Vec::new();
    for i in 0..3 {
        publish(&a, "track", &format!("{i}")).await;
    }
    let got = events(&on_a, &mut seen, 3).await;
    let (epoch, last) = position(&got[2]);
    // Node 1 dies; events go on through node 2.
    hub.remove(1);
    drop(a);
    for i in 3..8 {
        publish(&b, "track", &format!("{i}")).await;
    }
    let back = subscribe(&b, "track", Some((&epoch, last))).await;
    let mut seen_back = Vec::new();
    let missed = events(&back, &mut seen_back, 5).await;
    assert_eq!(
        succeeded(&seen_back)["recovery"],
        json!({"recovered": true, "missed": 5})
    );
    let data: Vec<&str> = missed.iter().map(|f| f["data"].as_str().unwrap()).collect();
    assert_eq!(data, ["3", "4", "5", "6", "7"]);
}

#[tokio::test]
async fn without_the_store_events_go_out_unnumbered_and_no_recovery_claims_them() {
    let hub = MemoryHub::with_history();
    let a = node(&hub, 1).await;
    let b = node(&hub, 2).await;
    let watcher = subscribe(&b, "c", None).await;
    let mut seen = Vec::new();
    publish(&a, "c", "1").await;
    let first = events(&watcher, &mut seen, 1).await;
    let (epoch, offset) = position(&first[0]);
    hub.store().unwrap().set_down(true);
    publish(&a, "c", "2").await;
    let got = events(&watcher, &mut seen, 2).await;
    assert!(
        got[1].get("position").is_none(),
        "delivered, unnumbered: {got:?}"
    );
    // A recovery from before the unnumbered event: the store is down.
    let r1 = subscribe(&b, "c", Some((&epoch, offset))).await;
    let mut s1 = Vec::new();
    drain(&r1, &mut s1);
    assert_eq!(
        succeeded(&s1)["recovery"],
        json!({"recovered": false, "reason": "epoch_changed"}),
        "node 2 delivered an unnumbered event: no recovery across it"
    );
    hub.store().unwrap().set_down(false);
    let r2 = subscribe(&a, "c", Some((&epoch, offset))).await;
    let mut s2 = Vec::new();
    drain(&r2, &mut s2);
    assert_eq!(
        succeeded(&s2)["recovery"]["recovered"],
        json!(false),
        "{s2:?}"
    );
    // The next event starts a new epoch, and recoveries from it work again.
    publish(&a, "c", "3").await;
    let got = events(&watcher, &mut seen, 3).await;
    let (new_epoch, new_offset) = position(&got[2]);
    assert_ne!(new_epoch, epoch);
    assert_eq!(new_offset, 1);
    let r3 = subscribe(&b, "c", Some((&new_epoch, 0))).await;
    let mut s3 = Vec::new();
    let missed = events(&r3, &mut s3, 1).await;
    assert_eq!(
        succeeded(&s3)["recovery"],
        json!({"recovered": true, "missed": 1})
    );
    assert_eq!(missed[0]["data"], "3");
}

#[tokio::test]
async fn the_history_api_reads_the_store_on_any_node() {
    let hub = MemoryHub::with_history();
    let a = node(&hub, 1).await;
    let b = node(&hub, 2).await;
    for i in 0..4 {
        publish(&a, "h", &format!("{i}")).await;
    }
    let channel = ChannelName::parse("h").unwrap();
    let page = b
        .broker
        .channel_history(&b.app, &channel, None, 10)
        .await
        .unwrap();
    assert_eq!((page.first_offset, page.last_offset), (1, 4));
    let data: Vec<String> = page
        .events
        .iter()
        .map(|e| e.fields().unwrap().data)
        .collect();
    assert_eq!(data, ["0", "1", "2", "3"]);
    let epoch = page.epoch.clone().unwrap();
    let next = b
        .broker
        .channel_history(
            &b.app,
            &channel,
            Some(&Recover {
                epoch: epoch.clone(),
                offset: 2,
            }),
            1,
        )
        .await
        .unwrap();
    assert_eq!(next.events.len(), 1);
    assert_eq!(next.events[0].offset, 3);
    let refused = b
        .broker
        .channel_history(
            &b.app,
            &channel,
            Some(&Recover {
                epoch: "other".into(),
                offset: 2,
            }),
            1,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.reason.as_str(), "epoch_changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_publishes_on_one_node_lose_nothing_and_keep_order() {
    let hub = MemoryHub::with_history();
    let nodes = Arc::new([node(&hub, 1).await, node(&hub, 2).await]);
    let here = subscribe(&nodes[0], "hot", None).await;
    let there = subscribe(&nodes[1], "hot", None).await;
    const TASKS: usize = 8;
    const EACH: usize = 200;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..EACH {
                publish_queued(&nodes[0], "hot", &format!("{t}-{i}")).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for conn in [&here, &there] {
        let mut seen = Vec::new();
        let got = events(conn, &mut seen, TASKS * EACH).await;
        let offsets: Vec<u64> = got.iter().map(|f| position(f).1).collect();
        assert_eq!(offsets, (1..=(TASKS * EACH) as u64).collect::<Vec<_>>());
    }
}

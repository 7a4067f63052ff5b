//! The cluster protocol over the in-process MemoryHub: three brokers behave as one.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use vestnik_broker::adapter::MemoryHub;
use vestnik_broker::cluster::ClusterSettings;
use vestnik_broker::{App, Broker, BrokerConfig, ConnectionHandle, PublishEvent, StaticAppStore};
use vestnik_protocol::auth::sign_channel;
use vestnik_protocol::message::Subscribe;
use vestnik_protocol::ChannelName;

struct Node {
    broker: Broker,
    app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
}

/// The webhook happenings a node reports (`.0`), and apart (`.1`) what it hears appeared on other
/// nodes (`MemberJoinedElsewhere`, `OccupiedElsewhere`).
#[derive(Default)]
struct Recorder(
    parking_lot::Mutex<Vec<String>>,
    parking_lot::Mutex<Vec<String>>,
);

impl vestnik_broker::EventSink for Recorder {
    fn on_event(&self, _app: &App, event: vestnik_broker::BrokerEvent<'_>) {
        use vestnik_broker::BrokerEvent as E;
        let elsewhere = match event {
            E::MemberJoinedElsewhere { channel, user_id } => {
                Some(format!("joined {channel} {user_id}"))
            }
            E::OccupiedElsewhere { channel } => Some(format!("occupied {channel}")),
            _ => None,
        };
        if let Some(line) = elsewhere {
            return self.1.lock().push(line);
        }
        let line = match event {
            E::ChannelOccupied { channel } => format!("occupied {channel}"),
            E::ChannelVacated { channel } => format!("vacated {channel}"),
            E::MemberAdded { channel, user_id } => format!("added {channel} {user_id}"),
            E::MemberRemoved { channel, user_id } => format!("removed {channel} {user_id}"),
            _ => return,
        };
        self.0.lock().push(line);
    }
}

async fn node(hub: &MemoryHub, id: u64) -> Node {
    node_with(hub, id, Arc::new(Recorder::default())).await
}

async fn node_with(hub: &MemoryHub, id: u64, events: Arc<Recorder>) -> Node {
    let settings = ClusterSettings {
        heartbeat_interval: Duration::from_millis(50),
        node_timeout: Duration::from_millis(300),
        query_timeout: Duration::from_millis(500),
        ..ClusterSettings::default()
    };
    node_with_settings(hub, id, events, settings).await
}

async fn node_with_settings(
    hub: &MemoryHub,
    id: u64,
    events: Arc<Recorder>,
    settings: ClusterSettings,
) -> Node {
    let broker = Broker::with_events(
        Arc::new(StaticAppStore::new(vec![App::default()]).unwrap()),
        BrokerConfig::default(),
        events,
    );
    let app = broker.apps().all()[0].clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = broker.join_cluster(id, Arc::new(hub.adapter(id)), settings, async {
        let _ = rx.await;
    });
    tokio::spawn(task);
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
        stop: Some(tx),
    }
}

fn frames(conn: &ConnectionHandle) -> Vec<Value> {
    let mut out = VecDeque::new();
    conn.outbox().drain_now(&mut out);
    out.iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect()
}

async fn wait_frames(conn: &ConnectionHandle, event: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..200 {
        seen.extend(frames(conn));
        if seen.iter().any(|f| f["event"] == event) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {event} within 2 s; saw {seen:?}");
}

fn subscribe(n: &Node, channel: &str) -> ConnectionHandle {
    let conn = n.broker.connect(n.app.clone()).unwrap();
    n.broker
        .subscribe(
            &conn,
            Subscribe {
                channel: ChannelName::parse(channel).unwrap(),
                auth: None,
                channel_data: None,
                recover: None,
            },
        )
        .unwrap();
    frames(&conn);
    conn
}

fn join_presence(n: &Node, channel: &str, user: &str) -> (ConnectionHandle, Vec<Value>) {
    let conn = n.broker.connect(n.app.clone()).unwrap();
    let cd = format!(r#"{{"user_id":"{user}"}}"#);
    let auth = sign_channel(
        &n.app.key,
        &n.app.secret,
        &conn.socket_id().to_string(),
        channel,
        Some(&cd),
    );
    n.broker
        .subscribe(
            &conn,
            Subscribe {
                channel: ChannelName::parse(channel).unwrap(),
                auth: Some(auth),
                channel_data: Some(cd),
                recover: None,
            },
        )
        .unwrap();
    let f = frames(&conn);
    (conn, f)
}

async fn settle(nodes: &[&Node]) {
    for _ in 0..200 {
        if nodes
            .iter()
            .all(|n| n.broker.cluster().unwrap().peers().len() == nodes.len() - 1)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nodes did not see each other");
}

#[tokio::test]
async fn a_publish_reaches_every_node_once_with_exclusion() {
    let hub = MemoryHub::new();
    let (a, b, c) = (
        node(&hub, 1).await,
        node(&hub, 2).await,
        node(&hub, 3).await,
    );
    settle(&[&a, &b, &c]).await;
    let sa = subscribe(&a, "news");
    let sb = subscribe(&b, "news");
    let sc = subscribe(&c, "news");
    let channels = [ChannelName::parse("news").unwrap()];
    a.broker.publish(
        &a.app,
        &PublishEvent {
            name: "e",
            data: "1",
            channels: &channels,
            except: Some(sc.socket_id()),
        },
    );
    for s in [&sa, &sb] {
        let got = wait_frames(s, "e").await;
        assert_eq!(got.iter().filter(|f| f["event"] == "e").count(), 1);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        frames(&sc).is_empty(),
        "the excluded socket on another node got it"
    );
    assert!(
        frames(&sa).is_empty() && frames(&sb).is_empty(),
        "delivered twice"
    );
}

#[tokio::test]
async fn presence_is_cluster_wide_and_a_dead_node_leaves_no_ghost() {
    let hub = MemoryHub::new();
    let (a, b) = (node(&hub, 1).await, node(&hub, 2).await);
    settle(&[&a, &b]).await;
    let (wa, _) = join_presence(&a, "presence-room", "watcher");
    // User u on node b.
    let (_u1, _) = join_presence(&b, "presence-room", "u");
    let added = wait_frames(&wa, "pusher_internal:member_added").await;
    assert_eq!(
        added
            .iter()
            .filter(|f| f["event"] == "pusher_internal:member_added")
            .count(),
        1
    );
    // A second socket of u on node a: the roster lists both users, nobody is told u joined again.
    let (_u2, roster) = join_presence(&a, "presence-room", "u");
    let data: Value = serde_json::from_str(roster[0]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["presence"]["count"], 2, "{data}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(frames(&wa)
        .iter()
        .all(|f| f["event"] != "pusher_internal:member_added"));
    // The API sees the union on either node.
    assert_eq!(b.broker.presence_user_ids(&b.app, "presence-room").len(), 2);
    let stats = b
        .broker
        .channel_stats(&b.app, &ChannelName::parse("presence-room").unwrap())
        .await
        .unwrap();
    assert_eq!((stats.subscription_count, stats.user_count), (3, Some(2)));

    // A third node with a member, then it dies without a word.
    let mut c = node(&hub, 3).await;
    settle(&[&a, &b, &c]).await;
    let (_g, _) = join_presence(&c, "presence-room", "ghost");
    wait_frames(&wa, "pusher_internal:member_added").await;
    hub.remove(3);
    c.stop.take();
    drop(c);
    let removed = wait_frames(&wa, "pusher_internal:member_removed").await;
    let r = removed
        .iter()
        .find(|f| f["event"] == "pusher_internal:member_removed")
        .unwrap();
    let d: Value = serde_json::from_str(r["data"].as_str().unwrap()).unwrap();
    assert_eq!(d["user_id"], "ghost");
}

#[tokio::test]
async fn occupancy_and_member_webhooks_are_decided_once_for_the_cluster() {
    let hub = MemoryHub::new();
    let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let a = node_with(&hub, 1, ra.clone()).await;
    let b = node_with(&hub, 2, rb.clone()).await;
    settle(&[&a, &b]).await;
    let (la, lb) = (
        a.broker.cluster().unwrap().clone(),
        b.broker.cluster().unwrap().clone(),
    );
    let sa = subscribe(&a, "orders");
    // Each step waits until the other node has heard of the previous one.
    wait_until(|| lb.remote_occupied("app-id", "orders")).await;
    let sb = subscribe(&b, "orders");
    let (pa, _) = join_presence(&a, "presence-p", "u");
    wait_until(|| lb.remote_has_member("app-id", "presence-p", "u")).await;
    let (pb, _) = join_presence(&b, "presence-p", "u");
    wait_until(|| {
        la.remote_has_member("app-id", "presence-p", "u") && la.remote_occupied("app-id", "orders")
    })
    .await;
    a.broker.disconnect(&sa);
    a.broker.disconnect(&pa);
    wait_until(|| {
        !lb.remote_occupied("app-id", "orders")
            && !lb.remote_has_member("app-id", "presence-p", "u")
    })
    .await;
    b.broker.disconnect(&sb);
    b.broker.disconnect(&pb);
    let mut all: Vec<String> = ra.0.lock().clone();
    all.extend(rb.0.lock().iter().cloned());
    all.sort();
    assert_eq!(
        all,
        [
            "added presence-p u",
            "occupied orders",
            "occupied presence-p",
            "removed presence-p u",
            "vacated orders",
            "vacated presence-p",
        ],
        "A: {:?} B: {:?}",
        ra.0.lock(),
        rb.0.lock()
    );
}

/// What lets a node void a leave it holds back: it hears, once, when a member or a channel
/// appears on another node while no other node had it (a second socket of the member there, or a
/// third node taking the channel too, says nothing new).
#[tokio::test]
async fn a_node_hears_when_a_member_or_channel_appears_elsewhere() {
    let hub = MemoryHub::new();
    let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let a = node_with(&hub, 1, ra.clone()).await;
    let b = node_with(&hub, 2, rb.clone()).await;
    let c = node(&hub, 3).await;
    settle(&[&a, &b, &c]).await;
    let lb = b.broker.cluster().unwrap().clone();
    let la = a.broker.cluster().unwrap().clone();
    let _sa = subscribe(&a, "orders");
    let (_pa, _) = join_presence(&a, "presence-p", "u");
    wait_until(|| lb.remote_has_member("app-id", "presence-p", "u")).await;
    let (_pa2, _) = join_presence(&a, "presence-p", "u");
    let _sc = subscribe(&c, "orders");
    let lc = c.broker.cluster().unwrap().clone();
    wait_until(|| lc.remote_occupied("app-id", "orders")).await;
    // B hears C's orders too before it is judged, through a query-free check: A sees C's.
    wait_until(|| la.remote_occupied("app-id", "orders")).await;
    let mut heard = rb.1.lock().clone();
    heard.sort();
    assert_eq!(
        heard,
        [
            "joined presence-p u",
            "occupied orders",
            "occupied presence-p"
        ],
        "B heard: {heard:?}"
    );
    assert!(
        ra.1.lock().contains(&"occupied orders".to_owned()),
        "A hears C's orders: {:?}",
        ra.1.lock()
    );
}

async fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not met within 2 s");
}

#[tokio::test]
async fn a_node_that_starts_late_replays_the_cache_of_the_others() {
    let hub = MemoryHub::new();
    let a = node(&hub, 1).await;
    let channels = [ChannelName::parse("cache-prices").unwrap()];
    a.broker.publish(
        &a.app,
        &PublishEvent {
            name: "price",
            data: "42",
            channels: &channels,
            except: None,
        },
    );
    let late = node(&hub, 2).await;
    settle(&[&a, &late]).await;
    let conn = late.broker.connect(late.app.clone()).unwrap();
    late.broker
        .subscribe(
            &conn,
            Subscribe {
                channel: channels[0].clone(),
                auth: None,
                channel_data: None,
                recover: None,
            },
        )
        .unwrap();
    let got = frames(&conn);
    assert_eq!(got[1]["event"], "price", "{got:?}");
    assert_eq!(got[1]["data"], "42");
}

#[tokio::test]
async fn a_draining_node_is_known_and_its_sockets_no_longer_count_against_quotas() {
    let hub = MemoryHub::default();
    let (a, b) = (node(&hub, 1).await, node(&hub, 2).await);
    settle(&[&a, &b]).await;
    let _held: Vec<_> = (0..3)
        .map(|_| a.broker.connect(a.app.clone()).unwrap())
        .collect();
    let link_b = b.broker.cluster().unwrap().clone();
    wait_until(|| link_b.remote_connections(&b.app.id) == 3).await;
    assert_eq!(link_b.draining_peers(), 0);

    a.broker.cluster().unwrap().announce_draining();
    wait_until(|| link_b.draining_peers() == 1).await;
    assert_eq!(link_b.remote_connections(&b.app.id), 0);
    // Still a peer: its members stay until it leaves.
    assert_eq!(link_b.peers(), vec![1]);
}

#[tokio::test]
async fn a_query_stops_waiting_for_a_node_that_dies_while_it_runs() {
    // A query timeout far above the node timeout: the query must end when the silent node is
    // declared dead, not when its own timeout passes.
    let settings = ClusterSettings {
        heartbeat_interval: Duration::from_millis(50),
        node_timeout: Duration::from_millis(300),
        query_timeout: Duration::from_secs(30),
        ..ClusterSettings::default()
    };
    let hub = MemoryHub::new();
    let a = node_with_settings(&hub, 1, Arc::new(Recorder::default()), settings.clone()).await;
    let b = node_with_settings(&hub, 2, Arc::new(Recorder::default()), settings.clone()).await;
    let mut c = node_with_settings(&hub, 3, Arc::new(Recorder::default()), settings).await;
    settle(&[&a, &b, &c]).await;
    let _sub_b = subscribe(&b, "asked");
    // c falls silent: it hears nothing and answers nothing, but a still counts it as a peer.
    hub.remove(3);
    c.stop.take();
    let stats = tokio::time::timeout(
        Duration::from_secs(10),
        a.broker
            .channel_stats(&a.app, &ChannelName::parse("asked").unwrap()),
    )
    .await
    .expect("the query ended once the silent node was declared dead, long before its timeout")
    .unwrap();
    assert_eq!(stats.subscription_count, 1, "b's answer was counted");
    assert_eq!(a.broker.cluster().unwrap().peers(), vec![2]);
}

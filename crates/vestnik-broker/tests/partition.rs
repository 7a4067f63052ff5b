//! A node stopped or cut off for longer than the node timeout, then back: the member and occupancy
//! events that become webhooks must tell a story that ends in the truth (issue 13, the chaos run's
//! finding). Three in-process nodes over a backbone this file controls: it can cut one node off,
//! telling its adapter (a dropped connection) or not (a silent partition), and each node's cluster
//! loop runs on its own single-threaded runtime, so blocking that thread stops the node the way
//! SIGSTOP does while the others go on.
#![allow(missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use vestnik_broker::adapter::{Adapter, AdapterEvent, Destination, NodeId};
use vestnik_broker::cluster::ClusterSettings;
use vestnik_broker::{App, Broker, BrokerConfig, BrokerEvent, ConnectionHandle, StaticAppStore};
use vestnik_protocol::auth::sign_channel;
use vestnik_protocol::message::Subscribe;
use vestnik_protocol::ChannelName;

const HEARTBEAT: Duration = Duration::from_millis(100);
const NODE_TIMEOUT: Duration = Duration::from_millis(600);
/// How long the victim stays stopped or cut off: well past the node timeout, as in the chaos run.
const FAULT: Duration = Duration::from_millis(2000);

/// A backbone that can cut one node off. A cut node's messages go nowhere and it hears nothing;
/// `noticed` says whether its adapter knows (a dropped connection: `Disconnected`, sends refused)
/// or not (a silent partition: sends accepted and lost).
#[derive(Clone, Default)]
struct Backbone(Arc<Mutex<Wires>>);

#[derive(Default)]
struct Wires {
    nodes: HashMap<NodeId, mpsc::Sender<AdapterEvent>>,
    /// Cut nodes, with whether their adapter noticed.
    cut: HashMap<NodeId, bool>,
}

struct Link {
    backbone: Backbone,
    node: NodeId,
    events: Mutex<Option<mpsc::Receiver<AdapterEvent>>>,
}

impl Backbone {
    fn adapter(&self, node: NodeId) -> Link {
        let (tx, rx) = mpsc::channel(1 << 16);
        tx.try_send(AdapterEvent::Connected).unwrap();
        self.0.lock().nodes.insert(node, tx);
        Link {
            backbone: self.clone(),
            node,
            events: Mutex::new(Some(rx)),
        }
    }

    fn cut(&self, node: NodeId, noticed: bool) {
        let mut w = self.0.lock();
        w.cut.insert(node, noticed);
        if noticed {
            w.nodes[&node].try_send(AdapterEvent::Disconnected).unwrap();
        }
    }

    fn heal(&self, node: NodeId) {
        let mut w = self.0.lock();
        if w.cut.remove(&node) == Some(true) {
            w.nodes[&node].try_send(AdapterEvent::Connected).unwrap();
        }
    }
}

impl Adapter for Link {
    fn name(&self) -> &'static str {
        "test-backbone"
    }

    fn send(&self, to: Destination, payload: Bytes) -> bool {
        let w = self.backbone.0.lock();
        if let Some(noticed) = w.cut.get(&self.node) {
            return !noticed;
        }
        let deliver = |tx: &mpsc::Sender<AdapterEvent>| {
            // A node that stopped has closed its queue; the queues are large enough for the rest.
            if let Err(mpsc::error::TrySendError::Full(_)) =
                tx.try_send(AdapterEvent::Message(payload.clone()))
            {
                panic!("the test backbone's queue is full");
            }
        };
        match to {
            // No interest routing here: a shard reaches every node, like All.
            Destination::All | Destination::Shard(_) => w
                .nodes
                .iter()
                .filter(|(id, _)| !w.cut.contains_key(id))
                .for_each(|(_, tx)| deliver(tx)),
            Destination::Node(id) => {
                if let (Some(tx), false) = (w.nodes.get(&id), w.cut.contains_key(&id)) {
                    deliver(tx);
                }
            }
        }
        true
    }

    fn events(&self) -> Option<mpsc::Receiver<AdapterEvent>> {
        self.events.lock().take()
    }

    fn is_connected(&self) -> bool {
        self.backbone.0.lock().cut.get(&self.node) != Some(&true)
    }
}

/// Every node's member and occupancy events, in the order they happened, with the reporting node.
type Log = Arc<Mutex<Vec<(NodeId, String)>>>;

struct Recorder {
    node: NodeId,
    log: Log,
}

impl vestnik_broker::EventSink for Recorder {
    fn on_event(&self, _app: &App, event: BrokerEvent<'_>) {
        let line = match event {
            BrokerEvent::ChannelOccupied { channel } => format!("occupied {channel}"),
            BrokerEvent::ChannelVacated { channel } => format!("vacated {channel}"),
            BrokerEvent::MemberAdded { channel, user_id } => format!("added {channel} {user_id}"),
            BrokerEvent::MemberRemoved { channel, user_id } => {
                format!("removed {channel} {user_id}")
            }
            _ => return,
        };
        self.log.lock().push((self.node, line));
    }
}

/// A node whose cluster loop runs on its own thread, so the test can stop that thread.
struct Node {
    id: NodeId,
    broker: Broker,
    app: Arc<App>,
    loop_rt: tokio::runtime::Handle,
    _stop: oneshot::Sender<()>,
}

impl Node {
    async fn start(backbone: &Backbone, id: NodeId, log: &Log) -> Node {
        let broker = Broker::with_events(
            Arc::new(StaticAppStore::new(vec![App::default()]).unwrap()),
            BrokerConfig::default(),
            Arc::new(Recorder {
                node: id,
                log: log.clone(),
            }),
        );
        let app = broker.apps().all()[0].clone();
        let settings = ClusterSettings {
            heartbeat_interval: HEARTBEAT,
            node_timeout: NODE_TIMEOUT,
            query_timeout: Duration::from_millis(500),
            ..ClusterSettings::default()
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (rt_tx, rt_rx) = oneshot::channel();
        let adapter = Arc::new(backbone.adapter(id));
        let cluster = broker.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let task = cluster.join_cluster(id, adapter, settings, async {
                    let _ = stop_rx.await;
                });
                let _ = rt_tx.send(tokio::runtime::Handle::current());
                task.await;
            });
        });
        let loop_rt = rt_rx.await.unwrap();
        assert!(
            broker
                .cluster()
                .unwrap()
                .ready(Duration::from_secs(5))
                .await
        );
        Node {
            id,
            broker,
            app,
            loop_rt,
            _stop: stop_tx,
        }
    }

    /// Stops the node's cluster loop for `d`, as SIGSTOP would; the receiver hears when it runs
    /// again.
    fn stop_for(&self, d: Duration) -> oneshot::Receiver<()> {
        self.loop_rt.spawn(async move { std::thread::sleep(d) });
        let (tx, rx) = oneshot::channel();
        self.loop_rt.spawn(async move {
            let _ = tx.send(());
        });
        rx
    }

    fn peers(&self) -> BTreeSet<NodeId> {
        self.broker.cluster().unwrap().peers().into_iter().collect()
    }

    fn roster(&self, channel: &str) -> BTreeSet<String> {
        self.broker
            .presence_user_ids(&self.app, channel)
            .into_iter()
            .map(|u| u.to_string())
            .collect()
    }

    fn subscribe(&self, channel: &str) -> ConnectionHandle {
        let conn = self.broker.connect(self.app.clone()).unwrap();
        self.broker
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
        conn
    }

    fn join(&self, channel: &str, user: &str) -> ConnectionHandle {
        let conn = self.broker.connect(self.app.clone()).unwrap();
        let cd = format!(r#"{{"user_id":"{user}"}}"#);
        let auth = sign_channel(
            &self.app.key,
            &self.app.secret,
            &conn.socket_id().to_string(),
            channel,
            Some(&cd),
        );
        self.broker
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
        conn
    }
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a receiver that mirrors webhooks believes: members per presence channel and occupied
/// channels, after applying every event in order.
fn mirror(log: &[(NodeId, String)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut members, mut occupied) = (BTreeSet::new(), BTreeSet::new());
    for (_, line) in log {
        let (kind, rest) = line.split_once(' ').unwrap();
        match kind {
            "added" => members.insert(rest.to_owned()),
            "removed" => members.remove(rest),
            "occupied" => occupied.insert(rest.to_owned()),
            "vacated" => occupied.remove(rest),
            other => unreachable!("{other}"),
        };
    }
    (members, occupied)
}

fn show(log: &[(NodeId, String)]) -> String {
    log.iter()
        .map(|(n, l)| format!("\n  node {n}: {l}"))
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The node's connection to the backbone drops; its adapter says so.
    Cut,
    /// The node is cut off without its adapter noticing.
    SilentCut,
    /// The node's process is stopped (its loop does not run); the backbone keeps its messages.
    Stop,
}

/// Three nodes with members; node 3 suffers `fault` for longer than the node timeout and comes
/// back. Returns the log of member and occupancy events.
async fn partition_story(fault: Fault) {
    let backbone = Backbone::default();
    let log: Log = Log::default();
    let n1 = Node::start(&backbone, 1, &log).await;
    let n2 = Node::start(&backbone, 2, &log).await;
    let n3 = Node::start(&backbone, 3, &log).await;
    let nodes = [&n1, &n2, &n3];
    let everyone_sees_everyone = || {
        nodes
            .iter()
            .all(|n| n.peers() == [1, 2, 3].into_iter().filter(|p| *p != n.id).collect())
    };
    wait_until("the nodes see each other", everyone_sees_everyone).await;

    let room = "presence-room";
    let _sockets = [
        n1.join(room, "u1"),
        n2.join(room, "u2"),
        n3.join(room, "u3"),
        // A user on a live node and on the victim: it never leaves the cluster.
        n2.join(room, "shared"),
        n3.join(room, "shared"),
        // A channel only the victim has.
        n3.subscribe("news-3"),
    ];
    let truth: BTreeSet<String> = ["u1", "u2", "u3", "shared"]
        .iter()
        .map(|u| format!("{room} {u}"))
        .collect();
    let users: BTreeSet<String> = ["u1", "u2", "u3", "shared"]
        .iter()
        .map(|u| u.to_string())
        .collect();
    let occupied: BTreeSet<String> = [room, "news-3"].iter().map(|c| c.to_string()).collect();
    wait_until("every node lists every member", || {
        nodes.iter().all(|n| n.roster(room) == users)
    })
    .await;
    wait_until("the webhooks say who is there", || {
        mirror(&log.lock()) == (truth.clone(), occupied.clone())
    })
    .await;

    let before_fault = log.lock().len();
    let written_off = || !n1.peers().contains(&3) && !n2.peers().contains(&3);
    match fault {
        Fault::Cut | Fault::SilentCut => {
            backbone.cut(3, matches!(fault, Fault::Cut));
            wait_until("the others wrote the victim off", written_off).await;
            // The rest of the outage: the victim's own clock runs well past the node timeout.
            tokio::time::sleep(FAULT.saturating_sub(NODE_TIMEOUT)).await;
            backbone.heal(3);
        }
        Fault::Stop => {
            let running_again = n3.stop_for(FAULT);
            wait_until("the others wrote the victim off", written_off).await;
            running_again.await.unwrap();
        }
    }

    wait_until("the nodes see each other again", everyone_sees_everyone).await;
    wait_until("every node lists every member again", || {
        nodes.iter().all(|n| n.roster(room) == users)
    })
    .await;
    let converged = async {
        while mirror(&log.lock()) != (truth.clone(), occupied.clone()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(5), converged)
        .await
        .is_err()
    {
        let log = log.lock();
        panic!(
            "{fault:?}: a receiver mirroring the webhooks believes {:?}, the cluster has {truth:?} \
             in {occupied:?}; events:{}",
            mirror(&log),
            show(&log)
        );
    }
    // Give a late wrong event its chance to show up: one node timeout more.
    tokio::time::sleep(NODE_TIMEOUT).await;
    let log = log.lock();
    assert_eq!(
        mirror(&log),
        (truth.clone(), occupied.clone()),
        "{fault:?}:{}",
        show(&log)
    );
    // Only what the victim had may come and go, and only as a removal put right by an addition:
    // members of live, connected nodes (and one the victim shared with a live node) never left.
    for (node, line) in &log[before_fault..] {
        let victims = [
            "removed presence-room u3",
            "added presence-room u3",
            "vacated news-3",
            "occupied news-3",
        ];
        assert!(
            victims.contains(&line.as_str()),
            "{fault:?}: node {node} reported `{line}` though nothing changed for it:{}",
            show(&log)
        );
    }
}

#[tokio::test]
async fn a_node_cut_off_past_the_timeout_comes_back_with_webhooks_that_end_in_the_truth() {
    partition_story(Fault::Cut).await;
}

#[tokio::test]
async fn a_node_cut_off_silently_does_not_judge_the_others_by_its_own_deafness() {
    partition_story(Fault::SilentCut).await;
}

#[tokio::test]
async fn a_node_stopped_past_the_timeout_does_not_write_off_the_others_on_waking() {
    partition_story(Fault::Stop).await;
}

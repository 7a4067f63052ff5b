//! The reconnect skew of a backbone restart, end to end: three brokers joined over a real backbone,
//! one of them reaching it through a [`CutProxy`] that holds it off after the restart, so it comes
//! back later than the others. What a node that is back relays meanwhile must still reach the late
//! node's sockets, exactly once and in order (issue 13: Redis pub/sub and core NATS keep nothing
//! for an absent subscriber, so the cluster layer replays it).
//!
//! The case takes a factory that connects a node's adapter to a URL; the Redis and NATS crates run
//! it against their own private server ([`BackboneServer`]), never the shared one, since it kills
//! the server. Every wait has a deadline and fails with what was seen.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use vestnik_broker::adapter::{Adapter, NodeId};
use vestnik_broker::cluster::ClusterSettings;
use vestnik_broker::{App, Broker, BrokerConfig, ConnectionHandle, PublishEvent, StaticAppStore};
use vestnik_protocol::message::Subscribe;
use vestnik_protocol::ChannelName;

use super::backbone::BackboneServer;
use super::{Backbone, RECONNECT_WAIT};

/// How many events the node that is back publishes while the late node is held off.
pub const SKEW_EVENTS: usize = 40;

/// A TCP proxy in front of a backbone that the test can cut: a cut closes every connection through
/// it and refuses new ones (accepted and closed at once) until it heals, the way a node's network
/// path to the backbone fails while the backbone itself is fine.
#[derive(Debug)]
pub struct CutProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    /// Bumped on every cut: each connection's task ends when it changes.
    generation: watch::Sender<u64>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("the loopback interface has a free port");
        let port = listener.local_addr().expect("a bound address").port();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (flag, gen) = (cut.clone(), generation.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if flag.load(Ordering::Acquire) {
                    continue; // dropped: the connection closes at once
                }
                let mut ended = gen.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = ended.changed() => {}
                    }
                });
            }
        });
        Self {
            port,
            cut,
            generation,
        }
    }

    /// The port to connect to instead of the backbone's.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::Release);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::Release);
    }
}

/// One broker of the case (and of [`super::routing`]), with its cluster loop's stop signal.
pub(super) struct SkewNode {
    pub(super) broker: Broker,
    pub(super) app: Arc<App>,
    _stop: oneshot::Sender<()>,
}

impl SkewNode {
    pub(super) async fn join(id: NodeId, adapter: Arc<dyn Adapter>) -> Self {
        let broker = Broker::new(
            Arc::new(StaticAppStore::new(vec![App::default()]).expect("the default app is valid")),
            BrokerConfig::default(),
        );
        let app = broker.apps().all()[0].clone();
        let settings = ClusterSettings {
            heartbeat_interval: Duration::from_millis(200),
            node_timeout: Duration::from_secs(3),
            query_timeout: Duration::from_millis(500),
            ..ClusterSettings::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(broker.join_cluster(id, adapter, settings, async {
            let _ = stopped.await;
        }));
        Self {
            broker,
            app,
            _stop: stop,
        }
    }

    pub(super) fn connected(&self) -> bool {
        self.broker.cluster().is_some_and(|c| c.is_connected())
    }

    pub(super) fn subscribe(&self, channel: &str) -> ConnectionHandle {
        let conn = self
            .broker
            .connect(self.app.clone())
            .expect("room for a socket");
        self.broker
            .subscribe(
                &conn,
                Subscribe {
                    channel: ChannelName::parse(channel).expect("a valid channel"),
                    auth: None,
                    channel_data: None,
                    recover: None,
                },
            )
            .expect("a public channel subscribes");
        conn
    }

    pub(super) fn publish(&self, channel: &str, data: &str) {
        let channels = [ChannelName::parse(channel).expect("a valid channel")];
        self.broker.publish(
            &self.app,
            &PublishEvent {
                name: "n",
                data,
                channels: &channels,
                except: None,
            },
        );
    }
}

/// The `data` of every `n` event a socket got so far, appended to `seen`.
pub(super) fn take_events(conn: &ConnectionHandle, seen: &mut Vec<String>) {
    let mut frames = VecDeque::new();
    conn.outbox().drain_now(&mut frames);
    for f in frames {
        let v: Value = serde_json::from_slice(&f).expect("frames are JSON");
        if v["event"] == "n" {
            seen.push(v["data"].as_str().unwrap_or_default().to_owned());
        }
    }
}

/// Waits until `cond` holds, polling every 20 ms, or fails with `what` after `limit`.
pub(super) async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Collects `conn`'s events until it has `want` of them (or the deadline), then returns them all.
async fn collect(conn: &ConnectionHandle, seen: &mut Vec<String>, want: usize, what: &str) {
    let deadline = Instant::now() + RECONNECT_WAIT;
    loop {
        take_events(conn, seen);
        if seen.len() >= want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {want} events within {RECONNECT_WAIT:?}: {seen:?}",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The case: nodes 1 and 2 reach `server` directly, node 3 through a [`CutProxy`]. Node 3 is cut
/// off, the server is killed and started again, nodes 1 and 2 reconnect, node 1 publishes
/// [`SKEW_EVENTS`] events (node 2's socket gets them: they really went out), and only then is node
/// 3 let through. Its socket must get every one of them, once, in order, and then a later event
/// once; node 2's socket the same. `url` is the URL of a server on `port` of the same kind.
pub async fn a_late_reconnect_after_a_restart_misses_nothing<F, Fut, A>(
    mut make: F,
    server: &mut BackboneServer,
) where
    F: FnMut(NodeId, String) -> Fut,
    Fut: Future<Output = Arc<A>>,
    A: Adapter,
{
    let proxy = CutProxy::start(server.port()).await;
    let direct = server.url();
    let through_proxy = direct.replace(
        &format!(":{}", server.port()),
        &format!(":{}", proxy.port()),
    );
    let a = SkewNode::join(1, make(1, direct.clone()).await).await;
    let b = SkewNode::join(2, make(2, direct).await).await;
    let c = SkewNode::join(3, make(3, through_proxy).await).await;
    let channel = "skew";
    let (on_b, on_c) = (b.subscribe(channel), c.subscribe(channel));
    let (mut seen_b, mut seen_c): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());

    // The cluster is up when an event from node 1 reaches both other nodes' sockets.
    let deadline = Instant::now() + RECONNECT_WAIT;
    let mut warm = 0;
    while !(seen_b.iter().any(|d| d.starts_with("warm"))
        && seen_c.iter().any(|d| d.starts_with("warm")))
    {
        assert!(
            Instant::now() < deadline,
            "the cluster never formed: {seen_b:?} {seen_c:?}"
        );
        a.publish(channel, &format!("warm {warm}"));
        warm += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        take_events(&on_b, &mut seen_b);
        take_events(&on_c, &mut seen_c);
    }
    // A mark after the warm-up: once both sockets have it, no warm-up event is still on its way.
    a.publish(channel, "mark");
    for (conn, seen) in [(&on_b, &mut seen_b), (&on_c, &mut seen_c)] {
        wait_for("the mark arrives", RECONNECT_WAIT, || {
            take_events(conn, seen);
            seen.iter().any(|d| d == "mark")
        })
        .await;
        seen.clear();
    }

    proxy.cut();
    wait_for("node 3 notices it is cut off", RECONNECT_WAIT, || {
        !c.connected()
    })
    .await;
    server.stop();
    wait_for("nodes 1 and 2 notice the restart", RECONNECT_WAIT, || {
        !a.connected() && !b.connected()
    })
    .await;
    server.start();
    wait_for("nodes 1 and 2 reconnect", RECONNECT_WAIT, || {
        a.connected() && b.connected()
    })
    .await;
    assert!(!c.connected(), "node 3 is still held off");

    let want: Vec<String> = (0..SKEW_EVENTS).map(|i| format!("e{i}")).collect();
    for data in &want {
        a.publish(channel, data);
    }
    collect(&on_b, &mut seen_b, want.len(), "node 2, connected").await;
    assert_eq!(seen_b, want, "node 2 got every event once, in order");

    proxy.heal();
    collect(&on_c, &mut seen_c, want.len(), "node 3, back late").await;
    assert_eq!(
        seen_c, want,
        "node 3, which reconnected after node 1 published, got every event once, in order"
    );

    // Later events still arrive once, and no repeat of the replay reaches a socket before them.
    let mut all = want.clone();
    for data in ["after", "end"] {
        a.publish(channel, data);
        all.push(data.into());
    }
    collect(&on_c, &mut seen_c, all.len(), "node 3, later events").await;
    collect(&on_b, &mut seen_b, all.len(), "node 2, later events").await;
    assert_eq!(seen_c, all, "node 3: no repeats");
    assert_eq!(seen_b, all, "node 2: no repeats");
    let lost = |n: &SkewNode| {
        n.broker
            .cluster()
            .map_or(0, |c| c.counters.lost.load(Ordering::Relaxed))
    };
    assert_eq!(
        lost(&c),
        0,
        "node 3 counted nothing lost: it got everything"
    );
}

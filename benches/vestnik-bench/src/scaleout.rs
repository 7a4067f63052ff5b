//! `scale-out`: N broker nodes (processes on this machine) on the run's own `redis-server` or
//! `nats-server`, each channel served by exactly one node (one socket there subscribed to it),
//! events triggered through the API of every node in turn as fast as `--concurrency` callers go.
//! Reports, per node, the channel event relays it received and those for channels it does not
//! serve (read from its `/metrics`), the backbone messages per publish, and the publish capacity
//! (API triggers per second, each delivered once to its channel's socket).
//!
//! With interest routing a publish costs one backbone delivery when the channel's node is not
//! the API's node and none when it is; with `--route-shards 0` (every relay to every node) it
//! costs N-1. The run writes only in a temporary work directory and stops only what it started.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{ApiConn, ApiTarget};
use crate::chaos::procs::{http_get, BackboneProc};
use crate::cli::ScaleOutArgs;
use crate::soak::nodes::SoakNode;
use crate::target::{App, Channels, Endpoint};

/// One node's figures.
#[derive(Debug, Serialize)]
pub struct NodeFigures {
    /// Node index.
    pub node: usize,
    /// Channels it serves.
    pub channels: usize,
    /// Events its socket received.
    pub delivered: u64,
    /// Channel event relays it received from the backbone.
    pub relays_received: u64,
    /// Of those, for channels it does not serve.
    pub relays_unserved: u64,
    /// Route shards it listens to.
    pub shards_listened: u64,
}

/// The run's figures.
#[derive(Debug, Serialize)]
pub struct ScaleOutReport {
    /// Backbone.
    pub adapter: String,
    /// Nodes.
    pub nodes: usize,
    /// Route shards (0: every relay to every node).
    pub route_shards: u32,
    /// Triggers answered 2xx.
    pub published: u64,
    /// Of those, sent to a node that does not serve the channel.
    pub published_remote: u64,
    /// Seconds of publishing.
    pub seconds: f64,
    /// Triggers per second.
    pub publish_per_sec: f64,
    /// Events delivered to the channels' sockets.
    pub delivered: u64,
    /// Channel event relays received by all nodes, per trigger.
    pub backbone_per_publish: f64,
    /// The same, per trigger sent to a node that does not serve its channel.
    pub backbone_per_remote_publish: f64,
    /// Per node.
    pub per_node: Vec<NodeFigures>,
}

impl ScaleOutReport {
    /// The plain-text table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "scale-out over {} with {} nodes, route_shards = {}\n\
             published {} triggers in {:.1} s: {:.0}/s; delivered {}\n\
             backbone relays per publish {:.3}, per publish to a non-serving node {:.3}\n\
             node  channels  delivered  relays_received  relays_unserved  shards_listened\n",
            self.adapter,
            self.nodes,
            self.route_shards,
            self.published,
            self.seconds,
            self.publish_per_sec,
            self.delivered,
            self.backbone_per_publish,
            self.backbone_per_remote_publish,
        );
        for n in &self.per_node {
            out += &format!(
                "{:>4}  {:>8}  {:>9}  {:>15}  {:>15}  {:>15}\n",
                n.node,
                n.channels,
                n.delivered,
                n.relays_received,
                n.relays_unserved,
                n.shards_listened
            );
        }
        out
    }
}

/// Node `i`'s channel `k`.
fn channel(i: usize, k: usize) -> String {
    format!("scale-{i}-{k}")
}

/// Writes the nodes' config: one app, the cluster on its own prefix, the route shards.
fn write_config(dir: &std::path::Path, app: &App, shards: u32) -> Result<std::path::PathBuf> {
    let text = format!(
        "# Written by vestnik-bench scale-out.\n[[apps]]\nid = \"{}\"\nkey = \"{}\"\nsecret = \"{}\"\n\n\
         [cluster]\nprefix = \"scaleout\"\nroute_shards = {shards}\n",
        app.id, app.key, app.secret
    );
    let path = dir.join("vestnik.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Opens one socket on `addr` subscribed to `channels`; counts the events it receives.
async fn subscriber(addr: SocketAddr, app: &App, channels: Vec<String>) -> Result<Arc<AtomicU64>> {
    let url = format!("ws://{addr}/app/{}?protocol=7&client=bench", app.key);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting {url}"))?;
    for c in &channels {
        let sub = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": c}});
        ws.send(Message::Text(sub.to_string().into())).await?;
    }
    let mut ok = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while ok < channels.len() {
        let next = tokio::time::timeout_at(deadline, ws.next()).await;
        match next {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("subscription_succeeded") => ok += 1,
            Ok(Some(Ok(_))) => {}
            _ => bail!("subscriptions on {addr} not confirmed in time"),
        }
    }
    let count = Arc::new(AtomicU64::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                if t.contains("\"scale\"") {
                    c.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(count)
}

/// Sums a metric over its label sets from Prometheus text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs the scenario.
pub async fn scale_out(args: &ScaleOutArgs, quiet: bool) -> Result<ScaleOutReport> {
    let say = |m: String| {
        if !quiet {
            eprintln!("scale-out: {m}");
        }
    };
    let n_nodes = usize::from(args.nodes.max(2));
    let work = std::env::temp_dir().join(format!("vestnik-scaleout-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let bin = std::fs::canonicalize(&args.vestnik_bin)
        .with_context(|| format!("broker binary {}", args.vestnik_bin.display()))?;
    let app = App {
        id: "scale-app".into(),
        key: "scale-key".into(),
        secret: "scale-secret".into(),
    };
    let config = write_config(&work, &app, args.route_shards)?;
    let backbone = BackboneProc::start(args.adapter, &work).await?;
    say(format!("{:?} on {}", args.adapter, backbone.addr));
    let mut nodes = Vec::new();
    for i in 0..n_nodes {
        let node =
            SoakNode::start(i, &bin, &config, Some((args.adapter, backbone.addr)), &work).await?;
        say(format!("node {i} on {} (pid {})", node.addr, node.pid));
        nodes.push(node);
    }
    let per = args.channels.max(1);
    let mut counts = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let list = (0..per).map(|k| channel(i, k)).collect();
        counts.push(subscriber(node.addr, &app, list).await?);
    }
    // Every (channel, its node) pair; publishes go to the API of each node in turn.
    let all: Arc<Vec<(String, usize)>> = Arc::new(
        (0..n_nodes)
            .flat_map(|i| (0..per).map(move |k| (channel(i, k), i)))
            .collect(),
    );
    let apis: Vec<Arc<ApiTarget>> = nodes
        .iter()
        .map(|n| {
            Ok(Arc::new(ApiTarget {
                endpoint: Endpoint::parse(&format!("http://{}", n.addr), &["http"], false)?,
                app: app.clone(),
                channels: Channels::new(1, false),
                pad: String::new(),
            }))
        })
        .collect::<Result<_>>()?;
    let published = Arc::new(AtomicU64::new(0));
    let remote = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut workers = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (all, apis) = (all.clone(), apis.clone());
        let (published, remote, next) = (published.clone(), remote.clone(), next.clone());
        let path = format!("/apps/{}/events", app.id);
        workers.push(tokio::spawn(async move {
            let mut conns: Vec<ApiConn> = apis.iter().cloned().map(ApiConn::new).collect();
            while Instant::now() < end {
                let j = next.fetch_add(1, Ordering::Relaxed) as usize;
                let (name, owner) = &all[j % all.len()];
                let via = (j / all.len() + j) % conns.len();
                let body = serde_json::json!({"name": "scale", "channel": name, "data": "x"});
                let body = Bytes::from(body.to_string());
                if conns[via].post(&path, body).await.is_ok() {
                    published.fetch_add(1, Ordering::Relaxed);
                    if via != *owner {
                        remote.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let published = published.load(Ordering::Relaxed);
    let delivered = || {
        counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while delivered() < published && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The metrics are rendered on scrape; the counters are final once delivery is.
    let mut per_node = Vec::new();
    let mut scraped: HashMap<usize, String> = HashMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let (_, text) = http_get(node.metrics, "/metrics").await?;
        scraped.insert(i, text);
    }
    for (i, count) in counts.iter().enumerate() {
        let text = &scraped[&i];
        per_node.push(NodeFigures {
            node: i,
            channels: per,
            delivered: count.load(Ordering::Relaxed),
            relays_received: metric(text, "vestnik_cluster_relays_received_total"),
            relays_unserved: metric(text, "vestnik_cluster_relays_unserved_total"),
            shards_listened: metric(text, "vestnik_cluster_route_shards_listened"),
        });
    }
    for node in &mut nodes {
        node.stop();
    }
    drop(backbone);
    let _ = std::fs::remove_dir_all(&work);
    let relays: u64 = per_node.iter().map(|n| n.relays_received).sum();
    let remote = remote.load(Ordering::Relaxed);
    Ok(ScaleOutReport {
        adapter: format!("{:?}", args.adapter),
        nodes: n_nodes,
        route_shards: args.route_shards,
        published,
        published_remote: remote,
        seconds,
        publish_per_sec: published as f64 / seconds,
        delivered: delivered(),
        backbone_per_publish: relays as f64 / published.max(1) as f64,
        backbone_per_remote_publish: relays as f64 / remote.max(1) as f64,
        per_node,
    })
}

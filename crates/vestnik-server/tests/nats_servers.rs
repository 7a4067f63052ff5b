//! Interest routing on a NATS cluster of several servers (issue 16; docs/scaling.md "Interest
//! routing"): a server tells the others of a subscription asynchronously, over its routes. Here the
//! route between the two servers runs through a proxy that delays every byte by [`ROUTE_DELAY`],
//! so the other server learns of a node's new route shard long after the node's own server
//! confirmed it. Node B (on server 2) subscribes to a fresh channel; the moment the client sees
//! `subscription_succeeded`, an event is triggered through node A (on server 1). The event must
//! arrive: the subscribe waits until every live node answered a query sent after the shard was
//! subscribed, which proves their servers know the interest.
//!
//! Two real `nats-server` processes on free ports (never the shared one), two real brokers.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// How long the proxy holds every chunk of the route between the two servers.
const ROUTE_DELAY: Duration = Duration::from_millis(300);

/// Fresh channels tried, each in a route shard nobody listened to before.
const CHANNELS: usize = 8;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn nats_server_bin() -> String {
    if let Ok(bin) = std::env::var("VESTNIK_NATS_SERVER") {
        return bin;
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| format!("{d}/nats-server"))
        .find(|p| std::path::Path::new(p).exists());
    on_path.unwrap_or_else(|| "/usr/sbin/nats-server".into())
}

/// A `nats-server` killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nats_server(client: u16, monitor: u16, cluster: u16, routes: Option<u16>) -> Server {
    let mut cmd = Command::new(nats_server_bin());
    cmd.args(["-a", "127.0.0.1", "-p", &client.to_string()])
        .args(["-m", &monitor.to_string()])
        .args(["--cluster_name", "vestnik-test"])
        .args(["--cluster", &format!("nats://127.0.0.1:{cluster}")]);
    if let Some(r) = routes {
        cmd.args(["--routes", &format!("nats://127.0.0.1:{r}")]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server (apt-get install nats-server)");
    Server(child)
}

/// Forwards `from` to `to`, each chunk [`ROUTE_DELAY`] after it was read, in order.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let at = tokio::time::Instant::now() + ROUTE_DELAY;
                if tx.send((at, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A TCP proxy to `upstream` that delays both directions; returns its port.
async fn delaying_proxy(upstream: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(delayed_copy(ir, ow));
            tokio::spawn(delayed_copy(or, iw));
        }
    });
    port
}

/// The number of routes a server's monitoring port lists.
async fn routes(monitor: u16) -> u64 {
    if TcpStream::connect(("127.0.0.1", monitor)).await.is_err() {
        return 0; // not listening yet
    }
    let r = raw_http(monitor, "GET", "/routez", "").await;
    serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["num_routes"].as_u64())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_subscribe_waits_until_the_other_servers_know_its_route_shard() {
    let (c1, m1, k1) = (free_port(), free_port(), free_port());
    let (c2, m2, k2) = (free_port(), free_port(), free_port());
    let _s1 = nats_server(c1, m1, k1, None);
    let proxy = delaying_proxy(k1).await;
    let _s2 = nats_server(c2, m2, k2, Some(proxy));
    wait_until(
        "the two NATS servers routed",
        Duration::from_secs(15),
        || async { routes(m1).await >= 1 && routes(m2).await >= 1 },
    )
    .await;

    let prefix = format!("vestnik-servers-{}", std::process::id());
    let node = |port: u16| {
        format!(
            "[server]\nmetrics_port = 0\n[cluster]\nadapter = \"nats\"\n\
             nats_url = \"nats://127.0.0.1:{port}\"\nprefix = \"{prefix}\"\n\
             heartbeat_interval_ms = 200\n{APPS}"
        )
    };
    let a = BrokerProcess::spawn(bin(), &node(c1));
    let b = BrokerProcess::spawn(bin(), &node(c2));
    let (ma, mb) = (metrics_port(&a).await, metrics_port(&b).await);
    wait_until(
        "each node hears the other",
        Duration::from_secs(15),
        || async {
            let peers = |body: String| sample(&body, "vestnik_cluster_peers", &[]).unwrap_or(0.0);
            peers(scrape(ma).await) >= 1.0 && peers(scrape(mb).await) >= 1.0
        },
    )
    .await;

    let api_a = api(&a);
    let mut on_b = WsClient::connect(&b.ws_url(KEY)).await;
    let mut missed = Vec::new();
    for i in 0..CHANNELS {
        let channel = format!("fresh-{i}");
        let started = Instant::now();
        let ok = on_b.subscribe(json!({ "channel": channel })).await;
        assert_eq!(
            ok["event"], "pusher_internal:subscription_succeeded",
            "{ok}"
        );
        let waited = started.elapsed();
        assert_eq!(
            api_a.trigger(&[&channel], "e", &i.to_string()).await.status,
            200
        );
        // The event comes within a few route delays, or it was dropped by server 1.
        let deadline = tokio::time::Instant::now() + ROUTE_DELAY * 6;
        let mut got = false;
        while let Some(Received::Json(v)) = on_b
            .recv_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
        {
            if v["event"] == "e" && v["channel"] == channel.as_str() {
                got = true;
                break;
            }
        }
        if !got {
            missed.push((channel, waited));
        }
    }
    assert!(
        missed.is_empty(),
        "events published through the other server right after subscription_succeeded were lost \
         (channel, how long the subscribe waited): {missed:?}"
    );
}

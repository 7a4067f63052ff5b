//! `vestnik-bench chaos`: a cluster of real broker nodes on a backbone of its own, numbered events
//! published at a steady rate, faults injected at seeded random moments, and an exact account of
//! what the sockets connected throughout received, what presence and the webhooks say once the
//! faults have settled, and what the nodes' memory and descriptors did.
//!
//! This module runs the experiment and gathers figures; the accounting is pure and lives in
//! [`ledger`] and [`roster`], the verdict in [`report`]. It only starts, signals and stops
//! processes it started itself (by their pid), binds only loopback ports it picked, and writes only
//! under its temporary work directory.
//!
//! # Layout
//! - [`schedule`]: the seeded fault schedule.
//! - [`ledger`]: delivered, lost, duplicated, out of order; outage windows.
//! - [`roster`]: ghosts, missing members, webhook losses and duplicates.
//! - [`procs`]: the backbone and the nodes as processes; `/metrics`, `/proc`.
//! - [`proxy`]: the cuttable TCP proxy between a node and the backbone.
//! - [`inject`]: the rig the faults act on, and carrying each fault out.
//! - [`client`]: the sockets; [`webhook`]: the webhook receiver.
//! - [`report`]: figures, table, JSON, verdict.

pub mod client;
mod inject;
pub mod ledger;
pub mod procs;
pub mod proxy;
pub mod report;
pub mod roster;
pub mod schedule;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiConn, ApiTarget};
use crate::cli::{secs, ChaosArgs};
use crate::clock;
use crate::target::{App, Channels, Endpoint};
use client::{Dial, Sock, CHAOS_EVENT, PRESENCE_CHANNEL};
use inject::{inject, Rig};
use ledger::{Published, StreamRecord};
use procs::{http_get, parse_scrape, BackboneProc, Footprint, NodeProc, NodeSpec};
use proxy::Proxy;
use report::{ChaosReport, NodeFigures};
use schedule::{FaultKind, Plan};

/// Quiet time before the first fault.
const WARMUP: Duration = Duration::from_secs(3);
/// Time after a node fault before the next may start.
const RECOVERY: Duration = Duration::from_secs(4);
/// An outage window starts this long before its fault: relays accepted just before a cut or a kill
/// may still sit in the adapter's queue or in a pipeline that dies with the connection.
const OUTAGE_LEAD: Duration = Duration::from_millis(1000);
/// How often each node's `/metrics` is read.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);
/// Wait after publishing ends for the last deliveries.
const DRAIN: Duration = Duration::from_secs(3);
/// The nodes' webhook hold (`[webhooks] hold_ms`), short so the run settles sooner.
const HOOK_HOLD: Duration = Duration::from_millis(1000);
/// Longest wait for every socket to be subscribed again, or a node to reconnect.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for a slow reader's fate.
const SLOW_READER_WAIT: Duration = Duration::from_secs(5);

/// Runs the chaos scenario: the report, already judged.
pub async fn chaos(args: &ChaosArgs, quiet: bool) -> Result<(ChaosReport, PathBuf)> {
    let seed = args
        .seed
        .unwrap_or_else(|| clock::unix_secs() ^ u64::from(std::process::id()));
    let duration = secs(args.duration);
    let nodes = usize::from(args.nodes);
    let node_timeout = Duration::from_millis(args.node_timeout_ms);
    let plan = Plan {
        classes: args.faults.clone(),
        duration,
        nodes,
        node_timeout,
        warmup: WARMUP,
        recovery: RECOVERY,
    };
    let faults = schedule::schedule(seed, &plan);
    let say = |m: String| {
        if !quiet {
            eprintln!("chaos: {m}");
        }
    };
    say(format!(
        "seed {seed} ({} faults planned; repeat with --seed {seed})",
        faults.len()
    ));

    let work = std::env::temp_dir().join(format!("vestnik-chaos-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    say(format!("work directory {}", work.display()));
    let bin = std::fs::canonicalize(&args.vestnik_bin).with_context(|| {
        format!(
            "broker binary {} (build it, or pass --vestnik-bin / VESTNIK_BIN)",
            args.vestnik_bin.display()
        )
    })?;

    let app = App {
        id: "chaos-app".into(),
        key: "chaos-key".into(),
        secret: format!("chaos-secret-{seed:016x}"),
    };
    let receiver = webhook::Receiver::start(app.secret.clone()).await?;
    let backbone = BackboneProc::start(args.adapter, &work).await?;
    say(format!("{:?} on {}", args.adapter, backbone.addr));
    let mut proxies = Vec::new();
    for _ in 0..nodes {
        proxies.push(Proxy::start(backbone.addr).await?);
    }
    let config = write_config(&work, &app, &receiver.url, node_timeout)?;
    let spec = NodeSpec {
        bin,
        config,
        backbone: args.adapter,
    };
    let mut procs = Vec::new();
    for (i, p) in proxies.iter().enumerate() {
        let n = NodeProc::start(i, &spec, p.addr, &work).await?;
        say(format!("node {i} on {} (pid {:?})", n.addr, n.pid()));
        procs.push(n);
    }
    let dial = Arc::new(Dial {
        nodes: procs.iter().map(|n| format!("ws://{}", n.addr)).collect(),
        app: app.clone(),
        channels: args.channels.max(1),
    });
    let api_targets: Vec<Arc<ApiTarget>> = procs
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
    let socks: Vec<Arc<Sock>> = (0..nodes)
        .flat_map(|n| (0..args.sockets_per_node).map(move |i| Arc::new(Sock::new(n, i))))
        .collect();
    let rig = Arc::new(Rig {
        metrics: procs.iter().map(|n| n.metrics).collect(),
        nodes: procs.into_iter().map(AsyncMutex::new).collect(),
        proxies,
        backbone: AsyncMutex::new(backbone),
        socks,
        dial: Arc::clone(&dial),
        slow: AsyncMutex::new(Vec::new()),
        outages: Mutex::new(Vec::new()),
        log: Mutex::new(Vec::new()),
        isolated: Mutex::new(BTreeSet::new()),
        start_us: AtomicU64::new(0),
        node_timeout,
        relay_hold: Duration::from_millis(args.relay_hold_ms),
    });

    // Sockets, all subscribed before anything is published.
    let stop_socks = CancellationToken::new();
    for s in &rig.socks {
        tokio::spawn(client::run(
            Arc::clone(s),
            Arc::clone(&dial),
            stop_socks.clone(),
        ));
    }
    wait_all_live(&rig.socks)
        .await
        .context("opening the sockets")?;
    say(format!("{} sockets subscribed", rig.socks.len()));
    let before = footprints(&rig).await;

    // The adapter counters, summed over each node's incarnations.
    let stop_scrape = CancellationToken::new();
    let lost_counters = Arc::new(Mutex::new(vec![(0u64, 0u64); nodes]));
    tokio::spawn(scrape_loop(
        rig.metrics.clone(),
        Arc::clone(&lost_counters),
        stop_scrape.clone(),
    ));

    // Publishers: one stream per channel per node.
    rig.start_us.store(clock::now_us(), Ordering::Relaxed);
    let stop_pub = CancellationToken::new();
    let streams_n = nodes * dial.channels;
    let interval = Duration::from_secs_f64(streams_n as f64 / args.rate.max(0.1));
    let mut publishers = Vec::new();
    for (n, target) in api_targets.iter().enumerate() {
        for c in 0..dial.channels {
            let id = u32::try_from(n * dial.channels + c).unwrap_or(u32::MAX);
            publishers.push(tokio::spawn(publish(
                id,
                n,
                client::event_channel(c),
                Arc::clone(target),
                interval,
                stop_pub.clone(),
            )));
        }
    }
    say(format!(
        "publishing {} events/s over {streams_n} streams for {duration:?}",
        args.rate
    ));

    let mut fault_tasks = Vec::new();
    for f in &faults {
        let (rig, f) = (Arc::clone(&rig), *f);
        fault_tasks.push(tokio::spawn(async move {
            tokio::time::sleep(f.at).await;
            if let Err(e) = inject(&rig, f).await {
                eprintln!("chaos: fault {:?} failed: {e:#}", f.kind);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop_pub.cancel();
    let mut streams = Vec::new();
    for p in publishers {
        streams.push(p.await.context("a publisher panicked")?);
    }
    for t in fault_tasks {
        t.await.context("a fault task panicked")?;
    }
    say("publishing over; draining and settling".into());
    tokio::time::sleep(DRAIN).await;
    wait_all_live(&rig.socks)
        .await
        .context("sockets reconnecting after the faults")?;
    let settle = node_timeout + HOOK_HOLD + Duration::from_secs(3);
    tokio::time::sleep(settle).await;

    // Presence and webhooks after the settle time.
    let truth: BTreeSet<String> = rig
        .socks
        .iter()
        .filter(|s| s.role.is_member() && s.state.lock().live)
        .map(|s| s.user_id.clone())
        .collect();
    let mut answers = Vec::new();
    for n in &rig.nodes {
        let addr = n.lock().await.addr;
        answers.push(users(addr, &app).await.ok());
    }
    let presence = roster::compare(&truth, &answers);
    let mut occupied: BTreeSet<String> = (0..dial.channels).map(client::event_channel).collect();
    if !truth.is_empty() {
        occupied.insert(PRESENCE_CHANNEL.to_owned());
    }
    let members = BTreeMap::from([(PRESENCE_CHANNEL.to_owned(), truth.clone())]);
    let (hooks, bad_signatures) = {
        let r = receiver.received.lock();
        let lines: Vec<String> = r
            .hooks
            .iter()
            .map(|h| {
                format!(
                    "{} {} {} {}",
                    h.id,
                    h.name,
                    h.channel,
                    h.user_id.as_deref().unwrap_or("-")
                )
            })
            .collect();
        let _ = std::fs::write(work.join("webhooks.txt"), lines.join("\n") + "\n");
        (
            roster::check_hooks(&r.hooks, &members, &occupied),
            r.bad_signatures,
        )
    };

    // Slow readers' fate, then the footprints with the run's sockets still open.
    let mut slow = std::mem::take(&mut *rig.slow.lock().await);
    let slow_readers = slow.len();
    let mut slow_closed = 0;
    for s in &mut slow {
        if s.closed_by_broker(SLOW_READER_WAIT).await {
            slow_closed += 1;
        }
    }
    drop(slow);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = footprints(&rig).await;
    stop_scrape.cancel();

    // Who stayed connected throughout: one open, no close, on a node no fault isolated.
    let isolated = rig.isolated.lock().clone();
    let throughout: Vec<SocketSnapshot> = rig
        .socks
        .iter()
        .filter(|s| !isolated.contains(&s.node))
        .filter_map(|s| {
            let st = s.state.lock();
            (st.opens == 1 && st.closes == 0 && st.live).then(|| SocketSnapshot(st.log.clone()))
        })
        .collect();
    let logs: Vec<&ledger::SocketLog> = throughout.iter().map(|s| &s.0).collect();
    let outages = rig.outages.lock().clone();
    let delivery = ledger::account(
        &streams,
        &logs,
        &outages,
        rig.start_us.load(Ordering::Relaxed),
    );
    let counters = lost_counters.lock().clone();
    let adapter_lost_total: u64 = counters.iter().map(|(base, last)| base + last).sum();

    let mut node_figs = Vec::new();
    for (i, n) in rig.nodes.iter().enumerate() {
        node_figs.push(NodeFigures {
            node: i,
            incarnations: n.lock().await.incarnations,
            before: before[i],
            after: after[i],
            adapter_lost: counters[i].0 + counters[i].1,
        });
    }
    stop_socks.cancel();
    receiver.stop();
    for n in &rig.nodes {
        n.lock().await.terminate();
    }
    for p in &rig.proxies {
        p.stop();
    }
    rig.backbone.lock().await.kill();

    let mut faults_log = rig.log.lock().clone();
    faults_log.sort_by(|a, b| a.started_s.total_cmp(&b.started_s));
    let mut report = ChaosReport {
        scenario: "chaos",
        adapter: args.adapter,
        seed,
        duration_s: duration.as_secs_f64(),
        rate: args.rate,
        relay_hold_ms: args.relay_hold_ms,
        a_node_was_killed: faults
            .iter()
            .any(|f| matches!(f.kind, FaultKind::KillNode { .. })),
        faults: faults_log,
        sockets: rig.socks.len(),
        lost_counters_agree: adapter_lost_total >= delivery.events_lost_in_outage,
        delivery,
        adapter_lost_total,
        presence,
        members: truth.len(),
        webhooks: hooks,
        webhook_bad_signatures: bad_signatures,
        slow_readers,
        slow_readers_closed: slow_closed,
        nodes: node_figs,
        violations: Vec::new(),
    };
    report.judge();
    if report.violations.is_empty() && !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok((report, work))
}

/// A socket's log, copied out of its lock.
struct SocketSnapshot(ledger::SocketLog);

/// Waits until every socket is subscribed.
async fn wait_all_live(socks: &[Arc<Sock>]) -> Result<()> {
    let deadline = tokio::time::Instant::now() + RECONNECT_TIMEOUT;
    loop {
        let down: Vec<String> = socks
            .iter()
            .filter(|s| !s.state.lock().live)
            .map(|s| {
                format!(
                    "{} ({})",
                    s.user_id,
                    s.state.lock().last_close.clone().unwrap_or_default()
                )
            })
            .collect();
        if down.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!(
                "{} sockets not subscribed in time: {}",
                down.len(),
                down.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn footprints(rig: &Rig) -> Vec<Footprint> {
    let mut out = Vec::new();
    for n in &rig.nodes {
        let pid = n.lock().await.pid();
        out.push(
            pid.and_then(|p| Footprint::read(p).ok())
                .unwrap_or_default(),
        );
    }
    out
}

/// Reads every node's `vestnik_adapter_lost_total` until `stop`; `(base, last)` per node, where a
/// drop in the counter (a restarted node) moves the last value into the base.
async fn scrape_loop(
    metrics: Vec<std::net::SocketAddr>,
    counters: Arc<Mutex<Vec<(u64, u64)>>>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        for (i, m) in metrics.iter().enumerate() {
            if let Ok((200, body)) = http_get(*m, "/metrics").await {
                let lost = parse_scrape(&body).adapter_lost;
                let mut c = counters.lock();
                let (base, last) = &mut c[i];
                if lost < *last {
                    *base += *last;
                }
                *last = lost;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(SCRAPE_EVERY) => {}
        }
    }
}

/// One publisher: numbered events on `channel` through node `node`, one call at a time, every
/// `interval`, until `stop`.
async fn publish(
    id: u32,
    node: usize,
    channel: String,
    target: Arc<ApiTarget>,
    interval: Duration,
    stop: CancellationToken,
) -> StreamRecord {
    let mut conn = ApiConn::new(Arc::clone(&target));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let path = format!("/apps/{}/events", target.app.id);
    let mut published = Vec::new();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let data = format!(r#"{{"s":{id},"q":{seq}}}"#);
        let body = serde_json::json!({"name": CHAOS_EVENT, "channel": channel, "data": data});
        let sent_us = clock::now_us();
        let ok = conn
            .post(&path, Bytes::from(body.to_string()))
            .await
            .is_ok();
        published.push(Published {
            seq,
            sent_us,
            answered_us: clock::now_us(),
            accepted: ok,
        });
        seq += 1;
    }
    StreamRecord {
        id,
        node,
        published,
    }
}

/// The users of the presence channel as node `addr` lists them.
async fn users(addr: std::net::SocketAddr, app: &App) -> Result<BTreeSet<String>> {
    let path = format!("/apps/{}/channels/{PRESENCE_CHANNEL}/users", app.id);
    let query = vestnik_protocol::auth::sign_request(
        &app.key,
        &app.secret,
        "GET",
        &path,
        &[],
        b"",
        clock::unix_secs(),
    );
    let (status, body) = http_get(addr, &format!("{path}?{query}")).await?;
    anyhow::ensure!(status == 200, "users: status {status}: {body}");
    #[derive(serde::Deserialize)]
    struct User {
        id: String,
    }
    #[derive(serde::Deserialize)]
    struct Users {
        users: Vec<User>,
    }
    let u: Users = serde_json::from_str(&body)?;
    Ok(u.users.into_iter().map(|u| u.id).collect())
}

/// Writes the nodes' shared config file: the app with its webhook target, the cluster timings.
fn write_config(dir: &Path, app: &App, hook_url: &str, node_timeout: Duration) -> Result<PathBuf> {
    let heartbeat = (node_timeout.as_millis() / 4).max(100);
    let text = format!(
        r#"# Written by vestnik-bench chaos.
[[apps]]
id = "{id}"
key = "{key}"
secret = "{secret}"
max_presence_members = 1000

[[apps.webhooks]]
url = "{hook_url}"
event_types = ["channel_occupied", "channel_vacated", "member_added", "member_removed"]

[cluster]
prefix = "chaos"
heartbeat_interval_ms = {heartbeat}
node_timeout_ms = {timeout}

[webhooks]
hold_ms = {hold}
batch_ms = 100
retry_initial_ms = 200
retry_max_ms = 2000
"#,
        id = app.id,
        key = app.key,
        secret = app.secret,
        timeout = node_timeout.as_millis(),
        hold = HOOK_HOLD.as_millis(),
    );
    let path = dir.join("vestnik.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

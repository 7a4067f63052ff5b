//! `vestnik-bench recovery`: clients cut and reconnected in a loop while events flow, each coming
//! back with `recover` (the broker's channel history, docs/recovery.md). It reports the events
//! lost and repeated (both must be 0), how recoveries ended and how long they took.
//!
//! The run: `--sockets` sockets on `--channels` public channels (socket i on channel i % C)
//! subscribe; then numbered events are triggered over the API at `--rate` events a second, round
//! robin over the channels, one call at a time on one keep-alive connection (so each channel's
//! events are published in sequence order). Meanwhile every socket is cut at random moments
//! (uniform from 0 to twice `--cut-every`), stays away (0 to twice `--away`) and resubscribes with
//! the last position it saw. After `--duration` the cuts stop, the publisher stops, and the run
//! waits (up to `--drain`) for every socket to be back and to hold every event of its channel.
//! Each socket is owed every event its channel was sent with a 2xx answer.
//!
//! Exits 2 when an event was lost or repeated, a recovery failed, or a socket was not back.

pub mod client;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiConn, ApiTarget, BenchEvent};
use crate::cli::{pick, secs, RecoveryArgs};
use crate::target::{App, Channels, Endpoint};

use client::{Dial, Sock, SockLog};
pub use report::RecoveryReport;

/// How often the drain looks at the sockets.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The run's settings after defaults.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sockets.
    pub sockets: usize,
    /// Channels.
    pub channels: usize,
    /// Events per second, over all channels.
    pub rate: f64,
    /// How long events flow and sockets are cut.
    pub duration: Duration,
    /// Mean time between two cuts of a socket.
    pub cut_every: Duration,
    /// Mean time a cut socket stays away.
    pub away: Duration,
    /// Longest wait for every socket to be back with every event.
    pub drain: Duration,
    /// Seed of the cuts.
    pub seed: u64,
}

impl Plan {
    /// The plan from the command line (`smoke`: a few seconds on a few sockets).
    pub fn of(a: &RecoveryArgs, smoke: bool) -> Self {
        Self {
            sockets: pick(a.sockets, smoke, 200, 20).max(1),
            channels: pick(a.channels, smoke, 10, 2).max(1),
            rate: pick(a.rate, smoke, 200.0, 50.0).max(0.1),
            duration: secs(pick(a.duration, smoke, 20.0, 3.0)),
            cut_every: secs(pick(a.cut_every, smoke, 2.0, 0.5)),
            away: secs(pick(a.away, smoke, 0.3, 0.1)),
            drain: secs(a.drain),
            seed: a.seed.unwrap_or_else(crate::clock::now_us),
        }
    }
}

/// Runs the recovery scenario against `ws` and `http` (one broker, or two nodes' addresses).
pub async fn recovery(
    plan: Plan,
    ws: &str,
    http: &str,
    app: App,
    allow_remote: bool,
    quiet: bool,
) -> Result<RecoveryReport> {
    let say = |msg: String| {
        if !quiet {
            eprintln!("recovery: {msg}");
        }
    };
    let channels = Channels::new(plan.channels, false);
    let ws_end = Endpoint::parse(ws, &["ws", "http"], allow_remote)?;
    let api = Arc::new(ApiTarget {
        endpoint: Endpoint::parse(http, &["http", "ws"], allow_remote)?,
        app: app.clone(),
        channels: channels.clone(),
        pad: String::new(),
    });
    let dial = Arc::new(Dial {
        url: format!(
            "ws://{}/app/{}?protocol=7&client=vestnik-bench-recovery&version=1.0",
            ws_end.authority, app.key
        ),
        channels: (0..plan.channels).map(|c| channels.name(c)).collect(),
        cut_every: plan.cut_every,
        away: plan.away,
    });
    let socks: Vec<Arc<Sock>> = (0..plan.sockets)
        .map(|i| {
            Arc::new(Sock {
                channel: i % plan.channels,
                log: Mutex::new(SockLog::default()),
            })
        })
        .collect();
    let cutting = CancellationToken::new();
    let stop = CancellationToken::new();
    let mut tasks = Vec::with_capacity(socks.len());
    for (i, sock) in socks.iter().enumerate() {
        tasks.push(tokio::spawn(client::run(
            Arc::clone(sock),
            Arc::clone(&dial),
            cutting.clone(),
            stop.clone(),
            plan.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )));
    }
    say(format!(
        "{} sockets subscribing to {} channels",
        plan.sockets, plan.channels
    ));
    // Cuts start at once, but events flow only once every socket was subscribed once: a socket
    // owes every event its channel was sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    let subscribed_once = |s: &Arc<Sock>| {
        let log = s.log.lock();
        log.live || log.position.is_some()
    };
    while !socks.iter().all(subscribed_once) {
        if Instant::now() > deadline {
            stop.cancel();
            let first = socks.iter().find_map(|s| s.log.lock().last_error.clone());
            anyhow::bail!(
                "sockets did not subscribe within 30 s: {}",
                first.unwrap_or_default()
            );
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
    say(format!(
        "publishing {} events/s for {:?}; sockets cut every {:?} on average, away {:?}",
        plan.rate, plan.duration, plan.cut_every, plan.away
    ));
    let started = Instant::now();
    let published = publish(&plan, &api, started + plan.duration).await;
    let flowed = started.elapsed();
    cutting.cancel();
    say("publishing done; waiting for every socket to be back with every event".to_owned());
    let drained = drain(&socks, &published.sent, plan.drain).await;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    let logs: Vec<_> = socks
        .iter()
        .map(|s| (s.channel, std::mem::take(&mut *s.log.lock())))
        .collect();
    Ok(RecoveryReport::account(
        &plan, ws, http, &published, flowed, drained, &logs,
    ))
}

/// What the publisher sent.
#[derive(Debug, Default)]
pub struct Published {
    /// Per channel, the sequence numbers answered 2xx.
    pub sent: Vec<Vec<u64>>,
    /// Calls that failed (their events are owed to no one).
    pub failed: u64,
    /// The last failure.
    pub last_error: Option<String>,
}

/// Triggers numbered events round robin over the channels until `until`, one call at a time.
async fn publish(plan: &Plan, api: &Arc<ApiTarget>, until: Instant) -> Published {
    let mut out = Published {
        sent: vec![Vec::new(); plan.channels],
        ..Published::default()
    };
    let mut conn = ApiConn::new(Arc::clone(api));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = vec![0u64; plan.channels];
    let mut n = 0usize;
    while Instant::now() < until {
        ticker.tick().await;
        let channel = n % plan.channels;
        n += 1;
        let seq = next[channel];
        next[channel] += 1;
        let (path, body): (String, Bytes) = api.body(1, &[BenchEvent { channel, seq }]);
        match conn.post(&path, body).await {
            Ok(()) => out.sent[channel].push(seq),
            Err(e) => {
                out.failed += 1;
                out.last_error = Some(e.to_string());
            }
        }
    }
    out
}

/// Waits until every socket is subscribed and holds every event its channel was sent; the time
/// it took, or None when `limit` passed first.
async fn drain(socks: &[Arc<Sock>], sent: &[Vec<u64>], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        let done = socks.iter().all(|s| {
            let log = s.log.lock();
            log.live && sent[s.channel].iter().all(|&seq| log.has(seq))
        });
        if done {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

/// Runs the scenario on its own runtime and prints the table; Ok(false) when it failed.
pub fn run(global: &crate::cli::Global, args: &RecoveryArgs) -> Result<bool> {
    let _ = crate::fdlimit::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(global.threads.max(1))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let plan = Plan::of(args, global.smoke);
    let app = App {
        id: global.app_id.clone(),
        key: global.app_key.clone(),
        secret: global.app_secret.clone(),
    };
    let report = runtime.block_on(recovery(
        plan,
        &args.targets.ws,
        &args.targets.http,
        app,
        global.allow_remote,
        global.quiet,
    ))?;
    print!("{}", report.table());
    if let Some(path) = &global.json {
        let text = serde_json::to_string_pretty(&report).context("encoding the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report.violations.is_empty())
}

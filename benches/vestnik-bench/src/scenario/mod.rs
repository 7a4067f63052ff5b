//! The scenarios, and what they share: the context from the command line, a rig of subscribed
//! sockets, a measured window of CPU time, and the step that sends a run and waits for its
//! deliveries.
//!
//! # Layout
//! - [`fanout`]: `fanout`, `cross-node` and `sweep` (open-loop triggering to many sockets).
//! - [`idle`]: sockets held open; RSS per socket.
//! - [`connect`]: connect-and-subscribe rate.
//! - [`triggers`]: HTTP API throughput, closed loop.
//! - [`floor`]: no broker; the CPU of one plain write per delivery, the floor to compare with.

pub mod connect;
pub mod fanout;
pub mod floor;
pub mod idle;
pub mod triggers;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use crate::api::ApiTarget;
use crate::cli::Global;
use crate::fdlimit::{NofileLimit, RESERVED_FDS};
use crate::load::SendLog;
use crate::procfs::{self, CoreTimes, CoreUse, ProcSample};
use crate::pusher::WsTarget;
use crate::ramp::{self, Ramp};
use crate::report::{BenchStats, BrokerStats, ConnectStats, DeliveryStats, HttpStats, Percentiles};
use crate::target::{App, Channels, Endpoint};
use crate::tracker::{RunCounts, Tracker};

/// How often the drain checks whether every delivery has arrived.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// What every scenario needs from the command line.
#[derive(Debug)]
pub struct Ctx {
    /// The global options.
    pub global: Global,
    /// The generator's descriptor limit after raising it.
    pub nofile: NofileLimit,
}

/// Prints a progress line on stderr unless `--quiet`.
pub fn say(ctx: &Ctx, msg: impl AsRef<str>) {
    if !ctx.global.quiet {
        eprintln!("vestnik-bench: {}", msg.as_ref());
    }
}

impl Ctx {
    fn app(&self) -> App {
        App {
            id: self.global.app_id.clone(),
            key: self.global.app_key.clone(),
            secret: self.global.app_secret.clone(),
        }
    }

    /// The socket side, aimed at `url`.
    pub fn ws_target(&self, url: &str) -> Result<Arc<WsTarget>> {
        Ok(Arc::new(WsTarget {
            endpoint: Endpoint::parse(url, &["ws", "http"], self.global.allow_remote)?,
            app: self.app(),
            read_buffer: self.global.read_buffer,
            sources: self.global.sources,
        }))
    }

    /// The trigger side, aimed at `url`.
    pub fn api_target(
        &self,
        url: &str,
        channels: Channels,
        payload: usize,
    ) -> Result<Arc<ApiTarget>> {
        Ok(Arc::new(ApiTarget {
            endpoint: Endpoint::parse(url, &["http", "ws"], self.global.allow_remote)?,
            app: self.app(),
            channels,
            pad: "x".repeat(payload),
        }))
    }

    /// Settings every report records.
    pub fn params(&self) -> Map<String, Value> {
        let g = &self.global;
        let mut m = Map::new();
        m.insert("threads".into(), json!(g.threads));
        m.insert("sources".into(), json!(g.sources));
        m.insert("private".into(), json!(g.private));
        m.insert("smoke".into(), json!(g.smoke));
        m
    }

    /// The generator's own figures for the window that ended with `end`.
    pub fn bench_stats(&self, end: &WindowEnd) -> BenchStats {
        BenchStats {
            threads: self.global.threads,
            cpu_s: end.self_cpu_s,
            nofile_limit: self.nofile.soft,
            cores: end.cores.clone(),
            other_cores: end.other_cores(),
        }
    }

    /// Warnings about descriptor limits that will stop a run of `sockets` sockets early.
    pub fn limit_notes(&self, sockets: usize) -> Vec<String> {
        let mut notes = Vec::new();
        let need = sockets as u64 + RESERVED_FDS;
        if self.nofile.soft < need {
            notes.push(format!(
                "the generator may open only about {} sockets: its RLIMIT_NOFILE is {} (hard {})",
                self.nofile.soft.saturating_sub(RESERVED_FDS),
                self.nofile.soft,
                self.nofile.hard
            ));
        }
        if let Some(limit) = self.global.pid.and_then(procfs::max_open_files) {
            if limit < need {
                notes.push(format!(
                    "the broker's open-files limit is {limit}, below {sockets} sockets plus its own"
                ));
            }
        }
        for n in &notes {
            say(self, format!("warning: {n}"));
        }
        notes
    }
}

/// Subscribed sockets, socket `i` on channel `i % C`, with the broker's RSS before they opened.
pub struct Rig {
    /// Receive-side accounting.
    pub tracker: Arc<Tracker>,
    /// The opened sockets.
    pub ramp: Ramp,
    /// Channel index of each socket.
    pub channel_of: Vec<usize>,
    /// Broker reading before any socket opened.
    pub baseline: Option<ProcSample>,
}

impl Rig {
    /// Opens `sockets` sockets over `channels`, at most `concurrency` at once, with a window over
    /// the ramp for connect-rate figures. Fails only when no socket at all could be opened.
    pub async fn open(
        ctx: &Ctx,
        ws: Arc<WsTarget>,
        channels: &Channels,
        sockets: usize,
        concurrency: usize,
    ) -> Result<(Self, WindowEnd)> {
        let baseline = ctx.global.pid.map(ProcSample::read).transpose()?;
        let channel_of: Vec<usize> = (0..sockets).map(|i| i % channels.count()).collect();
        let names: Vec<String> = channel_of.iter().map(|&c| channels.name(c)).collect();
        let tracker = Arc::new(Tracker::new(sockets));
        say(
            ctx,
            format!(
                "opening {sockets} sockets on {} channels at {}",
                channels.count(),
                ws.url()
            ),
        );
        let window = Window::start(ctx);
        let ramp = ramp::ramp(
            ws,
            &names,
            concurrency,
            Arc::clone(&tracker),
            !ctx.global.quiet,
        )
        .await;
        let end = window.end(ctx);
        say(
            ctx,
            format!(
                "subscribed {}/{} sockets in {:.2}s ({:.0}/s)",
                ramp.connected,
                sockets,
                ramp.elapsed.as_secs_f64(),
                ramp.per_sec()
            ),
        );
        if let Some(reason) = &ramp.stopped_by {
            say(ctx, format!("STOPPED EARLY: {reason}"));
        }
        if ramp.connected == 0 {
            let why = ramp
                .stopped_by
                .clone()
                .or_else(|| ramp.errors.first().cloned())
                .unwrap_or_default();
            ramp.close().await;
            bail!("no socket could be opened: {why}");
        }
        Ok((
            Self {
                tracker,
                ramp,
                channel_of,
                baseline,
            },
            end,
        ))
    }

    /// The ramp as a report section.
    pub fn connect_stats(&self, requested: usize, concurrency: usize) -> ConnectStats {
        let r = &self.ramp;
        ConnectStats {
            requested,
            attempted: r.attempted,
            connected: r.connected,
            failed: r.failed,
            stopped_by: r.stopped_by.clone(),
            concurrency,
            elapsed_s: r.elapsed.as_secs_f64(),
            per_s: r.per_sec(),
            latency_us: Percentiles::of(&r.latency),
            errors: r.errors.clone(),
        }
    }

    /// Sends one run with `send` and waits, at most `drain`, until every owed delivery arrived.
    pub async fn deliver(
        &self,
        run: u32,
        send: impl Future<Output = SendLog>,
        drain: Duration,
    ) -> Delivered {
        self.tracker.begin_run(run);
        let log = send.await;
        let expected = self.tracker.expected(&log.issued, &self.channel_of);
        let deadline = Instant::now() + drain;
        while self.tracker.delivered() < expected && Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let drain_timed_out = self.tracker.delivered() < expected;
        let counts = self.tracker.finish(&log.issued, &self.channel_of);
        Delivered {
            counts,
            log,
            drain_timed_out,
        }
    }
}

/// A run sent and drained.
pub struct Delivered {
    /// What the sockets received.
    pub counts: RunCounts,
    /// What was sent.
    pub log: SendLog,
    /// Whether the drain gave up.
    pub drain_timed_out: bool,
}

impl Delivered {
    /// The deliveries as a report section; `offered_per_s` is 0 for closed-loop runs.
    pub fn delivery_stats(&self, offered_per_s: f64) -> DeliveryStats {
        let c = &self.counts;
        let window_us = if c.last_rx_us == 0 || self.log.first_send_us == u64::MAX {
            0
        } else {
            c.last_rx_us.saturating_sub(self.log.first_send_us)
        };
        let window_s = window_us as f64 / 1e6;
        DeliveryStats {
            expected: c.expected,
            delivered: c.delivered,
            lost: c.lost,
            duplicates: c.duplicates,
            unexpected: c.unexpected,
            stale: c.stale,
            sockets: c.sockets_live,
            sockets_dropped: c.sockets_dropped,
            offered_per_s,
            window_s,
            per_s: if window_s > 0.0 {
                c.delivered as f64 / window_s
            } else {
                0.0
            },
            latency_us: Percentiles::of(&c.latency),
            drain_timed_out: self.drain_timed_out,
        }
    }

    /// The HTTP calls as a report section.
    pub fn http_stats(&self, offered_events_per_s: f64, connections: usize) -> HttpStats {
        let l = &self.log;
        let w = l.send_window_secs();
        let per = |n: u64| if w > 0.0 { n as f64 / w } else { 0.0 };
        HttpStats {
            calls: l.calls,
            events: l.events,
            failed_calls: l.failed_calls,
            offered_events_per_s,
            events_per_s: per(l.events),
            calls_per_s: per(l.calls),
            connections,
            latency_us: Percentiles::of(&l.latency),
            errors: l.errors.clone(),
        }
    }

    /// Events accepted by the broker.
    pub fn accepted_events(&self) -> u64 {
        self.log.events - self.log.issued.failed.len() as u64
    }
}

/// A measured window: wall time, the broker's CPU and the generator's CPU.
pub struct Window {
    start: Instant,
    cores: CoreTimes,
    broker: Option<ProcSample>,
    me: Option<ProcSample>,
}

/// The end of a window.
#[derive(Debug, Clone)]
pub struct WindowEnd {
    /// Every core's use over the window.
    pub cores: Vec<CoreUse>,
    /// Wall seconds.
    pub secs: f64,
    /// Broker CPU seconds, with `--pid`.
    pub broker_cpu_s: Option<f64>,
    /// Broker reading at the end, with `--pid`.
    pub broker_now: Option<ProcSample>,
    /// Generator CPU seconds.
    pub self_cpu_s: f64,
}

impl Window {
    /// Starts a window now.
    pub fn start(ctx: &Ctx) -> Self {
        Self {
            start: Instant::now(),
            cores: CoreTimes::read(),
            broker: ctx.global.pid.and_then(|p| ProcSample::read(p).ok()),
            me: ProcSample::read(std::process::id()).ok(),
        }
    }

    /// Ends it now.
    pub fn end(self, ctx: &Ctx) -> WindowEnd {
        let broker_now = ctx.global.pid.and_then(|p| ProcSample::read(p).ok());
        let me_now = ProcSample::read(std::process::id()).ok();
        WindowEnd {
            cores: CoreTimes::read().since(&self.cores),
            secs: self.start.elapsed().as_secs_f64(),
            broker_cpu_s: match (&self.broker, &broker_now) {
                (Some(a), Some(b)) => Some(b.cpu_secs_since(a)),
                _ => None,
            },
            broker_now,
            self_cpu_s: match (&self.me, &me_now) {
                (Some(a), Some(b)) => b.cpu_secs_since(a),
                _ => 0.0,
            },
        }
    }
}

impl WindowEnd {
    /// Cores used by processes other than the broker and the generator, roughly: all busy time less
    /// theirs and less softirq (their loopback traffic). Needs `--pid`.
    pub fn other_cores(&self) -> Option<f64> {
        if self.cores.is_empty() || self.secs <= 0.0 {
            return None;
        }
        let broker = self.broker_cpu_s? / self.secs;
        let me = self.self_cpu_s / self.secs;
        let busy: f64 = self.cores.iter().map(|c| c.busy - c.softirq).sum();
        Some((busy - broker - me).max(0.0))
    }

    /// The broker section for this window: CPU per `deliveries`, `triggers` and `connects` (each
    /// omitted when zero), RSS against `baseline` over `sockets`.
    pub fn broker_stats(
        &self,
        ctx: &Ctx,
        baseline: Option<ProcSample>,
        sockets: usize,
        deliveries: u64,
        triggers: u64,
        connects: u64,
    ) -> Option<BrokerStats> {
        let pid = ctx.global.pid?;
        let cpu_s = self.broker_cpu_s?;
        let now = self.broker_now?;
        let per = |n: u64| (n > 0).then(|| cpu_s * 1e6 / n as f64);
        let base = baseline.map_or(0, |b| b.rss_bytes);
        Some(BrokerStats {
            pid,
            clk_tck: procfs::clk_tck(),
            cpu_s,
            window_s: self.secs,
            cpu_cores: if self.secs > 0.0 {
                cpu_s / self.secs
            } else {
                0.0
            },
            cpu_us_per_delivery: per(deliveries),
            cpu_us_per_trigger: per(triggers),
            cpu_us_per_connect: per(connects),
            rss_baseline_bytes: base,
            rss_bytes: now.rss_bytes,
            rss_per_socket_bytes: (sockets > 0 && baseline.is_some())
                .then(|| now.rss_bytes.saturating_sub(base) as f64 / sockets as f64),
            max_open_files: procfs::max_open_files(pid),
        })
    }
}

/// Stamps a report with totals: lost deliveries and failed or dropped sockets.
pub fn totals(connect: Option<&ConnectStats>, delivery: Option<&DeliveryStats>) -> (u64, u64) {
    let lost = delivery.map_or(0, |d| d.lost);
    let failed = connect.map_or(0, |c| (c.requested - c.connected) as u64)
        + delivery.map_or(0, |d| d.sockets_dropped);
    (lost, failed)
}

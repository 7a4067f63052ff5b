//! The report of a run: one serialisable tree, printed as a table on stdout and written as JSON with
//! `--json FILE`.
//!
//! Latencies are in microseconds. Every figure that depends on `--pid` is optional, so a run against
//! a broker whose process cannot be read still reports its deliveries.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::procfs::CoreUse;

/// Latency percentiles of an HDR histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Summarises `h` (µs).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }

    fn row(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            us(self.p50),
            us(self.p90),
            us(self.p99),
            us(self.p999),
            us(self.max)
        )
    }
}

/// The ramp-up of sockets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectStats {
    /// Sockets asked for.
    pub requested: usize,
    /// Sockets tried.
    pub attempted: usize,
    /// Sockets subscribed.
    pub connected: usize,
    /// Sockets that failed to open or subscribe.
    pub failed: usize,
    /// What stopped the ramp early, if something did.
    pub stopped_by: Option<String>,
    /// Most concurrent opens.
    pub concurrency: usize,
    /// Seconds from the first attempt to the last subscription.
    pub elapsed_s: f64,
    /// Subscribed sockets per second.
    pub per_s: f64,
    /// Connect plus subscribe time, µs.
    pub latency_us: Percentiles,
    /// The first few distinct errors.
    pub errors: Vec<String>,
}

/// Deliveries of bench events to sockets in the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeliveryStats {
    /// Deliveries owed (accepted events times the live subscribers of their channel).
    pub expected: u64,
    /// Distinct owed events received.
    pub delivered: u64,
    /// Owed but never received (within the drain time).
    pub lost: u64,
    /// Received twice or more by the same socket.
    pub duplicates: u64,
    /// Received but not owed.
    pub unexpected: u64,
    /// Events of an earlier run (warm-up) received in this one.
    pub stale: u64,
    /// Sockets live at the start.
    pub sockets: u64,
    /// Of those, closed before the end (by the broker or the network).
    pub sockets_dropped: u64,
    /// Deliveries per second offered: event rate times subscribers per channel.
    pub offered_per_s: f64,
    /// Seconds from the first send to the last receipt.
    pub window_s: f64,
    /// Deliveries per second over that window.
    pub per_s: f64,
    /// From the event's send to its receipt by a socket, µs.
    pub latency_us: Percentiles,
    /// Whether the drain ended because time ran out rather than because every delivery arrived.
    pub drain_timed_out: bool,
}

/// The HTTP API calls of the measured window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HttpStats {
    /// Calls made.
    pub calls: u64,
    /// Events carried.
    pub events: u64,
    /// Calls that failed.
    pub failed_calls: u64,
    /// Events per second offered (0 for closed-loop runs).
    pub offered_events_per_s: f64,
    /// Events per second sent, first to last call.
    pub events_per_s: f64,
    /// Calls per second sent.
    pub calls_per_s: f64,
    /// Concurrent connections used.
    pub connections: usize,
    /// Duration of a call, µs.
    pub latency_us: Percentiles,
    /// The first few distinct errors.
    pub errors: Vec<String>,
}

/// The broker process, from /proc, with `--pid`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrokerStats {
    /// The process read.
    pub pid: u32,
    /// Clock ticks per second used to convert CPU time.
    pub clk_tck: u64,
    /// CPU seconds (user + system) in the measured window.
    pub cpu_s: f64,
    /// Length of that window, seconds.
    pub window_s: f64,
    /// Cores busy on average over the window.
    pub cpu_cores: f64,
    /// CPU µs per delivered message.
    pub cpu_us_per_delivery: Option<f64>,
    /// CPU µs per event triggered over HTTP.
    pub cpu_us_per_trigger: Option<f64>,
    /// CPU µs per socket opened and subscribed.
    pub cpu_us_per_connect: Option<f64>,
    /// RSS before the sockets were opened, bytes.
    pub rss_baseline_bytes: u64,
    /// RSS with the sockets open, bytes.
    pub rss_bytes: u64,
    /// `(rss - baseline) / sockets`, bytes.
    pub rss_per_socket_bytes: Option<f64>,
    /// The broker's soft open-files limit.
    pub max_open_files: Option<u64>,
}

/// The generator's own cost, to tell a saturated generator from a saturated broker.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BenchStats {
    /// Runtime worker threads.
    pub threads: usize,
    /// CPU seconds this process spent in the measured window.
    pub cpu_s: f64,
    /// Its RLIMIT_NOFILE soft limit.
    pub nofile_limit: u64,
    /// Every core's use over the measured window, softirq (network processing) included: on a
    /// loopback run, broker and generator CPU alone do not show when a core is full.
    #[serde(default)]
    pub cores: Vec<CoreUse>,
    /// Cores used by other processes over the window (roughly; with `--pid`). Above a few tenths,
    /// the figures are disturbed by them.
    #[serde(default)]
    pub other_cores: Option<f64>,
}

/// One step of a sweep: a fan-out at one offered rate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SweepPoint {
    /// Events per second triggered.
    pub rate: f64,
    /// Deliveries per second offered.
    pub offered_per_s: f64,
    /// Deliveries per second achieved.
    pub per_s: f64,
    /// Events per second actually sent (below `rate` when the API answered too slowly).
    #[serde(default)]
    pub sent_per_s: f64,
    /// Broker cores busy, with `--pid`.
    #[serde(default)]
    pub broker_cpu_cores: Option<f64>,
    /// Generator cores busy.
    #[serde(default)]
    pub bench_cpu_cores: f64,
    /// Every core's use, softirq included.
    #[serde(default)]
    pub cores: Vec<CoreUse>,
    /// Cores used by other processes (roughly; with `--pid`).
    #[serde(default)]
    pub other_cores: Option<f64>,
    /// Owed deliveries.
    pub expected: u64,
    /// Received.
    pub delivered: u64,
    /// Lost.
    pub lost: u64,
    /// Delivery latency, µs.
    pub latency_us: Percentiles,
    /// Broker CPU µs per delivery, with `--pid`.
    pub cpu_us_per_delivery: Option<f64>,
}

/// A whole run's report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// Which scenario ran.
    pub scenario: String,
    /// Settings, as given or defaulted.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Deliveries lost in total (0 when every owed event arrived).
    pub lost: u64,
    /// Sockets that failed to open or were closed during the run.
    pub sockets_failed: u64,
    /// The socket ramp.
    pub connect: Option<ConnectStats>,
    /// Deliveries in the measured window (or the liveness probe for `idle`/`connect`).
    pub delivery: Option<DeliveryStats>,
    /// HTTP API calls.
    pub http: Option<HttpStats>,
    /// Broker process figures.
    pub broker: Option<BrokerStats>,
    /// The generator's own figures.
    pub bench: BenchStats,
    /// Sweep steps, for `sweep`.
    #[serde(default)]
    pub sweep: Vec<SweepPoint>,
    /// Things the reader should know (limits hit, caveats).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// Cores used by other processes above which the table warns that the run was disturbed.
const OTHER_CORES_WARN: f64 = 0.2;

/// Formats µs as µs, ms or s.
fn us(v: u64) -> String {
    match v {
        0..1_000 => format!("{v}µs"),
        1_000..1_000_000 => format!("{:.2}ms", v as f64 / 1e3),
        _ => format!("{:.2}s", v as f64 / 1e6),
    }
}

fn bytes(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else if v >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{v:.0} B")
    }
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("the report serialises");
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn read_json(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The report as a two-column table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        row("scenario", self.scenario.clone());
        for (k, v) in &self.params {
            row(
                &format!("  {k}"),
                v.to_string().trim_matches('"').to_owned(),
            );
        }
        if let Some(c) = &self.connect {
            row(
                "sockets",
                format!(
                    "{} / {} subscribed, {} failed",
                    c.connected, c.requested, c.failed
                ),
            );
            row(
                "connect rate",
                format!(
                    "{:.0} sockets/s ({:.2}s, {} at once)",
                    c.per_s, c.elapsed_s, c.concurrency
                ),
            );
            row("connect+subscribe", c.latency_us.row());
            if let Some(s) = &c.stopped_by {
                row("STOPPED BY", s.clone());
            }
            for e in &c.errors {
                row("connect error", e.clone());
            }
        }
        if let Some(d) = &self.delivery {
            row(
                "delivered / expected",
                format!("{} / {} (lost {})", d.delivered, d.expected, d.lost),
            );
            row(
                "duplicates, unexpected",
                format!("{}, {} (stale {})", d.duplicates, d.unexpected, d.stale),
            );
            if d.offered_per_s > 0.0 {
                row("offered deliveries/s", format!("{:.0}", d.offered_per_s));
            }
            if d.offered_per_s > 0.0 || d.window_s >= 1.0 {
                row(
                    "deliveries/s",
                    format!("{:.0} over {:.2}s", d.per_s, d.window_s),
                );
            }
            if d.latency_us.count > 0 {
                row("delivery latency", d.latency_us.row());
            }
            if d.sockets_dropped > 0 {
                row(
                    "sockets dropped",
                    format!("{} of {}", d.sockets_dropped, d.sockets),
                );
            }
            if d.drain_timed_out {
                row("drain", "timed out before every delivery arrived".into());
            }
        }
        if let Some(h) = &self.http {
            row(
                "http calls",
                format!(
                    "{} ({} events, {} failed) on {} connections",
                    h.calls, h.events, h.failed_calls, h.connections
                ),
            );
            if h.offered_events_per_s > 0.0 {
                row(
                    "offered triggers/s",
                    format!("{:.0}", h.offered_events_per_s),
                );
            }
            row(
                "triggers/s",
                format!("{:.0} ({:.0} calls/s)", h.events_per_s, h.calls_per_s),
            );
            row("http call latency", h.latency_us.row());
            for e in &h.errors {
                row("http error", e.clone());
            }
        }
        if let Some(b) = &self.broker {
            row(
                "broker cpu",
                format!(
                    "{:.2}s over {:.2}s ({:.2} cores, pid {})",
                    b.cpu_s, b.window_s, b.cpu_cores, b.pid
                ),
            );
            if let Some(v) = b.cpu_us_per_delivery {
                row("broker cpu / delivery", format!("{v:.2}µs"));
            }
            if let Some(v) = b.cpu_us_per_trigger {
                row("broker cpu / trigger", format!("{v:.2}µs"));
            }
            if let Some(v) = b.cpu_us_per_connect {
                row("broker cpu / connect", format!("{v:.1}µs"));
            }
            row(
                "broker rss",
                format!(
                    "{} (baseline {})",
                    bytes(b.rss_bytes as f64),
                    bytes(b.rss_baseline_bytes as f64)
                ),
            );
            if let Some(v) = b.rss_per_socket_bytes {
                row("broker rss / socket", bytes(v));
            }
        }
        row(
            "generator",
            format!(
                "{:.2} cpu s, {} threads, nofile {}",
                self.bench.cpu_s, self.bench.threads, self.bench.nofile_limit
            ),
        );
        if !self.bench.cores.is_empty() {
            let cores: Vec<String> = self
                .bench
                .cores
                .iter()
                .map(|c| {
                    format!(
                        "{} {:.0}% (softirq {:.0}%)",
                        c.cpu,
                        c.busy * 100.0,
                        c.softirq * 100.0
                    )
                })
                .collect();
            row("machine cores busy", cores.join(", "));
        }
        if let Some(o) = self.bench.other_cores {
            let warn = if o > OTHER_CORES_WARN {
                ": other processes disturbed this run"
            } else {
                ""
            };
            row("other processes", format!("{o:.2} cores{warn}"));
        }
        for n in &self.notes {
            row("note", n.clone());
        }
        let mut out = render(&rows);
        if !self.sweep.is_empty() {
            out.push_str(&sweep_table(&self.sweep));
        }
        out
    }
}

fn render(rows: &[(String, String)]) -> String {
    let kw = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    let vw = rows
        .iter()
        .map(|(_, v)| v.chars().count())
        .max()
        .unwrap_or(0);
    let line = format!("+-{}-+-{}-+\n", "-".repeat(kw), "-".repeat(vw));
    let mut out = line.clone();
    for (k, v) in rows {
        let _ = writeln!(out, "| {k:<kw$} | {v:<vw$} |");
    }
    out.push_str(&line);
    out
}

fn sweep_table(points: &[SweepPoint]) -> String {
    let mut rows = vec![(
        "rate/s".to_owned(),
        format!(
            "{:>9} {:>12} {:>12} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6} {:>6} {:>12}",
            "sent/s",
            "offered/s",
            "delivered/s",
            "lost",
            "p50",
            "p90",
            "p99",
            "max",
            "cpu µs/d",
            "broker",
            "bench",
            "other",
            "cores busy %"
        ),
    )];
    for p in points {
        rows.push((
            format!("{:.0}", p.rate),
            format!(
                "{:>9.0} {:>12.0} {:>12.0} {:>9} {:>10} {:>10} {:>10} {:>10} {:>9} {:>6} {:>6.2} {:>6} {:>12}",
                p.sent_per_s,
                p.offered_per_s,
                p.per_s,
                p.lost,
                us(p.latency_us.p50),
                us(p.latency_us.p90),
                us(p.latency_us.p99),
                us(p.latency_us.max),
                p.cpu_us_per_delivery
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
                p.broker_cpu_cores
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
                p.bench_cpu_cores,
                p.other_cores
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:.2}")),
                p.cores
                    .iter()
                    .map(|c| format!("{:.0}", c.busy * 100.0))
                    .collect::<Vec<_>>()
                    .join("/")
            ),
        ));
    }
    render(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_units_and_round_trips() {
        assert_eq!(us(999), "999µs");
        assert_eq!(us(1500), "1.50ms");
        assert_eq!(us(2_500_000), "2.50s");
        let mut h = crate::tracker::new_histogram();
        for v in 1..=1000 {
            h.record(v).expect("in range");
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((499..=501).contains(&p.p50));
        let r = Report {
            scenario: "fanout".into(),
            delivery: Some(DeliveryStats {
                latency_us: p,
                ..DeliveryStats::default()
            }),
            sweep: vec![SweepPoint::default()],
            ..Report::default()
        };
        let text = serde_json::to_string(&r).expect("serialises");
        let back: Report = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.scenario, "fanout");
        assert!(r.table().contains("delivery latency"));
    }
}

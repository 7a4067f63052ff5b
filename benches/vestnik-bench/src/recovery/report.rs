//! The recovery run's report: what was published and owed, what arrived, how recoveries ended and
//! how long they took, and the violations that fail the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::client::SockLog;
use super::{Plan, Published};
use crate::report::Percentiles;

/// The figures of one recovery run.
#[derive(Debug, Serialize)]
pub struct RecoveryReport {
    /// The settings.
    pub params: serde_json::Value,
    /// Events sent with a 2xx answer.
    pub published: u64,
    /// API calls that failed.
    pub publish_failed: u64,
    /// Events per second achieved while flowing.
    pub publish_rate: f64,
    /// Deliveries owed: for each socket, every event its channel was sent.
    pub owed: u64,
    /// Of those, received (each once counted).
    pub delivered: u64,
    /// Owed and never received.
    pub lost: u64,
    /// Received more than once.
    pub duplicates: u64,
    /// Received after a later event of the same channel.
    pub out_of_order: u64,
    /// Times sockets were cut.
    pub cuts: u64,
    /// Subscribes sent with `recover`.
    pub recoveries: u64,
    /// Of those, answered `recovered: true`.
    pub recovered: u64,
    /// Of those, answered `recovered: false`, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Events the broker replayed as missed.
    pub missed_replayed: u64,
    /// From a reconnect's dial to its last missed event (µs), over the recoveries that succeeded.
    pub recovery_time_us: Percentiles,
    /// Opens that failed and were retried.
    pub open_failures: u64,
    /// Time from the end of publishing to every socket back with every event (ms), or None.
    pub drain_ms: Option<u64>,
    /// Why the run failed (empty: it passed).
    pub violations: Vec<String>,
}

impl RecoveryReport {
    /// Accounts the sockets' logs against what was published.
    pub fn account(
        plan: &Plan,
        ws: &str,
        http: &str,
        published: &Published,
        flowed: Duration,
        drained: Option<Duration>,
        logs: &[(usize, SockLog)],
    ) -> Self {
        let sent: u64 = published.sent.iter().map(|s| s.len() as u64).sum();
        let mut r = Self {
            params: serde_json::json!({
                "ws": ws, "http": http, "sockets": plan.sockets, "channels": plan.channels,
                "rate": plan.rate, "duration_s": plan.duration.as_secs_f64(),
                "cut_every_s": plan.cut_every.as_secs_f64(), "away_s": plan.away.as_secs_f64(),
                "drain_s": plan.drain.as_secs_f64(), "seed": plan.seed,
            }),
            published: sent,
            publish_failed: published.failed,
            publish_rate: sent as f64 / flowed.as_secs_f64().max(1e-9),
            owed: 0,
            delivered: 0,
            lost: 0,
            duplicates: 0,
            out_of_order: 0,
            cuts: 0,
            recoveries: 0,
            recovered: 0,
            failed: BTreeMap::new(),
            missed_replayed: 0,
            recovery_time_us: Percentiles::default(),
            open_failures: 0,
            drain_ms: drained.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            violations: Vec::new(),
        };
        let mut times = Histogram::<u64>::new(3).expect("3 significant figures is valid");
        let mut not_back = 0u64;
        for (channel, log) in logs {
            let owed = &published.sent[*channel];
            let got = owed.iter().filter(|&&seq| log.has(seq)).count() as u64;
            r.owed += owed.len() as u64;
            r.delivered += got;
            r.lost += owed.len() as u64 - got;
            r.duplicates += log.duplicates;
            r.out_of_order += log.out_of_order;
            r.cuts += log.cuts;
            r.recoveries += log.recoveries;
            r.recovered += log.recovered;
            for (reason, n) in &log.failed {
                *r.failed.entry(reason.clone()).or_default() += n;
            }
            r.missed_replayed += log.missed;
            r.open_failures += log.open_failures;
            for &us in &log.recovery_us {
                let _ = times.record(us.max(1));
            }
            if !log.live {
                not_back += 1;
            }
        }
        r.recovery_time_us = Percentiles::of(&times);
        if r.lost > 0 {
            r.violations
                .push(format!("{} owed deliveries lost", r.lost));
        }
        if r.duplicates > 0 {
            r.violations
                .push(format!("{} deliveries repeated", r.duplicates));
        }
        if r.out_of_order > 0 {
            r.violations
                .push(format!("{} deliveries out of order", r.out_of_order));
        }
        let failed: u64 = r.failed.values().sum();
        if failed > 0 {
            r.violations
                .push(format!("{failed} recoveries failed: {:?}", r.failed));
        }
        if not_back > 0 {
            r.violations
                .push(format!("{not_back} sockets not subscribed at the end"));
        }
        if r.cuts == 0 {
            r.violations
                .push("no socket was cut: the run proved nothing".to_owned());
        }
        if sent == 0 {
            r.violations.push("nothing was published".to_owned());
        }
        if published.failed > 0 {
            r.violations.push(format!(
                "{} API calls failed (last: {})",
                published.failed,
                published.last_error.as_deref().unwrap_or("")
            ));
        }
        r
    }

    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let ms = |us: u64| us as f64 / 1000.0;
        let t = &self.recovery_time_us;
        let mut out = String::new();
        let _ = writeln!(out, "recovery run");
        let _ = writeln!(
            out,
            "  published        {} events ({:.0}/s), {} calls failed",
            self.published, self.publish_rate, self.publish_failed
        );
        let _ = writeln!(
            out,
            "  deliveries       {} owed, {} delivered, {} lost, {} duplicated, {} out of order",
            self.owed, self.delivered, self.lost, self.duplicates, self.out_of_order
        );
        let _ = writeln!(
            out,
            "  cuts             {} cuts, {} recoveries: {} recovered, {} failed {:?}; {} events replayed",
            self.cuts,
            self.recoveries,
            self.recovered,
            self.failed.values().sum::<u64>(),
            self.failed,
            self.missed_replayed
        );
        let _ = writeln!(
            out,
            "  recovery time    p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (dial to last missed event, {} samples)",
            ms(t.p50),
            ms(t.p99),
            ms(t.max),
            t.count
        );
        let _ = writeln!(
            out,
            "  drain            {}; {} opens retried",
            self.drain_ms
                .map_or_else(|| "TIMED OUT".to_owned(), |d| format!("{d} ms")),
            self.open_failures
        );
        if self.violations.is_empty() {
            let _ = writeln!(out, "  result           PASS");
        } else {
            for v in &self.violations {
                let _ = writeln!(out, "  FAIL             {v}");
            }
        }
        out
    }
}

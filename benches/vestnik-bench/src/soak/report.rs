//! The soak report: the run's settings, what the churn did, each node's figures at the baseline,
//! at the end of the churn and at idle, the flatness and idle checks, and the verdict.

use std::fmt::Write as _;

use serde::Serialize;

use super::churn::ChurnFigures;
use super::sample::{Phase, Sample};
use super::verdict::{Flatness, IdleCheck};
use crate::chaos::procs::Backbone;

/// Sessions allowed to fail, as a fraction of those started: more, and the churn did not happen
/// as planned, so flat figures would prove nothing.
pub const MAX_FAILED_FRACTION: f64 = 0.01;

/// One node's figures at three moments.
#[derive(Debug, Clone, Serialize)]
pub struct NodeSummary {
    /// Node index.
    pub node: usize,
    /// Before the churn.
    pub baseline: Sample,
    /// The largest RSS seen.
    pub peak_rss_bytes: u64,
    /// The largest socket count seen.
    pub peak_sockets: u64,
    /// The last reading of the churn.
    pub end_of_churn: Option<Sample>,
    /// The last idle reading.
    pub idle: Option<Sample>,
}

/// The report of a soak run.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    /// Always `soak`.
    pub scenario: &'static str,
    /// The backbone, for a cluster.
    pub adapter: Option<Backbone>,
    /// Nodes.
    pub nodes: usize,
    /// Seed of the churn.
    pub seed: u64,
    /// Churn time, seconds.
    pub duration_s: f64,
    /// Warm-up, seconds (not judged).
    pub warmup_s: f64,
    /// Sessions started per second.
    pub rate: f64,
    /// Events triggered per second.
    pub trigger_rate: f64,
    /// What the churn did.
    pub churn: ChurnFigures,
    /// Per node.
    pub summary: Vec<NodeSummary>,
    /// Flatness of RSS and non-socket descriptors per node.
    pub flatness: Vec<Flatness>,
    /// Idle checks per node.
    pub idle: Vec<IdleCheck>,
    /// Seconds from the end of the churn to the last idle reading.
    pub idle_after_s: f64,
    /// Readings taken.
    pub samples: usize,
    /// What failed; empty when the run passed.
    pub violations: Vec<String>,
}

impl SoakReport {
    /// Per-node summaries of `samples`.
    pub fn summarize(samples: &[Sample], nodes: usize) -> Vec<NodeSummary> {
        (0..nodes)
            .map(|node| {
                let mine = || samples.iter().filter(move |s| s.node == node);
                let last_of = |p: Phase| mine().rfind(|s| s.phase == p).copied();
                NodeSummary {
                    node,
                    baseline: last_of(Phase::Baseline).unwrap_or_default(),
                    peak_rss_bytes: mine().map(|s| s.rss_bytes).max().unwrap_or(0),
                    peak_sockets: mine().map(|s| s.sockets).max().unwrap_or(0),
                    end_of_churn: last_of(Phase::Churn),
                    idle: last_of(Phase::Idle),
                }
            })
            .collect()
    }

    /// Fills `violations`.
    pub fn judge(&mut self) {
        let mut v = Vec::new();
        for f in self.flatness.iter().filter(|f| !f.flat()) {
            v.push(format!(
                "node {}: {} not flat: rose {:.0} over the last half of the churn (allowed {:.0}; \
                 settled {:.0}, end {:.0})",
                f.node, f.figure, f.growth, f.tolerance, f.settled, f.end
            ));
        }
        for f in self.flatness.iter().filter(|f| f.samples < 3) {
            v.push(format!(
                "node {}: only {} samples in the judged half: run longer or sample more often",
                f.node, f.samples
            ));
        }
        for c in &self.idle {
            if let Some(why) = c.problem() {
                v.push(format!(
                    "node {}: not back to idle {:.0} s after the clients left: {why}",
                    c.node, self.idle_after_s
                ));
            }
        }
        let c = &self.churn;
        if c.opened == 0 {
            v.push("no session opened: the churn never ran".into());
        }
        if c.failed as f64 > c.sessions as f64 * MAX_FAILED_FRACTION {
            v.push(format!(
                "{} of {} sessions failed (allowed {:.0}%); last error: {}",
                c.failed,
                c.sessions,
                MAX_FAILED_FRACTION * 100.0,
                c.last_error.as_deref().unwrap_or("-")
            ));
        }
        if c.triggers_failed as f64
            > (c.triggers_ok + c.triggers_failed) as f64 * MAX_FAILED_FRACTION
        {
            v.push(format!(
                "{} of {} API calls failed; last error: {}",
                c.triggers_failed,
                c.triggers_ok + c.triggers_failed,
                c.last_error.as_deref().unwrap_or("-")
            ));
        }
        self.violations = v;
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let mut t = String::new();
        let c = &self.churn;
        let _ = writeln!(
            t,
            "soak: {} node(s){}, {:.0} s of churn (warm-up {:.0} s), seed {}",
            self.nodes,
            self.adapter
                .map(|a| format!(" on {a:?}"))
                .unwrap_or_default(),
            self.duration_s,
            self.warmup_s,
            self.seed
        );
        let _ = writeln!(
            t,
            "churn: {} sessions ({} opened, {} failed), {} sign-ins, {} presence joins, \
             {} client events, {} frames received, {} API calls ({} failed)",
            c.sessions,
            c.opened,
            c.failed,
            c.signins,
            c.presence_joins,
            c.client_events,
            c.received,
            c.triggers_ok + c.triggers_failed,
            c.triggers_failed
        );
        let _ = writeln!(
            t,
            "{:>4} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "node",
            "rss base",
            "rss peak",
            "rss idle",
            "fds base",
            "fds idle",
            "tasks b",
            "tasks i",
            "sockets^"
        );
        for s in &self.summary {
            let idle = s.idle.unwrap_or_default();
            let _ = writeln!(
                t,
                "{:>4} {:>8.1}Mi {:>8.1}Mi {:>8.1}Mi {:>8} {:>8} {:>8} {:>8} {:>8}",
                s.node,
                s.baseline.rss_bytes as f64 / MIB,
                s.peak_rss_bytes as f64 / MIB,
                idle.rss_bytes as f64 / MIB,
                s.baseline.fds,
                idle.fds,
                s.baseline.alive_tasks,
                idle.alive_tasks,
                s.peak_sockets
            );
        }
        for f in &self.flatness {
            let _ = writeln!(t, "{}", f.describe());
        }
        let _ = writeln!(
            t,
            "idle after {:.0} s: {}",
            self.idle_after_s,
            if self.idle.iter().all(|c| c.problem().is_none()) {
                "every node back to 0 sockets, 0 channels, 0 connection tasks, baseline fds"
            } else {
                "NOT back to idle"
            }
        );
        if self.passed() {
            let _ = writeln!(t, "verdict: PASS");
        } else {
            let _ = writeln!(t, "verdict: FAIL");
            for v in &self.violations {
                let _ = writeln!(t, "  - {v}");
            }
        }
        t
    }
}

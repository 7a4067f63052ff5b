//! The soak verdict, as pure functions over the samples: is memory flat at the end of the churn,
//! are descriptors flat, and did every node return to its idle counts once the clients left.
//!
//! # Flatness
//! The steady window is the churn after the warm-up. Its second half is fitted with a least-squares
//! line; the line's rise over that half (slope times its span) is the growth the run still shows
//! after it should have settled. It must stay within a tolerance of the settled level (the mean
//! of the first half):
//! - RSS: [`RSS_TOLERANCE_FRACTION`] of the level or [`RSS_TOLERANCE_FLOOR`], whichever is larger.
//!   The allocator keeps freed pages and the socket count wanders with the churn, so RSS moves a
//!   little without any leak (a tenth of a MiB in the runs of docs/reliability.md); a leak of 100
//!   bytes per session at 20 sessions a second adds 3.4 MiB over a 30-minute half, and its line
//!   rises steadily instead of wandering.
//! - Descriptors: the descriptors that are not live sockets (`fds - sockets`), so the wandering
//!   socket count does not hide a leak; [`FD_TOLERANCE`] covers the API and scrape connections
//!   that come and go between two readings. A socket whose descriptor outlives it adds one each
//!   time, which a long run turns into a rise far past it.
//!
//! # Idle
//! After the clients leave, each node must come back to 0 sockets, 0 channels, 0 connection tasks
//! and its baseline descriptors (within [`IDLE_FD_SLACK`]) and live tasks (within
//! [`IDLE_TASK_SLACK`]).
//!
//! This module never reads a clock or a file; [`super::sample`] gathers, this judges.

use serde::Serialize;

use super::sample::{Phase, Sample};

/// RSS growth allowed over the fitted half, as a fraction of the settled level.
pub const RSS_TOLERANCE_FRACTION: f64 = 0.05;
/// RSS growth always allowed over the fitted half, bytes (allocator noise on a small node).
pub const RSS_TOLERANCE_FLOOR: f64 = 1024.0 * 1024.0;
/// Growth of non-socket descriptors allowed over the fitted half.
pub const FD_TOLERANCE: f64 = 8.0;
/// Descriptors an idle node may hold above its baseline: a scrape connection and an API
/// connection whose close the node has not read yet.
pub const IDLE_FD_SLACK: u64 = 2;
/// Live tasks an idle node may hold above its baseline: the scrape's own connection task and one
/// closing API connection.
pub const IDLE_TASK_SLACK: u64 = 4;

/// The flatness of one figure on one node.
#[derive(Debug, Clone, Serialize)]
pub struct Flatness {
    /// Node index.
    pub node: usize,
    /// `rss_bytes` or `non_socket_fds`.
    pub figure: &'static str,
    /// Mean over the first half of the steady window.
    pub settled: f64,
    /// Mean over the last tenth of the steady window.
    pub end: f64,
    /// Rise of the fitted line over the second half.
    pub growth: f64,
    /// Largest rise allowed.
    pub tolerance: f64,
    /// Samples in the fitted half.
    pub samples: usize,
}

impl Flatness {
    /// Whether the figure ended flat.
    pub fn flat(&self) -> bool {
        self.growth <= self.tolerance
    }

    /// One line for a person: the levels, the rise, the allowance and the verdict (RSS in MiB).
    pub fn describe(&self) -> String {
        let (scale, unit) = if self.figure == "rss_bytes" {
            (1024.0 * 1024.0, " MiB")
        } else {
            (1.0, "")
        };
        format!(
            "node {} {:<15} settled {:>8.2}{unit}, end {:>8.2}{unit}, rise over the last half \
             {:>+8.2}{unit} (allowed {:.2}{unit}): {}",
            self.node,
            self.figure,
            self.settled / scale,
            self.end / scale,
            self.growth / scale,
            self.tolerance / scale,
            if self.flat() { "flat" } else { "NOT FLAT" }
        )
    }
}

/// Least-squares slope of `points` (x, y); 0 with fewer than two distinct x.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The flatness of RSS and of non-socket descriptors on every node, over the steady window.
pub fn flatness(samples: &[Sample], nodes: usize) -> Vec<Flatness> {
    let mut out = Vec::new();
    for node in 0..nodes {
        let steady: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.node == node && s.phase == Phase::Churn)
            .collect();
        type Pick = fn(&Sample) -> f64;
        let figures: [(&'static str, Pick); 2] = [
            ("rss_bytes", |s| s.rss_bytes as f64),
            ("non_socket_fds", |s| s.fds as f64 - s.sockets as f64),
        ];
        for (figure, pick) in figures {
            out.push(judge_series(node, figure, &steady, pick));
        }
    }
    out
}

fn judge_series(
    node: usize,
    figure: &'static str,
    steady: &[&Sample],
    pick: fn(&Sample) -> f64,
) -> Flatness {
    let half = steady.len() / 2;
    let first: Vec<f64> = steady[..half].iter().map(|s| pick(s)).collect();
    let second: Vec<(f64, f64)> = steady[half..].iter().map(|s| (s.t_s, pick(s))).collect();
    let tail_n = (steady.len() / 10).max(1).min(steady.len());
    let tail: Vec<f64> = steady[steady.len() - tail_n..]
        .iter()
        .map(|s| pick(s))
        .collect();
    let span = match (second.first(), second.last()) {
        (Some(a), Some(b)) => b.0 - a.0,
        _ => 0.0,
    };
    let settled = mean(&first);
    let tolerance = if figure == "rss_bytes" {
        (settled * RSS_TOLERANCE_FRACTION).max(RSS_TOLERANCE_FLOOR)
    } else {
        FD_TOLERANCE
    };
    Flatness {
        node,
        figure,
        settled,
        end: mean(&tail),
        growth: slope(&second) * span,
        tolerance,
        samples: second.len(),
    }
}

/// What an idle node must show, and what one showed.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct IdleCheck {
    /// Node index.
    pub node: usize,
    /// Descriptors before the churn.
    pub baseline_fds: u64,
    /// Live tasks before the churn.
    pub baseline_tasks: u64,
    /// The last idle reading.
    pub sockets: u64,
    /// Channels at the last idle reading.
    pub channels: u64,
    /// Connection tasks at the last idle reading.
    pub connection_tasks: u64,
    /// Descriptors at the last idle reading.
    pub fds: u64,
    /// Live tasks at the last idle reading.
    pub tasks: u64,
}

impl IdleCheck {
    /// Compares `last` with `baseline`.
    pub fn new(baseline: &Sample, last: &Sample) -> Self {
        Self {
            node: last.node,
            baseline_fds: baseline.fds,
            baseline_tasks: baseline.alive_tasks,
            sockets: last.sockets,
            channels: last.channels,
            connection_tasks: last.connection_tasks,
            fds: last.fds,
            tasks: last.alive_tasks,
        }
    }

    /// Why the node is not back to idle, or `None` when it is.
    pub fn problem(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.sockets != 0 {
            why.push(format!("{} sockets", self.sockets));
        }
        if self.channels != 0 {
            why.push(format!("{} channels", self.channels));
        }
        if self.connection_tasks != 0 {
            why.push(format!("{} connection tasks", self.connection_tasks));
        }
        if self.fds > self.baseline_fds + IDLE_FD_SLACK {
            why.push(format!(
                "{} fds (baseline {}, slack {IDLE_FD_SLACK})",
                self.fds, self.baseline_fds
            ));
        }
        if self.tasks > self.baseline_tasks + IDLE_TASK_SLACK {
            why.push(format!(
                "{} live tasks (baseline {}, slack {IDLE_TASK_SLACK})",
                self.tasks, self.baseline_tasks
            ));
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn churn(node: usize, t: f64, rss: u64, fds: u64, sockets: u64) -> Sample {
        Sample {
            t_s: t,
            node,
            phase: Phase::Churn,
            rss_bytes: rss,
            fds,
            sockets,
            ..Sample::default()
        }
    }

    #[test]
    fn slope_of_a_line_and_of_nothing() {
        let line: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 * x as f64 + 1.0)).collect();
        assert!((slope(&line) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&[(1.0, 5.0)]), 0.0);
        assert_eq!(slope(&[(1.0, 5.0), (1.0, 7.0)]), 0.0);
    }

    #[test]
    fn a_steady_node_is_flat_and_a_leaking_one_is_not() {
        const MIB: u64 = 1024 * 1024;
        // Sockets wander between 80 and 120; fds follow them exactly: flat.
        let steady: Vec<Sample> = (0..100)
            .map(|i| {
                let sockets = 80 + (i * 37 % 41);
                churn(0, i as f64, 30 * MIB + (i % 3) * MIB, 40 + sockets, sockets)
            })
            .collect();
        let f = flatness(&steady, 1);
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(Flatness::flat), "{f:?}");

        // 200 KiB and one descriptor more per sample: a leak of both.
        let leaking: Vec<Sample> = (0..100)
            .map(|i| churn(0, i as f64, 30 * MIB + i * 200 * 1024, 100 + i, 60))
            .collect();
        let f = flatness(&leaking, 1);
        assert!(f.iter().all(|x| !x.flat()), "{f:?}");
        assert!(f[1].growth > 40.0);
    }

    #[test]
    fn idle_needs_zero_counts_and_baseline_fds() {
        let base = Sample {
            fds: 20,
            alive_tasks: 10,
            ..Sample::default()
        };
        let mut last = Sample {
            fds: 22,
            alive_tasks: 14,
            ..Sample::default()
        };
        assert_eq!(IdleCheck::new(&base, &last).problem(), None);
        last.fds = 23;
        last.channels = 1;
        let why = IdleCheck::new(&base, &last).problem().expect("not idle");
        assert!(
            why.contains("1 channels") && why.contains("23 fds"),
            "{why}"
        );
    }
}

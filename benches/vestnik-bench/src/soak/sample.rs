//! One reading of one node: its RSS and open descriptors from `/proc`, and its own counts from
//! the Prometheus `/metrics` text (sockets, channels, users, tasks, queue depths). Also the CSV the
//! run writes, one row per reading.
//!
//! Reading only: this module never signals the process it reads.

use std::fmt::Write as _;
use std::net::SocketAddr;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::chaos::procs::{http_get, Footprint};

/// Where in the run a reading was taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Before any client connected.
    #[default]
    Baseline,
    /// Churning, before the warm-up ended: not judged.
    Warmup,
    /// Churning after the warm-up: the steady window that must be flat.
    Churn,
    /// The churn stopped and the clients left: must return to the baseline.
    Idle,
}

impl Phase {
    /// The phase named `name` in the CSV.
    pub fn parse(name: &str) -> Option<Self> {
        [Phase::Baseline, Phase::Warmup, Phase::Churn, Phase::Idle]
            .into_iter()
            .find(|p| p.name() == name)
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Baseline => "baseline",
            Phase::Warmup => "warmup",
            Phase::Churn => "churn",
            Phase::Idle => "idle",
        }
    }
}

/// One reading of one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    /// Node index.
    pub node: usize,
    /// Phase of the run.
    pub phase: Phase,
    /// Resident memory, bytes (`/proc/PID/status`).
    pub rss_bytes: u64,
    /// Open descriptors (`/proc/PID/fd`).
    pub fds: u64,
    /// `vestnik_sockets_connected`, summed over apps.
    pub sockets: u64,
    /// `vestnik_channels`.
    pub channels: u64,
    /// `vestnik_subscriptions`.
    pub subscriptions: u64,
    /// `vestnik_signed_in_users`.
    pub users: u64,
    /// `vestnik_connection_tasks`.
    pub connection_tasks: u64,
    /// `vestnik_runtime_alive_tasks`.
    pub alive_tasks: u64,
    /// `vestnik_runtime_global_queue_depth`.
    pub global_queue: u64,
    /// `vestnik_webhooks_pending`.
    pub webhooks_pending: u64,
}

/// The CSV header, in the order of [`Sample::csv_row`].
pub const CSV_HEADER: &str = "t_s,node,phase,rss_bytes,fds,sockets,channels,subscriptions,users,\
                              connection_tasks,alive_tasks,global_queue,webhooks_pending";

impl Sample {
    /// Reads node `node` (process `pid`, metrics on `metrics`) now.
    pub async fn read(node: usize, pid: u32, metrics: SocketAddr) -> Result<Self> {
        let fp = Footprint::read(pid).with_context(|| format!("reading /proc/{pid}"))?;
        let (status, body) = http_get(metrics, "/metrics").await?;
        anyhow::ensure!(status == 200, "node {node} /metrics answered {status}");
        let mut s = parse_metrics(&body);
        s.node = node;
        s.rss_bytes = fp.rss_bytes;
        s.fds = fp.fds;
        Ok(s)
    }

    /// The reading as a CSV row (no newline).
    pub fn csv_row(&self) -> String {
        let mut r = String::new();
        let _ = write!(
            r,
            "{:.1},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.t_s,
            self.node,
            self.phase.name(),
            self.rss_bytes,
            self.fds,
            self.sockets,
            self.channels,
            self.subscriptions,
            self.users,
            self.connection_tasks,
            self.alive_tasks,
            self.global_queue,
            self.webhooks_pending
        );
        r
    }
}

/// Reads the rows of a soak CSV back (to draw the plot again).
pub fn read_csv(text: &str) -> Result<Vec<Sample>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let bad = || anyhow::anyhow!("line {}: not a soak CSV row: {line}", i + 1);
        if f.len() != CSV_HEADER.split(',').count() {
            return Err(bad());
        }
        let n = |k: usize| f[k].parse::<u64>().map_err(|_| bad());
        out.push(Sample {
            t_s: f[0].parse().map_err(|_| bad())?,
            node: f[1].parse().map_err(|_| bad())?,
            phase: Phase::parse(f[2]).ok_or_else(bad)?,
            rss_bytes: n(3)?,
            fds: n(4)?,
            sockets: n(5)?,
            channels: n(6)?,
            subscriptions: n(7)?,
            users: n(8)?,
            connection_tasks: n(9)?,
            alive_tasks: n(10)?,
            global_queue: n(11)?,
            webhooks_pending: n(12)?,
        });
    }
    Ok(out)
}

/// The counts of a `/metrics` text, each family summed over its labels.
pub fn parse_metrics(text: &str) -> Sample {
    let mut s = Sample::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name_labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or(name_labels);
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let v = value.max(0.0) as u64;
        let slot = match name {
            "vestnik_sockets_connected" => &mut s.sockets,
            "vestnik_channels" => &mut s.channels,
            "vestnik_subscriptions" => &mut s.subscriptions,
            "vestnik_signed_in_users" => &mut s.users,
            "vestnik_connection_tasks" => &mut s.connection_tasks,
            "vestnik_runtime_alive_tasks" => &mut s.alive_tasks,
            "vestnik_runtime_global_queue_depth" => &mut s.global_queue,
            "vestnik_webhooks_pending" => &mut s.webhooks_pending,
            _ => continue,
        };
        *slot += v;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_families_over_labels_and_ignores_the_rest() {
        let text = "# TYPE vestnik_channels gauge\n\
                    vestnik_channels{app_id=\"a\"} 3\n\
                    vestnik_channels{app_id=\"b\"} 4\n\
                    vestnik_sockets_connected{app_id=\"a\"} 12\n\
                    vestnik_runtime_alive_tasks 40\n\
                    vestnik_connection_tasks 2\n\
                    vestnik_channels_other 99\n";
        let s = parse_metrics(text);
        assert_eq!(
            (s.channels, s.sockets, s.alive_tasks, s.connection_tasks),
            (7, 12, 40, 2)
        );
        let row = Sample { t_s: 1.5, ..s }.csv_row();
        assert_eq!(row.split(',').count(), CSV_HEADER.split(',').count());
        assert!(row.starts_with("1.5,0,baseline,"), "{row}");
        let back = read_csv(&format!("{CSV_HEADER}\n{row}\n")).expect("a valid row");
        assert_eq!(back, vec![Sample { t_s: 1.5, ..s }]);
        assert!(read_csv(&format!("{CSV_HEADER}\n1,2,3\n")).is_err());
    }
}

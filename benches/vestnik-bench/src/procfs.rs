//! Readings of another process (the broker) from `/proc`: CPU time and resident memory.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat`, in clock ticks converted with `getconf CLK_TCK`
//! (asked once). RSS is `VmRSS` from `/proc/PID/status`. This module only reads; it never signals or
//! otherwise touches the process it watches.

use std::io;
use std::process::Command;
use std::sync::OnceLock;

/// Clock ticks per second when `getconf` cannot be run: the value Linux uses on every common
/// architecture (`USER_HZ`).
const DEFAULT_CLK_TCK: u64 = 100;

/// Field index of `utime` among the fields that follow the `(comm)` of `/proc/PID/stat`; `stime`
/// follows it. (`utime` is field 14 of proc(5), and the first field after `comm` is field 3.)
const UTIME_AFTER_COMM: usize = 11;

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// User plus system CPU time so far, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

impl ProcSample {
    /// Reads `pid` now.
    pub fn read(pid: u32) -> io::Result<Self> {
        Ok(Self {
            cpu_ticks: cpu_ticks(pid)?,
            rss_bytes: rss_bytes(pid)?,
        })
    }

    /// CPU seconds spent between `earlier` and `self`.
    pub fn cpu_secs_since(&self, earlier: &ProcSample) -> f64 {
        self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / clk_tck() as f64
    }
}

/// Clock ticks per second, from `getconf CLK_TCK` (run once).
pub fn clk_tck() -> u64 {
    static TCK: OnceLock<u64> = OnceLock::new();
    *TCK.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &u64| t > 0)
            .unwrap_or(DEFAULT_CLK_TCK)
    })
}

fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // `comm` may hold spaces and parentheses, so split after its last `)`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other("missing utime/stime in /proc/PID/stat"))
    };
    Ok(field(UTIME_AFTER_COMM)? + field(UTIME_AFTER_COMM + 1)?)
}

fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

/// The soft "Max open files" limit of `pid`, from `/proc/PID/limits`, if readable and finite.
pub fn max_open_files(pid: u32) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Per-core jiffies from `/proc/stat`: the whole machine, including the softirq time that loopback
/// TCP costs and that no process is charged for.
#[derive(Debug, Clone, Default)]
pub struct CoreTimes(Vec<(String, Vec<u64>)>);

/// How busy one core was between two [`CoreTimes`].
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CoreUse {
    /// `cpu0`, `cpu1`, ...
    pub cpu: String,
    /// Fraction of the time not idle (softirq included).
    pub busy: f64,
    /// Fraction of the time in softirq (network processing).
    pub softirq: f64,
}

/// Column of `idle`, `iowait` and `softirq` among the numbers of a `/proc/stat` cpu line.
const IDLE: usize = 3;
const IOWAIT: usize = 4;
const SOFTIRQ: usize = 6;

impl CoreTimes {
    /// Reads `/proc/stat` now (empty if unreadable).
    pub fn read() -> Self {
        let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
            return Self::default();
        };
        Self(
            stat.lines()
                .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let name = f.next()?.to_owned();
                    Some((name, f.filter_map(|v| v.parse().ok()).collect()))
                })
                .collect(),
        )
    }

    /// Use of each core from `earlier` to `self`.
    pub fn since(&self, earlier: &CoreTimes) -> Vec<CoreUse> {
        self.0
            .iter()
            .filter_map(|(name, now)| {
                let (_, then) = earlier.0.iter().find(|(n, _)| n == name)?;
                let d: Vec<u64> = now
                    .iter()
                    .zip(then)
                    .map(|(a, b)| a.saturating_sub(*b))
                    .collect();
                // Guest time is already counted in user time.
                let total: u64 = d.iter().take(8).sum();
                if total == 0 || d.len() <= SOFTIRQ {
                    return None;
                }
                let idle = d[IDLE] + d[IOWAIT];
                Some(CoreUse {
                    cpu: name.clone(),
                    busy: 1.0 - idle as f64 / total as f64,
                    softirq: d[SOFTIRQ] as f64 / total as f64,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcSample::read(std::process::id()).expect("own /proc entry is readable");
        assert!(s.rss_bytes > 0);
        assert!(clk_tck() > 0);
        assert!(max_open_files(std::process::id()).is_some());
        let t = CoreTimes::read();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {}
        let used = CoreTimes::read().since(&t);
        assert!(!used.is_empty());
        assert!(used.iter().all(|c| (0.0..=1.0).contains(&c.busy)));
    }
}

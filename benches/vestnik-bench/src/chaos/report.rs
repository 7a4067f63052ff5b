//! The chaos run's report: every figure, the human table, the JSON, and the verdict (which
//! guaranteed figures were violated).
//!
//! The verdict's rules are written once, here, with their tolerances; the run only gathers the
//! figures. Secrets are never part of a report.

use std::fmt::Write as _;

use serde::Serialize;

use super::ledger::Delivery;
use super::procs::{Backbone, Footprint};
use super::roster::{HookCheck, NodeRoster};
use super::schedule::Fault;

/// Growth of a node's RSS over the run tolerated before it is called a leak: allocator arenas and
/// caches settle within this on a run of minutes.
pub const RSS_TOLERANCE_BYTES: u64 = 64 * 1024 * 1024;
/// Growth of a node's open descriptors tolerated (sockets closing in the kernel's time, spool
/// files).
pub const FD_TOLERANCE: u64 = 16;

/// A fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct FaultLog {
    /// The planned fault.
    #[serde(flatten)]
    pub fault: Fault,
    /// When it struck, seconds from the start of publishing.
    pub started_s: f64,
    /// When it was over (the node ready, the backbone reconnected), seconds.
    pub recovered_s: f64,
    /// What happened, in words.
    pub note: String,
}

/// One node's figures.
#[derive(Debug, Clone, Serialize)]
pub struct NodeFigures {
    /// Node index.
    pub node: usize,
    /// Processes started (more than 1: it was killed and restarted).
    pub incarnations: u32,
    /// Before the first fault.
    pub before: Footprint,
    /// After the faults settled.
    pub after: Footprint,
    /// `vestnik_adapter_lost_total`, summed over its incarnations.
    pub adapter_lost: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// The scenario name.
    pub scenario: &'static str,
    /// The backbone.
    pub adapter: Backbone,
    /// The schedule's seed.
    pub seed: u64,
    /// Publishing time, seconds.
    pub duration_s: f64,
    /// Offered events per second.
    pub rate: f64,
    /// The relay hold the run held the broker to, ms (0: none).
    pub relay_hold_ms: u64,
    /// Faults, in order.
    pub faults: Vec<FaultLog>,
    /// Sockets in the run, and those connected throughout (counted below).
    pub sockets: usize,
    /// Deliveries to the sockets connected throughout.
    pub delivery: Delivery,
    /// The nodes' own count of cluster messages not relayed, summed.
    pub adapter_lost_total: u64,
    /// Whether the nodes' counters account for every event lost in an outage
    /// (`adapter_lost_total >= events_lost_in_outage`: the counters also count heartbeats and
    /// presence messages, so they may be larger, never smaller).
    pub lost_counters_agree: bool,
    /// Presence, per node, after the settle time.
    pub presence: Vec<NodeRoster>,
    /// Presence members really connected at the check.
    pub members: usize,
    /// Webhooks.
    pub webhooks: HookCheck,
    /// Webhook requests with a bad signature.
    pub webhook_bad_signatures: u64,
    /// Whether a node was killed (webhook duplicates are then allowed: at-least-once).
    pub a_node_was_killed: bool,
    /// Slow readers opened, and how many the brokers closed.
    pub slow_readers: usize,
    /// Slow readers closed by their broker.
    pub slow_readers_closed: usize,
    /// Nodes.
    pub nodes: Vec<NodeFigures>,
    /// Guaranteed figures that were violated; empty when the run passed.
    pub violations: Vec<String>,
}

impl ChaosReport {
    /// Fills `violations` from the figures.
    pub fn judge(&mut self) {
        let mut v = Vec::new();
        let d = &self.delivery;
        if d.sockets == 0 {
            v.push("no socket stayed connected throughout: nothing was measured".to_owned());
        }
        if d.lost > 0 {
            v.push(format!(
                "{} deliveries lost outside every outage window",
                d.lost
            ));
        }
        if d.duplicates > 0 {
            v.push(format!("{} duplicate deliveries", d.duplicates));
        }
        if d.out_of_order > 0 {
            v.push(format!(
                "{} deliveries out of order within a stream",
                d.out_of_order
            ));
        }
        if self.relay_hold_ms > 0 {
            let backbone: u64 = d
                .lost_in_outage
                .iter()
                .filter(|(k, _)| k.as_str() == "backbone" || k.as_str() == "cut")
                .map(|(_, n)| n)
                .sum();
            if backbone > 0 {
                v.push(format!(
                    "{backbone} deliveries lost in backbone outages, which a {} ms relay hold must cover",
                    self.relay_hold_ms
                ));
            }
        }
        if !self.lost_counters_agree {
            v.push(format!(
                "{} events lost in outages but the nodes counted only {} as not relayed (silent loss)",
                d.events_lost_in_outage, self.adapter_lost_total
            ));
        }
        for r in &self.presence {
            if r.unanswered {
                v.push(format!("node {} did not answer the presence query", r.node));
            }
            if !r.ghosts.is_empty() {
                v.push(format!("node {} lists ghosts {:?}", r.node, r.ghosts));
            }
            if !r.missing.is_empty() {
                v.push(format!("node {} misses members {:?}", r.node, r.missing));
            }
        }
        let w = &self.webhooks;
        if !w.lost_members.is_empty() {
            v.push(format!("member webhooks lost for {:?}", w.lost_members));
        }
        if !w.lost_occupancy.is_empty() {
            v.push(format!(
                "occupancy webhooks lost for {:?}",
                w.lost_occupancy
            ));
        }
        if w.duplicates > 0 && !self.a_node_was_killed {
            v.push(format!(
                "{} duplicate webhook ids with no node killed",
                w.duplicates
            ));
        }
        if self.webhook_bad_signatures > 0 {
            v.push(format!(
                "{} webhook requests with a bad signature",
                self.webhook_bad_signatures
            ));
        }
        for n in &self.nodes {
            if n.incarnations != 1 {
                continue;
            }
            let rss = n.after.rss_bytes.saturating_sub(n.before.rss_bytes);
            if rss > RSS_TOLERANCE_BYTES {
                v.push(format!("node {} RSS grew by {} MiB", n.node, rss >> 20));
            }
            let fds = n.after.fds.saturating_sub(n.before.fds);
            if fds > FD_TOLERANCE {
                v.push(format!("node {} holds {fds} more descriptors", n.node));
            }
        }
        self.violations = v;
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let d = &self.delivery;
        let _ = writeln!(
            s,
            "chaos: {:?} backbone, seed {}, {:.0} s at {} events/s",
            self.adapter, self.seed, self.duration_s, self.rate
        );
        let _ = writeln!(s, "faults:");
        for f in &self.faults {
            let _ = writeln!(
                s,
                "  {:>6.1}s → {:>6.1}s  {}",
                f.started_s, f.recovered_s, f.note
            );
        }
        let _ = writeln!(s, "events");
        let _ = writeln!(s, "  accepted (200)                  {:>10}", d.accepted);
        let _ = writeln!(s, "  refused / timed out             {:>10}", d.refused);
        let _ = writeln!(
            s,
            "  accepted in an outage window    {:>10}",
            d.accepted_in_outage
        );
        let _ = writeln!(
            s,
            "sockets connected throughout      {:>10} of {}",
            d.sockets, self.sockets
        );
        let _ = writeln!(s, "  deliveries owed                 {:>10}", d.expected);
        let _ = writeln!(s, "  delivered                       {:>10}", d.delivered);
        let _ = writeln!(s, "  lost outside outages            {:>10}", d.lost);
        for (cause, n) in &d.lost_in_outage {
            let _ = writeln!(
                s,
                "  lost in {cause:<24}{n:>10}",
                cause = format!("{cause} outage")
            );
        }
        let _ = writeln!(
            s,
            "  events lost in outages          {:>10}  (nodes' adapter_lost_total {}: {})",
            d.events_lost_in_outage,
            self.adapter_lost_total,
            if self.lost_counters_agree {
                "accounts for them"
            } else {
                "SILENT LOSS"
            }
        );
        for l in &d.lost_samples {
            let _ = writeln!(
                s,
                "    lost: stream {} (node {}) seq {} sent at {:.1} s, missed by {} sockets",
                l.stream,
                l.node,
                l.seq,
                l.sent_ms as f64 / 1000.0,
                l.sockets
            );
        }
        let _ = writeln!(s, "  events lost at a kill           {:>10}  (queued in the killed process; no counter survives)", d.events_lost_at_kill);
        let _ = writeln!(s, "  duplicated                      {:>10}", d.duplicates);
        let _ = writeln!(
            s,
            "  out of order (per stream)       {:>10}",
            d.out_of_order
        );
        let _ = writeln!(s, "  received though not confirmed   {:>10}", d.unconfirmed);
        let _ = writeln!(s, "presence ({} members connected)", self.members);
        for r in &self.presence {
            let _ = writeln!(
                s,
                "  node {}  ghosts {:>3}  missing {:>3}{}",
                r.node,
                r.ghosts.len(),
                r.missing.len(),
                if r.unanswered { "  NO ANSWER" } else { "" }
            );
        }
        let w = &self.webhooks;
        let _ = writeln!(s, "webhooks: {} received, {} duplicate ids{}, {} member and {} occupancy lost, {} bad signatures", w.received, w.duplicates, if self.a_node_was_killed && w.duplicates > 0 { " (allowed: a node was killed)" } else { "" }, w.lost_members.len(), w.lost_occupancy.len(), self.webhook_bad_signatures);
        let _ = writeln!(
            s,
            "slow readers: {} opened, {} closed by their broker",
            self.slow_readers, self.slow_readers_closed
        );
        let _ = writeln!(
            s,
            "nodes            RSS before → after       fds before → after   adapter lost"
        );
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "  node {}{:<9} {:>7.1} → {:>7.1} MiB  {:>6} → {:<6}   {:>10}",
                n.node,
                if n.incarnations > 1 {
                    format!(" (x{})", n.incarnations)
                } else {
                    String::new()
                },
                mib(n.before.rss_bytes),
                mib(n.after.rss_bytes),
                n.before.fds,
                n.after.fds,
                n.adapter_lost
            );
        }
        if self.violations.is_empty() {
            let _ = writeln!(s, "PASS: no guaranteed figure violated");
        } else {
            for v in &self.violations {
                let _ = writeln!(s, "FAIL: {v}");
            }
        }
        s
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

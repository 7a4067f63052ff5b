//! The fault schedule: which fault strikes when, drawn from a seed so that a run can be repeated.
//!
//! Pure: no clock, no IO. The node faults (kill, stop, backbone restart, backbone cut) follow one
//! another without overlapping, each followed by a recovery time, and cycle through a seeded
//! permutation of the four kinds so that a short run still sees each kind once when it has room.
//! Client faults (a socket cut and reconnected, a socket that stops reading) strike in between at
//! their own pace. Node 0 is never a victim: its sockets are the control group that stays connected
//! throughout. This module must never read the clock or the environment: the same seed and sizes
//! give the same schedule.

use std::time::Duration;

/// A small deterministic generator (SplitMix64): the schedule must not change when a dependency's
/// generator changes its algorithm.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// A duration in `lo..=hi`, to the millisecond.
    pub fn millis(&mut self, lo: Duration, hi: Duration) -> Duration {
        Duration::from_millis(self.range(as_ms(lo), as_ms(hi)))
    }
}

fn as_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// SIGKILL the node, restart it after the fault's length.
    KillNode {
        /// Node index.
        node: usize,
    },
    /// SIGSTOP the node for the fault's length (longer than `node_timeout_ms`), then SIGCONT.
    StopNode {
        /// Node index.
        node: usize,
    },
    /// Stop the backbone (SIGKILL) and start it again on the same port after the fault's length.
    BackboneRestart,
    /// The node's proxy to the backbone drops its connections and refuses new ones for the length.
    CutNode {
        /// Node index.
        node: usize,
    },
    /// One of the node's churn sockets is dropped without a close frame; it reconnects.
    ClientCut {
        /// Node index.
        node: usize,
    },
    /// A new socket on the node subscribes and then never reads again.
    SlowReader {
        /// Node index.
        node: usize,
    },
}

impl FaultKind {
    /// The node a node fault cuts off from the cluster (its sockets are then not "connected
    /// throughout"); `None` for the backbone and for client faults.
    pub fn isolates(self) -> Option<usize> {
        match self {
            FaultKind::KillNode { node }
            | FaultKind::StopNode { node }
            | FaultKind::CutNode { node } => Some(node),
            FaultKind::BackboneRestart
            | FaultKind::ClientCut { .. }
            | FaultKind::SlowReader { .. } => None,
        }
    }
}

/// The classes of fault a run may inject (`--faults`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum FaultClass {
    /// SIGKILL a node and restart it.
    Kill,
    /// SIGSTOP a node past `node_timeout_ms`, then SIGCONT.
    Stop,
    /// Restart the backbone.
    Backbone,
    /// Cut one node from the backbone.
    Cut,
    /// Cut a socket; it reconnects.
    ClientCut,
    /// A socket that stops reading.
    SlowReader,
}

/// One fault: when it strikes (from the start of publishing), how long it lasts, what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Fault {
    /// Offset from the start of publishing.
    #[serde(serialize_with = "ser_ms")]
    pub at: Duration,
    /// How long the fault lasts (0 for instant client faults).
    #[serde(serialize_with = "ser_ms")]
    pub length: Duration,
    /// What it does.
    pub kind: FaultKind,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(as_ms(*d))
}

/// The sizes a schedule is drawn within.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The fault classes to draw from.
    pub classes: Vec<FaultClass>,
    /// Publishing time; every fault ends before it does.
    pub duration: Duration,
    /// Nodes in the cluster (at least 2: node 0 is never a victim).
    pub nodes: usize,
    /// The cluster's `node_timeout_ms`: a stopped node stays stopped longer than this.
    pub node_timeout: Duration,
    /// Quiet time before the first fault, so that every socket is counted in a calm cluster first.
    pub warmup: Duration,
    /// Time after a node fault ends before the next one starts (restart, rejoin, resync).
    pub recovery: Duration,
}

/// Gap between two node faults, on top of the recovery time.
const GAP: (Duration, Duration) = (Duration::from_millis(1000), Duration::from_millis(4000));
/// Gap between two client faults.
const CLIENT_GAP: (Duration, Duration) = (Duration::from_millis(2000), Duration::from_millis(6000));
/// How long a killed node stays down before its restart.
const KILL_DOWN: (Duration, Duration) = (Duration::from_millis(500), Duration::from_millis(3000));
/// How much longer than `node_timeout` a stopped node stays stopped.
const STOP_EXTRA: (Duration, Duration) = (Duration::from_millis(1000), Duration::from_millis(3000));
/// How long the backbone stays down.
const BACKBONE_DOWN: (Duration, Duration) =
    (Duration::from_millis(1000), Duration::from_millis(4000));
/// How long a node stays cut from the backbone.
const CUT: (Duration, Duration) = (Duration::from_millis(1500), Duration::from_millis(5000));

/// Draws the schedule for `plan` from `seed`, sorted by start time.
pub fn schedule(seed: u64, plan: &Plan) -> Vec<Fault> {
    let mut rng = SplitMix64::new(seed);
    let mut faults = Vec::new();
    let victims = plan.nodes.saturating_sub(1) as u64;
    if victims == 0 {
        return faults;
    }
    let victim = |rng: &mut SplitMix64| 1 + usize::try_from(rng.range(0, victims - 1)).unwrap_or(0);

    let node_classes: Vec<FaultClass> = [
        FaultClass::Kill,
        FaultClass::Stop,
        FaultClass::Backbone,
        FaultClass::Cut,
    ]
    .into_iter()
    .filter(|c| plan.classes.contains(c))
    .collect();
    let mut order: Vec<FaultClass> = Vec::new();
    let mut t = plan.warmup;
    while !node_classes.is_empty() {
        if order.is_empty() {
            order = node_classes.clone();
            // Fisher-Yates, seeded.
            for i in (1..order.len()).rev() {
                let j = usize::try_from(rng.range(0, i as u64)).unwrap_or(0);
                order.swap(i, j);
            }
        }
        let which = order.pop().expect("refilled just above");
        let (kind, length) = match which {
            FaultClass::Kill => (
                FaultKind::KillNode {
                    node: victim(&mut rng),
                },
                rng.millis(KILL_DOWN.0, KILL_DOWN.1),
            ),
            FaultClass::Stop => (
                FaultKind::StopNode {
                    node: victim(&mut rng),
                },
                plan.node_timeout + rng.millis(STOP_EXTRA.0, STOP_EXTRA.1),
            ),
            FaultClass::Backbone => (
                FaultKind::BackboneRestart,
                rng.millis(BACKBONE_DOWN.0, BACKBONE_DOWN.1),
            ),
            FaultClass::Cut | FaultClass::ClientCut | FaultClass::SlowReader => (
                FaultKind::CutNode {
                    node: victim(&mut rng),
                },
                rng.millis(CUT.0, CUT.1),
            ),
        };
        if t + length > plan.duration {
            break;
        }
        faults.push(Fault {
            at: t,
            length,
            kind,
        });
        t += length + plan.recovery + rng.millis(GAP.0, GAP.1);
    }

    let client_classes: Vec<FaultClass> = [FaultClass::ClientCut, FaultClass::SlowReader]
        .into_iter()
        .filter(|c| plan.classes.contains(c))
        .collect();
    let mut t = plan.warmup + rng.millis(CLIENT_GAP.0, CLIENT_GAP.1);
    while t < plan.duration && !client_classes.is_empty() {
        let node = usize::try_from(rng.range(0, plan.nodes as u64 - 1)).unwrap_or(0);
        let pick = usize::try_from(rng.range(0, client_classes.len() as u64 - 1)).unwrap_or(0);
        let kind = match client_classes[pick] {
            FaultClass::ClientCut => FaultKind::ClientCut { node },
            FaultClass::SlowReader => FaultKind::SlowReader { node },
            FaultClass::Kill | FaultClass::Stop | FaultClass::Backbone | FaultClass::Cut => {
                unreachable!("client_classes holds client fault classes only")
            }
        };
        faults.push(Fault {
            at: t,
            length: Duration::ZERO,
            kind,
        });
        t += rng.millis(CLIENT_GAP.0, CLIENT_GAP.1);
    }
    faults.sort_by_key(|f| f.at);
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [FaultClass; 6] = [
        FaultClass::Kill,
        FaultClass::Stop,
        FaultClass::Backbone,
        FaultClass::Cut,
        FaultClass::ClientCut,
        FaultClass::SlowReader,
    ];

    fn plan(secs: u64) -> Plan {
        Plan {
            classes: ALL.to_vec(),
            duration: Duration::from_secs(secs),
            nodes: 3,
            node_timeout: Duration::from_secs(3),
            warmup: Duration::from_secs(3),
            recovery: Duration::from_secs(3),
        }
    }

    #[test]
    fn same_seed_same_schedule_other_seed_other_schedule() {
        let p = plan(60);
        assert_eq!(schedule(7, &p), schedule(7, &p));
        assert_ne!(schedule(7, &p), schedule(8, &p));
    }

    #[test]
    fn node_faults_spare_node_zero_do_not_overlap_and_end_in_time() {
        for seed in 0..200 {
            let p = plan(60);
            let faults = schedule(seed, &p);
            let node_faults: Vec<&Fault> = faults
                .iter()
                .filter(|f| f.length > Duration::ZERO)
                .collect();
            for f in &faults {
                assert!(
                    f.at >= p.warmup,
                    "seed {seed}: {f:?} before the warm-up ends"
                );
                assert!(
                    f.at + f.length <= p.duration,
                    "seed {seed}: {f:?} ends late"
                );
                assert_ne!(
                    f.kind.isolates(),
                    Some(0),
                    "seed {seed}: node 0 is a victim"
                );
            }
            for w in node_faults.windows(2) {
                assert!(
                    w[0].at + w[0].length + p.recovery <= w[1].at,
                    "seed {seed}: {:?} and {:?} overlap",
                    w[0],
                    w[1]
                );
            }
        }
    }

    #[test]
    fn a_minute_sees_every_node_fault_kind_and_stops_outlast_the_node_timeout() {
        for seed in 0..50 {
            let p = plan(60);
            let faults = schedule(seed, &p);
            let has = |pred: fn(&FaultKind) -> bool| faults.iter().any(|f| pred(&f.kind));
            assert!(
                has(|k| matches!(k, FaultKind::KillNode { .. })),
                "seed {seed}"
            );
            assert!(
                has(|k| matches!(k, FaultKind::StopNode { .. })),
                "seed {seed}"
            );
            assert!(
                has(|k| matches!(k, FaultKind::BackboneRestart)),
                "seed {seed}"
            );
            assert!(
                has(|k| matches!(k, FaultKind::CutNode { .. })),
                "seed {seed}"
            );
            assert!(
                has(|k| matches!(k, FaultKind::ClientCut { .. })),
                "seed {seed}"
            );
            for f in &faults {
                if matches!(f.kind, FaultKind::StopNode { .. }) {
                    assert!(f.length > p.node_timeout, "seed {seed}: {f:?}");
                }
            }
        }
    }

    #[test]
    fn only_the_chosen_classes_are_drawn() {
        let mut p = plan(60);
        p.classes = vec![FaultClass::Kill, FaultClass::ClientCut];
        let faults = schedule(3, &p);
        assert!(faults.len() > 2);
        assert!(faults.iter().all(|f| matches!(
            f.kind,
            FaultKind::KillNode { .. } | FaultKind::ClientCut { .. }
        )));
        p.classes.clear();
        assert!(schedule(3, &p).is_empty());
    }

    #[test]
    fn a_single_node_gets_no_faults() {
        let mut p = plan(60);
        p.nodes = 1;
        assert!(schedule(1, &p).is_empty());
    }
}

//! Exact accounting of numbered events: what each publisher had accepted, what each socket received,
//! and from the two, what was delivered, lost, duplicated or out of order.
//!
//! A *stream* is one publisher: one channel through one node, numbering its events 0, 1, 2, … and
//! sending each only after the previous call was answered. Order is promised per stream only (two
//! nodes relay through separate backbone connections, so events of two streams may interleave), so
//! out-of-order is counted per stream. A loss is *explained* when the event was accepted inside an
//! outage window (its node could not reach the backbone, or was killed right after); every other
//! loss at a socket connected throughout is a violation. Pure: no IO, no clock.

use std::collections::{BTreeMap, HashMap, HashSet};

/// A publisher's outcome for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Sequence number within the stream.
    pub seq: u64,
    /// When the call was sent, µs on the run's clock.
    pub sent_us: u64,
    /// When it was answered, µs.
    pub answered_us: u64,
    /// Answered 200.
    pub accepted: bool,
}

/// What one socket received of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamLog {
    seen: HashSet<u64>,
    max: Option<u64>,
    /// Receipts of a sequence number already received.
    pub duplicates: u64,
    /// Receipts of a sequence number lower than one received before (first receipts only).
    pub out_of_order: u64,
}

impl StreamLog {
    /// Records a receipt of `seq`.
    pub fn record(&mut self, seq: u64) {
        if !self.seen.insert(seq) {
            self.duplicates += 1;
            return;
        }
        if self.max.is_some_and(|m| seq < m) {
            self.out_of_order += 1;
        }
        self.max = Some(self.max.map_or(seq, |m| m.max(seq)));
    }

    /// Whether `seq` was received.
    pub fn has(&self, seq: u64) -> bool {
        self.seen.contains(&seq)
    }
}

/// What one socket received, by stream.
#[derive(Debug, Clone, Default)]
pub struct SocketLog {
    /// Stream id to its log.
    pub streams: HashMap<u32, StreamLog>,
}

impl SocketLog {
    /// Records a receipt of `seq` on `stream`.
    pub fn record(&mut self, stream: u32, seq: u64) {
        self.streams.entry(stream).or_default().record(seq);
    }
}

/// Why a node's accepted events may not have reached the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutageCause {
    /// The backbone was down (every node), until every node was connected again.
    Backbone,
    /// The node was cut from the backbone, until it was connected again.
    Cut,
    /// The node was killed: relays it had queued but not sent died with it.
    Kill,
    /// The node was stopped (SIGSTOP), until it was connected again after SIGCONT: relays it had
    /// queued may time out when it resumes.
    Stop,
    /// A backbone restart or a cut after which the link came back only once the relay hold had
    /// run out: what was held past the hold is lost, and must be counted, not delivered.
    PastHold,
}

/// A time when events accepted by `node` (or by any node, when `None`) may not reach the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// The node, or `None` for all of them.
    pub node: Option<usize>,
    /// Start, µs.
    pub from_us: u64,
    /// End, µs.
    pub to_us: u64,
    /// Why.
    pub cause: OutageCause,
}

impl Outage {
    /// Whether an event that `node` handled between `sent_us` and `answered_us` falls in this
    /// outage.
    fn covers(&self, node: usize, sent_us: u64, answered_us: u64) -> bool {
        self.node.is_none_or(|n| n == node) && sent_us <= self.to_us && answered_us >= self.from_us
    }
}

/// One stream's identity and its publisher's outcomes.
#[derive(Debug, Clone)]
pub struct StreamRecord {
    /// Stream id (as carried in the events).
    pub id: u32,
    /// The node the publisher called.
    pub node: usize,
    /// Every call, in order.
    pub published: Vec<Published>,
}

/// The counts over the sockets connected throughout.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Delivery {
    /// Events accepted (200) over all streams.
    pub accepted: u64,
    /// Calls not answered 200.
    pub refused: u64,
    /// Accepted events inside an outage window (by the publishing node's own outage, or the
    /// backbone's).
    pub accepted_in_outage: u64,
    /// Sockets counted.
    pub sockets: u64,
    /// Deliveries owed: accepted events times sockets.
    pub expected: u64,
    /// Distinct owed events received.
    pub delivered: u64,
    /// Owed and not received, accepted outside every outage window: violations.
    pub lost: u64,
    /// Owed and not received, accepted inside an outage window, by cause.
    pub lost_in_outage: BTreeMap<String, u64>,
    /// Distinct events (stream, seq) lost at one socket or more in a backbone, cut or stop outage:
    /// those a live node should have counted as not relayed.
    pub events_lost_in_outage: u64,
    /// Distinct events lost at one socket or more because their node was killed right after
    /// accepting them: no counter survives to count them.
    pub events_lost_at_kill: u64,
    /// Receipts of an event already received.
    pub duplicates: u64,
    /// First receipts of an event older than one already received from the same stream.
    pub out_of_order: u64,
    /// Receipts of events whose call was not answered 200 (a timed-out call the node still served).
    pub unconfirmed: u64,
    /// The first losses outside every outage (up to [`LOST_SAMPLES`]), to look up in the logs.
    pub lost_samples: Vec<LostSample>,
}

/// Losses described one by one in a report, at most.
pub const LOST_SAMPLES: usize = 20;

/// One event lost outside every outage, at one socket or more.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LostSample {
    /// Its stream.
    pub stream: u32,
    /// The node it was published through.
    pub node: usize,
    /// Its sequence number.
    pub seq: u64,
    /// When its call was sent, ms from `origin_us`.
    pub sent_ms: u64,
    /// Sockets that missed it.
    pub sockets: u64,
}

/// Counts `sockets` (those connected throughout) against `streams`, explaining losses by `outages`;
/// sample times are given from `origin_us`.
pub fn account(
    streams: &[StreamRecord],
    sockets: &[&SocketLog],
    outages: &[Outage],
    origin_us: u64,
) -> Delivery {
    let mut d = Delivery {
        sockets: sockets.len() as u64,
        ..Delivery::default()
    };
    let empty = StreamLog::default();
    for stream in streams {
        let cause_of = |p: &Published| {
            outages
                .iter()
                .filter(|o| o.covers(stream.node, p.sent_us, p.answered_us))
                .map(|o| o.cause)
                .min()
        };
        for p in &stream.published {
            if !p.accepted {
                d.refused += 1;
                d.unconfirmed += sockets
                    .iter()
                    .filter(|s| s.streams.get(&stream.id).is_some_and(|l| l.has(p.seq)))
                    .count() as u64;
                continue;
            }
            d.accepted += 1;
            let cause = cause_of(p);
            if cause.is_some() {
                d.accepted_in_outage += 1;
            }
            let mut lost_here = false;
            let mut missed = 0;
            for s in sockets {
                d.expected += 1;
                let log = s.streams.get(&stream.id).unwrap_or(&empty);
                if log.has(p.seq) {
                    d.delivered += 1;
                } else if let Some(cause) = cause {
                    *d.lost_in_outage.entry(cause_name(cause)).or_default() += 1;
                    lost_here = true;
                } else {
                    d.lost += 1;
                    missed += 1;
                }
            }
            if missed > 0 && d.lost_samples.len() < LOST_SAMPLES {
                d.lost_samples.push(LostSample {
                    stream: stream.id,
                    node: stream.node,
                    seq: p.seq,
                    sent_ms: p.sent_us.saturating_sub(origin_us) / 1000,
                    sockets: missed,
                });
            }
            if lost_here {
                match cause {
                    Some(OutageCause::Kill) => d.events_lost_at_kill += 1,
                    Some(
                        OutageCause::Backbone
                        | OutageCause::Cut
                        | OutageCause::Stop
                        | OutageCause::PastHold,
                    )
                    | None => {
                        d.events_lost_in_outage += 1;
                    }
                }
            }
        }
    }
    for s in sockets {
        for log in s.streams.values() {
            d.duplicates += log.duplicates;
            d.out_of_order += log.out_of_order;
        }
    }
    d
}

fn cause_name(c: OutageCause) -> String {
    match c {
        OutageCause::Backbone => "backbone",
        OutageCause::Cut => "cut",
        OutageCause::Kill => "kill",
        OutageCause::Stop => "stop",
        OutageCause::PastHold => "past-hold",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(seq: u64, at: u64) -> Published {
        Published {
            seq,
            sent_us: at,
            answered_us: at + 10,
            accepted: true,
        }
    }

    fn log_of(stream: u32, seqs: &[u64]) -> SocketLog {
        let mut l = SocketLog::default();
        for &s in seqs {
            l.record(stream, s);
        }
        l
    }

    #[test]
    fn counts_delivered_lost_duplicated_and_out_of_order() {
        let streams = vec![StreamRecord {
            id: 1,
            node: 0,
            published: (0..5).map(|s| ok(s, s * 100)).collect(),
        }];
        let a = log_of(1, &[0, 1, 2, 3, 4]);
        let b = log_of(1, &[0, 2, 1, 1, 4]); // 3 lost, 1 out of order, 1 twice
        let d = account(&streams, &[&a, &b], &[], 0);
        assert_eq!(d.accepted, 5);
        assert_eq!(d.expected, 10);
        assert_eq!(d.delivered, 9);
        assert_eq!(d.lost, 1);
        assert_eq!(
            d.lost_samples,
            vec![LostSample {
                stream: 1,
                node: 0,
                seq: 3,
                sent_ms: 0,
                sockets: 1
            }]
        );
        assert_eq!(d.duplicates, 1);
        assert_eq!(d.out_of_order, 1);
        assert!(d.lost_in_outage.is_empty());
    }

    #[test]
    fn losses_inside_an_outage_of_the_publishing_node_are_explained_others_are_not() {
        let streams = vec![
            StreamRecord {
                id: 1,
                node: 1,
                published: (0..4).map(|s| ok(s, s * 1000)).collect(),
            },
            StreamRecord {
                id: 2,
                node: 2,
                published: (0..4).map(|s| ok(s, s * 1000)).collect(),
            },
        ];
        // Node 1 was cut from 1500 to 2500 µs: its seq 2 (sent at 2000) is explained.
        let outages = [Outage {
            node: Some(1),
            from_us: 1500,
            to_us: 2500,
            cause: OutageCause::Cut,
        }];
        let mut s = log_of(1, &[0, 1, 3]);
        s.record(2, 0);
        s.record(2, 1);
        s.record(2, 3); // node 2's seq 2 lost outside any outage of node 2
        let d = account(&streams, &[&s], &outages, 0);
        assert_eq!(d.accepted_in_outage, 1);
        assert_eq!(d.lost_in_outage.get("cut"), Some(&1));
        assert_eq!(d.events_lost_in_outage, 1);
        assert_eq!(d.lost, 1);
    }

    #[test]
    fn a_backbone_outage_covers_every_node_and_refused_calls_are_not_owed() {
        let streams = vec![StreamRecord {
            id: 3,
            node: 2,
            published: vec![
                ok(0, 0),
                Published {
                    seq: 1,
                    sent_us: 100,
                    answered_us: 9000,
                    accepted: false,
                },
                ok(2, 5000),
            ],
        }];
        let outages = [Outage {
            node: None,
            from_us: 4000,
            to_us: 6000,
            cause: OutageCause::Backbone,
        }];
        let s = log_of(3, &[0, 1]); // seq 1 arrived though its call timed out
        let d = account(&streams, &[&s], &outages, 0);
        assert_eq!((d.accepted, d.refused, d.unconfirmed), (2, 1, 1));
        assert_eq!(d.lost, 0);
        assert_eq!(d.lost_in_outage.get("backbone"), Some(&1));
    }

    #[test]
    fn a_link_down_past_the_hold_is_counted_apart_from_the_hold_it_outlived() {
        let streams = vec![StreamRecord {
            id: 1,
            node: 0,
            published: vec![ok(0, 0), ok(1, 5000)],
        }];
        let outages = [Outage {
            node: Some(0),
            from_us: 4000,
            to_us: 6000,
            cause: OutageCause::PastHold,
        }];
        let d = account(&streams, &[&log_of(1, &[0])], &outages, 0);
        assert_eq!(d.lost_in_outage.get("past-hold"), Some(&1));
        assert_eq!(d.lost_in_outage.get("cut"), None);
        assert_eq!(
            d.events_lost_in_outage, 1,
            "still owed to the nodes' lost counters"
        );
        assert_eq!(d.lost, 0);
    }
}

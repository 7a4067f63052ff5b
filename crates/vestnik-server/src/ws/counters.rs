//! Each app's socket traffic figures: [`SocketCounters`], made once per app and shared by its
//! sockets, and rendered into `/metrics` at scrape time ([`render`]).
//!
//! The sent side is counted on the delivery path, once per frame a fan-out writes straight to a
//! socket, so it is plain relaxed atomics: a direct write costs three atomic adds here, where a
//! `metrics` counter costs a dynamic call and two atomics, and the exporter's histogram a clock read
//! and a sample pushed into a queue that grows until the next scrape. The publish-to-write histogram
//! therefore keeps its own fixed buckets, the same the exporter would use. This module must never
//! take a lock or read the clock when counting.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// `vestnik_publish_to_write_seconds`'s bucket bounds, in seconds: from 0.1 ms (a healthy write is
/// sub-millisecond) to 1 s (a socket about to be dropped as slow).
const WRITE_BUCKETS: [f64; 13] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The bucket bounds in nanoseconds, for counting without floating point.
const BOUNDS_NS: [u64; 13] = {
    let mut ns = [0; 13];
    let mut i = 0;
    while i < ns.len() {
        ns[i] = (WRITE_BUCKETS[i] * 1e9 + 0.5) as u64;
        i += 1;
    }
    ns
};

/// A histogram of write latencies with fixed buckets: one slot per bucket plus one above the last
/// (not cumulative; [`render`] sums them), and the sum in nanoseconds.
#[derive(Debug, Default)]
struct WriteLatency {
    slots: [AtomicU64; 14],
    sum_ns: AtomicU64,
}

impl WriteLatency {
    fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let slot = BOUNDS_NS.partition_point(|&b| b < ns);
        self.slots[slot].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// A write that took no time: it falls in the first bucket and adds nothing to the sum.
    fn record_zero(&self) {
        self.slots[0].fetch_add(1, Relaxed);
    }
}

/// The per-app counters of a socket's traffic, made once per app and shared by its sockets (the
/// session and the direct writer count into the same ones, so counting costs atomic adds and a
/// socket holds one pointer for all of them).
#[derive(Debug)]
pub struct SocketCounters {
    /// `vestnik_ws_messages_received_total`: client text frames.
    pub messages_in: metrics::Counter,
    /// `vestnik_ws_bytes_received_total`: their bytes.
    pub bytes_in: metrics::Counter,
    /// `vestnik_ws_messages_sent_total`: frames written.
    messages_out: AtomicU64,
    /// `vestnik_ws_bytes_sent_total`: their payload bytes.
    bytes_out: AtomicU64,
    /// `vestnik_publish_to_write_seconds`: from the oldest frame of a batch entering the socket's
    /// queue to the batch's write finishing, one sample per coalesced write; a direct write that
    /// went out whole is sampled as zero, so the histogram still counts every write.
    publish_to_write: WriteLatency,
}

impl SocketCounters {
    /// Registers (or finds) `app_id`'s received series; the sent ones are rendered by [`render`].
    pub fn new(app_id: &str) -> Self {
        let id = app_id.to_owned();
        Self {
            messages_in: metrics::counter!("vestnik_ws_messages_received_total", "app_id" => id.clone()),
            bytes_in: metrics::counter!("vestnik_ws_bytes_received_total", "app_id" => id),
            messages_out: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            publish_to_write: WriteLatency::default(),
        }
    }

    /// `frames` frames of `bytes` payload bytes in all were written (or handed to the last write).
    pub fn sent(&self, frames: u64, bytes: u64) {
        self.messages_out.fetch_add(frames, Relaxed);
        self.bytes_out.fetch_add(bytes, Relaxed);
    }

    /// One frame of `bytes` payload bytes went out whole in a direct write: counted as sent, and as a
    /// zero publish-to-write sample.
    pub fn written_at_once(&self, bytes: u64) {
        self.sent(1, bytes);
        self.publish_to_write.record_zero();
    }

    /// A queued batch's write finished `waited` after its oldest frame was queued.
    pub fn batch_written(&self, waited: Duration) {
        self.publish_to_write.record(waited);
    }
}

/// Each app's [`SocketCounters`] on this node, made at the app's first socket and kept for the
/// life of the process (counters never go back).
#[derive(Debug, Default)]
pub struct AppCounters {
    apps: Mutex<HashMap<String, Arc<SocketCounters>>>,
}

impl AppCounters {
    /// `app_id`'s counters, shared by all its sockets on this node.
    pub fn get(&self, app_id: &str) -> Arc<SocketCounters> {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = apps.get(app_id) {
            return Arc::clone(c);
        }
        let c = Arc::new(SocketCounters::new(app_id));
        apps.insert(app_id.to_owned(), Arc::clone(&c));
        c
    }

    /// Appends every app's sent-traffic series (`vestnik_ws_messages_sent_total`,
    /// `vestnik_ws_bytes_sent_total`, `vestnik_publish_to_write_seconds`) to a `/metrics` body,
    /// apps in id order. An app appears from its first socket on this node.
    pub fn render(&self, out: &mut String) {
        let apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let mut sorted: Vec<(&str, &SocketCounters)> =
            apps.iter().map(|(id, c)| (id.as_str(), &**c)).collect();
        sorted.sort_unstable_by_key(|(id, _)| *id);
        render(sorted.into_iter(), out);
    }
}

/// Appends `value` as a Prometheus label value: backslash, double quote and newline escaped.
fn push_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends the sent counters and the publish-to-write histogram of every app in `apps` to a
/// `/metrics` body, in the Prometheus text format (one family at a time, apps in the given order).
fn render<'a>(apps: impl Iterator<Item = (&'a str, &'a SocketCounters)> + Clone, out: &mut String) {
    let counter = |out: &mut String, name: &str, get: fn(&SocketCounters) -> u64| {
        let _ = writeln!(out, "# TYPE {name} counter");
        for (id, c) in apps.clone() {
            let _ = write!(out, "{name}{{app_id=\"");
            push_label(out, id);
            let _ = writeln!(out, "\"}} {}", get(c));
        }
        out.push('\n');
    };
    counter(out, "vestnik_ws_messages_sent_total", |c| {
        c.messages_out.load(Relaxed)
    });
    counter(out, "vestnik_ws_bytes_sent_total", |c| {
        c.bytes_out.load(Relaxed)
    });
    let name = "vestnik_publish_to_write_seconds";
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (id, c) in apps {
        let h = &c.publish_to_write;
        let mut cumulative = 0u64;
        for (i, slot) in h.slots.iter().enumerate() {
            cumulative += slot.load(Relaxed);
            let _ = write!(out, "{name}_bucket{{app_id=\"");
            push_label(out, id);
            match WRITE_BUCKETS.get(i) {
                Some(le) => {
                    let _ = writeln!(out, "\",le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "\",le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = h.sum_ns.load(Relaxed) as f64 / 1e9;
        let _ = write!(out, "{name}_sum{{app_id=\"");
        push_label(out, id);
        let _ = writeln!(out, "\"}} {sum}");
        let _ = write!(out, "{name}_count{{app_id=\"");
        push_label(out, id);
        let _ = writeln!(out, "\"}} {cumulative}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(c: &SocketCounters, id: &str) -> String {
        let mut out = String::new();
        render(std::iter::once((id, c)), &mut out);
        out
    }

    #[test]
    fn bounds_match_the_buckets() {
        for (s, ns) in WRITE_BUCKETS.iter().zip(BOUNDS_NS) {
            assert_eq!((s * 1e9).round() as u64, ns);
        }
    }

    #[test]
    fn samples_land_in_cumulative_buckets_with_sum_and_count() {
        let c = SocketCounters::new("app");
        c.written_at_once(10);
        c.written_at_once(5);
        c.batch_written(Duration::from_micros(100)); // on a bound: le="0.0001"
        c.batch_written(Duration::from_millis(3));
        c.batch_written(Duration::from_secs(2)); // above every bound
        c.sent(4, 100);
        let out = rendered(&c, "app");
        for line in [
            "# TYPE vestnik_ws_messages_sent_total counter",
            "vestnik_ws_messages_sent_total{app_id=\"app\"} 6",
            "vestnik_ws_bytes_sent_total{app_id=\"app\"} 115",
            "# TYPE vestnik_publish_to_write_seconds histogram",
            "vestnik_publish_to_write_seconds_bucket{app_id=\"app\",le=\"0.0001\"} 3",
            "vestnik_publish_to_write_seconds_bucket{app_id=\"app\",le=\"0.0025\"} 3",
            "vestnik_publish_to_write_seconds_bucket{app_id=\"app\",le=\"0.005\"} 4",
            "vestnik_publish_to_write_seconds_bucket{app_id=\"app\",le=\"1\"} 4",
            "vestnik_publish_to_write_seconds_bucket{app_id=\"app\",le=\"+Inf\"} 5",
            "vestnik_publish_to_write_seconds_sum{app_id=\"app\"} 2.0031",
            "vestnik_publish_to_write_seconds_count{app_id=\"app\"} 5",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line:?} missing from:\n{out}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let c = SocketCounters::new("a\"b\\c\nd");
        let out = rendered(&c, "a\"b\\c\nd");
        assert!(out.contains(r#"vestnik_ws_messages_sent_total{app_id="a\"b\\c\nd"} 0"#));
        assert_eq!(out.matches("# TYPE").count(), 3);
    }
}

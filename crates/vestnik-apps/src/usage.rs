//! Usage per app and per UTC hour, and the hour and day arithmetic it is keyed by.
//!
//! Nodes count locally, merge their counts into a [`UsageBatch`], and flush the batch to the store
//! now and then; the store merges each increment into its row (peak = max, the rest = sum), so any
//! number of nodes may flush the same hour concurrently. This module must never touch a database.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Seconds in an hour; usage rows are keyed by UTC hour, so no time zone or leap second enters.
const HOUR_SECS: i64 = 3_600;
/// Seconds in a UTC day (Unix time has no leap seconds), the span of a daily quota.
const DAY_SECS: i64 = 86_400;

/// A UTC hour, as the Unix time of its first second.
///
/// Transparent in JSON (a bare number), so the admin API's usage rows are easy to chart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Hour(i64);

impl Hour {
    /// The hour that holds `t`.
    pub fn containing(t: SystemTime) -> Self {
        Self(unix_secs(t).div_euclid(HOUR_SECS) * HOUR_SECS)
    }

    /// The hour that holds the Unix time `secs`.
    pub fn from_unix(secs: i64) -> Self {
        Self(secs.div_euclid(HOUR_SECS) * HOUR_SECS)
    }

    /// Unix time of the hour's first second.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// The hour after this one.
    pub fn next(self) -> Self {
        Self(self.0 + HOUR_SECS)
    }
}

/// A UTC day, as the Unix time of its midnight. Daily quotas reset at UTC midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Day(i64);

impl Day {
    /// The day that holds `t`.
    pub fn containing(t: SystemTime) -> Self {
        Self(unix_secs(t).div_euclid(DAY_SECS) * DAY_SECS)
    }

    /// Unix time of the day's midnight.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// The day's first hour.
    pub fn first_hour(self) -> Hour {
        Hour(self.0)
    }

    /// The first hour of the next day.
    pub fn end_hour(self) -> Hour {
        Hour(self.0 + DAY_SECS)
    }
}

/// Whole seconds since the epoch. Before 1970 the `- 1` errs a second early rather than late, so
/// `div_euclid` never puts a pre-epoch time into the following hour.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX) - 1,
    }
}

/// Converts Unix milliseconds read from a store into a `SystemTime`.
pub(crate) fn from_unix_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// What one app did in one hour (or what one node adds to it).
///
/// Plain counts with no app or hour: the key lives in [`UsageRow`] or [`UsageBatch`], so a node's
/// hot path only adds to numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Most concurrent sockets seen; merged by maximum. Each node reports its own peak, so across a
    /// cluster this is the largest node's peak (the cluster-wide count is the quota's business).
    pub peak_connections: u64,
    /// Messages written to sockets.
    pub messages_delivered: u64,
    /// Events received through the HTTP API.
    pub messages_received: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Webhook events a receiver acknowledged (one per event and target).
    pub webhooks_sent: u64,
}

impl Usage {
    /// Merges `other` into `self`: the peak is the larger one, the counts add (saturating).
    pub fn merge(&mut self, other: &Usage) {
        self.peak_connections = self.peak_connections.max(other.peak_connections);
        self.messages_delivered = self
            .messages_delivered
            .saturating_add(other.messages_delivered);
        self.messages_received = self
            .messages_received
            .saturating_add(other.messages_received);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.webhooks_sent = self.webhooks_sent.saturating_add(other.webhooks_sent);
    }

    /// Messages as a daily quota counts them: received through the API plus delivered.
    ///
    /// The daily quota counts both directions, as Pusher's message count does: an API event
    /// delivered to 100 sockets counts 101.
    pub fn messages(&self) -> u64 {
        self.messages_delivered
            .saturating_add(self.messages_received)
    }
}

/// One app's usage in one hour: an increment to record, or a row read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRow {
    /// The app.
    pub app_id: String,
    /// The hour.
    pub hour: Hour,
    /// What happened in it.
    pub usage: Usage,
}

/// A node's unflushed usage, merged by app and hour. Draining it gives rows sorted by app and hour,
/// the order the stores write them in (one lock order, so concurrent flushes do not deadlock).
#[derive(Debug, Default)]
pub struct UsageBatch {
    /// A `BTreeMap` rather than a hash map for its order: `drain` hands the stores rows already in
    /// the one lock order they write in.
    rows: BTreeMap<(String, Hour), Usage>,
}

impl UsageBatch {
    /// Merges `usage` into the app's row for `hour`.
    pub fn add(&mut self, app_id: &str, hour: Hour, usage: Usage) {
        if let Some(row) = self.rows.get_mut(&(app_id.to_owned(), hour)) {
            row.merge(&usage);
        } else {
            self.rows.insert((app_id.to_owned(), hour), usage);
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Takes every row, sorted by app and hour.
    pub fn drain(&mut self) -> Vec<UsageRow> {
        std::mem::take(&mut self.rows)
            .into_iter()
            .map(|((app_id, hour), usage)| UsageRow {
                app_id,
                hour,
                usage,
            })
            .collect()
    }
}

/// Clamps a count to the `bigint` the stores keep it in.
pub(crate) fn to_db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Reads a `bigint` count back; a negative value (written by hand) reads as 0.
pub(crate) fn from_db(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hour and day boundaries, including a time just before the epoch, which must fall in the hour
    /// before it.
    #[test]
    fn hours_and_days() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3_600 * 5 + 59);
        assert_eq!(Hour::containing(t).unix(), 86_400 * 3 + 3_600 * 5);
        assert_eq!(Day::containing(t).unix(), 86_400 * 3);
        assert_eq!(Day::containing(t).end_hour().unix(), 86_400 * 4);
        assert_eq!(Hour::from_unix(-1).unix(), -3_600);
        assert_eq!(
            from_unix_millis(1_500),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_500)
        );
    }

    /// The merge rule that makes concurrent flushes safe, and the drain order the stores rely on.
    #[test]
    fn batch_merges_peak_by_max_and_counts_by_sum() {
        let mut b = UsageBatch::default();
        let h = Hour::from_unix(7_200);
        let one = |peak, delivered| Usage {
            peak_connections: peak,
            messages_delivered: delivered,
            messages_received: 1,
            bytes_out: 10,
            webhooks_sent: 0,
        };
        b.add("b", h, one(5, 1));
        b.add("a", h, one(3, 2));
        b.add("b", h, one(2, 4));
        let rows = b.drain();
        assert!(b.is_empty());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].app_id, "a");
        assert_eq!(rows[1].usage.peak_connections, 5);
        assert_eq!(rows[1].usage.messages_delivered, 5);
        assert_eq!(rows[1].usage.messages_received, 2);
        assert_eq!(rows[1].usage.bytes_out, 20);
        assert_eq!(rows[1].usage.messages(), 7);
    }
}

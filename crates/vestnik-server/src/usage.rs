//! Usage recording and the daily message quota's cluster-wide count: the task that flushes each
//! app's counters (kept by the broker, atomics only) to the usage ledger, and keeps every app's
//! count of today's messages current from the other nodes' heartbeats and the ledger.
//!
//! The ledger is the app database (`apps_url`; its rows are shared by every node and summed there)
//! or, with apps from the config file, [`FileLedger`] files in this node's data dir. A flush runs
//! every `usage.flush_interval_ms`, at every UTC hour (so a span never straddles two hours: its
//! counts go to the hour it started in), and at shutdown. Rows that cannot be written (database
//! down) are kept and written with the next flush that succeeds. This module never touches the
//! publish path: it reads and resets the broker's counters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vestnik_apps::{Day, FileLedger, Hour, StoreError, Usage, UsageBatch, UsageLedger, UsageRow};

use crate::state::AppState;

/// How often each app's count of today's messages is brought up to date from the other nodes'
/// heartbeats. A quarter second bounds how stale the quota's view of the rest of the cluster gets
/// beyond the heartbeat interval, at the cost of one pass over this node's apps.
const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// The usage ledger a node writes to, and whether the other nodes write to the same one.
#[derive(Clone)]
pub struct Ledger {
    /// Where the rows go.
    pub store: Arc<dyn UsageLedger>,
    /// Whether every node writes to this ledger (a database) rather than only this node (files):
    /// the quota then counts the ledger's rows of live nodes once, from their heartbeats.
    pub shared: bool,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

/// The ledger of a node whose apps come from the config file: the usage files in its data dir.
pub fn file_ledger(state: &AppState) -> Result<Ledger, StoreError> {
    let dir = state.config.usage.dir(&state.config.webhooks);
    let store = FileLedger::open(&dir)?;
    info!(dir = %dir.display(), "usage kept in files");
    Ok(Ledger {
        store: Arc::new(store),
        shared: false,
    })
}

/// The hour a span of counts that started at `start` belongs to, and when it must end: at the next
/// flush or at the next UTC hour, whichever comes first, so no span straddles two hours.
pub fn span_end(start: SystemTime, interval: Duration) -> (Hour, SystemTime) {
    let hour = Hour::containing(start);
    let hour_end = UNIX_EPOCH + Duration::from_secs(u64::try_from(hour.next().unix()).unwrap_or(0));
    (hour, (start + interval).min(hour_end))
}

/// The flusher's state between two flushes.
struct Recorder {
    /// The node.
    state: AppState,
    /// Where rows go.
    ledger: Ledger,
    /// Rows a failed flush could not write, merged into the next.
    pending: UsageBatch,
    /// Whether the last flush failed (to log an outage once, and its end).
    failing: bool,
    /// The UTC day counted.
    day: Day,
    /// Messages per app in the ledger for `day`, read after each flush.
    in_ledger: HashMap<String, u64>,
    /// Webhook deliveries per app already recorded, to record only the difference.
    webhooks_seen: HashMap<String, u64>,
}

/// Starts the flusher; it flushes a last time once `stop` is cancelled, then ends.
pub fn spawn(state: &AppState, ledger: Ledger, stop: CancellationToken) -> JoinHandle<()> {
    let recorder = Recorder {
        state: state.clone(),
        ledger,
        pending: UsageBatch::default(),
        failing: false,
        day: Day::containing(SystemTime::now()),
        in_ledger: HashMap::new(),
        webhooks_seen: HashMap::new(),
    };
    tokio::spawn(recorder.run(stop))
}

impl Recorder {
    /// Flushes at each span's end and refreshes the daily counts in between, until `stop`.
    async fn run(mut self, stop: CancellationToken) {
        let interval = Duration::from_millis(self.state.config.usage.flush_interval_ms);
        self.start_day();
        self.read_ledger().await;
        let mut span_start = SystemTime::now();
        loop {
            let (hour, end) = span_end(span_start, interval);
            let left = end
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::select! {
                () = stop.cancelled() => {
                    self.flush(hour).await;
                    break;
                }
                () = tokio::time::sleep(left.min(REFRESH_INTERVAL)) => {}
            }
            let now = SystemTime::now();
            if now >= end {
                self.flush(hour).await;
                span_start = now;
                if Day::containing(now) != self.day {
                    self.day = Day::containing(now);
                    self.start_day();
                }
                self.read_ledger().await;
            }
            self.refresh();
        }
    }

    /// Every app's counters start (or keep) counting the current day.
    fn start_day(&mut self) {
        self.in_ledger.clear();
        for (_, rt) in self.state.broker.runtimes() {
            rt.usage.start_day(self.day.unix());
        }
    }

    /// Takes every app's counts into rows of `hour` and writes them, with any left by a failed
    /// flush. On success, the messages of today's rows count as flushed for the quota.
    async fn flush(&mut self, hour: Hour) {
        let mut batch = std::mem::take(&mut self.pending);
        let runtimes = self.state.broker.runtimes();
        let mut webhooks = self.webhook_deltas();
        for (id, rt) in &runtimes {
            let taken = rt.usage.take(rt.connection_count() as u64);
            let usage = Usage {
                peak_connections: taken.peak_connections,
                messages_delivered: taken.messages_delivered,
                messages_received: taken.messages_received,
                bytes_out: taken.bytes_out,
                webhooks_sent: webhooks.remove(id).unwrap_or(0),
            };
            if usage != Usage::default() {
                batch.add(id, hour, usage);
            }
        }
        for (id, sent) in webhooks {
            let usage = Usage {
                webhooks_sent: sent,
                ..Usage::default()
            };
            batch.add(&id, hour, usage);
        }
        if batch.is_empty() {
            return;
        }
        let rows = batch.drain();
        match self.ledger.store.record_usage(rows.clone()).await {
            Ok(()) => {
                if self.failing {
                    info!("usage ledger writable again; the usage kept meanwhile is written");
                    self.failing = false;
                }
                self.count_flushed(&rows, &runtimes);
            }
            Err(e) => {
                if !self.failing {
                    warn!("usage not written, kept for the next flush: {e}");
                    self.failing = true;
                }
                for row in rows {
                    self.pending.add(&row.app_id, row.hour, row.usage);
                }
            }
        }
    }

    /// Adds the messages of today's written rows to each app's flushed count.
    fn count_flushed(
        &self,
        rows: &[UsageRow],
        runtimes: &[(String, Arc<vestnik_broker::AppRuntime>)],
    ) {
        let today = self.day.first_hour()..self.day.end_hour();
        for row in rows.iter().filter(|r| today.contains(&r.hour)) {
            if let Some((_, rt)) = runtimes.iter().find(|(id, _)| *id == row.app_id) {
                rt.usage.flushed(row.usage.messages());
            }
        }
    }

    /// Webhook deliveries per app since the last flush (the sender counts since its start).
    fn webhook_deltas(&mut self) -> HashMap<String, u64> {
        let Some(hooks) = &self.state.webhooks else {
            return HashMap::new();
        };
        let mut out = HashMap::new();
        for s in hooks.stats() {
            let seen = self.webhooks_seen.entry(s.app_id.clone()).or_default();
            let delta = s.delivered.saturating_sub(*seen);
            *seen = s.delivered;
            if delta > 0 {
                out.insert(s.app_id, delta);
            }
        }
        out
    }

    /// Reads today's messages per app from the ledger; on failure the last reading stays.
    async fn read_ledger(&mut self) {
        match self.ledger.store.daily_messages(self.day).await {
            Ok(rows) => self.in_ledger = rows.into_iter().collect(),
            Err(e) => tracing::debug!("daily messages not read: {e}"),
        }
    }

    /// Brings every app's count of today's messages up to date: the other live nodes' counts from
    /// their heartbeats, plus what the ledger holds beyond what the live nodes flushed (nodes
    /// gone, or this node before a restart). Exports it, with the quota, as metrics.
    fn refresh(&self) {
        let link = self.state.broker.cluster();
        let day = self.day.unix();
        for (id, rt) in self.state.broker.runtimes() {
            rt.usage.start_day(day);
            let (_, _, own_flushed) = rt.usage.today();
            let (peers, peers_flushed) = link.map_or((0, 0), |l| l.remote_messages(&id, day));
            let accounted = if self.ledger.shared {
                own_flushed.saturating_add(peers_flushed)
            } else {
                own_flushed
            };
            let carried = self
                .in_ledger
                .get(&id)
                .copied()
                .unwrap_or(0)
                .saturating_sub(accounted);
            rt.usage.set_elsewhere(peers.saturating_add(carried));
            let quota = self
                .state
                .broker
                .apps()
                .by_id(&id)
                .map_or(0, |a| a.max_messages_per_day);
            let labels = [("app", id)];
            metrics::gauge!("vestnik_app_messages_today", &labels)
                .set(rt.usage.messages_today() as f64);
            metrics::gauge!("vestnik_app_message_quota", &labels).set(quota as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A span ends at the flush interval, or at the next UTC hour when that comes first, and its
    /// counts belong to the hour it started in.
    #[test]
    fn spans_never_straddle_an_hour() {
        let at = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let ten = Duration::from_secs(10);
        assert_eq!(
            span_end(at(7_200), ten),
            (Hour::from_unix(7_200), at(7_210))
        );
        assert_eq!(
            span_end(at(10_795), ten),
            (Hour::from_unix(7_200), at(10_800))
        );
        let (hour, end) = span_end(at(10_800), ten);
        assert_eq!((hour.unix(), end), (10_800, at(10_810)));
        let long = Duration::from_secs(86_400);
        assert_eq!(span_end(at(3_599), long).1, at(3_600));
    }
}

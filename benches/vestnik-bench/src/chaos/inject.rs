//! The faults of a chaos run as they are carried out: the rig they act on (nodes, proxies,
//! backbone, sockets) and one function per fault that strikes, waits its length, restores, and
//! records the outage window it opened.
//!
//! It signals only the processes the run started (by pid) and never judges a result: it records
//! windows and notes for the ledger and the report.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use parking_lot::Mutex;
use tokio::sync::Mutex as AsyncMutex;

use super::client::{self, Dial, SlowReader, Sock};
use super::ledger::{Outage, OutageCause};
use super::procs::{http_get, parse_scrape, BackboneProc, NodeProc};
use super::proxy::Proxy;
use super::report::FaultLog;
use super::schedule::{Fault, FaultKind};
use super::{OUTAGE_LEAD, RECONNECT_TIMEOUT, SCRAPE_EVERY};
use crate::clock;

/// Everything the fault tasks touch.
pub(super) struct Rig {
    pub(super) nodes: Vec<AsyncMutex<NodeProc>>,
    pub(super) metrics: Vec<std::net::SocketAddr>,
    pub(super) proxies: Vec<Proxy>,
    pub(super) backbone: AsyncMutex<BackboneProc>,
    pub(super) socks: Vec<Arc<Sock>>,
    pub(super) dial: Arc<Dial>,
    pub(super) slow: AsyncMutex<Vec<SlowReader>>,
    pub(super) outages: Mutex<Vec<Outage>>,
    pub(super) log: Mutex<Vec<FaultLog>>,
    pub(super) isolated: Mutex<BTreeSet<usize>>,
    /// When publishing started, µs (0 until then).
    pub(super) start_us: AtomicU64,
    pub(super) node_timeout: Duration,
    /// The relay hold the run judges against (`--relay-hold-ms`; zero: not judged).
    pub(super) relay_hold: Duration,
}

impl Rig {
    pub(super) fn secs_since_start(&self) -> f64 {
        clock::now_us().saturating_sub(self.start_us.load(Ordering::Relaxed)) as f64 / 1e6
    }

    /// The cause of a backbone or cut outage whose link stayed down `down_us`: itself, or
    /// [`OutageCause::PastHold`] when the nodes reconnected only after the relay hold had run out
    /// (on a starved machine a short cut can take longer than the hold to recover from), since
    /// the hold promises nothing past its bound; what is lost there must still be counted.
    pub(super) fn link_outage(&self, cause: OutageCause, down_us: u64) -> OutageCause {
        let hold = u64::try_from(self.relay_hold.as_micros()).unwrap_or(u64::MAX);
        if hold > 0 && down_us > hold {
            OutageCause::PastHold
        } else {
            cause
        }
    }

    /// Waits until `node` (or every node) says its backbone is connected; the time it saw it.
    pub(super) async fn wait_connected(&self, node: Option<usize>) -> u64 {
        let deadline = tokio::time::Instant::now() + RECONNECT_TIMEOUT;
        loop {
            let mut all = true;
            for (i, m) in self.metrics.iter().enumerate() {
                if node.is_some_and(|n| n != i) {
                    continue;
                }
                let up = matches!(http_get(*m, "/metrics").await, Ok((200, body)) if parse_scrape(&body).connected);
                all &= up;
            }
            if all || tokio::time::Instant::now() > deadline {
                return clock::now_us();
            }
            tokio::time::sleep(SCRAPE_EVERY).await;
        }
    }
}

/// Carries out one fault and logs it.
pub(super) async fn inject(rig: &Rig, f: Fault) -> Result<()> {
    let started_s = rig.secs_since_start();
    let t0 = clock::now_us();
    if f.length > Duration::ZERO {
        eprintln!(
            "chaos: [{started_s:>6.1}s] {:?} for {:?} strikes",
            f.kind, f.length
        );
    }
    let lead = u64::try_from(OUTAGE_LEAD.as_micros()).unwrap_or(0);
    if let Some(n) = f.kind.isolates() {
        rig.isolated.lock().insert(n);
    }
    let note = match f.kind {
        FaultKind::KillNode { node } => {
            let mut n = rig.nodes[node].lock().await;
            let pid = n.pid();
            n.kill();
            rig.outages.lock().push(Outage {
                node: Some(node),
                from_us: t0.saturating_sub(lead),
                to_us: clock::now_us(),
                cause: OutageCause::Kill,
            });
            tokio::time::sleep(f.length).await;
            n.restart().await?;
            format!(
                "SIGKILL node {node} (pid {pid:?}), restarted after {:?} as pid {:?}",
                f.length,
                n.pid()
            )
        }
        FaultKind::StopNode { node } => {
            let n = rig.nodes[node].lock().await;
            n.pause(true)?;
            tokio::time::sleep(f.length).await;
            n.pause(false)?;
            drop(n);
            let t1 = rig.wait_connected(Some(node)).await;
            rig.outages.lock().push(Outage {
                node: Some(node),
                from_us: t0.saturating_sub(lead),
                to_us: t1 + u64::try_from(SCRAPE_EVERY.as_micros()).unwrap_or(0),
                cause: OutageCause::Stop,
            });
            format!(
                "SIGSTOP node {node} for {:?} (node_timeout {:?}), then SIGCONT; connected {:.1} s after the stop",
                f.length,
                rig.node_timeout,
                (t1 - t0) as f64 / 1e6
            )
        }
        FaultKind::BackboneRestart => {
            let mut b = rig.backbone.lock().await;
            b.kill();
            tokio::time::sleep(f.length).await;
            b.restart().await?;
            drop(b);
            let t1 = rig.wait_connected(None).await;
            rig.outages.lock().push(Outage {
                node: None,
                from_us: t0.saturating_sub(lead),
                to_us: t1 + u64::try_from(SCRAPE_EVERY.as_micros()).unwrap_or(0),
                cause: rig.link_outage(OutageCause::Backbone, t1 - t0),
            });
            format!("backbone SIGKILL, restarted after {:?}; every node reconnected {:.1} s after the kill", f.length, (t1 - t0) as f64 / 1e6)
        }
        FaultKind::CutNode { node } => {
            rig.proxies[node].set_cut(true);
            tokio::time::sleep(f.length).await;
            rig.proxies[node].set_cut(false);
            let t1 = rig.wait_connected(Some(node)).await;
            rig.outages.lock().push(Outage {
                node: Some(node),
                from_us: t0.saturating_sub(lead),
                to_us: t1 + u64::try_from(SCRAPE_EVERY.as_micros()).unwrap_or(0),
                cause: rig.link_outage(OutageCause::Cut, t1 - t0),
            });
            format!(
                "node {node} cut from the backbone for {:?}; reconnected {:.1} s after the cut",
                f.length,
                (t1 - t0) as f64 / 1e6
            )
        }
        FaultKind::ClientCut { node } => {
            let churn: Vec<&Arc<Sock>> = rig
                .socks
                .iter()
                .filter(|s| s.node == node && s.role == client::Role::Churn)
                .collect();
            match churn.get(usize::try_from(f.at.as_millis() % 7).unwrap_or(0) % churn.len().max(1))
            {
                Some(s) => {
                    s.cut();
                    format!("socket {} on node {node} cut (it reconnects)", s.user_id)
                }
                None => format!("no churn socket on node {node} to cut"),
            }
        }
        FaultKind::SlowReader { node } => match SlowReader::open(node, &rig.dial).await {
            Ok(s) => {
                rig.slow.lock().await.push(s);
                format!("a socket on node {node} subscribed and stopped reading")
            }
            Err(e) => format!("a slow reader on node {node} could not open: {e:#}"),
        },
    };
    let recovered_s = rig.secs_since_start();
    eprintln!("chaos: [{started_s:>6.1}s] {note}");
    rig.log.lock().push(FaultLog {
        fault: f,
        started_s,
        recovered_s,
        note,
    });
    Ok(())
}

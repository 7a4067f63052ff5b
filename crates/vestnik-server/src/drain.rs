//! The staggered drain on SIGTERM, after nats-server's lame-duck mode (design.md rule 6). It reads top
//! to bottom as its steps:
//!
//! 1. `/ready` answers 503 and new WebSocket upgrades get a 503 with a JSON error; the HTTP API keeps
//!    serving, since the sockets still open need their events;
//! 2. the other nodes are told, so they stop counting this node's sockets against app quotas;
//! 3. a short grace (`drain_grace_ms`), so load balancers see `/ready` fail and stop sending clients;
//! 4. the open sockets are closed with 4200 in batches spread over `drain_window_ms`, so their clients
//!    reconnect to the other nodes gradually instead of all at once;
//! 5. the accept loop stops and in-flight HTTP requests finish (bounded by `shutdown_timeout`);
//! 6. the cluster is left (after the last member left) and pending webhooks are spooled;
//!
//! then [`crate::server::run`] returns and the process exits 0. A second signal exits at once
//! ([`crate::shutdown`]). This module must never close a socket other than through its outbox, so
//! every close goes through the socket's own writer like any other.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use vestnik_broker::ConnectionHandle;
use vestnik_protocol::limits::DRAIN_BATCH_INTERVAL_MS;
use vestnik_protocol::PusherCode;

use crate::state::AppState;

/// The reason sent with every drain close; pusher-js reconnects at once on 4200.
pub const CLOSE_REASON: &str = "Server shutting down, reconnect";

/// A background service that stops after the sockets: its stop token and its task.
#[derive(Debug)]
pub struct Service {
    /// Cancelled to stop it.
    pub stop: CancellationToken,
    /// Resolves once it stopped.
    pub task: Option<JoinHandle<()>>,
}

impl Service {
    /// Cancels the service and waits for its task to end.
    ///
    /// The task is awaited without a timeout: the cluster and webhook tasks bound their own
    /// shutdown (the spool's last write, the cluster's goodbye), and the drain's own steps are
    /// already bounded.
    async fn stop(self) {
        self.stop.cancel();
        if let Some(task) = self.task {
            let _ = task.await;
        }
    }
}

/// Runs the whole drain once shutdown has started; returns when the process may exit.
///
/// The order is the point: readiness goes first so load balancers stop sending before anything is
/// closed; the other nodes hear before the grace, so their quota counts are right by the time this
/// node's clients reconnect to them; sockets close before the accept loop stops, so the API keeps
/// serving the events those sockets still need; the cluster and the webhooks stop last, so the
/// vacates and member removals caused by the closes still reach the other nodes and the spool.
/// Every wait is bounded (`drain_grace_ms`, `drain_window_ms`, `shutdown_timeout`), so a stuck
/// client or task cannot keep the process from exiting.
pub async fn run(state: &AppState, cluster: Service, webhooks: Service) {
    let server = &state.config.server;
    let sockets = state.sockets.len();
    info!(
        sockets,
        grace_ms = server.drain_grace_ms,
        window_ms = server.drain_window_ms,
        "draining: not ready, refusing new sockets"
    );

    // 1. Not ready; new upgrades refused (see ws::upgrade).
    state.serving.store(false, Ordering::Relaxed);

    // 2. Tell the other nodes.
    if let Some(link) = state.broker.cluster() {
        link.announce_draining();
    }

    // 3. A short grace.
    tokio::time::sleep(server.drain_grace()).await;

    // 4. Close the sockets with 4200 in batches over the window.
    close_in_batches(state.sockets.snapshot(), server.drain_window()).await;
    // Sockets admitted while the flag turned (a race of microseconds) close now.
    close_batch(&state.sockets.snapshot());
    // Each socket waits a bounded time for its client's close reply.
    let timeout = Duration::from_secs(server.shutdown_timeout);
    let _ = tokio::time::timeout(timeout, state.sockets.wait_empty()).await;

    match state.sockets.len() {
        0 => info!("sockets closed; finishing HTTP requests"),
        remaining => warn!(
            remaining,
            "sockets still closing after shutdown_timeout; finishing HTTP requests anyway"
        ),
    }

    // 5. Stop accepting; finish in-flight HTTP requests.
    let shutdown = &state.shutdown;
    shutdown.finish();
    let tracker = shutdown.tracker();
    tracker.close();
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        warn!(
            remaining = tracker.len(),
            "shutdown timeout reached; exiting with tasks still open"
        );
    }

    // 6. Events still queued for numbering by the cluster's history store go out first, then
    //    the node leaves the cluster and spools what webhooks are still pending.
    state.broker.numbering_idle(timeout).await;
    cluster.stop().await;
    webhooks.stop().await;
    info!("shutdown complete");
}

/// Closes `sockets` in equal batches, one every [`DRAIN_BATCH_INTERVAL_MS`], the last one at the end
/// of `window`. Batches are scheduled against the start, so a slow batch does not stretch the window.
async fn close_in_batches(sockets: Vec<ConnectionHandle>, window: Duration) {
    if sockets.is_empty() {
        return;
    }
    let plan = BatchPlan::new(sockets.len(), window);
    let start = Instant::now();
    for (i, batch) in sockets.chunks(plan.size).enumerate() {
        tokio::time::sleep_until(start + plan.interval * u32::try_from(i).unwrap_or(u32::MAX))
            .await;
        close_batch(batch);
    }
}

/// Queues the 4200 close on each socket's outbox; each socket's own task writes it and ends.
/// Never awaits: a slow client's close waits in its own outbox, not in the drain's loop.
fn close_batch(batch: &[ConnectionHandle]) {
    for conn in batch {
        conn.outbox().close(PusherCode::Reconnect, CLOSE_REASON);
    }
}

/// How a drain cuts its sockets into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchPlan {
    /// Sockets per batch.
    size: usize,
    /// Time between the starts of two batches.
    interval: Duration,
}

impl BatchPlan {
    /// Cuts `sockets` into batches one [`DRAIN_BATCH_INTERVAL_MS`] tick apart, as few as fill
    /// `window`: the last batch goes at the end of the window, and no batch is empty.
    fn new(sockets: usize, window: Duration) -> Self {
        let tick = Duration::from_millis(DRAIN_BATCH_INTERVAL_MS);
        // Batches at 0, tick, 2·tick, … up to the end of the window: window/tick + 1 of them.
        let slots = usize::try_from(window.as_millis() / tick.as_millis()).unwrap_or(usize::MAX);
        let batches = slots.saturating_add(1).clamp(1, sockets.max(1));
        let size = sockets.div_ceil(batches).max(1);
        let used = sockets.div_ceil(size);
        let interval = if used > 1 {
            window / u32::try_from(used - 1).unwrap_or(u32::MAX)
        } else {
            Duration::ZERO
        };
        Self { size, interval }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drain spreads reconnects as promised: the last batch lands at the end of the window,
    /// many sockets go a batch per tick, few sockets one at a time across the whole window.
    #[test]
    fn batches_cover_the_window() {
        // 40 sockets over 2 s: 21 slots, so 20 batches of 2, the last at the end of the window.
        let p = BatchPlan::new(40, Duration::from_secs(2));
        assert_eq!(p.size, 2);
        let last = p.interval * 19;
        assert!(
            last <= Duration::from_secs(2) && last > Duration::from_millis(1999),
            "{last:?}"
        );
        // Many sockets: a batch every tick.
        let p = BatchPlan::new(10_000, Duration::from_secs(10));
        assert_eq!(p.size, 100);
        assert!(p.interval > Duration::from_millis(100) && p.interval < Duration::from_millis(102));
        // Few sockets: one each, spread over the whole window.
        let p = BatchPlan::new(3, Duration::from_secs(10));
        assert_eq!((p.size, p.interval), (1, Duration::from_secs(5)));
        // No window: everything at once.
        let p = BatchPlan::new(50, Duration::ZERO);
        assert_eq!((p.size, p.interval), (50, Duration::ZERO));
        assert_eq!(
            BatchPlan::new(1, Duration::from_secs(1)).interval,
            Duration::ZERO
        );
    }
}

//! One shutdown path: a signal every long-lived task selects on, and a tracker of those tasks.
//!
//! Shutdown has two moments, both driven by [`crate::drain`]: *started* (the first SIGTERM or SIGINT:
//! the node turns unready and begins its staggered drain) and *finishing* (the drain has closed its
//! sockets: the accept loop stops, HTTP connections finish their in-flight request, background tasks
//! end). hyper's graceful shutdown does not cover upgraded sockets, so every connection task (HTTP or
//! WebSocket) is spawned on the [`Shutdown`]'s tracker. A second signal exits at once. This module
//! must never decide how or when sockets are closed: the drain does.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The shutdown signal and the tasks that must finish before the process exits.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Cancelled when shutdown starts (the first signal): the drain begins.
    token: CancellationToken,
    /// Cancelled when the drain reaches its `finishing` step: the accept loop and the idle HTTP
    /// connections stop.
    finish: CancellationToken,
    /// Every connection task (HTTP and WebSocket), so the drain can wait for them.
    tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, untriggered shutdown.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token cancelled when shutdown starts (the drain begins).
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// The token cancelled when the drain is over and everything else should stop.
    pub fn finish_token(&self) -> &CancellationToken {
        &self.finish
    }

    /// The tracker long-lived tasks are spawned on.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Starts shutting down.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Resolves once shutdown has started.
    pub async fn started(&self) {
        self.token.cancelled().await;
    }

    /// Ends the drain: the accept loop, HTTP connections and background tasks stop.
    pub fn finish(&self) {
        self.finish.cancel();
    }

    /// Resolves once the drain is over.
    pub async fn finishing(&self) {
        self.finish.cancelled().await;
    }

    /// Triggers on SIGTERM or SIGINT; a second signal exits the process at once.
    ///
    /// The second signal exits with status 130 without draining: an operator who presses Ctrl-C
    /// twice wants the process gone, and the first signal already started everything that is safe.
    pub fn listen_for_signals(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received: draining (send it again to exit at once)");
            this.trigger();
            wait_for_signal().await;
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        });
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); on platforms without Unix signals, on Ctrl-C only.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! The adapter's tunables, each with its default and the reason for it. The server's config fills
//! these; tests shorten them.
//!
//! This module must never read the environment or a file: it only holds values.

use std::time::Duration;

use vestnik_broker::adapter::HoldLimits;

/// How a [`NatsAdapter`](crate::NatsAdapter) queues, times out and reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// Messages `send` may queue before it refuses more. 8192 absorbs a burst of cluster traffic
    /// (a presence resync of a large app) while bounding memory at a few MiB of typical messages.
    pub send_queue: usize,
    /// Incoming messages waiting for the cluster layer before new ones are dropped and counted.
    /// Also the NATS client's per-subscription buffer. Same size as the send queue.
    pub event_queue: usize,
    /// First reconnect delay. 100 ms: a restarted local server is usually back within a second.
    pub reconnect_min: Duration,
    /// Longest reconnect delay. 5 s bounds how long a node stays cut off after NATS is back.
    pub reconnect_max: Duration,
    /// Limit for opening one connection. 5 s: well above a healthy handshake, short enough to
    /// retry soon when a host is black-holed.
    pub connect_timeout: Duration,
    /// How often the client PINGs the server; two unanswered PINGs drop the connection. 5 s finds a
    /// silent network failure in ~10-15 s instead of the client's default ~2 min.
    pub ping_interval: Duration,
    /// Limit for the server to confirm the subscriptions (a probe round trip) before `Connected`
    /// is reported; a reconnect retries the probe while the client stays connected.
    pub confirm_timeout: Duration,
    /// How long [`close`](crate::NatsAdapter::close) waits to publish what is still queued.
    pub close_timeout: Duration,
    /// What `send` keeps while the link is down, and for how long (10 s and 64 MiB by default;
    /// see [`HoldLimits`]). The server's `cluster.relay_hold_ms` sets the time.
    pub relay_hold: HoldLimits,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            send_queue: 8192,
            event_queue: 8192,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            relay_hold: HoldLimits::default(),
        }
    }
}

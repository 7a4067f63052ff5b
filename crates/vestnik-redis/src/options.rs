//! The adapter's tunables, each with its default and the reason for it. The server's config fills
//! these; tests shorten them.
//!
//! This module must never read the environment or a file: it only holds values.

use std::time::Duration;

use vestnik_broker::adapter::HoldLimits;

/// How a [`RedisAdapter`](crate::RedisAdapter) queues, times out and reconnects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Messages `send` may queue before it refuses more. 8192 absorbs a burst of cluster traffic
    /// (a presence resync of a large app) while bounding memory at a few MiB of typical messages.
    pub send_queue: usize,
    /// Incoming messages waiting for the cluster layer before new ones are dropped and counted.
    /// Same size as the send queue, for the same reason.
    pub event_queue: usize,
    /// Most PUBLISH commands sent in one pipeline (one round trip). 256 keeps a round trip short
    /// while cutting per-message overhead under load.
    pub publish_batch: usize,
    /// First reconnect delay. 100 ms: a restarted local Redis is usually back within a second.
    pub reconnect_min: Duration,
    /// Longest reconnect delay. 5 s bounds how long a node stays cut off after Redis is back.
    pub reconnect_max: Duration,
    /// Limit for opening a connection and subscribing. 5 s: well above a healthy round trip,
    /// short enough to retry soon when a host is black-holed.
    pub connect_timeout: Duration,
    /// Limit for one command's answer (PUBLISH pipeline, PING) before the link counts as lost.
    pub response_timeout: Duration,
    /// How often both connections are PINGed, so a silent network failure is noticed even when
    /// there is no traffic. 5 s, with `response_timeout` on top: a dead link is found in ~10 s.
    pub health_interval: Duration,
    /// How long [`close`](crate::RedisAdapter::close) waits to publish what is still queued.
    pub close_timeout: Duration,
    /// What `send` keeps while the link is down, and for how long (10 s and 64 MiB by default;
    /// see [`HoldLimits`]). The server's `cluster.relay_hold_ms` sets the time.
    pub relay_hold: HoldLimits,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            send_queue: 8192,
            event_queue: 8192,
            publish_batch: 256,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            health_interval: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
            relay_hold: HoldLimits::default(),
        }
    }
}

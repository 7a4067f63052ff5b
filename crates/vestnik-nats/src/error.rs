//! The errors of building a NATS adapter. Once built, the adapter reports trouble only as
//! `Disconnected` events, logs and counters: it never returns an error to the hot path.
//!
//! This module must never hold a password: URLs are reported without their credentials.

use std::time::Duration;

/// Why [`NatsAdapter::connect`](crate::NatsAdapter::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL (or one of a comma-separated list) is not a NATS server address.
    #[error("invalid NATS URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, credentials redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The cluster prefix cannot start NATS subjects.
    #[error("invalid cluster prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The first connection failed.
    #[error("cannot connect to NATS: {0}")]
    Connect(#[from] async_nats::ConnectError),
    /// Subscribing on the first connection failed.
    #[error("cannot subscribe on NATS: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The server did not confirm the subscriptions in time.
    #[error("NATS did not confirm the subscriptions within {0:?}")]
    Timeout(Duration),
    /// A JetStream call of the history helpers failed (see [`delete_history_at`](crate::delete_history_at)).
    #[error("NATS JetStream: {0}")]
    JetStream(String),
}

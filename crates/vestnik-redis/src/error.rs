//! The errors of building a Redis adapter. Once built, the adapter reports trouble only as
//! `Disconnected` events, logs and counters: it never returns an error to the hot path.
//!
//! This module must never hold a password: URLs are reported without their credentials.

use std::time::Duration;

/// Why [`RedisAdapter::connect`](crate::RedisAdapter::connect) failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The URL is not one the adapter understands.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// The cluster prefix cannot name pub/sub channels.
    #[error("invalid cluster prefix {prefix:?}: {reason}")]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Redis refused or dropped the first connection, or a command on it failed.
    #[error("cannot connect to Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The first connection (including its subscriptions) did not complete in time.
    #[error("timed out connecting to Redis after {0:?}")]
    Timeout(Duration),
}

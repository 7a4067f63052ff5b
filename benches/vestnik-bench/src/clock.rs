//! One process-wide time base, so a timestamp taken by the trigger side can be compared with the
//! moment a socket of the same process receives the event.
//!
//! The base is a monotonic [`Instant`]; wall-clock time is only used for the API's `auth_timestamp`.
//! This module must never be used to compare times across processes.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static BASE: OnceLock<Instant> = OnceLock::new();

/// Fixes the time base; call once at start so early timestamps are small.
pub fn init() {
    let _ = base();
}

fn base() -> Instant {
    *BASE.get_or_init(Instant::now)
}

/// Microseconds since the process-wide base.
pub fn now_us() -> u64 {
    u64::try_from(base().elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Unix time in seconds, as the signed HTTP API's `auth_timestamp` wants it.
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

//! Reconnect delays: exponential growth from a floor to a cap, with jitter so that a fleet of nodes
//! that lost the same backbone does not reconnect in lockstep.
//!
//! This module must never return a zero delay for a retry or a delay above the cap: a zero delay
//! turns an outage into a busy loop, an unbounded one leaves a node cut off after the backbone is back.

use std::time::Duration;

use rand::Rng;

/// The delay before retry number `attempt` (0 for the first retry): `min * 2^attempt`, capped at
/// `max`, then drawn uniformly from its upper half ("equal jitter"), so it stays within
/// `[min / 2, max]` and never collapses to zero.
pub fn reconnect_delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let min = min.max(Duration::from_millis(1));
    let max = max.max(min);
    // 2^16 times any sane floor is past any sane cap; the clamp keeps the shift defined.
    let ceiling = min.saturating_mul(1u32 << attempt.min(16)).min(max);
    let half = ceiling / 2;
    let spread = u64::try_from((ceiling - half).as_micros()).unwrap_or(u64::MAX);
    half + Duration::from_micros(rand::rng().random_range(0..=spread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_never_hits_zero() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..100 {
            let d = reconnect_delay(attempt, min, max);
            let ceiling = (min * 2u32.saturating_pow(attempt.min(16))).min(max);
            assert!(d >= ceiling / 2 && d <= ceiling, "attempt {attempt}: {d:?}");
            assert!(d > Duration::ZERO);
        }
        assert!(reconnect_delay(0, Duration::ZERO, Duration::ZERO) > Duration::ZERO);
    }
}

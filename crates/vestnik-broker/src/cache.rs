//! Cache hints for the fan-out. A delivery at light load touches each subscriber's outbox and
//! socket state after the kernel's send path for the previous subscriber has evicted them from the
//! cache, so every delivery used to wait for the same misses one after another. Asking for a batch
//! of lines up front lets those misses overlap. A hint never changes what the program does: on a
//! target without prefetch instructions it is a no-op.

/// Starts loading the cache line holding `value` without waiting for it.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    ))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    )))]
    let _ = value;
}

//! The abuse limits that need state at the edge: new sockets and console sign-ins per client IP, and
//! signed API requests per app.
//!
//! - [`IpRateLimiter`]: a fixed window per IP, used twice: new sockets (`ip_connection_rate` per
//!   `ip_connection_window` seconds) and console sign-in attempts (`console.signin_attempts` per
//!   minute, so a secret cannot be guessed at speed). Over it, the upgrade is answered 429 with `Retry-After` before
//!   anything is allocated for the socket, so a flood costs as little as possible; clients that
//!   follow Pusher's reconnect rules retry after a backoff. Expired windows are dropped once per
//!   window, so the map holds at most the IPs seen in the last window. IPv6 clients are counted by
//!   their /64 (see [`client_key`]): one host usually holds a whole /64, so keying on the full
//!   address would let it open a fresh budget per address.
//! - [`ApiLimiter`]: a token bucket per app holding one second's worth of `api_rate_limit`. Over it,
//!   429 with `Retry-After`. It is checked after the signature, so nobody can spend an app's budget
//!   without its secret.
//!
//! Both are per node. This module must never sleep or wait: a check is one short lock.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The window of `console.signin_attempts`: attempts are counted per client IP per minute.
pub const SIGNIN_WINDOW_SECS: u64 = 60;

/// A refusal: how many whole seconds to wait before trying again (at least 1), for `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// `d` rounded up to whole seconds, at least 1: what `Retry-After` can say.
fn whole_seconds(d: Duration) -> u64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs.max(1)
}

/// Bits of an IPv6 address that name one site or host: a /64 is the smallest prefix an ISP hands
/// out and the subnet SLAAC addresses live in (RFC 4291 section 2.5.1, RFC 6177), so one client can
/// pick any address in it at will.
const IPV6_CLIENT_PREFIX_BITS: u32 = 64;

/// The key a client IP is counted under: an IPv4 address as it is (an IPv4-mapped IPv6 address as its
/// IPv4 address), an IPv6 address by its /64 with the host bits zeroed.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_CLIENT_PREFIX_BITS);
                IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// The fixed windows of every IP seen lately, under one lock.
#[derive(Debug)]
struct IpWindows {
    /// Per client key (see [`client_key`]): when its window started and how many attempts it made.
    windows: HashMap<IpAddr, (Instant, u32)>,
    /// When expired windows were last dropped; done at most once per window.
    last_prune: Instant,
}

/// Attempts (new sockets, console sign-ins) per client IP per window.
#[derive(Debug, Clone)]
pub struct IpRateLimiter {
    /// Attempts allowed per window; 0 turns the limit off.
    rate: u32,
    /// The window's length.
    window: Duration,
    /// The windows, shared by every clone.
    inner: Arc<Mutex<IpWindows>>,
}

impl IpRateLimiter {
    /// `rate` sockets per `window`; a rate of 0 admits everything.
    pub fn new(rate: u32, window: Duration) -> Self {
        Self {
            rate,
            window,
            inner: Arc::new(Mutex::new(IpWindows {
                windows: HashMap::new(),
                last_prune: Instant::now(),
            })),
        }
    }

    /// Counts a new socket from `ip` (IPv6 by its /64, see [`client_key`]) at `now`, or says how
    /// long until its window ends.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), RetryAfter> {
        if self.rate == 0 {
            return Ok(());
        }
        let ip = client_key(ip);
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if now.saturating_duration_since(inner.last_prune) >= self.window {
            let window = self.window;
            inner
                .windows
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < window);
            inner.last_prune = now;
        }
        let entry = inner.windows.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.rate {
            let left = self
                .window
                .saturating_sub(now.saturating_duration_since(entry.0));
            return Err(RetryAfter(whole_seconds(left)));
        }
        entry.1 += 1;
        Ok(())
    }

    /// Whether `ip` has used up its window at `now`, without counting an attempt: checked before an
    /// attempt whose failures alone are counted (admin tokens), so a client over the limit cannot
    /// try again until its window ends.
    pub fn exhausted(&self, ip: IpAddr, now: Instant) -> Option<RetryAfter> {
        if self.rate == 0 {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, count) = *inner.windows.get(&client_key(ip))?;
        let age = now.saturating_duration_since(start);
        (age < self.window && count >= self.rate)
            .then(|| RetryAfter(whole_seconds(self.window.saturating_sub(age))))
    }
}

/// One app's token bucket.
#[derive(Debug)]
struct Bucket {
    /// Requests it may still make now; refilled at `api_rate_limit` per second, up to one second's
    /// worth.
    tokens: f64,
    /// When `tokens` was last refilled.
    last: Instant,
}

/// Signed API requests per app per second.
#[derive(Debug, Clone, Default)]
pub struct ApiLimiter {
    /// Per app id, shared by every clone.
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl ApiLimiter {
    /// Takes one request from `app_id`'s bucket of `per_second` (0: no limit) at `now`.
    pub fn check(&self, app_id: &str, per_second: u32, now: Instant) -> Result<(), RetryAfter> {
        if per_second == 0 {
            return Ok(());
        }
        let rate = f64::from(per_second);
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(app_id.to_owned()).or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.last = now;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
            Err(RetryAfter(whole_seconds(wait)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window is fixed, per IP, and `Retry-After` says how much of it is left, rounded up.
    #[test]
    fn ip_window_counts_per_ip_and_resets() {
        let l = IpRateLimiter::new(2, Duration::from_secs(10));
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t = Instant::now();
        assert!(l.check(a, t).is_ok());
        assert!(l.check(a, t).is_ok());
        assert_eq!(
            l.check(a, t + Duration::from_millis(2500)),
            Err(RetryAfter(8))
        );
        assert!(l.check(b, t).is_ok(), "another IP has its own window");
        assert!(
            l.check(a, t + Duration::from_secs(10)).is_ok(),
            "a new window"
        );
        assert!(IpRateLimiter::new(0, Duration::from_secs(1))
            .check(a, t)
            .is_ok());
    }

    /// One host cannot multiply its budget by picking new addresses in its /64, and an IPv4 client
    /// seen through a dual-stack socket is counted as its IPv4 address, not as a separate client.
    #[test]
    fn ipv6_clients_share_the_budget_of_their_64() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        let l = IpRateLimiter::new(2, Duration::from_secs(10));
        let t = Instant::now();
        assert!(l.check(ip("2001:db8:1:2::1"), t).is_ok());
        assert!(l.check(ip("2001:db8:1:2:ffff::9"), t).is_ok());
        assert!(
            l.check(ip("2001:db8:1:2:1234:5678:9abc:def0"), t).is_err(),
            "a third address in the same /64 is over the rate"
        );
        assert!(
            l.check(ip("2001:db8:1:3::1"), t).is_ok(),
            "the next /64 has its own budget"
        );
        // An IPv4 client reaching a dual-stack socket counts as itself.
        assert!(l.check(ip("192.0.2.7"), t).is_ok());
        assert!(l.check(ip("::ffff:192.0.2.7"), t).is_ok());
        assert!(l.check(ip("192.0.2.7"), t).is_err());
    }

    /// The map forgets expired windows, so a scan from many addresses cannot grow it without bound.
    #[test]
    fn ip_windows_are_pruned() {
        let l = IpRateLimiter::new(1, Duration::from_secs(1));
        let t = Instant::now();
        for i in 0..100u8 {
            l.check(IpAddr::from([10, 0, 0, i]), t).unwrap();
        }
        l.check(IpAddr::from([10, 0, 1, 0]), t + Duration::from_secs(2))
            .unwrap();
        assert_eq!(l.inner.lock().unwrap().windows.len(), 1);
    }

    /// The bucket holds a second's worth, refills continuously, and is per app; 0 turns it off.
    #[test]
    fn api_bucket_refills_and_says_when() {
        let l = ApiLimiter::default();
        let t = Instant::now();
        for _ in 0..3 {
            l.check("a", 3, t).unwrap();
        }
        assert_eq!(l.check("a", 3, t), Err(RetryAfter(1)));
        assert!(l.check("b", 3, t).is_ok(), "apps have their own buckets");
        assert!(l.check("a", 3, t + Duration::from_millis(400)).is_ok());
        assert!(l.check("a", 0, t).is_ok(), "0 means no limit");
    }
}

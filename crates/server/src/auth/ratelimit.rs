//! Failed-authentication rate limiting per source address.
//!
//! Each address has a bucket of [`BURST`] failures that refills at one per
//! [`REFILL_EVERY`]. While the bucket is empty the address gets 429 without its credentials
//! being checked, so guessing tokens from one address is slowed to ten tries a minute.
//! Successful requests cost nothing; an address that only ever authenticates correctly is
//! never limited. IPv6 addresses are grouped by /64 (one host usually owns a whole /64).
//! The table is bounded: when it is full, buckets that have refilled completely are
//! dropped, and if none has, the oldest entries go.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an address may make in a burst.
pub const BURST: u32 = 20;
/// One failure is forgiven per this interval.
pub const REFILL_EVERY: Duration = Duration::from_secs(6);
/// Most addresses tracked at once.
const MAX_TRACKED: usize = 100_000;

#[derive(Clone, Copy)]
struct Bucket {
    /// Failures still allowed, scaled by the refill interval (in nanoseconds of credit).
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let gained = now.duration_since(self.updated).as_secs_f64() / REFILL_EVERY.as_secs_f64();
        self.tokens = (self.tokens + gained).min(BURST as f64);
        self.updated = now;
    }
}

/// Per-address failure budget.
#[derive(Default)]
pub struct FailureLimiter {
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// Addresses in the same IPv6 /64 share a bucket.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl FailureLimiter {
    /// `Some(retry_after)` when `ip` has used up its failures and must wait.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.get_mut(&key(ip))?;
        b.refill(now);
        if b.tokens >= 1.0 {
            None
        } else {
            Some(
                REFILL_EVERY
                    .mul_f64(1.0 - b.tokens)
                    .max(Duration::from_secs(1)),
            )
        }
    }

    /// Records a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&key(ip)) {
            map.retain(|_, b| {
                b.refill(now);
                b.tokens < BURST as f64
            });
            if map.len() >= MAX_TRACKED {
                let mut ages: Vec<(Instant, IpAddr)> =
                    map.iter().map(|(ip, b)| (b.updated, *ip)).collect();
                ages.sort();
                for (_, ip) in ages.iter().take(MAX_TRACKED / 10) {
                    map.remove(ip);
                }
            }
        }
        let b = map.entry(key(ip)).or_insert(Bucket {
            tokens: BURST as f64,
            updated: now,
        });
        b.refill(now);
        b.tokens = (b.tokens - 1.0).max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_burst_and_only_that_address() {
        let l = FailureLimiter::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..BURST {
            assert_eq!(l.blocked(a), None);
            l.failed(a);
        }
        let wait = l.blocked(a).expect("blocked after the burst");
        assert!(wait >= Duration::from_secs(1) && wait <= REFILL_EVERY);
        assert_eq!(l.blocked(b), None);
    }

    #[test]
    fn ipv6_hosts_in_one_64_share_a_bucket() {
        let l = FailureLimiter::default();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..BURST {
            l.failed(a);
        }
        assert!(l.blocked(b).is_some());
        assert!(l.blocked("2001:db9::1".parse().unwrap()).is_none());
    }
}

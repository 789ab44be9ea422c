//! Token buckets keyed by a name, kept in the memory of each API process (N processes allow N ×
//! the rate) and driven by the injected clock. Two uses: the per-tenant API rate limit (refilled
//! at the tenant's `api_rate_per_second`, holding two seconds' worth so short bursts pass), and
//! failed authentications per client address (see [`RateLimiter::for_auth_failures`]).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Seconds of refill a bucket holds.
    burst_seconds: f64,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::with_burst_seconds(2.0)
    }
}

/// Failed authentications a client address may make at once, and then per second.
pub const AUTH_FAILURE_BURST: f64 = 20.0;
pub const AUTH_FAILURES_PER_SECOND: i64 = 1;
/// Buckets kept before full ones are forgotten, so many addresses cannot grow the map for ever.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    pub fn with_burst_seconds(burst_seconds: f64) -> Self {
        Self {
            buckets: Mutex::default(),
            burst_seconds,
        }
    }

    /// The limiter of failed authentications: [`AUTH_FAILURE_BURST`] at once, then
    /// [`AUTH_FAILURES_PER_SECOND`], per client address.
    pub fn for_auth_failures() -> Self {
        Self::with_burst_seconds(AUTH_FAILURE_BURST / AUTH_FAILURES_PER_SECOND as f64)
    }

    /// Takes a token for `key`; `Err(seconds)` until one is available when none is left.
    pub fn check(&self, key: &str, per_second: i64, now: DateTime<Utc>) -> Result<(), u64> {
        self.with_bucket(key, per_second, now, true)
    }

    /// Whether `key` has a token left, without taking it.
    pub fn peek(&self, key: &str, per_second: i64, now: DateTime<Utc>) -> Result<(), u64> {
        self.with_bucket(key, per_second, now, false)
    }

    fn with_bucket(
        &self,
        key: &str,
        per_second: i64,
        now: DateTime<Utc>,
        take: bool,
    ) -> Result<(), u64> {
        let rate = per_second.max(1) as f64;
        let capacity = (rate * self.burst_seconds).max(1.0);
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(key) {
            // A bucket that has refilled is the same as none: forget those.
            buckets.retain(|_, bucket| {
                let idle = (now - bucket.updated).num_milliseconds().max(0) as f64 / 1e3;
                bucket.tokens + idle * rate < capacity
            });
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = (now - bucket.updated)
            .num_microseconds()
            .unwrap_or(0)
            .max(0) as f64
            / 1e6;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::default();
        let t0: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        // 2 per second: a burst of 4, then one every half second.
        for _ in 0..4 {
            assert_eq!(limiter.check("a", 2, t0), Ok(()));
        }
        assert_eq!(limiter.check("a", 2, t0), Err(1));
        assert_eq!(
            limiter.check("b", 2, t0),
            Ok(()),
            "tenants have their own buckets"
        );
        let later = t0 + chrono::Duration::milliseconds(500);
        assert_eq!(limiter.check("a", 2, later), Ok(()));
        assert_eq!(limiter.check("a", 2, later), Err(1));
    }

    #[test]
    fn peeking_takes_nothing_and_auth_failures_allow_a_burst_of_twenty() {
        let limiter = RateLimiter::for_auth_failures();
        let t0: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        for _ in 0..100 {
            assert_eq!(
                limiter.peek("10.0.0.1", AUTH_FAILURES_PER_SECOND, t0),
                Ok(())
            );
        }
        for _ in 0..20 {
            assert_eq!(
                limiter.check("10.0.0.1", AUTH_FAILURES_PER_SECOND, t0),
                Ok(())
            );
        }
        assert_eq!(
            limiter.peek("10.0.0.1", AUTH_FAILURES_PER_SECOND, t0),
            Err(1)
        );
        assert_eq!(
            limiter.peek("10.0.0.2", AUTH_FAILURES_PER_SECOND, t0),
            Ok(())
        );
        let later = t0 + chrono::Duration::seconds(1);
        assert_eq!(
            limiter.peek("10.0.0.1", AUTH_FAILURES_PER_SECOND, later),
            Ok(())
        );
    }
}

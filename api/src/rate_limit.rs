//! The per-tenant API rate limit: a token bucket per tenant, refilled at the tenant's
//! `api_rate_per_second` and holding up to two seconds' worth, so short bursts pass. Kept in the
//! memory of each API process (N processes allow N × the rate) and driven by the injected clock.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Seconds of refill a bucket holds.
const BURST_SECONDS: f64 = 2.0;

impl RateLimiter {
    /// Takes a token for `tenant`; `Err(seconds)` until one is available when none is left.
    pub fn check(&self, tenant: &str, per_second: i64, now: DateTime<Utc>) -> Result<(), u64> {
        let rate = per_second.max(1) as f64;
        let capacity = (rate * BURST_SECONDS).max(1.0);
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        let bucket = buckets.entry(tenant.to_owned()).or_insert(Bucket {
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
            bucket.tokens -= 1.0;
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
}

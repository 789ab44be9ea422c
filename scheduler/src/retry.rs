//! Retry policy as data: which answers are retried, and how long to wait before the next attempt.
//! No I/O here, so every rule is tested without a network.

use chrono::{DateTime, Duration, Utc};

use crate::definition::RetryPolicy;
use crate::schedule::splitmix64;

/// What one attempt's result means for its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx: the run succeeded.
    Success,
    /// Worth another attempt: connection errors, timeouts, 408, 425, 429 and 5xx.
    Retry,
    /// Any other answer (3xx is not followed, other 4xx are the receiver saying no).
    Fail,
}

pub fn classify_status(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        408 | 425 | 429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Fail,
    }
}

/// The delay after the `failed_attempt`-th attempt (1-based): `initial × multiplier^(n−1)`,
/// capped at `max_backoff_ms`, with "equal jitter" (half fixed, half random) so that runs that
/// failed together do not retry together. The random half is derived from `seed` (the run id and
/// attempt), so the same failure always yields the same delay.
pub fn backoff(policy: &RetryPolicy, failed_attempt: i32, seed: u64) -> Duration {
    let exponent = (failed_attempt.max(1) - 1).min(64);
    let raw = policy.initial_backoff_ms as f64 * policy.multiplier.powi(exponent);
    let capped = raw.min(policy.max_backoff_ms as f64).max(0.0) as u64;
    let half = capped / 2;
    let jitter = splitmix64(seed ^ failed_attempt as u64) % (half + 1);
    Duration::milliseconds((capped - half + jitter) as i64)
}

/// The delay before the next attempt: the backoff, or the receiver's `Retry-After` when that is
/// longer, never more than `max_backoff_ms`.
pub fn next_delay(
    policy: &RetryPolicy,
    failed_attempt: i32,
    seed: u64,
    retry_after: Option<Duration>,
) -> Duration {
    let computed = backoff(policy, failed_attempt, seed);
    let asked = retry_after
        .unwrap_or_else(Duration::zero)
        .min(Duration::milliseconds(policy.max_backoff_ms));
    computed.max(asked)
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u32>() {
        return Some(Duration::seconds(i64::from(seconds)));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).max(Duration::zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 10_000,
            multiplier: 2.0,
        }
    }

    #[test]
    fn statuses_are_classified() {
        for (status, verdict) in [
            (200, Verdict::Success),
            (204, Verdict::Success),
            (301, Verdict::Fail),
            (400, Verdict::Fail),
            (404, Verdict::Fail),
            (408, Verdict::Retry),
            (410, Verdict::Fail),
            (425, Verdict::Retry),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
        ] {
            assert_eq!(classify_status(status), verdict, "status {status}");
        }
    }

    #[test]
    fn backoff_grows_exponentially_within_jitter_and_is_capped() {
        let p = policy();
        for (attempt, nominal) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (4, 8_000),
            (5, 10_000),
            (9, 10_000),
        ] {
            for seed in 0..50 {
                let d = backoff(&p, attempt, seed).num_milliseconds();
                assert!(
                    (nominal / 2..=nominal).contains(&d),
                    "attempt {attempt}: {d} ms not within [{}, {nominal}]",
                    nominal / 2
                );
            }
        }
        assert_eq!(
            backoff(&p, 3, 7),
            backoff(&p, 3, 7),
            "deterministic for one seed"
        );
    }

    #[test]
    fn retry_after_wins_when_longer_but_is_clamped() {
        let p = policy();
        let d = next_delay(&p, 1, 1, Some(Duration::seconds(7)));
        assert_eq!(d, Duration::seconds(7));
        let d = next_delay(&p, 1, 1, Some(Duration::seconds(3600)));
        assert_eq!(d, Duration::milliseconds(10_000));
        let d = next_delay(&p, 4, 1, Some(Duration::seconds(1)));
        assert!(d >= Duration::seconds(4));
    }

    #[test]
    fn parses_retry_after_forms() {
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::seconds(120)));
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 10:00:30 GMT", now),
            Some(Duration::seconds(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 22 Nov 2026 09:00:00 GMT", now),
            Some(Duration::zero())
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}

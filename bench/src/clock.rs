//! Wall-clock time in microseconds since the Unix epoch: the one time base of the bench, so that
//! an arrival can be compared with a `hookbeat-scheduled-for` header.

use chrono::{DateTime, TimeZone, Utc};

pub fn now_us() -> i64 {
    Utc::now().timestamp_micros()
}

pub fn to_datetime(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

/// The first whole minute strictly after `us`.
pub fn next_minute_after(us: i64) -> i64 {
    const MINUTE: i64 = 60_000_000;
    (us.div_euclid(MINUTE) + 1) * MINUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_round_up_strictly() {
        assert_eq!(next_minute_after(0), 60_000_000);
        assert_eq!(next_minute_after(59_999_999), 60_000_000);
        assert_eq!(next_minute_after(60_000_000), 120_000_000);
        assert_eq!(
            to_datetime(next_minute_after(1_700_000_001_000_000)).to_rfc3339(),
            "2023-11-14T22:14:00+00:00"
        );
    }
}

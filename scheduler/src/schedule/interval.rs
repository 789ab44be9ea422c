//! `interval`: fires at every `anchor + k × every`, for any integer k. Computed arithmetically,
//! so the next fire after any instant costs the same, however far away the anchor is.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    every_micros: i64,
    anchor_micros: i64,
}

/// The span of the instants hookbeat accepts (1970 … 9999): a longer period could never put
/// two fires in that range. Small enough that no arithmetic below can overflow.
const MAX_EVERY_SECONDS: i64 = crate::instant::MAX_TIMESTAMP;

impl Interval {
    pub fn new(every_seconds: i64, anchor: Option<DateTime<Utc>>) -> Result<Interval, String> {
        if every_seconds < 1 {
            return Err(format!("must be at least 1, got {every_seconds}"));
        }
        if every_seconds > MAX_EVERY_SECONDS {
            return Err(format!(
                "must be at most {MAX_EVERY_SECONDS} (the span of 1970 to 9999), got {every_seconds}"
            ));
        }
        Ok(Interval {
            every_micros: every_seconds * 1_000_000,
            anchor_micros: anchor.map_or(0, |a| a.timestamp_micros()),
        })
    }

    pub fn every(&self) -> Duration {
        Duration::microseconds(self.every_micros)
    }

    /// The first fire strictly after `after`; `None` only where the arithmetic leaves the
    /// representable range (a caller's instant far outside 1970 … 9999).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let since_anchor = after.timestamp_micros().checked_sub(self.anchor_micros)?;
        // Euclidean division rounds towards -inf, so this is right before the anchor too.
        let k = since_anchor.div_euclid(self.every_micros).checked_add(1)?;
        let offset = k.checked_mul(self.every_micros)?;
        DateTime::from_timestamp_micros(self.anchor_micros.checked_add(offset)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn fires_on_the_anchor_grid() {
        let i = Interval::new(10, Some(t("2026-01-01T00:00:03Z"))).unwrap();
        assert_eq!(
            i.next_after(t("2026-05-05T10:00:00Z")),
            Some(t("2026-05-05T10:00:03Z"))
        );
        assert_eq!(
            i.next_after(t("2026-05-05T10:00:03Z")),
            Some(t("2026-05-05T10:00:13Z"))
        );
        // Before the anchor the grid extends backwards.
        assert_eq!(
            i.next_after(t("2025-12-31T23:59:50Z")),
            Some(t("2025-12-31T23:59:53Z"))
        );
    }

    #[test]
    fn default_anchor_is_the_epoch() {
        let i = Interval::new(3600, None).unwrap();
        assert_eq!(
            i.next_after(t("2026-07-01T10:30:00Z")),
            Some(t("2026-07-01T11:00:00Z"))
        );
    }

    #[test]
    fn rejects_non_positive_and_absurd_periods() {
        assert!(Interval::new(0, None).is_err());
        assert!(Interval::new(-5, None).is_err());
        assert!(Interval::new(MAX_EVERY_SECONDS + 1, None).is_err());
        assert!(Interval::new(i64::MAX, None).is_err());
    }

    #[test]
    fn periods_beyond_ten_years_work_to_the_edge_of_the_range() {
        let century = 100 * 365 * 86_400;
        let i = Interval::new(century, Some(t("2000-01-01T00:00:00Z"))).unwrap();
        assert_eq!(
            i.next_after(t("2026-01-01T00:00:00Z")),
            Some(t("2000-01-01T00:00:00Z") + Duration::seconds(century))
        );
        let longest = Interval::new(MAX_EVERY_SECONDS, None).unwrap();
        assert_eq!(
            longest.next_after(t("1970-01-01T00:00:00Z")),
            Some(crate::instant::max())
        );
        // Extreme instants give no fire rather than overflowing.
        let far = DateTime::<Utc>::MIN_UTC;
        assert!(Interval::new(1, Some(crate::instant::max()))
            .unwrap()
            .next_after(far)
            .is_some_and(|fire| fire <= t("1970-01-01T00:00:00Z")));
        assert!(longest.next_after(DateTime::<Utc>::MAX_UTC).is_none());
    }
}

//! A fire as the schedule's wall clock shows it: the local time, the UTC offset, and what a DST
//! change did to it. Wall-clock kinds (crontab, rrule) read their own zone; the other kinds
//! are UTC.

use chrono::offset::LocalResult;
use chrono::{DateTime, Duration, NaiveDateTime, Offset, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{wall_clock, CompiledSpec, DstGap};

/// What a daylight-saving change did to a fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DstNote {
    /// The matching local time did not exist (clocks went forward); the fire was moved past the
    /// gap (`dst_gap: shift`).
    GapShifted,
    /// The local times did not exist (clocks went forward) and were not fired (`dst_gap:
    /// skip`): the timeline's entry for a gap.
    GapSkipped,
    /// The local time happened twice (clocks went back); this is its first occurrence.
    OverlapFirst,
    /// The local time happened twice; this is its second occurrence.
    OverlapSecond,
}

/// One fire with its local reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LocalFire {
    /// The instant, UTC.
    pub at: DateTime<Utc>,
    /// The wall-clock time in the schedule's zone, without an offset.
    #[schema(value_type = String, example = "2026-10-25T02:30:00")]
    pub local_time: NaiveDateTime,
    /// The zone's offset from UTC at that instant, `±HH:MM`.
    #[schema(example = "+01:00")]
    pub utc_offset: String,
    /// Set when a DST change moved the fire or made its local time ambiguous; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub dst: Option<DstNote>,
}

/// `at`, a fire of `spec`, on the schedule's wall clock.
pub fn local_fire(spec: &CompiledSpec, at: DateTime<Utc>) -> LocalFire {
    let rule = spec.wall_clock();
    let zone = spec.zone();
    let local = at.with_timezone(&zone);
    let local_time = local.naive_local();
    let dst = match zone.from_local_datetime(&local_time) {
        LocalResult::Ambiguous(first, _) if first == local => Some(DstNote::OverlapFirst),
        LocalResult::Ambiguous(..) => Some(DstNote::OverlapSecond),
        // A wall-clock rule fires on matching local times; one that does not match was moved
        // out of a gap.
        _ => match rule {
            Some(rule) if !rule.matches_local(local_time) => Some(DstNote::GapShifted),
            _ => None,
        },
    };
    LocalFire {
        at,
        local_time,
        utc_offset: offset_text(local.offset().fix().local_minus_utc()),
        dst,
    }
}

/// The longest span [`gap_skips`] looks through: a plan that covers more (a catch-up after a
/// long outage) records the gaps of its last year only.
const MAX_GAP_SEARCH: Duration = Duration::days(366);
/// The step of the search for offset changes: shorter than any two changes of a zone are apart.
const GAP_SEARCH_STEP: Duration = Duration::hours(12);

/// Fires a wall-clock rule under `dst_gap: skip` does not make from `from` (inclusive) to `before`
/// (exclusive): the matching local times inside each spring-forward gap, as (the instant the
/// gap starts, how many matching local times it swallowed). Empty for other kinds and policies.
pub fn gap_skips(
    spec: &CompiledSpec,
    from: DateTime<Utc>,
    before: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, i64)> {
    let Some(rule) = spec.wall_clock() else {
        return Vec::new();
    };
    if rule.placement().gap != DstGap::Skip || before <= from {
        return Vec::new();
    }
    let zone = rule.zone();
    let offset = |at: DateTime<Utc>| at.with_timezone(&zone).offset().fix().local_minus_utc();
    let mut gaps = Vec::new();
    let mut low = from.max(before - MAX_GAP_SEARCH);
    while low < before {
        let high = (low + GAP_SEARCH_STEP).min(before);
        if offset(high) > offset(low) {
            // Clocks went forward in (low, high]: find the instant, to the second.
            let (mut a, mut b) = (low.timestamp(), high.timestamp() + 1);
            let at = |seconds: i64| DateTime::from_timestamp(seconds, 0).unwrap_or(high);
            while b - a > 1 {
                let mid = a + (b - a) / 2;
                if offset(at(mid)) > offset(low) {
                    b = mid;
                } else {
                    a = mid;
                }
            }
            let (a, start) = (at(a), at(b));
            let jump = i64::from(offset(start) - offset(a));
            // The local times that did not exist: from the old wall clock at the change, for
            // the length of the jump.
            let first_local = start.timestamp() + i64::from(offset(a));
            let missing = wall_clock::matches_between(rule, first_local, first_local + jump);
            if missing > 0 && start >= from {
                gaps.push((start, missing));
            }
        }
        low = high;
    }
    gaps
}

/// `+HH:MM` or `-HH:MM` for an offset in seconds (zones of this era are whole minutes).
fn offset_text(seconds: i32) -> String {
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleSpec;

    fn crontab(expression: &str, zone: &str, extra: serde_json::Value) -> CompiledSpec {
        let mut spec =
            serde_json::json!({"kind": "crontab", "expression": expression, "timezone": zone});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ScheduleSpec::from_json(&spec, "schedule")
            .unwrap()
            .compile("schedule")
            .unwrap()
    }

    fn fires(spec: &CompiledSpec, after: &str, count: usize) -> Vec<LocalFire> {
        let mut at: DateTime<Utc> = after.parse().unwrap();
        (0..count)
            .map(|_| {
                at = spec.next_after(at).unwrap();
                local_fire(spec, at)
            })
            .collect()
    }

    fn reading(fire: &LocalFire) -> (String, String, String, Option<DstNote>) {
        (
            fire.at.to_rfc3339(),
            fire.local_time.to_string(),
            fire.utc_offset.clone(),
            fire.dst,
        )
    }

    #[test]
    fn berlin_spring_forward_skips_the_missing_hour_under_dst_gap_skip() {
        // 2026-03-29: clocks go from 02:00 CET to 03:00 CEST at 01:00 UTC.
        let every_quarter = crontab("*/15 * * * *", "Europe/Berlin", serde_json::json!({}));
        let day = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let gaps = gap_skips(
            &every_quarter,
            day("2026-03-28T12:00:00Z"),
            day("2026-03-29T12:00:00Z"),
        );
        assert_eq!(gaps, [(day("2026-03-29T01:00:00Z"), 4)]);
        // The same range but the gap is elsewhere: nothing.
        assert!(gap_skips(
            &every_quarter,
            day("2026-03-29T01:00:01Z"),
            day("2026-04-29T00:00:00Z")
        )
        .is_empty());
        // Under shift (a fixed time's default) nothing is skipped.
        let fixed = crontab("30 2 * * *", "Europe/Berlin", serde_json::json!({}));
        assert!(gap_skips(
            &fixed,
            day("2026-03-28T12:00:00Z"),
            day("2026-03-30T00:00:00Z")
        )
        .is_empty());
        let skipping = crontab(
            "30 2 * * *",
            "Europe/Berlin",
            serde_json::json!({"dst_gap": "skip"}),
        );
        assert_eq!(
            gap_skips(
                &skipping,
                day("2026-03-28T12:00:00Z"),
                day("2026-03-30T00:00:00Z")
            ),
            [(day("2026-03-29T01:00:00Z"), 1)]
        );
    }

    #[test]
    fn new_york_fall_back_fires_twice_at_1_30_and_says_which_is_which() {
        // 2026-11-01: clocks go back from 02:00 EDT to 01:00 EST; 01:30 happens twice.
        let spec = crontab(
            "30 1 * * *",
            "America/New_York",
            serde_json::json!({"dst_overlap": "both"}),
        );
        let seen: Vec<_> = fires(&spec, "2026-10-31T12:00:00Z", 3)
            .iter()
            .map(reading)
            .collect();
        let expected = |at: &str, local: &str, offset: &str, dst| {
            (at.to_owned(), local.to_owned(), offset.to_owned(), dst)
        };
        assert_eq!(
            seen,
            vec![
                expected(
                    "2026-11-01T05:30:00+00:00",
                    "2026-11-01 01:30:00",
                    "-04:00",
                    Some(DstNote::OverlapFirst)
                ),
                expected(
                    "2026-11-01T06:30:00+00:00",
                    "2026-11-01 01:30:00",
                    "-05:00",
                    Some(DstNote::OverlapSecond)
                ),
                expected(
                    "2026-11-02T06:30:00+00:00",
                    "2026-11-02 01:30:00",
                    "-05:00",
                    None
                ),
            ]
        );
    }

    #[test]
    fn berlin_spring_forward_shifts_2_30_past_the_gap_and_says_so() {
        // 2026-03-29: clocks go forward from 02:00 CET to 03:00 CEST; 02:30 does not exist.
        let spec = crontab("30 2 * * *", "Europe/Berlin", serde_json::json!({}));
        let seen: Vec<_> = fires(&spec, "2026-03-28T12:00:00Z", 2)
            .iter()
            .map(|fire| (fire.utc_offset.clone(), fire.dst))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("+02:00".to_owned(), Some(DstNote::GapShifted)),
                ("+02:00".to_owned(), None),
            ]
        );
        let shifted = &fires(&spec, "2026-03-28T12:00:00Z", 1)[0];
        assert!(
            shifted.local_time.to_string().starts_with("2026-03-29 03:"),
            "{shifted:?}"
        );
    }

    #[test]
    fn other_kinds_read_utc_and_offsets_keep_their_minutes() {
        let interval = ScheduleSpec::from_json(
            &serde_json::json!({"kind": "interval", "every_seconds": 3600}),
            "schedule",
        )
        .unwrap()
        .compile("schedule")
        .unwrap();
        let fire = &fires(&interval, "2026-11-01T05:10:00Z", 1)[0];
        assert_eq!((fire.utc_offset.as_str(), fire.dst), ("+00:00", None));
        assert_eq!(fire.local_time, fire.at.naive_utc());
        assert_eq!(offset_text(5 * 3600 + 45 * 60), "+05:45");
        assert_eq!(offset_text(-(9 * 3600 + 30 * 60)), "-09:30");
    }
}

//! A fire as the schedule's wall clock shows it: the local time, the UTC offset, and what a DST
//! change did to it. Crontab schedules read their own zone; the other kinds are UTC.

use chrono::offset::LocalResult;
use chrono::{DateTime, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::CompiledSpec;

/// What a daylight-saving change did to a fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DstNote {
    /// The matching local time did not exist (clocks went forward); the fire was moved past the
    /// gap (`dst_gap: shift`).
    GapShifted,
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
    let zone = match spec {
        CompiledSpec::Crontab(cron) => cron.timezone(),
        _ => Tz::UTC,
    };
    let local = at.with_timezone(&zone);
    let local_time = local.naive_local();
    let dst = match zone.from_local_datetime(&local_time) {
        LocalResult::Ambiguous(first, _) if first == local => Some(DstNote::OverlapFirst),
        LocalResult::Ambiguous(..) => Some(DstNote::OverlapSecond),
        _ => match spec {
            // A crontab fires on matching local times; one that does not match was moved out
            // of a gap.
            CompiledSpec::Crontab(cron) if !cron.matches_local(local_time) => {
                Some(DstNote::GapShifted)
            }
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

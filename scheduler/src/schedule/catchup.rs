//! Catch-up: which fires of a due schedule become runs. A fire more than [`MISFIRE_GRACE`] old
//! when it is planned was *missed* (no worker ran, or workers fell that far behind). Missed fires
//! follow the schedule's `catchup`: `skip` drops them, `latest` makes one run for the latest of
//! them, `all` makes a run for each, at most [`MAX_CATCHUP_RUNS`] (the most recent). Fires within
//! the grace are always delivered. `overlap: skip` keeps one run at a time, and `max_runs` caps
//! the total. Pure: the worker's materialise pass applies the plan.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

use super::local::gap_skips;
use super::Timing;
use crate::definition::{Catchup, Overlap};
use crate::skips::{Skip, SkipReason};

/// How late a fire may be and still count as on time rather than missed.
pub const MISFIRE_GRACE: Duration = Duration::seconds(60);
/// The most runs `catchup: all` makes for one schedule's missed fires.
pub const MAX_CATCHUP_RUNS: usize = 1_000;
/// Fires examined per schedule per pass before jumping ahead, so that a schedule that missed
/// millions of fires costs bounded work.
const MAX_SCAN: usize = 100_000;

/// What to do with one due schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The runs to create, oldest first.
    pub fires: Vec<DateTime<Utc>>,
    /// The schedule's new `next_run_at`; `None` when it will never fire again.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The fires passed over without a run, and why.
    pub skipped: Vec<Skip>,
}

/// Where a due schedule stands when its fires are planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Its next fire, at or before the planning instant.
    pub next_run_at: DateTime<Utc>,
    /// The runs it has made so far (`max_runs` counts them).
    pub total_runs: i64,
    pub catchup: Catchup,
    pub overlap: Overlap,
    /// Whether its previous run is unfinished (what `overlap: skip` waits for).
    pub previous_run_unfinished: bool,
}

/// Plans the runs of a schedule that is due at `now`.
pub fn plan(timing: &Timing, due: &Due, now: DateTime<Utc>) -> Plan {
    let Due {
        next_run_at,
        total_runs,
        catchup,
        overlap,
        previous_run_unfinished,
    } = *due;
    let missed_before = now - MISFIRE_GRACE;
    let mut missed: VecDeque<DateTime<Utc>> = VecDeque::new();
    let mut recent = Vec::new();
    let mut last_seen = None;
    let mut cursor = Some(next_run_at);
    let mut scanned = 0usize;
    let mut first_seen = next_run_at;
    // Every missed fire seen, and the last one let go to keep `missed` bounded.
    let mut missed_seen = 0i64;
    let mut missed_first = None;
    let mut let_go = None;

    while let Some(fire) = cursor.filter(|fire| *fire <= now) {
        last_seen = Some(fire);
        if fire < missed_before {
            missed_seen += 1;
            missed_first.get_or_insert(fire);
            missed.push_back(fire);
            if missed.len() > MAX_CATCHUP_RUNS {
                let_go = missed.pop_front();
            }
        } else {
            recent.push(fire);
        }
        scanned += 1;
        cursor = timing.next_fire(fire, total_runs);
        if scanned == MAX_SCAN {
            // Jump to a point from which the runs we may keep can still be found: twice the span
            // that MAX_CATCHUP_RUNS fires take at the pace seen so far, and at least a day.
            let pace = (fire - first_seen) / (MAX_SCAN as i32);
            let span = (pace * (2 * MAX_CATCHUP_RUNS as i32)).max(Duration::days(1));
            let resume = missed_before - span;
            if resume > fire {
                cursor = timing.next_fire(resume, total_runs);
                first_seen = resume;
            }
            scanned = 0;
        }
    }

    let kept = match catchup {
        Catchup::Skip => 0,
        Catchup::Latest => missed.len().min(1),
        Catchup::All => missed.len(),
    };
    let mut skipped = Vec::new();
    let dropped = missed_seen - kept as i64;
    if let (Some(first), true) = (missed_first, dropped > 0) {
        // The missed fires let go: all but the kept ones at the end of `missed`, and those let
        // go of before.
        let last = missed
            .len()
            .checked_sub(kept + 1)
            .map(|i| missed[i])
            .or(let_go)
            .unwrap_or(first);
        skipped.push(Skip {
            first,
            last,
            fires: dropped,
            reason: SkipReason::Catchup,
        });
    }
    let mut fires: Vec<DateTime<Utc>> = missed
        .iter()
        .skip(missed.len() - kept)
        .copied()
        .chain(recent)
        .collect();
    if overlap == Overlap::Skip {
        // One run at a time: nothing while the previous run is unfinished, else only the latest.
        let keep = usize::from(!previous_run_unfinished).min(fires.len());
        let passed_over: Vec<_> = fires.drain(..fires.len() - keep).collect();
        skipped.extend(Skip::of(&passed_over, SkipReason::Overlap));
    }
    if let Some(max) = timing.max_runs {
        let allowed = (max - total_runs).max(0) as usize;
        if fires.len() > allowed {
            skipped.extend(Skip::of(&fires.split_off(allowed), SkipReason::MaxRuns));
        }
    }
    let made = total_runs + fires.len() as i64;
    let next = match last_seen {
        Some(last) => timing.next_fire(last, made),
        None => Some(next_run_at),
    };
    if let Some(last) = last_seen {
        // Local times a spring-forward gap swallowed, from this plan's first fire up to the
        // next one (or the last one seen, when the schedule ends).
        let before = next.unwrap_or(last);
        for (at, fires) in gap_skips(&timing.spec, next_run_at, before) {
            skipped.push(Skip {
                first: at,
                last: at,
                fires,
                reason: SkipReason::DstGap,
            });
        }
        // Fires on dates the schedule's calendars exclude, over the same span.
        skipped.extend(timing.calendar_skips(next_run_at, before));
    }
    skipped.sort_by_key(|s| s.first);
    Plan {
        fires,
        next_run_at: next,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{CompiledSpec, Interval};

    /// [`super::plan`] with the due schedule's parts in a row, as the table below lists them.
    fn plan(
        timing: &Timing,
        next_run_at: DateTime<Utc>,
        now: DateTime<Utc>,
        total_runs: i64,
        catchup: Catchup,
        overlap: Overlap,
        previous_run_unfinished: bool,
    ) -> Plan {
        let due = Due {
            next_run_at,
            total_runs,
            catchup,
            overlap,
            previous_run_unfinished,
        };
        super::plan(timing, &due, now)
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn every(seconds: i64) -> Timing {
        Timing {
            spec: CompiledSpec::Interval(Interval::new(seconds, None).unwrap()),
            start_at: None,
            end_at: None,
            max_runs: None,
            exclude: Default::default(),
        }
    }

    #[test]
    fn on_time_fires_are_all_delivered_whatever_the_policy() {
        let now = t("2026-01-01T00:00:30Z");
        for catchup in [Catchup::Skip, Catchup::Latest, Catchup::All] {
            let p = plan(
                &every(10),
                t("2026-01-01T00:00:10Z"),
                now,
                0,
                catchup,
                Overlap::Allow,
                false,
            );
            assert_eq!(
                p.fires,
                vec![
                    t("2026-01-01T00:00:10Z"),
                    t("2026-01-01T00:00:20Z"),
                    t("2026-01-01T00:00:30Z")
                ]
            );
            assert_eq!(p.next_run_at, Some(t("2026-01-01T00:00:40Z")));
        }
    }

    #[test]
    fn missed_fires_follow_catchup() {
        // Down from 00:00 to 01:00 with a fire every 10 minutes; back at 01:00:30.
        let now = t("2026-01-01T01:00:30Z");
        let start = t("2026-01-01T00:00:00Z");
        let skip = plan(
            &every(600),
            start,
            now,
            0,
            Catchup::Skip,
            Overlap::Allow,
            false,
        );
        assert_eq!(skip.fires, vec![t("2026-01-01T01:00:00Z")]);
        let latest = plan(
            &every(600),
            start,
            now,
            0,
            Catchup::Latest,
            Overlap::Allow,
            false,
        );
        assert_eq!(
            latest.fires,
            vec![t("2026-01-01T00:50:00Z"), t("2026-01-01T01:00:00Z")]
        );
        let all = plan(
            &every(600),
            start,
            now,
            0,
            Catchup::All,
            Overlap::Allow,
            false,
        );
        assert_eq!(all.fires.len(), 7);
        for p in [skip, latest, all] {
            assert_eq!(p.next_run_at, Some(t("2026-01-01T01:10:00Z")));
        }
    }

    #[test]
    fn catchup_all_is_bounded_to_the_most_recent_runs() {
        let now = t("2026-01-10T00:00:00Z");
        let p = plan(
            &every(1),
            t("2026-01-01T00:00:00Z"),
            now,
            0,
            Catchup::All,
            Overlap::Allow,
            false,
        );
        let recent = 61; // the fires within the grace, 23:59:00 to 00:00:00
        assert_eq!(p.fires.len(), MAX_CATCHUP_RUNS + recent);
        assert_eq!(*p.fires.last().unwrap(), now);
        assert_eq!(
            p.fires[0],
            now - MISFIRE_GRACE - Duration::seconds(MAX_CATCHUP_RUNS as i64)
        );
        assert!(p.fires.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(p.next_run_at, Some(now + Duration::seconds(1)));
    }

    #[test]
    fn overlap_skip_makes_one_run_at_a_time() {
        let now = t("2026-01-01T00:00:30Z");
        let start = t("2026-01-01T00:00:10Z");
        let free = plan(
            &every(10),
            start,
            now,
            0,
            Catchup::All,
            Overlap::Skip,
            false,
        );
        assert_eq!(free.fires, vec![now]);
        let busy = plan(&every(10), start, now, 0, Catchup::All, Overlap::Skip, true);
        assert!(busy.fires.is_empty());
        assert_eq!(busy.next_run_at, Some(t("2026-01-01T00:00:40Z")));
    }

    #[test]
    fn max_runs_ends_the_schedule() {
        let timing = Timing {
            max_runs: Some(3),
            exclude: Default::default(),
            ..every(10)
        };
        let now = t("2026-01-01T00:00:30Z");
        let p = plan(
            &timing,
            t("2026-01-01T00:00:10Z"),
            now,
            2,
            Catchup::All,
            Overlap::Allow,
            false,
        );
        assert_eq!(p.fires, vec![t("2026-01-01T00:00:10Z")]);
        assert_eq!(p.next_run_at, None);
    }

    #[test]
    fn a_finished_once_schedule_stops() {
        let timing = Timing {
            spec: CompiledSpec::Once(t("2026-01-01T00:00:10Z")),
            start_at: None,
            end_at: None,
            max_runs: None,
            exclude: Default::default(),
        };
        let p = plan(
            &timing,
            t("2026-01-01T00:00:10Z"),
            t("2026-01-01T00:00:11Z"),
            0,
            Catchup::Latest,
            Overlap::Allow,
            false,
        );
        assert_eq!(p.fires, vec![t("2026-01-01T00:00:10Z")]);
        assert_eq!(p.next_run_at, None);
    }
}

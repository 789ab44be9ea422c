//! A schedule's timeline: for every nominal fire instant in a window, what became of it (a run
//! and its state, a skip and its reason, or what is still to come), on the schedule's wall
//! clock. Read from the runs of its fires and its skipped fires; assembled here, pure.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use hookbeat_entity::run::{self, RunStatus};
use hookbeat_entity::{schedule, RunId};
use serde::Serialize;
use utoipa::ToSchema;

use crate::schedule::local::{gap_skips, local_fire, DstNote};
use crate::schedule::Timing;
use crate::skips::{Skip, SkipReason};

/// What became of one nominal fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FireStatus {
    /// Its run succeeded.
    Delivered,
    /// Its run failed for good.
    Failed,
    /// Its run waits for its first attempt.
    Pending,
    /// Its run is being delivered.
    Delivering,
    /// Its run failed and will be tried again.
    Retrying,
    /// No run was made; `reason` says why.
    Skipped,
    /// Not made yet: it is due at or after the schedule's next fire.
    Expected,
    /// In the past with no trace left: its run was pruned with the history.
    Unrecorded,
}

/// One nominal fire of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Entry {
    /// The fire's instant, UTC. A DST gap's skipped local times are one entry at the instant
    /// the gap starts.
    pub at: DateTime<Utc>,
    /// The wall-clock time in the schedule's zone (the first swallowed one for a gap).
    #[schema(value_type = String, example = "2026-03-29T02:30:00")]
    pub local_time: NaiveDateTime,
    #[schema(example = "+01:00")]
    pub utc_offset: String,
    /// What a daylight-saving change did to this fire, when it did something.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub dst: Option<DstNote>,
    pub status: FireStatus,
    /// Why it was skipped (`status: skipped`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<SkipReason>,
    /// How many fires the entry stands for when more than one (a DST gap's local times).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fires: Option<i64>,
    /// Its run, when one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<uuid::Uuid>, nullable = false)]
    pub run_id: Option<RunId>,
    /// How long after the fire its first attempt started.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub fire_lag_ms: Option<i64>,
    /// Attempts made at the run's current step.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub attempts: Option<i32>,
}

/// The nominal fires of one page of a window, before anything is read about them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Where the page starts: the window's start, or the schedule's creation if later.
    pub from: DateTime<Utc>,
    /// Where it ends: the window's end, or its last fire when more follow.
    pub to: DateTime<Utc>,
    pub instants: Vec<DateTime<Utc>>,
    /// Whether fires follow `to` within the window.
    pub more: bool,
}

/// The first `limit` nominal fires from `from` to `to` (both inclusive): the spec within
/// `start_at`, whatever `end_at`, `max_runs` and the `exclude` calendars say (the fires they
/// stop are shown as skipped), none before the schedule existed.
pub fn page(
    schedule: &schedule::Model,
    timing: &Timing,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: usize,
) -> Page {
    let mut nominal = timing.clone();
    nominal.end_at = None;
    nominal.max_runs = None;
    nominal.exclude = Default::default();
    let from = from.max(schedule.created_at);
    let mut instants = Vec::with_capacity(limit + 1);
    let mut cursor = from
        .checked_sub_signed(chrono::Duration::microseconds(1))
        .and_then(|before| nominal.next_fire(before, 0));
    while let Some(at) = cursor.filter(|at| *at <= to) {
        instants.push(at);
        if instants.len() > limit {
            break;
        }
        cursor = nominal.next_fire(at, 0);
    }
    let more = instants.len() > limit;
    instants.truncate(limit);
    let to = match (more, instants.last()) {
        (true, Some(last)) => *last,
        _ => to,
    };
    Page {
        from,
        to,
        instants,
        more,
    }
}

/// What a page's entries are made from.
pub struct Sources<'a> {
    pub schedule: &'a schedule::Model,
    pub timing: &'a Timing,
    /// The runs of the schedule's fires in the page.
    pub runs: &'a [run::Model],
    /// Its skipped fires that overlap the page.
    pub skips: &'a [Skip],
    pub now: DateTime<Utc>,
}

/// The entries of `page`, oldest first; a gap's entry goes before a fire at the same instant.
pub fn entries(s: &Sources<'_>, page: &Page) -> Vec<Entry> {
    let runs: HashMap<DateTime<Utc>, &run::Model> =
        s.runs.iter().map(|r| (r.scheduled_for, r)).collect();
    let mut out: Vec<Entry> = page
        .instants
        .iter()
        .map(|at| fire_entry(s, runs.get(at).copied(), *at))
        .collect();
    // The local times a spring-forward gap swallowed under `dst_gap: skip`.
    let after_page = page.to + chrono::Duration::microseconds(1);
    for (at, fires) in gap_skips(&s.timing.spec, page.from, after_page) {
        let mut entry = local_entry(s, at, FireStatus::Skipped);
        entry.local_time =
            (at + chrono::Duration::seconds(i64::from(offset_before(s, at)))).naive_utc();
        entry.dst = Some(DstNote::GapSkipped);
        entry.reason = Some(SkipReason::DstGap);
        entry.fires = Some(fires);
        out.push(entry);
    }
    out.sort_by_key(|e| (e.at, e.reason != Some(SkipReason::DstGap)));
    out
}

/// The UTC offset in force just before `at`, in seconds.
fn offset_before(s: &Sources<'_>, at: DateTime<Utc>) -> i32 {
    use chrono::Offset;
    let zone = s.timing.spec.zone();
    (at - chrono::Duration::seconds(1))
        .with_timezone(&zone)
        .offset()
        .fix()
        .local_minus_utc()
}

fn local_entry(s: &Sources<'_>, at: DateTime<Utc>, status: FireStatus) -> Entry {
    let local = local_fire(&s.timing.spec, at);
    Entry {
        at,
        local_time: local.local_time,
        utc_offset: local.utc_offset,
        dst: local.dst,
        status,
        reason: None,
        fires: None,
        run_id: None,
        fire_lag_ms: None,
        attempts: None,
    }
}

/// The entry of one nominal fire: its run, else the skip that covers it, else what the
/// schedule's bounds and state say.
fn fire_entry(s: &Sources<'_>, run: Option<&run::Model>, at: DateTime<Utc>) -> Entry {
    let schedule = s.schedule;
    if let Some(run) = run {
        let status = match run.status {
            RunStatus::Succeeded => FireStatus::Delivered,
            RunStatus::Failed => FireStatus::Failed,
            RunStatus::Pending => FireStatus::Pending,
            RunStatus::Delivering => FireStatus::Delivering,
            RunStatus::Retrying => FireStatus::Retrying,
        };
        let mut entry = local_entry(s, at, status);
        entry.run_id = Some(run.id);
        entry.fire_lag_ms = run.fire_lag_ms;
        entry.attempts = Some(run.attempts);
        return entry;
    }
    let skipped = |reason| {
        let mut entry = local_entry(s, at, FireStatus::Skipped);
        entry.reason = Some(reason);
        entry
    };
    if let Some(skip) = s
        .skips
        .iter()
        .find(|k| k.reason != SkipReason::DstGap && k.covers(at))
    {
        return skipped(skip.reason);
    }
    if s.timing.exclude.excludes(at) {
        return skipped(SkipReason::Calendar);
    }
    if s.timing.end_at.is_some_and(|end| at > end) {
        return skipped(SkipReason::EndAt);
    }
    let past_max_runs = s
        .timing
        .max_runs
        .is_some_and(|max| schedule.total_runs >= max)
        && schedule.last_run_at.is_none_or(|last| at > last);
    if past_max_runs {
        return skipped(SkipReason::MaxRuns);
    }
    if !schedule.enabled {
        let since = schedule.paused_at.unwrap_or(schedule.updated_at);
        if at > since && at <= s.now {
            return skipped(SkipReason::Paused);
        }
    }
    match schedule.next_run_at {
        Some(next) if at >= next => local_entry(s, at, FireStatus::Expected),
        _ if at > s.now => local_entry(s, at, FireStatus::Expected),
        _ => local_entry(s, at, FireStatus::Unrecorded),
    }
}

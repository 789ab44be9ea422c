//! A schedule's health: what the write-back folds into each group of results (the run of
//! failures, the last success and failure, the latest fire's lag), the state read from it, and
//! the counts of the last day read from the runs and the skipped fires. The failing episode it
//! opens and closes, and the notices that go with it, are `crate::notices`'.

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::{schedule, RunId, ScheduleId};
use sea_orm::sea_query::{Expr, IntoCondition};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, DbBackend, FromQueryResult, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::runs::Finished;
use crate::sql::{placeholder_rows, placeholders, statement};

/// A fire whose first attempt starts later than this after its scheduled time is late, unless
/// the schedule sets its own `late_after_ms`.
pub const DEFAULT_LATE_AFTER_MS: i64 = 60_000;
/// The window of the counts.
pub const COUNTS_WINDOW: Duration = Duration::hours(24);

/// Where a schedule stands, most urgent first: a paused schedule is `paused` whatever its runs
/// did; a failing one that has ended is still `failing`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Paused,
    /// Its last `notify.after_failures` runs (3 unless its `notify` or its tenant's says
    /// otherwise) failed for good, and none has succeeded since.
    Failing,
    /// It will not fire again (`end_at`, `max_runs`, a one-off that fired).
    Ended,
    /// Its latest fire's first attempt started later than its `late_after_ms`.
    Late,
    Healthy,
}

impl HealthState {
    pub const ALL: [HealthState; 5] = [
        Self::Paused,
        Self::Failing,
        Self::Ended,
        Self::Late,
        Self::Healthy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paused => "paused",
            Self::Failing => "failing",
            Self::Ended => "ended",
            Self::Late => "late",
            Self::Healthy => "healthy",
        }
    }

    /// The state of a schedule with its recorded health.
    pub fn of(s: &schedule::Model, h: &Recorded) -> Self {
        if !s.enabled {
            Self::Paused
        } else if h.failing_since.is_some() {
            Self::Failing
        } else if s.next_run_at.is_none() {
            Self::Ended
        } else if h.last_fire_lag_ms.is_some_and(|lag| lag > late_after_ms(s)) {
            Self::Late
        } else {
            Self::Healthy
        }
    }

    /// The schedules in this state, as a condition on `schedules` (the same rules as [`Self::of`]).
    pub fn condition(self) -> Condition {
        use schedule::Column as C;
        let failing = || {
            Expr::cust(
                "EXISTS (SELECT 1 FROM schedule_health h WHERE h.schedule_id = schedules.id \
                 AND h.failing_since IS NOT NULL)",
            )
        };
        let late = || {
            Expr::cust(format!(
                "EXISTS (SELECT 1 FROM schedule_health h WHERE h.schedule_id = schedules.id \
                 AND h.last_fire_lag_ms > COALESCE(schedules.late_after_ms, \
                 {DEFAULT_LATE_AFTER_MS}))"
            ))
        };
        let enabled = C::Enabled.eq(true);
        match self {
            Self::Paused => C::Enabled.eq(false).into_condition(),
            Self::Failing => Condition::all().add(enabled).add(failing()),
            Self::Ended => Condition::all()
                .add(enabled)
                .add(failing().not())
                .add(C::NextRunAt.is_null()),
            Self::Late => Condition::all()
                .add(enabled)
                .add(failing().not())
                .add(C::NextRunAt.is_not_null())
                .add(late()),
            Self::Healthy => Condition::all()
                .add(enabled)
                .add(failing().not())
                .add(C::NextRunAt.is_not_null())
                .add(late().not()),
        }
    }
}

/// A schedule's health as the workers keep it (`schedule_health`); a schedule without a row
/// has the default, a fresh one.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromQueryResult)]
pub struct Recorded {
    /// Runs failed for good in a row, in the order their results were recorded; a success
    /// resets it.
    pub consecutive_failures: i32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// How long after its scheduled time the latest fire's first attempt started.
    pub last_fire_lag_ms: Option<i64>,
    /// When the schedule turned `failing`; `None` while it is not.
    pub failing_since: Option<DateTime<Utc>>,
}

/// The schedule's threshold for a late fire.
pub fn late_after_ms(s: &schedule::Model) -> i64 {
    s.late_after_ms.unwrap_or(DEFAULT_LATE_AFTER_MS)
}

/// What one group of results does to one schedule's health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub schedule_id: ScheduleId,
    /// Runs failed for good after the group's last success (`last_success_at`, which starts
    /// the count again), or in all of it.
    pub failures: i32,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The lag of the group's last first attempt of a fire.
    pub last_fire_lag_ms: Option<i64>,
    /// The group's last run that failed for good, and its error.
    pub last_failed: Option<(RunId, Option<String>)>,
    /// The group's last run that succeeded.
    pub last_succeeded: Option<RunId>,
}

/// The changes the applied results of a group make (taken in the order they were recorded),
/// one per schedule, in id order: the order [`record`] locks them in.
pub fn changes<'a>(applied: impl IntoIterator<Item = &'a Finished>) -> Vec<Change> {
    let mut by_schedule: BTreeMap<ScheduleId, Change> = BTreeMap::new();
    for f in applied {
        let lag = (f.attempt == 1).then(|| f.fire_lag_ms()).flatten();
        let done = f.finished_for_good();
        if lag.is_none() && done.is_none() {
            continue;
        }
        let change = by_schedule.entry(f.schedule_id).or_insert_with(|| Change {
            schedule_id: f.schedule_id,
            failures: 0,
            last_success_at: None,
            last_failure_at: None,
            last_fire_lag_ms: None,
            last_failed: None,
            last_succeeded: None,
        });
        if lag.is_some() {
            change.last_fire_lag_ms = lag;
        }
        let at = f.update.finished_at.unwrap_or(f.record.started_at);
        // Results of one group may be recorded out of the order they finished in (deliveries
        // run concurrently): the last success and failure are the latest finished.
        let latest = |seen: Option<DateTime<Utc>>| seen.is_none_or(|seen| at >= seen);
        match done {
            Some(true) => {
                change.failures = 0;
                if latest(change.last_success_at) {
                    change.last_success_at = Some(at);
                    change.last_succeeded = Some(f.run_id);
                }
            }
            Some(false) => {
                change.failures += 1;
                if latest(change.last_failure_at) {
                    change.last_failure_at = Some(at);
                    change.last_failed = Some((f.run_id, f.update.error.clone()));
                }
            }
            None => {}
        }
    }
    by_schedule.into_values().collect()
}

/// Applies [`Change`]s (in id order, the order the rows are locked in): `{rows}` is a
/// `VALUES` list of (schedule, failures, last success, last failure, last fire lag). A change
/// with a success newer than the last failure recorded starts the count again from its
/// failures (and counts a reset); one without adds them. The last
/// success and failure only move forward: two workers' groups of one schedule may commit in
/// either order. Part of the write-back's transaction, after its runs: one statement per
/// group, not per fire, on a table only write-backs write (the materialiser holds schedule rows
/// while it plans). It leaves the failing episode alone, so it returns the episode as it was
/// before the group.
const RECORD: &str = "INSERT INTO schedule_health AS h (schedule_id, consecutive_failures, \
     last_success_at, last_failure_at, last_fire_lag_ms) VALUES {rows} \
     ON CONFLICT (schedule_id) DO UPDATE SET \
     consecutive_failures = CASE WHEN {fresh} THEN excluded.consecutive_failures \
         ELSE h.consecutive_failures + excluded.consecutive_failures END, \
     resets = h.resets + CASE WHEN {fresh} THEN 1 ELSE 0 END, \
     last_success_at = CASE WHEN h.last_success_at IS NULL \
         OR excluded.last_success_at > h.last_success_at \
         THEN excluded.last_success_at ELSE h.last_success_at END, \
     last_failure_at = CASE WHEN h.last_failure_at IS NULL \
         OR excluded.last_failure_at > h.last_failure_at \
         THEN excluded.last_failure_at ELSE h.last_failure_at END, \
     last_fire_lag_ms = COALESCE(excluded.last_fire_lag_ms, h.last_fire_lag_ms) \
     RETURNING schedule_id, consecutive_failures, failing_since, resets, episode_resets";
/// A group's success starts the count again only if it is newer than the last failure
/// recorded: a group that commits late (its write-back retried) must not undo later failures.
const FRESH_SUCCESS: &str = "(excluded.last_success_at IS NOT NULL AND (h.last_failure_at IS NULL \
     OR excluded.last_success_at > h.last_failure_at))";
const RECORD_COLUMNS: usize = 5;

/// A schedule's health as a group left it, with the failing episode as it was before.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct After {
    pub schedule_id: ScheduleId,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    /// Successes so far that started the count again.
    pub resets: i32,
    /// `resets` when the open episode began: a higher `resets` is its recovery.
    pub episode_resets: Option<i32>,
}

impl After {
    /// Whether a success since the open episode began ended it.
    pub fn recovered(&self) -> bool {
        self.failing_since.is_some() && self.episode_resets.is_some_and(|at| self.resets > at)
    }
}

/// Records the changes of one group (nothing when there are none), in id order; returns each
/// schedule's health after them.
pub async fn record(conn: &impl ConnectionTrait, changes: &[Change]) -> anyhow::Result<Vec<After>> {
    if changes.is_empty() {
        return Ok(Vec::new());
    }
    let backend = conn.get_database_backend();
    static RECORD_FRESH: LazyLock<String> =
        LazyLock::new(|| RECORD.replace("{fresh}", FRESH_SUCCESS));
    let sql = RECORD_FRESH.replace(
        "{rows}",
        &placeholder_rows(1, changes.len(), RECORD_COLUMNS),
    );
    let mut values: Vec<Value> = Vec::with_capacity(changes.len() * RECORD_COLUMNS);
    for c in changes {
        values.extend([
            c.schedule_id.into(),
            c.failures.into(),
            c.last_success_at.into(),
            c.last_failure_at.into(),
            c.last_fire_lag_ms.into(),
        ]);
    }
    After::find_by_statement(statement(backend, &sql, values))
        .all(conn)
        .await
        .context("recording schedule health")
}

/// A schedule's fires over the counts' window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub succeeded: i64,
    pub failed: i64,
    pub late: i64,
    /// Skipped fires by reason.
    pub skipped: BTreeMap<String, i64>,
}

/// Runs of the listed schedules' fires since `$1`, finished or not: served by the unique
/// (schedule, scheduled_for) index of fires.
const RUN_COUNTS: &str = "SELECT r.schedule_id, \
     SUM(CASE WHEN r.status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded, \
     SUM(CASE WHEN r.status = 'failed' THEN 1 ELSE 0 END) AS failed, \
     SUM(CASE WHEN r.fire_lag_ms > COALESCE(s.late_after_ms, $2) THEN 1 ELSE 0 END) AS late \
     FROM runs r JOIN schedules s ON s.id = r.schedule_id \
     WHERE r.\"trigger\" = 'schedule' AND r.scheduled_for >= $1 AND r.schedule_id IN {ids} \
     GROUP BY r.schedule_id";

/// Skipped fires of the listed schedules whose range ends since `$1`.
const SKIP_COUNTS: &str =
    "SELECT schedule_id, reason, CAST(SUM(fires) AS BIGINT) AS fires FROM skipped_fires \
     WHERE last_at >= $1 AND schedule_id IN {ids} GROUP BY schedule_id, reason";

#[derive(FromQueryResult)]
struct RunCounts {
    schedule_id: ScheduleId,
    succeeded: i64,
    failed: i64,
    late: i64,
}

#[derive(FromQueryResult)]
struct SkipCounts {
    schedule_id: ScheduleId,
    reason: String,
    fires: i64,
}

/// A schedule's recorded health and its counts of the last day.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    pub recorded: Recorded,
    pub last_24h: Counts,
}

/// The recorded health of the listed schedules.
const RECORDED: &str = "SELECT schedule_id, consecutive_failures, last_success_at, \
     last_failure_at, last_fire_lag_ms, failing_since FROM schedule_health \
     WHERE schedule_id IN {ids}";

#[derive(FromQueryResult)]
struct RecordedRow {
    schedule_id: ScheduleId,
    #[sea_orm(nested)]
    recorded: Recorded,
}

/// The health of each listed schedule, its counts over [`COUNTS_WINDOW`] before `now`
/// (a schedule with nothing recorded is absent: its health is the default).
pub async fn read(
    conn: &impl ConnectionTrait,
    ids: &[ScheduleId],
    now: DateTime<Utc>,
) -> anyhow::Result<HashMap<ScheduleId, Health>> {
    let mut health: HashMap<ScheduleId, Health> = HashMap::new();
    if ids.is_empty() {
        return Ok(health);
    }
    let backend: DbBackend = conn.get_database_backend();
    let since = now - COUNTS_WINDOW;
    let list = |first| placeholders(first, ids.len());
    let id_values = ids.iter().map(|id| Value::from(*id));

    let recorded: Vec<RecordedRow> = RecordedRow::find_by_statement(statement(
        backend,
        &RECORDED.replace("{ids}", &list(1)),
        id_values.clone().collect(),
    ))
    .all(conn)
    .await
    .context("reading schedule health")?;
    for r in recorded {
        health.entry(r.schedule_id).or_default().recorded = r.recorded;
    }

    let mut values: Vec<Value> = vec![since.into(), DEFAULT_LATE_AFTER_MS.into()];
    values.extend(id_values.clone());
    let runs: Vec<RunCounts> = RunCounts::find_by_statement(statement(
        backend,
        &RUN_COUNTS.replace("{ids}", &list(3)),
        values,
    ))
    .all(conn)
    .await
    .context("counting a day of runs")?;
    for r in runs {
        let c = &mut health.entry(r.schedule_id).or_default().last_24h;
        (c.succeeded, c.failed, c.late) = (r.succeeded, r.failed, r.late);
    }

    let mut values: Vec<Value> = vec![since.into()];
    values.extend(id_values);
    let skips: Vec<SkipCounts> = SkipCounts::find_by_statement(statement(
        backend,
        &SKIP_COUNTS.replace("{ids}", &list(2)),
        values,
    ))
    .all(conn)
    .await
    .context("counting a day of skipped fires")?;
    for s in skips {
        health
            .entry(s.schedule_id)
            .or_default()
            .last_24h
            .skipped
            .insert(s.reason, s.fires);
    }
    Ok(health)
}

/// Starts a schedule's count of failed runs again and closes its failing episode: what
/// resuming it does.
pub async fn reset(conn: &impl ConnectionTrait, schedule: ScheduleId) -> anyhow::Result<()> {
    conn.execute(statement(
        conn.get_database_backend(),
        "UPDATE schedule_health SET consecutive_failures = 0, failing_since = NULL, \
         episode_resets = NULL WHERE schedule_id = $1",
        vec![schedule.into()],
    ))
    .await
    .context("resetting a schedule's health")?;
    Ok(())
}

/// Schedules by state, installation-wide: the rules of [`HealthState::of`] in one scan.
const COUNT_BY_STATE: &str = "SELECT CASE WHEN NOT s.enabled THEN 'paused' \
     WHEN h.failing_since IS NOT NULL THEN 'failing' \
     WHEN s.next_run_at IS NULL THEN 'ended' \
     WHEN h.last_fire_lag_ms > COALESCE(s.late_after_ms, $1) THEN 'late' \
     ELSE 'healthy' END AS state, COUNT(*) AS n \
     FROM schedules s LEFT JOIN schedule_health h ON h.schedule_id = s.id GROUP BY 1";

#[derive(FromQueryResult)]
struct StateCount {
    state: String,
    n: i64,
}

/// How many schedules are in each state (every state named, 0 when none is).
pub async fn count_by_state(
    conn: &impl ConnectionTrait,
) -> anyhow::Result<Vec<(HealthState, i64)>> {
    let counts: HashMap<String, i64> = StateCount::find_by_statement(statement(
        conn.get_database_backend(),
        COUNT_BY_STATE,
        vec![DEFAULT_LATE_AFTER_MS.into()],
    ))
    .all(conn)
    .await
    .context("counting schedules by health")?
    .into_iter()
    .map(|c| (c.state, c.n))
    .collect();
    Ok(HealthState::ALL
        .iter()
        .map(|state| (*state, counts.get(state.as_str()).copied().unwrap_or(0)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{AttemptRecord, RunUpdate};
    use hookbeat_entity::run::RunStatus;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn result(
        schedule: ScheduleId,
        attempt: i32,
        status: RunStatus,
        fire: Option<&str>,
        started: &str,
    ) -> Finished {
        Finished {
            run_id: RunId::new(),
            attempt,
            step: 0,
            schedule_id: schedule,
            fire: fire.map(at),
            record: AttemptRecord {
                started_at: at(started),
                duration_ms: 1,
                outcome: "test",
                status_code: None,
                error: None,
                response_excerpt: None,
            },
            update: RunUpdate {
                status,
                due_at: None,
                status_code: None,
                error: None,
                finished_at: matches!(status, RunStatus::Succeeded | RunStatus::Failed)
                    .then(|| at(started)),
                next_step: None,
                failure: None,
            },
        }
    }

    #[test]
    fn a_group_counts_the_failures_after_its_last_success_per_schedule() {
        let (a, b, c) = (ScheduleId::new(), ScheduleId::new(), ScheduleId::new());
        let group = [
            result(
                a,
                1,
                RunStatus::Failed,
                Some("2030-01-01T00:00:00Z"),
                "2030-01-01T00:00:02Z",
            ),
            result(
                b,
                1,
                RunStatus::Retrying,
                Some("2030-01-01T00:00:00Z"),
                "2030-01-01T00:00:00.250Z",
            ),
            result(
                a,
                2,
                RunStatus::Succeeded,
                Some("2030-01-01T00:00:00Z"),
                "2030-01-01T00:00:03Z",
            ),
            result(a, 3, RunStatus::Failed, None, "2030-01-01T00:00:04Z"),
            result(
                b,
                3,
                RunStatus::Failed,
                Some("2030-01-01T00:00:00Z"),
                "2030-01-01T00:00:05Z",
            ),
            result(
                c,
                2,
                RunStatus::Retrying,
                Some("2030-01-01T00:00:00Z"),
                "2030-01-01T00:00:06Z",
            ),
        ];
        let changes = changes(&group);
        assert_eq!(
            changes.len(),
            2,
            "a retry that is not a first attempt changes nothing"
        );
        assert_eq!(
            changes[0],
            Change {
                schedule_id: a,
                failures: 1,
                last_success_at: Some(at("2030-01-01T00:00:03Z")),
                last_failure_at: Some(at("2030-01-01T00:00:04Z")),
                last_fire_lag_ms: Some(2_000),
                last_failed: Some((group[3].run_id, None)),
                last_succeeded: Some(group[2].run_id),
            }
        );
        assert_eq!(
            changes[1],
            Change {
                schedule_id: b,
                failures: 1,
                last_success_at: None,
                last_failure_at: Some(at("2030-01-01T00:00:05Z")),
                last_fire_lag_ms: Some(250),
                last_failed: Some((group[4].run_id, None)),
                last_succeeded: None,
            }
        );
    }

    /// The kill test saw it: two successes of one schedule in one group, the later-finished one
    /// recorded first; health kept the earlier.
    #[test]
    fn the_last_success_of_a_group_is_the_latest_finished_not_the_last_recorded() {
        let a = ScheduleId::new();
        let group = [
            result(a, 1, RunStatus::Succeeded, None, "2030-01-01T00:00:02.500Z"),
            result(a, 1, RunStatus::Succeeded, None, "2030-01-01T00:00:02Z"),
            result(a, 1, RunStatus::Failed, None, "2030-01-01T00:00:05Z"),
            result(a, 1, RunStatus::Failed, None, "2030-01-01T00:00:04Z"),
        ];
        let change = &changes(&group)[0];
        assert_eq!(change.last_success_at, Some(at("2030-01-01T00:00:02.500Z")));
        assert_eq!(change.last_succeeded, Some(group[0].run_id));
        assert_eq!(change.last_failure_at, Some(at("2030-01-01T00:00:05Z")));
        assert_eq!(change.last_failed, Some((group[2].run_id, None)));
        assert_eq!(change.failures, 2);
    }

    #[test]
    fn each_state_is_named_as_the_api_writes_it() {
        for state in HealthState::ALL {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
    }
}

//! Materialise: due schedules become runs. In one short transaction a worker locks a batch of
//! due schedules (`FOR UPDATE SKIP LOCKED`, so workers never wait on each other), inserts their
//! runs (the unique (schedule, scheduled_for) key makes a second insert of the same fire a no-op)
//! and advances `next_run_at` from the previous scheduled time, so fires never drift.
//!
//! Catch-up: a fire more than [`MISFIRE_GRACE`] old when it is materialised was *missed* (no
//! worker ran, or workers fell that far behind). Missed fires follow the schedule's `catchup`:
//! `skip` drops them, `latest` makes one run for the latest of them, `all` makes a run for each,
//! at most [`MAX_CATCHUP_RUNS`] (the most recent). Fires within the grace are always delivered.
//!
//! Leasing at creation: a worker with delivery slots that its claim could not fill offers them
//! to the pass ([`Lease`]). Fires already due are then created `delivering`, leased to that
//! worker, instead of `pending`: the claim that would have followed (a second write of every
//! run, the costliest statement once a worker keeps up) is not needed.

use std::collections::{HashMap, HashSet, VecDeque};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::{run, schedule};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, Value};
use uuid::Uuid;

use crate::definition::{Catchup, Overlap};
use crate::schedule::{jitter_for, Timing};
use crate::sql;
use crate::stored;

/// How late a fire may be and still count as on time rather than missed.
pub const MISFIRE_GRACE: Duration = Duration::seconds(60);
/// The most runs `catchup: all` makes for one schedule's missed fires.
pub const MAX_CATCHUP_RUNS: usize = 1_000;
/// Fires examined per schedule per pass before jumping ahead, so that a schedule that missed
/// millions of fires costs bounded work.
const MAX_SCAN: usize = 100_000;

/// Schedules are spread over a fixed number of logical shards, the unit that workers divide
/// among themselves. Fixed at install: changing it would move every schedule.
pub const SHARD_COUNT: u64 = 64;

/// The shard of a schedule, from its id's random bits.
pub fn shard_of(id: Uuid) -> i32 {
    (crate::schedule::splitmix64(id.as_u128() as u64) % SHARD_COUNT) as i32
}

/// What to do with one due schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The runs to create, oldest first.
    pub fires: Vec<DateTime<Utc>>,
    /// The schedule's new `next_run_at`; `None` when it will never fire again.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// Plans the runs of a schedule whose `next_run_at` is at or before `now`.
pub fn plan(
    timing: &Timing,
    next_run_at: DateTime<Utc>,
    now: DateTime<Utc>,
    total_runs: i64,
    catchup: Catchup,
    overlap: Overlap,
    previous_run_unfinished: bool,
) -> Plan {
    let missed_before = now - MISFIRE_GRACE;
    let mut missed: VecDeque<DateTime<Utc>> = VecDeque::new();
    let mut recent = Vec::new();
    let mut last_seen = None;
    let mut cursor = Some(next_run_at);
    let mut scanned = 0usize;
    let mut first_seen = next_run_at;

    while let Some(fire) = cursor.filter(|fire| *fire <= now) {
        last_seen = Some(fire);
        if fire < missed_before {
            missed.push_back(fire);
            if missed.len() > MAX_CATCHUP_RUNS {
                missed.pop_front();
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

    let mut fires: Vec<DateTime<Utc>> = match catchup {
        Catchup::Skip => recent,
        Catchup::Latest => missed.back().copied().into_iter().chain(recent).collect(),
        Catchup::All => missed.into_iter().chain(recent).collect(),
    };
    if overlap == Overlap::Skip {
        // One run at a time: nothing while the previous run is unfinished, else only the latest.
        fires = match (previous_run_unfinished, fires.last()) {
            (false, Some(latest)) => vec![*latest],
            _ => Vec::new(),
        };
    }
    if let Some(max) = timing.max_runs {
        fires.truncate((max - total_runs).max(0) as usize);
    }
    let made = total_runs + fires.len() as i64;
    let next_run_at = match last_seen {
        Some(last) => timing.next_fire(last, made),
        None => Some(next_run_at),
    };
    Plan { fires, next_run_at }
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub schedules: usize,
    pub runs_created: usize,
}

/// Due schedules, oldest first, locked against other workers. Served by `schedules_due_idx`, or
/// by `schedules_shard_due_idx` when restricted to a worker's shards (`{shards}`).
///
/// On SQLite `{floor}` keeps out instants hookbeat never stores (outside 1970 … 9999, see
/// `crate::instant`) but an older version or a hand-written row may have: SQLite keeps
/// timestamps as text, and `+10000-01-01…` sorts before every real date, so such rows would
/// otherwise be "due" at every pass and fill the batch ahead of everyone else's. PostgreSQL
/// orders them as times, and a bound there costs the planner its plain index scan.
const SELECT_DUE: &str = "SELECT * FROM schedules \
     WHERE enabled AND next_run_at <= $1{floor}{shards} \
     ORDER BY next_run_at LIMIT $2 FOR UPDATE SKIP LOCKED";

/// The lower bound of [`SELECT_DUE`] (and of the next-due probe) on SQLite.
const SQLITE_FLOOR: &str = " AND next_run_at >= '1970-01-01'";

/// Which shards a pass may materialise.
#[derive(Debug, Clone, Copy)]
pub enum Shards<'a> {
    /// Every shard: the one process of an embedded (SQLite) install.
    All,
    /// These shards only (their ids are integers this worker owns, written into the SQL).
    Owned(&'a [i32]),
}

impl Shards<'_> {
    /// The SQL condition restricting a query to these shards (empty for all shards).
    pub fn condition(self) -> String {
        match self {
            Shards::All => String::new(),
            Shards::Owned(shards) => {
                let list: Vec<String> = shards.iter().map(i32::to_string).collect();
                format!(" AND shard IN ({})", list.join(", "))
            }
        }
    }
}

/// Which of these schedules still have an unfinished run. Served by `runs_active_schedule_idx`.
const SELECT_UNFINISHED: &str = "SELECT DISTINCT schedule_id FROM runs \
     WHERE status IN ('pending', 'retrying', 'delivering') AND schedule_id IN ";

const INSERT_RUNS: &str = "INSERT INTO runs \
     (id, tenant_id, schedule_id, scheduled_for, \"trigger\", status, attempts, due_at, locked_by, \
      created_at, updated_at) VALUES ";
/// A fire that already has a run (another worker made it while a shard changed hands) is skipped,
/// and so is not returned: a run leased at creation is delivered by the worker that made it only.
const INSERT_RUNS_TAIL: &str =
    " ON CONFLICT (schedule_id, scheduled_for) WHERE \"trigger\" = 'schedule' \
     DO NOTHING RETURNING *";
const RUN_COLUMNS: usize = 11;
/// Rows per INSERT: well under both backends' parameter limits.
const INSERT_CHUNK: usize = 500;

const ADVANCE: &str = "UPDATE schedules SET next_run_at = $1, \
     last_run_at = COALESCE($2, last_run_at), total_runs = total_runs + $3 WHERE id = $4";
/// The same for a whole batch (PostgreSQL): `{rows}` is a list of typed `VALUES` rows.
const ADVANCE_MANY: &str = "UPDATE schedules AS s SET next_run_at = v.next_run_at, \
     last_run_at = COALESCE(v.last_run_at, s.last_run_at), total_runs = s.total_runs + v.made \
     FROM (VALUES {rows}) AS v(id, next_run_at, last_run_at, made) WHERE s.id = v.id";

const SELECT_DISABLED: &str = "SELECT id FROM tenants WHERE disabled AND id IN ";

#[derive(Debug, FromQueryResult)]
struct TenantIdRow {
    id: String,
}

#[derive(Debug, FromQueryResult)]
struct ScheduleIdRow {
    schedule_id: Uuid,
}

/// Delivery slots a worker offers to the fires a pass creates (see the module's documentation).
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub worker_id: &'a str,
    /// The lease's expiry, as for a claim.
    pub until: DateTime<Utc>,
    /// How many runs at most.
    pub max: usize,
}

/// What a pass made, and the runs it leased to the calling worker with their schedules.
#[derive(Debug, Default)]
pub struct Materialised {
    pub report: Report,
    pub leased: Vec<run::Model>,
    pub schedules: HashMap<Uuid, schedule::Model>,
}

/// Materialises up to `batch` due schedules in one transaction.
pub async fn materialise_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    batch: u64,
    shards: Shards<'_>,
) -> anyhow::Result<Report> {
    Ok(materialise_and_lease(db, now, batch, shards, None)
        .await?
        .report)
}

/// Materialises up to `batch` due schedules in one transaction; fires already due at `now` are
/// leased to the offering worker, as many as its `lease` allows.
pub async fn materialise_and_lease(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    batch: u64,
    shards: Shards<'_>,
    lease: Option<Lease<'_>>,
) -> anyhow::Result<Materialised> {
    if matches!(shards, Shards::Owned([])) {
        return Ok(Materialised::default());
    }
    let backend = db.get_database_backend();
    let floor = match backend {
        sea_orm::DbBackend::Sqlite => SQLITE_FLOOR,
        _ => "",
    };
    let select_due = SELECT_DUE
        .replace("{floor}", floor)
        .replace("{shards}", &shards.condition());
    let txn = sql::begin_write(db)
        .await
        .context("beginning materialise")?;

    let due = schedule::Entity::find()
        .from_raw_sql(sql::statement(
            backend,
            &select_due,
            vec![now.into(), (batch as i64).into()],
        ))
        .all(&txn)
        .await
        .context("selecting due schedules")?;
    if due.is_empty() {
        txn.commit().await?;
        return Ok(Materialised::default());
    }

    let overlap_ids: Vec<Uuid> = due
        .iter()
        .filter(|s| Overlap::from_db(&s.overlap) == Overlap::Skip)
        .map(|s| s.id)
        .collect();
    let unfinished: HashSet<Uuid> = if overlap_ids.is_empty() {
        HashSet::new()
    } else {
        let in_list = sql::placeholders(1, overlap_ids.len());
        let values = overlap_ids.iter().map(|id| Value::from(*id)).collect();
        ScheduleIdRow::find_by_statement(sql::statement(
            backend,
            &format!("{SELECT_UNFINISHED}{in_list}"),
            values,
        ))
        .all(&txn)
        .await
        .context("checking unfinished runs")?
        .into_iter()
        .map(|row| row.schedule_id)
        .collect()
    };

    // A disabled tenant's schedules move on without firing.
    let tenant_ids: Vec<Value> = due
        .iter()
        .map(|s| s.tenant_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .map(Value::from)
        .collect();
    let in_list = sql::placeholders(1, tenant_ids.len());
    let disabled: HashSet<String> = TenantIdRow::find_by_statement(sql::statement(
        backend,
        &format!("{SELECT_DISABLED}{in_list}"),
        tenant_ids,
    ))
    .all(&txn)
    .await
    .context("checking disabled tenants")?
    .into_iter()
    .map(|row| row.id)
    .collect();

    let mut rows: Vec<[Value; RUN_COLUMNS]> = Vec::new();
    let mut leasable = lease.map_or(0, |l| l.max);
    let mut advances = Vec::with_capacity(due.len());
    for schedule in &due {
        let Some(next_run_at) = schedule.next_run_at else {
            continue;
        };
        let mut plan = match stored::timing(schedule) {
            // Never let a row it cannot plan be selected again: it has no next fire.
            _ if !crate::instant::in_range(next_run_at) => {
                tracing::error!(schedule_id = %schedule.id, %next_run_at, "next fire outside 1970 … 9999; it will not fire");
                Plan {
                    fires: Vec::new(),
                    next_run_at: None,
                }
            }
            Ok(timing) => plan(
                &timing,
                next_run_at,
                now,
                schedule.total_runs,
                Catchup::from_db(&schedule.catchup),
                Overlap::from_db(&schedule.overlap),
                unfinished.contains(&schedule.id),
            ),
            Err(error) => {
                // Never let one unreadable row block the rest: stop it firing and say why.
                tracing::error!(schedule_id = %schedule.id, error = %format!("{error:#}"), "unreadable schedule; it will not fire");
                Plan {
                    fires: Vec::new(),
                    next_run_at: None,
                }
            }
        };
        if disabled.contains(&schedule.tenant_id) {
            plan.fires.clear();
        }
        for fire in &plan.fires {
            let due_at = *fire + jitter_for(schedule.id, *fire, schedule.jitter_ms);
            // (status, attempts, due_at, locked_by): leased at once, or waiting for a claim.
            let state = match lease {
                Some(lease) if leasable > 0 && due_at <= now => {
                    leasable -= 1;
                    (
                        run::status::DELIVERING,
                        1i32,
                        lease.until,
                        Some(lease.worker_id.to_owned()),
                    )
                }
                _ => (run::status::PENDING, 0i32, due_at, None),
            };
            rows.push([
                Uuid::now_v7().into(),
                schedule.tenant_id.clone().into(),
                schedule.id.into(),
                (*fire).into(),
                run::trigger::SCHEDULE.into(),
                state.0.into(),
                state.1.into(),
                state.2.into(),
                state.3.into(),
                now.into(),
                now.into(),
            ]);
        }
        advances.push((schedule.id, plan));
    }

    let mut created: HashMap<Uuid, i64> = HashMap::new();
    let mut leased = Vec::new();
    for chunk in rows.chunks(INSERT_CHUNK) {
        let rows = sql::placeholder_rows(1, chunk.len(), RUN_COLUMNS);
        let statement = format!("{INSERT_RUNS}{rows}{INSERT_RUNS_TAIL}");
        let values: Vec<Value> = chunk.iter().flat_map(|row| row.iter().cloned()).collect();
        let inserted = run::Entity::find()
            .from_raw_sql(sql::statement(backend, &statement, values))
            .all(&txn)
            .await
            .context("inserting runs")?;
        for run in inserted {
            *created.entry(run.schedule_id).or_default() += 1;
            if run.status == run::status::DELIVERING {
                leased.push(run);
            }
        }
    }

    let advances: Vec<[Value; 4]> = advances
        .iter()
        .map(|(id, plan)| {
            [
                (*id).into(),
                plan.next_run_at.into(),
                plan.fires.last().copied().into(),
                created.get(id).copied().unwrap_or(0).into(),
            ]
        })
        .collect();
    if backend == sea_orm::DbBackend::Postgres {
        // One statement for the whole batch: a round trip per schedule is what limits a burst.
        for chunk in advances.chunks(INSERT_CHUNK) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let n = i * 4;
                    format!(
                        "(${}::uuid, ${}::timestamptz, ${}::timestamptz, ${}::bigint)",
                        n + 1,
                        n + 2,
                        n + 3,
                        n + 4
                    )
                })
                .collect();
            let statement = ADVANCE_MANY.replace("{rows}", &rows.join(", "));
            let values: Vec<Value> = chunk.iter().flat_map(|row| row.iter().cloned()).collect();
            txn.execute(sql::statement(backend, &statement, values))
                .await
                .context("advancing next_run_at")?;
        }
    } else {
        for [id, next_run_at, last_run_at, made] in advances {
            txn.execute(sql::statement(
                backend,
                ADVANCE,
                vec![next_run_at, last_run_at, made, id],
            ))
            .await
            .context("advancing next_run_at")?;
        }
    }
    txn.commit().await.context("committing materialise")?;

    let report = Report {
        schedules: due.len(),
        runs_created: created.values().sum::<i64>() as usize,
    };
    let leased_schedules: HashSet<Uuid> = leased.iter().map(|r| r.schedule_id).collect();
    let schedules = due
        .into_iter()
        .filter(|s| leased_schedules.contains(&s.id))
        .map(|s| (s.id, s))
        .collect();
    Ok(Materialised {
        report,
        leased,
        schedules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{CompiledSpec, Interval};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn every(seconds: i64) -> Timing {
        Timing {
            spec: CompiledSpec::Interval(Interval::new(seconds, None).unwrap()),
            start_at: None,
            end_at: None,
            max_runs: None,
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

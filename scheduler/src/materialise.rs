//! Materialise: due schedules become runs. In one short transaction a worker locks a batch of
//! due schedules (`FOR UPDATE SKIP LOCKED`, so workers never wait on each other), plans their
//! fires (`schedule::catchup`), inserts the runs (the unique (schedule, scheduled_for) key makes
//! a second insert of the same fire a no-op) and advances `next_run_at` from the previous
//! scheduled time, so fires never drift.
//!
//! Leasing at creation: a worker with delivery slots that its claim could not fill offers them
//! to the pass ([`Lease`]). Fires already due are then created `delivering`, leased to that
//! worker, instead of `pending`: the claim that would have followed (a second write of every
//! run, the costliest statement once a worker keeps up) is not needed. Fires beyond those slots
//! are leased too, up to the places free in the worker's waiting room, if no older run waits
//! in the database: they then wait in the worker for a slot instead of being claimed, and a
//! fire never overtakes a run that was due before it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::{run, schedule};
use hookbeat_entity::{ScheduleId, TenantId};
use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, Value};

use crate::calendar::{self, Calendar};
use crate::definition::{Catchup, Overlap};
use crate::runs::{self, Lease, NewRun};
use crate::schedule::catchup::{plan, Due, Plan};
use crate::schedule::jitter_for;
use crate::shards::Shards;
use crate::skips::{self, Skip, SkipReason};
use crate::sql;
use crate::stored;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub schedules: usize,
    pub runs_created: usize,
    /// Fires passed over, by reason (`SkipReason::index`).
    pub skipped: [u64; SkipReason::ALL.len()],
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

/// The lower bound of [`SELECT_DUE`] on SQLite.
const SQLITE_FLOOR: &str = " AND next_run_at >= '1970-01-01'";

/// The earliest schedule fire, a `MIN` over `schedules_due_idx` (SQLite: one process owns every
/// shard), bounded below as [`SELECT_DUE`] is.
const NEXT_DUE: &str = "SELECT MIN(next_run_at) AS due FROM schedules \
     WHERE enabled AND next_run_at IS NOT NULL AND next_run_at >= '1970-01-01'";

/// The same within owned shards: one probe of `schedules_shard_due_idx` per shard (PostgreSQL).
const NEXT_DUE_IN_SHARDS: &str =
    "SELECT MIN(d.due) AS due FROM unnest(ARRAY[{shards}]) AS s(shard) \
     CROSS JOIN LATERAL (SELECT next_run_at AS due FROM schedules \
         WHERE shard = s.shard AND enabled AND next_run_at IS NOT NULL \
         ORDER BY next_run_at LIMIT 1) d";

const ADVANCE: &str = "UPDATE schedules SET next_run_at = $1, \
     last_run_at = COALESCE($2, last_run_at), total_runs = total_runs + $3 WHERE id = $4";
/// The same for a whole batch (PostgreSQL): `{rows}` is a list of typed `VALUES` rows.
const ADVANCE_MANY: &str = "UPDATE schedules AS s SET next_run_at = v.next_run_at, \
     last_run_at = COALESCE(v.last_run_at, s.last_run_at), total_runs = s.total_runs + v.made \
     FROM (VALUES {rows}) AS v(id, next_run_at, last_run_at, made) WHERE s.id = v.id";

/// Schedules per [`ADVANCE_MANY`]: well under PostgreSQL's parameter limit.
const ADVANCE_CHUNK: usize = 500;

const SELECT_DISABLED: &str = "SELECT id FROM tenants WHERE disabled AND id IN ";

/// What a pass made, and the runs it leased to the calling worker with their schedules.
#[derive(Debug, Default)]
pub struct Materialised {
    pub report: Report,
    pub leased: Vec<run::Model>,
    pub schedules: HashMap<ScheduleId, schedule::Model>,
}

/// Materialises up to `batch` due schedules in one transaction.
pub async fn materialise_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    batch: u64,
    shards: Shards,
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
    shards: Shards,
    lease: Option<Lease<'_>>,
) -> anyhow::Result<Materialised> {
    if matches!(&shards, Shards::Owned(owned) if owned.is_empty()) {
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
    let txn = hookbeat_entity::begin_write(db)
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

    let overlap_ids: Vec<ScheduleId> = due
        .iter()
        .filter(|s| Overlap::from_db(&s.overlap) == Overlap::Skip)
        .map(|s| s.id)
        .collect();
    let unfinished = runs::unfinished_schedules(&txn, &overlap_ids).await?;

    // A disabled tenant's schedules move on without firing.
    let tenant_ids: Vec<Value> = due
        .iter()
        .map(|s| s.tenant_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .map(Value::from)
        .collect();
    let in_list = sql::placeholders(1, tenant_ids.len());
    let select_disabled = format!("{SELECT_DISABLED}{in_list}");
    let disabled: Vec<TenantId> = sql::column(
        &txn,
        sql::statement(backend, &select_disabled, tenant_ids),
        "id",
    )
    .await
    .context("checking disabled tenants")?;
    let disabled: HashSet<TenantId> = disabled.into_iter().collect();

    // The calendars the due schedules exclude, read once per tenant for the batch.
    let mut excluded: HashMap<TenantId, Vec<String>> = HashMap::new();
    for schedule in &due {
        if let Ok(names) = stored::exclude(schedule) {
            excluded
                .entry(schedule.tenant_id.clone())
                .or_default()
                .extend(names);
        }
    }
    let mut calendars = HashMap::new();
    for (tenant, mut names) in excluded.into_iter().filter(|(_, n)| !n.is_empty()) {
        names.sort();
        names.dedup();
        let loaded = calendar::load(&txn, &tenant, &names).await?;
        calendars.insert(tenant, loaded);
    }

    let mut fires = Vec::new();
    let mut skipped = Vec::new();
    let mut advances = Vec::with_capacity(due.len());
    for schedule in &due {
        let Some(next_run_at) = schedule.next_run_at else {
            continue;
        };
        let mut plan = plan_for(
            schedule,
            calendars.get(&schedule.tenant_id),
            next_run_at,
            now,
            unfinished.contains(&schedule.id),
        );
        if disabled.contains(&schedule.tenant_id) {
            // A disabled tenant's schedules are as good as paused.
            plan.skipped
                .extend(Skip::of(&plan.fires, SkipReason::Paused));
            plan.fires.clear();
        }
        skipped.extend(plan.skipped.iter().map(|skip| (schedule.id, *skip)));
        fires.extend(plan.fires.iter().map(|fire| NewRun {
            tenant_id: schedule.tenant_id.clone(),
            schedule_id: schedule.id,
            scheduled_for: *fire,
            trigger: run::trigger::SCHEDULE,
            due_at: *fire + jitter_for(schedule.id, *fire, schedule.jitter_ms),
        }));
        advances.push((schedule.id, plan));
    }

    let lease = match lease {
        Some(offered) if offered.room > 0 && due_at_once(&fires, now) > offered.max => {
            let room = if runs::older_waiting(&txn, now).await? {
                0
            } else {
                offered.room
            };
            Some(Lease {
                max: offered.max + room,
                room: 0,
                ..offered
            })
        }
        other => other,
    };
    let mut created: HashMap<ScheduleId, i64> = HashMap::new();
    let mut leased = Vec::new();
    for run in runs::insert(&txn, &fires, now, lease).await? {
        *created.entry(run.schedule_id).or_default() += 1;
        if run.status == run::RunStatus::Delivering {
            leased.push(run);
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
        for chunk in advances.chunks(ADVANCE_CHUNK) {
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
    skips::record(&txn, &skipped, now).await?;
    txn.commit().await.context("committing materialise")?;

    let mut report = Report {
        schedules: due.len(),
        runs_created: created.values().sum::<i64>() as usize,
        ..Report::default()
    };
    for (_, skip) in &skipped {
        report.skipped[skip.reason.index()] += skip.fires as u64;
    }
    let leased_schedules: HashSet<ScheduleId> = leased.iter().map(|r| r.schedule_id).collect();
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

/// How many of `fires` are due at `now`, and so may be leased as they are made.
fn due_at_once(fires: &[NewRun], now: DateTime<Utc>) -> usize {
    fires.iter().filter(|fire| fire.due_at <= now).count()
}

/// The earliest fire of an enabled schedule in `shards`.
pub async fn next_due(
    db: &DatabaseConnection,
    shards: Shards,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let query = match &shards {
        Shards::All => NEXT_DUE.to_owned(),
        Shards::Owned(owned) if owned.is_empty() => return Ok(None),
        Shards::Owned(owned) => NEXT_DUE_IN_SHARDS.replace("{shards}", &crate::shards::list(owned)),
    };
    let statement = sql::statement(db.get_database_backend(), &query, vec![]);
    let due: Option<Option<DateTime<Utc>>> = sql::value(db, statement, "due")
        .await
        .context("reading when the next schedule is due")?;
    Ok(due.flatten())
}

/// The plan of one due schedule. A row it cannot plan (unreadable, or its next fire outside
/// 1970 … 9999) gets no next fire, so it is never selected again and cannot block the rest; the
/// log says why.
fn plan_for(
    schedule: &schedule::Model,
    calendars: Option<&HashMap<String, Arc<Calendar>>>,
    next_run_at: DateTime<Utc>,
    now: DateTime<Utc>,
    previous_run_unfinished: bool,
) -> Plan {
    let never = Plan {
        fires: Vec::new(),
        next_run_at: None,
        skipped: Vec::new(),
    };
    if !crate::instant::in_range(next_run_at) {
        tracing::error!(schedule_id = %schedule.id, %next_run_at, "next fire outside 1970 … 9999; it will not fire");
        return never;
    }
    let timing = stored::timing(schedule).and_then(|mut timing| {
        let names = stored::exclude(schedule)?;
        timing.exclude = calendar::exclusions(&names, calendars.unwrap_or(&HashMap::new()))?;
        Ok(timing)
    });
    match timing {
        Ok(timing) => {
            let due = Due {
                next_run_at,
                total_runs: schedule.total_runs,
                catchup: Catchup::from_db(&schedule.catchup),
                overlap: Overlap::from_db(&schedule.overlap),
                previous_run_unfinished,
            };
            plan(&timing, &due, now)
        }
        Err(error) => {
            tracing::error!(schedule_id = %schedule.id, error = %format!("{error:#}"), "unreadable schedule; it will not fire");
            never
        }
    }
}

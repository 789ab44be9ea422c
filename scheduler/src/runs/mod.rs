//! The run life cycle: every statement that writes `runs`, offered as typed transitions.
//!
//! ```text
//!   (none) ──insert──────────────> pending
//!   (none) ──insert with lease───> delivering   due at once, and the worker offered slots
//!   pending, retrying ──claim────> delivering   leased to one worker until due_at
//!   delivering ──hand_back───────> pending | retrying   not attempted (a politeness limit)
//!   delivering ──take_back───────> retrying     its lease expired, or its worker left
//!   delivering ──finish──────────> succeeded    2xx, and no step after it
//!                                | pending      2xx with a `then` step next, or `on_failure`
//!                                | retrying     retryable, and attempts left
//!                                | failed       permanent, or out of attempts
//!   failed ──redeliver───────────> pending      a fresh retry budget for the failed step
//!   succeeded, failed ──prune────> (none)       after the retention
//! ```
//!
//! A claim is a lease, not a transaction: one statement marks a batch of due runs `delivering`,
//! owned by this worker until `due_at` (the lease expiry), and commits at once. The HTTP call
//! happens outside any transaction. Every write-back is fenced by (owner, attempt): if the lease
//! expired and another worker claimed the run, zero rows match and this worker's result is only
//! kept as history, never applied to the run. A run moving to its next `then` step or to its
//! `on_failure` call goes back to `pending` with a fresh attempt count. Finished runs are
//! pruned after the retention.

mod lease;
mod sql;
mod state;

pub use lease::{
    claim, claim_per_tenant, extend_lease, finish, hand_back, release_owned, rescue_expired,
    Written,
};
pub use state::{AttemptRecord, Finished, Lease, NewRun, RunUpdate, TakenBack};

use std::collections::HashSet;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::attempt;
use hookbeat_entity::run::{self, RunStatus};
use hookbeat_entity::{ScheduleId, TenantId};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Statement, Value,
};
use uuid::Uuid;

use crate::sql::{column, placeholder_rows, placeholders, statement, value};

/// Makes `runs`, in order, leasing those due at `now` to the worker that offers a `lease`, as
/// many as it offers. Returns the runs made: a fire that already has a run is left out.
pub async fn insert(
    conn: &impl ConnectionTrait,
    runs: &[NewRun],
    now: DateTime<Utc>,
    lease: Option<Lease<'_>>,
) -> anyhow::Result<Vec<run::Model>> {
    let backend = conn.get_database_backend();
    let mut leasable = lease.map_or(0, |l| l.max);
    let mut made = Vec::with_capacity(runs.len());
    for chunk in runs.chunks(sql::INSERT_CHUNK) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * sql::RUN_COLUMNS);
        for new in chunk {
            let (status, attempts, due_at, locked_by) = match lease {
                Some(lease) if leasable > 0 && new.due_at <= now => {
                    leasable -= 1;
                    (
                        RunStatus::Delivering,
                        1i32,
                        lease.until,
                        Some(lease.worker_id.to_owned()),
                    )
                }
                _ => (RunStatus::Pending, 0i32, new.due_at, None),
            };
            values.extend([
                Uuid::now_v7().into(),
                new.tenant_id.clone().into(),
                new.schedule_id.into(),
                new.scheduled_for.into(),
                new.trigger.into(),
                status.as_str().into(),
                attempts.into(),
                due_at.into(),
                locked_by.into(),
                now.into(),
                now.into(),
            ]);
        }
        let rows = placeholder_rows(1, chunk.len(), sql::RUN_COLUMNS);
        let insert = sql::INSERT.replace("{rows}", &rows);
        made.extend(
            take(conn, statement(backend, &insert, values))
                .await
                .context("inserting runs")?,
        );
    }
    Ok(made)
}
/// Every attempt of `run`, oldest first: its rows of `attempts`, and the attempt its row keeps
/// when that was its only one (see [`Finished::is_sole_attempt`]).
pub async fn attempts_of(
    conn: &impl ConnectionTrait,
    run: &run::Model,
) -> Result<Vec<attempt::Model>, sea_orm::DbErr> {
    let mut attempts = attempt::Entity::find()
        .filter(attempt::Column::RunId.eq(run.id))
        .order_by_asc(attempt::Column::Id)
        .all(conn)
        .await?;
    if let Some(sole) = sole_attempt(run) {
        attempts.push(sole);
        attempts.sort_by_key(|a| (a.started_at, a.attempt));
    }
    Ok(attempts)
}

/// The attempt a run's row keeps, as the row of `attempts` it stands for.
fn sole_attempt(run: &run::Model) -> Option<attempt::Model> {
    Some(attempt::Model {
        id: run.id.into(),
        run_id: run.id,
        attempt: 1,
        started_at: run.sole_attempt_started_at?,
        duration_ms: run.sole_attempt_duration_ms.unwrap_or(0),
        outcome: "success".to_owned(),
        status_code: run.last_status_code,
        error: None,
        response_excerpt: run.sole_attempt_excerpt.clone(),
        step: 0,
    })
}

/// Runs a statement that returns whole runs.
pub(super) async fn take(
    conn: &impl ConnectionTrait,
    statement: Statement,
) -> Result<Vec<run::Model>, sea_orm::DbErr> {
    run::Entity::find().from_raw_sql(statement).all(conn).await
}

/// Up to `limit` tenants with due runs, in tenant order after `after`, leaving out disabled
/// tenants.
pub async fn due_tenants(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    after: &TenantId,
    limit: usize,
) -> anyhow::Result<Vec<TenantId>> {
    let backend = db.get_database_backend();
    let query = match backend {
        DbBackend::Sqlite => sql::DUE_TENANTS_SQLITE,
        _ => sql::DUE_TENANTS,
    };
    let values = vec![now.into(), after.clone().into(), (limit as i64).into()];
    column(db, statement(backend, query, values), "tenant_id")
        .await
        .context("listing tenants with due runs")
}

/// Queues a failed run again with a fresh retry budget, resuming the step that failed (not the
/// `on_failure` call) and continuing its attempt numbers. `None` when the run is no longer
/// failed (another request redelivered it meanwhile).
pub async fn redeliver(
    conn: &impl ConnectionTrait,
    failed: &run::Model,
    now: DateTime<Utc>,
) -> anyhow::Result<Option<run::Model>> {
    let failure = failed.failure.as_ref();
    let step = failure
        .and_then(|f| f["step"].as_i64())
        .map_or(failed.step, |s| s as i32);
    let attempts = failure
        .and_then(|f| f["attempts"].as_i64())
        .map_or(failed.attempts, |a| a as i32);
    let values = vec![
        failed.id.into(),
        failed.tenant_id.clone().into(),
        now.into(),
        step.into(),
        attempts.into(),
    ];
    let mut queued = take(
        conn,
        statement(conn.get_database_backend(), sql::REDELIVER, values),
    )
    .await
    .context("redelivering a run")?;
    Ok(queued.pop())
}

/// Deletes up to `batch` runs finished before `cutoff`, with their attempts; returns how many.
pub async fn prune_finished(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> anyhow::Result<u64> {
    let values = vec![cutoff.into(), batch.into()];
    Ok(db
        .execute(statement(db.get_database_backend(), sql::PRUNE, values))
        .await
        .context("pruning run history")?
        .rows_affected())
}

/// Deletes the runs of `tenant`'s schedule `id`, with their attempts: the first step of deleting
/// the schedule, so that it takes the locks of runs before the schedule's, as the write-back
/// does (a result recorded with the schedule's health), and the two never wait on each other.
pub async fn delete_of_schedule(
    conn: &impl ConnectionTrait,
    tenant: &TenantId,
    id: ScheduleId,
) -> anyhow::Result<()> {
    let values = vec![id.into(), tenant.as_str().into()];
    conn.execute(statement(
        conn.get_database_backend(),
        sql::DELETE_OF_SCHEDULE,
        values,
    ))
    .await
    .context("deleting a schedule's runs")?;
    Ok(())
}

/// The runs of `schedule`'s fires from `from` to `to` (both inclusive).
pub async fn fires_between(
    conn: &impl ConnectionTrait,
    schedule: ScheduleId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<run::Model>> {
    let values = vec![schedule.into(), from.into(), to.into()];
    take(
        conn,
        statement(conn.get_database_backend(), sql::FIRES_BETWEEN, values),
    )
    .await
    .context("reading the runs of a schedule's fires")
}

/// Which of `schedules` still have an unfinished run.
pub async fn unfinished_schedules(
    conn: &impl ConnectionTrait,
    schedules: &[ScheduleId],
) -> anyhow::Result<HashSet<ScheduleId>> {
    if schedules.is_empty() {
        return Ok(HashSet::new());
    }
    let query = format!(
        "{}{}",
        sql::UNFINISHED_SCHEDULES,
        placeholders(1, schedules.len())
    );
    let values = schedules.iter().map(|id| Value::from(*id)).collect();
    let statement = statement(conn.get_database_backend(), &query, values);
    let unfinished: Vec<ScheduleId> = column(conn, statement, "schedule_id")
        .await
        .context("checking unfinished runs")?;
    Ok(unfinished.into_iter().collect())
}

/// The earliest instant a run becomes claimable: a waiting run falling due, or a lease expiring.
pub async fn next_due(db: &DatabaseConnection) -> anyhow::Result<Option<DateTime<Utc>>> {
    let statement = statement(db.get_database_backend(), sql::NEXT_DUE, vec![]);
    let due: Option<Option<DateTime<Utc>>> = value(db, statement, "due")
        .await
        .context("reading when the next run is due")?;
    Ok(due.flatten())
}

/// Whether a run due at `now` waits to be claimed (of any tenant, disabled ones included: a
/// fire then queues behind it rather than overtake it).
pub async fn older_waiting(
    conn: &impl ConnectionTrait,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let statement = statement(
        conn.get_database_backend(),
        sql::OLDER_WAITING,
        vec![now.into()],
    );
    let waiting: Option<bool> = value(conn, statement, "waiting")
        .await
        .context("looking for runs waiting to be claimed")?;
    Ok(waiting.unwrap_or(false))
}

/// How many unfinished runs are due at `now`.
pub async fn count_due(db: &DatabaseConnection, now: DateTime<Utc>) -> anyhow::Result<i64> {
    let statement = statement(db.get_database_backend(), sql::COUNT_DUE, vec![now.into()]);
    let count = value(db, statement, "n")
        .await
        .context("counting due runs")?;
    Ok(count.unwrap_or(0))
}

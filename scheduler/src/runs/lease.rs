//! The transitions of a run in flight: claims (the lease), hand-backs, lease extensions, taking
//! runs back from a worker that lost or left them, and the fenced write-back of results.

use std::collections::HashSet;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::run;
use hookbeat_entity::{RunId, TenantId};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

use super::state::{AttemptRecord, Finished, TakenBack};
use super::{sql, take};
use hookbeat_entity::begin_write;

use crate::sql::{column, placeholder_rows, placeholders, statement};

/// Claims up to `limit` due runs, oldest first, leaving the runs of the tenants in `skip` where
/// they are.
pub async fn claim(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
    skip: &[TenantId],
) -> anyhow::Result<Vec<run::Model>> {
    let condition = if skip.is_empty() {
        String::new()
    } else {
        format!(" AND tenant_id NOT IN {}", placeholders(5, skip.len()))
    };
    let values = claim_values(worker_id, lease_until, now, limit, skip);
    let claim = sql::CLAIM.replace("{skip}", &condition);
    take(db, statement(db.get_database_backend(), &claim, values))
        .await
        .context("claiming runs")
}

/// Claims up to `share` due runs of each of `tenants`, oldest first within each.
pub async fn claim_per_tenant(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    share: usize,
    tenants: &[TenantId],
) -> anyhow::Result<Vec<run::Model>> {
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    if backend == DbBackend::Sqlite {
        let mut claimed = Vec::new();
        for tenant in tenants {
            let values = claim_values(
                worker_id,
                lease_until,
                now,
                share,
                std::slice::from_ref(tenant),
            );
            claimed.extend(
                take(db, statement(backend, sql::CLAIM_ONE_TENANT, values))
                    .await
                    .context("claiming a tenant's runs")?,
            );
        }
        return Ok(claimed);
    }
    let rows: Vec<String> = (0..tenants.len())
        .map(|i| format!("(${})", i + 5))
        .collect();
    let claim = sql::CLAIM_PER_TENANT.replace("{tenants}", &rows.join(", "));
    let values = claim_values(worker_id, lease_until, now, share, tenants);
    take(db, statement(backend, &claim, values))
        .await
        .context("claiming runs per tenant")
}

/// The parameters every claim statement shares: the worker (`$1`), the lease's end (`$2`), now
/// (`$3`), how many runs (`$4`), then the tenants it names (from `$5`).
fn claim_values(
    worker_id: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
    tenants: &[TenantId],
) -> Vec<Value> {
    let mut values: Vec<Value> = vec![
        worker_id.into(),
        lease_until.into(),
        now.into(),
        (limit as i64).into(),
    ];
    values.extend(tenants.iter().map(|t| Value::from(t.clone())));
    values
}

/// Gives claimed runs back unattempted, due again at `due_again`.
pub async fn hand_back(
    db: &DatabaseConnection,
    worker_id: &str,
    runs: &[RunId],
    due_again: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let hand_back = format!("{}{}", sql::HAND_BACK, placeholders(4, runs.len()));
    let mut values: Vec<Value> = vec![worker_id.into(), due_again.into(), now.into()];
    values.extend(runs.iter().map(|id| Value::from(*id)));
    db.execute(statement(db.get_database_backend(), &hand_back, values))
        .await
        .context("handing runs back")?;
    Ok(())
}

/// Moves the lease of `run` (at the attempt it was claimed for) to `until`; `false` when this
/// worker no longer holds it.
pub async fn extend_lease(
    db: &DatabaseConnection,
    worker_id: &str,
    run: &run::Model,
    until: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let values = vec![
        until.into(),
        run.id.into(),
        worker_id.into(),
        run.attempts.into(),
    ];
    let result = db
        .execute(statement(
            db.get_database_backend(),
            sql::EXTEND_LEASE,
            values,
        ))
        .await
        .context("extending a lease")?;
    Ok(result.rows_affected() == 1)
}

/// Takes back up to `limit` runs whose lease expired; returns how many.
pub async fn rescue_expired(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    limit: usize,
) -> anyhow::Result<usize> {
    let select = (sql::SELECT_EXPIRED, vec![now.into(), (limit as i64).into()]);
    take_back(db, select, TakenBack::LeaseExpired, now).await
}

/// Takes back the runs `worker_id` has in flight (it is leaving), so they are claimable now
/// rather than when their leases would have expired; returns how many.
pub async fn release_owned(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let select = (sql::SELECT_OWNED, vec![worker_id.into()]);
    take_back(db, select, TakenBack::WorkerLeft, now).await
}

/// A run in flight as [`sql::SELECT_EXPIRED`] and [`sql::SELECT_OWNED`] read it.
#[derive(FromQueryResult)]
struct InFlight {
    id: RunId,
    attempts: i32,
    step: i32,
    locked_by: Option<String>,
    updated_at: DateTime<Utc>,
}

/// Takes back the runs in flight that `select` finds and records each lost attempt in the
/// history, so a run's attempts say what became of every one. One short transaction: the rows
/// stay locked from the look to the write.
async fn take_back(
    db: &DatabaseConnection,
    (select, values): (&str, Vec<Value>),
    why: TakenBack,
    now: DateTime<Utc>,
) -> anyhow::Result<usize> {
    let backend = db.get_database_backend();
    let txn = begin_write(db)
        .await
        .context("beginning to take runs back")?;
    let lost = InFlight::find_by_statement(statement(backend, select, values))
        .all(&txn)
        .await
        .context("looking for runs to take back")?;
    if lost.is_empty() {
        txn.commit().await.context("ending a take-back")?;
        return Ok(0);
    }
    let (before, after) = why.framing();
    let mut values: Vec<Value> = vec![now.into(), before.into(), after.into()];
    values.extend(lost.iter().map(|row| Value::from(row.id)));
    let take_back = format!("{}{}", sql::TAKE_BACK, placeholders(4, lost.len()));
    txn.execute(statement(backend, &take_back, values))
        .await
        .context("taking runs back")?;
    let records: Vec<(RunId, i32, i32, AttemptRecord)> = lost
        .iter()
        .map(|row| {
            let worker = row.locked_by.as_deref().unwrap_or("unknown");
            let record = AttemptRecord {
                started_at: row.updated_at,
                duration_ms: (now - row.updated_at).num_milliseconds().max(0),
                outcome: "retry",
                status_code: None,
                error: Some(why.error(row.attempts, worker)),
                response_excerpt: None,
            };
            (row.id, row.attempts, row.step, record)
        })
        .collect();
    txn.execute(record_attempts(
        backend,
        records
            .iter()
            .map(|(id, attempt, step, record)| (*id, *attempt, *step, record)),
    ))
    .await
    .context("recording lost attempts")?;
    txn.commit().await.context("committing a take-back")?;
    Ok(lost.len())
}

/// Records a group of finished attempts in one short transaction: each run whose lease this
/// worker still holds moves to its new state, and every attempt goes into the history, as its
/// run's sole attempt (see [`Finished::is_sole_attempt`]) or as a row of `attempts`. One
/// statement for the runs and one for the attempt rows, however many there are: this is where
/// the per-delivery cost of the database goes, so it is paid once per group. The schedules'
/// health follows in the same transaction (`crate::health`, `crate::notices`).
pub async fn finish(
    db: &DatabaseConnection,
    worker_id: &str,
    finished: &[Finished],
    now: DateTime<Utc>,
) -> anyhow::Result<Written> {
    if finished.is_empty() {
        return Ok(Written::default());
    }
    let backend = db.get_database_backend();
    let rows = placeholder_rows(3, finished.len(), sql::FINISH_COLUMNS);
    let finish = sql::FINISH.replace("{rows}", &rows);
    let mut values: Vec<Value> = Vec::with_capacity(2 + finished.len() * sql::FINISH_COLUMNS);
    values.push(worker_id.into());
    values.push(now.into());
    for f in finished {
        let u = &f.update;
        let sole = f.is_sole_attempt().then_some(&f.record);
        values.extend([
            f.run_id.into(),
            f.attempt.into(),
            u.status.as_str().into(),
            u.due_at.into(),
            u.status_code.into(),
            u.error.clone().into(),
            u.finished_at.into(),
            u.next_step.into(),
            u.failure.clone().into(),
            sole.map(|r| r.started_at).into(),
            sole.map(|r| r.duration_ms).into(),
            sole.and_then(|r| r.response_excerpt.clone()).into(),
            f.fire_lag_ms().into(),
        ]);
    }

    let txn = begin_write(db).await.context("beginning write-back")?;
    let applied: HashSet<RunId> = column(&txn, statement(backend, &finish, values), "id")
        .await
        .context("writing back runs")?
        .into_iter()
        .collect();
    // A result the fence refused is kept as history all the same, as a row of its own.
    let rows: Vec<_> = finished
        .iter()
        .filter(|f| !f.is_sole_attempt() || !applied.contains(&f.run_id))
        .map(|f| (f.run_id, f.attempt, f.step, &f.record))
        .collect();
    if !rows.is_empty() {
        txn.execute(record_attempts(backend, rows.into_iter()))
            .await
            .context("recording attempts")?;
    }
    // The schedules' health, from the results applied: after the runs, as every transaction
    // that writes both takes their locks (deleting a schedule deletes its runs first).
    let changes = crate::health::changes(finished.iter().filter(|f| applied.contains(&f.run_id)));
    let after = crate::health::record(&txn, &changes).await?;
    let notices = crate::notices::follow(&txn, &changes, &after, now).await?;
    txn.commit().await.context("committing write-back")?;
    Ok(Written {
        held: finished
            .iter()
            .map(|f| applied.contains(&f.run_id))
            .collect(),
        notices,
    })
}

/// What a group's write-back did.
#[derive(Debug, Default)]
pub struct Written {
    /// In order, whether each run's lease was still held.
    pub held: Vec<bool>,
    /// The notices its results issued.
    pub notices: Vec<crate::notices::Transition>,
}

/// [`sql::RECORD_ATTEMPTS`] for these attempts: (run, attempt number, step, what happened). A
/// group is at most a claim batch, well under both backends' parameter limits.
fn record_attempts<'a>(
    backend: DbBackend,
    attempts: impl ExactSizeIterator<Item = (RunId, i32, i32, &'a AttemptRecord)>,
) -> Statement {
    let rows = placeholder_rows(1, attempts.len(), sql::ATTEMPT_COLUMNS);
    let mut values: Vec<Value> = Vec::with_capacity(attempts.len() * sql::ATTEMPT_COLUMNS);
    for (run_id, attempt, step, r) in attempts {
        values.extend([
            Uuid::now_v7().into(),
            run_id.into(),
            attempt.into(),
            r.started_at.into(),
            r.duration_ms.into(),
            r.outcome.into(),
            r.status_code.into(),
            r.error.clone().into(),
            r.response_excerpt.clone().into(),
            step.into(),
        ]);
    }
    statement(
        backend,
        &sql::RECORD_ATTEMPTS.replace("{rows}", &rows),
        values,
    )
}

//! Claiming runs for delivery and writing back what happened, as hand-written SQL.
//!
//! A claim is a lease, not a transaction: one statement marks a batch of due runs `delivering`,
//! owned by this worker until `due_at` (the lease expiry), and commits at once. The HTTP call
//! happens outside any transaction. Every write-back is fenced by (owner, attempt): if the lease
//! expired and another worker claimed the run, zero rows match and this worker's result is only
//! kept as history, never applied to the run.

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::run;
use std::collections::HashSet;

use sea_orm::{ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult};
use uuid::Uuid;

use crate::sql;

/// Takes up to `$4` due runs, oldest `due_at` first, skipping rows another worker is claiming,
/// the runs of disabled tenants (they wait until the tenant is enabled again) and those of the
/// tenants listed in `{skip}` (at their share of this worker's slots: claiming their runs would
/// only hand them back, and fill the claim ahead of everyone else's). Served by
/// `runs_waiting_idx`.
const CLAIM: &str =
    "UPDATE runs SET status = 'delivering', locked_by = $1, attempts = attempts + 1, \
     due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT id FROM runs \
         WHERE status IN ('pending', 'retrying') AND due_at <= $3 \
           AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled){skip} \
         ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING *";

/// Runs whose lease expired (`delivering` with `due_at`, the expiry, in the past), at most `$2`,
/// locked for the rescue: their worker crashed or hung before recording the attempt's result.
/// `updated_at` is when the lease was taken, so when the lost attempt started. Served by
/// `runs_leased_idx`.
const SELECT_LOST: &str = "SELECT id, attempts, step, locked_by, updated_at FROM runs \
     WHERE status = 'delivering' AND due_at <= $1 \
     ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED";

/// Takes the runs in `{ids}` back: the attempt counts, as the request may have reached the
/// receiver; the run is due again where it stood, with the same id and so the same `webhook-id`.
const RESCUE: &str = "UPDATE runs SET status = 'retrying', locked_by = NULL, updated_at = $1, \
     last_error = 'attempt ' || attempts || ' was lost: the lease of worker ' || locked_by || \
         ' expired before it recorded a result' \
     WHERE status = 'delivering' AND id IN ";

/// Tenants with claimable runs, in tenant order after `$2`, at most `$3`: a loose index scan over
/// `runs_tenant_waiting_idx`, one probe per tenant, however many runs each has.
const DUE_TENANTS: &str = "WITH RECURSIVE due AS ( \
         (SELECT tenant_id FROM runs \
          WHERE status IN ('pending', 'retrying') AND due_at <= $1 AND tenant_id > $2 \
          ORDER BY tenant_id LIMIT 1) \
         UNION ALL \
         SELECT (SELECT r.tenant_id FROM runs r \
                 WHERE r.status IN ('pending', 'retrying') AND r.due_at <= $1 \
                   AND r.tenant_id > due.tenant_id \
                 ORDER BY r.tenant_id LIMIT 1) \
         FROM due WHERE due.tenant_id IS NOT NULL) \
     SELECT tenant_id FROM due WHERE tenant_id IS NOT NULL \
       AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled) LIMIT $3";

/// Claims up to `$4` due runs of *each* listed tenant (`{tenants}` is a `VALUES` list of
/// placeholders from `$5`), so one tenant's backlog cannot fill the batch. Served by
/// `runs_tenant_waiting_idx`.
const CLAIM_PER_TENANT: &str = "UPDATE runs SET status = 'delivering', locked_by = $1, \
     attempts = attempts + 1, due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT c.id FROM (VALUES {tenants}) AS t(tenant_id) \
         CROSS JOIN LATERAL (SELECT id FROM runs \
             WHERE tenant_id = t.tenant_id AND status IN ('pending', 'retrying') \
               AND due_at <= $3 \
             ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) c) \
     RETURNING *";

/// [`DUE_TENANTS`] for SQLite, which has no parenthesised members in a compound query: the due
/// runs' tenants in order, from `runs_tenant_waiting_idx`. One process owns an SQLite file, so a
/// plain scan of the waiting runs' index is what the loose scan saves PostgreSQL's many workers.
const DUE_TENANTS_SQLITE: &str = "SELECT DISTINCT tenant_id FROM runs \
     WHERE status IN ('pending', 'retrying') AND due_at <= $1 AND tenant_id > $2 \
       AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled) \
     ORDER BY tenant_id LIMIT $3";

/// [`CLAIM_PER_TENANT`] for one tenant (`$5`), for SQLite, which has no `LATERAL`: a statement
/// per tenant costs an in-process call, not a round trip.
const CLAIM_ONE_TENANT: &str = "UPDATE runs SET status = 'delivering', locked_by = $1, \
     attempts = attempts + 1, due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT id FROM runs \
         WHERE tenant_id = $5 AND status IN ('pending', 'retrying') AND due_at <= $3 \
         ORDER BY due_at LIMIT $4) \
     RETURNING *";

/// How many tenants one fair claim serves at most; the rest get their turn as the rotation
/// moves on.
const MAX_TENANTS_PER_CLAIM: usize = 256;

/// Hands claimed runs back unattempted (a politeness limit was reached): the claim's attempt is
/// taken back and the runs are due again at `$2`. Fenced by the owner alone: `locked_by` is set
/// only while a run is `delivering`.
const HAND_BACK: &str = "UPDATE runs SET attempts = attempts - 1, \
     status = CASE WHEN attempts - 1 > retry_base THEN 'retrying' ELSE 'pending' END, \
     locked_by = NULL, due_at = $2, updated_at = $3 \
     WHERE locked_by = $1 AND id IN ";

/// Moves a lease's expiry, for attempts whose timeout outlasts the default lease.
const EXTEND_LEASE: &str = "UPDATE runs SET due_at = $1 \
     WHERE id = $2 AND locked_by = $3 AND attempts = $4 AND status = 'delivering'";

/// Applies attempts' results to their runs, only where this worker (`$1`) still holds the lease
/// at the attempt it made. `{rows}` is a `VALUES` list, one row per result, of (id, attempts,
/// status, due_at, status_code, error, finished_at, next_step, failure): `column1`… in both
/// PostgreSQL and SQLite. A run moving to another step (`next_step`) starts that step's attempts
/// afresh; `failure` is kept once the run failed for good. Returns the ids it applied to.
///
/// The fence is (owner, attempt) without `status = 'delivering'`: `locked_by` is set only while a
/// run is delivering, so the status adds nothing, and leaving it out keeps the planner on the
/// primary key. With it, PostgreSQL chose to scan every in-flight run through `runs_leased_idx`,
/// whose dead entries (one per finished delivery until vacuum) made this the costliest statement
/// of all.
const FINISH_ATTEMPTS: &str = "UPDATE runs SET status = v.column3, due_at = v.column4, \
     locked_by = NULL, last_status_code = v.column5, last_error = v.column6, updated_at = $2, \
     finished_at = v.column7, step = COALESCE(v.column8, runs.step), \
     attempts = CASE WHEN v.column8 IS NULL THEN runs.attempts ELSE 0 END, \
     retry_base = CASE WHEN v.column8 IS NULL THEN runs.retry_base ELSE 0 END, \
     failure = COALESCE(v.column9, runs.failure) \
     FROM (VALUES {rows}) AS v \
     WHERE runs.id = v.column1 AND runs.locked_by = $1 AND runs.attempts = v.column2 \
     RETURNING runs.id";

/// Columns per row of [`FINISH_ATTEMPTS`]' `VALUES` list.
const FINISH_COLUMNS: usize = 9;

/// Keeps attempts as history, one row per result in `{rows}` (id, run_id, attempt, started_at,
/// duration_ms, outcome, status_code, error, response_excerpt, step), except for runs that are
/// gone: a schedule deleted while its run was in flight takes the run with it, and the result
/// has nothing left to belong to. Without that condition the foreign key to `runs` would fail
/// the whole group, and every other run in it would be delivered again once its lease expired.
const RECORD_ATTEMPTS: &str = "INSERT INTO attempts (id, run_id, attempt, started_at, \
     duration_ms, outcome, status_code, error, response_excerpt, step) \
     SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, \
         v.column8, v.column9, v.column10 \
     FROM (VALUES {rows}) AS v \
     WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = v.column2)";

/// Columns per row of [`RECORD_ATTEMPTS`]' `VALUES` list.
const ATTEMPT_COLUMNS: usize = 10;

/// Claims up to `limit` due runs, oldest first.
pub async fn claim(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> anyhow::Result<Vec<run::Model>> {
    claim_skipping(db, worker_id, now, lease_until, limit, &[]).await
}

/// The same, leaving the runs of the tenants in `skip` where they are.
pub async fn claim_skipping(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
    skip: &[String],
) -> anyhow::Result<Vec<run::Model>> {
    let condition = if skip.is_empty() {
        String::new()
    } else {
        format!(" AND tenant_id NOT IN {}", sql::placeholders(5, skip.len()))
    };
    let values = claim_values(worker_id, lease_until, now, limit, skip);
    let statement = sql::statement(
        db.get_database_backend(),
        &CLAIM.replace("{skip}", &condition),
        values,
    );
    take(db, statement).await.context("claiming runs")
}

/// The parameters every claim statement shares: the worker (`$1`), the lease's end (`$2`), now
/// (`$3`), how many runs (`$4`), then the tenants it names (from `$5`).
fn claim_values(
    worker_id: &str,
    lease_until: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: usize,
    tenants: &[String],
) -> Vec<sea_orm::Value> {
    let mut values: Vec<sea_orm::Value> = vec![
        worker_id.into(),
        lease_until.into(),
        now.into(),
        (limit as i64).into(),
    ];
    values.extend(tenants.iter().map(|t| sea_orm::Value::from(t.as_str())));
    values
}

/// Runs a claim statement: a single statement, so it needs no transaction of its own.
async fn take(
    db: &DatabaseConnection,
    statement: sea_orm::Statement,
) -> Result<Vec<run::Model>, sea_orm::DbErr> {
    run::Entity::find().from_raw_sql(statement).all(db).await
}

/// Takes back runs whose lease expired (see [`RESCUE`]), at most `limit`, and records each lost
/// attempt in the history, so a run's attempts say what became of every one; returns how many.
/// One short transaction: the rows stay locked from the look to the write.
pub async fn rescue_expired(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    limit: usize,
) -> anyhow::Result<usize> {
    let backend = db.get_database_backend();
    let txn = sql::begin_write(db).await.context("beginning a rescue")?;
    let lost = LostRow::find_by_statement(sql::statement(
        backend,
        SELECT_LOST,
        vec![now.into(), (limit as i64).into()],
    ))
    .all(&txn)
    .await
    .context("looking for runs with expired leases")?;
    if lost.is_empty() {
        txn.commit().await.context("ending a rescue")?;
        return Ok(0);
    }
    let mut values: Vec<sea_orm::Value> = vec![now.into()];
    values.extend(lost.iter().map(|row| sea_orm::Value::from(row.id)));
    let statement = format!("{RESCUE}{}", sql::placeholders(2, lost.len()));
    txn.execute(sql::statement(backend, &statement, values))
        .await
        .context("taking back runs with expired leases")?;
    let records: Vec<(Uuid, i32, i32, AttemptRecord)> = lost
        .iter()
        .map(|row| {
            let worker = row.locked_by.as_deref().unwrap_or("unknown");
            let record = AttemptRecord {
                started_at: row.updated_at,
                duration_ms: (now - row.updated_at).num_milliseconds().max(0),
                outcome: "retry",
                status_code: None,
                error: Some(format!(
                    "attempt {} was lost: the lease of worker {worker} expired before it \
                     recorded a result",
                    row.attempts
                )),
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
    txn.commit().await.context("committing a rescue")?;
    Ok(lost.len())
}

/// A run whose lease expired, as [`SELECT_LOST`] reads it.
#[derive(FromQueryResult)]
struct LostRow {
    id: Uuid,
    attempts: i32,
    step: i32,
    locked_by: Option<String>,
    updated_at: DateTime<Utc>,
}

#[derive(FromQueryResult)]
struct TenantRow {
    tenant_id: String,
}

/// How long a list of tenants with due runs is reused. Listing them walks an index that churns
/// with every claim, so it is done a few times a second rather than at every claim; a tenant
/// whose runs became due meanwhile still gets the slots the fair shares leave free.
const TENANT_LIST_TTL: chrono::Duration = chrono::Duration::milliseconds(500);

/// Where a worker's tenant rotation stands: the tenants with due runs it last listed, and when.
#[derive(Debug, Default)]
pub struct Rotation {
    /// The last tenant served, where the next listing starts.
    cursor: String,
    tenants: Vec<String>,
    listed_at: Option<DateTime<Utc>>,
}

/// Fairness across tenants: the batch is shared out among the tenants that have due
/// runs, an equal part each, so a tenant with 100,000 due runs delays another tenant's run by one
/// batch at most. Tenants are taken in rotation (the list moves on at each listing), so that with
/// more due tenants than [`MAX_TENANTS_PER_CLAIM`] every one is served in turn. Slots the fair
/// parts leave empty (tenants with fewer runs than their part) go to the oldest due runs of
/// anyone. Never claims more than `limit`.
pub async fn claim_fair(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
    rotation: &mut Rotation,
) -> anyhow::Result<Vec<run::Model>> {
    claim_fair_skipping(db, worker_id, now, lease_until, limit, rotation, &[]).await
}

/// The same, leaving the runs of the tenants in `skip` where they are.
pub async fn claim_fair_skipping(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
    rotation: &mut Rotation,
    skip: &[String],
) -> anyhow::Result<Vec<run::Model>> {
    let stale = rotation
        .listed_at
        .is_none_or(|listed| now - listed >= TENANT_LIST_TTL || now < listed);
    if stale {
        list_due_tenants(db, now, rotation).await?;
    }
    let served: Vec<String> = rotation
        .tenants
        .iter()
        .filter(|tenant| !skip.contains(tenant))
        .cloned()
        .collect();
    // At most one run per tenant when there are more tenants than slots.
    let tenants = &served[..served.len().min(limit)];
    let backend = db.get_database_backend();
    let mut claimed = if tenants.is_empty() {
        Vec::new()
    } else if backend == sea_orm::DbBackend::Sqlite {
        let share = (limit / tenants.len()).max(1);
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
                take(db, sql::statement(backend, CLAIM_ONE_TENANT, values))
                    .await
                    .context("claiming a tenant's runs")?,
            );
        }
        claimed
    } else {
        let share = (limit / tenants.len()).max(1);
        let placeholders: Vec<String> = (0..tenants.len())
            .map(|i| format!("(${})", i + 5))
            .collect();
        let statement = CLAIM_PER_TENANT.replace("{tenants}", &placeholders.join(", "));
        let values = claim_values(worker_id, lease_until, now, share, tenants);
        take(
            db,
            sql::statement(db.get_database_backend(), &statement, values),
        )
        .await
        .context("claiming runs fairly")?
    };
    if claimed.len() < limit {
        claimed.extend(
            claim_skipping(db, worker_id, now, lease_until, limit - claimed.len(), skip).await?,
        );
    }
    Ok(claimed)
}

/// Lists up to [`MAX_TENANTS_PER_CLAIM`] tenants with due runs, starting after the rotation's
/// cursor and wrapping around, and moves the cursor to the last of them.
async fn list_due_tenants(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    rotation: &mut Rotation,
) -> anyhow::Result<()> {
    let mut tenants = due_tenants(db, now, &rotation.cursor, MAX_TENANTS_PER_CLAIM).await?;
    if tenants.len() < MAX_TENANTS_PER_CLAIM && !rotation.cursor.is_empty() {
        for tenant in due_tenants(db, now, "", MAX_TENANTS_PER_CLAIM - tenants.len()).await? {
            if !tenants.contains(&tenant) {
                tenants.push(tenant);
            }
        }
    }
    rotation.cursor = tenants.last().cloned().unwrap_or_default();
    rotation.tenants = tenants;
    rotation.listed_at = Some(now);
    Ok(())
}

async fn due_tenants(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    after: &str,
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    let backend = db.get_database_backend();
    let statement = match backend {
        sea_orm::DbBackend::Sqlite => DUE_TENANTS_SQLITE,
        _ => DUE_TENANTS,
    };
    Ok(TenantRow::find_by_statement(sql::statement(
        backend,
        statement,
        vec![now.into(), after.into(), (limit as i64).into()],
    ))
    .all(db)
    .await
    .context("listing tenants with due runs")?
    .into_iter()
    .map(|row| row.tenant_id)
    .collect())
}

pub async fn hand_back(
    db: &DatabaseConnection,
    worker_id: &str,
    runs: &[Uuid],
    due_again: DateTime<Utc>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let statement = format!("{HAND_BACK}{}", sql::placeholders(4, runs.len()));
    let mut values: Vec<sea_orm::Value> = vec![worker_id.into(), due_again.into(), now.into()];
    values.extend(runs.iter().map(|id| sea_orm::Value::from(*id)));
    db.execute(sql::statement(
        db.get_database_backend(),
        &statement,
        values,
    ))
    .await
    .context("handing runs back")?;
    Ok(())
}

pub async fn extend_lease(
    db: &DatabaseConnection,
    worker_id: &str,
    run: &run::Model,
    until: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let result = db
        .execute(sql::statement(
            db.get_database_backend(),
            EXTEND_LEASE,
            vec![
                until.into(),
                run.id.into(),
                worker_id.into(),
                run.attempts.into(),
            ],
        ))
        .await
        .context("extending a lease")?;
    Ok(result.rows_affected() == 1)
}

/// The state a run moves to after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUpdate {
    pub status: &'static str,
    /// When to try again (`retrying`); `None` once the run is finished.
    pub due_at: Option<DateTime<Utc>>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The step the run moves to, with a fresh attempt count; `None` to stay.
    pub next_step: Option<i32>,
    /// The failure to keep on the run (it failed for good).
    pub failure: Option<serde_json::Value>,
}

/// What one attempt did, as kept in `attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub outcome: &'static str,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// One finished attempt on its way to the database.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The run as claimed: its id, and the attempt number that fences the write-back.
    pub run_id: Uuid,
    pub attempt: i32,
    pub step: i32,
    pub record: AttemptRecord,
    pub update: RunUpdate,
}

/// Records a group of finished attempts in one short transaction: every attempt goes into the
/// history, and each run whose lease this worker still holds moves to its new state. One
/// statement for the runs and one for the attempts, however many there are: this is where the
/// per-delivery cost of the database goes, so it is paid once per group. Returns, in order,
/// whether each run's lease was still held.
pub async fn finish_attempts(
    db: &DatabaseConnection,
    worker_id: &str,
    finished: &[Finished],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<bool>> {
    if finished.is_empty() {
        return Ok(Vec::new());
    }
    let backend = db.get_database_backend();
    let rows = sql::placeholder_rows(3, finished.len(), FINISH_COLUMNS);
    let statement = FINISH_ATTEMPTS.replace("{rows}", &rows);
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(2 + finished.len() * FINISH_COLUMNS);
    values.push(worker_id.into());
    values.push(now.into());
    for f in finished {
        let u = &f.update;
        values.extend([
            f.run_id.into(),
            f.attempt.into(),
            u.status.into(),
            u.due_at.into(),
            u.status_code.into(),
            u.error.clone().into(),
            u.finished_at.into(),
            u.next_step.into(),
            u.failure.clone().into(),
        ]);
    }

    let txn = sql::begin_write(db).await.context("beginning write-back")?;
    let applied: HashSet<Uuid> =
        IdRow::find_by_statement(sql::statement(backend, &statement, values))
            .all(&txn)
            .await
            .context("writing back runs")?
            .into_iter()
            .map(|row| row.id)
            .collect();
    txn.execute(record_attempts(
        backend,
        finished
            .iter()
            .map(|f| (f.run_id, f.attempt, f.step, &f.record)),
    ))
    .await
    .context("recording attempts")?;
    txn.commit().await.context("committing write-back")?;
    Ok(finished
        .iter()
        .map(|f| applied.contains(&f.run_id))
        .collect())
}

/// [`RECORD_ATTEMPTS`] for these attempts: (run, attempt number, step, what happened). A group
/// is at most a claim batch, well under both backends' parameter limits.
fn record_attempts<'a>(
    backend: sea_orm::DbBackend,
    attempts: impl ExactSizeIterator<Item = (Uuid, i32, i32, &'a AttemptRecord)>,
) -> sea_orm::Statement {
    let rows = sql::placeholder_rows(1, attempts.len(), ATTEMPT_COLUMNS);
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(attempts.len() * ATTEMPT_COLUMNS);
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
    sql::statement(backend, &RECORD_ATTEMPTS.replace("{rows}", &rows), values)
}

#[derive(FromQueryResult)]
struct IdRow {
    id: Uuid,
}

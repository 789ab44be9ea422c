//! Claiming runs for delivery and writing back what happened, as hand-written SQL.
//!
//! A claim is a lease, not a transaction: one statement marks a batch of due runs `delivering`,
//! owned by this worker until `due_at` (the lease expiry), and commits at once. The HTTP call
//! happens outside any transaction. Every write-back is fenced by (owner, attempt): if the lease
//! expired and another worker claimed the run, zero rows match and this worker's result is only
//! kept as history, never applied to the run.

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::{attempt, run};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, Set,
};
use uuid::Uuid;

use crate::sql;

/// Takes up to `$4` due runs, oldest `due_at` first, skipping rows another worker is claiming
/// and the runs of disabled tenants (they wait until the tenant is enabled again).
/// An expired lease (`delivering` with `due_at` in the past) is claimable again: that is how a
/// crashed worker's runs come back, with the same run id and so the same `webhook-id`.
/// Served by `runs_claim_idx`.
const CLAIM: &str =
    "UPDATE runs SET status = 'delivering', locked_by = $1, attempts = attempts + 1, \
     due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT id FROM runs \
         WHERE status IN ('pending', 'retrying', 'delivering') AND due_at <= $3 \
           AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled) \
         ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING *";

/// Tenants with claimable runs, in tenant order after `$2`, at most `$3`: a loose index scan over
/// `runs_tenant_due_idx`, one probe per tenant, however many runs each has.
const DUE_TENANTS: &str = "WITH RECURSIVE due AS ( \
         (SELECT tenant_id FROM runs \
          WHERE status IN ('pending', 'retrying', 'delivering') AND due_at <= $1 AND tenant_id > $2 \
          ORDER BY tenant_id LIMIT 1) \
         UNION ALL \
         SELECT (SELECT r.tenant_id FROM runs r \
                 WHERE r.status IN ('pending', 'retrying', 'delivering') AND r.due_at <= $1 \
                   AND r.tenant_id > due.tenant_id \
                 ORDER BY r.tenant_id LIMIT 1) \
         FROM due WHERE due.tenant_id IS NOT NULL) \
     SELECT tenant_id FROM due WHERE tenant_id IS NOT NULL \
       AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled) LIMIT $3";

/// Claims up to `$4` due runs of *each* listed tenant (`{tenants}` is a `VALUES` list of
/// placeholders from `$5`), so one tenant's backlog cannot fill the batch. Served by
/// `runs_tenant_due_idx`.
const CLAIM_PER_TENANT: &str = "UPDATE runs SET status = 'delivering', locked_by = $1, \
     attempts = attempts + 1, due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT c.id FROM (VALUES {tenants}) AS t(tenant_id) \
         CROSS JOIN LATERAL (SELECT id FROM runs \
             WHERE tenant_id = t.tenant_id AND status IN ('pending', 'retrying', 'delivering') \
               AND due_at <= $3 \
             ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) c) \
     RETURNING *";

/// How many tenants one fair claim serves at most; the rest get their turn as the rotation
/// moves on.
const MAX_TENANTS_PER_CLAIM: usize = 256;

/// Hands claimed runs back unattempted (a politeness limit was reached): the claim's attempt is
/// taken back and the runs are due again at `$2`.
const HAND_BACK: &str = "UPDATE runs SET attempts = attempts - 1, \
     status = CASE WHEN attempts - 1 > retry_base THEN 'retrying' ELSE 'pending' END, \
     locked_by = NULL, due_at = $2, updated_at = $3 \
     WHERE locked_by = $1 AND status = 'delivering' AND id IN ";

/// Moves a lease's expiry, for attempts whose timeout outlasts the default lease.
const EXTEND_LEASE: &str = "UPDATE runs SET due_at = $1 \
     WHERE id = $2 AND locked_by = $3 AND attempts = $4 AND status = 'delivering'";

/// Applies an attempt's result to its run, only while this worker still holds the lease. A run
/// moving to another step (`$10`) starts that step's attempts afresh; `$11` keeps the failure.
const FINISH_ATTEMPT: &str = "UPDATE runs SET status = $1, due_at = $2, locked_by = NULL, \
     last_status_code = $3, last_error = $4, updated_at = $5, finished_at = $6, \
     step = COALESCE($10, step), \
     attempts = CASE WHEN $10 IS NULL THEN attempts ELSE 0 END, \
     retry_base = CASE WHEN $10 IS NULL THEN retry_base ELSE 0 END, \
     failure = COALESCE($11, failure) \
     WHERE id = $7 AND locked_by = $8 AND attempts = $9 AND status = 'delivering'";

pub async fn claim(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> anyhow::Result<Vec<run::Model>> {
    let statement = sql::statement(
        db.get_database_backend(),
        CLAIM,
        vec![
            worker_id.into(),
            lease_until.into(),
            now.into(),
            (limit as i64).into(),
        ],
    );
    run::Entity::find()
        .from_raw_sql(statement)
        .all(db)
        .await
        .context("claiming runs")
}

#[derive(FromQueryResult)]
struct TenantRow {
    tenant_id: String,
}

/// Fairness across tenants (PostgreSQL): the batch is shared out among the tenants that have due
/// runs, an equal part each, so a tenant with 100,000 due runs delays another tenant's run by one
/// batch at most. Tenants are taken in rotation after `cursor` (which moves on), so that with more
/// due tenants than [`MAX_TENANTS_PER_CLAIM`] every one is served in turn. Slots the fair part
/// leaves empty (tenants with fewer runs than their part) go to the oldest due runs of anyone.
pub async fn claim_fair(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
    cursor: &mut String,
) -> anyhow::Result<Vec<run::Model>> {
    let backend = db.get_database_backend();
    let mut tenants = due_tenants(db, now, cursor, MAX_TENANTS_PER_CLAIM).await?;
    if tenants.len() < MAX_TENANTS_PER_CLAIM && !cursor.is_empty() {
        // Wrap around to the tenants before the cursor.
        for tenant in due_tenants(db, now, "", MAX_TENANTS_PER_CLAIM - tenants.len()).await? {
            if !tenants.contains(&tenant) {
                tenants.push(tenant);
            }
        }
    }
    if tenants.is_empty() {
        return Ok(Vec::new());
    }
    *cursor = tenants.last().cloned().unwrap_or_default();
    let share = limit.div_ceil(tenants.len()).max(1);
    let placeholders: Vec<String> = (0..tenants.len())
        .map(|i| format!("(${})", i + 5))
        .collect();
    let statement = CLAIM_PER_TENANT.replace("{tenants}", &placeholders.join(", "));
    let mut values: Vec<sea_orm::Value> = vec![
        worker_id.into(),
        lease_until.into(),
        now.into(),
        (share as i64).into(),
    ];
    values.extend(tenants.iter().map(|t| sea_orm::Value::from(t.as_str())));
    let mut claimed = run::Entity::find()
        .from_raw_sql(sql::statement(backend, &statement, values))
        .all(db)
        .await
        .context("claiming runs fairly")?;
    if claimed.len() < limit {
        claimed.extend(claim(db, worker_id, now, lease_until, limit - claimed.len()).await?);
    }
    Ok(claimed)
}

async fn due_tenants(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    after: &str,
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    Ok(TenantRow::find_by_statement(sql::statement(
        db.get_database_backend(),
        DUE_TENANTS,
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

/// Records the attempt and, if the lease is still ours, the run's new state, in one short
/// transaction. Returns whether the lease was still held.
pub async fn finish_attempt(
    db: &DatabaseConnection,
    worker_id: &str,
    run: &run::Model,
    attempt: &AttemptRecord,
    update: &RunUpdate,
    now: DateTime<Utc>,
) -> anyhow::Result<bool> {
    let txn = sql::begin_worker_write(db)
        .await
        .context("beginning write-back")?;
    let result = txn
        .execute(sql::statement(
            db.get_database_backend(),
            FINISH_ATTEMPT,
            vec![
                update.status.into(),
                update.due_at.into(),
                update.status_code.into(),
                update.error.clone().into(),
                now.into(),
                update.finished_at.into(),
                run.id.into(),
                worker_id.into(),
                run.attempts.into(),
                update.next_step.into(),
                update.failure.clone().into(),
            ],
        ))
        .await
        .context("writing back a run")?;
    attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        run_id: Set(run.id),
        attempt: Set(run.attempts),
        started_at: Set(attempt.started_at),
        duration_ms: Set(attempt.duration_ms),
        outcome: Set(attempt.outcome.to_owned()),
        status_code: Set(attempt.status_code),
        error: Set(attempt.error.clone()),
        response_excerpt: Set(attempt.response_excerpt.clone()),
        step: Set(run.step),
    }
    .insert(&txn)
    .await
    .context("recording an attempt")?;
    txn.commit().await.context("committing write-back")?;
    Ok(result.rows_affected() == 1)
}

//! Housekeeping that keeps the hot tables small: run history older than the retention is deleted
//! in bounded batches (their attempts go with them); signing secrets that stopped signing and
//! idempotency keys older than a day are forgotten.

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::sql;

/// Rows deleted per statement: short transactions that never hold many locks.
pub const PRUNE_BATCH: i64 = 1_000;

/// Finished runs older than the cut-off, a batch at a time. Served by `runs_finished_idx`.
const PRUNE_RUNS: &str = "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
     WHERE status IN ('succeeded', 'failed') AND finished_at < $1 \
     LIMIT $2 FOR UPDATE SKIP LOCKED)";
const PRUNE_SECRETS: &str = "DELETE FROM signing_secrets WHERE expires_at < $1";
/// Idempotency keys are remembered for a day (the API's `idempotency::KEY_TTL`).
const PRUNE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";
const IDEMPOTENCY_KEY_TTL: Duration = Duration::hours(24);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub runs: u64,
    pub secrets: u64,
}

/// Deletes history finished more than `retention` before `now`, at most `max_batches` batches.
pub async fn prune(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    retention: Duration,
    max_batches: usize,
) -> anyhow::Result<Pruned> {
    let backend = db.get_database_backend();
    let cutoff = now - retention;
    let mut pruned = Pruned::default();
    for _ in 0..max_batches {
        let deleted = db
            .execute(sql::statement(
                backend,
                PRUNE_RUNS,
                vec![cutoff.into(), PRUNE_BATCH.into()],
            ))
            .await
            .context("pruning run history")?
            .rows_affected();
        pruned.runs += deleted;
        if deleted < PRUNE_BATCH as u64 {
            break;
        }
    }
    pruned.secrets = db
        .execute(sql::statement(backend, PRUNE_SECRETS, vec![now.into()]))
        .await
        .context("forgetting expired signing secrets")?
        .rows_affected();
    db.execute(sql::statement(
        backend,
        PRUNE_IDEMPOTENCY_KEYS,
        vec![(now - IDEMPOTENCY_KEY_TTL).into()],
    ))
    .await
    .context("forgetting old idempotency keys")?;
    Ok(pruned)
}

//! Housekeeping, as a loop of its own beside the worker's, so that it never holds up a claim:
//! run history older than the retention is deleted in bounded batches (their attempts go with
//! them); signing secrets that stopped signing and idempotency keys older than a day are
//! forgotten, and notices delivered or given up and schedule revisions (but for each live
//! schedule's latest) with the history; the installation-wide gauges are recounted.

use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::idempotency_key;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::metrics::WorkerMetrics;
use crate::runs;
use crate::shards::ShardView;
use crate::sql;

/// Rows deleted per statement: short transactions that never hold many locks.
pub const PRUNE_BATCH: i64 = 1_000;

/// How often history is pruned, and how many batches at most per round (at most 100,000 runs
/// a minute).
const PRUNE_INTERVAL: Duration = Duration::seconds(60);
const PRUNE_BATCHES_PER_ROUND: usize = 100;
/// Spreads the rounds of workers started together over this much more.
const PRUNE_JITTER_MS: i64 = 10_000;

/// How often the pending/enabled gauges are recounted (a table scan at a million schedules).
const GAUGE_INTERVAL: Duration = Duration::seconds(60);

/// How often the loop looks at the clock: a clock moved by hand (tests) is noticed this soon.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

const PRUNE_SECRETS: &str = "DELETE FROM signing_secrets WHERE expires_at < $1";
/// Idempotency keys older than their lifetime (`idempotency_key::KEY_TTL`).
const PRUNE_IDEMPOTENCY_KEYS: &str = "DELETE FROM idempotency_keys WHERE created_at < $1";

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub runs: u64,
    pub secrets: u64,
    pub revisions: u64,
}

/// Deletes history finished more than `retention` before `now`, at most `max_batches` batches.
pub async fn prune(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    retention: Duration,
    max_batches: usize,
) -> anyhow::Result<Pruned> {
    let backend = db.get_database_backend();
    let mut pruned = Pruned::default();
    for _ in 0..max_batches {
        let deleted = runs::prune_finished(db, now - retention, PRUNE_BATCH).await?;
        pruned.runs += deleted;
        if deleted < PRUNE_BATCH as u64 {
            break;
        }
    }
    crate::skips::prune(db, now - retention).await?;
    crate::notices::prune(db, now - retention).await?;
    pruned.revisions = crate::revisions::prune(db, now - retention).await?;
    pruned.secrets = db
        .execute(sql::statement(backend, PRUNE_SECRETS, vec![now.into()]))
        .await
        .context("forgetting expired signing secrets")?
        .rows_affected();
    db.execute(sql::statement(
        backend,
        PRUNE_IDEMPOTENCY_KEYS,
        vec![(now - idempotency_key::KEY_TTL).into()],
    ))
    .await
    .context("forgetting old idempotency keys")?;
    Ok(pruned)
}

/// When each kind of housekeeping is next due.
struct Due {
    gauges: DateTime<Utc>,
    prune: DateTime<Utc>,
}

/// The housekeeping of one worker.
pub struct Maintenance {
    pub db: DatabaseConnection,
    pub clock: Arc<dyn Clock>,
    /// How long finished runs are kept.
    pub retention: Duration,
    pub shards: Arc<ShardView>,
    pub metrics: WorkerMetrics,
}

impl Maintenance {
    /// Prunes and recounts on their intervals until `cancel` fires, even in the middle of a
    /// round that waits on the database (a batch cut short is rolled back, and done next time).
    pub async fn run(self, cancel: CancellationToken) {
        let now = self.clock.now();
        let mut due = Due {
            gauges: now,
            prune: now,
        };
        while !cancel.is_cancelled() {
            if cancel
                .run_until_cancelled(self.round(&mut due))
                .await
                .is_none()
            {
                break;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    /// Does what is due at this tick, and moves `due` on past it.
    async fn round(&self, due: &mut Due) {
        let now = self.clock.now();
        if now >= due.gauges {
            if let Err(error) = self.refresh_gauges(now).await {
                tracing::warn!(error = %format!("{error:#}"), "refreshing gauges failed");
            }
            due.gauges = now + GAUGE_INTERVAL;
        }
        if now >= due.prune {
            match prune(&self.db, now, self.retention, PRUNE_BATCHES_PER_ROUND).await {
                Ok(pruned) if pruned.runs > 0 || pruned.revisions > 0 => tracing::info!(
                    runs = pruned.runs,
                    secrets = pruned.secrets,
                    revisions = pruned.revisions,
                    "pruned history"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(error = %format!("{error:#}"), "pruning failed"),
            }
            let jitter = rand::random::<u16>() as i64 % PRUNE_JITTER_MS;
            due.prune = now + PRUNE_INTERVAL + Duration::milliseconds(jitter);
        }
    }

    /// Recounts the pending-runs, enabled-schedules and schedules-by-health gauges. These are
    /// installation-wide counts (the schedule counts scan the schedules table), so with several
    /// workers only the owner of shard 0 counts; the others keep 0 (dashboards take the `max`).
    async fn refresh_gauges(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        if !self.shards.owns(0) {
            self.metrics.runs_pending.set(0);
            self.metrics.schedules_enabled.set(0);
            for state in crate::health::HealthState::ALL {
                self.metrics
                    .schedules_by_health
                    .with_label_values(&[state.as_str()])
                    .set(0);
            }
            return Ok(());
        }
        let pending = runs::count_due(&self.db, now).await?;
        // Every schedule but a paused one is enabled: one scan counts both gauges.
        let by_state = crate::health::count_by_state(&self.db).await?;
        let enabled = by_state
            .iter()
            .filter(|(state, _)| *state != crate::health::HealthState::Paused)
            .map(|(_, n)| n)
            .sum();
        self.metrics.runs_pending.set(pending);
        self.metrics.schedules_enabled.set(enabled);
        for (state, n) in by_state {
            self.metrics
                .schedules_by_health
                .with_label_values(&[state.as_str()])
                .set(n);
        }
        Ok(())
    }
}

//! The worker: the loop that materialises due schedules, claims due runs as far as it has free
//! delivery slots, delivers them concurrently and records the results.
//!
//! The loop sleeps until the earliest due instant (of a schedule or a run), woken earlier by a
//! [`Wakeup`] when the API changes something; `max_idle` bounds the sleep for changes that arrive
//! without a wake-up (another process on the same database). Database errors back off and retry;
//! nothing is lost, because the rows stay due until a pass succeeds.
//!
//! Shutdown: stop claiming, let in-flight deliveries finish until `shutdown_grace`, then drop the
//! rest: their leases expire and another worker delivers them again, with the same `webhook-id`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::{run, schedule, signing_secret};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, FromQueryResult, QueryFilter,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::claim::{self, AttemptRecord};
use crate::clock::Clock;
use crate::definition::{RetryPolicy, Target};
use crate::deliver::{AttemptResult, Deliverer, Delivery};
use crate::maintenance;
use crate::materialise::{self, Shards, SHARD_COUNT};
use crate::metrics::WorkerMetrics;
use crate::notify::Wakeup;
use crate::outcome;
use crate::politeness::{host_key, Limits, Reservation};
use crate::shards::{Coordinator, ShardConfig};
use crate::signing::SigningKey;
use crate::sql;
use crate::steps::{self, Steps};
use crate::stored;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in `runs.locked_by`; unique per process.
    pub worker_id: String,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Runs claimed per statement.
    pub claim_batch: usize,
    /// Schedules materialised per transaction.
    pub materialise_batch: u64,
    /// How long a claim is held. It must outlast the default delivery timeout (15 s) with room
    /// for recording the result; longer timeouts extend their own lease before sending.
    pub lease: Duration,
    /// The longest the loop sleeps without looking at the database.
    pub max_idle: Duration,
    /// How long in-flight deliveries may finish after shutdown begins.
    pub shutdown_grace: std::time::Duration,
    pub allow_private_targets: bool,
    /// Shard heartbeats and leases (PostgreSQL).
    pub shards: ShardConfig,
    /// How long finished runs are kept.
    pub retention: Duration,
    /// Deliveries in flight per tenant, in this worker.
    pub max_in_flight_per_tenant: usize,
    /// Deliveries in flight per target host (`host:port`), in this worker.
    pub max_in_flight_per_host: usize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            concurrency: 256,
            claim_batch: 100,
            materialise_batch: 500,
            lease: Duration::seconds(60),
            max_idle: Duration::seconds(1),
            shutdown_grace: std::time::Duration::from_secs(30),
            allow_private_targets: false,
            shards: ShardConfig::default(),
            retention: Duration::days(30),
            max_in_flight_per_tenant: 128,
            max_in_flight_per_host: 64,
        }
    }
}

/// `host-pid-random`: readable in `runs.locked_by`, unique across restarts.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// The earliest schedule fire, a `MIN` over `schedules_due_idx`.
const NEXT_SCHEDULE: &str =
    "SELECT MIN(next_run_at) AS due FROM schedules WHERE enabled AND next_run_at IS NOT NULL";
/// The same within owned shards: one probe of `schedules_shard_due_idx` per shard (PostgreSQL).
const NEXT_SCHEDULE_IN_SHARDS: &str =
    "SELECT MIN(d.due) AS due FROM unnest(ARRAY[{shards}]) AS s(shard) \
     CROSS JOIN LATERAL (SELECT next_run_at AS due FROM schedules \
         WHERE shard = s.shard AND enabled AND next_run_at IS NOT NULL \
         ORDER BY next_run_at LIMIT 1) d";
/// The earliest run due (including lease expiries), a `MIN` over `runs_claim_idx`.
const NEXT_RUN: &str =
    "SELECT MIN(due_at) AS due FROM runs WHERE status IN ('pending', 'retrying', 'delivering')";

/// Pauses a schedule whose target answered 410; a change like any other, so the version moves.
const PAUSE_GONE: &str = "UPDATE schedules SET enabled = false, paused_reason = $1, \
     updated_at = $2, version = version + 1 WHERE id = $3 AND enabled";

/// Slack a lease keeps beyond an attempt's timeout, for recording the result.
const LEASE_SLACK: Duration = Duration::seconds(30);
/// How often history is pruned, and how much at most per round (at most 100,000 runs a minute).
const PRUNE_INTERVAL: Duration = Duration::seconds(60);
const PRUNE_BATCHES_PER_ROUND: usize = 100;

/// How often the pending/enabled gauges are recounted.
const GAUGE_INTERVAL: Duration = Duration::seconds(15);

#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    deliverer: Deliverer,
    metrics: WorkerMetrics,
    wakeup: Wakeup,
    slots: Arc<Semaphore>,
    /// Shares the shards with other workers; `None` on SQLite, where one process owns them all.
    coordinator: Option<Coordinator>,
    owned: std::sync::RwLock<Vec<i32>>,
    /// Where the tenant rotation of fair claims stands.
    fairness_cursor: tokio::sync::Mutex<String>,
    limits: Arc<Limits>,
}

/// What a loop pass found, deciding how long the loop waits.
enum Pass {
    /// A batch was full: there may be more due right away.
    More,
    /// No delivery slot is free.
    Saturated,
    /// Some claimed runs went back because their tenant or host was at its limit.
    Limited,
    /// Everything due was handled.
    Idle,
}

/// The shortest wait of an idle loop, so rows another worker holds for an instant do not make
/// it spin.
const MIN_WAIT: Duration = Duration::milliseconds(10);

/// What one deterministic pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub runs_created: usize,
    pub attempts: usize,
}

/// A claimed run with everything its delivery needs.
struct Claimed {
    run: run::Model,
    schedule: Option<(Steps, RetryPolicy)>,
    keys: Vec<SigningKey>,
    /// Its place under the politeness limits, held until the delivery ends.
    reservation: Option<Reservation>,
}

/// The runs a claim kept, and whether a politeness limit sent some back.
#[derive(Default)]
struct Claim {
    runs: Vec<Claimed>,
    limited: bool,
}

/// How long the loop pauses after a politeness limit sent runs back.
const LIMITED_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// How long a run handed back over a politeness limit waits before it is due again.
const HAND_BACK_DELAY: Duration = Duration::milliseconds(500);

impl Worker {
    pub fn new(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
        metrics: WorkerMetrics,
        wakeup: Wakeup,
    ) -> anyhow::Result<Self> {
        let deliverer = Deliverer::new(config.allow_private_targets)?;
        let slots = Arc::new(Semaphore::new(config.concurrency));
        let coordinator = (db.get_database_backend() == sea_orm::DbBackend::Postgres).then(|| {
            Coordinator::new(
                db.clone(),
                config.worker_id.clone(),
                config.shards.clone(),
                clock.now(),
            )
        });
        if coordinator.is_none() {
            metrics.shards_owned.set(SHARD_COUNT as i64);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                clock,
                deliverer,
                metrics,
                wakeup,
                slots,
                coordinator,
                owned: std::sync::RwLock::new(Vec::new()),
                fairness_cursor: tokio::sync::Mutex::new(String::new()),
                limits: Limits::new(
                    config.max_in_flight_per_tenant,
                    config.max_in_flight_per_host,
                ),
                config,
            }),
        })
    }

    /// One deterministic pass at the clock's current time: materialise everything due, then
    /// claim and deliver every due run, waiting for the deliveries. Tests and tools drive the
    /// worker with this instead of the loop.
    pub async fn run_once(&self) -> anyhow::Result<PassReport> {
        self.heartbeat().await?;
        let now = self.inner.clock.now();
        let mut report = PassReport {
            runs_created: self.materialise_all(now).await?,
            ..PassReport::default()
        };
        loop {
            let claimed = self.claim(now, self.inner.config.claim_batch).await?.runs;
            if claimed.is_empty() {
                return Ok(report);
            }
            report.attempts += claimed.len();
            let deliveries = claimed.into_iter().map(|c| self.inner.clone().deliver(c));
            futures::future::join_all(deliveries).await;
        }
    }

    /// Renews this worker's registration and shards (PostgreSQL); returns the shards it owns.
    pub async fn heartbeat(&self) -> anyhow::Result<Vec<i32>> {
        let Some(coordinator) = &self.inner.coordinator else {
            return Ok((0..SHARD_COUNT as i32).collect());
        };
        let owned = coordinator.heartbeat(self.inner.clock.now()).await?;
        self.inner.metrics.shards_owned.set(owned.len() as i64);
        let mut current = self.inner.owned.write().expect("shard list lock poisoned");
        if *current != owned {
            tracing::info!(shards = owned.len(), "shards rebalanced");
            *current = owned.clone();
            // New shards may hold due schedules.
            self.inner.wakeup.wake();
        }
        Ok(owned)
    }

    /// Leaves the shard group at once (graceful shutdown); see [`Coordinator::leave`].
    pub async fn leave(&self) -> anyhow::Result<()> {
        if let Some(coordinator) = &self.inner.coordinator {
            coordinator.leave(self.inner.clock.now()).await?;
            self.inner
                .owned
                .write()
                .expect("shard list lock poisoned")
                .clear();
            self.inner.metrics.shards_owned.set(0);
        }
        Ok(())
    }

    async fn heartbeat_loop(self, cancel: CancellationToken) {
        let Some(coordinator) = &self.inner.coordinator else {
            return;
        };
        let every = coordinator
            .config()
            .heartbeat
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(2));
        while !cancel.is_cancelled() {
            if let Err(error) = self.heartbeat().await {
                tracing::warn!(error = %format!("{error:#}"), "shard heartbeat failed");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Materialises with this worker's shards.
    async fn materialise(&self, now: DateTime<Utc>) -> anyhow::Result<materialise::Report> {
        let inner = &self.inner;
        if inner.coordinator.is_none() {
            return materialise::materialise_due(
                &inner.db,
                now,
                inner.config.materialise_batch,
                Shards::All,
            )
            .await;
        }
        let owned = inner
            .owned
            .read()
            .expect("shard list lock poisoned")
            .clone();
        materialise::materialise_due(
            &inner.db,
            now,
            inner.config.materialise_batch,
            Shards::Owned(&owned),
        )
        .await
    }

    /// The worker loop, until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let beats = tokio::spawn(self.clone().heartbeat_loop(cancel.clone()));
        let inner = &self.inner;
        let mut in_flight = JoinSet::new();
        let mut failures = 0u32;
        let mut gauges_due = inner.clock.now();
        let mut prune_due = inner.clock.now();
        tracing::info!(worker_id = %inner.config.worker_id, "worker started");
        while !cancel.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            let now = inner.clock.now();
            if now >= gauges_due {
                if let Err(error) = self.refresh_gauges(now).await {
                    tracing::warn!(error = %format!("{error:#}"), "refreshing gauges failed");
                }
                gauges_due = now + GAUGE_INTERVAL;
            }
            if now >= prune_due {
                match maintenance::prune(
                    &inner.db,
                    now,
                    inner.config.retention,
                    PRUNE_BATCHES_PER_ROUND,
                )
                .await
                {
                    Ok(pruned) if pruned.runs > 0 => tracing::info!(
                        runs = pruned.runs,
                        secrets = pruned.secrets,
                        "pruned history"
                    ),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(error = %format!("{error:#}"), "pruning failed"),
                }
                // Jittered, so that workers started together do not prune together.
                prune_due = now
                    + PRUNE_INTERVAL
                    + Duration::milliseconds(rand::random::<u16>() as i64 % 10_000);
            }
            let wait = match self.pass(now, &mut in_flight).await {
                Ok(Pass::More) => {
                    failures = 0;
                    continue;
                }
                // Every slot is busy: a finishing delivery wakes the loop.
                Ok(Pass::Saturated) => {
                    failures = 0;
                    inner.config.max_idle
                }
                // A tenant or host is at its limit. Claiming again as each delivery ends would
                // mostly hand the same runs back, so pause briefly, deaf to wake-ups.
                Ok(Pass::Limited) => {
                    failures = 0;
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(LIMITED_PAUSE) => {}
                    }
                    continue;
                }
                Ok(Pass::Idle) => {
                    failures = 0;
                    match self.next_due().await {
                        // Something due that could not be claimed is locked by another worker
                        // for an instant; look again shortly rather than spin.
                        Ok(Some(due)) => {
                            (due - inner.clock.now()).clamp(MIN_WAIT, inner.config.max_idle)
                        }
                        Ok(None) => inner.config.max_idle,
                        Err(error) => {
                            tracing::warn!(error = %format!("{error:#}"), "reading the next due time failed");
                            inner.config.max_idle
                        }
                    }
                }
                Err(error) => {
                    failures += 1;
                    let backoff = Duration::milliseconds(100 * 2i64.pow(failures.min(8)));
                    tracing::warn!(error = %format!("{error:#}"), retry_in_ms = backoff.num_milliseconds(), "worker pass failed");
                    backoff
                }
            };
            let wait = wait.to_std().unwrap_or(std::time::Duration::ZERO);
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
                _ = inner.wakeup.woken() => {}
            }
        }

        tracing::info!(
            in_flight = in_flight.len(),
            "worker stopping: no new claims"
        );
        let drained = tokio::time::timeout(inner.config.shutdown_grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = in_flight.len(),
                "shutdown grace over; unfinished deliveries return to the queue when their leases expire"
            );
            in_flight.shutdown().await;
        }
        beats.await.ok();
        if let Err(error) = self.leave().await {
            tracing::warn!(error = %format!("{error:#}"), "leaving the shard group failed; the shards move when their leases expire");
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Materialises, then claims as many runs as there are free slots and spawns their
    /// deliveries.
    async fn pass(&self, now: DateTime<Utc>, in_flight: &mut JoinSet<()>) -> anyhow::Result<Pass> {
        let inner = &self.inner;
        let report = self.materialise(now).await?;
        let more_schedules = report.schedules as u64 == inner.config.materialise_batch;

        let free = inner
            .slots
            .available_permits()
            .min(inner.config.claim_batch);
        if free == 0 {
            return Ok(if more_schedules {
                Pass::More
            } else {
                Pass::Saturated
            });
        }
        let claim = self.claim(now, free).await?;
        let more_runs = claim.runs.len() == free;
        for claimed in claim.runs {
            let permit: OwnedSemaphorePermit = inner
                .slots
                .clone()
                .try_acquire_owned()
                .context("a delivery slot counted as free was taken")?;
            let inner = inner.clone();
            in_flight.spawn(async move {
                inner.clone().deliver(claimed).await;
                drop(permit);
                // A slot came free: there may be due runs that did not fit before.
                inner.wakeup.wake();
            });
        }
        Ok(if more_schedules || more_runs {
            Pass::More
        } else if claim.limited {
            Pass::Limited
        } else {
            Pass::Idle
        })
    }

    async fn materialise_all(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let inner = &self.inner;
        let mut created = 0;
        loop {
            let report = self.materialise(now).await?;
            created += report.runs_created;
            if (report.schedules as u64) < inner.config.materialise_batch {
                return Ok(created);
            }
        }
    }

    /// Claims up to `limit` due runs and loads what their deliveries need, in two queries.
    async fn claim(&self, now: DateTime<Utc>, limit: usize) -> anyhow::Result<Claim> {
        let inner = &self.inner;
        let lease_until = now + inner.config.lease;
        // One process on SQLite serves its tenants oldest-first; PostgreSQL shares each batch
        // out among the tenants with due runs.
        let runs = if inner.coordinator.is_some() {
            let mut cursor = inner.fairness_cursor.lock().await;
            claim::claim_fair(
                &inner.db,
                &inner.config.worker_id,
                now,
                lease_until,
                limit,
                &mut cursor,
            )
            .await?
        } else {
            claim::claim(&inner.db, &inner.config.worker_id, now, lease_until, limit).await?
        };
        if runs.is_empty() {
            return Ok(Claim::default());
        }
        let schedule_ids: HashSet<_> = runs.iter().map(|r| r.schedule_id).collect();
        let schedules: HashMap<_, _> = schedule::Entity::find()
            .filter(schedule::Column::Id.is_in(schedule_ids))
            .all(&inner.db)
            .await
            .context("loading schedules of claimed runs")?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let tenants: HashSet<_> = runs.iter().map(|r| r.tenant_id.clone()).collect();
        let mut keys: HashMap<String, Vec<SigningKey>> = HashMap::new();
        for secret in signing_secret::Entity::find()
            .filter(signing_secret::Column::TenantId.is_in(tenants))
            .filter(
                sea_orm::Condition::any()
                    .add(signing_secret::Column::ExpiresAt.is_null())
                    .add(signing_secret::Column::ExpiresAt.gt(now)),
            )
            .all(&inner.db)
            .await
            .context("loading signing secrets")?
        {
            match SigningKey::from_secret(&secret.secret) {
                Ok(key) => keys.entry(secret.tenant_id).or_default().push(key),
                Err(error) => {
                    tracing::error!(tenant_id = %secret.tenant_id, %error, "unreadable signing secret")
                }
            }
        }
        let claimed: Vec<Claimed> = runs
            .into_iter()
            .map(|run| {
                let schedule = schedules.get(&run.schedule_id).and_then(|s| {
                    match (stored::steps(s), stored::retry(s)) {
                        (Ok(target), Ok(retry)) => Some((target, retry)),
                        (Err(error), _) | (_, Err(error)) => {
                            tracing::error!(schedule_id = %s.id, error = %format!("{error:#}"), "unreadable schedule");
                            None
                        }
                    }
                });
                let keys = keys.get(&run.tenant_id).cloned().unwrap_or_default();
                Claimed { run, schedule, keys, reservation: None }
            })
            .collect();
        self.within_limits(claimed, now).await
    }

    /// Keeps the claimed runs that fit under the politeness limits and hands the rest back.
    async fn within_limits(
        &self,
        claimed: Vec<Claimed>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim> {
        let mut kept = Vec::with_capacity(claimed.len());
        let mut handed_back = Vec::new();
        for mut claimed in claimed {
            let Some(target) = claimed
                .schedule
                .as_ref()
                .and_then(|(steps, _)| steps.target_of(&claimed.run))
            else {
                kept.push(claimed);
                continue;
            };
            match self
                .inner
                .limits
                .try_reserve(&claimed.run.tenant_id, &host_key(&target.url))
            {
                Some(reservation) => {
                    claimed.reservation = Some(reservation);
                    kept.push(claimed);
                }
                None => handed_back.push(claimed.run.id),
            }
        }
        if !handed_back.is_empty() {
            tracing::debug!(
                runs = handed_back.len(),
                "handed back over a politeness limit"
            );
            claim::hand_back(
                &self.inner.db,
                &self.inner.config.worker_id,
                &handed_back,
                now + HAND_BACK_DELAY,
                now,
            )
            .await?;
        }
        Ok(Claim {
            runs: kept,
            limited: !handed_back.is_empty(),
        })
    }

    /// The earliest instant at which one of this worker's schedules or any run becomes due.
    async fn next_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        #[derive(FromQueryResult)]
        struct Due {
            due: Option<DateTime<Utc>>,
        }
        let db = &self.inner.db;
        let backend = db.get_database_backend();
        let schedules = match &self.inner.coordinator {
            None => NEXT_SCHEDULE.to_owned(),
            Some(_) => {
                let owned = self
                    .inner
                    .owned
                    .read()
                    .expect("shard list lock poisoned")
                    .clone();
                if owned.is_empty() {
                    String::new()
                } else {
                    let list: Vec<String> = owned.iter().map(i32::to_string).collect();
                    NEXT_SCHEDULE_IN_SHARDS.replace("{shards}", &list.join(", "))
                }
            }
        };
        let mut earliest = None;
        for query in [schedules.as_str(), NEXT_RUN] {
            if query.is_empty() {
                continue;
            }
            let row = Due::find_by_statement(sql::statement(backend, query, vec![]))
                .one(db)
                .await
                .context("reading the next due time")?;
            if let Some(due) = row.and_then(|r| r.due) {
                earliest = Some(earliest.map_or(due, |e: DateTime<Utc>| e.min(due)));
            }
        }
        Ok(earliest)
    }

    async fn refresh_gauges(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        #[derive(FromQueryResult)]
        struct Count {
            n: i64,
        }
        let db = &self.inner.db;
        let backend = db.get_database_backend();
        let count = |query: &'static str, values: Vec<sea_orm::Value>| async move {
            Count::find_by_statement(sql::statement(backend, query, values))
                .one(db)
                .await
                .map(|row| row.map_or(0, |r| r.n))
        };
        let pending = count(
            "SELECT COUNT(*) AS n FROM runs WHERE status IN ('pending', 'retrying', 'delivering') AND due_at <= $1",
            vec![now.into()],
        )
        .await
        .context("counting pending runs")?;
        let enabled = count("SELECT COUNT(*) AS n FROM schedules WHERE enabled", vec![])
            .await
            .context("counting enabled schedules")?;
        self.inner.metrics.runs_pending.set(pending);
        self.inner.metrics.schedules_enabled.set(enabled);
        Ok(())
    }
}

impl Inner {
    /// Delivers one claimed run and records the result. Never fails: a write-back that cannot be
    /// made leaves the run to its lease, and it is delivered again.
    async fn deliver(self: Arc<Self>, mut claimed: Claimed) {
        // The politeness limits count requests in flight to the receiver, not the bookkeeping
        // around them: the place is given back as soon as the answer is in.
        let reservation = claimed.reservation.take();
        let run = &claimed.run;
        let span = tracing::info_span!(
            "run",
            tenant_id = %run.tenant_id,
            schedule_id = %run.schedule_id,
            run_id = %run.id,
            attempt = run.attempts,
        );
        async {
            let started_at = self.clock.now();
            if run.attempts == 1 && run.step == 0 && run.retry_base == 0 {
                let lag = (started_at - run.scheduled_for)
                    .num_microseconds()
                    .unwrap_or(i64::MAX);
                self.metrics.fire_lag.observe((lag.max(0) as f64) / 1e6);
            }
            let (result, retry_policy) = match &claimed.schedule {
                None => (
                    unsent("the schedule could not be read; see the server log"),
                    RetryPolicy {
                        max_attempts: 1,
                        ..RetryPolicy::default()
                    },
                ),
                Some(_) if claimed.keys.is_empty() => (
                    unsent("the tenant has no signing secret"),
                    RetryPolicy {
                        max_attempts: 1,
                        ..RetryPolicy::default()
                    },
                ),
                Some((steps, retry_policy)) => {
                    let Some(target) = steps.target_of(run) else {
                        return self
                            .record(
                                run,
                                unsent("the schedule has no such step any more"),
                                RetryPolicy {
                                    max_attempts: 1,
                                    ..RetryPolicy::default()
                                },
                                None,
                                started_at,
                            )
                            .await;
                    };
                    let target = &target;
                    self.hold_lease_for(run, target, started_at).await;
                    let delivery = Delivery {
                        webhook_id: steps::webhook_id(run.id, run.step),
                        schedule_id: run.schedule_id,
                        scheduled_for: run.scheduled_for,
                        attempt: run.attempts,
                        target,
                        keys: &claimed.keys,
                    };
                    (
                        self.deliverer.deliver(&delivery, started_at).await,
                        retry_policy.clone(),
                    )
                }
            };
            drop(reservation);
            let steps = claimed.schedule.as_ref().map(|(steps, _)| steps);
            self.record(run, result, retry_policy, steps, started_at)
                .await;
        }
        .instrument(span)
        .await
    }

    /// Records an attempt's result: history, metrics, the run's next state, and the schedule's
    /// pause after a 410.
    async fn record(
        &self,
        run: &run::Model,
        result: AttemptResult,
        retry_policy: RetryPolicy,
        steps: Option<&Steps>,
        started_at: DateTime<Utc>,
    ) {
        let finished_at = self.clock.now();
        let (outcome, update) = outcome::decide(run, &retry_policy, steps, &result, finished_at);
        self.metrics.deliveries.with_label_values(&[outcome]).inc();
        self.metrics
            .delivery_duration
            .observe(result.duration.as_secs_f64());
        let record = AttemptRecord {
            started_at,
            duration_ms: result.duration.as_millis() as i64,
            outcome,
            status_code: result.status.map(i32::from),
            error: result.error.clone(),
            response_excerpt: result.excerpt.clone(),
        };
        if result.status == Some(410) {
            self.pause_gone(run, finished_at).await;
        }
        match claim::finish_attempt(
            &self.db,
            &self.config.worker_id,
            run,
            &record,
            &update,
            finished_at,
        )
        .await
        {
            // Successes are the bulk of the traffic: debug. Failures are what operators read.
            Ok(true) if outcome == "success" => {
                tracing::debug!(status = ?result.status, "delivered")
            }
            Ok(true) => {
                tracing::info!(outcome, status = ?result.status, error = ?result.error, "attempt failed")
            }
            Ok(false) => tracing::warn!(
                "lease lost before the result was recorded; the run belongs to another worker now"
            ),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "recording the attempt failed; the run will be delivered again when its lease expires")
            }
        }
    }

    /// 410 Gone: the receiver says this endpoint is gone for good, so the schedule is paused
    /// (with the reason) instead of firing into the void until someone notices.
    async fn pause_gone(&self, run: &run::Model, now: DateTime<Utc>) {
        let reason = format!(
            "paused at {}: the target answered 410 Gone; resume the schedule to deliver again",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let statement = sql::statement(
            self.db.get_database_backend(),
            PAUSE_GONE,
            vec![reason.into(), now.into(), run.schedule_id.into()],
        );
        match self.db.execute(statement).await {
            Ok(_) => {
                tracing::warn!(schedule_id = %run.schedule_id, "target answered 410 Gone; schedule paused")
            }
            Err(error) => tracing::error!(%error, "pausing a schedule after 410 Gone failed"),
        }
    }

    /// Extends the lease when this attempt's timeout would outlast it.
    async fn hold_lease_for(&self, run: &run::Model, target: &Target, now: DateTime<Utc>) {
        let needed = Duration::milliseconds(target.timeout_ms) + LEASE_SLACK;
        if needed > self.config.lease {
            if let Err(error) =
                claim::extend_lease(&self.db, &self.config.worker_id, run, now + needed).await
            {
                tracing::warn!(error = %format!("{error:#}"), "extending the lease failed");
            }
        }
    }
}

fn unsent(error: &str) -> AttemptResult {
    AttemptResult {
        duration: std::time::Duration::ZERO,
        status: None,
        error: Some(error.to_owned()),
        excerpt: None,
        retry_after: None,
    }
}

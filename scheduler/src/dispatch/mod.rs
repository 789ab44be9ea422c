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

mod attempt;
mod intake;
mod upkeep;
mod write_back;

use intake::{Claim, Claimed};
use write_back::WriteBack;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
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
use uuid::Uuid;

use crate::claim::{self, AttemptRecord};
use crate::clock::Clock;
use crate::definition::{RetryPolicy, Target};
use crate::deliver::{AttemptResult, Deliverer, Delivery};
use crate::maintenance;
use crate::materialise::{self, Shards, SHARD_COUNT};
use crate::metrics::WorkerMetrics;
use crate::notify::Wakeup;
use crate::outcome;
use crate::politeness::{host_key, AtLimit, Limits, Reservation, AT_LIMIT_WAIT};
use crate::sealing::{Row, Sealer};
use crate::shards::{Coordinator, ShardConfig};
use crate::signing::SigningKey;
use crate::sql;
use crate::steps::{self, Steps};
use crate::stored;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in `runs.locked_by`; unique per process.
    pub worker_id: String,
    /// Requests in flight at once. A delivery holds its slot until the receiver's answer is in;
    /// recording the result does not hold it (see [`UNRECORDED_PER_SLOT`]).
    pub concurrency: usize,
    /// Runs claimed per statement, and fires leased per materialise batch. As many as the
    /// delivery slots by default: with 100, a pass under load could not refill the slots that
    /// had come free while it ran, and throughput stopped short of what the database allowed.
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
    /// Opens the signing secrets the worker loads (`app::build` gives it the API's keys).
    pub sealer: Sealer,
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
            claim_batch: 256,
            materialise_batch: 500,
            lease: Duration::seconds(60),
            max_idle: Duration::seconds(1),
            shutdown_grace: std::time::Duration::from_secs(30),
            allow_private_targets: false,
            sealer: Sealer::plaintext(),
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

/// How often history is pruned, and how much at most per round (at most 100,000 runs a minute).
const PRUNE_INTERVAL: Duration = Duration::seconds(60);
const PRUNE_BATCHES_PER_ROUND: usize = 100;

/// How often the pending/enabled gauges are recounted (a table scan at a million schedules).
const GAUGE_INTERVAL: Duration = Duration::seconds(60);

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
    /// Requests in flight: a slot is held from the claim until the receiver has answered.
    slots: Arc<Semaphore>,
    /// Results not yet recorded: held from the claim until the write-back commits.
    unrecorded: Arc<Semaphore>,
    /// Shares the shards with other workers; `None` on SQLite, where one process owns them all.
    coordinator: Option<Coordinator>,
    owned: std::sync::RwLock<Vec<i32>>,
    /// Where the tenant rotation of fair claims stands.
    rotation: tokio::sync::Mutex<claim::Rotation>,
    limits: Arc<Limits>,
    write_back: WriteBack,
    /// When this worker last renewed its shards (PostgreSQL); `None` before it joined and
    /// after it left.
    last_heartbeat: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// Whether the last materialise made runs: fires are coming due, and the next pass keeps
    /// half its slots for them even while runs wait.
    fires_coming: std::sync::atomic::AtomicBool,
    /// The most runs the next claim (or lease at creation) takes: what the politeness limits let
    /// the last one keep, growing back towards `claim_batch` by a quarter while nothing is handed
    /// back. Claiming more than the limits allow only hands runs back, a write each way.
    take_at_most: std::sync::atomic::AtomicUsize,
    /// When this worker last looked for expired leases (see [`Inner::rescue_due`]).
    rescued_at: std::sync::Mutex<Option<DateTime<Utc>>>,
    /// The tenants and hosts that lately refused runs for being at their limit.
    at_limit: std::sync::Mutex<AtLimit>,
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

/// Results awaiting their write-back per delivery slot. A request's slot comes free as soon as
/// its answer is in, so the next request need not wait for the bookkeeping of the last: when a
/// slot was held through the write-back as well, a database slowed for a moment by other work
/// kept the slots full, fires due meanwhile could not be leased as they were made, and the worker
/// fell behind by up to a second. This bounds how far deliveries run ahead of the database.
const UNRECORDED_PER_SLOT: usize = 4;

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
        let unrecorded = Arc::new(Semaphore::new(config.concurrency * UNRECORDED_PER_SLOT));
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
                write_back: WriteBack::start(
                    db.clone(),
                    config.worker_id.clone(),
                    clock.clone(),
                    metrics.write_back_failures.clone(),
                ),
                db,
                clock,
                deliverer,
                metrics,
                wakeup,
                slots,
                unrecorded,
                coordinator,
                owned: std::sync::RwLock::new(Vec::new()),
                last_heartbeat: std::sync::Mutex::new(None),
                fires_coming: Default::default(),
                take_at_most: std::sync::atomic::AtomicUsize::new(config.claim_batch),
                rescued_at: std::sync::Mutex::new(None),
                at_limit: Default::default(),
                rotation: Default::default(),
                limits: Limits::sharing(
                    config.max_in_flight_per_tenant,
                    config.max_in_flight_per_host,
                    config.concurrency,
                ),
                config,
            }),
        })
    }

    /// Passes at the clock's current time, as the loop makes them, until nothing due is left,
    /// waiting for each pass's deliveries. Tests and tools drive the worker with this instead of
    /// the loop, so that what they check is what the loop does.
    pub async fn run_once(&self) -> anyhow::Result<PassReport> {
        self.heartbeat().await?;
        let now = self.inner.clock.now();
        let mut report = PassReport::default();
        loop {
            let mut in_flight = JoinSet::new();
            let (pass, done) = self.pass(now, &mut in_flight).await?;
            report.runs_created += done.runs_created;
            report.attempts += done.attempts;
            while in_flight.join_next().await.is_some() {}
            // A delivery can make more due at once (the next step of a chain).
            if !matches!(pass, Pass::More) && done.attempts == 0 {
                return Ok(report);
            }
        }
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
            let wait = match self.pass(now, &mut in_flight).await.map(|(pass, _)| pass) {
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
                // mostly hand the same runs back, so wait, deaf to wake-ups, until one has half
                // its places free, or for as long as claims are held back for it at most.
                Ok(Pass::Limited) => {
                    failures = 0;
                    let pause = AT_LIMIT_WAIT.to_std().unwrap_or_default();
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                        _ = inner.limits.eased() => {}
                    }
                    continue;
                }
                // Fires came due in this pass: under load the next are due within the shortest
                // wait, and asking the database when would cost more than a pass that finds
                // nothing (an index probe per owned shard, at every pass).
                Ok(Pass::Idle) if inner.fires_coming.load(Ordering::Relaxed) => {
                    failures = 0;
                    MIN_WAIT
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
            let source = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => "timer",
                _ = inner.wakeup.woken() => "early",
            };
            inner.metrics.wakeups.with_label_values(&[source]).inc();
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

    /// Claims waiting runs into the free slots, then materialises due schedules, leasing the
    /// fires that are due at once to the slots the claim left, and spawns the deliveries.
    ///
    /// Runs already waiting come first: when nothing else is coming due, the claim may take
    /// every free slot, and fires are leased as they are made only if it did not. But while fires
    /// keep coming due (the last materialise made some), half the free slots are kept for them
    /// even if runs wait. A fire leased as it is made costs one write less than a claimed one;
    /// were every fire to queue behind a backlog, the worker would deliver fewer per second just
    /// when it has fallen behind, and a burst could leave it behind for good. The claim's half
    /// keeps the backlog draining, fairly across tenants, oldest first.
    async fn pass(
        &self,
        now: DateTime<Utc>,
        in_flight: &mut JoinSet<()>,
    ) -> anyhow::Result<(Pass, PassReport)> {
        let inner = &self.inner;
        let take_at_most = inner.take_at_most.load(Ordering::Relaxed);
        let slots = inner.free_slots().min(take_at_most);
        let places = inner.claim_bound(now);
        let free = slots.min(places.unwrap_or(usize::MAX));
        let kept_for_fires = if inner.fires_coming.load(Ordering::Relaxed) {
            free / 2
        } else {
            0
        };
        let claim_limit = free - kept_for_fires;
        let claim = if claim_limit == 0 {
            Claim::default()
        } else {
            self.claim(now, claim_limit).await?
        };
        let more_runs = claim_limit > 0 && claim.runs.len() == claim_limit;
        let waiting = claim_limit == 0 || claim.claimed == claim_limit;
        // Waiting for a tenant or host at its limit to have places free counts as limited.
        let mut limited = claim.limited || places == Some(0);
        let mut attempts = claim.runs.len();
        self.spawn_deliveries(claim.runs, in_flight)?;

        let available = inner
            .free_slots()
            .min(take_at_most)
            .min(inner.claim_bound(now).unwrap_or(usize::MAX));
        let offer = if waiting {
            kept_for_fires.min(available)
        } else {
            available
        };
        let made = self.materialise(now, offer).await?;
        inner
            .fires_coming
            .store(made.report.runs_created > 0, Ordering::Relaxed);
        let more_schedules = made.report.schedules as u64 == inner.config.materialise_batch;
        // Runs made but not leased wait for a claim, at once if they are due.
        let more_made = made.report.runs_created > made.leased.len();
        let leased = self.take_in(made.leased, &made.schedules, now).await?;
        limited |= leased.limited;
        attempts += leased.runs.len();
        self.spawn_deliveries(leased.runs, in_flight)?;

        let pass = if more_schedules || more_runs || more_made {
            Pass::More
        } else if slots == 0 {
            Pass::Saturated
        } else if limited {
            Pass::Limited
        } else {
            Pass::Idle
        };
        let report = PassReport {
            runs_created: made.report.runs_created,
            attempts,
        };
        Ok((pass, report))
    }

    /// Starts the deliveries of runs taken in, each holding a delivery slot until its request is
    /// answered and a place among the unrecorded results until its write-back commits.
    fn spawn_deliveries(
        &self,
        runs: Vec<Claimed>,
        in_flight: &mut JoinSet<()>,
    ) -> anyhow::Result<()> {
        for claimed in runs {
            let slot: OwnedSemaphorePermit = self
                .inner
                .slots
                .clone()
                .try_acquire_owned()
                .context("a delivery slot counted as free was taken")?;
            let unrecorded: OwnedSemaphorePermit = self
                .inner
                .unrecorded
                .clone()
                .try_acquire_owned()
                .context("a place for a result counted as free was taken")?;
            let inner = self.inner.clone();
            in_flight.spawn(async move {
                inner.clone().deliver(claimed, slot).await;
                drop(unrecorded);
                // A place came free: there may be due runs that did not fit before.
                inner.wakeup.wake();
            });
        }
        Ok(())
    }
}

impl Inner {
    /// How many runs the next claim may take under the politeness limits (see [`AtLimit`]).
    fn claim_bound(&self, now: DateTime<Utc>) -> Option<usize> {
        self.at_limit
            .lock()
            .expect("at-limit lock poisoned")
            .bound(&self.limits, now)
    }

    /// How many deliveries could start now: free slots, as far as the unrecorded results allow.
    fn free_slots(&self) -> usize {
        self.slots
            .available_permits()
            .min(self.unrecorded.available_permits())
    }
}

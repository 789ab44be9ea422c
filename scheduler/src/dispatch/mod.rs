//! The worker: the loop that claims due runs as far as it has room, materialises due schedules,
//! delivers concurrently and records the results. Its parts: [`admission`] (how much it may
//! take in), [`intake`] (claims and what deliveries need), [`waiting`] (leased runs kept until
//! they have a place and a slot), [`attempt`] (send, decide, record), [`write_back`] (results
//! in groups), the shard view (`crate::shards`), and beside the loop the
//! [`stall`] watch, the [`notices`] sender and the maintenance loop (`crate::maintenance`).
//!
//! The loop sleeps until the earliest due instant (of a schedule or a run), woken earlier by a
//! [`Wakeup`] when the API changes something; `max_idle` bounds the sleep for changes that arrive
//! without a wake-up (another process on the same database). Database errors back off and retry;
//! nothing is lost, because the rows stay due until a pass succeeds.
//!
//! Shutdown: stop claiming, let in-flight deliveries finish until `shutdown_grace`, then drop the
//! rest: their leases expire and another worker delivers them again, with the same `webhook-id`.

mod admission;
mod attempt;
mod config;
mod intake;
mod notices;
mod stall;
mod waiting;
mod write_back;

pub use config::{default_worker_id, WorkerConfig};

use std::sync::Arc;

use sea_orm::ConnectionTrait;

use chrono::{DateTime, Duration, Utc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use admission::{Admission, Admitted, Budget};
use attempt::Attempts;
use intake::{Claimed, Intake};
use waiting::{Waiting, WaitingRoom};
use write_back::WriteBack;

use crate::clock::Clock;
use crate::deliver::Deliverer;
use crate::maintenance::Maintenance;
use crate::materialise;
use crate::metrics::WorkerMetrics;
use crate::notify::Wakeup;
use crate::politeness::AT_LIMIT_WAIT;
use crate::runs::{self, Lease};
use crate::shards::ShardView;
use crate::skips::SkipReason;

#[derive(Clone)]
pub struct Worker {
    parts: Arc<Parts>,
}

struct Parts {
    db: sea_orm::DatabaseConnection,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    admission: Admission,
    shards: Arc<ShardView>,
    intake: Intake,
    /// Runs still leased to this worker that a limit refused, or that were leased as they were
    /// made beyond the free slots, until they have a place and a slot.
    waiting: WaitingRoom<Claimed>,
    attempts: Arc<Attempts>,
    metrics: WorkerMetrics,
    wakeup: Wakeup,
    /// Told when this worker's write-backs issued notices.
    notices_issued: Arc<tokio::sync::Notify>,
}

/// What a loop pass found, deciding how long the loop waits.
enum Pass {
    /// A batch was full: there may be more due right away.
    More,
    /// No delivery slot is free.
    Saturated,
    /// Runs wait in the worker for a slot.
    NoSlot,
    /// Runs wait in the worker, or were held back, because their tenant or host was at its
    /// limit.
    Limited,
    /// Everything due was handled.
    Idle,
}

/// The shortest wait of an idle loop, so rows another worker holds for an instant do not make
/// it spin.
const MIN_WAIT: Duration = Duration::milliseconds(10);

/// How long a stopping worker tries to hand its shards and runs over before it leaves them to
/// their leases.
const LEAVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The longest a refused run waits in the worker for a place, and the most a lease may lose
/// to it: the run must still have most of its lease for the attempt when it starts.
const HOLD_LIMIT: Duration = Duration::seconds(5);

/// Runs that may wait in the worker for a place, per delivery slot: a second's fires for one
/// receiving host, claimed or leased as they are made, go as its places come free.
const WAITING_PER_SLOT: usize = 4;

/// What one deterministic pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub runs_created: usize,
    pub attempts: usize,
    /// Attempts at delivering notices.
    pub notices: usize,
}

/// What taking runs in gave: how many were taken (kept or handed back), whether a limit
/// refused some, and whether some found no free slot.
struct Taken {
    taken: usize,
    kept: usize,
    limited: bool,
    no_slot: bool,
}

impl Worker {
    pub fn new(
        db: sea_orm::DatabaseConnection,
        clock: Arc<dyn Clock>,
        config: WorkerConfig,
        metrics: WorkerMetrics,
        wakeup: Wakeup,
    ) -> anyhow::Result<Self> {
        let coordinated = db.get_database_backend() == sea_orm::DbBackend::Postgres;
        let shards = Arc::new(ShardView::new(
            db.clone(),
            config.worker_id.clone(),
            config.shards.clone(),
            coordinated,
            clock.now(),
        ));
        if !coordinated {
            metrics.shards_owned.set(crate::shards::SHARD_COUNT as i64);
        }
        let admission = Admission::new(
            config.concurrency,
            config.claim_batch,
            config.max_in_flight_per_tenant,
            config.max_in_flight_per_host,
        );
        let intake = Intake::new(db.clone(), &config, metrics.clone());
        let waiting = WaitingRoom::new(
            config.concurrency * WAITING_PER_SLOT,
            HOLD_LIMIT.min(config.lease / 4),
        );
        let notices_issued = Arc::new(tokio::sync::Notify::new());
        let attempts = Arc::new(Attempts {
            db: db.clone(),
            clock: clock.clone(),
            worker_id: config.worker_id.clone(),
            lease: config.lease,
            deliverer: Deliverer::new(config.allow_private_targets)?,
            write_back: WriteBack::start(
                db.clone(),
                config.worker_id.clone(),
                clock.clone(),
                metrics.clone(),
                notices_issued.clone(),
            ),
            metrics: metrics.clone(),
            wakeup: wakeup.clone(),
        });
        Ok(Self {
            parts: Arc::new(Parts {
                db,
                clock,
                config,
                admission,
                shards,
                intake,
                waiting,
                attempts,
                metrics,
                wakeup,
                notices_issued,
            }),
        })
    }

    /// Passes at the clock's current time, as the loop makes them, until nothing due is left,
    /// waiting for each pass's deliveries. Tests and tools drive the worker with this instead of
    /// the loop, so that what they check is what the loop does.
    pub async fn run_once(&self) -> anyhow::Result<PassReport> {
        self.heartbeat().await?;
        let now = self.parts.clock.now();
        let mut report = PassReport::default();
        loop {
            let mut in_flight = JoinSet::new();
            let (pass, done) = self.pass(now, &mut in_flight).await?;
            report.runs_created += done.runs_created;
            report.attempts += done.attempts;
            while in_flight.join_next().await.is_some() {}
            // A delivery can make more due at once (the next step of a chain).
            if !matches!(pass, Pass::More) && done.attempts == 0 {
                self.hand_back_waiting(now).await?;
                report.notices = self.send_notices(None).await?;
                return Ok(report);
            }
        }
    }

    /// The worker loop, until `cancel` fires; the heartbeat and maintenance loops run beside it.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let parts = &self.parts;
        let beats = tokio::spawn(self.clone().heartbeat_loop(cancel.clone()));
        let maintenance = tokio::spawn(
            Maintenance {
                db: parts.db.clone(),
                clock: parts.clock.clone(),
                retention: parts.config.retention,
                shards: parts.shards.clone(),
                metrics: parts.metrics.clone(),
            }
            .run(cancel.clone()),
        );
        let stalls = tokio::spawn(self.clone().watch_for_stalls(cancel.clone()));
        let notices = tokio::spawn(self.clone().notice_loop(cancel.clone()));
        let mut in_flight = JoinSet::new();
        let mut failures = 0u32;
        tracing::info!(worker_id = %parts.config.worker_id, "worker started");
        while !cancel.is_cancelled() {
            while in_flight.try_join_next().is_some() {}
            let now = parts.clock.now();
            // A pass waiting on the database (a lock, a primary gone) must not keep the worker
            // from stopping: what it held returns to the queue as if the worker had died.
            let Some(pass) = cancel
                .run_until_cancelled(self.pass(now, &mut in_flight))
                .await
            else {
                break;
            };
            let pass = pass.map(|(pass, _)| pass);
            if pass.is_ok() {
                failures = 0;
            }
            let wait = match pass {
                Ok(Pass::More) => continue,
                // Every slot is busy: a finishing delivery wakes the loop.
                Ok(Pass::Saturated) => parts.config.max_idle,
                // Runs wait in the worker for a slot: look again shortly, deaf to wake-ups. A
                // pass at every finishing delivery would cost a due-schedule select each, and
                // sleeping as for a place limit would leave slots idle for up to 50 ms.
                Ok(Pass::NoSlot) => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(MIN_WAIT.to_std().unwrap_or_default()) => {}
                    }
                    continue;
                }
                // A tenant or host is at its limit. Claiming again as each delivery ends would
                // mostly hand the same runs back: see `serve_waiting`.
                Ok(Pass::Limited) => {
                    let served = self.serve_waiting(&mut in_flight);
                    if cancel.run_until_cancelled(served).await.is_none() {
                        break;
                    }
                    continue;
                }
                // Fires came due in this pass: under load the next are due within the shortest
                // wait, and asking the database when would cost more than a pass that finds
                // nothing (an index probe per owned shard, at every pass).
                Ok(Pass::Idle) if parts.admission.fires_coming() => MIN_WAIT,
                Ok(Pass::Idle) => self.idle_wait().await,
                Err(error) => {
                    failures += 1;
                    let backoff = Duration::milliseconds(100 * 2i64.pow(failures.min(8)));
                    tracing::warn!(error = %format!("{error:#}"), retry_in_ms = backoff.num_milliseconds(), "worker pass failed");
                    backoff
                }
            };
            let looks_again = parts.clock.now() + wait;
            let wait = wait.to_std().unwrap_or(std::time::Duration::ZERO);
            let source = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => "timer",
                _ = parts.wakeup.woken(looks_again) => "early",
            };
            parts.metrics.wakeups.with_label_values(&[source]).inc();
        }

        tracing::info!(
            in_flight = in_flight.len(),
            "worker stopping: no new claims"
        );
        let drained = tokio::time::timeout(parts.config.shutdown_grace, async {
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
        maintenance.await.ok();
        stalls.await.ok();
        notices.await.ok();
        let leave = async {
            self.hand_back_waiting(parts.clock.now()).await?;
            self.leave().await
        };
        match tokio::time::timeout(LEAVE_LIMIT, leave).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %format!("{error:#}"), "leaving the shard group failed; the shards move when their leases expire")
            }
            Err(_) => tracing::warn!(
                "leaving the shard group took too long (the database is not answering); the shards move when their leases expire"
            ),
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    /// One pass: claim waiting runs into the room the budget gives, then materialise due
    /// schedules, leasing the fires due at once to the room left, and start the deliveries.
    async fn pass(
        &self,
        now: DateTime<Utc>,
        in_flight: &mut JoinSet<()>,
    ) -> anyhow::Result<(Pass, PassReport)> {
        let parts = &self.parts;
        let waited = self.admit_waiting(now, in_flight).await?;
        let budget = parts.admission.budget(now);
        let claimed = self.claim(&budget, now).await?;
        let claimed_taken = self.admit(claimed, now, in_flight).await?;

        let offer = parts.admission.offer(&budget, claimed_taken.taken, now);
        let made = self.materialise(now, offer).await?;
        parts.admission.fires_made(made.report.runs_created);
        for (reason, fires) in SkipReason::ALL.iter().zip(made.report.skipped) {
            if fires > 0 {
                parts
                    .metrics
                    .fires_skipped
                    .with_label_values(&[reason.as_str()])
                    .inc_by(fires);
            }
        }
        // Runs made but not leased wait for a claim, at once if they are due.
        let more_made = made.report.runs_created > made.leased.len();
        let leased = parts
            .intake
            .take_in(made.leased, &made.schedules, now)
            .await?;
        let leased_taken = self.admit(leased, now, in_flight).await?;

        let more_runs = budget.claim > 0 && claimed_taken.kept == budget.claim;
        let more_schedules = made.report.schedules as u64 == parts.config.materialise_batch;
        let pass = if more_schedules || more_runs || more_made {
            Pass::More
        } else if waited.no_slot || claimed_taken.no_slot || leased_taken.no_slot {
            Pass::NoSlot
        } else if budget.slots == 0 {
            Pass::Saturated
        } else if parts.waiting.len() > 0 {
            // Runs wait in the worker for a place, which no due time in the database shows:
            // look again as soon as a limit eases, and within the short pause in any case.
            Pass::Limited
        } else if claimed_taken.limited
            || leased_taken.limited
            || waited.limited
            || budget.held_back
        {
            Pass::Limited
        } else {
            Pass::Idle
        };
        let report = PassReport {
            runs_created: made.report.runs_created,
            attempts: waited.kept + claimed_taken.kept + leased_taken.kept,
            notices: 0,
        };
        Ok((pass, report))
    }

    /// Waits after a pass that a limit held back, deaf to wake-ups, until a tenant or host has
    /// half its places free and nothing waits in the worker for a place, or for as long as
    /// claims are held back at most ([`AT_LIMIT_WAIT`]). Meanwhile the places that come free go
    /// at once to the runs waiting in the worker, without a pass: they leave as fast as their
    /// host answers, not at the pace of passes.
    async fn serve_waiting(&self, in_flight: &mut JoinSet<()>) {
        let parts = &self.parts;
        let pause = tokio::time::sleep(AT_LIMIT_WAIT.to_std().unwrap_or_default());
        tokio::pin!(pause);
        loop {
            tokio::select! {
                _ = &mut pause => return,
                _ = parts.admission.eased() => {}
            }
            if parts.waiting.len() == 0 {
                return;
            }
            while in_flight.try_join_next().is_some() {}
            if let Err(error) = self.admit_waiting(parts.clock.now(), in_flight).await {
                tracing::warn!(error = %format!("{error:#}"), "handing back runs that waited too long failed");
                return;
            }
        }
    }

    /// Claims what the budget allows, leaving the runs of tenants at their share where they are.
    async fn claim(&self, budget: &Budget, now: DateTime<Utc>) -> anyhow::Result<Vec<Claimed>> {
        if budget.claim == 0 {
            return Ok(Vec::new());
        }
        let skip = self.parts.admission.tenants_at_limit();
        self.parts.intake.claim(now, budget.claim, &skip).await
    }

    /// Keeps the runs taken in that fit under the limits and starts their deliveries; the rest
    /// wait in the worker for a place, as far as there is room.
    async fn admit(
        &self,
        runs: Vec<Claimed>,
        now: DateTime<Utc>,
        in_flight: &mut JoinSet<()>,
    ) -> anyhow::Result<Taken> {
        let parts = &self.parts;
        let taken = runs.len();
        let runs = runs.into_iter().map(|run| Waiting::new(run, now)).collect();
        let admitted = parts
            .admission
            .admit(runs, |waiting| waiting.run.limit_key(), now);
        self.start(admitted, now, in_flight, taken).await
    }

    /// Gives the runs waiting in the worker the places that came free; hands back those that
    /// waited too long.
    async fn admit_waiting(
        &self,
        now: DateTime<Utc>,
        in_flight: &mut JoinSet<()>,
    ) -> anyhow::Result<Taken> {
        let parts = &self.parts;
        let leaving = parts.waiting.leave(now);
        if !leaving.overdue.is_empty() {
            tracing::debug!(
                runs = leaving.overdue.len(),
                waited_ms = parts.waiting.hold_limit().num_milliseconds(),
                "runs found no place in time; handing them back"
            );
        }
        parts.intake.hand_back(&leaving.overdue, now).await?;
        let taken = leaving.ready.len();
        let admitted = parts
            .admission
            .admit_waiting(leaving.ready, |waiting| waiting.run.limit_key());
        self.start(admitted, now, in_flight, taken).await
    }

    /// Starts the deliveries of the admitted runs as far as slots are free; the rest wait in
    /// the worker (refused by a limit, or leased at creation beyond the free slots), and those
    /// the room cannot take are handed back.
    async fn start(
        &self,
        admitted: Admitted<Waiting<Claimed>>,
        now: DateTime<Utc>,
        in_flight: &mut JoinSet<()>,
        taken: usize,
    ) -> anyhow::Result<Taken> {
        let parts = &self.parts;
        let limited = !admitted.refused.is_empty();
        let mut waiting = admitted.refused;
        let mut kept = 0;
        let mut no_slot = false;
        for (run, place) in admitted.kept {
            match parts.admission.permits() {
                Some(permits) => {
                    kept += 1;
                    in_flight.spawn(parts.attempts.clone().deliver(run.run, place, permits));
                }
                None => {
                    no_slot = true;
                    waiting.push(run);
                }
            }
        }
        let overflow = parts.waiting.hold(waiting);
        parts.metrics.runs_waiting.set(parts.waiting.len() as i64);
        parts.intake.hand_back(&overflow, now).await?;
        Ok(Taken {
            taken,
            kept,
            limited,
            no_slot,
        })
    }

    /// Hands back every run waiting in the worker: a pass of `run_once` ends, or the worker
    /// stops, and the runs must not wait for their leases to expire.
    async fn hand_back_waiting(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let parts = &self.parts;
        let waiting = parts.waiting.empty();
        parts.metrics.runs_waiting.set(0);
        parts.intake.hand_back(&waiting, now).await
    }

    /// Materialises one batch of this worker's due schedules, leasing up to `lease_max` of the
    /// fires already due to this worker, and as many more as its waiting room can keep if no
    /// older run waits.
    async fn materialise(
        &self,
        now: DateTime<Utc>,
        lease_max: usize,
    ) -> anyhow::Result<materialise::Materialised> {
        let parts = &self.parts;
        let room = parts.waiting.free();
        let lease = (lease_max > 0 || room > 0).then(|| Lease {
            worker_id: &parts.config.worker_id,
            until: now + parts.config.lease,
            max: lease_max,
            room,
        });
        materialise::materialise_and_lease(
            &parts.db,
            now,
            parts.config.materialise_batch,
            parts.shards.scope(),
            lease,
        )
        .await
    }

    /// How long an idle loop sleeps: until the next due instant, within its bounds.
    async fn idle_wait(&self) -> Duration {
        let parts = &self.parts;
        match self.next_due().await {
            // Something due that could not be claimed is locked by another worker for an
            // instant; look again shortly rather than spin.
            Ok(Some(due)) => (due - parts.clock.now()).clamp(MIN_WAIT, parts.config.max_idle),
            Ok(None) => parts.config.max_idle,
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "reading the next due time failed");
                parts.config.max_idle
            }
        }
    }

    /// The earliest instant at which one of this worker's schedules or any run becomes due.
    pub async fn next_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        let parts = &self.parts;
        let schedule = materialise::next_due(&parts.db, parts.shards.scope()).await?;
        let run = runs::next_due(&parts.db).await?;
        Ok(schedule.into_iter().chain(run).min())
    }

    /// Renews this worker's registration and shards (PostgreSQL); returns the shards it owns.
    pub async fn heartbeat(&self) -> anyhow::Result<Vec<i32>> {
        let parts = &self.parts;
        if let Some(renewed) = parts.shards.heartbeat(parts.clock.now()).await? {
            let beat = &renewed.heartbeat;
            parts.metrics.shards_owned.set(beat.owned.len() as i64);
            parts.metrics.workers_live.set(beat.live_workers as i64);
            parts.metrics.shards_unowned.set(beat.unowned);
            if renewed.moved {
                tracing::info!(shards = beat.owned.len(), "shards rebalanced");
                // New shards may hold due schedules.
                parts.wakeup.wake();
            }
        }
        Ok(parts.shards.owned())
    }

    /// Leaves the shard group at once (graceful shutdown): its shards and its runs in flight go
    /// to the other workers now rather than when their leases expire.
    pub async fn leave(&self) -> anyhow::Result<()> {
        let parts = &self.parts;
        if parts.shards.is_shared() {
            parts.shards.leave(parts.clock.now()).await?;
            parts.metrics.shards_owned.set(0);
        }
        Ok(())
    }

    /// Whether this worker takes part in delivering: `Ok` with what it holds, or `Err` with why
    /// not (see [`ShardView::readiness`]).
    pub fn readiness(&self) -> Result<String, String> {
        self.parts.shards.readiness(self.parts.clock.now())
    }

    async fn heartbeat_loop(self, cancel: CancellationToken) {
        let Some(every) = self.parts.shards.heartbeat_every() else {
            return;
        };
        while !cancel.is_cancelled() {
            let Some(beat) = cancel.run_until_cancelled(self.heartbeat()).await else {
                break;
            };
            if let Err(error) = beat {
                tracing::warn!(error = %format!("{error:#}"), "shard heartbeat failed");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }
}

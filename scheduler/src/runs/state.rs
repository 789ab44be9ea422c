//! The values the run transitions take and give: a new run, a lease offered at creation, an
//! attempt's record and the state its result moves the run to. Plain data, no I/O.

use chrono::{DateTime, Utc};
use hookbeat_entity::run::{self, RunStatus};
use hookbeat_entity::{RunId, ScheduleId, TenantId};

/// A run to make: a fire of its schedule, or a manual trigger or backfill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    pub tenant_id: TenantId,
    pub schedule_id: ScheduleId,
    /// The fire it delivers.
    pub scheduled_for: DateTime<Utc>,
    /// `hookbeat_entity::run::trigger`'s names.
    pub trigger: &'static str,
    /// When it becomes claimable: the fire plus jitter, or now for a manual run.
    pub due_at: DateTime<Utc>,
}

/// Delivery slots a worker offers to the runs it makes: those already due are made
/// `delivering`, leased to it, instead of `pending`, so the claim that would have followed (a
/// second write of every run) is not needed.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    pub worker_id: &'a str,
    /// The lease's expiry, as for a claim.
    pub until: DateTime<Utc>,
    /// How many runs at most.
    pub max: usize,
    /// How many more the worker can keep waiting for a place (its waiting room's free places),
    /// leased only if no older run waits in the database: a fire must not overtake one.
    pub room: usize,
}

/// The state a run moves to after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUpdate {
    pub status: RunStatus,
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
    pub run_id: RunId,
    pub attempt: i32,
    pub step: i32,
    /// Whose health the result counts towards.
    pub schedule_id: ScheduleId,
    /// The fire the run delivers; `None` for a manual run (a trigger or a backfill).
    pub fire: Option<DateTime<Utc>>,
    pub record: AttemptRecord,
    pub update: RunUpdate,
}

impl Finished {
    /// The result of the attempt `run` (as claimed) made.
    pub fn new(run: &run::Model, record: AttemptRecord, update: RunUpdate) -> Self {
        Self {
            run_id: run.id,
            attempt: run.attempts,
            step: run.step,
            schedule_id: run.schedule_id,
            fire: (run.trigger == run::trigger::SCHEDULE).then_some(run.scheduled_for),
            record,
            update,
        }
    }

    /// How long after its fire an attempt of the target started; `None` for a manual run or a
    /// later step. The run keeps the first one recorded.
    pub fn fire_lag_ms(&self) -> Option<i64> {
        let fire = self.fire.filter(|_| self.step == 0)?;
        Some((self.record.started_at - fire).num_milliseconds().max(0))
    }

    /// Whether the run is finished, succeeded or failed for good: what a schedule's health
    /// counts.
    pub fn finished_for_good(&self) -> Option<bool> {
        match self.update.status {
            RunStatus::Succeeded => Some(true),
            RunStatus::Failed => Some(false),
            _ => None,
        }
    }

    /// Whether this is the run's only attempt and it finished the run: the first attempt of the
    /// target, succeeded, no step after it. Such an attempt is kept in the run's row, and an
    /// `attempts` row only for the others (retries, failures, steps, redeliveries).
    pub fn is_sole_attempt(&self) -> bool {
        self.attempt == 1
            && self.step == 0
            && self.update.status == RunStatus::Succeeded
            && self.update.next_step.is_none()
    }
}

/// Why runs in flight are taken back from their worker without its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakenBack {
    /// The worker's lease expired: it crashed or hung.
    LeaseExpired,
    /// The worker shut down before the answers came.
    WorkerLeft,
}

impl TakenBack {
    /// The words around the worker's name in `last_error` after `attempt N`.
    pub(super) fn framing(self) -> (&'static str, &'static str) {
        match self {
            Self::LeaseExpired => (
                " was lost: the lease of worker ",
                " expired before it recorded a result",
            ),
            Self::WorkerLeft => (
                " was abandoned: worker ",
                " shut down before it recorded a result",
            ),
        }
    }

    /// The error kept with the lost attempt.
    pub(super) fn error(self, attempt: i32, worker: &str) -> String {
        let (before, after) = self.framing();
        format!("attempt {attempt}{before}{worker}{after}")
    }
}

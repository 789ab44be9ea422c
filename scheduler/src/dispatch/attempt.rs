//! One attempt of a claimed run: send it, decide what its result means, record it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::run::{self, RunStatus};
use sea_orm::DatabaseConnection;
use tracing::Instrument;

use super::admission::Permits;
use super::intake::Claimed;
use super::write_back::WriteBack;
use crate::clock::Clock;
use crate::definition::{RetryPolicy, Target};
use crate::deliver::{AttemptResult, Deliverer, Delivery, DeliveryError};
use crate::metrics::WorkerMetrics;
use crate::notify::Wakeup;
use crate::outcome;
use crate::politeness::Reservation;
use crate::runs::{self, AttemptRecord};
use crate::steps::{self, Steps};

/// Slack a lease keeps beyond an attempt's timeout, for recording the result.
const LEASE_SLACK: Duration = Duration::seconds(30);

/// What every attempt of a worker shares.
pub(super) struct Attempts {
    pub db: DatabaseConnection,
    pub clock: Arc<dyn Clock>,
    pub worker_id: String,
    /// How long a claim is held.
    pub lease: Duration,
    pub deliverer: Deliverer,
    pub write_back: WriteBack,
    pub metrics: WorkerMetrics,
    pub wakeup: Wakeup,
}

impl Attempts {
    /// Delivers one claimed run and records the result. Never fails: a write-back that cannot be
    /// made leaves the run to its lease, and it is delivered again. The delivery slot and the
    /// place under the politeness limits count requests in flight, not the bookkeeping around
    /// them: both are given back as soon as the answer is in.
    pub(super) async fn deliver(
        self: Arc<Self>,
        claimed: Claimed,
        place: Option<Reservation>,
        permits: Permits,
    ) {
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
            let result = self.send(&claimed, started_at).await;
            drop(place);
            drop(permits.slot);
            self.wakeup.wake();
            // The steps decide what follows the attempt, unless the run's own step is gone.
            let (steps, policy) = match &claimed.schedule {
                Some((steps, policy)) => (Some(steps), policy.clone()),
                None => (None, RetryPolicy::default()),
            };
            let steps = steps.filter(|s| claimed.keys.is_empty() || s.target_of(run).is_some());
            self.record(run, result, &policy, steps, started_at).await;
            drop(permits.unrecorded);
            // A place came free: there may be due runs that did not fit before.
            self.wakeup.wake();
        }
        .instrument(span)
        .await
    }

    /// Sends the attempt, or says why it cannot be sent.
    async fn send(&self, claimed: &Claimed, started_at: DateTime<Utc>) -> AttemptResult {
        let run = &claimed.run;
        let Some((steps, _)) = &claimed.schedule else {
            return unsendable("the schedule could not be read; see the server log");
        };
        if claimed.keys.is_empty() {
            return unsendable("the tenant has no signing secret");
        }
        let Some(target) = steps.target_of(run) else {
            return unsendable("the schedule has no such step any more");
        };
        self.hold_lease_for(run, &target, started_at).await;
        let delivery = Delivery {
            webhook_id: steps::webhook_id(run.id, run.step),
            schedule_id: run.schedule_id,
            scheduled_for: run.scheduled_for,
            attempt: run.attempts,
            target: &target,
            keys: &claimed.keys,
        };
        self.deliverer.deliver(&delivery, started_at).await
    }

    /// Records an attempt's result: history, metrics, the run's next state, and the schedule's
    /// pause after a 410.
    async fn record(
        &self,
        run: &run::Model,
        result: AttemptResult,
        policy: &RetryPolicy,
        steps: Option<&Steps>,
        started_at: DateTime<Utc>,
    ) {
        let finished_at = self.clock.now();
        let (outcome, update) = outcome::decide(run, policy, steps, &result, finished_at);
        self.metrics.deliveries.with_label_values(&[outcome]).inc();
        if update.status == RunStatus::Failed {
            self.metrics.dead_letters.inc();
        }
        self.metrics
            .delivery_duration
            .observe(result.duration.as_secs_f64());
        let error = result.error.as_ref().map(ToString::to_string);
        let record = AttemptRecord {
            started_at,
            duration_ms: result.duration.as_millis() as i64,
            outcome,
            status_code: result.status.map(i32::from),
            error: error.clone(),
            response_excerpt: result.excerpt.clone(),
        };
        if result.status == Some(410) {
            self.pause_gone(run, finished_at).await;
        }
        // The lease: the claim's, or as `hold_lease_for` extended it for a long timeout.
        let timeout = steps
            .and_then(|steps| steps.target_of(run))
            .map_or(0, |target| target.timeout_ms);
        let lease_until = run
            .due_at
            .unwrap_or(finished_at)
            .max(started_at + Duration::milliseconds(timeout) + LEASE_SLACK);
        match self
            .write_back
            .record(run, record, update, lease_until)
            .await
        {
            // Successes are the bulk of the traffic: debug. Failures are what operators read.
            Ok(true) if outcome == "success" => {
                tracing::debug!(status = ?result.status, "delivered")
            }
            Ok(true) => {
                tracing::info!(outcome, status = ?result.status, error = ?error, "attempt failed")
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
        let paused = async {
            let txn = hookbeat_entity::begin_write(&self.db).await?;
            crate::pausing::pause(&txn, &[run.schedule_id], &reason, now).await?;
            txn.commit().await?;
            anyhow::Ok(())
        };
        match paused.await {
            Ok(()) => {
                tracing::warn!(schedule_id = %run.schedule_id, "target answered 410 Gone; schedule paused")
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "pausing a schedule after 410 Gone failed")
            }
        }
    }

    /// Extends the lease when this attempt's timeout would outlast it.
    async fn hold_lease_for(&self, run: &run::Model, target: &Target, now: DateTime<Utc>) {
        let needed = Duration::milliseconds(target.timeout_ms) + LEASE_SLACK;
        if needed > self.lease {
            if let Err(error) =
                runs::extend_lease(&self.db, &self.worker_id, run, now + needed).await
            {
                tracing::warn!(error = %format!("{error:#}"), "extending the lease failed");
            }
        }
    }
}

/// The result of an attempt that was never sent: recorded as one failed attempt.
fn unsendable(reason: &str) -> AttemptResult {
    AttemptResult::not_sent(DeliveryError::Unsendable(reason.to_owned()))
}

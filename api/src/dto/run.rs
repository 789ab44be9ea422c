//! Runs and their attempts, as history shows them.

use chrono::{DateTime, Utc};
use hookbeat_entity::run::RunStatus;
use hookbeat_entity::{attempt, run};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::run)]
pub struct Run {
    /// Also the `webhook-id` of every attempt of this run.
    pub id: Uuid,
    pub schedule_id: Uuid,
    /// The fire this run delivers.
    pub scheduled_for: DateTime<Utc>,
    /// `schedule` (a fire), `manual` (`/trigger`) or `backfill` (`/backfill`).
    #[schema(example = "schedule")]
    pub trigger: String,
    /// `pending`, `delivering`, `retrying`, `succeeded` or `failed`.
    #[schema(example = "succeeded")]
    pub status: String,
    /// The step being (or last) delivered: `target`, `then[0]`, …, or `on_failure`.
    #[schema(example = "target")]
    pub step: String,
    /// Attempts made so far at this step.
    pub attempt_count: i32,
    /// When the next attempt is due, while the run is `pending` or `retrying`.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What failed, once the run failed for good: `failed_step`, `attempts`, `status_code`,
    /// `error`, `failed_at` (this is also the body of the `on_failure` call).
    #[schema(value_type = Option<Object>)]
    pub failure: Option<serde_json::Value>,
}

impl From<run::Model> for Run {
    fn from(m: run::Model) -> Self {
        let waiting = m.status.is_waiting();
        Self {
            id: m.id.into(),
            schedule_id: m.schedule_id.into(),
            scheduled_for: m.scheduled_for,
            trigger: m.trigger,
            status: m.status.as_str().to_owned(),
            step: hookbeat_scheduler::steps::step_name(m.step),
            attempt_count: m.attempts,
            next_attempt_at: if waiting { m.due_at } else { None },
            last_status_code: m.last_status_code,
            last_error: m.last_error,
            created_at: m.created_at,
            updated_at: m.updated_at,
            finished_at: m.finished_at,
            failure: m.failure,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    /// The step this attempt delivered: `target`, `then[0]`, …, or `on_failure`.
    pub step: String,
    /// 1, 2, …: the `hookbeat-attempt` header of this request.
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// `success`, `retry` (another attempt follows) or `failed`.
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    /// The first 1 KiB of the response body.
    pub response_excerpt: Option<String>,
}

impl From<attempt::Model> for Attempt {
    fn from(m: attempt::Model) -> Self {
        Self {
            step: hookbeat_scheduler::steps::step_name(m.step),
            attempt: m.attempt,
            started_at: m.started_at,
            duration_ms: m.duration_ms,
            outcome: m.outcome,
            status_code: m.status_code,
            error: m.error,
            response_excerpt: m.response_excerpt,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::run_detail)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: Run,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::run_page)]
pub struct RunPage {
    pub items: Vec<Run>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunFilter {
    /// Only runs in this state: `pending`, `delivering`, `retrying`, `succeeded` or `failed`.
    pub status: Option<String>,
}

impl RunFilter {
    pub fn status(&self) -> Result<Option<RunStatus>, ApiError> {
        match self.status.as_deref() {
            None => Ok(None),
            Some(s) => RunStatus::parse(s).map(Some).ok_or_else(|| {
                let known: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
                ApiError::validation(
                    "status",
                    format!("must be one of {}, got {s:?}", known.join(", ")),
                )
            }),
        }
    }
}

//! A run: one fire of a schedule (or a manual trigger, a backfill) and its delivery state.
//!
//! ```text
//!   pending ──claim──> delivering ──2xx──> succeeded
//!      ^                  │  │
//!      │   retryable, attempts left
//!      │                  │  └──permanent, or out of attempts──> failed ──redeliver──> pending
//!   retrying <────────────┘
//! ```
//!
//! `due_at` is the one instant that makes a row claimable: the fire time (plus jitter) while
//! `pending`, the next attempt while `retrying`, and the lease expiry while `delivering` (so a
//! crashed worker's run becomes claimable again by itself). Finished runs have no `due_at`.
//! Every write of this table is a transition of `hookbeat_scheduler::runs`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{RunId, ScheduleId, TenantId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: RunId,
    pub tenant_id: TenantId,
    pub schedule_id: ScheduleId,
    pub scheduled_for: DateTimeUtc,
    pub trigger: String,
    pub status: RunStatus,
    pub attempts: i32,
    /// Attempts made before the current retry budget began; a redelivery sets it to `attempts`.
    pub retry_base: i32,
    pub due_at: Option<DateTimeUtc>,
    pub locked_by: Option<String>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// 0: the target; k ≥ 1: the k-th `then` step; [`ON_FAILURE_STEP`]: the `on_failure` call.
    pub step: i32,
    /// What failed (step, attempts, status, error), once the run failed for good.
    pub failure: Option<Json>,
    /// When the run's only attempt started, if it succeeded at once and finished the run: that
    /// attempt is kept here, not in `attempts` (its status code is `last_status_code`).
    pub sole_attempt_started_at: Option<DateTimeUtc>,
    pub sole_attempt_duration_ms: Option<i64>,
    pub sole_attempt_excerpt: Option<String>,
    /// How long after `scheduled_for` its first recorded attempt of the target started.
    pub fire_lag_ms: Option<i64>,
}

/// The `step` of a run whose `on_failure` call is being delivered.
pub const ON_FAILURE_STEP: i32 = -1;

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The root of every tenant-facing run query.
    pub fn find_for_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.as_str()))
    }

    /// One of the tenant's runs; another tenant's id finds nothing.
    pub fn find_for_tenant_by_id(tenant: &TenantId, id: RunId) -> Select<Entity> {
        Self::find_for_tenant(tenant).filter(Column::Id.eq(id))
    }
}

/// A run's state, stored as its lower-case name in `runs.status`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for its first attempt (of its current step), due at `due_at`.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Leased to the worker in `locked_by` until `due_at`.
    #[sea_orm(string_value = "delivering")]
    Delivering,
    /// Waiting for another attempt, due at `due_at`.
    #[sea_orm(string_value = "retrying")]
    Retrying,
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    #[sea_orm(string_value = "failed")]
    Failed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 5] = [
        Self::Pending,
        Self::Delivering,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
    ];

    /// The name stored in `runs.status` and shown by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// The state named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Waiting for an attempt: `due_at` is when it becomes claimable.
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Pending | Self::Retrying)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What created a run, as stored in `runs.trigger`.
pub mod trigger {
    /// A fire of the schedule itself; unique per (schedule, scheduled_for).
    pub const SCHEDULE: &str = "schedule";
    /// `POST /v1/schedules/{id}/trigger`.
    pub const MANUAL: &str = "manual";
    /// `POST /v1/schedules/{id}/backfill`.
    pub const BACKFILL: &str = "backfill";
}

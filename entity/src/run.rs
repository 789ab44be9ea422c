//! A run: one fire of a schedule and its delivery state.
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

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: String,
    pub schedule_id: Uuid,
    pub scheduled_for: DateTimeUtc,
    pub trigger: String,
    pub status: String,
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
}

/// The `step` of a run whose `on_failure` call is being delivered.
pub const ON_FAILURE_STEP: i32 = -1;

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The root of every tenant-facing run query.
    pub fn find_for_tenant(tenant: &crate::TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.as_str()))
    }

    /// One of the tenant's runs; another tenant's id finds nothing.
    pub fn find_for_tenant_by_id(tenant: &crate::TenantId, id: Uuid) -> Select<Entity> {
        Self::find_for_tenant(tenant).filter(Column::Id.eq(id))
    }

    /// The root of every tenant-facing run update.
    pub fn update_for_tenant(tenant: &crate::TenantId) -> sea_orm::UpdateMany<Entity> {
        Self::update_many().filter(Column::TenantId.eq(tenant.as_str()))
    }

    /// The root of every tenant-facing run delete.
    pub fn delete_for_tenant(tenant: &crate::TenantId) -> sea_orm::DeleteMany<Entity> {
        Self::delete_many().filter(Column::TenantId.eq(tenant.as_str()))
    }
}

/// Run states as stored in `runs.status`.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const DELIVERING: &str = "delivering";
    pub const RETRYING: &str = "retrying";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
    pub const ALL: [&str; 5] = [PENDING, DELIVERING, RETRYING, SUCCEEDED, FAILED];
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

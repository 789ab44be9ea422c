//! A schedule: *when* to fire (the spec and its bounds) and *what* to send (the target).
//!
//! `spec`, `target` and `retry` are stored as JSON in their API shape; the scheduler crate owns
//! their typed form. `next_run_at` is NULL when the schedule will never fire again.

use sea_orm::entity::prelude::*;
use sea_orm::{DeleteMany, UpdateMany};

use crate::{ScheduleId, TenantId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ScheduleId,
    pub tenant_id: TenantId,
    pub shard: i32,
    pub name: String,
    pub description: Option<String>,
    pub spec: Json,
    pub target: Json,
    pub retry: Json,
    pub start_at: Option<DateTimeUtc>,
    pub end_at: Option<DateTimeUtc>,
    pub max_runs: Option<i64>,
    pub jitter_ms: i64,
    pub catchup: String,
    pub overlap: String,
    pub enabled: bool,
    pub paused_reason: Option<String>,
    pub metadata: Json,
    pub next_run_at: Option<DateTimeUtc>,
    pub last_run_at: Option<DateTimeUtc>,
    pub total_runs: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub version: i64,
    /// The `then` targets, delivered in order after the target succeeded.
    pub chain: Option<Json>,
    pub on_failure: Option<Json>,
    /// A fire whose first attempt starts later than this is late; NULL for the default.
    pub late_after_ms: Option<i64>,
    /// When the schedule was paused; NULL while it is not.
    pub paused_at: Option<DateTimeUtc>,
    /// Where failure and recovery notices go (`definition::Notify`); NULL for the tenant's.
    pub notify: Option<Json>,
    /// Runs failed for good in a row after which the schedule pauses itself; NULL for never.
    pub pause_after_failures: Option<i32>,
    /// The names of the tenant's calendars whose dates the schedule does not fire on; NULL for
    /// none.
    pub exclude: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The root of every tenant-facing schedule query.
    pub fn find_for_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.as_str()))
    }

    /// One of the tenant's schedules; another tenant's id finds nothing.
    pub fn find_for_tenant_by_id(tenant: &TenantId, id: ScheduleId) -> Select<Entity> {
        Self::find_for_tenant(tenant).filter(Column::Id.eq(id))
    }

    /// The root of every tenant-facing schedule update.
    pub fn update_for_tenant(tenant: &TenantId) -> UpdateMany<Entity> {
        Self::update_many().filter(Column::TenantId.eq(tenant.as_str()))
    }

    /// The root of every tenant-facing schedule delete.
    pub fn delete_for_tenant(tenant: &TenantId) -> DeleteMany<Entity> {
        Self::delete_many().filter(Column::TenantId.eq(tenant.as_str()))
    }
}

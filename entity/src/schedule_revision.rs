//! A revision of a schedule: one change to it, at the version the change made. Written only by
//! `hookbeat_scheduler::revisions`, in the transaction of the change it records; kept after the
//! schedule is deleted, until the history retention prunes it.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{ScheduleId, TenantId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "schedule_revisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub schedule_id: ScheduleId,
    /// The schedule's `version` after the change (a delete's: the one after its last).
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    pub tenant_id: TenantId,
    pub created_at: DateTimeUtc,
    pub action: RevisionAction,
    /// Who made the change: the token's `sub`, or `hookbeat` for hookbeat's own.
    pub actor_sub: String,
    /// The token's `jti`, when it has one.
    pub actor_token_id: Option<String>,
    /// The token's `name` claim, when it has one.
    pub actor_name: Option<String>,
    /// The request's `X-Change-Reason`, or why hookbeat made the change.
    pub reason: Option<String>,
    /// The version a `restored` revision brought back.
    pub restored_from: Option<i64>,
    /// The JSON merge patch from the revision before to this one; NULL (the patch `null`) for a
    /// delete.
    pub patch: Option<Json>,
    /// The schedule's writable members after the change (a delete's: as it was deleted), in the
    /// shape a client writes them.
    pub document: Json,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The root of every tenant-facing revision query: the tenant's revisions of one schedule,
    /// live or deleted; another tenant's schedule id finds nothing.
    pub fn find_of_schedule(tenant: &TenantId, schedule: ScheduleId) -> Select<Entity> {
        Self::find()
            .filter(Column::TenantId.eq(tenant.as_str()))
            .filter(Column::ScheduleId.eq(schedule))
    }
}

/// What a change did, stored as its lower-case name in `schedule_revisions.action`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Text")]
#[serde(rename_all = "lowercase")]
pub enum RevisionAction {
    /// `POST /v1/schedules`, or a `PUT` by name that made it.
    #[sea_orm(string_value = "created")]
    Created,
    /// A `PATCH`.
    #[sea_orm(string_value = "updated")]
    Updated,
    /// A `PUT` by name over an existing schedule.
    #[sea_orm(string_value = "replaced")]
    Replaced,
    /// Paused through the API, or by hookbeat (a 410 Gone, `pause_after_failures`).
    #[sea_orm(string_value = "paused")]
    Paused,
    #[sea_orm(string_value = "resumed")]
    Resumed,
    #[sea_orm(string_value = "deleted")]
    Deleted,
    /// An earlier revision's content written again (`restored_from` says which).
    #[sea_orm(string_value = "restored")]
    Restored,
}

//! A tenant and its quotas.

use sea_orm::entity::prelude::*;
use sea_orm::UpdateMany;

use crate::TenantId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tenants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: TenantId,
    pub disabled: bool,
    pub max_schedules: i64,
    /// The tenant's schedules, kept by every create and delete in the same transaction.
    pub schedule_count: i64,
    pub min_interval_seconds: i64,
    pub api_rate_per_second: i64,
    /// The default `notify` target of the tenant's schedules (`definition::Notify`).
    pub notify: Option<Json>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The tenant's own row.
    pub fn find_tenant(id: &TenantId) -> Select<Entity> {
        Self::find_by_id(id.as_str())
    }

    /// Moves the tenant's `schedule_count` by `change`, in the transaction that creates or
    /// deletes the schedules.
    pub fn count_schedules(id: &TenantId, change: i64) -> UpdateMany<Entity> {
        Self::update_many()
            .col_expr(
                Column::ScheduleCount,
                Expr::col(Column::ScheduleCount).add(change),
            )
            .filter(Column::Id.eq(id.as_str()))
    }
}

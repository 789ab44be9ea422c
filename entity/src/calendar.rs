//! A tenant's exclusion calendar, named per tenant; its definition (`calendar::CalendarDefinition`
//! in the scheduler crate) is one JSON document.

use sea_orm::entity::prelude::*;
use sea_orm::DeleteMany;

use crate::TenantId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "calendars")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: TenantId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    pub definition: Json,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The root of every tenant-facing calendar query.
    pub fn find_for_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.as_str()))
    }

    /// The root of every tenant-facing calendar delete.
    pub fn delete_for_tenant(tenant: &TenantId) -> DeleteMany<Entity> {
        Self::delete_many().filter(Column::TenantId.eq(tenant.as_str()))
    }
}

//! A tenant's webhook signing secret (`whsec_…`). A rotated-out secret keeps signing until
//! `expires_at`, so receivers can switch over without dropping deliveries.

use sea_orm::entity::prelude::*;
use sea_orm::{Condition, QueryOrder, UpdateMany};

use crate::TenantId;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "signing_secrets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub secret: String,
    pub created_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    /// The tenant's secrets that still sign at `now`, newest first (ids are UUIDv7: secrets
    /// made in one instant sort by id).
    pub fn find_valid_for_tenant(tenant: &TenantId, now: DateTimeUtc) -> Select<Entity> {
        Self::find_valid_for_tenants([tenant.as_str()], now)
    }

    /// The same for several tenants at once (a worker signing the runs of a batch).
    pub fn find_valid_for_tenants<'a>(
        tenants: impl IntoIterator<Item = &'a str>,
        now: DateTimeUtc,
    ) -> Select<Entity> {
        Self::find()
            .filter(Column::TenantId.is_in(tenants))
            .filter(
                Condition::any()
                    .add(Column::ExpiresAt.is_null())
                    .add(Column::ExpiresAt.gt(now)),
            )
            .order_by_desc(Column::CreatedAt)
            .order_by_desc(Column::Id)
    }

    /// The root of every tenant-facing secret update.
    pub fn update_for_tenant(tenant: &TenantId) -> UpdateMany<Entity> {
        Self::update_many().filter(Column::TenantId.eq(tenant.as_str()))
    }
}

//! A remembered response to a POST sent with an `Idempotency-Key`. `status` is NULL while the
//! first request is still being handled.

use sea_orm::entity::prelude::*;

use crate::TenantId;

/// How long a key is remembered: a retry within it replays the first response, and maintenance
/// prunes rows older than it.
pub const KEY_TTL: chrono::Duration = chrono::Duration::hours(24);

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub tenant_id: TenantId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// SHA-256 of the method, path and body of the first request.
    pub fingerprint: String,
    pub status: Option<i32>,
    pub body: Option<String>,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! Tenant provisioning: a tenant exists from its first token on, with default quotas and a
//! first signing secret.

use chrono::{DateTime, Utc};
use hookbeat_entity::{signing_secret, tenant, TenantId};
use hookbeat_scheduler::signing::generate_secret;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, Set, TransactionTrait};
use uuid::Uuid;

pub const MAX_TENANT_ID_LEN: usize = 128;

/// Default quotas of a new tenant.
pub const DEFAULT_MAX_SCHEDULES: i64 = 10_000;
pub const DEFAULT_MIN_INTERVAL_SECONDS: i64 = 1;
pub const DEFAULT_API_RATE_PER_SECOND: i64 = 100;

/// Creates the tenant and its first signing secret unless it exists. Safe to race: only the
/// caller whose insert took effect creates the secret.
pub async fn ensure(
    db: &DatabaseConnection,
    id: &TenantId,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    if tenant::Entity::find_by_id(id.as_str())
        .one(db)
        .await?
        .is_some()
    {
        return Ok(false);
    }
    let txn = db.begin().await?;
    let inserted = tenant::Entity::insert(tenant::ActiveModel {
        id: Set(id.0.clone()),
        disabled: Set(false),
        max_schedules: Set(DEFAULT_MAX_SCHEDULES),
        min_interval_seconds: Set(DEFAULT_MIN_INTERVAL_SECONDS),
        api_rate_per_second: Set(DEFAULT_API_RATE_PER_SECOND),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(tenant::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    if inserted == 1 {
        signing_secret::Entity::insert(signing_secret::ActiveModel {
            id: Set(Uuid::now_v7()),
            tenant_id: Set(id.0.clone()),
            secret: Set(generate_secret()),
            created_at: Set(now),
            expires_at: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(inserted == 1)
}

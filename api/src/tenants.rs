//! Tenants as the API keeps them: a tenant exists from its first token on (or from its creation
//! through the admin API), with quotas and a first signing secret.

use chrono::{DateTime, Utc};
use hookbeat_entity::{signing_secret, tenant, TenantId};
use hookbeat_scheduler::sealing::{Row, Sealer};
use hookbeat_scheduler::signing::generate_secret;
use sea_orm::sea_query::OnConflict;
use sea_orm::{DatabaseConnection, DbErr, EntityTrait, Set, TransactionTrait};
use uuid::Uuid;

use crate::error::ApiError;

pub const MAX_TENANT_ID_LEN: usize = 128;

/// Default quotas of a new tenant.
pub const DEFAULT_MAX_SCHEDULES: i64 = 10_000;
pub const DEFAULT_MIN_INTERVAL_SECONDS: i64 = 1;
pub const DEFAULT_API_RATE_PER_SECOND: i64 = 100;

/// A tenant's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub max_schedules: i64,
    pub min_interval_seconds: i64,
    pub api_rate_per_second: i64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            max_schedules: DEFAULT_MAX_SCHEDULES,
            min_interval_seconds: DEFAULT_MIN_INTERVAL_SECONDS,
            api_rate_per_second: DEFAULT_API_RATE_PER_SECOND,
        }
    }
}

/// The tenant `id` (404 if there is none).
pub async fn load(db: &DatabaseConnection, id: &TenantId) -> Result<tenant::Model, ApiError> {
    tenant::Entity::find_tenant(id)
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))
}

/// The tenant, created with default quotas and its first signing secret if it does not exist.
pub async fn ensure(
    db: &DatabaseConnection,
    sealer: &Sealer,
    id: &TenantId,
    now: DateTime<Utc>,
) -> Result<tenant::Model, DbErr> {
    if let Some(existing) = tenant::Entity::find_tenant(id).one(db).await? {
        return Ok(existing);
    }
    create(db, sealer, id, Quotas::default(), now).await?;
    tenant::Entity::find_tenant(id)
        .one(db)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("tenant {id} vanished while being created")))
}

/// Creates the tenant and its first signing secret; `false` if it already existed. Safe to race:
/// only the caller whose insert took effect creates the secret.
pub async fn create(
    db: &DatabaseConnection,
    sealer: &Sealer,
    id: &TenantId,
    quotas: Quotas,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let txn = db.begin().await?;
    let inserted = tenant::Entity::insert(tenant::ActiveModel {
        id: Set(id.clone()),
        disabled: Set(false),
        max_schedules: Set(quotas.max_schedules),
        schedule_count: Set(0),
        min_interval_seconds: Set(quotas.min_interval_seconds),
        api_rate_per_second: Set(quotas.api_rate_per_second),
        notify: Set(None),
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
        let secret_id = Uuid::now_v7();
        let row = Row::SigningSecret {
            tenant: id.as_str(),
            id: secret_id,
        };
        signing_secret::Entity::insert(signing_secret::ActiveModel {
            id: Set(secret_id),
            tenant_id: Set(id.clone()),
            secret: Set(sealer.seal(row, &generate_secret())),
            created_at: Set(now),
            expires_at: Set(None),
        })
        .exec_without_returning(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(inserted == 1)
}

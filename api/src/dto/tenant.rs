//! Tenants and their quotas, as the admin endpoints show and take them.

use chrono::{DateTime, Utc};
use hookbeat_entity::tenant;
use hookbeat_scheduler::definition::Notify;
use hookbeat_scheduler::validation::FieldErrors;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::tenants::{Quotas, MAX_TENANT_ID_LEN};

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::tenant)]
pub struct Tenant {
    /// The `sub` of the tenant's tokens.
    #[schema(example = "acme")]
    pub id: String,
    /// A disabled tenant's tokens are refused (403) and its schedules do not fire.
    pub disabled: bool,
    /// Schedules the tenant may have.
    pub max_schedules: i64,
    /// Schedules the tenant has now.
    pub schedule_count: i64,
    /// The shortest time allowed between two fires of one schedule, in seconds.
    pub min_interval_seconds: i64,
    /// API requests per second (a burst of two seconds' worth is allowed), per API process.
    pub api_rate_per_second: i64,
    /// Where the notices of the tenant's schedules without a `notify` of their own go.
    pub notify: Option<Notify>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<tenant::Model> for Tenant {
    fn from(m: tenant::Model) -> Self {
        Self {
            id: m.id.to_string(),
            disabled: m.disabled,
            max_schedules: m.max_schedules,
            schedule_count: m.schedule_count,
            min_interval_seconds: m.min_interval_seconds,
            api_rate_per_second: m.api_rate_per_second,
            notify: m
                .notify
                .and_then(|notify| serde_json::from_value(notify).ok()),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// `POST /v1/tenants`; quotas left out take the defaults (10000 schedules, 1 s, 100 requests/s).
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::new_tenant)]
pub struct NewTenant {
    #[schema(example = "acme")]
    pub id: String,
    #[serde(default)]
    pub max_schedules: Option<i64>,
    #[serde(default)]
    pub min_interval_seconds: Option<i64>,
    #[serde(default)]
    pub api_rate_per_second: Option<i64>,
}

/// `PATCH /v1/tenants/{id}`: the members to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::tenant_change)]
pub struct TenantChange {
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub max_schedules: Option<i64>,
    #[serde(default)]
    pub min_interval_seconds: Option<i64>,
    #[serde(default)]
    pub api_rate_per_second: Option<i64>,
    /// The tenant's default `notify` target; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Notify>)]
    pub notify: Option<Option<Notify>>,
}

/// `PATCH /v1/tenant`: what a tenant sets for itself.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::tenant_settings)]
pub struct TenantSettings {
    /// Where the notices of the tenant's schedules without a `notify` of their own go (and
    /// after how many failed runs in a row they are `failing`); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Notify>)]
    pub notify: Option<Option<Notify>>,
}

/// A member that is present, `null` included (`Some(None)`); absent stays `None`.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The value to write to the `notify` column for a change to it, validated; `None` when the
/// change leaves it alone (only the columns a request changes are written, so a concurrent
/// change to another member is not undone).
pub fn notify_column(
    change: Option<Option<Notify>>,
    allow_private_targets: bool,
) -> Result<Option<Option<serde_json::Value>>, ApiError> {
    match change {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(notify)) => {
            let mut errors = FieldErrors::new();
            notify.validate("notify", allow_private_targets, &mut errors);
            errors.finish(()).map_err(ApiError::Validation)?;
            serde_json::to_value(notify)
                .map(|value| Some(Some(value)))
                .map_err(|e| ApiError::Internal(e.into()))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::tenant_page)]
pub struct TenantPage {
    pub items: Vec<Tenant>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Checks quota values, naming the field.
pub fn check_quotas(quotas: &Quotas) -> Result<(), ApiError> {
    let mut errors = hookbeat_scheduler::validation::FieldErrors::new();
    for (field, value, max) in [
        ("max_schedules", quotas.max_schedules, 10_000_000),
        ("min_interval_seconds", quotas.min_interval_seconds, 86_400),
        ("api_rate_per_second", quotas.api_rate_per_second, 100_000),
    ] {
        if !(1..=max).contains(&value) {
            errors.add(field, format!("must be between 1 and {max}, got {value}"));
        }
    }
    errors.finish(()).map_err(ApiError::Validation)
}

pub fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_TENANT_ID_LEN || id.chars().any(char::is_control) {
        return Err(ApiError::validation(
            "id",
            format!("must be 1 to {MAX_TENANT_ID_LEN} bytes without control characters"),
        ));
    }
    Ok(())
}

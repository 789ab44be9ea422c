//! `/v1/tenants`: tenants and their quotas, for operators (scope `admin`); `/v1/tenant`: the
//! caller's own tenant, and the settings a tenant makes for itself.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hookbeat_entity::{tenant, TenantId};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::auth::{Caller, Scope};
use crate::body::{typed, JsonValue, Query};
use crate::dto::page::{finish_page, PageQuery};
use crate::dto::tenant::{
    check_id, check_quotas, notify_column, NewTenant, Tenant, TenantChange, TenantPage,
    TenantSettings,
};
use crate::error::ApiError;
use crate::idempotency;
use crate::responses::{
    AdminAccess, Conflict, IdempotencyKeyHeader, Idempotent, Invalid, JsonBody, NotFound,
    ReadAccess, WriteAccess,
};
use crate::state::AppState;
use crate::tenants::{self, Quotas};

/// Create a tenant with its quotas and a first signing secret.
#[utoipa::path(
    post, path = "/v1/tenants", tag = "tenants", operation_id = "create_tenant",
    params(IdempotencyKeyHeader),
    request_body = NewTenant,
    responses(
        (status = 201, description = "Created", body = Tenant,
         headers(("Location" = String, description = "/v1/tenants/{id}"),
            ("Idempotent-Replayed" = String, description = "`true` when this is the response to an earlier request with the same Idempotency-Key"))),
        (status = 409, response = Conflict),
        AdminAccess, JsonBody, Idempotent,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    // Keys are the calling admin's (its token's tenant), like every key: two operators cannot
    // collide on one, and the tenant being created plays no part in it.
    idempotency::once(
        &state,
        &caller,
        &req,
        &body.0,
        create_once(&state, body.0.clone()),
    )
    .await
}

async fn create_once(state: &AppState, body: serde_json::Value) -> Result<HttpResponse, ApiError> {
    let new: NewTenant = typed(body, "")?;
    check_id(&new.id)?;
    let defaults = Quotas::default();
    let quotas = Quotas {
        max_schedules: new.max_schedules.unwrap_or(defaults.max_schedules),
        min_interval_seconds: new
            .min_interval_seconds
            .unwrap_or(defaults.min_interval_seconds),
        api_rate_per_second: new
            .api_rate_per_second
            .unwrap_or(defaults.api_rate_per_second),
    };
    check_quotas(&quotas)?;
    let id = TenantId(new.id);
    if !tenants::create(&state.db, &state.sealer, &id, quotas, state.clock.now()).await? {
        return Err(ApiError::Conflict(format!("tenant {id} already exists")));
    }
    let created = tenants::load(&state.db, &id).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/tenants/{}", created.id)))
        .json(Tenant::from(created)))
}

/// List tenants, by id.
#[utoipa::path(
    get, path = "/v1/tenants", tag = "tenants", operation_id = "list_tenants",
    params(PageQuery),
    responses(
        (status = 200, description = "A page of tenants", body = TenantPage),
        (status = 422, response = Invalid),
        AdminAccess,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    page: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let limit = page.0.limit()?;
    let mut query = tenant::Entity::find();
    if let Some(cursor) = &page.0.cursor {
        query = query.filter(tenant::Column::Id.gt(cursor.as_str()));
    }
    let rows = query
        .order_by_asc(tenant::Column::Id)
        .limit(limit + 1)
        .all(&state.db)
        .await?;
    let (rows, next_cursor) = finish_page(rows, limit, |t| t.id.clone());
    Ok(HttpResponse::Ok().json(TenantPage {
        items: rows.into_iter().map(Tenant::from).collect(),
        next_cursor,
    }))
}

/// Read a tenant.
#[utoipa::path(
    get, path = "/v1/tenants/{id}", tag = "tenants", operation_id = "get_tenant",
    params(("id" = String, Path, description = "Tenant id")),
    responses(
        (status = 200, description = "The tenant", body = Tenant),
        (status = 404, response = NotFound),
        AdminAccess,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let tenant = tenants::load(&state.db, &TenantId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(Tenant::from(tenant)))
}

/// Change a tenant's quotas, or disable it (its tokens are refused and its schedules stop firing)
/// and enable it again.
#[utoipa::path(
    patch, path = "/v1/tenants/{id}", tag = "tenants", operation_id = "patch_tenant",
    params(("id" = String, Path, description = "Tenant id")),
    request_body = TenantChange,
    responses(
        (status = 200, description = "The changed tenant", body = Tenant),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        AdminAccess, JsonBody,
    ),
    security(("bearer" = ["admin"]))
)]
pub async fn patch(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::Admin)?;
    let change: TenantChange = typed(body.0, "")?;
    let current = tenants::load(&state.db, &TenantId(id.into_inner())).await?;
    let quotas = Quotas {
        max_schedules: change.max_schedules.unwrap_or(current.max_schedules),
        min_interval_seconds: change
            .min_interval_seconds
            .unwrap_or(current.min_interval_seconds),
        api_rate_per_second: change
            .api_rate_per_second
            .unwrap_or(current.api_rate_per_second),
    };
    check_quotas(&quotas)?;
    let disabled = change.disabled.unwrap_or(current.disabled);
    if disabled && !current.disabled && current.id == caller.tenant {
        // The admin's own tenant: disabling it would lock the installation out of its admin API.
        return Err(ApiError::Conflict(
            "an admin cannot disable its own tenant; use an admin token of another tenant".into(),
        ));
    }
    let notify = notify_column(change.notify, state.allow_private_targets)?;
    let mut model = current.into_active_model();
    if let Some(notify) = notify {
        model.notify = Set(notify);
    }
    model.disabled = Set(disabled);
    model.max_schedules = Set(quotas.max_schedules);
    model.min_interval_seconds = Set(quotas.min_interval_seconds);
    model.api_rate_per_second = Set(quotas.api_rate_per_second);
    model.updated_at = Set(state.clock.now());
    let updated = model.update(&state.db).await?;
    Ok(HttpResponse::Ok().json(Tenant::from(updated)))
}

/// The caller's own tenant: its quotas and its settings.
#[utoipa::path(
    get, path = "/v1/tenant", tag = "tenants", operation_id = "get_own_tenant",
    responses(
        (status = 200, description = "The caller's tenant", body = Tenant),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn get_own(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let current = tenants::load(&state.db, &caller.tenant).await?;
    Ok(HttpResponse::Ok().json(Tenant::from(current)))
}

/// Change the caller's own tenant's settings: the default `notify` target of its schedules.
/// Quotas are the operators' (`PATCH /v1/tenants/{id}`).
#[utoipa::path(
    patch, path = "/v1/tenant", tag = "tenants", operation_id = "patch_own_tenant",
    request_body = TenantSettings,
    responses(
        (status = 200, description = "The changed tenant", body = Tenant),
        WriteAccess, JsonBody,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn patch_own(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let settings: TenantSettings = typed(body.0, "")?;
    let current = tenants::load(&state.db, &caller.tenant).await?;
    let mut model = current.into_active_model();
    if let Some(notify) = notify_column(settings.notify, state.allow_private_targets)? {
        model.notify = Set(notify);
    }
    model.updated_at = Set(state.clock.now());
    let updated = model.update(&state.db).await?;
    Ok(HttpResponse::Ok().json(Tenant::from(updated)))
}

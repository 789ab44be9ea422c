//! `/v1/signing-secrets`: the tenant's webhook signing secrets, and their rotation.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Duration;
use hookbeat_entity::signing_secret;
use hookbeat_scheduler::signing::generate_secret;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::auth::{Caller, Scope};
use crate::dto::secret::{SigningSecret, SigningSecrets};
use crate::error::ApiError;
use crate::idempotency;
use crate::responses::{Idempotent, ReadAccess, WriteAccess};
use crate::state::AppState;

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);

async fn current(state: &AppState, caller: &Caller) -> Result<HttpResponse, ApiError> {
    let secrets =
        signing_secret::Entity::find_valid_for_tenant(caller.tenant.as_str(), state.clock.now())
            .all(&state.db)
            .await?;
    Ok(HttpResponse::Ok().json(SigningSecrets {
        secrets: secrets.into_iter().map(SigningSecret::from).collect(),
    }))
}

/// The secrets that currently sign the tenant's deliveries.
#[utoipa::path(
    get, path = "/v1/signing-secrets", tag = "signing-secrets", operation_id = "list_signing_secrets",
    responses(
        (status = 200, description = "The valid secrets, newest first", body = SigningSecrets),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    current(&state, &caller).await
}

/// Make a new secret; the previous one keeps signing beside it for 24 hours.
#[utoipa::path(
    post, path = "/v1/signing-secrets/rotate", tag = "signing-secrets", operation_id = "rotate_signing_secret",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes a retried rotation return the first response (marked Idempotent-Replayed: true) instead of rotating twice; kept 24 h")),
    responses(
        (status = 200, description = "The valid secrets after the rotation, newest first", body = SigningSecrets,
         headers(("Idempotent-Replayed" = String, description = "`true` when this is the response to an earlier request with the same Idempotency-Key"))),
        WriteAccess, Idempotent,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn rotate(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    idempotency::once(
        &state,
        &caller,
        &req,
        &serde_json::Value::Null,
        rotate_once(&state, &caller),
    )
    .await
}

async fn rotate_once(state: &AppState, caller: &Caller) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let txn = hookbeat_scheduler::sql::begin_write(&state.db).await?;
    signing_secret::Entity::update_many()
        .col_expr(
            signing_secret::Column::ExpiresAt,
            sea_orm::sea_query::Expr::value(now + ROTATION_OVERLAP),
        )
        .filter(signing_secret::Column::TenantId.eq(caller.tenant.as_str()))
        .filter(signing_secret::Column::ExpiresAt.is_null())
        .exec(&txn)
        .await?;
    signing_secret::ActiveModel {
        id: Set(Uuid::now_v7()),
        tenant_id: Set(caller.tenant.0.clone()),
        secret: Set(generate_secret()),
        created_at: Set(now),
        expires_at: Set(None),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    current(state, caller).await
}

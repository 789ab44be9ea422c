//! `/v1/signing-secrets`: the tenant's webhook signing secrets, and their rotation.

use actix_web::{web, HttpResponse};
use chrono::Duration;
use hookbeat_entity::signing_secret;
use hookbeat_scheduler::signing::generate_secret;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::auth::{Caller, Scope};
use crate::dto::secret::{SigningSecret, SigningSecrets};
use crate::error::{ApiError, Problem};
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
    get, path = "/v1/signing-secrets", tag = "signing-secrets",
    responses(
        (status = 200, description = "The valid secrets, newest first", body = SigningSecrets),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope schedules:read", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    current(&state, &caller).await
}

/// Make a new secret; the previous one keeps signing beside it for 24 hours.
#[utoipa::path(
    post, path = "/v1/signing-secrets/rotate", tag = "signing-secrets",
    responses(
        (status = 200, description = "The valid secrets after the rotation, newest first", body = SigningSecrets),
        (status = 401, description = "No or bad token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Missing scope schedules:write", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn rotate(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
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
    current(&state, &caller).await
}

//! `/v1/signing-secrets`: the tenant's webhook signing secrets, and their rotation. At most two
//! secrets sign at once: the current one, and during a rotation's overlap the one it replaced.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Duration;
use hookbeat_entity::{signing_secret, tenant};
use hookbeat_scheduler::sealing::Row;
use hookbeat_scheduler::signing::generate_secret;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, QueryFilter, QuerySelect, Set};
use uuid::Uuid;

use crate::auth::{Caller, Scope};
use crate::body::{typed, OptionalJsonValue};
use crate::dto::secret::{ExpirePrevious, RotateRequest, SigningSecret, SigningSecrets};
use crate::error::ApiError;
use crate::idempotency;
use crate::responses::{IdempotencyKeyHeader, Idempotent, JsonBody, WriteAccess};
use crate::state::AppState;

/// How long a rotated-out secret keeps signing beside the new one, unless the rotation says
/// `expire_previous: now`.
pub const ROTATION_OVERLAP: Duration = Duration::hours(24);

async fn current(state: &AppState, caller: &Caller) -> Result<HttpResponse, ApiError> {
    let rows = signing_secret::Entity::find_valid_for_tenant(&caller.tenant, state.clock.now())
        .all(&state.db)
        .await?;
    let mut secrets = Vec::with_capacity(rows.len());
    for row in rows {
        let at = Row::SigningSecret {
            tenant: row.tenant_id.as_str(),
            id: row.id,
        };
        let secret = state
            .sealer
            .open(at, &row.secret)
            .map_err(|error| anyhow::anyhow!("signing secret {} does not open: {error}", row.id))?;
        secrets.push(SigningSecret::shown(row, secret));
    }
    Ok(HttpResponse::Ok().json(SigningSecrets { secrets }))
}

/// The secrets that currently sign the tenant's deliveries. Needs `schedules:write`: whoever
/// holds a secret can sign webhooks that the tenant's receivers accept.
#[utoipa::path(
    get, path = "/v1/signing-secrets", tag = "signing-secrets", operation_id = "list_signing_secrets",
    responses(
        (status = 200, description = "The valid secrets (at most two), newest first", body = SigningSecrets),
        WriteAccess,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    current(&state, &caller).await
}

/// Make a new secret. The one it replaces keeps signing beside it for 24 hours, or stops at once
/// with `{"expire_previous": "now"}` (for a secret that leaked); any older secret stops at once.
/// The body is optional: none, `null` or `{}` rotates with the 24-hour overlap.
#[utoipa::path(
    post, path = "/v1/signing-secrets/rotate", tag = "signing-secrets", operation_id = "rotate_signing_secret",
    params(IdempotencyKeyHeader),
    request_body(content = Option<RotateRequest>, content_type = "application/json",
        description = "Optional: without a body (or with `{}` or `null`) the replaced secret signs on for 24 hours",
        example = json!({"expire_previous": "now"})),
    responses(
        (status = 200, description = "The valid secrets after the rotation, newest first", body = SigningSecrets,
         headers(("Idempotent-Replayed" = String, description = "`true` when this is the response to an earlier request with the same Idempotency-Key"))),
        WriteAccess, JsonBody, Idempotent,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn rotate(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: OptionalJsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let request: RotateRequest = match body.0 {
        None | Some(serde_json::Value::Null) => RotateRequest::default(),
        Some(body) if !body.is_object() => {
            return Err(ApiError::validation("body", "must be a JSON object"))
        }
        Some(body) => typed(body, "")?,
    };
    // The request as understood, so that no body and `{}` are one request to the key.
    let fingerprint = serde_json::to_value(&request).map_err(anyhow::Error::from)?;
    idempotency::once(
        &state,
        &caller,
        &req,
        &fingerprint,
        rotate_once(&state, &caller, request.expire_previous),
    )
    .await
}

async fn rotate_once(
    state: &AppState,
    caller: &Caller,
    expire_previous: ExpirePrevious,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let tenant = &caller.tenant;
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    // Rotations of one tenant take turns (PostgreSQL; SQLite has one writer anyway), so each
    // sees the secret the one before made current, and two at once cannot leave three valid.
    tenant::Entity::find_tenant(tenant)
        .lock_exclusive()
        .one(&txn)
        .await?;
    // Older secrets still in their overlap stop at once…
    signing_secret::Entity::update_for_tenant(tenant)
        .col_expr(signing_secret::Column::ExpiresAt, Expr::value(now))
        .filter(signing_secret::Column::ExpiresAt.gt(now))
        .exec(&txn)
        .await?;
    // …the current one signs on for the overlap, or stops now too…
    let until = match expire_previous {
        ExpirePrevious::After24Hours => now + ROTATION_OVERLAP,
        ExpirePrevious::Now => now,
    };
    signing_secret::Entity::update_for_tenant(tenant)
        .col_expr(signing_secret::Column::ExpiresAt, Expr::value(until))
        .filter(signing_secret::Column::ExpiresAt.is_null())
        .exec(&txn)
        .await?;
    // …and the new one is current.
    let id = Uuid::now_v7();
    let row = Row::SigningSecret {
        tenant: tenant.as_str(),
        id,
    };
    signing_secret::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant.clone()),
        secret: Set(state.sealer.seal(row, &generate_secret())),
        created_at: Set(now),
        expires_at: Set(None),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    current(state, caller).await
}

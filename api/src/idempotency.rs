//! `Idempotency-Key`: a client that retries a POST (after a timeout, say) with the same key gets
//! the first response again, marked `Idempotent-Replayed: true`, instead of a duplicate or a 409.
//!
//! The key is reserved before the request is handled, so two concurrent requests with one key
//! cannot both act (the second gets 409 until the first finished). Only successful responses are
//! remembered; after a failure the key is free again. The same key with a different request
//! (method, path or body) is refused (422). Keys are kept for `idempotency_key::KEY_TTL`.
//!
//! A reservation is a lease of [`RESERVATION_LEASE`]: a request that crashed (or whose process
//! died) while holding a key does not block its retries for a day; once the lease has run out, a
//! retry with the same request takes the key over. Taking over is one conditional `UPDATE` on the
//! row as it was read, so of two retries racing for a stale key exactly one wins.

use actix_web::body::MessageBody;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::idempotency_key::{self, KEY_TTL};
use hookbeat_entity::TenantId;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub const HEADER: &str = "idempotency-key";
const MAX_KEY_LEN: usize = 255;
/// How long a reservation holds its key without an answer: far longer than any request takes
/// (bodies are read within 30 s, statements are short), short enough for a client's retries.
pub const RESERVATION_LEASE: Duration = Duration::seconds(60);

/// Runs `handle` at most once per idempotency key (when the request has one).
pub async fn once<F>(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    body: &serde_json::Value,
    handle: F,
) -> Result<HttpResponse, ApiError>
where
    F: std::future::Future<Output = Result<HttpResponse, ApiError>>,
{
    let Some(key) = req.headers().get(HEADER) else {
        return handle.await;
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
        .ok_or_else(|| {
            ApiError::validation(
                "Idempotency-Key",
                format!("must be 1 to {MAX_KEY_LEN} visible ASCII characters"),
            )
        })?
        .to_owned();
    let fingerprint = fingerprint(req, body);
    let now = state.clock.now();
    let tenant = caller.tenant.clone();

    if !reserve(state, &tenant, &key, &fingerprint, now).await? {
        let existing = idempotency_key::Entity::find_by_id((tenant.clone(), key.clone()))
            .one(&state.db)
            .await?;
        match existing {
            Some(existing)
                if existing.created_at < now - KEY_TTL
                    || (existing.status.is_none()
                        && existing.fingerprint == fingerprint
                        && existing.created_at < now - RESERVATION_LEASE) =>
            {
                // Expired but not pruned yet, or a reservation whose holder never answered:
                // take the key anew, unless a racing retry took it first.
                if !take_over(state, &existing, &fingerprint, now).await? {
                    return Err(in_progress());
                }
            }
            Some(existing) if existing.fingerprint != fingerprint => {
                return Err(ApiError::validation(
                    "Idempotency-Key",
                    "was already used for a different request; use a new key for a new request",
                ))
            }
            Some(existing) => return replay(existing),
            None => return Err(in_progress()),
        }
    }

    let result = handle.await;
    match result {
        Ok(response) if response.status().is_success() => {
            remember(state, &tenant, &key, response).await
        }
        other => {
            idempotency_key::Entity::delete_by_id((tenant, key))
                .exec(&state.db)
                .await?;
            other
        }
    }
}

fn in_progress() -> ApiError {
    ApiError::Conflict(
        "a request with this Idempotency-Key is still being handled; retry shortly".into(),
    )
}

fn fingerprint(req: &HttpRequest, body: &serde_json::Value) -> String {
    let mut hash = Sha256::new();
    hash.update(req.method().as_str());
    hash.update(b" ");
    hash.update(req.path());
    hash.update(b"\n");
    hash.update(body.to_string());
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Takes the key for this request; `false` when it is already taken.
async fn reserve(
    state: &AppState,
    tenant: &TenantId,
    key: &str,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let inserted = idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        tenant_id: Set(tenant.clone()),
        key: Set(key.to_owned()),
        fingerprint: Set(fingerprint.to_owned()),
        status: Set(None),
        body: Set(None),
        location: Set(None),
        etag: Set(None),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            idempotency_key::Column::TenantId,
            idempotency_key::Column::Key,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(&state.db)
    .await?;
    Ok(inserted == 1)
}

/// Takes over `existing` (as read) for this request: `false` when the row changed meanwhile.
async fn take_over(
    state: &AppState,
    existing: &idempotency_key::Model,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    let taken = idempotency_key::Entity::update_many()
        .col_expr(
            idempotency_key::Column::Fingerprint,
            Expr::value(fingerprint),
        )
        .col_expr(
            idempotency_key::Column::Status,
            Expr::value(Option::<i32>::None),
        )
        .col_expr(
            idempotency_key::Column::Body,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            idempotency_key::Column::Location,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            idempotency_key::Column::Etag,
            Expr::value(Option::<String>::None),
        )
        .col_expr(idempotency_key::Column::CreatedAt, Expr::value(now))
        .filter(idempotency_key::Column::TenantId.eq(existing.tenant_id.as_str()))
        .filter(idempotency_key::Column::Key.eq(existing.key.as_str()))
        .filter(idempotency_key::Column::CreatedAt.eq(existing.created_at))
        .exec(&state.db)
        .await?;
    Ok(taken.rows_affected == 1)
}

async fn remember(
    state: &AppState,
    tenant: &TenantId,
    key: &str,
    response: HttpResponse,
) -> Result<HttpResponse, ApiError> {
    let status = response.status();
    let header_text = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (location, etag) = (header_text(header::LOCATION), header_text(header::ETAG));
    let bytes = response
        .into_body()
        .try_into_bytes()
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("a response to remember was streamed")))?;
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let row = idempotency_key::Entity::find_by_id((tenant.clone(), key.to_owned()))
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an idempotency key vanished")))?;
    let mut row = row.into_active_model();
    row.status = Set(Some(i32::from(status.as_u16())));
    row.body = Set(Some(body));
    row.location = Set(location);
    row.etag = Set(etag);
    let saved = row.update(&state.db).await?;
    build(&saved, false)
}

fn replay(saved: idempotency_key::Model) -> Result<HttpResponse, ApiError> {
    build(&saved, true)
}

fn build(saved: &idempotency_key::Model, replayed: bool) -> Result<HttpResponse, ApiError> {
    let status = saved
        .status
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .ok_or_else(in_progress)?;
    let mut response = HttpResponse::build(status);
    response.content_type("application/json");
    if let Some(location) = &saved.location {
        response.insert_header((header::LOCATION, location.as_str()));
    }
    if let Some(etag) = &saved.etag {
        response.insert_header((header::ETAG, etag.as_str()));
    }
    if replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    Ok(response.body(saved.body.clone().unwrap_or_default()))
}

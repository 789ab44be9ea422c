//! `/v1/schedules`: create, list, read, change, delete, pause, resume, trigger and preview.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use hookbeat_entity::schedule;
use hookbeat_scheduler::shards::shard_of;
use sea_orm::sea_query::{Expr, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use hookbeat_scheduler::notify::announce;

use crate::auth::{Caller, Scope};
use crate::body::{merge_patch, JsonValue, Query};
use crate::dto::page::{finish_page, PageQuery};
use crate::dto::schedule::{
    first_fire, Schedule, ScheduleFilter, ScheduleInput, SchedulePage, READ_ONLY,
};
use crate::error::ApiError;
use crate::idempotency;
use crate::responses::{
    BadRequest, Conflict, Invalid, JsonBody, NotFound, PreconditionFailed, ReadAccess, WriteAccess,
};
use crate::routes::{if_match, parse_id};
use crate::state::AppState;

/// Read-modify-write attempts of a PATCH without `If-Match` before it gives up to a racing writer.
pub(super) const PATCH_ATTEMPTS: usize = 3;

fn created(schedule: Schedule) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/schedules/{}", schedule.id)))
        .insert_header((header::ETAG, schedule.etag()))
        .json(schedule)
}

pub(super) fn ok(schedule: Schedule) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, schedule.etag()))
        .json(schedule)
}

pub(super) async fn load(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
) -> Result<schedule::Model, ApiError> {
    schedule::Entity::find_for_tenant(caller.tenant.as_str())
        .filter(schedule::Column::Id.eq(id))
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))
}

/// Create a schedule.
#[utoipa::path(
    post, path = "/v1/schedules", tag = "schedules", operation_id = "create_schedule",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes a retried POST return the first response (marked Idempotent-Replayed: true) instead of creating twice; kept 24 h")),
    request_body = ScheduleInput,
    responses(
        (status = 201, description = "Created", body = Schedule,
         headers(("Location" = String, description = "/v1/schedules/{id}"), ("ETag" = String),
            ("Idempotent-Replayed" = String, description = "`true` when this is the response to an earlier request with the same Idempotency-Key"))),
        (status = 409, response = Conflict),
        WriteAccess, JsonBody,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    idempotency::once(
        &state,
        &caller,
        &req,
        &body.0,
        create_once(&state, &caller, body.0.clone()),
    )
    .await
}

async fn create_once(
    state: &AppState,
    caller: &Caller,
    body: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    let input = ScheduleInput::from_json(body)?;
    let timing = input.validate(state.allow_private_targets)?;
    let now = state.clock.now();
    check_min_interval(caller, &timing, now)?;
    // The quota is checked and the row inserted in one transaction that holds the tenant's row
    // (PostgreSQL; SQLite's write lock serialises it anyway), so concurrent creates cannot
    // together pass it.
    let txn = hookbeat_scheduler::sql::begin_write(&state.db).await?;
    let account = hookbeat_entity::tenant::Entity::find_by_id(caller.tenant.as_str())
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::Forbidden(format!("tenant {} no longer exists", caller.tenant)))?;
    let existing = schedule::Entity::find_for_tenant(caller.tenant.as_str())
        .count(&txn)
        .await?;
    if existing as i64 >= account.max_schedules {
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "tenant {} has {existing} schedules, its quota is {}; delete some or ask for a higher quota",
                caller.tenant, account.max_schedules
            ),
            retry_after_seconds: QUOTA_RETRY_AFTER_SECONDS,
        });
    }
    let next_run_at = first_fire(&input, &timing, now, 0)?;
    let id = Uuid::now_v7();
    let model = schedule::ActiveModel {
        id: Set(id),
        tenant_id: Set(caller.tenant.0.clone()),
        shard: Set(shard_of(id)),
        name: Set(input.name.clone()),
        description: Set(input.description.clone()),
        spec: Set(json(&input.schedule)?),
        target: Set(json(&input.target)?),
        retry: Set(json(&input.retry)?),
        start_at: Set(input.start_at),
        end_at: Set(input.end_at),
        max_runs: Set(input.max_runs),
        jitter_ms: Set(input.jitter_ms),
        catchup: Set(input.catchup.as_str().to_owned()),
        overlap: Set(input.overlap.as_str().to_owned()),
        enabled: Set(input.enabled),
        paused_reason: Set(None),
        metadata: Set(serde_json::Value::Object(input.metadata.clone())),
        next_run_at: Set(next_run_at),
        last_run_at: Set(None),
        total_runs: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        version: Set(1),
        chain: Set(chain_of(&input)?),
        on_failure: Set(input.on_failure.as_ref().map(json).transpose()?),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    announce(&state.db, &state.wakeup).await;
    Ok(created(Schedule::from_model(model)?))
}

/// How long a client over its schedule quota is told to wait: quotas change by hand.
const QUOTA_RETRY_AFTER_SECONDS: u64 = 3600;

/// Refuses a schedule whose fires come closer together than the tenant's minimum interval.
fn check_min_interval(
    caller: &Caller,
    timing: &hookbeat_scheduler::schedule::Timing,
    now: chrono::DateTime<Utc>,
) -> Result<(), ApiError> {
    let minimum = caller.account.min_interval_seconds;
    match timing.shortest_gap(now) {
        Some(gap) if gap < chrono::Duration::seconds(minimum) => Err(ApiError::validation(
            "schedule",
            format!(
                "fires as often as every {} s; this tenant's minimum interval is {minimum} s",
                gap.num_milliseconds() as f64 / 1000.0
            ),
        )),
        _ => Ok(()),
    }
}

/// The `then` steps as stored: `NULL` for none.
fn chain_of(input: &ScheduleInput) -> Result<Option<serde_json::Value>, ApiError> {
    (!input.then.is_empty())
        .then(|| json(&input.then))
        .transpose()
}

pub(super) fn json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(e.into()))
}

/// List schedules, oldest first.
#[utoipa::path(
    get, path = "/v1/schedules", tag = "schedules", operation_id = "list_schedules",
    params(PageQuery, ScheduleFilter),
    responses(
        (status = 200, description = "A page of schedules", body = SchedulePage),
        (status = 422, response = Invalid),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    page: Query<PageQuery>,
    filter: Query<ScheduleFilter>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let limit = page.0.limit()?;
    let mut query = schedule::Entity::find_for_tenant(caller.tenant.as_str());
    if let Some(cursor) = page.0.cursor()? {
        query = query.filter(schedule::Column::Id.gt(cursor));
    }
    if let Some(enabled) = filter.0.enabled {
        query = query.filter(schedule::Column::Enabled.eq(enabled));
    }
    if let Some(prefix) = &filter.0.name_prefix {
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        query = query.filter(
            Expr::col(schedule::Column::Name)
                .like(LikeExpr::new(format!("{escaped}%")).escape('\\')),
        );
    }
    let rows = query
        .order_by_asc(schedule::Column::Id)
        .limit(limit + 1)
        .all(&state.db)
        .await?;
    let (rows, next_cursor) = finish_page(rows, limit, |s| s.id);
    let items = rows
        .into_iter()
        .map(Schedule::from_model)
        .collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(SchedulePage { items, next_cursor }))
}

/// Read a schedule.
#[utoipa::path(
    get, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "get_schedule",
    params(("id" = Uuid, Path, description = "Schedule id")),
    responses(
        (status = 200, description = "The schedule", body = Schedule, headers(("ETag" = String))),
        (status = 404, response = NotFound),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let id = parse_id(&id, "schedule")?;
    Ok(ok(Schedule::from_model(load(&state, &caller, id).await?)?))
}

/// Change a schedule with a JSON merge patch (RFC 7396). The change takes effect at once;
/// `next_run_at` is recomputed when the timing changed.
#[utoipa::path(
    patch, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "patch_schedule",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        ("If-Match" = Option<String>, Header, description = "The ETag the change is based on; 412 if stale"),
    ),
    request_body(content = Object, content_type = "application/merge-patch+json",
        description = "Members of ScheduleInput to change; null removes an optional member",
        example = crate::dto::examples::schedule_patch),
    responses(
        (status = 200, description = "The changed schedule", body = Schedule, headers(("ETag" = String))),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        WriteAccess, JsonBody,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn patch(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let id = parse_id(&id, "schedule")?;
    let expected = if_match(&req)?;
    let patch = body.0;
    let Some(members) = patch.as_object() else {
        return Err(ApiError::validation(
            "body",
            "a merge patch must be a JSON object",
        ));
    };
    if let Some(field) = READ_ONLY.iter().find(|f| members.contains_key(**f)) {
        return Err(ApiError::validation(*field, "is read-only"));
    }

    for _ in 0..PATCH_ATTEMPTS {
        let current = load(&state, &caller, id).await?;
        if let Some(versions) = &expected {
            if !versions.contains(&current.version) {
                return Err(ApiError::PreconditionFailed(format!(
                    "the schedule is at version {}, not the one If-Match names",
                    current.version
                )));
            }
        }
        let before = ScheduleInput::from_model(&current)?;
        let mut document = json(&before)?;
        merge_patch(&mut document, &patch);
        let after = ScheduleInput::from_json(document)?;
        if let Some(updated) = apply(&state, &caller, &current, &before, after).await? {
            return Ok(ok(Schedule::from_model(updated)?));
        }
        if expected.is_some() {
            return Err(ApiError::PreconditionFailed(
                "the schedule changed while this request ran".into(),
            ));
        }
    }
    Err(ApiError::Conflict(
        "the schedule kept changing under this request; try again".into(),
    ))
}

/// Replaces the writable members of `current` (which `before` describes) with `after`:
/// validated, the timing recomputed when it changed, saved only if nobody changed the schedule
/// meanwhile (`None` then), and announced to the workers.
async fn apply(
    state: &AppState,
    caller: &Caller,
    current: &schedule::Model,
    before: &ScheduleInput,
    after: ScheduleInput,
) -> Result<Option<schedule::Model>, ApiError> {
    let timing = after.validate(state.allow_private_targets)?;
    let now = state.clock.now();
    let mut model = current.clone().into_active_model();
    if after.schedule != before.schedule {
        check_min_interval(caller, &timing, now)?;
    }
    if !after.same_timing(before) {
        model.next_run_at = Set(first_fire(&after, &timing, now, current.total_runs)?);
    }
    if after.enabled && !before.enabled {
        model.paused_reason = Set(None);
    }
    model.name = Set(after.name.clone());
    model.description = Set(after.description.clone());
    model.spec = Set(json(&after.schedule)?);
    model.target = Set(json(&after.target)?);
    model.retry = Set(json(&after.retry)?);
    model.start_at = Set(after.start_at);
    model.end_at = Set(after.end_at);
    model.max_runs = Set(after.max_runs);
    model.jitter_ms = Set(after.jitter_ms);
    model.catchup = Set(after.catchup.as_str().to_owned());
    model.overlap = Set(after.overlap.as_str().to_owned());
    model.enabled = Set(after.enabled);
    model.metadata = Set(serde_json::Value::Object(after.metadata.clone()));
    model.chain = Set(chain_of(&after)?);
    model.on_failure = Set(after.on_failure.as_ref().map(json).transpose()?);
    let updated = save_if_unchanged(state, model, current, now).await?;
    if updated.is_some() {
        announce(&state.db, &state.wakeup).await;
    }
    Ok(updated)
}

/// Create or replace a schedule by its name: an idempotent way to keep schedules in step with
/// configuration (infrastructure as code). The body is a whole schedule; its `name`, if given,
/// must be the one in the path. 201 when created, 200 when replaced.
#[utoipa::path(
    put, path = "/v1/schedules/by-name/{name}", tag = "schedules", operation_id = "put_schedule_by_name",
    params(
        ("name" = String, Path, description = "Schedule name"),
        ("If-Match" = Option<String>, Header, description = "Replace only at this ETag; 412 if stale or absent"),
    ),
    request_body = ScheduleInput,
    responses(
        (status = 200, description = "Replaced", body = Schedule, headers(("ETag" = String))),
        (status = 201, description = "Created", body = Schedule, headers(("Location" = String), ("ETag" = String))),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        WriteAccess, JsonBody,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn put_by_name(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    name: web::Path<String>,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let name = name.into_inner();
    let mut document = body.0;
    match document.as_object_mut() {
        None => return Err(ApiError::validation("body", "must be a JSON object")),
        Some(members) => match members.get("name") {
            None => {
                members.insert("name".to_owned(), serde_json::Value::String(name.clone()));
            }
            Some(given) if given.as_str() != Some(name.as_str()) => {
                return Err(ApiError::validation("name", "must be the name in the path"));
            }
            Some(_) => {}
        },
    }
    let expected = if_match(&req)?;
    for _ in 0..PATCH_ATTEMPTS {
        let current = schedule::Entity::find_for_tenant(caller.tenant.as_str())
            .filter(schedule::Column::Name.eq(name.as_str()))
            .one(&state.db)
            .await?;
        match current {
            None if expected.is_some() => {
                return Err(ApiError::PreconditionFailed(
                    "no schedule has this name".into(),
                ))
            }
            None => match create_once(&state, &caller, document.clone()).await {
                // Created concurrently by another request: replace it on the next round.
                Err(ApiError::Conflict(_)) => continue,
                other => return other,
            },
            Some(current) => {
                if let Some(versions) = &expected {
                    if !versions.contains(&current.version) {
                        return Err(ApiError::PreconditionFailed(format!(
                            "the schedule is at version {}, not the one If-Match names",
                            current.version
                        )));
                    }
                }
                let before = ScheduleInput::from_model(&current)?;
                let after = ScheduleInput::from_json(document.clone())?;
                if let Some(updated) = apply(&state, &caller, &current, &before, after).await? {
                    return Ok(ok(Schedule::from_model(updated)?));
                }
            }
        }
    }
    Err(ApiError::Conflict(
        "the schedule kept changing under this request; try again".into(),
    ))
}

/// Saves `model` only if the row is still at `current.version` (optimistic concurrency), bumping
/// the version. `None` when another writer got there first.
pub(super) async fn save_if_unchanged(
    state: &AppState,
    mut model: schedule::ActiveModel,
    current: &schedule::Model,
    now: chrono::DateTime<Utc>,
) -> Result<Option<schedule::Model>, ApiError> {
    model.version = Set(current.version + 1);
    model.updated_at = Set(now);
    // Runtime state belongs to the worker; only the columns set above are written.
    model.last_run_at = sea_orm::ActiveValue::NotSet;
    model.total_runs = sea_orm::ActiveValue::NotSet;
    let result = schedule::Entity::update_many()
        .set(model)
        .filter(schedule::Column::Id.eq(current.id))
        .filter(schedule::Column::TenantId.eq(current.tenant_id.as_str()))
        .filter(schedule::Column::Version.eq(current.version))
        .exec(&state.db)
        .await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    Ok(schedule::Entity::find_by_id(current.id)
        .one(&state.db)
        .await?)
}

/// Delete a schedule and its run history.
#[utoipa::path(
    delete, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "delete_schedule",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        ("If-Match" = Option<String>, Header, description = "Delete only at this ETag; 412 if stale"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        WriteAccess,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let id = parse_id(&id, "schedule")?;
    let mut query = schedule::Entity::delete_many()
        .filter(schedule::Column::Id.eq(id))
        .filter(schedule::Column::TenantId.eq(caller.tenant.as_str()));
    if let Some(versions) = if_match(&req)? {
        let current = load(&state, &caller, id).await?;
        if !versions.contains(&current.version) {
            return Err(ApiError::PreconditionFailed(format!(
                "the schedule is at version {}, not the one If-Match names",
                current.version
            )));
        }
        query = query.filter(schedule::Column::Version.eq(current.version));
    }
    match query.exec(&state.db).await?.rows_affected {
        0 => Err(ApiError::not_found("schedule")),
        _ => Ok(HttpResponse::NoContent().finish()),
    }
}

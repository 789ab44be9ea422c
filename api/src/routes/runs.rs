//! Run history (`/v1/runs`, `/v1/schedules/{id}/runs`), one run with its attempts, and
//! redelivery of failed runs.

use actix_web::{web, HttpRequest, HttpResponse};
use hookbeat_entity::run::RunStatus;
use hookbeat_entity::{run, ScheduleId};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};

use hookbeat_scheduler::notify::announce;
use hookbeat_scheduler::runs;

use crate::auth::{Caller, Scope};
use crate::body::Query;
use crate::dto::page::{finish_page, PageQuery};
use crate::dto::run::{Attempt, Run, RunDetail, RunFilter, RunPage};
use crate::error::ApiError;
use crate::idempotency;
use crate::responses::{
    Conflict, IdempotencyKeyHeader, Idempotent, Invalid, NotFound, ReadAccess, WriteAccess,
};
use crate::routes::parse_id;
use crate::schedules;
use crate::state::AppState;

async fn page(
    state: &AppState,
    caller: &Caller,
    schedule_id: Option<ScheduleId>,
    page: &PageQuery,
    filter: &RunFilter,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let limit = page.limit()?;
    let mut query = run::Entity::find_for_tenant(&caller.tenant);
    if let Some(schedule_id) = schedule_id {
        query = query.filter(run::Column::ScheduleId.eq(schedule_id));
    }
    if let Some(status) = filter.status()? {
        query = query.filter(run::Column::Status.eq(status));
    }
    if let Some(cursor) = page.cursor()? {
        query = query.filter(run::Column::Id.lt(cursor));
    }
    let rows = query
        .order_by_desc(run::Column::Id)
        .limit(limit + 1)
        .all(&state.db)
        .await?;
    let (rows, next_cursor) = finish_page(rows, limit, |r| r.id);
    Ok(HttpResponse::Ok().json(RunPage {
        items: rows.into_iter().map(Run::from).collect(),
        next_cursor,
    }))
}

/// The tenant's runs, newest first.
#[utoipa::path(
    get, path = "/v1/runs", tag = "runs", operation_id = "list_runs",
    params(PageQuery, RunFilter),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 422, response = Invalid),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    query: Query<PageQuery>,
    filter: Query<RunFilter>,
) -> Result<HttpResponse, ApiError> {
    page(&state, &caller, None, &query.0, &filter.0).await
}

/// One schedule's runs, newest first.
#[utoipa::path(
    get, path = "/v1/schedules/{id}/runs", tag = "runs", operation_id = "list_schedule_runs",
    params(("id" = Uuid, Path, description = "Schedule id"), PageQuery, RunFilter),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn list_for_schedule(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: Query<PageQuery>,
    filter: Query<RunFilter>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let id = parse_id(&id, "schedule")?;
    schedules::load(&state.db, &caller.tenant, id).await?;
    page(&state, &caller, Some(id), &query.0, &filter.0).await
}

async fn load(state: &AppState, caller: &Caller, raw_id: &str) -> Result<run::Model, ApiError> {
    let id = parse_id(raw_id, "run")?;
    run::Entity::find_for_tenant_by_id(&caller.tenant, id)
        .one(&state.db)
        .await?
        .ok_or_else(|| ApiError::not_found("run"))
}

/// One run with every attempt.
#[utoipa::path(
    get, path = "/v1/runs/{id}", tag = "runs", operation_id = "get_run",
    params(("id" = Uuid, Path, description = "Run id")),
    responses(
        (status = 200, description = "The run and its attempts", body = RunDetail),
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
    let run = load(&state, &caller, &id).await?;
    let attempts = hookbeat_scheduler::runs::attempts_of(&state.db, &run).await?;
    Ok(HttpResponse::Ok().json(RunDetail {
        run: Run::from(run),
        attempts: attempts.into_iter().map(Attempt::from).collect(),
    }))
}

/// Deliver a failed run again, with a fresh retry budget and the same `webhook-id`.
///
/// Only a `failed` run can be redelivered (409 otherwise). It resumes the step that failed.
#[utoipa::path(
    post, path = "/v1/runs/{id}/redeliver", tag = "runs", operation_id = "redeliver_run",
    params(
        ("id" = Uuid, Path, description = "Run id"),
        IdempotencyKeyHeader,
    ),
    responses(
        (status = 202, description = "The run, queued again", body = Run,
         headers(("Idempotent-Replayed" = String, description = "`true` when this is the response to an earlier request with the same Idempotency-Key"))),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        WriteAccess, Idempotent,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn redeliver(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let current = load(&state, &caller, &id).await?;
    // The state check runs inside: a retry with the key replays the 202 rather than a 409 for a
    // run that the first request already queued.
    idempotency::once(
        &state,
        &caller,
        &req,
        &serde_json::Value::Null,
        redeliver_once(&state, current),
    )
    .await
}

async fn redeliver_once(state: &AppState, current: run::Model) -> Result<HttpResponse, ApiError> {
    if current.status != RunStatus::Failed {
        return Err(ApiError::Conflict(format!(
            "only failed runs can be redelivered; this one is {}",
            current.status
        )));
    }
    let updated = runs::redeliver(&state.db, &current, state.clock.now())
        .await
        .map_err(ApiError::Internal)?
        .ok_or_else(|| {
            ApiError::Conflict("the run was redelivered by another request meanwhile".into())
        })?;
    announce(&state.db, &state.wakeup, None).await;
    Ok(HttpResponse::Accepted().json(Run::from(updated)))
}

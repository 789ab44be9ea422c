//! `/v1/schedules` actions beyond CRUD: pause, resume, trigger, backfill, and preview.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use hookbeat_entity::schedule_revision::RevisionAction;
use hookbeat_entity::{run, schedule};
use hookbeat_scheduler::calendar;
use hookbeat_scheduler::notify::announce;
use hookbeat_scheduler::revisions::Change;
use hookbeat_scheduler::runs::{self, NewRun};
use hookbeat_scheduler::schedule::preview_local;
use hookbeat_scheduler::stored;
use hookbeat_scheduler::validation::{FieldError, FieldErrors};
use sea_orm::{ActiveModelTrait, ColumnTrait, IntoActiveModel, QueryFilter, QuerySelect, Set};

use super::schedules::ok;
use crate::auth::{Caller, Scope};
use crate::body::{typed, JsonValue};
use crate::dto::run::Run;
use crate::dto::schedule::{
    exclusions, BackfillRequest, BackfillResult, FireTimes, PreviewRequest, Schedule,
    DEFAULT_PREVIEW_COUNT, MAX_PREVIEW_COUNT,
};
use crate::error::ApiError;
use crate::idempotency;
use crate::responses::{
    ChangeReasonHeader, Conflict, IdempotencyKeyHeader, Idempotent, Invalid, JsonBody, NotFound,
    ReadAccess, WriteAccess,
};
use crate::routes::{change_reason, parse_id};
use crate::schedules::{self, Key};
use crate::state::AppState;

/// Pause a schedule: it stops firing until resumed. Runs already made are still delivered.
/// Pausing a paused schedule changes nothing.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/pause", tag = "schedules", operation_id = "pause_schedule",
    params(("id" = Uuid, Path, description = "Schedule id"), ChangeReasonHeader),
    responses(
        (status = 200, description = "The paused schedule", body = Schedule),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
        WriteAccess,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn pause(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &caller, &req, &id, false).await
}

/// Resume a paused schedule. It fires from now on; fires that fell in the pause are not made up.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/resume", tag = "schedules", operation_id = "resume_schedule",
    params(("id" = Uuid, Path, description = "Schedule id"), ChangeReasonHeader),
    responses(
        (status = 200, description = "The resumed schedule", body = Schedule),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
        WriteAccess,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn resume(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    set_enabled(&state, &caller, &req, &id, true).await
}

async fn set_enabled(
    state: &AppState,
    caller: &Caller,
    req: &HttpRequest,
    raw_id: &str,
    enabled: bool,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let id = parse_id(raw_id, "schedule")?;
    let author = caller.author(change_reason(req)?);
    let action = if enabled {
        RevisionAction::Resumed
    } else {
        RevisionAction::Paused
    };
    let calendars = match enabled {
        true => crate::calendars::of_tenant(&state.db, &caller.tenant).await?,
        false => Default::default(),
    };
    let updated = schedules::update_if_version(
        state,
        &caller.tenant,
        Key::Id(id),
        None,
        Change::new(action, &author),
        |current, now| {
            if current.enabled == enabled {
                return Ok(None);
            }
            let mut row = current.clone().into_active_model();
            row.enabled = Set(enabled);
            if enabled {
                let mut timing = stored::timing(current)?;
                timing.exclude = calendar::exclusions(&stored::exclude(current)?, &calendars)?;
                row.next_run_at = Set(timing.next_fire(now, current.total_runs));
                row.paused_reason = Set(None);
            } else {
                row.paused_reason = Set(Some("paused through the API".to_owned()));
            }
            Ok(Some(row))
        },
    )
    .await?
    .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(ok(schedules::view(state, updated).await?))
}

/// Fire a schedule once now, outside its timing. The run is delivered like any other.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/trigger", tag = "schedules", operation_id = "trigger_schedule",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        IdempotencyKeyHeader,
    ),
    responses(
        (status = 202, description = "The run, accepted for delivery", body = Run,
         headers(("Idempotent-Replayed" = String, description = "`true` when this is the response to an earlier request with the same Idempotency-Key"))),
        (status = 404, response = NotFound),
        WriteAccess, Idempotent,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn trigger(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let id = parse_id(&id, "schedule")?;
    let schedule = schedules::load(&state.db, &caller.tenant, id).await?;
    idempotency::once(
        &state,
        &caller,
        &req,
        &serde_json::Value::Null,
        trigger_once(&state, &caller, &schedule),
    )
    .await
}

async fn trigger_once(
    state: &AppState,
    caller: &Caller,
    schedule: &schedule::Model,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let mut made = make_runs(state, caller, schedule, &[now], run::trigger::MANUAL).await?;
    let run = made
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a triggered run was not made")))?;
    Ok(HttpResponse::Accepted().json(Run::from(run)))
}

/// Make the runs a schedule would have made between `from` and `to` (at most 1000), delivered
/// like any other run with `trigger: backfill`. The window honours `start_at` and `end_at`.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/backfill", tag = "schedules", operation_id = "backfill_schedule",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        IdempotencyKeyHeader,
    ),
    request_body = BackfillRequest,
    responses(
        (status = 202, description = "The runs were made", body = BackfillResult,
         headers(("Idempotent-Replayed" = String, description = "`true` when this is the response to an earlier request with the same Idempotency-Key"))),
        (status = 404, response = NotFound),
        WriteAccess, JsonBody, Idempotent,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn backfill(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    id: web::Path<String>,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let id = parse_id(&id, "schedule")?;
    let schedule = schedules::load(&state.db, &caller.tenant, id).await?;
    idempotency::once(
        &state,
        &caller,
        &req,
        &body.0,
        backfill_once(&state, &caller, &schedule, body.0.clone()),
    )
    .await
}

async fn backfill_once(
    state: &AppState,
    caller: &Caller,
    schedule: &schedule::Model,
    body: serde_json::Value,
) -> Result<HttpResponse, ApiError> {
    let request: BackfillRequest = typed(body, "")?;
    let now = state.clock.now();
    if request.to > now {
        return Err(ApiError::validation(
            "to",
            "must not be in the future: upcoming fires are made by the schedule itself",
        ));
    }
    if request.from > request.to {
        return Err(ApiError::validation("from", "must not be after to"));
    }
    let fires = schedules::fires_between(state, caller, schedule, request.from, request.to).await?;
    make_runs(state, caller, schedule, &fires, run::trigger::BACKFILL).await?;
    Ok(HttpResponse::Accepted().json(BackfillResult {
        created: fires.len(),
        fire_times: fires,
    }))
}

/// Makes runs of `schedule` for `fires` outside its own timing (a trigger, a backfill): due now,
/// counted in its `total_runs` and `last_run_at`, in one transaction that holds the schedule's
/// row, so concurrent requests cannot together pass its `max_runs`; then wakes the workers.
async fn make_runs(
    state: &AppState,
    caller: &Caller,
    schedule: &schedule::Model,
    fires: &[chrono::DateTime<Utc>],
    trigger: &'static str,
) -> Result<Vec<run::Model>, ApiError> {
    if fires.is_empty() {
        return Ok(Vec::new());
    }
    let now = state.clock.now();
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    // PostgreSQL: the row lock orders concurrent requests; SQLite: the write lock already does.
    let current = schedule::Entity::find_for_tenant(&caller.tenant)
        .filter(schedule::Column::Id.eq(schedule.id))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    let made = fires.len() as i64;
    if let Some(max) = current.max_runs {
        if current.total_runs + made > max {
            return Err(ApiError::FieldConflict(FieldError {
                field: "max_runs".into(),
                message: format!(
                    "the schedule has made {} of its {max} runs; {made} more would exceed it \
                     (raise max_runs to make more)",
                    current.total_runs
                ),
            }));
        }
    }
    let new_runs: Vec<NewRun> = fires
        .iter()
        .map(|fire| NewRun {
            tenant_id: schedule.tenant_id.clone(),
            schedule_id: schedule.id,
            scheduled_for: *fire,
            trigger,
            due_at: now,
        })
        .collect();
    let runs = runs::insert(&txn, &new_runs, now, None)
        .await
        .map_err(ApiError::Internal)?;
    let newest = fires.iter().max().copied();
    let mut update = current.clone().into_active_model();
    update.total_runs = Set(current.total_runs + made);
    update.last_run_at = Set(current.last_run_at.max(newest));
    if current
        .max_runs
        .is_some_and(|max| current.total_runs + made >= max)
    {
        // Its last run is made: the schedule has no next fire.
        update.next_run_at = Set(None);
    }
    update.update(&txn).await?;
    txn.commit().await?;
    announce(&state.db, &state.wakeup, None).await;
    Ok(runs)
}

/// The next fire times of a schedule spec, without saving anything.
#[utoipa::path(
    post, path = "/v1/schedules/preview", tag = "schedules", operation_id = "preview_schedule",
    request_body = PreviewRequest,
    responses(
        (status = 200, description = "The next fires", body = FireTimes),
        ReadAccess, JsonBody,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn preview(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let request = PreviewRequest::from_json(body.0)?;
    let count = request.count.unwrap_or(DEFAULT_PREVIEW_COUNT);
    if !(1..=MAX_PREVIEW_COUNT).contains(&count) {
        return Err(ApiError::validation(
            "count",
            format!("must be between 1 and {MAX_PREVIEW_COUNT}, got {count}"),
        ));
    }
    let after = request.after.unwrap_or_else(|| state.clock.now());
    let calendars = match request.exclude.is_empty() {
        true => Default::default(),
        false => crate::calendars::of_tenant(&state.db, &caller.tenant).await?,
    };
    let mut errors = FieldErrors::new();
    let exclude = exclusions(&request.exclude, "exclude", &calendars, &mut errors);
    let fires = preview_local(&request.schedule, exclude, after, count as usize);
    let fires = match (fires, errors.into_vec()) {
        (Ok(fires), errors) if errors.is_empty() => fires,
        (Ok(_), errors) => return Err(ApiError::Validation(errors)),
        (Err(mut spec_errors), errors) => {
            spec_errors.extend(errors);
            return Err(ApiError::Validation(spec_errors));
        }
    };
    Ok(HttpResponse::Ok().json(FireTimes::from(fires)))
}

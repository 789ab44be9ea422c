//! `/v1/schedules`: create, list, read, change, replace by name and delete, over HTTP; the rules
//! for saving a schedule are the `schedules` service's.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use hookbeat_entity::schedule;
use hookbeat_entity::schedule_revision::RevisionAction;
use hookbeat_scheduler::revisions::{Author, Change};
use hookbeat_scheduler::stored::StoredSchedule;
use hookbeat_scheduler::{merge_patch, notices, runs, skips, timeline};
use sea_orm::sea_query::{Expr, LikeExpr};
use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::auth::{Caller, Scope};
use crate::body::{JsonValue, Query};
use crate::dto::notice::{Notice, NoticePage};
use crate::dto::page::{finish_page, PageQuery};
use crate::dto::schedule::{
    Schedule, ScheduleFilter, ScheduleInput, SchedulePage, TimelinePage, TimelineQuery, READ_ONLY,
};
use crate::error::ApiError;
use crate::idempotency;
use crate::responses::{
    BadRequest, ChangeReasonHeader, Conflict, IdempotencyKeyHeader, Invalid, JsonBody, NotFound,
    PreconditionFailed, ReadAccess, WriteAccess,
};
use crate::routes::{change_reason, if_match, parse_id};
use crate::schedules::{self, Key, Upserted};
use crate::state::AppState;

pub(super) fn created(schedule: Schedule) -> HttpResponse {
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

/// Create a schedule.
#[utoipa::path(
    post, path = "/v1/schedules", tag = "schedules", operation_id = "create_schedule",
    params(IdempotencyKeyHeader, ChangeReasonHeader),
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
    let author = caller.author(change_reason(&req)?);
    idempotency::once(
        &state,
        &caller,
        &req,
        &body.0,
        // Boxed: saving a schedule with its revision is a large future.
        Box::pin(create_once(&state, &caller, body.0.clone(), &author)),
    )
    .await
}

async fn create_once(
    state: &AppState,
    caller: &Caller,
    body: serde_json::Value,
    author: &Author,
) -> Result<HttpResponse, ApiError> {
    let input = ScheduleInput::from_json(body)?;
    let saved = schedules::insert(state, caller, input, author).await?;
    Ok(created(schedules::view_of_new(saved)?))
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
    let mut query = schedule::Entity::find_for_tenant(&caller.tenant);
    if let Some(cursor) = page.0.cursor()? {
        query = query.filter(schedule::Column::Id.gt(cursor));
    }
    if let Some(enabled) = filter.0.enabled {
        query = query.filter(schedule::Column::Enabled.eq(enabled));
    }
    if let Some(health) = filter.0.health {
        query = query.filter(health.condition());
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
    let items = schedules::views(&state, rows).await?;
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
    let schedule = schedules::load(&state.db, &caller.tenant, id).await?;
    Ok(ok(schedules::view(&state, schedule).await?))
}

/// Change a schedule with a JSON merge patch (RFC 7396). The change takes effect at once;
/// `next_run_at` is recomputed when the timing changed.
#[utoipa::path(
    patch, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "patch_schedule",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        ("If-Match" = Option<String>, Header, description = "The ETag the change is based on; 412 if stale"),
        ChangeReasonHeader,
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
    let author = caller.author(change_reason(&req)?);
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

    let calendars = crate::calendars::of_tenant(&state.db, &caller.tenant).await?;
    let updated = schedules::update_if_version(
        &state,
        &caller.tenant,
        Key::Id(id),
        expected.as_deref(),
        Change::new(RevisionAction::Updated, &author),
        |current, now| {
            let mut document = StoredSchedule::from_model(current)?.document()?;
            merge_patch::apply(&mut document, &patch);
            let after = ScheduleInput::from_json(document)?;
            schedules::replacement(&state, &caller, current, after, &calendars, now)
        },
    )
    .await?
    .ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(ok(schedules::view(&state, updated).await?))
}

/// Create or replace a schedule by its name: an idempotent way to keep schedules in step with
/// configuration (infrastructure as code). The body is a whole schedule; its `name`, if given,
/// must be the one in the path. 201 when created, 200 when replaced.
#[utoipa::path(
    put, path = "/v1/schedules/by-name/{name}", tag = "schedules", operation_id = "put_schedule_by_name",
    params(
        ("name" = String, Path, description = "Schedule name"),
        ("If-Match" = Option<String>, Header, description = "Replace only at this ETag; 412 if stale or absent"),
        ChangeReasonHeader,
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
    let author = caller.author(change_reason(&req)?);
    match schedules::upsert_by_name(
        &state,
        &caller,
        &name,
        &document,
        expected.as_deref(),
        &author,
    )
    .await?
    {
        Upserted::Created(saved) => Ok(created(schedules::view_of_new(saved)?)),
        Upserted::Replaced(saved) => Ok(ok(schedules::view(&state, saved).await?)),
    }
}

/// Delete a schedule and its run history. Its revisions stay, with a `deleted` one, for the
/// history retention: it can be restored from them.
#[utoipa::path(
    delete, path = "/v1/schedules/{id}", tag = "schedules", operation_id = "delete_schedule",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        ("If-Match" = Option<String>, Header, description = "Delete only at this ETag; 412 if stale"),
        ChangeReasonHeader,
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Invalid),
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
    let expected = if_match(&req)?;
    let author = caller.author(change_reason(&req)?);
    schedules::delete(&state, &caller.tenant, id, expected.as_deref(), &author).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// What became of every nominal fire of a schedule in a window: its run (delivered, failed,
/// pending, delivering, retrying, with the fire's lag and attempts), a skip and its reason, or
/// `expected`; each on the schedule's wall clock with its UTC offset and DST note. A DST gap's
/// skipped local times are one entry. Cursor-paginated, oldest first.
#[utoipa::path(
    get, path = "/v1/schedules/{id}/timeline", tag = "schedules", operation_id = "schedule_timeline",
    params(("id" = Uuid, Path, description = "Schedule id"), TimelineQuery),
    responses(
        (status = 200, description = "A page of the timeline", body = TimelinePage),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn timeline(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: Query<TimelineQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let id = parse_id(&id, "schedule")?;
    let now = state.clock.now();
    let window = query.0.window(now)?;
    let schedule = schedules::load(&state.db, &caller.tenant, id).await?;
    let timing = hookbeat_scheduler::calendar::timing(&state.db, &schedule).await?;
    let page = timeline::page(&schedule, &timing, window.from, window.to, window.limit);
    let (runs, skips) = match (page.instants.first(), page.instants.last()) {
        (Some(first), Some(last)) => (
            runs::fires_between(&state.db, id, *first, *last)
                .await
                .map_err(ApiError::Internal)?,
            skips::between(&state.db, id, page.from, page.to)
                .await
                .map_err(ApiError::Internal)?,
        ),
        _ => (Vec::new(), Vec::new()),
    };
    let sources = timeline::Sources {
        schedule: &schedule,
        timing: &timing,
        runs: &runs,
        skips: &skips,
        now,
    };
    let items = timeline::entries(&sources, &page);
    let next_cursor = page
        .more
        .then(|| page.to.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
    Ok(HttpResponse::Ok().json(TimelinePage { items, next_cursor }))
}

/// The notices of a schedule (its turning `failing`, recovering, pausing itself), newest first,
/// with whether each arrived. Cursor-paginated; kept as long as the run history.
#[utoipa::path(
    get, path = "/v1/schedules/{id}/notices", tag = "schedules", operation_id = "schedule_notices",
    params(("id" = Uuid, Path, description = "Schedule id"), PageQuery),
    responses(
        (status = 200, description = "A page of notices", body = NoticePage),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn notices(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let id = parse_id(&id, "schedule")?;
    let limit = query.0.limit()?;
    let cursor = query.0.cursor()?;
    schedules::load(&state.db, &caller.tenant, id).await?;
    let rows = notices::of_schedule(&state.db, id, cursor, limit + 1)
        .await
        .map_err(ApiError::Internal)?;
    let (rows, next_cursor) = finish_page(rows, limit, |n| n.id);
    Ok(HttpResponse::Ok().json(NoticePage {
        items: rows.into_iter().map(Notice::from).collect(),
        next_cursor,
    }))
}

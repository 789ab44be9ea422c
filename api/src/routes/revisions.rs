//! `/v1/schedules/{id}/revisions`: a schedule's history of changes, one revision whole, and a
//! revision restored, over HTTP; the rules are the `revisions` service's.

use actix_web::{web, HttpRequest, HttpResponse};

use super::schedules::{created, ok};
use crate::auth::{Caller, Scope};
use crate::body::Query;
use crate::dto::page::{finish_page, PageQuery};
use crate::dto::revision::{Revision, RevisionDetail, RevisionPage, Version};
use crate::dto::schedule::Schedule;
use crate::error::ApiError;
use crate::responses::{
    ChangeReasonHeader, Conflict, Invalid, NotFound, PreconditionFailed, ReadAccess, WriteAccess,
};
use crate::revisions::{self, parse_version};
use crate::routes::{change_reason, if_match, parse_id};
use crate::schedules::{self, Upserted};
use crate::state::AppState;

/// A schedule's revisions, newest first: one per change (create, PATCH, PUT by name, pause and
/// resume, by its tenant or by hookbeat, delete, restore), with who made it, why and the merge
/// patch it made. Cursor-paginated. A deleted schedule's stay readable for the history
/// retention; older ones are pruned then, but a live schedule's latest is always kept.
#[utoipa::path(
    get, path = "/v1/schedules/{id}/revisions", tag = "schedules", operation_id = "list_revisions",
    params(("id" = Uuid, Path, description = "Schedule id"), PageQuery),
    responses(
        (status = 200, description = "A page of revisions", body = RevisionPage),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    id: web::Path<String>,
    query: Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let id = parse_id(&id, "schedule")?;
    let limit = query.0.limit()?;
    let before = query.0.cursor_as::<Version>()?;
    let rows = revisions::page(&state.db, &caller.tenant, id, before, limit + 1).await?;
    let (rows, next_cursor) = finish_page(rows, limit, |r| r.version);
    Ok(HttpResponse::Ok().json(RevisionPage {
        items: rows.into_iter().map(Revision::from).collect(),
        next_cursor,
    }))
}

/// One revision of a schedule, with the schedule as the change left it (as a delete found it).
#[utoipa::path(
    get, path = "/v1/schedules/{id}/revisions/{version}", tag = "schedules",
    operation_id = "get_revision",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        ("version" = i64, Path, minimum = 1, description = "The version the change made"),
    ),
    responses(
        (status = 200, description = "The revision", body = RevisionDetail),
        (status = 404, response = NotFound),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let (id, version) = path.into_inner();
    let version = parse_version(&version)?;
    let id = parse_id(&id, "schedule")?;
    let revision = revisions::one(&state.db, &caller.tenant, id, version).await?;
    Ok(HttpResponse::Ok().json(RevisionDetail::from(revision)))
}

/// Restore a revision: its schedule becomes what it was then, as a PUT of that content would
/// make it (validated under today's rules: 422 naming the member that no longer passes), with a
/// new version and a `restored` revision saying which it restored. Restoring the content the
/// schedule already has changes nothing. A deleted schedule is made again under its id (201),
/// as a create is: its name must be free (409) and its tenant under its quota (429); its run
/// history is gone.
#[utoipa::path(
    post, path = "/v1/schedules/{id}/revisions/{version}/restore", tag = "schedules",
    operation_id = "restore_revision",
    params(
        ("id" = Uuid, Path, description = "Schedule id"),
        ("version" = i64, Path, minimum = 1, description = "The version to restore"),
        ("If-Match" = Option<String>, Header, description = "The ETag the restore is based on (a deleted schedule's: its delete's version); 412 if stale"),
        ChangeReasonHeader,
    ),
    responses(
        (status = 200, description = "The restored schedule", body = Schedule, headers(("ETag" = String))),
        (status = 201, description = "The deleted schedule, made again", body = Schedule,
         headers(("Location" = String, description = "/v1/schedules/{id}"), ("ETag" = String))),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 412, response = PreconditionFailed),
        (status = 422, response = Invalid),
        WriteAccess,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn restore(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let (id, version) = path.into_inner();
    let version = parse_version(&version)?;
    let id = parse_id(&id, "schedule")?;
    let expected = if_match(&req)?;
    let author = caller.author(change_reason(&req)?);
    let restored = revisions::restore(&state, &caller, id, version, expected.as_deref(), &author);
    match restored.await? {
        Upserted::Created(saved) => Ok(created(schedules::view_of_new(saved)?)),
        Upserted::Replaced(saved) => Ok(ok(schedules::view(&state, saved).await?)),
    }
}

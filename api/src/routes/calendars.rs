//! `/v1/calendars`: a tenant's exclusion calendars over HTTP; the rules are the `calendars`
//! store's.

use actix_web::{web, HttpResponse};

use crate::auth::{Caller, Scope};
use crate::body::JsonValue;
use crate::calendars;
use crate::dto::calendar::{Calendar, CalendarInput, CalendarList};
use crate::error::ApiError;
use crate::responses::{Conflict, JsonBody, NotFound, ReadAccess, WriteAccess};
use crate::state::AppState;

/// Create a calendar: dates, date ranges, RFC 5545 rules and the all-day events of iCalendar
/// text, all local dates in its `timezone`, which schedules can `exclude`.
#[utoipa::path(
    post, path = "/v1/calendars", tag = "calendars", operation_id = "create_calendar",
    request_body = CalendarInput,
    responses(
        (status = 201, description = "The calendar", body = Calendar),
        (status = 409, response = Conflict),
        WriteAccess, JsonBody,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    let input = CalendarInput::from_json(body.0)?;
    let saved = calendars::create(&state, &caller.tenant, input).await?;
    let location = format!("/v1/calendars/{}", saved.name);
    Ok(HttpResponse::Created()
        .insert_header(("Location", location))
        .json(Calendar::from_model(saved)?))
}

/// The tenant's calendars (at most 100), in name order.
#[utoipa::path(
    get, path = "/v1/calendars", tag = "calendars", operation_id = "list_calendars",
    responses(
        (status = 200, description = "The calendars", body = CalendarList),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let items = calendars::list(&state.db, &caller.tenant)
        .await?
        .into_iter()
        .map(Calendar::from_model)
        .collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(CalendarList { items }))
}

/// One calendar, with the dates its iCalendar text gave.
#[utoipa::path(
    get, path = "/v1/calendars/{name}", tag = "calendars", operation_id = "get_calendar",
    params(("name" = String, Path, description = "Calendar name")),
    responses(
        (status = 200, description = "The calendar", body = Calendar),
        (status = 404, response = NotFound),
        ReadAccess,
    ),
    security(("bearer" = ["schedules:read"]))
)]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesRead)?;
    let model = calendars::load(&state.db, &caller.tenant, &name).await?;
    Ok(HttpResponse::Ok().json(Calendar::from_model(model)?))
}

/// Change a calendar with a JSON merge patch (RFC 7396); `ics` imports its all-day events anew
/// and `"ics": null` removes them. Every schedule that excludes the calendar is planned anew at
/// once.
#[utoipa::path(
    patch, path = "/v1/calendars/{name}", tag = "calendars", operation_id = "patch_calendar",
    params(("name" = String, Path, description = "Calendar name")),
    request_body(content = Object, content_type = "application/merge-patch+json",
        description = "Members of CalendarInput to change; `ics` imports anew, `\"ics\": null` removes what was imported",
        example = crate::dto::examples::calendar_patch),
    responses(
        (status = 200, description = "The calendar as changed", body = Calendar),
        (status = 404, response = NotFound),
        WriteAccess, JsonBody,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn patch(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    body: JsonValue,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    if !body.0.is_object() {
        return Err(ApiError::validation(
            "body",
            "must be a JSON object (a merge patch)",
        ));
    }
    let saved = calendars::update(&state, &caller.tenant, &name, &body.0).await?;
    Ok(HttpResponse::Ok().json(Calendar::from_model(saved)?))
}

/// Delete a calendar; 409 naming the schedules that still exclude it.
#[utoipa::path(
    delete, path = "/v1/calendars/{name}", tag = "calendars", operation_id = "delete_calendar",
    params(("name" = String, Path, description = "Calendar name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        WriteAccess,
    ),
    security(("bearer" = ["schedules:write"]))
)]
pub async fn delete(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Scope::SchedulesWrite)?;
    calendars::delete(&state, &caller.tenant, &name).await?;
    Ok(HttpResponse::NoContent().finish())
}

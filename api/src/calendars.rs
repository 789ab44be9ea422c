//! The calendars store: a tenant's exclusion calendars validated and saved; the schedules that
//! exclude one planned anew in the same transaction when it changes; a calendar in use kept.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hookbeat_entity::{calendar, schedule, TenantId};
use hookbeat_scheduler::calendar::{self as calendars, Calendar, CalendarDefinition};
use hookbeat_scheduler::merge_patch;
use hookbeat_scheduler::notify::announce;
use hookbeat_scheduler::stored;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, PaginatorTrait, QueryFilter, QueryOrder, Set,
};

use crate::dto::calendar::{definition_of, CalendarInput};
use crate::error::ApiError;
use crate::state::AppState;

/// The most calendars one tenant keeps.
pub const MAX_CALENDARS: u64 = 100;
/// The most schedule names a 409 for a calendar in use lists.
const NAMES_LISTED: usize = 20;

/// The tenant's calendars, compiled, by name.
pub async fn of_tenant(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<HashMap<String, Arc<Calendar>>, ApiError> {
    let rows = calendar::Entity::find_for_tenant(tenant).all(db).await?;
    Ok(calendars::compile_rows(rows)?)
}

/// The tenant's calendars, in name order.
pub async fn list(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<Vec<calendar::Model>, ApiError> {
    Ok(calendar::Entity::find_for_tenant(tenant)
        .order_by_asc(calendar::Column::Name)
        .all(db)
        .await?)
}

/// One of the tenant's calendars.
pub async fn load(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    name: &str,
) -> Result<calendar::Model, ApiError> {
    calendar::Entity::find_for_tenant(tenant)
        .filter(calendar::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| ApiError::not_found("calendar"))
}

/// Saves a new calendar of the tenant's.
pub async fn create(
    state: &AppState,
    tenant: &TenantId,
    input: CalendarInput,
) -> Result<calendar::Model, ApiError> {
    check_name(&input.name)?;
    let definition = definition(&input, None)?;
    let now = state.clock.now();
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    let held = calendar::Entity::find_for_tenant(tenant)
        .count(&txn)
        .await?;
    if held >= MAX_CALENDARS {
        return Err(ApiError::Conflict(format!(
            "tenant {tenant} has {held} calendars, the most it may keep; delete one first"
        )));
    }
    let taken = calendar::Entity::find_for_tenant(tenant)
        .filter(calendar::Column::Name.eq(&input.name))
        .count(&txn)
        .await?;
    if taken > 0 {
        return Err(ApiError::Conflict(format!(
            "a calendar named {:?} already exists",
            input.name
        )));
    }
    let saved = calendar::ActiveModel {
        tenant_id: Set(tenant.clone()),
        name: Set(input.name.clone()),
        definition: Set(stored_json(&definition)?),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(saved)
}

/// Applies a JSON merge patch to the tenant's calendar `name` (`ics` imports anew, `null`
/// removes what was imported); the schedules excluding it are planned anew and the workers
/// woken.
pub async fn update(
    state: &AppState,
    tenant: &TenantId,
    name: &str,
    patch: &serde_json::Value,
) -> Result<calendar::Model, ApiError> {
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    let current = load(&txn, tenant, name).await?;
    let previous = definition_of(&current)?;
    let mut document = CalendarInput::document(&current)?;
    merge_patch::apply(&mut document, patch);
    let ics = patch.get("ics").cloned();
    if let Some(object) = document.as_object_mut() {
        object.remove("ics");
    }
    let mut input = CalendarInput::from_json(document)?;
    if input.name != name {
        return Err(ApiError::validation(
            "name",
            "a calendar's name cannot change; create one under the new name",
        ));
    }
    let keep_import = match ics {
        None => Some(&previous),
        Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(text)) => {
            input.ics = Some(text);
            None
        }
        Some(_) => {
            return Err(ApiError::validation(
                "ics",
                "must be iCalendar text or null",
            ))
        }
    };
    let definition = definition(&input, keep_import)?;
    let now = state.clock.now();
    let mut row: calendar::ActiveModel = current.into();
    row.definition = Set(stored_json(&definition)?);
    row.updated_at = Set(now);
    let saved = row.update(&txn).await?;
    let next = replan(&txn, tenant, name, now).await?;
    txn.commit().await?;
    for due in next {
        announce(&state.db, &state.wakeup, Some(due)).await;
    }
    Ok(saved)
}

/// Deletes the tenant's calendar `name`, refused (409 naming them) while schedules exclude it.
pub async fn delete(state: &AppState, tenant: &TenantId, name: &str) -> Result<(), ApiError> {
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    load(&txn, tenant, name).await?;
    let users = users_of(&txn, tenant, name).await?;
    if !users.is_empty() {
        let mut names: Vec<String> = users.iter().map(|s| s.name.clone()).collect();
        names.sort();
        let more = names.len().saturating_sub(NAMES_LISTED);
        names.truncate(NAMES_LISTED);
        let tail = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        return Err(ApiError::Conflict(format!(
            "calendar {name:?} is excluded by {} schedule(s): {}{tail}; remove it from their exclude first",
            users.len(),
            names.join(", ")
        )));
    }
    calendar::Entity::delete_for_tenant(tenant)
        .filter(calendar::Column::Name.eq(name))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

/// A calendar name: 1 to 100 letters, digits, `.`, `_` or `-`.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let fine = (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fine {
        Ok(())
    } else {
        Err(ApiError::validation(
            "name",
            format!("must be 1 to 100 letters, digits, '.', '_' or '-', got {name:?}"),
        ))
    }
}

/// The definition `input` describes, validated; its `ics` imported, or else the dates of
/// `keep_import` kept.
fn definition(
    input: &CalendarInput,
    keep_import: Option<&CalendarDefinition>,
) -> Result<CalendarDefinition, ApiError> {
    let (imported_dates, imported_events, ignored_events) = match (&input.ics, keep_import) {
        (Some(text), _) => {
            calendars::import_ics(text).map_err(|message| ApiError::validation("ics", message))?
        }
        (None, Some(previous)) => (
            previous.imported_dates.clone(),
            previous.imported_events,
            previous.ignored_events,
        ),
        (None, None) => (Vec::new(), 0, 0),
    };
    let definition = CalendarDefinition {
        timezone: input.timezone.clone(),
        dates: input.dates.clone(),
        ranges: input.ranges.clone(),
        rules: input.rules.clone(),
        imported_dates,
        imported_events,
        ignored_events,
    };
    Calendar::compile(&definition, "").map_err(ApiError::Validation)?;
    Ok(definition)
}

fn stored_json(definition: &CalendarDefinition) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(definition).map_err(|e| ApiError::Internal(e.into()))
}

/// The tenant's schedules whose `exclude` names `name`.
async fn users_of(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    name: &str,
) -> Result<Vec<schedule::Model>, ApiError> {
    let candidates = schedule::Entity::find_for_tenant(tenant)
        .filter(Expr::col(schedule::Column::Exclude).is_not_null())
        .all(db)
        .await?;
    Ok(candidates
        .into_iter()
        .filter(|s| stored::exclude(s).is_ok_and(|names| names.iter().any(|n| n == name)))
        .collect())
}

/// Plans anew, from `now`, every enabled schedule of the tenant that excludes `name` and is not
/// already due; returns their new next fires.
async fn replan(
    txn: &impl ConnectionTrait,
    tenant: &TenantId,
    name: &str,
    now: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, ApiError> {
    let users = users_of(txn, tenant, name).await?;
    let mut next_fires = Vec::new();
    for user in users.into_iter().filter(|s| s.enabled) {
        if user.next_run_at.is_some_and(|next| next <= now) {
            continue; // due now: the worker plans it with the new calendar
        }
        let timing = calendars::timing(txn, &user).await?;
        let next = timing.next_fire(now, user.total_runs);
        schedule::Entity::update_for_tenant(tenant)
            .col_expr(schedule::Column::NextRunAt, Expr::value(next))
            .filter(schedule::Column::Id.eq(user.id))
            .exec(txn)
            .await?;
        next_fires.extend(next);
    }
    Ok(next_fires)
}

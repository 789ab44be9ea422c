//! Calendars as the API reads and writes them.

use chrono::{DateTime, NaiveDate, Utc};
use hookbeat_entity::calendar;
use hookbeat_scheduler::calendar::{CalendarDefinition, DateRange};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::body::typed;
use crate::error::ApiError;

/// A calendar as a client writes it (`POST /v1/calendars`; the document a `PATCH` merge patch
/// applies to, less `ics`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::calendar_input)]
pub struct CalendarInput {
    /// Unique per tenant: 1 to 100 letters, digits, `.`, `_` or `-`.
    #[schema(example = "de-holidays")]
    pub name: String,
    /// The IANA zone whose local dates the calendar lists.
    #[serde(default = "utc")]
    #[schema(default = "UTC", example = "Europe/Berlin")]
    pub timezone: String,
    /// Excluded local dates, `YYYY-MM-DD`.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["2026-12-25"]))]
    pub dates: Vec<NaiveDate>,
    /// Excluded date ranges, both ends included.
    #[serde(default)]
    pub ranges: Vec<DateRange>,
    /// RFC 5545 rules whose instances' dates are excluded, counted from 1970-01-01
    /// (`FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1`).
    #[serde(default)]
    #[schema(example = json!(["FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1"]))]
    pub rules: Vec<String>,
    /// iCalendar text (within the 256 KiB request body) whose all-day events become excluded dates; the calendar
    /// keeps the dates (`imported_dates`), not the text. `null` in a PATCH removes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ics: Option<String>,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// A calendar as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::calendar)]
pub struct Calendar {
    pub name: String,
    pub timezone: String,
    #[schema(value_type = Vec<String>)]
    pub dates: Vec<NaiveDate>,
    pub ranges: Vec<DateRange>,
    pub rules: Vec<String>,
    /// The dates the imported iCalendar text gave (its all-day events).
    #[schema(value_type = Vec<String>)]
    pub imported_dates: Vec<NaiveDate>,
    /// How many events the imported text held, and how many were left out for not being
    /// all-day.
    pub imported_events: usize,
    pub ignored_events: usize,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The tenant's calendars (at most 100).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::calendar_list)]
pub struct CalendarList {
    pub items: Vec<Calendar>,
}

impl Calendar {
    pub fn from_model(model: calendar::Model) -> Result<Calendar, ApiError> {
        let definition = definition_of(&model)?;
        Ok(Calendar {
            name: model.name,
            timezone: definition.timezone,
            dates: definition.dates,
            ranges: definition.ranges,
            rules: definition.rules,
            imported_dates: definition.imported_dates,
            imported_events: definition.imported_events,
            ignored_events: definition.ignored_events,
            created_at: model.created_at,
            updated_at: model.updated_at,
        })
    }
}

/// A stored calendar's definition.
pub fn definition_of(model: &calendar::Model) -> Result<CalendarDefinition, ApiError> {
    serde_json::from_value(model.definition.clone()).map_err(|error| {
        ApiError::Internal(anyhow::anyhow!(
            "calendar {:?} is unreadable: {error}",
            model.name
        ))
    })
}

impl CalendarInput {
    pub fn from_json(value: serde_json::Value) -> Result<Self, ApiError> {
        typed(value, "")
    }

    /// The input document of a stored calendar (what a PATCH applies to).
    pub fn document(model: &calendar::Model) -> Result<serde_json::Value, ApiError> {
        let definition = definition_of(model)?;
        Ok(serde_json::json!({
            "name": model.name,
            "timezone": definition.timezone,
            "dates": definition.dates,
            "ranges": definition.ranges,
            "rules": definition.rules,
        }))
    }
}

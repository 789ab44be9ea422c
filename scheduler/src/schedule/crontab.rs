//! Crontab schedules: a parsed 5-field expression, a time zone and the day/DST policies.
//!
//! Fields are matched on the local wall-clock time of the schedule's zone. The DST rules are the
//! contract's (section 3), which follow Vixie cron and are applied by `schedule::wall_clock`;
//! left out, a fixed-time job gets `shift` + `first`, any other job `skip` + `both`.
//!
//! Parsing lives in `parse`, the local-time search in `next`.

mod next;
mod parse;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests;

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

pub use parse::CronExpr;

use super::timezone::parse_timezone;
use super::wall_clock::{Placement, WallClockRule};

/// How the day-of-month and day-of-week fields combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DayMatch {
    /// Vixie cron: when both day fields are restricted a day matches if either matches,
    /// otherwise both must.
    Or,
    /// Celery's crontab: a day must match both fields.
    And,
}

/// What a matching local time inside a spring-forward gap does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DstGap {
    /// Fire once at the first instant after the gap.
    Shift,
    /// Do not fire.
    Skip,
}

/// What a matching local time that occurs twice (fall-back overlap) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DstOverlap {
    /// Fire at its first occurrence only.
    First,
    /// Fire at each occurrence.
    Both,
}

/// Which input an error is about, so the API can name the JSON field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronField {
    Expression,
    Timezone,
}

/// A crontab schedule that cannot be built, with the input it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CronError {
    pub field: CronField,
    pub message: String,
}

/// A validated crontab schedule, ready to answer "when next?".
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expr: CronExpr,
    day_match: DayMatch,
    placement: Placement,
    /// The day-of-week field as day-of-month bits, one mask per weekday of the 1st of the month
    /// (index 0 = the month starts on a Sunday), so a month's matching days are one AND/OR.
    dow_masks: [u64; 7],
    /// Day fields combine with OR (Vixie, both restricted) rather than AND.
    day_union: bool,
}

impl CronSchedule {
    /// Parses and validates; `None` policies take the Vixie defaults; refuses expressions that
    /// can never fire.
    pub fn new(
        expression: &str,
        timezone: &str,
        day_match: Option<DayMatch>,
        dst_gap: Option<DstGap>,
        dst_overlap: Option<DstOverlap>,
    ) -> Result<CronSchedule, CronError> {
        let expr = CronExpr::parse(expression)?;
        let tz = parse_timezone(timezone).map_err(|message| CronError {
            field: CronField::Timezone,
            message,
        })?;
        let day_match = day_match.unwrap_or(DayMatch::Or);
        let placement = Placement::new(tz, dst_gap, dst_overlap, expr.is_fixed_time());
        let day_union = day_match == DayMatch::Or && expr.dom_restricted && expr.dow_restricted;
        if !day_union {
            ensure_some_day_exists(&expr)?;
        }
        Ok(CronSchedule {
            expr,
            day_match,
            placement,
            dow_masks: next::weekday_masks(expr.days_of_week),
            day_union,
        })
    }

    /// The first fire instant strictly after `after`, or `None` if there is none within the
    /// search bound (about 50 years, enough for "Feb 29 that is a Monday").
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        super::wall_clock::next_after(self, after)
    }

    /// The effective spring-forward policy (explicit, or the Vixie default).
    pub fn dst_gap(&self) -> DstGap {
        self.placement.gap
    }

    /// The effective fall-back policy (explicit, or the Vixie default).
    pub fn dst_overlap(&self) -> DstOverlap {
        self.placement.overlap
    }

    /// The effective day-field combination.
    pub fn day_match(&self) -> DayMatch {
        self.day_match
    }

    /// The parsed expression.
    pub fn expr(&self) -> &CronExpr {
        &self.expr
    }

    /// The zone whose wall clock the fields are matched against.
    pub fn timezone(&self) -> Tz {
        self.placement.zone
    }

    /// Whether a local wall-clock time (seconds ignored) matches every field under this
    /// schedule's day rule. DST policies are not involved: this is the calendar test alone.
    pub fn matches_local(&self, local: NaiveDateTime) -> bool {
        next::matches_local(self, local)
    }
}

impl WallClockRule for CronSchedule {
    fn placement(&self) -> Placement {
        self.placement
    }

    fn search_years(&self) -> i64 {
        next::SEARCH_YEARS
    }

    fn next_local_after(&self, local: i64, limit_year: i64) -> Option<i64> {
        next::next_local_after(self, local, limit_year)
    }

    fn matches_local(&self, local: NaiveDateTime) -> bool {
        next::matches_local(self, local)
    }
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Refuses a day-of-month set that no month of the month set ever has.
///
/// Any (month, day) pair that exists in some year falls on every weekday over the years
/// (February 29 included: it visits all seven weekdays within 28 years), so the day-of-week field
/// cannot make an expression impossible; only the calendar can.
fn ensure_some_day_exists(expr: &CronExpr) -> Result<(), CronError> {
    const MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let possible = (1..=12u32).any(|m| {
        expr.months & (1 << m) != 0 && {
            let valid = (1u64 << (MAX_DAYS[m as usize - 1] + 1)) - 2;
            expr.days_of_month & valid != 0
        }
    });
    if possible {
        return Ok(());
    }
    let days: Vec<String> = (1..=31u32)
        .filter(|d| expr.days_of_month & (1 << d) != 0)
        .map(|d| d.to_string())
        .collect();
    let months: Vec<&str> = (1..=12u32)
        .filter(|m| expr.months & (1 << m) != 0)
        .map(|m| MONTH_NAMES[m as usize - 1])
        .collect();
    let days_text = if days.len() == 1 {
        format!("day-of-month {} does", days[0])
    } else {
        format!("days-of-month {} do", days.join(","))
    };
    Err(CronError {
        field: CronField::Expression,
        message: format!(
            "the expression never fires: {days_text} not occur in {}",
            join_words(&months)
        ),
    })
}

/// "A", "A or B", "A, B or C".
fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

//! Exclusion calendars: which local dates a tenant's calendar excludes (listed dates, date
//! ranges, RFC 5545 rules and all-day events imported from iCalendar text), and the set of
//! calendars a schedule's `exclude` names, as [`crate::schedule::Timing`] consults it.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use hookbeat_entity::{calendar, schedule, TenantId};
use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter};

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::schedule::timezone::parse_timezone;
use crate::schedule::wall_clock::WallClockRule;
use crate::schedule::{RruleSchedule, RruleSpec, Timing};
use crate::stored;
use crate::validation::FieldErrors;

/// The most dates (listed plus imported), ranges or rules one calendar holds.
pub const MAX_ENTRIES: usize = 5_000;
/// The most calendars one schedule excludes.
pub const MAX_EXCLUDE: usize = 10;
/// The largest iCalendar text accepted, in bytes (the API's request body limit, 256 KiB, comes
/// first).
pub const MAX_ICS_BYTES: usize = 256 * 1024;
/// Rules count from here (their phase: `FREQ=WEEKLY;INTERVAL=2` means every other week from the
/// week of 1970-01-01).
const RULE_START: &str = "1970-01-01T00:00:00";
/// Recurring events in imported iCalendar text are expanded up to this year.
const IMPORT_UNTIL_YEAR: i32 = 2100;

/// A date range, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DateRange {
    #[schema(value_type = String, example = "2026-12-24")]
    pub from: NaiveDate,
    #[schema(value_type = String, example = "2026-12-31")]
    pub to: NaiveDate,
}

/// A calendar's definition as stored: what its owner wrote, with the dates its iCalendar text
/// gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CalendarDefinition {
    pub timezone: String,
    #[serde(default)]
    pub dates: Vec<NaiveDate>,
    #[serde(default)]
    pub ranges: Vec<DateRange>,
    #[serde(default)]
    pub rules: Vec<String>,
    /// The all-day dates of the imported iCalendar text.
    #[serde(default)]
    pub imported_dates: Vec<NaiveDate>,
    /// How many events the iCalendar text held, and how many of them (not all-day) were left out.
    #[serde(default)]
    pub imported_events: usize,
    #[serde(default)]
    pub ignored_events: usize,
}

/// A calendar ready to answer "is this local date excluded?".
#[derive(Debug, Clone)]
pub struct Calendar {
    zone: Tz,
    /// Listed and imported dates, ascending, unique.
    dates: Vec<NaiveDate>,
    /// Ranges, ascending by start, overlapping and adjacent ones merged.
    ranges: Vec<(NaiveDate, NaiveDate)>,
    rules: Vec<RruleSchedule>,
}

impl Calendar {
    /// Validates a definition; errors are named under `prefix` (`body`, or empty for the root).
    pub fn compile(
        definition: &CalendarDefinition,
        prefix: &str,
    ) -> Result<Calendar, Vec<crate::validation::FieldError>> {
        let at = |member: String| {
            if prefix.is_empty() {
                member
            } else {
                format!("{prefix}.{member}")
            }
        };
        let mut errors = FieldErrors::new();
        let zone = match parse_timezone(&definition.timezone) {
            Ok(zone) => zone,
            Err(message) => {
                errors.add(at("timezone".into()), message);
                Tz::UTC
            }
        };
        if definition.dates.len() + definition.imported_dates.len() > MAX_ENTRIES {
            errors.add(
                at("dates".into()),
                format!("a calendar holds at most {MAX_ENTRIES} dates, listed and imported"),
            );
        }
        if definition.ranges.len() > MAX_ENTRIES {
            errors.add(at("ranges".into()), format!("at most {MAX_ENTRIES} ranges"));
        }
        if definition.rules.len() > MAX_ENTRIES {
            errors.add(at("rules".into()), format!("at most {MAX_ENTRIES} rules"));
        }
        for (i, range) in definition.ranges.iter().enumerate() {
            if range.to < range.from {
                errors.add(
                    at(format!("ranges[{i}].to")),
                    format!("{} is before from ({})", range.to, range.from),
                );
            }
        }
        let mut rules = Vec::new();
        for (i, rule) in definition.rules.iter().enumerate() {
            let spec = RruleSpec {
                rule: rule.clone(),
                timezone: definition.timezone.clone(),
                dtstart: RULE_START.into(),
                rdate: Vec::new(),
                exdate: Vec::new(),
                dst_gap: None,
                dst_overlap: None,
            };
            match RruleSchedule::new(&spec) {
                Ok(rule) => rules.push(rule),
                Err(error) if error.member == "rule" => {
                    errors.add(at(format!("rules[{i}]")), error.message)
                }
                Err(_) => {} // the zone's error is reported once, above
            }
        }
        let mut dates: Vec<NaiveDate> = definition
            .dates
            .iter()
            .chain(&definition.imported_dates)
            .copied()
            .collect();
        dates.sort_unstable();
        dates.dedup();
        let mut sorted: Vec<(NaiveDate, NaiveDate)> =
            definition.ranges.iter().map(|r| (r.from, r.to)).collect();
        sorted.sort_unstable();
        let mut ranges: Vec<(NaiveDate, NaiveDate)> = Vec::with_capacity(sorted.len());
        for (from, to) in sorted {
            match ranges.last_mut() {
                Some(last) if from <= last.1 + Duration::days(1) => last.1 = last.1.max(to),
                _ => ranges.push((from, to)),
            }
        }
        errors.finish(Calendar {
            zone,
            dates,
            ranges,
            rules,
        })
    }

    /// The last date of the run of excluded dates that contains `date`, or `None` when `date`
    /// is not excluded. Ranges give their end at once; a listed date or a rule's date, itself.
    pub fn excluded_through(&self, date: NaiveDate) -> Option<NaiveDate> {
        let in_range = self.ranges.partition_point(|(from, _)| *from <= date);
        if let Some((_, to)) = in_range.checked_sub(1).map(|i| self.ranges[i]) {
            if date <= to {
                return Some(to);
            }
        }
        if self.dates.binary_search(&date).is_ok() || self.rules.iter().any(|r| on_date(r, date)) {
            return Some(date);
        }
        None
    }

    /// The zone whose dates the calendar lists.
    pub fn zone(&self) -> Tz {
        self.zone
    }
}

/// Whether a rule has an instance on a local date.
fn on_date(rule: &RruleSchedule, date: NaiveDate) -> bool {
    let midnight = date.and_time(NaiveTime::MIN).and_utc().timestamp();
    rule.next_local_after(midnight - 1, i64::from(date.year()))
        .is_some_and(|next| next < midnight + 86_400)
}

/// The first instant of local date `date` in `zone` (after a gap when the day starts in one).
fn start_of(zone: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    let midnight = date.and_time(NaiveTime::MIN);
    (0..=26 * 60)
        .map(|minutes| midnight + Duration::minutes(minutes))
        .find_map(|local| zone.from_local_datetime(&local).earliest())
        .map(|at| at.to_utc())
}

/// The calendars a schedule excludes; empty for a schedule that names none.
#[derive(Debug, Clone, Default)]
pub struct Exclusions {
    calendars: Vec<Arc<Calendar>>,
}

impl Exclusions {
    pub fn new(calendars: Vec<Arc<Calendar>>) -> Exclusions {
        Exclusions { calendars }
    }

    pub fn is_empty(&self) -> bool {
        self.calendars.is_empty()
    }

    /// Whether a fire at `at` falls on a date one of the calendars excludes (in its own zone).
    pub fn excludes(&self, at: DateTime<Utc>) -> bool {
        self.resume_after(at).is_some()
    }

    /// For a fire at `at` on an excluded date: the instant the exclusion ends (the start of the
    /// first local day past the excluded run, in the calendar that excludes it longest).
    pub fn resume_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.calendars
            .iter()
            .filter_map(|calendar| {
                let date = at.with_timezone(&calendar.zone).date_naive();
                let through = calendar.excluded_through(date)?;
                start_of(calendar.zone, through.succ_opt()?).or(Some(DateTime::<Utc>::MAX_UTC))
            })
            .max()
    }
}

/// The tenant's calendars by name, compiled; names without a calendar are left out.
pub async fn load(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    names: &[String],
) -> anyhow::Result<HashMap<String, Arc<Calendar>>> {
    if names.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = calendar::Entity::find_for_tenant(tenant)
        .filter(calendar::Column::Name.is_in(names.iter().cloned()))
        .all(db)
        .await
        .context("reading calendars")?;
    compile_rows(rows)
}

/// Stored calendars compiled, by name.
pub fn compile_rows(rows: Vec<calendar::Model>) -> anyhow::Result<HashMap<String, Arc<Calendar>>> {
    rows.into_iter()
        .map(|row| {
            let definition: CalendarDefinition = serde_json::from_value(row.definition)
                .with_context(|| format!("calendar {:?} is unreadable", row.name))?;
            let compiled = Calendar::compile(&definition, "").map_err(|errors| {
                anyhow::anyhow!("calendar {:?} does not compile: {errors:?}", row.name)
            })?;
            Ok((row.name, Arc::new(compiled)))
        })
        .collect()
}

/// A schedule's timing with its `exclude` calendars. A name without a calendar (deleting one in
/// use is refused, so only a row changed behind hookbeat's back) is an error: a schedule must
/// not fire on dates it was told to skip.
pub async fn timing(db: &impl ConnectionTrait, model: &schedule::Model) -> anyhow::Result<Timing> {
    let mut timing = stored::timing(model)?;
    let names = stored::exclude(model)?;
    let calendars = load(db, &model.tenant_id, &names).await?;
    timing.exclude =
        exclusions(&names, &calendars).with_context(|| format!("schedule {}", model.id))?;
    Ok(timing)
}

/// The calendars `names` picks out of `calendars`; an error naming a missing one.
pub fn exclusions(
    names: &[String],
    calendars: &HashMap<String, Arc<Calendar>>,
) -> anyhow::Result<Exclusions> {
    names
        .iter()
        .map(|name| {
            calendars
                .get(name)
                .cloned()
                .with_context(|| format!("calendar {name:?} does not exist"))
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .map(Exclusions::new)
}

/// The dates of the all-day events in iCalendar text (RFC 5545): `DTSTART;VALUE=DATE` up to
/// `DTEND` (exclusive, one day when absent), recurring events expanded to 2100. Returns the dates
/// and how many events were left out for not being all-day.
pub fn import_ics(text: &str) -> Result<(Vec<NaiveDate>, usize, usize), String> {
    if text.len() > MAX_ICS_BYTES {
        return Err(format!("is larger than {MAX_ICS_BYTES} bytes"));
    }
    // Unfold: a line starting with a space or tab continues the previous one.
    let mut lines: Vec<String> = Vec::new();
    for raw in text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        match raw.strip_prefix([' ', '\t']) {
            Some(rest) if !lines.is_empty() => lines.last_mut().unwrap().push_str(rest),
            _ => lines.push(raw.to_owned()),
        }
    }
    if !lines
        .iter()
        .any(|l| l.eq_ignore_ascii_case("BEGIN:VCALENDAR"))
    {
        return Err("is not iCalendar text: BEGIN:VCALENDAR is missing".into());
    }
    let mut dates = Vec::new();
    let (mut events, mut ignored) = (0, 0);
    let mut event: Option<Vec<(String, String)>> = None;
    for line in &lines {
        let upper = line.to_ascii_uppercase();
        if upper == "BEGIN:VEVENT" {
            event = Some(Vec::new());
        } else if upper == "END:VEVENT" {
            let Some(properties) = event.take() else {
                return Err("END:VEVENT without BEGIN:VEVENT".into());
            };
            events += 1;
            match event_dates(&properties)? {
                Some(mut more) => dates.append(&mut more),
                None => ignored += 1,
            }
        } else if let Some(properties) = event.as_mut() {
            if let Some((name, value)) = line.split_once(':') {
                properties.push((name.to_ascii_uppercase(), value.trim().to_owned()));
            }
        }
        if dates.len() > MAX_ENTRIES {
            return Err(format!("gives more than {MAX_ENTRIES} dates"));
        }
    }
    dates.sort_unstable();
    dates.dedup();
    Ok((dates, events, ignored))
}

/// The dates of one event, or `None` when it is not an all-day event.
fn event_dates(properties: &[(String, String)]) -> Result<Option<Vec<NaiveDate>>, String> {
    let get = |name: &str| {
        properties
            .iter()
            .find(|(n, _)| n == name || n.starts_with(&format!("{name};")))
    };
    let Some((start_name, start)) = get("DTSTART") else {
        return Err("a VEVENT has no DTSTART".into());
    };
    let all_day = start_name.contains("VALUE=DATE") && !start_name.contains("VALUE=DATE-TIME");
    if !all_day {
        return Ok(None);
    }
    let date = |text: &str| {
        NaiveDate::parse_from_str(text, "%Y%m%d")
            .map_err(|_| format!("DTSTART/DTEND {text:?} is not a date YYYYMMDD"))
    };
    let first = date(start)?;
    let days = match get("DTEND") {
        Some((_, end)) => (date(end)? - first).num_days().clamp(1, 366),
        None => 1,
    };
    let starts: Vec<NaiveDate> = match get("RRULE") {
        None => vec![first],
        Some((_, rule)) => {
            let spec = RruleSpec {
                rule: rule.clone(),
                timezone: "UTC".into(),
                dtstart: first
                    .and_time(NaiveTime::MIN)
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
                rdate: Vec::new(),
                exdate: Vec::new(),
                dst_gap: None,
                dst_overlap: None,
            };
            let rule = RruleSchedule::new(&spec)
                .map_err(|e| format!("an event's RRULE: {}", e.message))?;
            let mut starts = Vec::new();
            let mut at = first.and_time(NaiveTime::MIN).and_utc() - Duration::seconds(1);
            while let Some(next) = rule.next_after(at) {
                if next.year() > IMPORT_UNTIL_YEAR || starts.len() > MAX_ENTRIES {
                    break;
                }
                starts.push(next.date_naive());
                at = next;
            }
            starts
        }
    };
    Ok(Some(
        starts
            .into_iter()
            .flat_map(|start| {
                (0..days).filter_map(move |d| start.checked_add_signed(Duration::days(d)))
            })
            .collect(),
    ))
}

#[cfg(test)]
mod tests;

//! `rrule` schedules: an RFC 5545 recurrence rule (with RDATE and EXDATE lists) expanded on the
//! wall clock of a zone.
//!
//! The `rrule` crate expands the rule; everything around it is ours (decision 0004):
//!
//! - the crate sees a naive wall clock (UTC as a stand-in), and `schedule::wall_clock` places
//!   each local time with crontab's `dst_gap`/`dst_overlap` policies, so a zone whose clocks
//!   change at midnight loses no fire and a rule never fires twice at one instant;
//! - "the first instance after T" starts the crate at the period of the rule that contains T
//!   (the rule's implicit parts made explicit from DTSTART first), so a query costs the same
//!   however old DTSTART is; a rule with COUNT (bounded) is walked once per process, and its
//!   instances searched;
//! - the RFC's prohibitions the crate lets through are refused here, naming the part; UNTIL,
//!   RDATE and EXDATE are read and applied here, on local times;
//! - the stored form is the user's string.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex};

use chrono::{
    DateTime, Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Timelike,
    Utc,
};
use rrule::{Frequency, RRule, RRuleSet, Unvalidated};

use super::timezone::parse_timezone;
use super::wall_clock::{self, Placement, WallClockRule};
use super::RruleSpec;

/// The most instances COUNT may ask for: a rule with COUNT is walked whole from DTSTART.
pub const MAX_COUNT: u32 = 1_000;
/// The most RDATE or EXDATE entries a schedule may list.
pub const MAX_DATES: usize = 1_000;
/// The longest rule text accepted.
const MAX_RULE_CHARS: usize = 1_000;
/// How far past a local time a search looks: the crate's own loop limit (100,000 periods
/// without an instance) usually ends a fruitless search first.
const SEARCH_YEARS: i64 = 1_000;

const PARTS: &[&str] = &[
    "FREQ",
    "UNTIL",
    "COUNT",
    "INTERVAL",
    "BYSECOND",
    "BYMINUTE",
    "BYHOUR",
    "BYDAY",
    "BYMONTHDAY",
    "BYYEARDAY",
    "BYWEEKNO",
    "BYMONTH",
    "BYSETPOS",
    "WKST",
];

/// Which member of the spec an error is about, so the API can name the JSON field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RruleError {
    /// `rule`, `timezone`, `dtstart`, `rdate[3]`, `exdate[0]`.
    pub member: String,
    pub message: String,
}

fn error(member: impl Into<String>, message: impl Into<String>) -> RruleError {
    RruleError {
        member: member.into(),
        message: message.into(),
    }
}

/// UNTIL as given: an instant (`…Z`) or a local time (floating, or a date meaning its end).
#[derive(Debug, Clone, Copy)]
enum Until {
    Local(NaiveDateTime),
    Instant(DateTime<Utc>),
}

/// A validated rrule schedule, ready to answer "when next?".
#[derive(Debug, Clone)]
pub struct RruleSchedule {
    /// The crate's rule with every implicit part filled in from DTSTART, UNTIL removed; for a
    /// rule firing at the same times every day (`times`), the rule of its days, at midnight.
    rule: RRule,
    /// The times of day of a rule whose fires repeat daily.
    times: Option<DayTimes>,
    /// Every instance of a rule with COUNT, ascending.
    counted: Option<Arc<Vec<NaiveDateTime>>>,
    dtstart: NaiveDateTime,
    /// The last local time the rule may produce (UNTIL, read on the zone's wall clock).
    until: Option<NaiveDateTime>,
    rdates: Vec<NaiveDateTime>,
    exdates: Vec<NaiveDateTime>,
    placement: Placement,
}

impl RruleSchedule {
    /// Parses and validates; `None` policies take crontab's defaults (a rule firing at a named
    /// time of day is fixed-time); refuses rules that never fire.
    pub fn new(spec: &RruleSpec) -> Result<RruleSchedule, RruleError> {
        let tz = parse_timezone(&spec.timezone).map_err(|m| error("timezone", m))?;
        let dtstart = local_time(&spec.dtstart).map_err(|m| error("dtstart", m))?;
        let dates = |member: &str, texts: &[String]| -> Result<Vec<NaiveDateTime>, RruleError> {
            if texts.len() > MAX_DATES {
                return Err(error(
                    member,
                    format!("lists at most {MAX_DATES} local date-times"),
                ));
            }
            let mut dates = texts
                .iter()
                .enumerate()
                .map(|(i, text)| local_time(text).map_err(|m| error(format!("{member}[{i}]"), m)))
                .collect::<Result<Vec<_>, _>>()?;
            dates.sort_unstable();
            dates.dedup();
            Ok(dates)
        };
        let rdates = dates("rdate", &spec.rdate)?;
        let exdates = dates("exdate", &spec.exdate)?;
        let parts = RuleParts::parse(&spec.rule).map_err(|m| error("rule", m))?;
        let until = parts.until.map(|until| match until {
            Until::Local(local) => local,
            Until::Instant(at) => at.with_timezone(&tz).naive_local(),
        });
        let (for_crate, times) = parts.for_crate(dtstart).map_err(|m| error("rule", m))?;
        let crate_start = match times {
            Some(_) => dtstart.date().and_time(NaiveTime::MIN),
            None => dtstart,
        };
        let rule = RRule::<Unvalidated>::from_str(&for_crate)
            .map_err(|e| error("rule", e.to_string()))?
            .validate(stand_in(crate_start))
            .map_err(|e| error("rule", e.to_string()))?;
        let counted = rule
            .get_count()
            .map(|_| counted_instances(&for_crate, &rule, crate_start));
        let fixed = matches!(
            parts.freq().as_str(),
            "YEARLY" | "MONTHLY" | "WEEKLY" | "DAILY"
        );
        let schedule = RruleSchedule {
            counted,
            rule,
            times,
            dtstart,
            until,
            rdates,
            exdates,
            placement: Placement::new(tz, spec.dst_gap, spec.dst_overlap, fixed),
        };
        let start = seconds(dtstart) - 1;
        if schedule
            .next_local_after(start, i64::from(dtstart.year()) + SEARCH_YEARS)
            .is_none()
        {
            return Err(error(
                "rule",
                "the rule never fires: no instance from DTSTART on (check UNTIL, EXDATE and the BY parts)",
            ));
        }
        Ok(schedule)
    }

    /// The rule's first local time strictly after `local`, EXDATE and UNTIL applied, RDATE not.
    fn rule_next_after(&self, local: NaiveDateTime, limit_year: i64) -> Option<NaiveDateTime> {
        // Nothing precedes DTSTART.
        let mut local = local.max(self.dtstart - Duration::seconds(1));
        loop {
            let at = match (&self.counted, &self.times) {
                (Some(all), _) => {
                    let at = *all.get(all.partition_point(|at| *at <= local))?;
                    (i64::from(at.year()) <= limit_year).then_some(at)?
                }
                (None, Some(times)) => self.next_on_days(times, local, limit_year)?,
                (None, None) => self.crate_after(local, limit_year).next()?,
            };
            if self.until.is_some_and(|until| at > until) {
                return None;
            }
            if self.exdates.binary_search(&at).is_err() {
                return Some(at);
            }
            local = at;
        }
    }

    /// For a rule repeating `times` every day: the first of them strictly after `local` on a day
    /// the rule's days include.
    fn next_on_days(
        &self,
        times: &DayTimes,
        local: NaiveDateTime,
        limit_year: i64,
    ) -> Option<NaiveDateTime> {
        let midnight = local.date().and_time(NaiveTime::MIN);
        let day = self
            .crate_after(midnight - Duration::seconds(1), limit_year)
            .next()?;
        if day.date() == local.date() {
            if let Some(time) = times.after(local.time()) {
                return Some(day.date().and_time(time));
            }
            let next = self.crate_after(midnight, limit_year).next()?;
            return Some(next.date().and_time(times.first()?));
        }
        Some(day.date().and_time(times.first()?))
    }

    /// The crate's instances strictly after `local`, up to `limit_year`. A rule with COUNT is
    /// walked from DTSTART; any other starts at the period containing `local`.
    fn crate_after(
        &self,
        local: NaiveDateTime,
        limit_year: i64,
    ) -> impl Iterator<Item = NaiveDateTime> {
        let first = self.rule_start();
        let start = if self.rule.get_count().is_some() || local < first {
            first
        } else {
            let period = self.period_start(local).max(first);
            // Within a day the crate's times do not depend on where it starts: skip the day's
            // instances up to `local` instead of generating them.
            let next_second = local + Duration::seconds(1);
            match self.rule.get_freq() {
                Frequency::Daily if next_second.date() == period.date() => next_second.max(period),
                _ => period,
            }
        };
        RRuleSet::new(stand_in(start))
            .rrule(self.rule.clone())
            .limit()
            .into_iter()
            .map(|at| at.naive_utc())
            .take_while(move |at| i64::from(at.year()) <= limit_year)
            .filter(move |at| *at > local)
    }

    /// Where the crate's rule starts: DTSTART, or its midnight for a rule of days.
    fn rule_start(&self) -> NaiveDateTime {
        match self.times {
            Some(_) => self.dtstart.date().and_time(NaiveTime::MIN),
            None => self.dtstart,
        }
    }

    /// The first RDATE strictly after `local` that EXDATE does not remove.
    fn rdate_after(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let from = self.rdates.partition_point(|at| *at <= local);
        self.rdates[from..]
            .iter()
            .copied()
            .find(|at| self.exdates.binary_search(at).is_err())
    }

    /// The start of the rule's period (a multiple of INTERVAL periods from DTSTART's) that
    /// contains `local`.
    fn period_start(&self, local: NaiveDateTime) -> NaiveDateTime {
        let interval = i64::from(self.rule.get_interval().max(1));
        let aligned = |periods: i64| periods.div_euclid(interval) * interval;
        let start = self.rule_start();
        let midnight = |date: NaiveDate| date.and_time(NaiveTime::MIN);
        match self.rule.get_freq() {
            Frequency::Yearly => {
                let years = aligned(i64::from(local.year() - start.year()));
                NaiveDate::from_ymd_opt(start.year() + years as i32, 1, 1).map_or(start, midnight)
            }
            Frequency::Monthly => {
                let month_index =
                    |at: NaiveDateTime| i64::from(at.year()) * 12 + i64::from(at.month0());
                let months = aligned(month_index(local) - month_index(start));
                let first = NaiveDate::from_ymd_opt(start.year(), start.month(), 1)
                    .and_then(|first| first.checked_add_months(Months::new(months as u32)));
                first.map_or(start, midnight)
            }
            Frequency::Weekly => {
                let week_start = |date: NaiveDate| {
                    let back = date.weekday().days_since(self.rule.get_week_start());
                    date - Duration::days(i64::from(back))
                };
                let first = week_start(start.date());
                let weeks = aligned((week_start(local.date()) - first).num_days() / 7);
                midnight(first + Duration::weeks(weeks))
            }
            Frequency::Daily => {
                let days = aligned((local.date() - start.date()).num_days());
                midnight(start.date() + Duration::days(days))
            }
            Frequency::Hourly => {
                let first = start
                    .with_minute(0)
                    .and_then(|t| t.with_second(0))
                    .unwrap_or(start);
                first + Duration::hours(aligned((local - first).num_hours()))
            }
            Frequency::Minutely => {
                let first = start.with_second(0).unwrap_or(start);
                first + Duration::minutes(aligned((local - first).num_minutes()))
            }
            Frequency::Secondly => {
                start + Duration::seconds(aligned((local - start).num_seconds()))
            }
        }
    }
}

impl WallClockRule for RruleSchedule {
    fn placement(&self) -> Placement {
        self.placement
    }

    fn search_years(&self) -> i64 {
        SEARCH_YEARS
    }

    fn next_local_after(&self, local: i64, limit_year: i64) -> Option<i64> {
        let local = DateTime::from_timestamp(local, 0)?.naive_utc();
        let from_rule = self.rule_next_after(local, limit_year);
        let from_dates = self
            .rdate_after(local)
            .filter(|at| i64::from(at.year()) <= limit_year);
        let next = match (from_rule, from_dates) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(seconds(next))
    }
}

impl RruleSchedule {
    /// The first fire strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        wall_clock::next_after(self, after)
    }
}

/// The times of a day a rule fires at: every combination of its hours, minutes and seconds
/// (each list ascending, none empty).
#[derive(Debug, Clone)]
struct DayTimes([Vec<u32>; 3]);

impl DayTimes {
    fn first(&self) -> Option<NaiveTime> {
        let [hours, minutes, seconds] = &self.0;
        NaiveTime::from_hms_opt(*hours.first()?, *minutes.first()?, *seconds.first()?)
    }

    /// The first of the times strictly after `time`, the same day.
    fn after(&self, time: NaiveTime) -> Option<NaiveTime> {
        let [hours, minutes, seconds] = &self.0;
        let (h, m, s) = (time.hour(), time.minute(), time.second());
        let at = |h: u32, m: u32, s: u32| NaiveTime::from_hms_opt(h, m, s);
        if hours.contains(&h) {
            if minutes.contains(&m) {
                if let Some(next) = seconds.iter().find(|v| **v > s) {
                    return at(h, m, *next);
                }
            }
            if let Some(next) = minutes.iter().find(|v| **v > m) {
                return at(h, *next, seconds[0]);
            }
        }
        let next = hours.iter().find(|v| **v > h)?;
        at(*next, minutes[0], seconds[0])
    }
}

/// The most instances the memo of COUNT rules holds in all before it starts again (about 12 MB).
const MAX_COUNTED_HELD: usize = 1_000_000;

/// Every instance of a rule with COUNT (which counts from its start, so it cannot seek), walked
/// once per process: a worker compiles a schedule's spec each time it plans it, and the walk is
/// a pure function of the rule's text and start, so the result is kept by both.
fn counted_instances(
    for_crate: &str,
    rule: &RRule,
    start: NaiveDateTime,
) -> Arc<Vec<NaiveDateTime>> {
    type Memo = (
        usize,
        HashMap<(String, NaiveDateTime), Arc<Vec<NaiveDateTime>>>,
    );
    static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);
    let key = (for_crate.to_owned(), start);
    if let Some(found) = MEMO.lock().ok().and_then(|memo| memo.1.get(&key).cloned()) {
        return found;
    }
    let all: Arc<Vec<NaiveDateTime>> = Arc::new(
        RRuleSet::new(stand_in(start))
            .rrule(rule.clone())
            .limit()
            .into_iter()
            .map(|at| at.naive_utc())
            .collect(),
    );
    if let Ok(mut memo) = MEMO.lock() {
        if memo.0 + all.len() > MAX_COUNTED_HELD {
            *memo = Memo::default();
        }
        memo.0 += all.len();
        memo.1.insert(key, all.clone());
    }
    all
}

/// A local time as the crate's stand-in wall clock: the same digits, in UTC.
fn stand_in(local: NaiveDateTime) -> DateTime<rrule::Tz> {
    rrule::Tz::UTC.from_utc_datetime(&local)
}

fn seconds(local: NaiveDateTime) -> i64 {
    local.and_utc().timestamp()
}

/// A local date-time `YYYY-MM-DDTHH:MM:SS`, whole seconds, within 1970 … 9999.
fn local_time(text: &str) -> Result<NaiveDateTime, String> {
    let at = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S").map_err(|_| {
        format!("must be a local date-time YYYY-MM-DDTHH:MM:SS without an offset, got {text:?}")
    })?;
    if !(1970..=9999).contains(&at.year()) {
        return Err(format!(
            "must lie within the years 1970 to 9999, got {text:?}"
        ));
    }
    Ok(at)
}

/// The rule text, checked part by part against RFC 5545 §3.3.10 before the crate reads it.
struct RuleParts {
    /// NAME=VALUE pairs, names upper case, UNTIL left out.
    parts: Vec<(String, String)>,
    until: Option<Until>,
}

impl RuleParts {
    fn parse(text: &str) -> Result<RuleParts, String> {
        if text.chars().count() > MAX_RULE_CHARS {
            return Err(format!("is longer than {MAX_RULE_CHARS} characters"));
        }
        let body = text.trim();
        let body = match body.get(..6) {
            Some(prefix) if prefix.eq_ignore_ascii_case("RRULE:") => &body[6..],
            _ => body,
        };
        if body.contains(['\n', '\r']) {
            return Err("is one RRULE; give RDATE and EXDATE as the rdate and exdate lists".into());
        }
        let mut parts: Vec<(String, &str)> = Vec::new();
        for part in body.split(';').filter(|p| !p.trim().is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(format!("{part:?} is not NAME=VALUE"));
            };
            let name = name.trim().to_ascii_uppercase();
            if !PARTS.contains(&name.as_str()) {
                return Err(format!(
                    "unknown part {name}; RFC 5545 rules use {}",
                    PARTS.join(", ")
                ));
            }
            if parts.iter().any(|(seen, _)| *seen == name) {
                return Err(format!("{name} is given twice"));
            }
            parts.push((name, value.trim()));
        }
        let get = |name: &str| parts.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let Some(freq) = get("FREQ").map(str::to_ascii_uppercase) else {
            return Err(
                "FREQ is required (YEARLY, MONTHLY, WEEKLY, DAILY, HOURLY, MINUTELY or SECONDLY)"
                    .into(),
            );
        };
        if let Some(count) = get("COUNT") {
            match count.parse::<u32>() {
                Ok(n) if (1..=MAX_COUNT).contains(&n) => {}
                _ => {
                    return Err(format!(
                        "COUNT must be a whole number from 1 to {MAX_COUNT}, got {count:?} (use max_runs or end_at for longer series)"
                    ))
                }
            }
            if get("UNTIL").is_some() {
                return Err("COUNT and UNTIL cannot both be given (RFC 5545 §3.3.10)".into());
            }
        }
        if let Some(interval) = get("INTERVAL") {
            match interval.parse::<u16>() {
                Ok(n) if n >= 1 => {}
                _ => {
                    return Err(format!(
                        "INTERVAL must be a whole number from 1 to 65535, got {interval:?}"
                    ))
                }
            }
        }
        if let Some(days) = get("BYMONTHDAY") {
            if days.split(',').any(|d| d.trim().parse::<i32>() == Ok(0)) {
                return Err("BYMONTHDAY 0 is not a day: use 1 to 31 or -1 to -31".into());
            }
            if freq == "WEEKLY" {
                return Err("BYMONTHDAY cannot be used in a WEEKLY rule (RFC 5545 §3.3.10)".into());
            }
        }
        if get("BYWEEKNO").is_some() && freq != "YEARLY" {
            return Err("BYWEEKNO can only be used in a YEARLY rule (RFC 5545 §3.3.10)".into());
        }
        if get("BYYEARDAY").is_some() && matches!(freq.as_str(), "DAILY" | "WEEKLY" | "MONTHLY") {
            return Err(format!(
                "BYYEARDAY cannot be used in a {freq} rule (RFC 5545 §3.3.10)"
            ));
        }
        if let Some(days) = get("BYDAY") {
            check_weekdays(days, &freq, get("BYWEEKNO").is_some())?;
        }
        let until = get("UNTIL").map(parse_until).transpose()?;
        let parts = parts
            .into_iter()
            .filter(|(name, _)| name != "UNTIL")
            .map(|(name, value)| (name, value.to_owned()))
            .collect();
        Ok(RuleParts { parts, until })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn freq(&self) -> String {
        self.get("FREQ").unwrap_or_default().to_ascii_uppercase()
    }

    /// The rule in the crate's syntax, and for a sub-daily rule whose fires repeat the same
    /// times every day, those times: the crate then expands only the days (a DAILY rule at
    /// midnight with the rule's day filters) and the times are ours. This gives the same
    /// instances in the same order; the crate's own sub-daily stepping loses rules that combine
    /// BYHOUR with a day filter, and builds every time of the day on every query. With COUNT,
    /// which counts times, the crate expands the DAILY rule with the times as BY lists.
    fn for_crate(&self, dtstart: NaiveDateTime) -> Result<(String, Option<DayTimes>), String> {
        let text = |parts: &[(String, String)]| {
            parts
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect::<Vec<_>>()
                .join(";")
        };
        let Some(grid) = self.daily_times(dtstart)? else {
            return Ok((text(&self.parts), None));
        };
        let mut parts: Vec<(String, String)> = self
            .parts
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "FREQ" | "INTERVAL" | "BYHOUR" | "BYMINUTE" | "BYSECOND"
                )
            })
            .cloned()
            .collect();
        parts.insert(0, ("FREQ".into(), "DAILY".into()));
        if self.get("COUNT").is_some() {
            let [hours, minutes, seconds] =
                grid.map(|set| set.iter().map(u32::to_string).collect::<Vec<_>>().join(","));
            parts.extend([
                ("BYHOUR".into(), hours),
                ("BYMINUTE".into(), minutes),
                ("BYSECOND".into(), seconds),
            ]);
            return Ok((text(&parts), None));
        }
        parts.extend(["BYHOUR", "BYMINUTE", "BYSECOND"].map(|name| (name.into(), "0".into())));
        Ok((text(&parts), Some(DayTimes(grid))))
    }

    /// For a sub-daily rule whose INTERVAL steps through the same times every day, as a grid of
    /// hours × minutes × seconds: those times (BY filters applied); `None` for any other rule.
    fn daily_times(&self, dtstart: NaiveDateTime) -> Result<Option<[Vec<u32>; 3]>, String> {
        let unit = match self.freq().as_str() {
            "HOURLY" => 3600,
            "MINUTELY" => 60,
            "SECONDLY" => 1,
            _ => return Ok(None),
        };
        if self.get("BYSETPOS").is_some() || self.get("BYYEARDAY").is_some() {
            return Ok(None); // BYSETPOS counts within the sub-daily period; DAILY lacks BYYEARDAY
        }
        let interval: u32 = self.get("INTERVAL").map_or(Ok(1), str::parse).unwrap_or(1);
        let step = interval * unit;
        // The grid is a product only when the step divides the next larger unit or is a whole
        // number of it that divides the one above.
        let granularity = if step < 60 && 60 % step == 0 {
            1
        } else if step.is_multiple_of(60) && step < 3600 && 3600 % step == 0 {
            60
        } else if step.is_multiple_of(3600) && 86_400 % step == 0 {
            3600
        } else {
            // The crate's stepping skips fires when a sub-hourly rule's times also filter on
            // the hour (or a SECONDLY rule's on the minute); refuse rather than lose fires.
            let filtered = match unit {
                60 => self.get("BYHOUR").is_some(),
                1 => self.get("BYHOUR").is_some() || self.get("BYMINUTE").is_some(),
                _ => false,
            };
            if filtered {
                return Err(format!(
                    "INTERVAL={interval} with BYHOUR{} is not supported in a {} rule: its times do not repeat every day; \
                     use an INTERVAL that divides an hour or a day, or a crontab",
                    if unit == 1 { " or BYMINUTE" } else { "" },
                    self.freq()
                ));
            }
            return Ok(None);
        };
        let components = [
            ("BYHOUR", 3600, 24, dtstart.hour()),
            ("BYMINUTE", 60, 60, dtstart.minute()),
            ("BYSECOND", 1, 60, dtstart.second()),
        ];
        let mut times: [Vec<u32>; 3] = Default::default();
        for (slot, (name, size, of, phase)) in times.iter_mut().zip(components) {
            let (set, default): (Vec<u32>, Option<u32>) = if size > granularity {
                ((0..of).collect(), None)
            } else if size == granularity {
                let every = step / size;
                (
                    (0..of)
                        .filter(|v| (v + of - phase) % of % every == 0)
                        .collect(),
                    None,
                )
            } else if size >= unit {
                // Stepping by whole larger units keeps this part where DTSTART has it.
                (vec![phase], None)
            } else {
                // Finer than FREQ: BY lists expand; left out, DTSTART's value.
                ((0..of).collect(), Some(phase))
            };
            let listed: Option<Vec<u32>> = match self.get(name) {
                Some(list) => Some(
                    list.split(',')
                        .map(|v| {
                            v.trim()
                                .parse::<u32>()
                                .map_err(|_| format!("{name} {v} is not a number"))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                None => default.map(|v| vec![v]),
            };
            *slot = match listed {
                Some(listed) => set.into_iter().filter(|v| listed.contains(v)).collect(),
                None => set,
            };
        }
        if times.iter().any(Vec::is_empty) {
            return Err("the rule never fires: its INTERVAL never lands on the BYHOUR, BYMINUTE or BYSECOND values".into());
        }
        Ok(Some(times))
    }
}

/// BYDAY's numbers: only in MONTHLY (±1 to ±5) and YEARLY (±1 to ±53, none with BYWEEKNO).
fn check_weekdays(days: &str, freq: &str, by_week_no: bool) -> Result<(), String> {
    for day in days.split(',').map(str::trim) {
        let split = day.char_indices().rev().nth(1).map_or(0, |(at, _)| at);
        let (number, weekday) = day.split_at(split);
        if !["MO", "TU", "WE", "TH", "FR", "SA", "SU"]
            .contains(&weekday.to_ascii_uppercase().as_str())
        {
            return Err(format!(
                "BYDAY {day} is not a weekday such as MO, 2TU or -1FR"
            ));
        }
        if number.is_empty() {
            continue;
        }
        let Ok(n) = number.parse::<i32>() else {
            return Err(format!(
                "BYDAY {day} is not a weekday such as MO, 2TU or -1FR"
            ));
        };
        let most = match freq {
            "MONTHLY" => 5,
            "YEARLY" if !by_week_no => 53,
            "YEARLY" => {
                return Err(format!(
                    "BYDAY {day}: a numbered weekday cannot be combined with BYWEEKNO (RFC 5545 §3.3.10)"
                ))
            }
            _ => {
                return Err(format!(
                    "BYDAY {day}: numbered weekdays are for MONTHLY and YEARLY rules only (RFC 5545 §3.3.10)"
                ))
            }
        };
        if n == 0 || n.abs() > most {
            return Err(format!(
                "BYDAY {day} is out of range: a {freq} rule numbers weekdays 1 to {most} or -1 to -{most}"
            ));
        }
        // The crate refuses the last valid negative number (its ranges are computed by integer
        // division); say how to write the same rule.
        if n == -most {
            return Err(format!(
                "BYDAY {day} is not supported; BYDAY={weekday};BYSETPOS={n} picks the same day when the rule fires once a day"
            ));
        }
    }
    Ok(())
}

/// UNTIL: `YYYYMMDDTHHMMSSZ` (an instant), `YYYYMMDDTHHMMSS` (local) or `YYYYMMDD` (through the
/// end of that local day).
fn parse_until(text: &str) -> Result<Until, String> {
    let wrong =
        || format!("UNTIL must be YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ, got {text:?}");
    let at = if let Some(utc) = text.strip_suffix(['Z', 'z']) {
        let naive = NaiveDateTime::parse_from_str(utc, "%Y%m%dT%H%M%S").map_err(|_| wrong())?;
        Until::Instant(naive.and_utc())
    } else if text.len() == 8 {
        let date = NaiveDate::parse_from_str(text, "%Y%m%d").map_err(|_| wrong())?;
        Until::Local(date.and_hms_opt(23, 59, 59).ok_or_else(wrong)?)
    } else {
        Until::Local(NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%S").map_err(|_| wrong())?)
    };
    let year = match at {
        Until::Local(local) => local.year(),
        Until::Instant(at) => at.year(),
    };
    if !(1970..=9999).contains(&year) {
        return Err(format!(
            "UNTIL must lie within the years 1970 to 9999, got {text:?}"
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests;

//! Schedule math: when does a schedule fire? Pure functions of a spec and an instant, shared by
//! validation, `preview` and the worker, so all three always agree.

pub mod catchup;
pub mod crontab;
mod interval;
pub mod local;
pub mod recurrence;
pub mod solar;
pub mod timezone;
pub mod wall_clock;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::calendar::Exclusions;
use crate::skips::{Skip, SkipReason};
use crate::validation::{FieldError, FieldErrors};

/// The most nominal fires [`Timing::calendar_skips`] looks at in one call.
pub const MAX_EXCLUDED_FIRES_COUNTED: usize = 100_000;

pub use crontab::{CronSchedule, DayMatch, DstGap, DstOverlap};
pub use interval::Interval;
pub use recurrence::RruleSchedule;
pub use solar::{SolarEvent, SolarSchedule};

/// The `schedule` member of a schedule: *when* it fires, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleSpec {
    Crontab(CrontabSpec),
    Interval(IntervalSpec),
    Solar(SolarSpec),
    Once(OnceSpec),
    Rrule(RruleSpec),
}

/// `crontab`: a POSIX 5-field cron expression evaluated on the wall clock of `timezone`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CrontabSpec {
    /// minute hour day-of-month month day-of-week, or a macro (`@daily`, `@hourly`, …).
    #[schema(example = "30 2 * * MON-FRI")]
    pub expression: String,
    /// An IANA time zone name.
    #[serde(default = "utc")]
    #[schema(default = "UTC", example = "Europe/Berlin")]
    pub timezone: String,
    /// `or` (Vixie cron, the default) or `and` (Celery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub day_match: Option<DayMatch>,
    /// A matching local time in a spring-forward gap: `shift` (fire once after the gap) or
    /// `skip`. Left out: `shift` for fixed-time jobs, `skip` for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_gap: Option<DstGap>,
    /// A matching local time in a fall-back overlap: `first` or `both`. Left out: `first` for
    /// fixed-time jobs, `both` for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_overlap: Option<DstOverlap>,
}

/// `rrule`: an RFC 5545 recurrence rule evaluated on the wall clock of `timezone`, from `dtstart`,
/// with crontab's DST policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RruleSpec {
    /// The RRULE value (an `RRULE:` prefix is allowed): FREQ, INTERVAL, COUNT (at most 1000) or
    /// UNTIL, BYSECOND, BYMINUTE, BYHOUR, BYDAY, BYMONTHDAY, BYYEARDAY, BYWEEKNO, BYMONTH,
    /// BYSETPOS, WKST. UNTIL is `YYYYMMDDTHHMMSSZ` (an instant), `YYYYMMDDTHHMMSS` (local) or
    /// `YYYYMMDD` (through the end of that local day).
    #[schema(example = "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0")]
    pub rule: String,
    /// An IANA time zone name.
    #[serde(default = "utc")]
    #[schema(default = "UTC", example = "Europe/Berlin")]
    pub timezone: String,
    /// The local date-time the rule counts from (`YYYY-MM-DDTHH:MM:SS`, no offset): the phase of
    /// INTERVAL, the start of COUNT, and the time of day, day and month for the parts the rule
    /// leaves out.
    #[schema(example = "2026-01-01T00:00:00")]
    pub dtstart: String,
    /// Extra local date-times to fire at (RFC 5545 RDATE), at most 1000.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["2026-12-23T17:00:00"]))]
    pub rdate: Vec<String>,
    /// Local date-times the rule or `rdate` would fire at that are left out (RFC 5545 EXDATE),
    /// at most 1000.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["2026-12-25T17:00:00"]))]
    pub exdate: Vec<String>,
    /// As for crontab. Left out: `shift` for a rule firing at a time of day (FREQ DAILY or
    /// coarser), `skip` for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_gap: Option<DstGap>,
    /// As for crontab. Left out: `first` for a rule firing at a time of day, `both` for others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_overlap: Option<DstOverlap>,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// `solar`: an event of the sun at a place, as Celery's `solar` schedule defines it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SolarSpec {
    pub event: SolarEvent,
    /// Degrees north, -90 to 90.
    #[schema(example = 52.52)]
    pub latitude: f64,
    /// Degrees east, -180 to 180.
    #[schema(example = 13.405)]
    pub longitude: f64,
}

/// `interval`: fires at every `anchor + k × every_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IntervalSpec {
    /// Seconds between fires (at least 1).
    #[schema(minimum = 1, example = 10)]
    pub every_seconds: i64,
    /// Sets the phase of the fires; the Unix epoch when left out. Within
    /// 1970-01-01T00:00:00Z … 9999-12-31T23:59:59Z, to the microsecond at most.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::instant::deserialize_fire_option"
    )]
    pub anchor: Option<DateTime<Utc>>,
}

/// `once`: fires once, at `at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OnceSpec {
    /// The instant to fire at (RFC 3339), within 1970-01-01T00:00:00Z … 9999-12-31T23:59:59Z,
    /// to the microsecond at most.
    #[serde(deserialize_with = "crate::instant::deserialize_fire")]
    pub at: DateTime<Utc>,
}

const KINDS: &str = "crontab, interval, solar, once, rrule";

impl ScheduleSpec {
    /// Reads a spec from JSON, naming the offending member on failure
    /// (`schedule.every_seconds`, not just `schedule`: serde's tagged enums lose the path).
    pub fn from_json(
        value: &serde_json::Value,
        prefix: &str,
    ) -> Result<ScheduleSpec, Vec<FieldError>> {
        let one = |field: String, message: String| vec![FieldError { field, message }];
        let Some(members) = value.as_object() else {
            return Err(one(
                prefix.to_owned(),
                format!("must be an object with a kind ({KINDS})"),
            ));
        };
        let kind = match members.get("kind") {
            Some(serde_json::Value::String(kind)) => kind.as_str(),
            Some(_) => {
                return Err(one(
                    format!("{prefix}.kind"),
                    format!("must be a string: one of {KINDS}"),
                ))
            }
            None => {
                return Err(one(
                    format!("{prefix}.kind"),
                    format!("is required: one of {KINDS}"),
                ))
            }
        };
        let mut rest = members.clone();
        rest.remove("kind");
        let rest = serde_json::Value::Object(rest);
        use crate::validation::strict_from_json as typed;
        match kind {
            "crontab" => typed(rest, prefix).map(ScheduleSpec::Crontab),
            "interval" => typed(rest, prefix).map(ScheduleSpec::Interval),
            "solar" => typed(rest, prefix).map(ScheduleSpec::Solar),
            "once" => typed(rest, prefix).map(ScheduleSpec::Once),
            "rrule" => typed(rest, prefix).map(ScheduleSpec::Rrule),
            other => Err(one(
                format!("{prefix}.kind"),
                format!("unknown kind {other:?}; expected one of {KINDS}"),
            )),
        }
    }
}

/// A validated spec, ready to answer "when next?".
#[derive(Debug, Clone)]
pub enum CompiledSpec {
    Crontab(Box<CronSchedule>),
    Interval(Interval),
    Solar(SolarSchedule),
    Once(DateTime<Utc>),
    Rrule(Box<RruleSchedule>),
}

impl ScheduleSpec {
    /// Validates the spec; errors are named under `prefix` (e.g. `schedule`).
    pub fn compile(&self, prefix: &str) -> Result<CompiledSpec, Vec<FieldError>> {
        let mut errors = FieldErrors::new();
        match self {
            ScheduleSpec::Crontab(spec) => match CronSchedule::new(
                &spec.expression,
                &spec.timezone,
                spec.day_match,
                spec.dst_gap,
                spec.dst_overlap,
            ) {
                Ok(schedule) => return Ok(CompiledSpec::Crontab(Box::new(schedule))),
                Err(error) => {
                    let member = match error.field {
                        crontab::CronField::Expression => "expression",
                        crontab::CronField::Timezone => "timezone",
                    };
                    errors.add(format!("{prefix}.{member}"), error.message)
                }
            },
            ScheduleSpec::Solar(spec) => {
                match SolarSchedule::new(spec.event, spec.latitude, spec.longitude) {
                    Ok(schedule) => return Ok(CompiledSpec::Solar(schedule)),
                    Err(error) => {
                        let member = match error.field {
                            solar::SolarField::Latitude => "latitude",
                            solar::SolarField::Longitude => "longitude",
                        };
                        errors.add(format!("{prefix}.{member}"), error.message)
                    }
                }
            }
            ScheduleSpec::Interval(spec) => match Interval::new(spec.every_seconds, spec.anchor) {
                Ok(interval) => return Ok(CompiledSpec::Interval(interval)),
                Err(message) => errors.add(format!("{prefix}.every_seconds"), message),
            },
            ScheduleSpec::Once(spec) => return Ok(CompiledSpec::Once(spec.at)),
            ScheduleSpec::Rrule(spec) => match RruleSchedule::new(spec) {
                Ok(schedule) => return Ok(CompiledSpec::Rrule(Box::new(schedule))),
                Err(error) => errors.add(format!("{prefix}.{}", error.member), error.message),
            },
        }
        errors.finish(CompiledSpec::Once(DateTime::UNIX_EPOCH))
    }
}

impl CompiledSpec {
    /// The first fire strictly after `after`, or `None` when the spec never fires again.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            CompiledSpec::Crontab(cron) => cron.next_after(after),
            CompiledSpec::Interval(interval) => interval.next_after(after),
            CompiledSpec::Solar(solar) => solar.next_after(after),
            CompiledSpec::Once(at) => (*at > after).then_some(*at),
            CompiledSpec::Rrule(rule) => rule.next_after(after),
        }
    }

    /// The wall-clock rule of a kind that matches local times in a zone; `None` for the kinds
    /// that read no wall clock (interval, solar, once).
    pub fn wall_clock(&self) -> Option<&dyn wall_clock::WallClockRule> {
        match self {
            CompiledSpec::Crontab(cron) => Some(cron.as_ref()),
            CompiledSpec::Rrule(rule) => Some(rule.as_ref()),
            _ => None,
        }
    }

    /// The zone whose wall clock the spec reads; UTC for the kinds that read none.
    pub fn zone(&self) -> chrono_tz::Tz {
        self.wall_clock()
            .map_or(chrono_tz::Tz::UTC, |rule| rule.zone())
    }

    /// The first fire at or after `at`.
    pub fn first_at_or_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.next_after(at.checked_sub_signed(Duration::microseconds(1))?)
    }
}

/// A compiled spec within its bounds: `start_at`, `end_at` and `max_runs`, less the dates its
/// `exclude` calendars exclude.
#[derive(Debug, Clone)]
pub struct Timing {
    pub spec: CompiledSpec,
    pub start_at: Option<DateTime<Utc>>,
    pub end_at: Option<DateTime<Utc>>,
    pub max_runs: Option<i64>,
    pub exclude: Exclusions,
}

/// The most excluded runs of dates a search for the next fire steps over before answering
/// `None` (each step passes at least one whole excluded day).
const MAX_EXCLUDED_STEPS: usize = 10_000;

impl Timing {
    /// A spec without bounds or exclusions.
    pub fn of(spec: CompiledSpec) -> Timing {
        Timing {
            spec,
            start_at: None,
            end_at: None,
            max_runs: None,
            exclude: Exclusions::default(),
        }
    }

    /// The next fire strictly after `after`, given that `runs_so_far` runs were already made.
    /// A fire past 9999-12-31T23:59:59Z does not happen (see [`crate::instant`]).
    pub fn next_fire(&self, after: DateTime<Utc>, runs_so_far: i64) -> Option<DateTime<Utc>> {
        if self.max_runs.is_some_and(|max| runs_so_far >= max) {
            return None;
        }
        let mut next = self.nominal_after(after)?;
        let mut steps = 0;
        while let Some(resume) = self.exclude.resume_after(next) {
            steps += 1;
            if steps > MAX_EXCLUDED_STEPS || self.end_at.is_some_and(|end| next > end) {
                return None;
            }
            next = self.nominal_after(resume.checked_sub_signed(Duration::microseconds(1))?)?;
        }
        match self.end_at {
            Some(end) if next > end => None,
            _ => crate::instant::within_range(next),
        }
    }

    /// The spec's next fire strictly after `after`, from `start_at` on, excluded dates included.
    fn nominal_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.start_at {
            Some(start) if start > after => self.spec.first_at_or_after(start),
            _ => self.spec.next_after(after),
        }
    }

    /// The fires the calendars exclude from `from` (inclusive) to `before` (exclusive), as
    /// ranges of consecutive excluded fires (at most [`MAX_EXCLUDED_FIRES_COUNTED`] counted).
    pub fn calendar_skips(&self, from: DateTime<Utc>, before: DateTime<Utc>) -> Vec<Skip> {
        let mut skips: Vec<Skip> = Vec::new();
        if self.exclude.is_empty() {
            return skips;
        }
        let mut counted = 0;
        let mut cursor = from
            .checked_sub_signed(Duration::microseconds(1))
            .and_then(|at| self.nominal_after(at));
        while let Some(at) = cursor.filter(|at| *at < before) {
            let Some(resume) = self.exclude.resume_after(at) else {
                counted += 1;
                cursor = self.nominal_after(at);
                if counted >= MAX_EXCLUDED_FIRES_COUNTED {
                    break;
                }
                continue;
            };
            // The fires of this excluded run: up to where it ends, without asking the
            // calendars again.
            let mut skip = Skip {
                first: at,
                last: at,
                fires: 1,
                reason: SkipReason::Calendar,
            };
            let end = resume.min(before);
            counted += 1;
            cursor = self.nominal_after(at);
            while let Some(next) = cursor.filter(|next| *next < end) {
                skip.last = next;
                skip.fires += 1;
                counted += 1;
                cursor = self.nominal_after(next);
                if counted >= MAX_EXCLUDED_FIRES_COUNTED {
                    break;
                }
            }
            skips.push(skip);
            if counted >= MAX_EXCLUDED_FIRES_COUNTED {
                break;
            }
        }
        skips
    }

    /// The shortest time between two consecutive fires, looking at the next 1,000 fires after
    /// `after` (a period repeats well within that for every kind); `None` for fewer than two.
    pub fn shortest_gap(&self, after: DateTime<Utc>) -> Option<Duration> {
        if let CompiledSpec::Interval(interval) = &self.spec {
            return Some(interval.every());
        }
        let fires = self.preview(after, 1_000);
        fires.windows(2).map(|pair| pair[1] - pair[0]).min()
    }

    /// The next `count` fires strictly after `after` (for previews), fewer when the schedule ends.
    pub fn preview(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut fires = Vec::with_capacity(count.min(1024));
        let mut cursor = after;
        while fires.len() < count {
            match self.next_fire(cursor, fires.len() as i64) {
                Some(next) => {
                    fires.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        fires
    }
}

/// The next `count` fires of a spec strictly after `after`: the one code path behind
/// `hookbeat preview` and `POST /v1/schedules/preview`, the same math the worker uses.
pub fn preview(
    spec: &ScheduleSpec,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<DateTime<Utc>>, Vec<FieldError>> {
    Ok(unbounded(spec)?.preview(after, count))
}

/// [`preview`] with each fire's local reading: wall-clock time, UTC offset and DST note, less
/// the dates `exclude` excludes.
pub fn preview_local(
    spec: &ScheduleSpec,
    exclude: Exclusions,
    after: DateTime<Utc>,
    count: usize,
) -> Result<Vec<local::LocalFire>, Vec<FieldError>> {
    let timing = Timing {
        exclude,
        ..unbounded(spec)?
    };
    Ok(timing
        .preview(after, count)
        .into_iter()
        .map(|at| local::local_fire(&timing.spec, at))
        .collect())
}

/// A spec's timing without bounds, as previews see it.
fn unbounded(spec: &ScheduleSpec) -> Result<Timing, Vec<FieldError>> {
    Ok(Timing::of(spec.compile("schedule")?))
}

/// A deterministic delay in `0..=jitter_ms` for one fire of one schedule: the same on every
/// worker and on every retry, so jitter never moves a fire twice.
pub fn jitter_for(
    schedule_id: hookbeat_entity::ScheduleId,
    scheduled_for: DateTime<Utc>,
    jitter_ms: i64,
) -> Duration {
    if jitter_ms <= 0 {
        return Duration::zero();
    }
    let id = schedule_id.0.as_u128();
    let seed = id as u64 ^ (id >> 64) as u64 ^ scheduled_for.timestamp_micros() as u64;
    Duration::milliseconds((splitmix64(seed) % (jitter_ms as u64 + 1)) as i64)
}

/// SplitMix64: a tiny, well-mixed hash of a u64 (Steele et al., 2014).
pub(crate) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn every(seconds: i64) -> CompiledSpec {
        CompiledSpec::Interval(Interval::new(seconds, None).unwrap())
    }

    #[test]
    fn timing_respects_start_end_and_max_runs() {
        let timing = Timing {
            spec: every(60),
            start_at: Some(t("2026-01-01T00:02:00Z")),
            end_at: Some(t("2026-01-01T00:05:00Z")),
            max_runs: None,
            exclude: Default::default(),
        };
        assert_eq!(
            timing.preview(t("2026-01-01T00:00:00Z"), 10),
            vec![
                t("2026-01-01T00:02:00Z"),
                t("2026-01-01T00:03:00Z"),
                t("2026-01-01T00:04:00Z"),
                t("2026-01-01T00:05:00Z"),
            ]
        );
        let capped = Timing {
            max_runs: Some(2),
            exclude: Default::default(),
            ..timing
        };
        assert_eq!(capped.preview(t("2026-01-01T00:00:00Z"), 10).len(), 2);
        assert_eq!(capped.next_fire(t("2026-01-01T00:00:00Z"), 2), None);
    }

    #[test]
    fn shortest_gap_finds_the_closest_fires() {
        let after = t("2030-01-01T00:00:00Z");
        assert_eq!(
            every(90).pipe_timing().shortest_gap(after),
            Some(Duration::seconds(90))
        );
        let cron = ScheduleSpec::Crontab(CrontabSpec {
            expression: "0,5 9 * * *".into(),
            timezone: "UTC".into(),
            day_match: None,
            dst_gap: None,
            dst_overlap: None,
        });
        let timing = Timing {
            spec: cron.compile("schedule").unwrap(),
            start_at: None,
            end_at: None,
            max_runs: None,
            exclude: Default::default(),
        };
        assert_eq!(timing.shortest_gap(after), Some(Duration::minutes(5)));
        let once = Timing {
            spec: CompiledSpec::Once(after + Duration::hours(1)),
            start_at: None,
            end_at: None,
            max_runs: None,
            exclude: Default::default(),
        };
        assert_eq!(once.shortest_gap(after), None);
    }

    trait PipeTiming {
        fn pipe_timing(self) -> Timing;
    }

    impl PipeTiming for CompiledSpec {
        fn pipe_timing(self) -> Timing {
            Timing {
                spec: self,
                start_at: None,
                end_at: None,
                max_runs: None,
                exclude: Default::default(),
            }
        }
    }

    #[test]
    fn once_fires_once_and_only_in_the_future() {
        let spec = CompiledSpec::Once(t("2026-03-01T12:00:00Z"));
        assert_eq!(
            spec.next_after(t("2026-03-01T11:59:59Z")),
            Some(t("2026-03-01T12:00:00Z"))
        );
        assert_eq!(spec.next_after(t("2026-03-01T12:00:00Z")), None);
    }

    #[test]
    fn invalid_interval_is_named_by_field() {
        let errors = ScheduleSpec::Interval(IntervalSpec {
            every_seconds: 0,
            anchor: None,
        })
        .compile("schedule")
        .unwrap_err();
        assert_eq!(errors[0].field, "schedule.every_seconds");
        assert_eq!(errors[0].message, "must be at least 1, got 0");
    }

    #[test]
    fn from_json_names_the_member() {
        let err =
            |v: serde_json::Value| ScheduleSpec::from_json(&v, "schedule").unwrap_err()[0].clone();
        let e = err(serde_json::json!({"kind": "interval", "every_seconds": "10"}));
        assert_eq!(e.field, "schedule.every_seconds");
        let e = err(serde_json::json!({"kind": "interval", "every_second": 10}));
        assert_eq!(e.field, "schedule.every_second");
        assert!(
            e.message.contains("unknown field `every_second`"),
            "{}",
            e.message
        );
        let e = err(serde_json::json!({"kind": "weekly"}));
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            (
                "schedule.kind",
                "unknown kind \"weekly\"; expected one of crontab, interval, solar, once, rrule"
            )
        );
        let e = err(serde_json::json!({"every_seconds": 1}));
        assert_eq!(e.field, "schedule.kind");
        let ok = ScheduleSpec::from_json(
            &serde_json::json!({"kind": "once", "at": "2030-01-01T00:00:00+01:00"}),
            "schedule",
        )
        .unwrap();
        assert_eq!(
            ok,
            ScheduleSpec::Once(OnceSpec {
                at: t("2029-12-31T23:00:00Z")
            })
        );
    }

    #[test]
    fn jitter_is_deterministic_and_bounded() {
        let id = hookbeat_entity::ScheduleId::new();
        let at = t("2026-01-01T00:00:00Z");
        let first = jitter_for(id, at, 5_000);
        assert_eq!(first, jitter_for(id, at, 5_000));
        assert!(first >= Duration::zero() && first <= Duration::milliseconds(5_000));
        assert_eq!(jitter_for(id, at, 0), Duration::zero());
        let spread: std::collections::HashSet<_> = (0..100)
            .map(|k| jitter_for(id, at + Duration::seconds(k), 5_000))
            .collect();
        assert!(
            spread.len() > 50,
            "jitter should spread fires, got {} distinct",
            spread.len()
        );
    }
}

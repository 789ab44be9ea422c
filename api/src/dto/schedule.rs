//! A schedule as clients write it (`ScheduleInput`) and read it (`Schedule`), and the validation
//! of what they write. `ScheduleInput` is the API's shape of the scheduler's `StoredSchedule`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hookbeat_entity::schedule;
use hookbeat_scheduler::calendar::{Calendar, Exclusions, MAX_EXCLUDE};
use hookbeat_scheduler::definition::{Catchup, Notify, Overlap, RetryPolicy, Target};
use hookbeat_scheduler::health::{self, HealthState};
use hookbeat_scheduler::instant;
use hookbeat_scheduler::schedule::local::LocalFire;
use hookbeat_scheduler::schedule::{ScheduleSpec, Timing};
use hookbeat_scheduler::stored::StoredSchedule;
pub use hookbeat_scheduler::timeline::Entry as TimelineEntry;
use hookbeat_scheduler::validation::FieldErrors;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::body::typed;
use crate::error::ApiError;

/// Reads the `schedule` member first, because serde's tagged enums lose the path of an error
/// inside them; this way a bad `every_seconds` is reported as `schedule.every_seconds`.
fn check_spec_member(document: &serde_json::Value) -> Result<(), ApiError> {
    match document.get("schedule") {
        Some(spec) => ScheduleSpec::from_json(spec, "schedule")
            .map(|_| ())
            .map_err(ApiError::Validation),
        None => Ok(()),
    }
}

const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 4_000;
const MAX_METADATA_BYTES: usize = 16 * 1024;
const MAX_JITTER_MS: i64 = 3_600_000;

/// The writable members of a schedule: the body of `POST /v1/schedules`, and the document a
/// `PATCH` merge patch applies to.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::schedule_input)]
pub struct ScheduleInput {
    /// Unique per tenant, 1 to 200 characters.
    #[schema(example = "nightly-report")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub schedule: ScheduleSpec,
    pub target: Target,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// No fire before this instant (within 1970 … 9999; a finer fraction than the microsecond
    /// is rounded up, which means the same for fires).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "instant::deserialize_option"
    )]
    pub start_at: Option<DateTime<Utc>>,
    /// No fire after this instant (within 1970 … 9999; a finer fraction than the microsecond is
    /// rounded down).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "instant::deserialize_option"
    )]
    pub end_at: Option<DateTime<Utc>>,
    /// The schedule stops after this many runs (manual triggers count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_runs: Option<i64>,
    /// Each fire is delayed by a deterministic 0 to `jitter_ms` milliseconds (at most 3600000).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 3600000)]
    pub jitter_ms: i64,
    /// A fire whose first attempt starts more than this many milliseconds after its scheduled
    /// time counts as late in the schedule's `health` (default 60000; 1 to 86400000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400000, example = 60000)]
    pub late_after_ms: Option<i64>,
    /// Where a signed notice goes when the schedule turns `failing`, when it recovers and when it
    /// pauses itself; without it, its tenant's default (`PATCH /v1/tenant`), if any. Its
    /// `after_failures` (default 3) is also when the schedule's health turns `failing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// The schedule pauses itself once this many runs in a row failed for good (1 to 1000), with
    /// a `paused_reason` saying so; resuming it starts the count again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000, example = 10)]
    pub pause_after_failures: Option<i32>,
    #[serde(default)]
    pub catchup: Catchup,
    #[serde(default)]
    pub overlap: Overlap,
    /// Names of the tenant's calendars (`/v1/calendars`, at most 10): a fire whose local date,
    /// in a calendar's zone, the calendar excludes is skipped (reason `calendar`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["de-holidays"]))]
    pub exclude: Vec<String>,
    #[serde(default = "enabled_by_default")]
    #[schema(default = true)]
    pub enabled: bool,
    /// Free-form data kept with the schedule (at most 16 KiB).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Further targets, delivered in order after the target succeeded, each only after the one
    /// before it succeeded (at most 10). Each has its own `webhook-id`: the run id + `-then-1`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Target>,
    /// Called once when a run fails for good, with the failure as its JSON body (so it takes no
    /// `body`); its `webhook-id` is the run id + `-on-failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Target>,
}

const MAX_THEN_STEPS: usize = 10;
const MAX_PAUSE_AFTER_FAILURES: i32 = 1_000;
/// The longest `late_after_ms`: a day, the window of the health counts.
const MAX_LATE_AFTER_MS: i64 = 86_400_000;

fn enabled_by_default() -> bool {
    true
}

/// A schedule as the API returns it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::schedule)]
pub struct Schedule {
    pub id: Uuid,
    #[serde(flatten)]
    pub input: ScheduleInput,
    /// Why the schedule is paused, when it is.
    pub paused_reason: Option<String>,
    /// The next fire; `null` when paused or when the schedule will not fire again.
    pub next_run_at: Option<DateTime<Utc>>,
    /// The latest fire that made a run.
    pub last_run_at: Option<DateTime<Utc>>,
    pub total_runs: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increases with every change; the `ETag` is this number in quotes.
    pub version: i64,
    pub health: ScheduleHealth,
}

/// How a schedule is doing, kept by the workers as its runs finish.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleHealth {
    /// `paused`; else `failing` once `notify.after_failures` runs in a row (3 unless its
    /// `notify` or its tenant's says otherwise) failed for good, until a run succeeds; else
    /// `ended` when it will not fire again; else `late` when its latest fire's first attempt
    /// started more than `late_after_ms` after its scheduled time; else `healthy`.
    pub state: HealthState,
    /// Runs failed for good in a row (retries of one run count once; a redelivered run counts
    /// again when it fails again); a success resets it.
    pub consecutive_failures: i32,
    /// When it turned `failing`; `null` while it is not failing.
    pub failing_since: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// How long after its scheduled time the latest fire's first attempt started.
    pub last_fire_lag_ms: Option<i64>,
    /// The schedule's threshold for a late fire (its `late_after_ms`, or the default 60000).
    pub late_after_ms: i64,
    /// The fires of the last 24 hours.
    pub last_24h: ScheduleHealthCounts,
}

/// A schedule's fires scheduled in the last 24 hours (manual runs are not counted).
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ScheduleHealthCounts {
    pub succeeded: i64,
    pub failed: i64,
    /// Fires whose first attempt started more than `late_after_ms` after their scheduled time.
    pub late: i64,
    /// Fires not delivered, by reason (`overlap`, `catchup`, `dst_gap`, `paused`, `max_runs`,
    /// `end_at`).
    #[schema(value_type = Object, example = json!({"overlap": 2}))]
    pub skipped: BTreeMap<String, i64>,
}

impl ScheduleHealth {
    pub fn of(m: &schedule::Model, h: health::Health) -> Self {
        let (recorded, counts) = (h.recorded, h.last_24h);
        Self {
            state: HealthState::of(m, &recorded),
            consecutive_failures: recorded.consecutive_failures,
            failing_since: recorded.failing_since,
            last_success_at: recorded.last_success_at,
            last_failure_at: recorded.last_failure_at,
            last_fire_lag_ms: recorded.last_fire_lag_ms,
            late_after_ms: health::late_after_ms(m),
            last_24h: ScheduleHealthCounts {
                succeeded: counts.succeeded,
                failed: counts.failed,
                late: counts.late,
                skipped: counts.skipped,
            },
        }
    }
}

/// Read-only members, refused in a PATCH rather than silently ignored.
pub const READ_ONLY: &[&str] = &[
    "id",
    "paused_reason",
    "next_run_at",
    "last_run_at",
    "total_runs",
    "created_at",
    "updated_at",
    "version",
    "health",
];

impl ScheduleInput {
    /// Reads a schedule document, naming the offending member on failure.
    pub fn from_json(value: serde_json::Value) -> Result<Self, ApiError> {
        check_spec_member(&value)?;
        let mut input: Self = typed(value, "")?;
        input.start_at = input.start_at.map(instant::ceil_micros);
        input.end_at = input.end_at.map(instant::floor_micros);
        Ok(input)
    }

    /// Validates every member, returning the schedule's timing on success.
    pub fn validate(
        &self,
        allow_private_targets: bool,
        calendars: &HashMap<String, Arc<Calendar>>,
    ) -> Result<Timing, ApiError> {
        let mut errors = FieldErrors::new();
        let name_chars = self.name.chars().count();
        if name_chars == 0 || name_chars > MAX_NAME_CHARS {
            errors.add("name", format!("must be 1 to {MAX_NAME_CHARS} characters"));
        } else if self.name.chars().any(char::is_control) {
            errors.add("name", "must not contain control characters");
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_CHARS)
        {
            errors.add(
                "description",
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            );
        }
        let spec = self.schedule.compile("schedule");
        if let Err(spec_errors) = &spec {
            for e in spec_errors {
                errors.add(e.field.clone(), e.message.clone());
            }
        }
        self.target
            .validate("target", allow_private_targets, &mut errors);
        if self.then.len() > MAX_THEN_STEPS {
            errors.add(
                "then",
                format!("at most {MAX_THEN_STEPS} steps are allowed"),
            );
        }
        for (n, step) in self.then.iter().enumerate() {
            step.validate(&format!("then[{n}]"), allow_private_targets, &mut errors);
        }
        if let Some(call) = &self.on_failure {
            call.validate("on_failure", allow_private_targets, &mut errors);
            if call.body.is_some() {
                errors.add(
                    "on_failure.body",
                    "is set by hookbeat: the failure is the body",
                );
            }
        }
        self.retry.validate("retry", &mut errors);
        if let (Some(start), Some(end)) = (self.start_at, self.end_at) {
            if end <= start {
                errors.add("end_at", "must be after start_at");
            }
        }
        if self.max_runs.is_some_and(|n| n < 1) {
            errors.add("max_runs", "must be at least 1");
        }
        if !(0..=MAX_JITTER_MS).contains(&self.jitter_ms) {
            errors.add(
                "jitter_ms",
                format!(
                    "must be between 0 and {MAX_JITTER_MS}, got {}",
                    self.jitter_ms
                ),
            );
        }
        if let Some(late) = self.late_after_ms {
            if !(1..=MAX_LATE_AFTER_MS).contains(&late) {
                errors.add(
                    "late_after_ms",
                    format!("must be between 1 and {MAX_LATE_AFTER_MS}, got {late}"),
                );
            }
        }
        if let Some(notify) = &self.notify {
            notify.validate("notify", allow_private_targets, &mut errors);
        }
        if let Some(n) = self.pause_after_failures {
            if !(1..=MAX_PAUSE_AFTER_FAILURES).contains(&n) {
                errors.add(
                    "pause_after_failures",
                    format!("must be between 1 and {MAX_PAUSE_AFTER_FAILURES}, got {n}"),
                );
            }
        }
        if serde_json::to_vec(&self.metadata).map_or(0, |v| v.len()) > MAX_METADATA_BYTES {
            errors.add(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
            );
        }
        let exclude = exclusions(&self.exclude, "exclude", calendars, &mut errors);
        match (errors.is_empty(), spec) {
            (true, Ok(spec)) => Ok(Timing {
                spec,
                start_at: self.start_at,
                end_at: self.end_at,
                max_runs: self.max_runs,
                exclude,
            }),
            _ => Err(ApiError::Validation(errors.into_vec())),
        }
    }

    /// The writable members of a stored schedule.
    pub fn from_model(m: &schedule::Model) -> Result<Self, ApiError> {
        Ok(StoredSchedule::from_model(m)?.into())
    }
}

// Written out as its `StoredSchedule`, the one writer of a schedule document (which revisions
// keep too); the serde attributes above describe that same shape to the parser and the schema.
impl Serialize for ScheduleInput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredSchedule::from(self.clone()).serialize(serializer)
    }
}

impl From<StoredSchedule> for ScheduleInput {
    fn from(s: StoredSchedule) -> Self {
        Self {
            name: s.name,
            description: s.description,
            schedule: s.spec,
            target: s.target,
            retry: s.retry,
            start_at: s.start_at,
            end_at: s.end_at,
            max_runs: s.max_runs,
            jitter_ms: s.jitter_ms,
            late_after_ms: s.late_after_ms,
            notify: s.notify,
            pause_after_failures: s.pause_after_failures,
            catchup: s.catchup,
            overlap: s.overlap,
            exclude: s.exclude,
            enabled: s.enabled,
            metadata: s.metadata,
            then: s.then,
            on_failure: s.on_failure,
        }
    }
}

impl From<ScheduleInput> for StoredSchedule {
    fn from(i: ScheduleInput) -> Self {
        Self {
            name: i.name,
            description: i.description,
            spec: i.schedule,
            target: i.target,
            retry: i.retry,
            start_at: i.start_at,
            end_at: i.end_at,
            max_runs: i.max_runs,
            jitter_ms: i.jitter_ms,
            late_after_ms: i.late_after_ms,
            notify: i.notify,
            pause_after_failures: i.pause_after_failures,
            catchup: i.catchup,
            overlap: i.overlap,
            exclude: i.exclude,
            enabled: i.enabled,
            metadata: i.metadata,
            then: i.then,
            on_failure: i.on_failure,
        }
    }
}

impl Schedule {
    /// The API's view of a stored schedule and its health.
    pub fn from_model(m: schedule::Model, health: health::Health) -> Result<Self, ApiError> {
        Ok(Self {
            input: ScheduleInput::from_model(&m)?,
            health: ScheduleHealth::of(&m, health),
            id: m.id.into(),
            paused_reason: m.paused_reason,
            next_run_at: if m.enabled { m.next_run_at } else { None },
            last_run_at: m.last_run_at,
            total_runs: m.total_runs,
            created_at: m.created_at,
            updated_at: m.updated_at,
            version: m.version,
        })
    }

    pub fn etag(&self) -> String {
        format!("\"{}\"", self.version)
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::schedule_page)]
pub struct SchedulePage {
    pub items: Vec<Schedule>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleFilter {
    /// Only enabled (`true`) or paused (`false`) schedules.
    pub enabled: Option<bool>,
    /// Only schedules whose name starts with this text.
    pub name_prefix: Option<String>,
    /// Only schedules in this health state (`failing`, `late`, `paused`, `ended`, `healthy`).
    pub health: Option<HealthState>,
}

impl PreviewRequest {
    pub fn from_json(value: serde_json::Value) -> Result<Self, ApiError> {
        check_spec_member(&value)?;
        let mut request: Self = typed(value, "")?;
        request.after = request.after.map(instant::floor_micros);
        Ok(request)
    }
}

/// The calendars `names` names, from the tenant's `calendars`; an unknown or repeated name, or
/// more than [`MAX_EXCLUDE`], is an error under `field`.
pub fn exclusions(
    names: &[String],
    field: &str,
    calendars: &HashMap<String, Arc<Calendar>>,
    errors: &mut FieldErrors,
) -> Exclusions {
    if names.len() > MAX_EXCLUDE {
        errors.add(field, format!("names at most {MAX_EXCLUDE} calendars"));
        return Exclusions::default();
    }
    let mut found = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            errors.add(format!("{field}[{i}]"), format!("{name:?} is named twice"));
        } else {
            match calendars.get(name) {
                Some(calendar) => found.push(calendar.clone()),
                None => errors.add(
                    format!("{field}[{i}]"),
                    format!("the tenant has no calendar named {name:?} (see /v1/calendars)"),
                ),
            }
        }
    }
    Exclusions::new(found)
}

/// `POST /v1/schedules/preview`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::preview_request)]
pub struct PreviewRequest {
    pub schedule: ScheduleSpec,
    /// Names of the tenant's calendars whose dates the preview leaves out, as a schedule's
    /// `exclude` does.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Fires strictly after this instant (default: now), within 1970 … 9999.
    #[serde(default, deserialize_with = "instant::deserialize_option")]
    pub after: Option<DateTime<Utc>>,
    /// How many fires, 1 to 1000 (default 10).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000, default = 10)]
    pub count: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::fire_times)]
pub struct FireTimes {
    /// RFC 3339 UTC instants, ascending.
    pub fire_times: Vec<DateTime<Utc>>,
    /// The same fires on the schedule's wall clock (its `timezone` for a crontab or rrule, UTC for the
    /// other kinds): local time, UTC offset, and a `dst` note where a daylight-saving change
    /// moved a fire (`gap_shifted`) or made its local time happen twice (`overlap_first`,
    /// `overlap_second`).
    pub fires: Vec<LocalFire>,
}

impl From<Vec<LocalFire>> for FireTimes {
    fn from(fires: Vec<LocalFire>) -> Self {
        Self {
            fire_times: fires.iter().map(|fire| fire.at).collect(),
            fires,
        }
    }
}

pub const DEFAULT_PREVIEW_COUNT: i64 = 10;
pub const MAX_PREVIEW_COUNT: i64 = 1000;

/// `POST /v1/schedules/{id}/backfill`: make the runs the schedule would have made in a past window.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = crate::dto::examples::backfill_request)]
pub struct BackfillRequest {
    /// Start of the window (inclusive), within 1970 … 9999.
    #[serde(deserialize_with = "instant::deserialize")]
    pub from: DateTime<Utc>,
    /// End of the window (inclusive); not in the future.
    #[serde(deserialize_with = "instant::deserialize")]
    pub to: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::backfill_result)]
pub struct BackfillResult {
    /// Runs made, with `trigger: backfill`, due now.
    pub created: usize,
    /// The fires they deliver, ascending.
    pub fire_times: Vec<DateTime<Utc>>,
}

/// The most runs one backfill may make.
pub const MAX_BACKFILL_RUNS: usize = 1_000;

/// The most entries of one timeline page.
pub const MAX_TIMELINE_LIMIT: u64 = 1_000;
const DEFAULT_TIMELINE_LIMIT: u64 = 100;
/// The window when `from` or `to` is left out: a day either side of now.
pub const DEFAULT_TIMELINE_SPAN: chrono::Duration = chrono::Duration::hours(24);

/// `GET /v1/schedules/{id}/timeline`.
#[derive(Debug, Deserialize, IntoParams)]
pub struct TimelineQuery {
    /// The window's start (default: 24 hours ago).
    #[serde(default, deserialize_with = "instant::deserialize_option")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<DateTime<Utc>>,
    /// The window's end, inclusive (default: 24 hours from now).
    #[serde(default, deserialize_with = "instant::deserialize_option")]
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<DateTime<Utc>>,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The window and page a timeline query asks for.
pub struct TimelineWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: usize,
}

impl TimelineQuery {
    /// The window, from the cursor when there is one; a 422 naming the parameter otherwise.
    pub fn window(&self, now: DateTime<Utc>) -> Result<TimelineWindow, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_TIMELINE_LIMIT);
        if !(1..=MAX_TIMELINE_LIMIT).contains(&limit) {
            return Err(ApiError::validation(
                "limit",
                format!("must be between 1 and {MAX_TIMELINE_LIMIT}"),
            ));
        }
        let from = self.from.unwrap_or(now - DEFAULT_TIMELINE_SPAN);
        let to = self.to.unwrap_or(now + DEFAULT_TIMELINE_SPAN);
        if to < from {
            return Err(ApiError::validation("to", "must not be before from"));
        }
        let from = match &self.cursor {
            None => from,
            Some(cursor) => {
                let after = DateTime::parse_from_rfc3339(cursor)
                    .map_err(|_| {
                        ApiError::validation("cursor", "is not a cursor returned by this API")
                    })?
                    .with_timezone(&Utc);
                after + chrono::Duration::microseconds(1)
            }
        };
        Ok(TimelineWindow {
            from,
            to,
            limit: limit as usize,
        })
    }
}

/// A page of a schedule's timeline.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::timeline_page)]
pub struct TimelinePage {
    /// Every nominal fire in the page, oldest first.
    pub items: Vec<TimelineEntry>,
    /// Pass as `cursor` (with the same `from` and `to`) for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

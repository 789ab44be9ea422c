//! The stored-schedule codec: the one place that turns a `schedules` row into its typed parts
//! and back. The API validated every member on the way in, so a failure to read one back means
//! the row was changed behind hookbeat's back.

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::{schedule, ScheduleId, TenantId};
use sea_orm::ActiveValue::Set;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::definition::{Catchup, Notify, Overlap, RetryPolicy, Target};
use crate::schedule::{ScheduleSpec, Timing};
use crate::shards::shard_of;
use crate::steps::Steps;

/// The members of a schedule its owner writes; everything else in the row is the scheduler's
/// (shard, next and last run, run count) or bookkeeping (timestamps, version).
///
/// Serialized, it is the schedule's *document*: its members as a client writes them (the API's
/// `ScheduleInput`, which is written out this way too), as responses show them and revisions
/// keep them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredSchedule {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "schedule")]
    pub spec: ScheduleSpec,
    pub target: Target,
    pub retry: RetryPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_runs: Option<i64>,
    pub jitter_ms: i64,
    /// A fire whose first attempt starts later than this is late; `None` for the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_after_ms: Option<i64>,
    /// Where its notices go; `None` for its tenant's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
    /// Runs failed for good in a row after which it pauses itself; `None` for never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_after_failures: Option<i32>,
    pub catchup: Catchup,
    pub overlap: Overlap,
    /// Names of the tenant's calendars whose dates it does not fire on; stored NULL when empty.
    pub exclude: Vec<String>,
    pub enabled: bool,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Delivered in order after the target succeeded; stored as `chain`, NULL when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub then: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Target>,
}

impl StoredSchedule {
    /// Reads the writable members of a row.
    pub fn from_model(model: &schedule::Model) -> anyhow::Result<Self> {
        Ok(Self {
            name: model.name.clone(),
            description: model.description.clone(),
            spec: spec(model)?,
            target: target(model)?,
            retry: retry(model)?,
            then: then(model)?,
            on_failure: on_failure(model)?,
            start_at: model.start_at,
            end_at: model.end_at,
            max_runs: model.max_runs,
            jitter_ms: model.jitter_ms,
            late_after_ms: model.late_after_ms,
            notify: notify(model)?,
            pause_after_failures: model.pause_after_failures,
            catchup: Catchup::from_db(&model.catchup),
            overlap: Overlap::from_db(&model.overlap),
            exclude: exclude(model)?,
            enabled: model.enabled,
            metadata: match &model.metadata {
                serde_json::Value::Object(map) => map.clone(),
                _ => serde_json::Map::new(),
            },
        })
    }

    /// Sets the columns these members are stored in, and no other.
    pub fn write(&self, row: &mut schedule::ActiveModel) -> anyhow::Result<()> {
        row.name = Set(self.name.clone());
        row.description = Set(self.description.clone());
        row.spec = Set(json(&self.spec)?);
        row.target = Set(json(&self.target)?);
        row.retry = Set(json(&self.retry)?);
        row.chain = Set((!self.then.is_empty())
            .then(|| json(&self.then))
            .transpose()?);
        row.on_failure = Set(self.on_failure.as_ref().map(json).transpose()?);
        row.start_at = Set(self.start_at);
        row.end_at = Set(self.end_at);
        row.max_runs = Set(self.max_runs);
        row.jitter_ms = Set(self.jitter_ms);
        row.late_after_ms = Set(self.late_after_ms);
        row.notify = Set(self.notify.as_ref().map(json).transpose()?);
        row.pause_after_failures = Set(self.pause_after_failures);
        row.catchup = Set(self.catchup.as_str().to_owned());
        row.overlap = Set(self.overlap.as_str().to_owned());
        row.exclude = Set((!self.exclude.is_empty())
            .then(|| json(&self.exclude))
            .transpose()?);
        row.enabled = Set(self.enabled);
        row.metadata = Set(serde_json::Value::Object(self.metadata.clone()));
        Ok(())
    }

    /// When the schedule fires.
    pub fn timing(&self) -> anyhow::Result<Timing> {
        timing_of(&self.spec, self.start_at, self.end_at, self.max_runs)
    }

    /// The schedule's document (see the type).
    pub fn document(&self) -> anyhow::Result<serde_json::Value> {
        json(self)
    }
}

/// A new row of `tenant`'s, made at `now`: a time-ordered id, the shard that id falls in, version
/// 1, no runs and no next fire yet. The caller fills in the members with [`StoredSchedule::write`]
/// and sets `next_run_at`.
pub fn new_row(tenant: &TenantId, now: DateTime<Utc>) -> schedule::ActiveModel {
    row_again(tenant, ScheduleId::new(), 1, now)
}

/// The same for a schedule made again under the `id` it had, at `version` (a deleted schedule
/// restored: its versions go on from its last).
pub fn row_again(
    tenant: &TenantId,
    id: ScheduleId,
    version: i64,
    now: DateTime<Utc>,
) -> schedule::ActiveModel {
    schedule::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant.clone()),
        shard: Set(shard_of(id)),
        paused_reason: Set(None),
        next_run_at: Set(None),
        last_run_at: Set(None),
        total_runs: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
        version: Set(version),
        paused_at: Set(None),
        ..Default::default()
    }
}

/// When the schedule fires, without its `exclude` calendars (see `calendar::timing`).
pub fn timing(model: &schedule::Model) -> anyhow::Result<Timing> {
    let spec = spec(model)?;
    timing_of(&spec, model.start_at, model.end_at, model.max_runs)
        .with_context(|| format!("schedule {} has an invalid spec", model.id))
}

/// The target with its `then` steps and `on_failure` call.
pub fn steps(model: &schedule::Model) -> anyhow::Result<Steps> {
    Ok(Steps {
        target: target(model)?,
        then: then(model)?,
        on_failure: on_failure(model)?,
    })
}

pub fn retry(model: &schedule::Model) -> anyhow::Result<RetryPolicy> {
    read(model, "retry policy", &model.retry)
}

pub fn target(model: &schedule::Model) -> anyhow::Result<Target> {
    read(model, "target", &model.target)
}

fn spec(model: &schedule::Model) -> anyhow::Result<ScheduleSpec> {
    read(model, "spec", &model.spec)
}

fn then(model: &schedule::Model) -> anyhow::Result<Vec<Target>> {
    match &model.chain {
        Some(chain) => read(model, "then steps", chain),
        None => Ok(Vec::new()),
    }
}

fn on_failure(model: &schedule::Model) -> anyhow::Result<Option<Target>> {
    model
        .on_failure
        .as_ref()
        .map(|call| read(model, "on_failure", call))
        .transpose()
}

/// The names of the calendars the schedule excludes.
pub fn exclude(model: &schedule::Model) -> anyhow::Result<Vec<String>> {
    match &model.exclude {
        Some(names) => read(model, "exclude list", names),
        None => Ok(Vec::new()),
    }
}

pub fn notify(model: &schedule::Model) -> anyhow::Result<Option<Notify>> {
    model
        .notify
        .as_ref()
        .map(|notify| read(model, "notify", notify))
        .transpose()
}

fn timing_of(
    spec: &ScheduleSpec,
    start_at: Option<DateTime<Utc>>,
    end_at: Option<DateTime<Utc>>,
    max_runs: Option<i64>,
) -> anyhow::Result<Timing> {
    let compiled = spec
        .compile("schedule")
        .map_err(|errors| anyhow::anyhow!("the spec does not compile: {errors:?}"))?;
    Ok(Timing {
        spec: compiled,
        start_at,
        end_at,
        max_runs,
        exclude: Default::default(),
    })
}

fn read<T: DeserializeOwned>(
    model: &schedule::Model,
    what: &str,
    value: &serde_json::Value,
) -> anyhow::Result<T> {
    serde_json::from_value(value.clone())
        .with_context(|| format!("schedule {} has an unreadable {what}", model.id))
}

fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<serde_json::Value> {
    serde_json::to_value(value).context("encoding a schedule member")
}

#[cfg(test)]
mod tests {
    use sea_orm::TryIntoModel;
    use serde_json::json;

    use super::*;

    fn stored(then: Vec<Target>, on_failure: Option<Target>) -> StoredSchedule {
        let target: Target =
            serde_json::from_value(json!({"url": "https://example.com/hook"})).unwrap();
        StoredSchedule {
            name: "nightly".into(),
            description: Some("the report".into()),
            spec: serde_json::from_value(json!({"kind": "interval", "every_seconds": 60})).unwrap(),
            target: target.clone(),
            retry: RetryPolicy::default(),
            then,
            on_failure,
            start_at: Some(DateTime::from_timestamp(1_700_000_000, 0).unwrap()),
            end_at: None,
            max_runs: Some(3),
            jitter_ms: 250,
            late_after_ms: Some(5_000),
            notify: Some(
                serde_json::from_value(
                    json!({"url": "https://example.com/notices", "after_failures": 2}),
                )
                .unwrap(),
            ),
            pause_after_failures: Some(5),
            catchup: Catchup::default(),
            overlap: Overlap::default(),
            exclude: vec!["holidays".into()],
            enabled: false,
            metadata: json!({"team": "data"}).as_object().unwrap().clone(),
        }
    }

    fn round_trip(schedule: &StoredSchedule) -> schedule::Model {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut row = new_row(&TenantId("acme".into()), now);
        schedule.write(&mut row).unwrap();
        let model = row.try_into_model().expect("a new row sets every column");
        assert_eq!(&StoredSchedule::from_model(&model).unwrap(), schedule);
        model
    }

    #[test]
    fn a_written_row_reads_back_the_same() {
        let target = stored(Vec::new(), None).target;
        let model = round_trip(&stored(vec![target.clone()], Some(target)));
        assert_eq!(model.shard, shard_of(model.id));
        assert_eq!(model.version, 1);
        assert!(steps(&model).unwrap().on_failure.is_some());
        assert_eq!(timing(&model).unwrap().max_runs, Some(3));
    }

    #[test]
    fn no_then_steps_are_stored_as_null() {
        let model = round_trip(&stored(Vec::new(), None));
        assert_eq!(model.chain, None);
        assert_eq!(model.on_failure, None);
    }

    #[test]
    fn an_unreadable_member_names_itself() {
        let mut model = round_trip(&stored(Vec::new(), None));
        model.target = json!({"url": 7});
        let error = StoredSchedule::from_model(&model).unwrap_err();
        assert!(error.to_string().contains("unreadable target"), "{error}");
    }
}

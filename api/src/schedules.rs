//! Schedules as the API keeps them: one of a tenant's by id or name, a new one under the tenant's
//! quota, a change under optimistic concurrency (the `If-Match` check and the retry after a lost
//! race), a delete, and the fires a backfill window holds. Each change appends its revision in
//! its own transaction. Handlers in `routes::schedules` and `routes::actions` speak HTTP around
//! these; the row's columns are written by the scheduler's `stored` codec.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hookbeat_entity::schedule_revision::RevisionAction;
use hookbeat_entity::{schedule, tenant, ScheduleId, TenantId};
use hookbeat_scheduler::calendar::Calendar;
use hookbeat_scheduler::health;
use hookbeat_scheduler::instant;
use hookbeat_scheduler::notify::announce;
use hookbeat_scheduler::revisions::{self, Author, Change};
use hookbeat_scheduler::runs;
use hookbeat_scheduler::schedule::{ScheduleSpec, Timing};
use hookbeat_scheduler::skips::{self, Skip, SkipReason};
use hookbeat_scheduler::stored::{self, StoredSchedule};
use sea_orm::sea_query::Expr;
use sea_orm::ActiveValue::{NotSet, Unchanged};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, IntoActiveModel, QueryFilter, QuerySelect,
    Set,
};

use crate::auth::Caller;
use crate::calendars;
use crate::dto::schedule::{Schedule, ScheduleInput, MAX_BACKFILL_RUNS};
use crate::error::ApiError;
use crate::state::AppState;

/// Read-modify-write rounds a change makes before it gives up to racing writers (409).
pub const ATTEMPTS: usize = 3;

/// How long a client over its schedule quota is told to wait: quotas change by hand.
const QUOTA_RETRY_AFTER_SECONDS: u64 = 3600;

/// Which of a tenant's schedules a change is for.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Id(ScheduleId),
    Name(&'a str),
}

/// What a change by name, or a restore, did: made the schedule, or changed the one there was.
pub enum Upserted {
    Created(schedule::Model),
    Replaced(schedule::Model),
}

/// The tenant's schedule `id`; another tenant's is 404 like one that does not exist.
pub async fn load(
    db: &DatabaseConnection,
    tenant: &TenantId,
    id: ScheduleId,
) -> Result<schedule::Model, ApiError> {
    find(db, tenant, Key::Id(id))
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))
}

async fn find(
    db: &DatabaseConnection,
    tenant: &TenantId,
    key: Key<'_>,
) -> Result<Option<schedule::Model>, ApiError> {
    let query = match key {
        Key::Id(id) => schedule::Entity::find_for_tenant_by_id(tenant, id),
        Key::Name(name) => {
            schedule::Entity::find_for_tenant(tenant).filter(schedule::Column::Name.eq(name))
        }
    };
    Ok(query.one(db).await?)
}

/// Saves a new schedule of the caller's (see [`insert_row`]), its `created` revision by `author`.
pub async fn insert(
    state: &AppState,
    caller: &Caller,
    input: ScheduleInput,
    author: &Author,
) -> Result<schedule::Model, ApiError> {
    let now = state.clock.now();
    let row = stored::new_row(&caller.tenant, now);
    let change = Change::new(RevisionAction::Created, author);
    insert_row(state, caller, input, row, change, now).await
}

/// Saves `row`, a new schedule of the caller's, with `input`'s members: validated, under its
/// minimum interval and under its schedule quota, with the revision of `change`. The quota is
/// checked and the tenant's `schedule_count` raised by one conditional update in the transaction
/// that inserts the schedule, so concurrent creates cannot together pass it, and a create costs
/// the same however many schedules the tenant has. Wakes the workers.
pub async fn insert_row(
    state: &AppState,
    caller: &Caller,
    input: ScheduleInput,
    mut row: schedule::ActiveModel,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> Result<schedule::Model, ApiError> {
    // Only the calendars it names; none read for a schedule that excludes none.
    let calendars = hookbeat_scheduler::calendar::load(&state.db, &caller.tenant, &input.exclude)
        .await
        .map_err(ApiError::Internal)?;
    let timing = input.validate(state.allow_private_targets, &calendars)?;
    check_min_interval(caller, &timing, now)?;
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    row.next_run_at = Set(first_fire(&input, &timing, now, 0)?);
    StoredSchedule::from(input).write(&mut row)?;
    let model = row.insert(&txn).await?;
    revisions::append(&txn, &model, change, now)
        .await
        .map_err(ApiError::Internal)?;
    // Counted last: on PostgreSQL the tenant's row stays locked until the commit, so the
    // tenant's creates queue on it for as short a time as possible.
    let counted = tenant::Entity::count_schedules(&caller.tenant, 1)
        .filter(
            Expr::col(tenant::Column::ScheduleCount).lt(Expr::col(tenant::Column::MaxSchedules)),
        )
        .exec(&txn)
        .await?;
    if counted.rows_affected == 0 {
        let account = tenant::Entity::find_tenant(&caller.tenant)
            .one(&txn)
            .await?
            .ok_or_else(|| {
                ApiError::Forbidden(format!("tenant {} no longer exists", caller.tenant))
            })?;
        return Err(ApiError::TooManyRequests {
            detail: format!(
                "tenant {} has {} schedules, its quota is {}; delete some or ask for a higher quota",
                caller.tenant, account.schedule_count, account.max_schedules
            ),
            retry_after_seconds: QUOTA_RETRY_AFTER_SECONDS,
        });
    }
    txn.commit().await?;
    announce_schedule(state, &model).await;
    Ok(model)
}

/// Wakes the workers for a saved schedule's next fire; one that will not fire needs no worker.
async fn announce_schedule(state: &AppState, saved: &schedule::Model) {
    if let Some(next) = saved.next_run_at.filter(|_| saved.enabled) {
        announce(&state.db, &state.wakeup, Some(next)).await;
    }
}

/// Changes the tenant's schedule `key` with `edit`, which is given the schedule as it is and
/// the time, and returns the row to save, or `None` to leave the schedule as it is.
///
/// The row is saved only if it is still at the version `edit` saw, and its version goes up by
/// one, with the revision of `change`; after a lost race the schedule is read and changed again,
/// up to [`ATTEMPTS`] times (409 after). `expected` holds the versions `If-Match` allows
/// (`None`: any); each round checks it against the schedule as read (412). A saved change wakes
/// the workers.
///
/// `Ok(None)` when the tenant has no such schedule.
pub async fn update_if_version<F>(
    state: &AppState,
    tenant: &TenantId,
    key: Key<'_>,
    expected: Option<&[i64]>,
    change: Change<'_>,
    mut edit: F,
) -> Result<Option<schedule::Model>, ApiError>
where
    F: FnMut(&schedule::Model, DateTime<Utc>) -> Result<Option<schedule::ActiveModel>, ApiError>,
{
    for _ in 0..ATTEMPTS {
        let Some(current) = find(&state.db, tenant, key).await? else {
            return Ok(None);
        };
        check_version(expected, current.version)?;
        let now = state.clock.now();
        let Some(row) = edit(&current, now)? else {
            return Ok(Some(current));
        };
        if let Some(saved) = save_if_unchanged(state, tenant, row, &current, change, now).await? {
            announce_schedule(state, &saved).await;
            return Ok(Some(saved));
        }
    }
    Err(ApiError::Conflict(
        "the schedule kept changing under this request; try again".into(),
    ))
}

/// 412 unless the schedule's `version` is one of the `expected` versions (`None`: any version).
pub fn check_version(expected: Option<&[i64]>, version: i64) -> Result<(), ApiError> {
    match expected {
        Some(versions) if !versions.contains(&version) => Err(ApiError::PreconditionFailed(
            format!("the schedule is at version {version}, not the one If-Match names"),
        )),
        _ => Ok(()),
    }
}

/// Saves `row` only if the schedule is still at `current.version`, bumping the version, with the
/// revision of `change`; `None` when another writer got there first.
async fn save_if_unchanged(
    state: &AppState,
    tenant: &TenantId,
    mut row: schedule::ActiveModel,
    current: &schedule::Model,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> Result<Option<schedule::Model>, ApiError> {
    row.version = Set(current.version + 1);
    row.updated_at = Set(now);
    // Runtime state belongs to the worker; only the columns set above are written.
    row.last_run_at = NotSet;
    row.total_runs = NotSet;
    let enabled = match &row.enabled {
        Set(enabled) | Unchanged(enabled) => *enabled,
        NotSet => current.enabled,
    };
    let resumed = enabled && !current.enabled;
    if current.enabled && !enabled {
        row.paused_at = Set(Some(now));
    } else if resumed {
        row.paused_at = Set(None);
    }
    let update = schedule::Entity::update_for_tenant(tenant)
        .set(row)
        .filter(schedule::Column::Id.eq(current.id))
        .filter(schedule::Column::Version.eq(current.version));
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    if resumed {
        // Resuming starts the count of failed runs again, closes a failing episode and records
        // the fires of the pause as skipped, with the change: the health row first, as a
        // write-back that pauses the schedule takes it.
        health::reset(&txn, current.id)
            .await
            .map_err(ApiError::Internal)?;
    }
    if update.exec(&txn).await?.rows_affected == 0 {
        txn.rollback().await?;
        return Ok(None);
    }
    let skip = resumed.then(|| paused_fires(current, now)).flatten();
    if let Some(skip) = &skip {
        skips::record(&txn, &[(current.id, *skip)], now)
            .await
            .map_err(ApiError::Internal)?;
    }
    let saved = schedule::Entity::find_for_tenant_by_id(tenant, current.id)
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a schedule just saved is gone")))?;
    revisions::append(&txn, &saved, change, now)
        .await
        .map_err(ApiError::Internal)?;
    txn.commit().await?;
    if let Some(skip) = skip {
        state
            .fires_skipped
            .with_label_values(&[SkipReason::Paused.as_str()])
            .inc_by(skip.fires.max(0) as u64);
    }
    Ok(Some(saved))
}

/// The most fires of a pause [`paused_fires`] counts one by one; a longer pause is
/// recorded as at least this many.
const MAX_PAUSED_FIRES_COUNTED: i64 = 100_000;

/// The fires that fell while `paused` (as it was before it was resumed at `now`) was paused:
/// skipped, reason `paused`; `None` when none fell.
fn paused_fires(paused: &schedule::Model, now: DateTime<Utc>) -> Option<Skip> {
    let since = paused.paused_at.unwrap_or(paused.updated_at);
    let timing = stored::timing(paused).ok()?;
    let mut fires = 0i64;
    let (mut first, mut last) = (None, None);
    let mut cursor = timing.next_fire(since, paused.total_runs);
    while let Some(fire) = cursor.filter(|fire| *fire <= now) {
        first.get_or_insert(fire);
        last = Some(fire);
        fires += 1;
        if fires == MAX_PAUSED_FIRES_COUNTED {
            last = Some(now);
            break;
        }
        cursor = timing.next_fire(fire, paused.total_runs);
    }
    Some(Skip {
        first: first?,
        last: last?,
        fires,
        reason: SkipReason::Paused,
    })
}

/// The row that replaces the writable members of `current` with `after`: validated, under the
/// caller's minimum interval when the spec changed, `next_run_at` recomputed when the timing
/// changed, and unpaused when it is enabled again; `None` when `after` is what it has already.
pub fn replacement(
    state: &AppState,
    caller: &Caller,
    current: &schedule::Model,
    after: ScheduleInput,
    calendars: &HashMap<String, Arc<Calendar>>,
    now: DateTime<Utc>,
) -> Result<Option<schedule::ActiveModel>, ApiError> {
    let before = StoredSchedule::from_model(current)?;
    let timing = after.validate(state.allow_private_targets, calendars)?;
    let after_stored = StoredSchedule::from(after.clone());
    if after_stored == before {
        return Ok(None);
    }
    let mut row = current.clone().into_active_model();
    if after.schedule != before.spec {
        check_min_interval(caller, &timing, now)?;
    }
    // A change to any of these decides anew when the schedule fires next.
    let same_timing = after.schedule == before.spec
        && after.start_at == before.start_at
        && after.end_at == before.end_at
        && after.max_runs == before.max_runs
        && after.exclude == before.exclude
        && after.enabled == before.enabled;
    if !same_timing {
        row.next_run_at = Set(first_fire(&after, &timing, now, current.total_runs)?);
    }
    if after.enabled && !before.enabled {
        row.paused_reason = Set(None);
    }
    after_stored.write(&mut row)?;
    Ok(Some(row))
}

/// The API's view of stored schedules, with their health (the same few queries for a page).
pub async fn views(
    state: &AppState,
    models: Vec<schedule::Model>,
) -> Result<Vec<Schedule>, ApiError> {
    let ids: Vec<ScheduleId> = models.iter().map(|m| m.id).collect();
    let mut health = health::read(&state.db, &ids, state.clock.now())
        .await
        .map_err(ApiError::Internal)?;
    models
        .into_iter()
        .map(|m| {
            let health = health.remove(&m.id).unwrap_or_default();
            Schedule::from_model(m, health)
        })
        .collect()
}

/// The API's view of a schedule just made: it has no fires yet, so no query.
pub fn view_of_new(model: schedule::Model) -> Result<Schedule, ApiError> {
    Schedule::from_model(model, health::Health::default())
}

/// The API's view of one stored schedule.
pub async fn view(state: &AppState, model: schedule::Model) -> Result<Schedule, ApiError> {
    let mut one = views(state, vec![model]).await?;
    one.pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a view of one schedule made none")))
}

/// Creates the caller's schedule `name` from `document`, or replaces the one of that name
/// (`expected` as for [`update_if_version`]; with it, a missing schedule is a 412), by `author`.
/// The name in `document` must already be `name`.
pub async fn upsert_by_name(
    state: &AppState,
    caller: &Caller,
    name: &str,
    document: &serde_json::Value,
    expected: Option<&[i64]>,
    author: &Author,
) -> Result<Upserted, ApiError> {
    let calendars = calendars::of_tenant(&state.db, &caller.tenant).await?;
    for _ in 0..ATTEMPTS {
        let replaced = update_if_version(
            state,
            &caller.tenant,
            Key::Name(name),
            expected,
            Change::new(RevisionAction::Replaced, author),
            |current, now| {
                let after = ScheduleInput::from_json(document.clone())?;
                replacement(state, caller, current, after, &calendars, now)
            },
        )
        .await?;
        if let Some(replaced) = replaced {
            return Ok(Upserted::Replaced(replaced));
        }
        if expected.is_some() {
            return Err(ApiError::PreconditionFailed(
                "no schedule has this name".into(),
            ));
        }
        let input = ScheduleInput::from_json(document.clone())?;
        match insert(state, caller, input, author).await {
            // Created concurrently by another request: replace it on the next round.
            Err(ApiError::Conflict(_)) => continue,
            other => return other.map(Upserted::Created),
        }
    }
    Err(ApiError::Conflict(
        "the schedule kept changing under this request; try again".into(),
    ))
}

/// Deletes the tenant's schedule `id` with its run history, only at one of the `expected`
/// versions when given (412 otherwise), and lowers the tenant's `schedule_count`, with the
/// `deleted` revision by `author`, in one transaction that holds the schedule's row.
pub async fn delete(
    state: &AppState,
    tenant: &TenantId,
    id: ScheduleId,
    expected: Option<&[i64]>,
    author: &Author,
) -> Result<(), ApiError> {
    let now = state.clock.now();
    let txn = hookbeat_entity::begin_write(&state.db).await?;
    // PostgreSQL: the row lock orders concurrent changes; SQLite: the write lock already does.
    let current = schedule::Entity::find_for_tenant_by_id(tenant, id)
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or_else(|| ApiError::not_found("schedule"))?;
    check_version(expected, current.version)?;
    runs::delete_of_schedule(&txn, tenant, id)
        .await
        .map_err(ApiError::Internal)?;
    schedule::Entity::delete_for_tenant(tenant)
        .filter(schedule::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    tenant::Entity::count_schedules(tenant, -1)
        .exec(&txn)
        .await?;
    let change = Change::new(RevisionAction::Deleted, author);
    revisions::append(&txn, &current, change, now)
        .await
        .map_err(ApiError::Internal)?;
    txn.commit().await?;
    Ok(())
}

/// The fires of `schedule` from `from` to `to` (both inclusive), whatever its `max_runs`, less
/// the dates its calendars exclude: at most `MAX_BACKFILL_RUNS`, and no closer together than
/// the caller's minimum interval.
pub async fn fires_between(
    state: &AppState,
    caller: &Caller,
    schedule: &schedule::Model,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, ApiError> {
    let mut timing = hookbeat_scheduler::calendar::timing(&state.db, schedule).await?;
    timing.max_runs = None;
    let mut fires = Vec::new();
    let from = instant::ceil_micros(from);
    let to = instant::floor_micros(to);
    let mut next = from
        .checked_sub_signed(chrono::Duration::microseconds(1))
        .and_then(|before| timing.next_fire(before, 0));
    while let Some(fire) = next.filter(|fire| *fire <= to) {
        if fires.len() == MAX_BACKFILL_RUNS {
            return Err(ApiError::validation(
                "to",
                format!(
                    "the window holds more than {MAX_BACKFILL_RUNS} fires; backfill it in parts"
                ),
            ));
        }
        fires.push(fire);
        next = timing.next_fire(fire, 0);
    }
    let minimum = chrono::Duration::seconds(caller.account.min_interval_seconds);
    if let Some(gap) = fires
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .min()
        .filter(|gap| *gap < minimum)
    {
        return Err(ApiError::validation(
            "from",
            format!(
                "the window's fires come as close as {} s apart; this tenant's minimum interval \
                 between fires is {} s",
                gap.num_seconds(),
                caller.account.min_interval_seconds
            ),
        ));
    }
    Ok(fires)
}

/// Refuses a schedule whose fires come closer together than the tenant's minimum interval.
fn check_min_interval(
    caller: &Caller,
    timing: &Timing,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let minimum = caller.account.min_interval_seconds;
    match timing.shortest_gap(now) {
        Some(gap) if gap < chrono::Duration::seconds(minimum) => Err(ApiError::validation(
            "schedule",
            format!(
                "fires as often as every {} s; this tenant's minimum interval is {minimum} s",
                gap.num_milliseconds() as f64 / 1000.0
            ),
        )),
        _ => Ok(()),
    }
}

/// The first fire of a schedule saved at `now`, refusing a schedule that can no longer fire.
fn first_fire(
    input: &ScheduleInput,
    timing: &Timing,
    now: DateTime<Utc>,
    runs_so_far: i64,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    if !input.enabled {
        return Ok(None);
    }
    match timing.next_fire(now, runs_so_far) {
        Some(next) => Ok(Some(next)),
        None => Err(match input.schedule {
            ScheduleSpec::Once(_) => ApiError::validation("schedule.at", "is not in the future"),
            _ if !input.exclude.is_empty() => ApiError::validation(
                "schedule",
                "never fires after now (check end_at, max_runs and the calendars in exclude)",
            ),
            _ => ApiError::validation(
                "schedule",
                "never fires after now (check end_at and max_runs)",
            ),
        }),
    }
}

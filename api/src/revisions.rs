//! A schedule's history as the API keeps it: its revisions, read by its tenant while the schedule
//! lives and, after a delete, for as long as the history retention keeps them; and a revision
//! restored, over the live schedule or, when it was deleted, as the schedule made again under its
//! id. Another tenant's schedule answers 404 exactly like one that never existed.

use hookbeat_entity::schedule_revision::{self, RevisionAction};
use hookbeat_entity::{ScheduleId, TenantId};
use hookbeat_scheduler::revisions::{Author, Change};
use hookbeat_scheduler::stored;
use sea_orm::{ColumnTrait, DatabaseConnection, QueryFilter, QueryOrder, QuerySelect};

use crate::auth::Caller;
use crate::dto::revision::Version;
use crate::dto::schedule::ScheduleInput;
use crate::error::ApiError;
use crate::schedules::{self, Key, Upserted};
use crate::state::AppState;

/// A path's version; anything that is not a version names no revision: a 404, like an unknown
/// version, that says what a version is.
pub fn parse_version(raw: &str) -> Result<Version, ApiError> {
    raw.parse().map_err(|()| {
        ApiError::NotFound(format!(
            "revision not found: a version is a whole number from 1, got {raw:?}"
        ))
    })
}

/// Up to `limit` revisions of the tenant's schedule `id` before version `before` (all when
/// `None`), newest first. Served by `schedule_revisions_tenant_idx`.
pub async fn page(
    db: &DatabaseConnection,
    tenant: &TenantId,
    id: ScheduleId,
    before: Option<Version>,
    limit: u64,
) -> Result<Vec<schedule_revision::Model>, ApiError> {
    let mut query = schedule_revision::Entity::find_of_schedule(tenant, id);
    if let Some(Version(before)) = before {
        query = query.filter(schedule_revision::Column::Version.lt(before));
    }
    let rows = query
        .order_by_desc(schedule_revision::Column::Version)
        .limit(limit)
        .all(db)
        .await?;
    if rows.is_empty() {
        known(db, tenant, id).await?;
    }
    Ok(rows)
}

/// Revision `version` of the tenant's schedule `id`.
pub async fn one(
    db: &DatabaseConnection,
    tenant: &TenantId,
    id: ScheduleId,
    Version(version): Version,
) -> Result<schedule_revision::Model, ApiError> {
    let found = schedule_revision::Entity::find_of_schedule(tenant, id)
        .filter(schedule_revision::Column::Version.eq(version))
        .one(db)
        .await?;
    match found {
        Some(revision) => Ok(revision),
        None => {
            known(db, tenant, id).await?;
            Err(ApiError::NotFound(format!("revision {version} not found")))
        }
    }
}

/// 404 unless the tenant has schedule `id`, live or with revisions left.
async fn known(db: &DatabaseConnection, tenant: &TenantId, id: ScheduleId) -> Result<(), ApiError> {
    let any = schedule_revision::Entity::find_of_schedule(tenant, id)
        .select_only()
        .column(schedule_revision::Column::Version)
        .into_tuple::<i64>()
        .one(db)
        .await?;
    if any.is_none() {
        schedules::load(db, tenant, id).await?;
    }
    Ok(())
}

/// Writes revision `version` of the caller's schedule `id` again, as a PUT of its document would
/// (validated under today's rules; nothing happens when it is the content the schedule has), with
/// a `restored` revision by `author`. `expected` is `If-Match`'s versions, as for a PATCH.
///
/// A deleted schedule is made again under its id, as a create is (its name must be free, the
/// tenant under its quota), its version going on after its delete's; `expected` is then checked
/// against the delete's version.
pub async fn restore(
    state: &AppState,
    caller: &Caller,
    id: ScheduleId,
    version: Version,
    expected: Option<&[i64]>,
    author: &Author,
) -> Result<Upserted, ApiError> {
    let revision = one(&state.db, &caller.tenant, id, version).await?;
    let change = Change::restore(revision.version, author);
    let input = || ScheduleInput::from_json(revision.document.clone());
    let calendars = crate::calendars::of_tenant(&state.db, &caller.tenant).await?;
    let restored = schedules::update_if_version(
        state,
        &caller.tenant,
        Key::Id(id),
        expected,
        change,
        |current, now| schedules::replacement(state, caller, current, input()?, &calendars, now),
    )
    .await?;
    if let Some(restored) = restored {
        return Ok(Upserted::Replaced(restored));
    }
    // Not live: its latest revision is its delete, unless a restore made it again meanwhile.
    let latest = page(&state.db, &caller.tenant, id, None, 1).await?;
    let deleted = match latest.first() {
        Some(latest) if latest.action == RevisionAction::Deleted => latest.version,
        _ => {
            return Err(ApiError::Conflict(
                "the schedule changed under this request; try again".into(),
            ))
        }
    };
    schedules::check_version(expected, deleted)?;
    let now = state.clock.now();
    let row = stored::row_again(&caller.tenant, id, deleted + 1, now);
    schedules::insert_row(state, caller, input()?, row, change, now)
        .await
        .map(Upserted::Created)
}

//! A schedule's revisions: every change to a schedule appends one, in the change's own
//! transaction, at the version the change made, with who made it and why; and their pruning
//! with the history. The API reads them through the entity's tenant-scoped root.
//!
//! A revision's patch is the JSON merge patch from the revision before it, so the patches of a
//! schedule replayed in order give each of its documents: the first revision's (or the first
//! after a delete, whose patch is `null`) is its whole document.

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::schedule;
use hookbeat_entity::schedule_revision::{self, RevisionAction};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::merge_patch;
use crate::sql::delete_before;
use crate::stored::StoredSchedule;

/// The `sub` of the changes hookbeat makes itself (pausing a schedule whose runs kept failing,
/// or whose target is gone).
pub const HOOKBEAT: &str = "hookbeat";

/// Who made a change: a token's `sub`, and its `jti` and `name` claims when it has them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Actor {
    /// The token's `sub` (the tenant), or `hookbeat` for a change hookbeat made itself.
    #[schema(example = "acme")]
    pub sub: String,
    /// The token's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "tok-7f3a")]
    pub token_id: Option<String>,
    /// The token's `name` claim.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "deploy-bot")]
    pub name: Option<String>,
}

impl Actor {
    /// hookbeat itself.
    pub fn hookbeat() -> Self {
        Self {
            sub: HOOKBEAT.to_owned(),
            token_id: None,
            name: None,
        }
    }
}

/// Who made a change and why.
#[derive(Debug, Clone)]
pub struct Author {
    pub actor: Actor,
    pub reason: Option<String>,
}

/// A change as its revision records it.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub action: RevisionAction,
    /// The version a restore brings back.
    pub restored_from: Option<i64>,
    pub author: &'a Author,
}

impl<'a> Change<'a> {
    pub fn new(action: RevisionAction, author: &'a Author) -> Self {
        Self {
            action,
            restored_from: None,
            author,
        }
    }

    pub fn restore(from: i64, author: &'a Author) -> Self {
        Self {
            action: RevisionAction::Restored,
            restored_from: Some(from),
            author,
        }
    }
}

/// Appends the revision of `change` to `schedule`, as the change left it, in the change's
/// transaction `conn`. A delete's `schedule` is the one it deleted; its revision takes the next
/// version, so that a schedule restored after it goes on from there.
pub async fn append(
    conn: &impl ConnectionTrait,
    schedule: &schedule::Model,
    change: Change<'_>,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let document = StoredSchedule::from_model(schedule)?.document()?;
    let deleted = change.action == RevisionAction::Deleted;
    let patch = if deleted {
        None
    } else {
        // The primary key (schedule, version) serves this.
        let before = schedule_revision::Entity::find()
            .filter(schedule_revision::Column::ScheduleId.eq(schedule.id))
            .order_by_desc(schedule_revision::Column::Version)
            .one(conn)
            .await
            .context("reading a schedule's latest revision")?;
        Some(match before {
            Some(before) if before.action != RevisionAction::Deleted => {
                merge_patch::between(&before.document, &document)
            }
            _ => document.clone(),
        })
    };
    let author = change.author;
    schedule_revision::ActiveModel {
        schedule_id: Set(schedule.id),
        version: Set(schedule.version + i64::from(deleted)),
        tenant_id: Set(schedule.tenant_id.clone()),
        created_at: Set(now),
        action: Set(change.action),
        actor_sub: Set(author.actor.sub.clone()),
        actor_token_id: Set(author.actor.token_id.clone()),
        actor_name: Set(author.actor.name.clone()),
        reason: Set(author.reason.clone()),
        restored_from: Set(change.restored_from),
        patch: Set(patch),
        document: Set(document),
    }
    .insert(conn)
    .await
    .context("appending a revision")?;
    Ok(())
}

/// Revisions older than the cut-off, but for a live schedule's latest (the one at its current
/// version), so the current state always has its revision. Served by
/// `schedule_revisions_created_idx` and the schedules' primary key.
const PRUNE: &str = "DELETE FROM schedule_revisions WHERE created_at < $1 AND NOT EXISTS \
     (SELECT 1 FROM schedules WHERE schedules.id = schedule_revisions.schedule_id \
     AND schedules.version = schedule_revisions.version)";

/// Forgets revisions made before `cutoff`, with the run history, except each live schedule's
/// latest.
pub async fn prune(conn: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
    delete_before(conn, PRUNE, cutoff)
        .await
        .context("pruning revisions")
}

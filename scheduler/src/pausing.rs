//! hookbeat pausing schedules by itself (a target answered 410 Gone; runs kept failing): one
//! statement doing what a pause through the API does (enabled off, the reason, when, a new
//! version), to the schedules still enabled, and the revision of each pause, by hookbeat, with
//! the reason. The caller's transaction holds both.

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::schedule;
use hookbeat_entity::schedule_revision::RevisionAction;
use hookbeat_entity::ScheduleId;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Value};

use crate::revisions::{self, Actor, Author, Change};
use crate::sql::{column, placeholders, statement};

const PAUSE: &str = "UPDATE schedules SET enabled = FALSE, paused_reason = $1, paused_at = $2, \
     updated_at = $2, version = version + 1 WHERE enabled AND id IN {ids} RETURNING id";

/// Pauses the listed schedules that are still enabled, for `reason`; returns those it paused.
pub async fn pause(
    conn: &impl ConnectionTrait,
    ids: &[ScheduleId],
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<ScheduleId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<Value> = vec![reason.into(), now.into()];
    values.extend(ids.iter().map(|id| Value::from(*id)));
    let sql = PAUSE.replace("{ids}", &placeholders(3, ids.len()));
    let paused: Vec<ScheduleId> = column(
        conn,
        statement(conn.get_database_backend(), &sql, values),
        "id",
    )
    .await
    .context("pausing schedules")?;
    if paused.is_empty() {
        return Ok(paused);
    }
    let author = Author {
        actor: Actor::hookbeat(),
        reason: Some(reason.to_owned()),
    };
    let rows = schedule::Entity::find()
        .filter(schedule::Column::Id.is_in(paused.iter().copied()))
        .all(conn)
        .await
        .context("reading the paused schedules")?;
    for row in &rows {
        revisions::append(conn, row, Change::new(RevisionAction::Paused, &author), now).await?;
    }
    Ok(paused)
}

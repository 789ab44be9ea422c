//! A schedule's revisions as the API shows them: what each change did, who made it and why, and
//! (one at a time) the schedule as the change left it.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use hookbeat_entity::schedule_revision::{self, RevisionAction};
pub use hookbeat_scheduler::revisions::Actor;
use sea_orm::Iterable;
use serde::Serialize;
use utoipa::openapi::{ObjectBuilder, Type};
use utoipa::ToSchema;

/// A schedule's version, as a path segment or a cursor: a whole number from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version(pub i64);

impl FromStr for Version {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        text.parse::<i64>()
            .ok()
            .filter(|version| *version >= 1)
            .map(Version)
            .ok_or(())
    }
}

/// One change to a schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revision {
    /// The schedule's version the change made (its `ETag` then); a delete's is the one after the
    /// schedule's last.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    #[schema(schema_with = action_schema)]
    pub action: RevisionAction,
    pub actor: Actor,
    /// The request's `X-Change-Reason`, or why hookbeat made the change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The version a `restored` revision brought back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<i64>,
    /// The JSON merge patch (RFC 7396) that turns the schedule as the revision before left it
    /// into this one's: the whole schedule for the first revision and the first after a delete;
    /// `null` for a delete.
    #[schema(value_type = Option<Object>)]
    pub patch: Option<serde_json::Value>,
}

fn action_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(RevisionAction::iter().map(|action| {
            serde_json::to_value(action).expect("an action serialises to its name")
        })))
        .description(Some(
            "What the change was: `created` (a create, or a PUT by name that made it), `updated` \
(PATCH), `replaced` (PUT by name), `paused` (through the API, or by hookbeat), `resumed`, \
`deleted`, `restored`",
        ))
}

impl From<schedule_revision::Model> for Revision {
    fn from(m: schedule_revision::Model) -> Self {
        Self {
            version: m.version,
            created_at: m.created_at,
            action: m.action,
            actor: Actor {
                sub: m.actor_sub,
                token_id: m.actor_token_id,
                name: m.actor_name,
            },
            reason: m.reason,
            restored_from: m.restored_from,
            patch: m.patch,
        }
    }
}

/// One revision with the schedule as it left it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::revision_detail)]
pub struct RevisionDetail {
    #[serde(flatten)]
    pub revision: Revision,
    /// The schedule's writable members after the change (a delete's: as it was deleted), as a
    /// client writes them: what a restore of this revision writes again.
    #[schema(value_type = crate::dto::schedule::ScheduleInput)]
    pub schedule: serde_json::Value,
}

impl From<schedule_revision::Model> for RevisionDetail {
    fn from(mut m: schedule_revision::Model) -> Self {
        let schedule = std::mem::take(&mut m.document);
        Self {
            revision: Revision::from(m),
            schedule,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::revision_page)]
pub struct RevisionPage {
    /// Newest first.
    pub items: Vec<Revision>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

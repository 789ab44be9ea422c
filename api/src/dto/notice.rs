//! A schedule's notices as its history shows them: what was announced, and whether it arrived.

use chrono::{DateTime, Utc};
use hookbeat_scheduler::notices::{status, Issued};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One notice: a transition of the schedule's health announced to its `notify` target.
#[derive(Debug, Serialize, ToSchema)]
pub struct Notice {
    /// Its `webhook-id`.
    pub id: Uuid,
    /// `failing`, `recovered` or `paused`.
    pub transition: String,
    /// `pending` (being delivered or waiting for its next attempt), `delivered`, or `failed`
    /// (given up).
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due, while it is pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
    /// The status code of its last attempt, when an answer came.
    pub last_status_code: Option<i32>,
    /// Why its last attempt did not succeed.
    pub last_error: Option<String>,
    /// The body it is sent with.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<Issued> for Notice {
    fn from(n: Issued) -> Self {
        Self {
            id: n.id,
            next_attempt_at: (n.status == status::PENDING).then_some(n.next_attempt_at),
            transition: n.transition,
            status: n.status,
            attempts: n.attempts,
            created_at: n.created_at,
            finished_at: n.finished_at,
            last_status_code: n.last_status_code,
            last_error: n.last_error,
            body: serde_json::from_str(&n.body).unwrap_or(serde_json::Value::Null),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::notice_page)]
pub struct NoticePage {
    pub items: Vec<Notice>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

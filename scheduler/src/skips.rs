//! Skipped fires: every fire the engine decides not to deliver, with its reason, kept as ranges
//! (a catch-up that drops a day of per-second fires is one row) and pruned with the run
//! history.

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_entity::ScheduleId;
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::sql::{delete_before, placeholder_rows, statement};

/// Why a fire was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// `overlap: skip` while the previous run was unfinished, or an older fire of the same pass.
    Overlap,
    /// Missed while no worker ran, and dropped by `catchup: skip` or `latest`.
    Catchup,
    /// A local time that did not exist (clocks went forward) under `dst_gap: skip`.
    DstGap,
    /// Due while the schedule was paused.
    Paused,
    /// Past the schedule's `max_runs`.
    MaxRuns,
    /// Past the schedule's `end_at`.
    EndAt,
    /// On a date one of the schedule's `exclude` calendars excludes.
    Calendar,
}

impl SkipReason {
    pub const ALL: [SkipReason; 7] = [
        Self::Overlap,
        Self::Catchup,
        Self::DstGap,
        Self::Paused,
        Self::MaxRuns,
        Self::EndAt,
        Self::Calendar,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overlap => "overlap",
            Self::Catchup => "catchup",
            Self::DstGap => "dst_gap",
            Self::Paused => "paused",
            Self::MaxRuns => "max_runs",
            Self::EndAt => "end_at",
            Self::Calendar => "calendar",
        }
    }

    /// Its place in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn from_db(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// Fires of one schedule skipped for one reason: `fires` of them from `first` to `last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skip {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub fires: i64,
    pub reason: SkipReason,
}

impl Skip {
    /// The skip of `fires` (oldest first), or none when there are none.
    pub fn of(fires: &[DateTime<Utc>], reason: SkipReason) -> Option<Self> {
        Some(Self {
            first: *fires.first()?,
            last: *fires.last()?,
            fires: fires.len() as i64,
            reason,
        })
    }

    /// Whether the fire at `at` is one of these.
    pub fn covers(&self, at: DateTime<Utc>) -> bool {
        (self.first..=self.last).contains(&at)
    }
}

/// `{rows}` is a `VALUES` list of (schedule, first, last, fires, reason, recorded at). A range
/// recorded twice (a pass retried after its commit was lost) is kept once.
const RECORD: &str = "INSERT INTO skipped_fires \
     (schedule_id, first_at, last_at, fires, reason, recorded_at) VALUES {rows} \
     ON CONFLICT (schedule_id, first_at) DO NOTHING";
const RECORD_COLUMNS: usize = 6;
/// Rows per statement: well under both backends' parameter limits.
const RECORD_CHUNK: usize = 500;

/// Records skipped fires, in the caller's transaction.
pub async fn record(
    conn: &impl ConnectionTrait,
    skips: &[(ScheduleId, Skip)],
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let backend = conn.get_database_backend();
    for chunk in skips.chunks(RECORD_CHUNK) {
        let sql = RECORD.replace("{rows}", &placeholder_rows(1, chunk.len(), RECORD_COLUMNS));
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * RECORD_COLUMNS);
        for (id, s) in chunk {
            values.extend([
                (*id).into(),
                s.first.into(),
                s.last.into(),
                s.fires.into(),
                s.reason.as_str().into(),
                now.into(),
            ]);
        }
        conn.execute(statement(backend, &sql, values))
            .await
            .context("recording skipped fires")?;
    }
    Ok(())
}

/// The skips of schedule `$1` that overlap `[$2, $3]`, oldest first.
const BETWEEN: &str = "SELECT first_at, last_at, fires, reason FROM skipped_fires \
     WHERE schedule_id = $1 AND first_at <= $3 AND last_at >= $2 ORDER BY first_at";

#[derive(FromQueryResult)]
struct SkipRow {
    first_at: DateTime<Utc>,
    last_at: DateTime<Utc>,
    fires: i64,
    reason: String,
}

/// The skips of `schedule` that cover some instant from `from` to `to`.
pub async fn between(
    conn: &impl ConnectionTrait,
    schedule: ScheduleId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Vec<Skip>> {
    let rows = SkipRow::find_by_statement(statement(
        conn.get_database_backend(),
        BETWEEN,
        vec![schedule.into(), from.into(), to.into()],
    ))
    .all(conn)
    .await
    .context("reading skipped fires")?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            Some(Skip {
                first: r.first_at,
                last: r.last_at,
                fires: r.fires,
                reason: SkipReason::from_db(&r.reason)?,
            })
        })
        .collect())
}

/// Forgets skips whose last fire is older than `cutoff`, with the run history.
const PRUNE: &str = "DELETE FROM skipped_fires WHERE last_at < $1";

pub async fn prune(conn: &impl ConnectionTrait, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
    delete_before(conn, PRUNE, cutoff)
        .await
        .context("pruning skipped fires")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_sits_at_its_index_and_reads_back() {
        for (i, reason) in SkipReason::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert_eq!(SkipReason::from_db(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }
}

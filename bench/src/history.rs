//! What hookbeat's own tables say about a run's fires, on either database: runs by status and
//! attempts by outcome at the end, and where the time of each fire went (materialise, claim,
//! HTTP), read the same way from both and summarised here (SQLite has no percentile function).

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_scheduler::sql;
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Statement};
use serde::Serialize;

use crate::stats::percentile;

/// Where the time of the fires scheduled in a window went, from hookbeat's tables (first
/// attempts only), in seconds: p50 / p99 / max of each stage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stages {
    pub runs: i64,
    /// The worker pass that made the run began this long after the scheduled time.
    pub materialise_p50: Option<f64>,
    pub materialise_p99: Option<f64>,
    pub materialise_max: Option<f64>,
    /// From that pass to the start of the first attempt: waiting to be claimed.
    pub claim_p50: Option<f64>,
    pub claim_p99: Option<f64>,
    pub claim_max: Option<f64>,
    /// The first attempt's HTTP exchange.
    pub http_p50: Option<f64>,
    pub http_p99: Option<f64>,
    pub http_max: Option<f64>,
}

/// The first attempt of every scheduled fire in a window: a row of `attempts`, or the run's
/// sole attempt kept in its row. Instants are read whole rather than subtracted in SQL: SQLite's
/// date functions keep only milliseconds. hookbeat writes every SQLite instant in one text form,
/// whose order is the order of time, so there too the window is a range.
const FIRES: &str = "SELECT r.scheduled_for, r.created_at, a.started_at, a.duration_ms \
     FROM runs r JOIN attempts a ON a.run_id = r.id AND a.attempt = 1 \
     WHERE r.\"trigger\" = 'schedule' AND r.scheduled_for >= $1 AND r.scheduled_for <= $2 \
     UNION ALL SELECT scheduled_for, created_at, sole_attempt_started_at AS started_at, \
         sole_attempt_duration_ms AS duration_ms \
     FROM runs WHERE sole_attempt_started_at IS NOT NULL AND \"trigger\" = 'schedule' \
         AND scheduled_for >= $1 AND scheduled_for <= $2";

/// One first attempt of a scheduled fire, as [`FIRES`] reads it.
#[derive(Debug, Clone, Copy, FromQueryResult)]
struct FireRow {
    scheduled_for: DateTime<Utc>,
    created_at: DateTime<Utc>,
    started_at: DateTime<Utc>,
    /// NULL while the attempt is in flight.
    duration_ms: Option<i64>,
}

pub async fn stages(
    db: &DatabaseConnection,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Stages> {
    let statement = sql::statement(
        db.get_database_backend(),
        FIRES,
        vec![from.into(), to.into()],
    );
    let rows = FireRow::find_by_statement(statement)
        .all(db)
        .await
        .context("reading run stages")?;
    Ok(summarise(&rows))
}

/// The stages of the fires in `rows`, nearest-rank percentiles: every row counts as a run, and an
/// attempt still in flight (no duration) is left out of the HTTP stage.
fn summarise(rows: &[FireRow]) -> Stages {
    let micros = |d: chrono::Duration| d.num_microseconds().unwrap_or(i64::MAX);
    let mut materialise: Vec<i64> = rows
        .iter()
        .map(|r| micros(r.created_at - r.scheduled_for))
        .collect();
    let mut claim: Vec<i64> = rows
        .iter()
        .map(|r| micros(r.started_at - r.created_at))
        .collect();
    let mut http: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.duration_ms.map(|ms| ms * 1000))
        .collect();
    let [(materialise_p50, materialise_p99, materialise_max), (claim_p50, claim_p99, claim_max), (http_p50, http_p99, http_max)] =
        [&mut materialise, &mut claim, &mut http].map(|values| {
            values.sort_unstable();
            let seconds = |q: f64| percentile(values, q).map(|us| us as f64 / 1e6);
            (seconds(0.5), seconds(0.99), seconds(1.0))
        });
    Stages {
        runs: rows.len() as i64,
        materialise_p50,
        materialise_p99,
        materialise_max,
        claim_p50,
        claim_p99,
        claim_max,
        http_p50,
        http_p99,
        http_max,
    }
}

#[derive(FromQueryResult)]
struct CountRow {
    key: String,
    n: i64,
}

/// Runs by status and attempts by outcome at the end of the run; a run's sole attempt, kept in
/// its row, counts as a success.
pub async fn run_states(db: &DatabaseConnection) -> anyhow::Result<BTreeMap<String, i64>> {
    let statement = Statement::from_string(
        db.get_database_backend(),
        "SELECT key, CAST(SUM(n) AS BIGINT) AS n FROM ( \
             SELECT 'runs.' || status AS key, count(*) AS n FROM runs GROUP BY status \
             UNION ALL SELECT 'attempts.' || outcome AS key, count(*) AS n FROM attempts \
                 GROUP BY outcome \
             UNION ALL SELECT 'attempts.success' AS key, count(*) AS n FROM runs \
                 WHERE sole_attempt_started_at IS NOT NULL) AS counts \
         GROUP BY key",
    );
    Ok(CountRow::find_by_statement(statement)
        .all(db)
        .await
        .context("counting runs")?
        .into_iter()
        .map(|r| (r.key, r.n))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn fire(materialise_ms: i64, claim_ms: i64, http_ms: Option<i64>) -> FireRow {
        FireRow {
            scheduled_for: at(0),
            created_at: at(materialise_ms),
            started_at: at(materialise_ms + claim_ms),
            duration_ms: http_ms,
        }
    }

    #[test]
    fn stages_are_nearest_rank_percentiles_of_each_step() {
        // Materialise 1..=100 ms, claim 100 ms less each time, HTTP 5 ms except one in flight.
        let rows: Vec<FireRow> = (1..=100)
            .map(|i| fire(i, 101 - i, (i != 50).then_some(5 + i / 50)))
            .collect();
        let stages = summarise(&rows);
        assert_eq!(stages.runs, 100);
        assert_eq!(stages.materialise_p50, Some(0.050));
        assert_eq!(stages.materialise_p99, Some(0.099));
        assert_eq!(stages.materialise_max, Some(0.100));
        assert_eq!(stages.claim_p50, Some(0.050));
        assert_eq!(stages.claim_max, Some(0.100));
        // 99 durations, the in-flight one left out: 49 of 5 ms, 49 of 6 ms, one of 7 ms. The
        // 50th is the first 6 ms; the 99th (ceil(0.99 × 99)) is the 7 ms.
        assert_eq!(stages.http_p50, Some(0.006));
        assert_eq!(stages.http_p99, Some(0.007));
        assert_eq!(stages.http_max, Some(0.007));
    }

    #[test]
    fn no_fires_no_stages() {
        assert_eq!(summarise(&[]), Stages::default());
        let stages = summarise(&[fire(3, 4, None)]);
        assert_eq!((stages.runs, stages.claim_p99), (1, Some(0.004)));
        assert_eq!(stages.http_max, None);
    }
}

//! WAL per delivered fire on PostgreSQL: `pg_stat_wal` and `pg_current_wal_lsn()` read at the
//! two edges of a window, `pg_stat_statements` over the same window when the server preloads it
//! (the bench never changes the server's configuration), and the differences divided by the
//! fires the receiver got in the window. None of it exists on SQLite (see [`crate::sqlite`]).
//!
//! `pg_stat_wal` is cluster-wide. Each snapshot also sums the commits and row writes of the
//! cluster's *other* databases, so a report can show that the bench database was the only one
//! under load instead of assuming it. Backends add their WAL to `pg_stat_wal` when they flush
//! their statistics, at most once a second while busy, so a snapshot taken under load misses up
//! to a second of it at each edge (about the same at both, so little of the difference); the LSN
//! moves with every record and is the cross-check. The two also differ in what they count: the
//! LSN includes page headers and the padding of a segment switch, `wal_bytes` only the records.
//! An idle backend holds its share for up to 10 s: what the bench writes itself just before a
//! window (the burst's seeding) is flushed first ([`flush_statistics`]).

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use anyhow::Context;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::accounting::Delivery;
use crate::clock::{now_us, to_datetime};

/// Statements listed in each ranking.
const TOP: usize = 8;

/// The cluster's WAL counters and write position, with the other databases' activity.
const SNAPSHOT: &str = "SELECT w.wal_records, w.wal_fpi, w.wal_bytes::bigint AS wal_bytes, \
     pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS lsn, \
     (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter) AS checkpoints, \
     (SELECT COALESCE(sum(xact_commit), 0)::bigint FROM pg_stat_database \
      WHERE datname <> current_database()) AS other_commits, \
     (SELECT COALESCE(sum(tup_inserted + tup_updated + tup_deleted), 0)::bigint \
      FROM pg_stat_database WHERE datname <> current_database()) AS other_rows_written \
     FROM pg_stat_wal w";

/// Empties `pg_stat_statements` for the bench database only (all users, all statements).
const RESET_STATEMENTS: &str = "SELECT pg_stat_statements_reset(0::oid, d.oid, 0::bigint) \
     FROM pg_database d WHERE d.datname = current_database()";

/// Every statement the bench database ran since the reset; ranked here.
const READ_STATEMENTS: &str =
    "SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 120) AS query, \
     s.calls, (s.total_exec_time + s.total_plan_time)::float8 AS total_ms, s.rows, \
     s.wal_records, s.wal_fpi, s.wal_bytes::bigint AS wal_bytes \
     FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
     WHERE d.datname = current_database()";

/// How many times `pg_stat_statements` has evicted entries to make room (PostgreSQL 14+).
const EVICTIONS: &str = "SELECT dealloc::text AS value FROM pg_stat_statements_info";

/// The counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub at_us: i64,
    pub counters: SnapshotRow,
}

/// What [`SNAPSHOT`] reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromQueryResult)]
pub struct SnapshotRow {
    pub wal_records: i64,
    pub wal_fpi: i64,
    pub wal_bytes: i64,
    /// `pg_current_wal_lsn()` as bytes from `0/0`.
    pub lsn: i64,
    pub checkpoints: i64,
    pub other_commits: i64,
    pub other_rows_written: i64,
}

/// One statement's totals over the window (`pg_stat_statements`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, FromQueryResult)]
pub struct StatementRow {
    /// Its first 120 characters, whitespace collapsed.
    pub query: String,
    pub calls: i64,
    /// Execution and planning.
    pub total_ms: f64,
    pub rows: i64,
    pub wal_records: i64,
    pub wal_fpi: i64,
    pub wal_bytes: i64,
}

/// What `pg_stat_statements` said over the window, or why it said nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatementFigures {
    pub available: bool,
    /// Why not, when not available.
    pub why_not: Option<String>,
    /// The statements that took the most time, most first.
    pub by_time: Vec<StatementRow>,
    /// The statements that wrote the most WAL, most first.
    pub by_wal_bytes: Vec<StatementRow>,
    /// How many times `pg_stat_statements` evicted entries in the window (its hash holds
    /// `pg_stat_statements.max` statements); when not 0 the ranking may miss statements.
    pub evictions: i64,
}

/// WAL over a window and per fire delivered in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WalFigures {
    /// Which window: `steady state` (sustained) or `burst` (from before the boundary to after
    /// the last fire, as the other counters).
    pub window: String,
    pub from: String,
    pub to: String,
    pub seconds: f64,
    /// Distinct fires whose first delivery reached the receiver in the window.
    pub fires: u64,
    /// `pg_stat_wal` differences: cluster-wide (see `other_databases_*`).
    pub records: i64,
    pub fpi: i64,
    pub bytes: i64,
    /// How far `pg_current_wal_lsn()` moved: the cross-check of `bytes`.
    pub lsn_bytes: i64,
    /// None when no fire was delivered in the window.
    pub records_per_fire: Option<f64>,
    pub bytes_per_fire: Option<f64>,
    pub fpi_per_fire: Option<f64>,
    pub lsn_bytes_per_fire: Option<f64>,
    /// Checkpoints counted in the window (`pg_stat_bgwriter`): each is followed by full-page
    /// images, the first change to every page after it.
    pub checkpoints: i64,
    /// Commits and rows written by the cluster's other databases in the window: 0 and 0 when
    /// the bench database was the only one under load.
    pub other_databases_commits: i64,
    pub other_databases_rows_written: i64,
    pub statements: StatementFigures,
}

/// Whether a `shared_preload_libraries` value loads `pg_stat_statements`.
pub fn preloads_statements(libraries: &str) -> bool {
    libraries
        .split(',')
        .map(|l| l.trim().trim_matches('"'))
        .any(|l| l == "pg_stat_statements")
}

#[derive(FromQueryResult)]
struct Setting {
    value: String,
}

async fn snapshot(db: &DatabaseConnection) -> anyhow::Result<Snapshot> {
    let at_us = now_us();
    let counters =
        SnapshotRow::find_by_statement(Statement::from_string(DbBackend::Postgres, SNAPSHOT))
            .one(db)
            .await
            .context("reading pg_stat_wal")?
            .context("pg_stat_wal returned no row")?;
    Ok(Snapshot { at_us, counters })
}

/// Makes `pg_stat_statements` usable in the bench database and empties it, if the server
/// preloads it and tracks statements with it; otherwise says why not. Returns its eviction
/// count after the reset.
async fn reset_statements(db: &DatabaseConnection) -> Result<i64, String> {
    let libraries = setting(
        db,
        "SELECT current_setting('shared_preload_libraries') AS value",
    )
    .await?
    .unwrap_or_default();
    if !preloads_statements(&libraries) {
        return Err(format!(
            "not in shared_preload_libraries ('{libraries}'), and the bench leaves the \
             server's configuration alone"
        ));
    }
    let track = setting(
        db,
        "SELECT current_setting('pg_stat_statements.track') AS value",
    )
    .await?
    .unwrap_or_default();
    let query_ids = setting(db, "SELECT current_setting('compute_query_id') AS value")
        .await?
        .unwrap_or_default();
    if let Some(why) = not_tracking(&track, &query_ids) {
        return Err(why);
    }
    db.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .map_err(|e| format!("CREATE EXTENSION pg_stat_statements: {e}"))?;
    db.execute_unprepared(RESET_STATEMENTS)
        .await
        .map_err(|e| format!("pg_stat_statements_reset: {e}"))?;
    evictions(db).await
}

/// Why a loaded `pg_stat_statements` records nothing, given `pg_stat_statements.track` and
/// `compute_query_id`; None when it records top-level statements.
fn not_tracking(track: &str, query_ids: &str) -> Option<String> {
    if track == "none" {
        return Some("pg_stat_statements.track is 'none'".to_owned());
    }
    (query_ids == "off").then(|| "compute_query_id is 'off', so no statement has an id".to_owned())
}

async fn evictions(db: &DatabaseConnection) -> Result<i64, String> {
    let value = setting(db, EVICTIONS).await?.unwrap_or_default();
    value
        .parse()
        .map_err(|e| format!("pg_stat_statements_info.dealloc '{value}': {e}"))
}

/// The one text value `sql` selects as `value`, if it selects a row.
async fn setting(db: &DatabaseConnection, sql: &str) -> Result<Option<String>, String> {
    Setting::find_by_statement(Statement::from_string(DbBackend::Postgres, sql))
        .one(db)
        .await
        .map(|row| row.map(|s| s.value))
        .map_err(|e| format!("{sql}: {e}"))
}

/// Makes the backend of `db` (a pool of one connection) add what it has done so far to the
/// cumulative statistics, `pg_stat_wal` among them, before this returns. An idle backend adds
/// it up to 10 s later, which would put WAL written before a window into it. The flush happens
/// as the backend goes idle after the first statement, before it reads the second.
pub async fn flush_statistics(db: &DatabaseConnection) -> anyhow::Result<()> {
    db.execute_unprepared("SELECT pg_stat_force_next_flush()")
        .await
        .context("asking for a flush of the statistics")?;
    db.execute_unprepared("SELECT 1")
        .await
        .context("waiting for the statistics to be flushed")?;
    Ok(())
}

/// A window whose start has been read.
pub struct OpenWindow {
    start: Snapshot,
    /// `pg_stat_statements`' eviction count once reset at the start, or why it was not.
    statements: Result<i64, String>,
}

/// A window read at both edges.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    pub start: Snapshot,
    pub end: Snapshot,
    /// Every statement of the bench database over the window, or why there are none.
    pub statements: Result<WindowStatements, String>,
}

/// What `pg_stat_statements` held for the bench database at the end of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowStatements {
    pub rows: Vec<StatementRow>,
    /// Evictions between the reset and the reading of `rows`.
    pub evictions: i64,
}

impl OpenWindow {
    /// Resets `pg_stat_statements` (when loaded) and reads the counters.
    pub async fn open(db: &DatabaseConnection) -> anyhow::Result<Self> {
        let statements = reset_statements(db).await;
        Ok(Self {
            start: snapshot(db).await?,
            statements,
        })
    }

    /// Reads the counters, then the statements run since the start.
    pub async fn close(&self, db: &DatabaseConnection) -> anyhow::Result<ClosedWindow> {
        let end = snapshot(db).await?;
        let statements = match &self.statements {
            Err(why) => Err(why.clone()),
            Ok(evicted_before) => read_statements(db, *evicted_before).await,
        };
        Ok(ClosedWindow {
            start: self.start,
            end,
            statements,
        })
    }
}

async fn read_statements(
    db: &DatabaseConnection,
    evicted_before: i64,
) -> Result<WindowStatements, String> {
    let rows = StatementRow::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        READ_STATEMENTS,
    ))
    .all(db)
    .await
    .map_err(|e| format!("reading pg_stat_statements: {e}"))?;
    Ok(WindowStatements {
        rows,
        evictions: evictions(db).await? - evicted_before,
    })
}

/// A window opened at one instant and closed at another by a task of its own, so that its
/// edges fall where they are asked to whatever the caller is doing then. Dropped before it
/// ends, it stops.
pub struct TimedWindow(JoinHandle<anyhow::Result<ClosedWindow>>);

impl TimedWindow {
    /// Opens at `from_us` and closes at `to_us` (wall-clock microseconds).
    pub fn spawn(db: DatabaseConnection, from_us: i64, to_us: i64) -> Self {
        Self(tokio::spawn(async move {
            sleep_until(from_us).await;
            let open = OpenWindow::open(&db).await?;
            sleep_until(to_us).await;
            open.close(&db).await
        }))
    }

    /// The window, once closed.
    pub async fn closed(mut self) -> anyhow::Result<ClosedWindow> {
        (&mut self.0)
            .await
            .context("the WAL window's task failed")?
    }
}

impl Drop for TimedWindow {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn sleep_until(at_us: i64) {
    let wait = at_us - now_us();
    if wait > 0 {
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
}

/// Distinct fires (schedule, scheduled-for) whose first delivery arrived in `[from_us, to_us)`.
pub fn fires_first_delivered(deliveries: &[Delivery], from_us: i64, to_us: i64) -> u64 {
    let mut first: HashMap<(Uuid, i64), i64> = HashMap::with_capacity(deliveries.len());
    for d in deliveries {
        first
            .entry((d.schedule_id, d.scheduled_for_us))
            .and_modify(|t| *t = (*t).min(d.arrival_us))
            .or_insert(d.arrival_us);
    }
    first
        .values()
        .filter(|t| (from_us..to_us).contains(*t))
        .count() as u64
}

/// `part / fires`, or None when there were none.
fn per_fire(part: i64, fires: u64) -> Option<f64> {
    (fires > 0).then(|| part as f64 / fires as f64)
}

/// The `n` rows with the largest `key`, largest first (ties by query text, for a stable order).
fn top(rows: &[StatementRow], n: usize, key: impl Fn(&StatementRow) -> f64) -> Vec<StatementRow> {
    let mut ranked: Vec<&StatementRow> = rows.iter().collect();
    ranked.sort_by(|a, b| {
        key(b)
            .total_cmp(&key(a))
            .then_with(|| a.query.cmp(&b.query))
    });
    ranked.into_iter().take(n).cloned().collect()
}

impl ClosedWindow {
    /// The window's differences, per fire for the `fires` delivered in it.
    pub fn figures(&self, window: &str, fires: u64) -> WalFigures {
        let (a, b) = (&self.start.counters, &self.end.counters);
        let (from_us, to_us) = (self.start.at_us, self.end.at_us);
        let records = b.wal_records - a.wal_records;
        let fpi = b.wal_fpi - a.wal_fpi;
        let bytes = b.wal_bytes - a.wal_bytes;
        let lsn_bytes = b.lsn - a.lsn;
        let statements = match &self.statements {
            Ok(read) => StatementFigures {
                available: true,
                why_not: None,
                by_time: top(&read.rows, TOP, |r| r.total_ms),
                by_wal_bytes: top(&read.rows, TOP, |r| r.wal_bytes as f64),
                evictions: read.evictions,
            },
            Err(why) => StatementFigures {
                available: false,
                why_not: Some(why.clone()),
                ..StatementFigures::default()
            },
        };
        let instant = |us: i64| to_datetime(us).to_rfc3339();
        WalFigures {
            window: window.to_owned(),
            from: instant(from_us),
            to: instant(to_us),
            seconds: (to_us - from_us) as f64 / 1e6,
            fires,
            records,
            fpi,
            bytes,
            lsn_bytes,
            records_per_fire: per_fire(records, fires),
            bytes_per_fire: per_fire(bytes, fires),
            fpi_per_fire: per_fire(fpi, fires),
            lsn_bytes_per_fire: per_fire(lsn_bytes, fires),
            checkpoints: b.checkpoints - a.checkpoints,
            other_databases_commits: b.other_commits - a.other_commits,
            other_databases_rows_written: b.other_rows_written - a.other_rows_written,
            statements,
        }
    }
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ratio(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

impl WalFigures {
    /// The report's lines for the window.
    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "PostgreSQL WAL over the {} ({} to {}, {:.1} s; {} fires first delivered in it):",
            self.window, self.from, self.to, self.seconds, self.fires
        );
        let _ = writeln!(
            out,
            "  pg_stat_wal: {} records, {:.1} MiB, {} full-page images; pg_current_wal_lsn() \
             moved {:.1} MiB; {} checkpoint(s) counted",
            self.records,
            mib(self.bytes),
            self.fpi,
            mib(self.lsn_bytes),
            self.checkpoints
        );
        let _ = writeln!(
            out,
            "  per fire: {} WAL records, {} bytes (LSN: {} bytes), {} full-page images",
            ratio(self.records_per_fire, 1),
            ratio(self.bytes_per_fire, 0),
            ratio(self.lsn_bytes_per_fire, 0),
            ratio(self.fpi_per_fire, 2)
        );
        let others = if self.other_databases_commits == 0 && self.other_databases_rows_written == 0
        {
            "the bench database was the only one under load (the others committed nothing)"
                .to_owned()
        } else {
            format!(
                "the other databases committed {} transactions and wrote {} rows in the window, \
                 so their WAL is counted too",
                self.other_databases_commits, self.other_databases_rows_written
            )
        };
        let _ = writeln!(out, "  pg_stat_wal is cluster-wide: {others}");
        let s = &self.statements;
        if !s.available {
            let _ = writeln!(
                out,
                "  pg_stat_statements: not available ({})",
                s.why_not.as_deref().unwrap_or("no reason given")
            );
            return;
        }
        if s.evictions > 0 {
            let _ = writeln!(
                out,
                "  pg_stat_statements evicted entries {} times in the window \
                 (pg_stat_statements.max is too small): the ranking may miss statements",
                s.evictions
            );
        }
        for (what, rows) in [("time", &s.by_time), ("WAL bytes", &s.by_wal_bytes)] {
            let _ = writeln!(
                out,
                "  pg_stat_statements, bench database, top by {what} (time, calls, WAL records, \
                 WAL bytes, full-page images):"
            );
            for r in rows {
                let _ = writeln!(
                    out,
                    "    {:>9.1} ms {:>8} {:>9} {:>7.1} MiB {:>6}  {}",
                    r.total_ms,
                    r.calls,
                    r.wal_records,
                    mib(r.wal_bytes),
                    r.wal_fpi,
                    r.query
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(schedule: u128, scheduled_for_us: i64, arrival_us: i64) -> Delivery {
        Delivery {
            arrival_us,
            schedule_id: Uuid::from_u128(schedule),
            scheduled_for_us,
            webhook_id: Uuid::from_u128(schedule << 64 | scheduled_for_us as u128),
            attempt: 1,
        }
    }

    fn statement(query: &str, total_ms: f64, wal_bytes: i64) -> StatementRow {
        StatementRow {
            query: query.to_owned(),
            calls: 1,
            total_ms,
            wal_bytes,
            ..StatementRow::default()
        }
    }

    #[test]
    fn only_the_libraries_named_load_statements() {
        assert!(preloads_statements("pg_stat_statements"));
        assert!(preloads_statements("auto_explain, pg_stat_statements"));
        assert!(preloads_statements("\"pg_stat_statements\",pg_cron"));
        assert!(!preloads_statements(""));
        assert!(!preloads_statements(
            "pg_stat_statements_extra, auto_explain"
        ));
    }

    #[test]
    fn fires_count_once_by_their_first_delivery() {
        let deliveries = [
            // Before the window.
            delivery(1, 0, 999),
            // First in the window, repeated after it: counts.
            delivery(2, 0, 1_000),
            delivery(2, 0, 5_000),
            // Repeated in the window, first before it: does not.
            delivery(3, 0, 1_500),
            delivery(3, 0, 500),
            // Two fires of one schedule: two.
            delivery(4, 0, 1_200),
            delivery(4, 60, 1_300),
            // At the end: outside.
            delivery(5, 0, 2_000),
        ];
        assert_eq!(fires_first_delivered(&deliveries, 1_000, 2_000), 3);
        assert_eq!(fires_first_delivered(&deliveries, 0, 10_000), 6);
        assert_eq!(fires_first_delivered(&[], 0, 10_000), 0);
    }

    fn window(statements: Result<Vec<StatementRow>, String>) -> ClosedWindow {
        let statements = statements.map(|rows| WindowStatements { rows, evictions: 0 });
        ClosedWindow {
            start: Snapshot {
                at_us: 1_000_000,
                counters: SnapshotRow {
                    wal_records: 1_000,
                    wal_fpi: 10,
                    wal_bytes: 100_000,
                    lsn: 5_000_000,
                    checkpoints: 7,
                    other_commits: 40,
                    other_rows_written: 3,
                },
            },
            end: Snapshot {
                at_us: 41_000_000,
                counters: SnapshotRow {
                    wal_records: 31_000,
                    wal_fpi: 1_510,
                    wal_bytes: 2_900_000,
                    lsn: 7_820_000,
                    checkpoints: 8,
                    other_commits: 40,
                    other_rows_written: 3,
                },
            },
            statements,
        }
    }

    #[test]
    fn differences_are_divided_by_the_fires() {
        let f = window(Err("not loaded".to_owned())).figures("steady state", 1_000);
        assert_eq!(f.window, "steady state");
        assert_eq!(f.seconds, 40.0);
        assert_eq!(
            (f.records, f.fpi, f.bytes, f.lsn_bytes),
            (30_000, 1_500, 2_800_000, 2_820_000)
        );
        assert_eq!(f.records_per_fire, Some(30.0));
        assert_eq!(f.fpi_per_fire, Some(1.5));
        assert_eq!(f.bytes_per_fire, Some(2_800.0));
        assert_eq!(f.lsn_bytes_per_fire, Some(2_820.0));
        assert_eq!(f.checkpoints, 1);
        assert_eq!(
            (f.other_databases_commits, f.other_databases_rows_written),
            (0, 0)
        );
        assert_eq!(f.from, "1970-01-01T00:00:01+00:00");
        assert!(!f.statements.available);
        assert_eq!(f.statements.why_not.as_deref(), Some("not loaded"));
    }

    #[test]
    fn no_fire_gives_no_ratio() {
        let f = window(Err(String::new())).figures("burst", 0);
        assert_eq!(f.records, 30_000);
        assert_eq!(f.records_per_fire, None);
        assert_eq!(f.bytes_per_fire, None);
        assert_eq!(f.fpi_per_fire, None);
        assert_eq!(f.lsn_bytes_per_fire, None);
    }

    #[test]
    fn statements_are_ranked_by_time_and_by_wal() {
        let mut rows: Vec<StatementRow> = (0..10)
            .map(|i| statement(&format!("q{i}"), f64::from(i), 100 * (10 - i64::from(i))))
            .collect();
        rows.push(statement("tie-b", 9.0, 0));
        rows.push(statement("tie-a", 9.0, 0));
        let f = window(Ok(rows)).figures("burst", 1);
        assert!(f.statements.available);
        assert_eq!(f.statements.why_not, None);
        let queries = |rows: &[StatementRow]| -> Vec<String> {
            rows.iter().map(|r| r.query.clone()).collect()
        };
        assert_eq!(
            queries(&f.statements.by_time),
            ["q9", "tie-a", "tie-b", "q8", "q7", "q6", "q5", "q4"]
        );
        assert_eq!(
            queries(&f.statements.by_wal_bytes),
            ["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7"]
        );
    }

    #[test]
    fn reports_name_the_figures_per_fire_and_say_what_is_cluster_wide() {
        let report = |figures: WalFigures| crate::report::Report {
            postgres: Some(crate::report::PostgresFigures {
                wal: Some(figures),
                ..Default::default()
            }),
            ..Default::default()
        };
        let quiet = report(window(Err("not preloaded".to_owned())).figures("burst", 1_000));
        let json = serde_json::to_value(&quiet).unwrap();
        let wal = &json["postgres"]["wal"];
        assert_eq!(wal["records_per_fire"], 30.0);
        assert_eq!(wal["bytes_per_fire"], 2_800.0);
        assert_eq!(wal["fpi_per_fire"], 1.5);
        assert_eq!(wal["lsn_bytes_per_fire"], 2_820.0);
        assert_eq!(wal["statements"]["available"], false);
        let text = quiet.render();
        assert!(
            text.contains(
                "per fire: 30.0 WAL records, 2800 bytes (LSN: 2820 bytes), 1.50 full-page images"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "pg_stat_wal is cluster-wide: the bench database was the only one under load"
            ),
            "{text}"
        );
        let unavailable: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("pg_stat_statements"))
            .collect();
        assert_eq!(
            unavailable,
            ["  pg_stat_statements: not available (not preloaded)"]
        );

        let mut busy = window(Ok(vec![statement("INSERT INTO runs", 12.5, 3 << 20)]));
        busy.end.counters.other_commits += 5;
        busy.end.counters.other_rows_written += 9;
        let text = report(busy.figures("steady state", 0)).render();
        assert!(
            text.contains("PostgreSQL WAL over the steady state ("),
            "{text}"
        );
        assert!(
            text.contains("per fire: - WAL records, - bytes (LSN: - bytes), - full-page images"),
            "{text}"
        );
        assert!(
            text.contains("the other databases committed 5 transactions and wrote 9 rows"),
            "{text}"
        );
        assert!(text.contains("top by time"), "{text}");
        assert!(text.contains("top by WAL bytes"), "{text}");
        assert_eq!(text.matches("3.0 MiB").count(), 2, "{text}");
        assert_eq!(text.matches("INSERT INTO runs").count(), 2, "{text}");
        assert!(!text.contains("evicted"), "{text}");

        let mut crowded = window(Ok(vec![statement("INSERT INTO runs", 12.5, 3 << 20)]));
        if let Ok(read) = &mut crowded.statements {
            read.evictions = 4;
        }
        let f = crowded.figures("burst", 1);
        assert_eq!(f.statements.evictions, 4);
        let text = report(f).render();
        assert!(
            text.contains("pg_stat_statements evicted entries 4 times in the window"),
            "{text}"
        );
    }

    #[test]
    fn a_loaded_pg_stat_statements_that_records_nothing_says_why() {
        assert_eq!(not_tracking("top", "auto"), None);
        assert_eq!(not_tracking("all", "on"), None);
        assert_eq!(
            not_tracking("none", "auto").as_deref(),
            Some("pg_stat_statements.track is 'none'")
        );
        assert!(not_tracking("top", "off")
            .unwrap()
            .contains("compute_query_id"));
    }

    /// On a real server: rows written in a window by another connection show in its WAL, in
    /// `pg_stat_wal` as in the LSN, as soon as that connection has flushed its statistics (it
    /// would otherwise hold them for 10 s: it flushed less than a second before); and
    /// `pg_stat_statements` is reported as the server has it: the insert on top by WAL when
    /// preloaded, one reason when not.
    #[tokio::test]
    async fn a_window_sees_the_wal_of_rows_written_in_it() {
        crate::database::on_scratch_postgres("the WAL window test", |db, url| async move {
            db.execute_unprepared("CREATE TABLE wal_probe (x int)")
                .await
                .unwrap();
            let writer = crate::database::connect(&url, 1).await.unwrap();
            writer.execute_unprepared("SELECT 1").await.unwrap();
            let open = OpenWindow::open(&db).await.unwrap();
            writer
                .execute_unprepared("INSERT INTO wal_probe SELECT generate_series(1, 10000)")
                .await
                .unwrap();
            flush_statistics(&writer).await.unwrap();
            let closed = open.close(&db).await.unwrap();
            writer.close().await.ok();
            let f = closed.figures("test", 10_000);
            // A heap insert of one int is a record of ~60 bytes.
            assert!(f.records >= 10_000, "{f:?}");
            assert!(f.bytes >= 500_000, "{f:?}");
            assert!(f.lsn_bytes >= 500_000, "{f:?}");
            assert!(f.records_per_fire.unwrap() >= 1.0, "{f:?}");
            assert!(f.seconds > 0.0);
            let libraries = setting(
                &db,
                "SELECT current_setting('shared_preload_libraries') AS value",
            )
            .await
            .unwrap()
            .unwrap();
            let s = &f.statements;
            if !preloads_statements(&libraries) {
                assert!(!s.available, "{s:?}");
                assert!(s.by_time.is_empty() && s.by_wal_bytes.is_empty());
                let why = s.why_not.as_deref().unwrap();
                assert!(why.contains("shared_preload_libraries"), "{s:?}");
            } else if let Some(why) = &s.why_not {
                // Loaded but configured to record nothing: the reason names the setting.
                assert!(!s.available, "{s:?}");
                assert!(
                    why.contains("pg_stat_statements.track") || why.contains("compute_query_id"),
                    "{s:?}"
                );
            } else if s.evictions == 0 {
                let top = &s.by_wal_bytes[..1];
                assert!(top[0].query.starts_with("INSERT INTO wal_probe"), "{s:?}");
                assert!(top[0].wal_records >= 10_000, "{s:?}");
            } else {
                // A full hash (the other tests' databases fill it) may have evicted the insert;
                // the figures then say the ranking may miss statements.
                assert!(s.available && s.evictions > 0, "{s:?}");
            }
            db.close().await.ok();
        })
        .await;
    }
}

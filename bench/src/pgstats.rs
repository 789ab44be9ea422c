//! What PostgreSQL can tell about a run without changing its configuration: table and database
//! counters (`pg_stat_user_tables`, `pg_stat_database`) before and after a window, a once-a-second
//! sample of what the bench database's active backends are doing (`pg_stat_activity`: a poor
//! man's profiler, since `pg_stat_statements` needs a server restart; [`crate::pgwal`] uses it
//! only where already loaded), and the server's settings that bear on the figures. None of it
//! exists on SQLite (see [`crate::sqlite`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Counters that only grow; the difference between two snapshots is a window's work.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counters(pub BTreeMap<String, i64>);

const TABLE_COUNTERS: &str = "SELECT relname AS name, seq_scan, seq_tup_read, \
     COALESCE(idx_scan, 0) AS idx_scan, COALESCE(idx_tup_fetch, 0) AS idx_tup_fetch, \
     n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
     FROM pg_stat_user_tables WHERE relname IN ('schedules', 'runs', 'attempts', 'shard_leases', 'workers')";

const DATABASE_COUNTERS: &str = "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, \
     tup_inserted, tup_updated, tup_deleted, blks_read, blks_hit, deadlocks, temp_bytes \
     FROM pg_stat_database WHERE datname = current_database()";

#[derive(FromQueryResult)]
struct TableRow {
    name: String,
    seq_scan: i64,
    seq_tup_read: i64,
    idx_scan: i64,
    idx_tup_fetch: i64,
    n_tup_ins: i64,
    n_tup_upd: i64,
    n_tup_hot_upd: i64,
    n_tup_del: i64,
}

#[derive(FromQueryResult)]
struct DatabaseRow {
    xact_commit: i64,
    xact_rollback: i64,
    tup_returned: i64,
    tup_fetched: i64,
    tup_inserted: i64,
    tup_updated: i64,
    tup_deleted: i64,
    blks_read: i64,
    blks_hit: i64,
    deadlocks: i64,
    temp_bytes: i64,
}

pub async fn counters(db: &DatabaseConnection) -> anyhow::Result<Counters> {
    let mut out = BTreeMap::new();
    let tables =
        TableRow::find_by_statement(Statement::from_string(DbBackend::Postgres, TABLE_COUNTERS))
            .all(db)
            .await
            .context("reading pg_stat_user_tables")?;
    for t in tables {
        for (what, value) in [
            ("seq_scan", t.seq_scan),
            ("seq_tup_read", t.seq_tup_read),
            ("idx_scan", t.idx_scan),
            ("idx_tup_fetch", t.idx_tup_fetch),
            ("inserted", t.n_tup_ins),
            ("updated", t.n_tup_upd),
            ("hot_updated", t.n_tup_hot_upd),
            ("deleted", t.n_tup_del),
        ] {
            out.insert(format!("{}.{what}", t.name), value);
        }
    }
    if let Some(d) = DatabaseRow::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        DATABASE_COUNTERS,
    ))
    .one(db)
    .await
    .context("reading pg_stat_database")?
    {
        for (what, value) in [
            ("commits", d.xact_commit),
            ("rollbacks", d.xact_rollback),
            ("rows_returned", d.tup_returned),
            ("rows_fetched", d.tup_fetched),
            ("rows_inserted", d.tup_inserted),
            ("rows_updated", d.tup_updated),
            ("rows_deleted", d.tup_deleted),
            ("blocks_read", d.blks_read),
            ("blocks_hit", d.blks_hit),
            ("deadlocks", d.deadlocks),
            ("temp_bytes", d.temp_bytes),
        ] {
            out.insert(format!("database.{what}"), value);
        }
    }
    Ok(Counters(out))
}

impl Counters {
    /// `self − before`, keeping only what changed.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - before.0.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v != 0)
                .collect(),
        )
    }
}

/// Active backends of the bench database, once a second: what they wait on and which statement
/// they run. The share of samples per statement is where PostgreSQL's time goes.
const ACTIVITY: &str = "SELECT COALESCE(wait_event_type || ':' || wait_event, 'CPU') AS wait, \
     left(regexp_replace(query, '\\s+', ' ', 'g'), 90) AS query \
     FROM pg_stat_activity \
     WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()";

#[derive(FromQueryResult)]
struct ActivityRow {
    wait: String,
    query: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ActivityProfile {
    pub samples: u64,
    /// Mean number of active backends per sample.
    pub mean_active: f64,
    /// `(wait | statement)` with the number of times a backend was seen in it, most first.
    pub top: Vec<(String, u64)>,
}

/// Samples taken, active backends seen over all samples, and sightings per `(wait | statement)`.
type Tally = (u64, u64, HashMap<String, u64>);

pub struct ActivitySampler {
    tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl ActivitySampler {
    pub fn start(db: DatabaseConnection) -> Self {
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let tally = tally.clone();
            let stop = stop.clone();
            async move {
                let mut interval = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = interval.tick() => {}
                    }
                    let statement = Statement::from_string(DbBackend::Postgres, ACTIVITY);
                    let Ok(rows) = ActivityRow::find_by_statement(statement).all(&db).await else {
                        continue;
                    };
                    let mut tally = tally.lock().expect("activity tally poisoned");
                    tally.0 += 1;
                    tally.1 += rows.len() as u64;
                    for row in rows {
                        *tally
                            .2
                            .entry(format!("{} | {}", row.wait, row.query))
                            .or_default() += 1;
                    }
                }
            }
        });
        Self { tally, stop, task }
    }

    /// Stops sampling (all samples so far count; the caller restarts for a new window).
    pub async fn finish(self, top: usize) -> ActivityProfile {
        self.stop.cancel();
        self.task.await.ok();
        let (samples, active, counts) =
            std::mem::take(&mut *self.tally.lock().expect("activity tally poisoned"));
        let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(top);
        ActivityProfile {
            samples,
            mean_active: if samples == 0 {
                0.0
            } else {
                active as f64 / samples as f64
            },
            top: ranked,
        }
    }
}

/// Server settings that change what a run measures: a figure taken with autovacuum off (as this
/// machine's CI configuration has it) or with `pg_stat_statements` loaded says so in its report.
const SERVER_SETTINGS: &str = "SELECT name AS key, setting AS value FROM pg_settings \
     WHERE name IN ('autovacuum', 'fsync', 'synchronous_commit', 'shared_buffers', \
                    'max_wal_size', 'shared_preload_libraries', 'ssl')";

#[derive(FromQueryResult)]
struct SettingRow {
    key: String,
    value: String,
}

pub async fn server_settings(db: &DatabaseConnection) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(
        SettingRow::find_by_statement(Statement::from_string(DbBackend::Postgres, SERVER_SETTINGS))
            .all(db)
            .await
            .context("reading the server's settings")?
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect(),
    )
}

//! The report of a run: one serialisable structure (written as JSON with `--json FILE`) and its
//! rendering as text for stdout.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::accounting::Outcome;
use crate::api_client::CreateReport;
use crate::cli::DatabaseMode;
use crate::history::Stages;
use crate::logs::LogTally;
use crate::pgstats::{ActivityProfile, Counters};
use crate::pgwal::WalFigures;
use crate::sampler::{GroupSummary, MachineSummary, MachineTick};
use crate::stats::Summary;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    /// What hookbeat ran on: `postgres` (API and workers apart) or `sqlite` (one `serve`).
    pub database: DatabaseMode,
    pub started_at: String,
    pub environment: Environment,
    pub settings: serde_json::Value,
    pub creation: Option<CreateReport>,
    pub seeding: Option<Seeding>,
    pub delivery: Option<DeliveryFigures>,
    pub burst: Option<BurstFigures>,
    pub idle: Option<IdleFigures>,
    pub fires: Option<Outcome>,
    pub processes: Vec<GroupSummary>,
    pub machine_cpu: Option<MachineSummary>,
    pub postgres: Option<PostgresFigures>,
    pub sqlite: Option<SqliteFigures>,
    /// Figures this database mode cannot give, each with why (none on PostgreSQL).
    pub not_applicable: Vec<String>,
    pub logs: BTreeMap<String, LogTally>,
    pub receiver: ReceiverFigures,
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
    pub machine_series: Vec<MachineTick>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Environment {
    pub cores: usize,
    pub memory_total_mib: u64,
    /// 1, 5 and 15-minute load averages when the run began.
    pub load_at_start: Vec<f64>,
    pub hookbeat_bin: String,
    pub hookbeat_bin_modified: String,
    pub git: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Seeding {
    pub rows: usize,
    pub seconds: f64,
    pub per_second: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeliveryFigures {
    /// From the end of schedule creation to the stop.
    pub run_seconds: f64,
    /// Delivered fires (first deliveries) per second over the whole run, creation included.
    pub overall_per_s: f64,
    /// The steady-state window, in seconds after the end of creation.
    pub steady_from_s: f64,
    pub steady_to_s: f64,
    /// First deliveries that arrived in the steady window, per second.
    pub steady_per_s: f64,
    /// Fires the schedules ask for per second once all of them run (Σ 1/period).
    pub nominal_per_s: f64,
    /// Slowest, median and busiest second of the steady window.
    pub steady_second_min: u64,
    pub steady_second_median: u64,
    pub steady_second_max: u64,
    pub lag_all: Option<Summary>,
    pub lag_steady: Option<Summary>,
    /// Seconds the bench waited after the stop for fires up to the cut-off to arrive.
    pub drain_seconds: f64,
    /// Fires (up to the cut-off) that arrived during that drain.
    pub arrived_during_drain: u64,
    /// First deliveries per second, from the end of creation.
    pub per_second: Vec<u64>,
    /// The longest fire lag (ms) of the fires scheduled in each second, from the end of
    /// creation: where in the run the lag came from.
    pub max_lag_ms_per_second: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BurstFigures {
    pub boundary: String,
    pub schedules: usize,
    /// Schedules whose first fire is the boundary (the others missed it: created too late).
    pub due_at_boundary: usize,
    pub delivered: u64,
    /// First-delivery arrival times after the boundary, ms: first, p50, p90, p99, last.
    pub first_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub last_ms: f64,
    /// Fires delivered per second between the first and the last arrival.
    pub per_second: f64,
    /// First deliveries per second, from the boundary.
    pub timeline: Vec<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct IdleFigures {
    pub schedules: usize,
    /// Spawn → `worker started` in the worker's log.
    pub startup_ms: f64,
    /// Spawn → all shards leased to the worker.
    pub shards_ms: f64,
    pub rss_at_start_mib: f64,
    pub rss_after_mib: f64,
    pub peak_rss_mib: f64,
    pub observed_s: f64,
    pub worker_cpu_pct: f64,
    pub postgres_cpu_pct: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PostgresFigures {
    /// Counter deltas over the measurement window.
    pub counters: Counters,
    pub activity: ActivityProfile,
    pub stages: Option<Stages>,
    pub run_states: BTreeMap<String, i64>,
    /// The server's settings that bear on the figures (autovacuum above all).
    pub server: BTreeMap<String, String>,
    /// WAL over the scenario's window and per fire delivered in it (burst and sustained).
    pub wal: Option<WalFigures>,
}

/// The embedded database at the end of the measurement window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SqliteFigures {
    pub file: String,
    pub version: String,
    /// Taken while `hookbeat serve` still ran (see [`crate::sqlite::Sizes`]).
    pub database_bytes: u64,
    pub wal_bytes: u64,
    pub stages: Option<Stages>,
    pub run_states: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiverFigures {
    pub requests: usize,
    pub connections: u64,
    pub malformed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".to_owned(), |s| format!("{:.0} ms", s * 1000.0))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Where a fire's time went, and how the runs ended: the same lines on either database.
fn render_history(out: &mut String, stages: &Option<Stages>, run_states: &BTreeMap<String, i64>) {
    if let Some(s) = stages {
        let _ = writeln!(
            out,
            "where a fire's time goes ({} runs, p50 / p99 / max): materialise {} / {} / {}; \
             wait for claim {} / {} / {}; HTTP {} / {} / {}",
            s.runs,
            ms(s.materialise_p50),
            ms(s.materialise_p99),
            ms(s.materialise_max),
            ms(s.claim_p50),
            ms(s.claim_p99),
            ms(s.claim_max),
            ms(s.http_p50),
            ms(s.http_p99),
            ms(s.http_max)
        );
    }
    let _ = writeln!(out, "runs and attempts: {run_states:?}");
}

fn summary(label: &str, s: &Option<Summary>) -> String {
    match s {
        Some(s) => format!(
            "{label}: p50 {:.0} ms, p95 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n = {})",
            s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms, s.count
        ),
        None => format!("{label}: no deliveries"),
    }
}

impl Report {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let e = &self.environment;
        let _ = writeln!(out, "== hookbeat-bench {} ==", self.scenario);
        let _ = writeln!(
            out,
            "started {} on {} cores, {} MiB; load at start {:?}; hookbeat {} (built {}, git {})",
            self.started_at,
            e.cores,
            e.memory_total_mib,
            e.load_at_start,
            e.hookbeat_bin,
            e.hookbeat_bin_modified,
            e.git
        );
        let _ = writeln!(
            out,
            "database: {}",
            match self.database {
                DatabaseMode::Postgres => "postgres (hookbeat api + hookbeat worker processes)",
                DatabaseMode::Sqlite =>
                    "sqlite (one hookbeat serve: API and worker in one process)",
            }
        );
        let _ = writeln!(out, "settings: {}", self.settings);
        if let Some(c) = &self.creation {
            let _ = writeln!(
                out,
                "creation via API: {}/{} in {:.1} s = {:.0}/s at concurrency {}{}{}",
                c.created,
                c.requested,
                c.seconds,
                c.per_second,
                c.concurrency,
                c.latency
                    .map(|l| format!("; latency p50 {:.1} ms, p99 {:.1} ms", l.p50_ms, l.p99_ms))
                    .unwrap_or_default(),
                c.first_error
                    .as_ref()
                    .map(|e| format!("; {} failed, first: {e}", c.failed))
                    .unwrap_or_default()
            );
        }
        if let Some(s) = &self.seeding {
            let _ = writeln!(
                out,
                "seeding via SQL: {} rows in {:.1} s = {:.0}/s",
                s.rows, s.seconds, s.per_second
            );
        }
        if let Some(d) = &self.delivery {
            let _ = writeln!(
                out,
                "throughput: overall {:.0} fires/s; steady state ({:.0}–{:.0} s) {:.0} fires/s \
                 (nominal {:.0}/s; per second min {} / median {} / max {})",
                d.overall_per_s,
                d.steady_from_s,
                d.steady_to_s,
                d.steady_per_s,
                d.nominal_per_s,
                d.steady_second_min,
                d.steady_second_median,
                d.steady_second_max
            );
            let _ = writeln!(out, "{}", summary("fire lag, all", &d.lag_all));
            let _ = writeln!(out, "{}", summary("fire lag, steady state", &d.lag_steady));
            let _ = writeln!(
                out,
                "drain: waited {:.1} s after the stop; {} fires arrived then",
                d.drain_seconds, d.arrived_during_drain
            );
        }
        if let Some(b) = &self.burst {
            let _ = writeln!(
                out,
                "burst at {}: {} schedules, {} due at the boundary, {} delivered; after the boundary: \
                 first {:.0} ms, p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, last {:.0} ms ({:.0} fires/s)",
                b.boundary,
                b.schedules,
                b.due_at_boundary,
                b.delivered,
                b.first_ms,
                b.p50_ms,
                b.p90_ms,
                b.p99_ms,
                b.last_ms,
                b.per_second
            );
        }
        if let Some(i) = &self.idle {
            let _ = writeln!(
                out,
                "idle worker with {} schedules: start-up {:.0} ms (shards owned after {:.0} ms); RSS {:.1} MiB \
                 after start-up, {:.1} MiB after {:.0} s, peak {:.1} MiB; CPU worker {:.1} %, PostgreSQL backends {:.1} %",
                i.schedules,
                i.startup_ms,
                i.shards_ms,
                i.rss_at_start_mib,
                i.rss_after_mib,
                i.observed_s,
                i.peak_rss_mib,
                i.worker_cpu_pct,
                i.postgres_cpu_pct
            );
        }
        if let Some(f) = &self.fires {
            let _ = writeln!(
                out,
                "fires: expected {}, delivered {}, lost {}; duplicates {} fires (+{} requests; same webhook-id {}, \
                 distinct webhook-ids {}); retries {}; beyond cut-off {}, off-grid {}, unknown {}",
                f.expected,
                f.delivered,
                f.lost,
                f.duplicate_fires,
                f.extra_deliveries,
                f.duplicates_same_webhook_id,
                f.duplicates_distinct_webhook_ids,
                f.retry_attempts,
                f.beyond_cutoff,
                f.off_grid,
                f.unknown_schedule
            );
            for (id, at) in &f.lost_examples {
                let _ = writeln!(
                    out,
                    "  lost: schedule {id} at {}",
                    crate::clock::to_datetime(*at).to_rfc3339()
                );
            }
        }
        let _ = writeln!(
            out,
            "receiver: {} requests over {} connections ({} malformed)",
            self.receiver.requests, self.receiver.connections, self.receiver.malformed
        );
        let _ = writeln!(
            out,
            "processes (CPU over the measurement window, memory peaks over the run):"
        );
        let _ = writeln!(
            out,
            "  {:<20} {:>9} {:>9} {:>13} {:>9} {:>6}",
            "process", "avg CPU", "peak CPU", "peak RSS", "peak anon", "procs"
        );
        for p in &self.processes {
            let _ = writeln!(
                out,
                "  {:<20} {:>8.1}% {:>8.1}% {:>9.1} MiB {:>5.1} MiB {:>6}",
                p.name,
                p.avg_cpu_pct,
                p.peak_cpu_pct,
                p.peak_rss_mib,
                p.peak_anon_mib,
                p.max_processes
            );
        }
        if let Some(m) = &self.machine_cpu {
            let _ = writeln!(
                out,
                "  machine: {:.0} % busy on average, {:.0} % at peak (100 % = all cores); max load {:.2}; \
                 processes outside the run used {:.0} % of one core",
                m.avg_busy_pct, m.peak_busy_pct, m.max_load1, m.outside_cpu_pct
            );
        }
        if let Some(lite) = &self.sqlite {
            render_history(&mut out, &lite.stages, &lite.run_states);
            let _ = writeln!(
                out,
                "SQLite {}: {} is {:.1} MiB, its WAL {:.1} MiB, at the end of the window",
                lite.version,
                lite.file,
                mib(lite.database_bytes),
                mib(lite.wal_bytes)
            );
        }
        for what in &self.not_applicable {
            let _ = writeln!(out, "not applicable on this database: {what}");
        }
        if let Some(pg) = &self.postgres {
            render_history(&mut out, &pg.stages, &pg.run_states);
            let _ = writeln!(out, "PostgreSQL server settings: {:?}", pg.server);
            let _ = writeln!(
                out,
                "PostgreSQL active backends: {:.1} on average over {} samples; most seen:",
                pg.activity.mean_active, pg.activity.samples
            );
            for (what, n) in &pg.activity.top {
                let _ = writeln!(out, "  {n:>5}  {what}");
            }
            let _ = writeln!(
                out,
                "PostgreSQL counters over the window: {:?}",
                pg.counters.0
            );
            if let Some(wal) = &pg.wal {
                wal.render(&mut out);
            }
        }
        for (name, tally) in &self.logs {
            if tally.warnings + tally.errors > 0 {
                let _ = writeln!(
                    out,
                    "log {name}: {} lines, {} warnings, {} errors: {:?}",
                    tally.lines, tally.warnings, tally.errors, tally.messages
                );
            }
        }
        if !self.goals.is_empty() {
            let _ = writeln!(out, "goals:");
            for g in &self.goals {
                let _ = writeln!(
                    out,
                    "  [{}] {} — measured {}",
                    if g.met { "met" } else { "MISSED" },
                    g.goal,
                    g.measured
                );
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        out
    }
}

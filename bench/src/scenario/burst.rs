//! `burst`: N schedules that all fire at the same minute boundary T; how long after T the last
//! fire arrives.
//!
//! With `--seed api` a probe of disabled schedules measures the API's create rate first, T is
//! picked far enough ahead for the rest, and every schedule is created with `start_at: T`, so
//! its first fire is T however early it was created. With `--seed sql` one disabled template is
//! created through the API and copied N times with `next_run_at = T` (see [`crate::seed`]); on
//! SQLite one more API write then wakes `hookbeat serve`'s worker to the rows it was not told of.
//! Expected fires: each schedule's first fire if it is T (cut-off T); fires of T + 60 s that a
//! slow run meets are not judged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use serde_json::json;
use uuid::Uuid;

use crate::accounting::{self, Grid};
use crate::cli::{BurstArgs, BurstSpec, Common, DatabaseMode, SeedMode};
use crate::clock::{next_minute_after, now_us, to_datetime};
use crate::monitor::Monitor;
use crate::pgwal::{self, OpenWindow};
use crate::progress;
use crate::report::{BurstFigures, Report, Seeding};
use crate::seed::{self, Seed};
use crate::stack::Stack;
use crate::stats;

use super::{check_workers_alive, goal, probe_create_rate, record_stages, record_wal, Measurement};

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
/// Time kept between the end of seeding and T, for the workers to notice the new rows (they
/// look at least once a second) and for any straggling request.
const MARGIN: i64 = 10 * SECOND;
/// Assumed SQL seeding speed when picking T, rows/s; measured here at ~25,000/s, halved to be safe.
const SQL_ROWS_PER_SECOND: i64 = 12_000;

fn spec(kind: BurstSpec) -> serde_json::Value {
    match kind {
        BurstSpec::Crontab => json!({"kind": "crontab", "expression": "* * * * *"}),
        BurstSpec::Interval => json!({"kind": "interval", "every_seconds": 60}),
    }
}

pub async fn run(
    stack: &mut Stack,
    common: &Common,
    args: &BurstArgs,
    grace: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.settings = json!({
        "schedules": args.schedules, "seed": format!("{:?}", args.seed).to_lowercase(),
        "spec": format!("{:?}", args.spec).to_lowercase(), "timeout_s": args.timeout,
        "workers": common.workers(), "tenants": common.tenants, "concurrency": common.concurrency,
        "receiver_ports": common.receiver_ports,
    });
    stack.start_workers(usize::from(common.workers())).await?;
    let (boundary, grids) = match args.seed {
        SeedMode::Sql => seed_sql(stack, args, report).await?,
        SeedMode::Api => seed_api(stack, common, args, report).await?,
    };
    let due = grids.values().filter(|g| g.first_us == boundary).count();
    anyhow::ensure!(due > 0, "no schedule is due at the boundary");
    if due < grids.len() {
        report.notes.push(format!(
            "{} schedules were created after the boundary and fire a minute later; they are not judged",
            grids.len() - due
        ));
    }

    // Wait for T, with the measurement already open so the window holds the run-up.
    let measurement = Measurement::start(stack).await?;
    let wal = match stack.mode {
        DatabaseMode::Postgres => Some(OpenWindow::open(&stack.db).await),
        DatabaseMode::Sqlite => None,
    };
    let mut monitor = Monitor::new(stack.receiver.recorded.clone());
    monitor.set_cutoff(boundary);
    let wait = progress::bar(((boundary - now_us()).max(0) / SECOND) as u64, "to T (s)");
    let waited_from = now_us();
    while now_us() < boundary {
        tokio::time::sleep(Duration::from_millis(200)).await;
        wait.set_position(((now_us() - waited_from) / SECOND) as u64);
        check_workers_alive(stack)?;
    }
    wait.finish_and_clear();
    progress::note(format!(
        "boundary {} passed",
        to_datetime(boundary).to_rfc3339()
    ));

    let bar = progress::bar(due as u64, "fires");
    let give_up = boundary + args.timeout as i64 * SECOND;
    while (monitor.fires_until_cutoff() as usize) < due && now_us() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let fresh = monitor.poll();
        bar.set_position(monitor.fires_until_cutoff());
        bar.set_message(format!(
            "{} ms after T, max lag {} ms",
            (now_us() - boundary) / 1000,
            fresh.max_lag_ms
        ));
        check_workers_alive(stack)?;
    }
    bar.finish_and_clear();
    // A moment more, so a duplicate that follows the last first delivery is seen too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let end_us = now_us();
    measurement.finish(stack, end_us, grace, report).await?;
    // Closed with the other counters, once the workers have stopped and flushed their statistics.
    if let Some(wal) = wal {
        let closed = match wal {
            Ok(open) => open.close(&stack.db).await,
            Err(error) => Err(error),
        };
        record_wal(stack, closed, "burst", report);
    }

    let outcome = accounting::account(&grids, &stack.receiver.recorded.all(), boundary);
    let mut after: Vec<i64> = outcome
        .fires
        .iter()
        .map(|f| f.first_arrival_us - boundary)
        .collect();
    after.sort_unstable();
    let at = |q: f64| stats::percentile(&after, q).unwrap_or_default() as f64 / 1000.0;
    let first = after.first().copied().unwrap_or_default();
    let last = after.last().copied().unwrap_or_default();
    let figures = BurstFigures {
        boundary: to_datetime(boundary).to_rfc3339_opts(SecondsFormat::Secs, true),
        schedules: grids.len(),
        due_at_boundary: due,
        delivered: outcome.delivered,
        first_ms: first as f64 / 1000.0,
        p50_ms: at(0.5),
        p90_ms: at(0.9),
        p99_ms: at(0.99),
        last_ms: last as f64 / 1000.0,
        per_second: outcome.delivered as f64 / ((last - first).max(1) as f64 / 1e6),
        timeline: stats::per_second(after.iter().copied(), 0, end_us - boundary),
    };
    record_stages(stack, boundary, boundary, report).await?;
    report.goals.push(goal(
        "every schedule due in the same minute delivered within 30 s of it",
        format!(
            "{} of {} delivered, last {:.1} s after the boundary",
            outcome.delivered,
            due,
            figures.last_ms / 1000.0
        ),
        outcome.lost == 0 && figures.last_ms <= 30_000.0,
    ));
    report.goals.push(goal(
        "no duplicate fires",
        format!("{} duplicated", outcome.duplicate_fires),
        outcome.duplicate_fires == 0,
    ));
    report.burst = Some(figures);
    report.fires = Some(outcome);
    Ok(())
}

/// One disabled template per receiver port through the API, then N copies (shared among the
/// templates) due at T.
async fn seed_sql(
    stack: &mut Stack,
    args: &BurstArgs,
    report: &mut Report,
) -> anyhow::Result<(i64, HashMap<Uuid, Grid>)> {
    let mut templates = Vec::new();
    for port in 0..stack.receiver.addresses.len() {
        let body = json!({"name": format!("burst-template-{port}"), "schedule": spec(args.spec),
                          "target": {"url": stack.receiver.url(port)}, "enabled": false});
        templates.push(stack.api_client.create(stack.token_for(0), &body).await?.id);
    }
    let estimate = args.schedules as i64 * SECOND / SQL_ROWS_PER_SECOND;
    let boundary = next_minute_after(now_us() + estimate + MARGIN);
    progress::note(format!(
        "seeding {} schedules due at {}",
        args.schedules,
        to_datetime(boundary).to_rfc3339()
    ));
    let bar = progress::bar(args.schedules as u64, "seed");
    let started = Instant::now();
    // On a connection of its own, whose statistics are flushed at the end: the WAL window opens
    // next, and the seeding's WAL must not be added to `pg_stat_wal` inside it.
    let seeder = crate::database::connect(&stack.database_url, 1).await?;
    let tenants = stack.tenants();
    let mut ids = Vec::with_capacity(args.schedules);
    for (k, template) in templates.iter().enumerate() {
        // Template k gets an equal share; the first ones take the remainder.
        let count =
            args.schedules / templates.len() + usize::from(k < args.schedules % templates.len());
        let done = ids.len();
        ids.extend(
            seed::seed(
                &seeder,
                &Seed {
                    template: *template,
                    count,
                    tenants: &tenants,
                    next_run_at: to_datetime(boundary),
                    name_prefix: &format!("burst-{k}-"),
                },
                |n| bar.set_position((done + n) as u64),
            )
            .await?,
        );
    }
    seed::analyze(&seeder).await?;
    if stack.mode == DatabaseMode::Postgres {
        pgwal::flush_statistics(&seeder).await?;
    }
    seeder.close().await.ok();
    if stack.mode == DatabaseMode::Sqlite {
        // The rows went into the file behind `hookbeat serve`'s back. Its worker hears of changes
        // from its own API only (PostgreSQL workers poll at least every 5 s), else at its idle
        // limit of 30 s, which may be after T. One write through the API wakes it, as any
        // create does: a disabled schedule that never fires.
        let body = json!({"name": "burst-seeded", "schedule": spec(args.spec),
                          "target": {"url": stack.receiver.url(0)}, "enabled": false});
        stack.api_client.create(stack.token_for(0), &body).await?;
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    report.seeding = Some(Seeding {
        rows: ids.len(),
        seconds,
        per_second: ids.len() as f64 / seconds,
    });
    anyhow::ensure!(
        now_us() < boundary - 2 * SECOND,
        "seeding ended too close to the boundary {}; the run would not be fair",
        to_datetime(boundary).to_rfc3339()
    );
    let grids = ids
        .into_iter()
        .map(|id| {
            (
                id,
                Grid {
                    first_us: boundary,
                    period_us: MINUTE,
                },
            )
        })
        .collect();
    Ok((boundary, grids))
}

/// A probe measures the create rate, then every schedule is created with `start_at: T`.
async fn seed_api(
    stack: &mut Stack,
    common: &Common,
    args: &BurstArgs,
    report: &mut Report,
) -> anyhow::Result<(i64, HashMap<Uuid, Grid>)> {
    let concurrency = usize::from(common.concurrency);
    let probe_size = (args.schedules / 20).clamp(100, 2_000);
    let per_second = probe_create_rate(
        stack,
        concurrency,
        probe_size,
        |i| json!({"schedule": spec(args.spec), "target": {"url": stack.receiver.url(i)}}),
    )
    .await?;
    // 1.3 × the probe's pace for the rest, plus the margin.
    let needed = (args.schedules as f64 / per_second * 1.3 * 1e6) as i64;
    let boundary = next_minute_after(now_us() + needed + MARGIN);
    let start_at = to_datetime(boundary).to_rfc3339_opts(SecondsFormat::Secs, true);
    progress::note(format!(
        "API creates {:.0}/s (probe of {probe_size}); creating {} schedules that first fire at {start_at}",
        per_second, args.schedules
    ));
    let jobs: Vec<(String, serde_json::Value)> = (0..args.schedules)
        .map(|i| {
            let body = json!({
                "name": format!("burst-{i}"), "schedule": spec(args.spec),
                "target": {"url": stack.receiver.url(i)}, "start_at": start_at,
            });
            (stack.token_for(i).to_owned(), body)
        })
        .collect();
    let bar = progress::bar(args.schedules as u64, "create");
    let (created, creation) = stack
        .api_client
        .create_many(jobs, concurrency, |n| bar.set_position(n as u64))
        .await;
    bar.finish_and_clear();
    progress::note(format!(
        "created {} in {:.1} s ({:.0}/s)",
        creation.created, creation.seconds, creation.per_second
    ));
    report.creation = Some(creation);
    let grids = created
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.id,
                Grid {
                    first_us: c.next_run_at?.timestamp_micros(),
                    period_us: MINUTE,
                },
            ))
        })
        .collect();
    Ok((boundary, grids))
}

//! `idle-memory`: N stored schedules (default 1,000,000), all enabled and due far in the future;
//! one worker is started against them. Measures its start-up time (spawn → `worker started`, and
//! → all shards leased), its resident memory right after start-up and after `--observe` seconds,
//! and what it and PostgreSQL spend while nothing is due.
//!
//! Rows are copies of an API-created template (daily interval schedules, next fire at the first
//! UTC midnight at least twelve hours away), then `VACUUM ANALYZE`d as a long-lived table would be.

use std::time::{Duration, Instant};

use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::cli::IdleArgs;
use crate::clock::{now_us, to_datetime};
use crate::procfs;
use crate::progress;
use crate::report::{IdleFigures, Report, Seeding};
use crate::seed::{self, Seed};
use crate::stack::Stack;

use super::{check_workers_alive, goal, Measurement};

const DAY: i64 = 86_400_000_000;

/// The first UTC midnight at least twelve hours after `us`.
pub fn far_midnight(us: i64) -> i64 {
    ((us + DAY / 2).div_euclid(DAY) + 1) * DAY
}

pub async fn run(
    stack: &mut Stack,
    args: &IdleArgs,
    grace: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.settings = json!({"schedules": args.schedules, "observe_s": args.observe, "workers": 1});
    let url = stack.receiver.url(0);
    let template = stack
        .api_client
        .create(
            stack.token_for(0),
            &json!({"name": "idle-template", "schedule": {"kind": "interval", "every_seconds": 86_400},
                    "target": {"url": url}, "enabled": false}),
        )
        .await?;
    let next_run_at = far_midnight(now_us());
    let bar = progress::bar(args.schedules as u64, "seed");
    let started = Instant::now();
    let tenants = stack.tenants();
    let ids = seed::seed(
        &stack.db,
        &Seed {
            template: template.id,
            count: args.schedules,
            tenants: &tenants,
            next_run_at: to_datetime(next_run_at),
            name_prefix: "idle-",
        },
        |n| bar.set_position(n as u64),
    )
    .await?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    report.seeding = Some(Seeding {
        rows: ids.len(),
        seconds,
        per_second: ids.len() as f64 / seconds,
    });
    progress::note(format!(
        "seeded {} schedules in {seconds:.1} s; vacuuming",
        ids.len()
    ));
    stack
        .db
        .execute_unprepared("VACUUM ANALYZE schedules")
        .await?;

    let measurement = Measurement::start(stack).await?;
    let spawn = Instant::now();
    let startup = stack.start_workers(1).await?;
    let shards_ms = spawn.elapsed().as_secs_f64() * 1000.0;
    let worker = stack.workers[0].clone();
    let at_start = procfs::sample(worker.pid).unwrap_or_default();
    let observed_from = now_us();

    let bar = progress::bar(args.observe, "observe");
    let mut peak_kib = at_start.rss_kib;
    let observe_start = Instant::now();
    let until = observe_start + Duration::from_secs(args.observe);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(sample) = procfs::sample(worker.pid) {
            peak_kib = peak_kib.max(sample.rss_kib);
        }
        bar.set_position(observe_start.elapsed().as_secs());
        bar.set_message(format!("RSS {:.1} MiB", peak_kib as f64 / 1024.0));
        check_workers_alive(stack)?;
    }
    bar.finish_and_clear();
    let after = procfs::sample(worker.pid).unwrap_or_default();
    let end_us = now_us();
    measurement.finish(stack, end_us, grace, report).await?;

    // CPU over the observation only, not the seeding before it.
    let (groups, _) = stack.sampler.summarise(observed_from, end_us);
    let cpu = |name: &str| {
        groups
            .iter()
            .find(|g| g.name == name)
            .map_or(0.0, |g| g.avg_cpu_pct)
    };
    let mib = |kib: u64| kib as f64 / 1024.0;
    let figures = IdleFigures {
        schedules: ids.len(),
        startup_ms: startup[0].as_secs_f64() * 1000.0,
        shards_ms,
        rss_at_start_mib: mib(at_start.rss_kib),
        rss_after_mib: mib(after.rss_kib),
        peak_rss_mib: mib(peak_kib),
        observed_s: (end_us - observed_from) as f64 / 1e6,
        worker_cpu_pct: cpu(&worker.name),
        postgres_cpu_pct: cpu("postgres backends"),
    };
    report.goals.push(goal(
        "worker RSS < 100 MB with 1,000,000 schedules stored",
        format!(
            "{:.1} MiB peak with {} schedules",
            figures.peak_rss_mib, figures.schedules
        ),
        figures.peak_rss_mib * 1.048_576 < 100.0 && figures.schedules >= 1_000_000,
    ));
    report.goals.push(goal(
        "start-up does not load every schedule",
        format!(
            "started in {:.0} ms, {:.1} MiB resident right after start-up with {} schedules stored",
            figures.startup_ms, figures.rss_at_start_mib, figures.schedules
        ),
        figures.rss_at_start_mib * 1.048_576 < 100.0,
    ));
    report.idle = Some(figures);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_midnight_is_at_least_half_a_day_away() {
        // 2026-01-01T00:00:00Z
        let midnight = 1_767_225_600_000_000;
        assert_eq!(far_midnight(midnight), midnight + DAY);
        assert_eq!(far_midnight(midnight + DAY / 2 - 1), midnight + DAY);
        assert_eq!(far_midnight(midnight + DAY / 2), midnight + 2 * DAY);
    }
}

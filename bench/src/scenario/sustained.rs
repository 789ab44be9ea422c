//! `sustained`: N interval schedules, periods spread over a range, created through the API while
//! the workers already run; then D seconds of steady firing.
//!
//! ```text
//! create ──────────┬──────────── run D s ────────────────┬─ drain ─┐
//!                  t0   steady window (t0+max_every+2 … cut-off)  stop       end
//!                                              cut-off = stop − tail
//! ```
//! Expected fires: every grid instant of every schedule from its first `next_run_at` (as the API
//! answered) to the cut-off. After the stop the bench waits (at most `--drain` s) until all of
//! them arrived, so a late fire counts as late rather than lost.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use crate::accounting::{self, Grid};
use crate::cli::{Common, DatabaseMode, Phases, Start, SustainedArgs};
use crate::clock::now_us;
use crate::monitor::Monitor;
use crate::pgwal::TimedWindow;
use crate::progress;
use crate::report::{DeliveryFigures, Report};
use crate::stack::Stack;
use crate::stats;

use super::{check_workers_alive, goal, probe_create_rate, record_stages, record_wal, Measurement};

const SECOND: i64 = 1_000_000;

/// Schedule `i`'s period: the range is walked round-robin, so each period has the same share.
pub fn every(i: usize, min: u32, max: u32) -> u32 {
    min + (i as u32) % (max - min + 1)
}

/// Schedule `i`'s phase in its period, in microseconds after the epoch: 0 when aligned; when
/// spread, the schedules sharing a period (every `max − min + 1`-th) are placed evenly across it.
pub fn phase_us(i: usize, n: usize, min: u32, max: u32, phases: Phases) -> i64 {
    match phases {
        Phases::Aligned => 0,
        Phases::Spread => {
            let periods = (max - min + 1) as usize;
            let class = i % periods;
            let sharing = (n - class).div_ceil(periods).max(1) as i64;
            let period_us = i64::from(every(i, min, max)) * SECOND;
            (i / periods) as i64 * period_us / sharing
        }
    }
}

/// Where the steady window begins: once every schedule has fired at least once since creation
/// ended (or the warm-up asked for has passed), unless that leaves under 10 s before the
/// cut-off, when it is the whole run.
fn steady_start(t0: i64, cutoff_us: i64, args: &SustainedArgs) -> i64 {
    let max_period = i64::from(args.max_every) * SECOND;
    let warmup = args
        .warmup
        .map_or(max_period + 2 * SECOND, |w| w as i64 * SECOND);
    if cutoff_us - (t0 + warmup) < 10 * SECOND {
        t0
    } else {
        t0 + warmup
    }
}

pub async fn run(
    stack: &mut Stack,
    common: &Common,
    args: &SustainedArgs,
    grace: Duration,
    report: &mut Report,
) -> anyhow::Result<()> {
    report.settings = json!({
        "schedules": args.schedules, "min_every": args.min_every, "max_every": args.max_every,
        "duration_s": args.duration, "tail_s": args.tail, "drain_s": args.drain,
        "workers": common.workers(), "tenants": common.tenants, "concurrency": common.concurrency,
        "receiver_ports": common.receiver_ports, "phases": format!("{:?}", args.phases).to_lowercase(),
        "warmup_s": args.warmup, "start": format!("{:?}", args.start).to_lowercase(),
    });
    stack.start_workers(usize::from(common.workers())).await?;
    let measurement = Measurement::start(stack).await?;
    let create_from_us = now_us();
    let start_at = match args.start {
        Start::AtOnce => None,
        Start::AfterCreation => {
            let probe_size = (args.schedules / 20).clamp(100, 2_000);
            let per_second = probe_create_rate(
                stack,
                usize::from(common.concurrency),
                probe_size,
                |i| json!({"schedule": {"kind": "interval", "every_seconds": 60}, "target": {"url": stack.receiver.url(i)}}),
            )
            .await?;
            // 1.3 × the probe's pace for the rest, plus 5 s, on a whole second.
            let needed = (args.schedules as f64 / per_second * 1.3 * 1e6) as i64 + 5 * SECOND;
            let at = (now_us() + needed).div_euclid(SECOND) * SECOND + SECOND;
            let text =
                crate::clock::to_datetime(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            progress::note(format!(
                "API creates {per_second:.0}/s (probe of {probe_size}); the schedules begin at {text}"
            ));
            Some((at, text))
        }
    };

    let jobs: Vec<(String, serde_json::Value)> = (0..args.schedules)
        .map(|i| {
            let phase = phase_us(i, args.schedules, args.min_every, args.max_every, args.phases);
            let anchor = chrono::DateTime::from_timestamp_micros(phase)
                .expect("a phase within a period")
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            let mut body = json!({
                "name": format!("sustained-{i}"),
                "schedule": {"kind": "interval", "every_seconds": every(i, args.min_every, args.max_every), "anchor": anchor},
                "target": {"url": stack.receiver.url(i)},
            });
            if let Some((_, text)) = &start_at {
                body["start_at"] = text.as_str().into();
            }
            (stack.token_for(i).to_owned(), body)
        })
        .collect();
    let bar = progress::bar(args.schedules as u64, "create");
    let (created, creation) = stack
        .api_client
        .create_many(jobs, usize::from(common.concurrency), |n| {
            bar.set_position(n as u64)
        })
        .await;
    bar.finish_and_clear();
    progress::note(format!(
        "created {} schedules in {:.1} s ({:.0}/s)",
        creation.created, creation.seconds, creation.per_second
    ));
    anyhow::ensure!(
        creation.created > 0,
        "no schedule was created: {:?}",
        creation.first_error
    );
    let grids: HashMap<Uuid, Grid> = created
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let c = c.as_ref()?;
            Some((
                c.id,
                Grid {
                    first_us: c.next_run_at?.timestamp_micros(),
                    period_us: i64::from(every(i, args.min_every, args.max_every)) * SECOND,
                },
            ))
        })
        .collect();
    report.creation = Some(creation);

    // The run, from when the schedules begin.
    if let Some((at, _)) = start_at {
        let wait = at - now_us();
        anyhow::ensure!(
            wait > 0,
            "creating the schedules took past their start; raise the margin"
        );
        tokio::time::sleep(Duration::from_micros(wait as u64)).await;
    }
    let t0 = now_us();
    let stop_us = t0 + args.duration as i64 * SECOND;
    let cutoff_us = stop_us - args.tail as i64 * SECOND;
    let steady_from = steady_start(t0, cutoff_us, args);
    // WAL is read at the steady window's edges as the run passes them.
    let wal = (stack.mode == DatabaseMode::Postgres)
        .then(|| TimedWindow::spawn(stack.db.clone(), steady_from, cutoff_us));
    let mut monitor = Monitor::new(stack.receiver.recorded.clone());
    monitor.poll();
    monitor.set_cutoff(cutoff_us);
    let bar = progress::bar(args.duration, "run (s)");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    while now_us() < stop_us {
        tick.tick().await;
        let fresh = monitor.poll();
        bar.set_position(((now_us() - t0) / SECOND).max(0) as u64);
        bar.set_message(format!(
            "{} deliveries/s, max lag {} ms, {} in all",
            fresh.deliveries,
            fresh.max_lag_ms,
            monitor.deliveries()
        ));
        check_workers_alive(stack)?;
    }
    bar.finish_and_clear();

    // The drain: late fires up to the cut-off still count as delivered.
    let expected = grids
        .values()
        .map(|g| g.count_until(cutoff_us))
        .sum::<u64>();
    let before_drain = monitor.fires_until_cutoff();
    let drain_from = now_us();
    let drain_until = drain_from + args.drain as i64 * SECOND;
    while monitor.fires_until_cutoff() < expected && now_us() < drain_until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        monitor.poll();
    }
    let end_us = now_us();
    let arrived_during_drain = monitor.fires_until_cutoff() - before_drain;
    measurement.finish(stack, end_us, grace, report).await?;

    // The accounting.
    let outcome = accounting::account(&grids, &stack.receiver.recorded.all(), cutoff_us);
    let arrivals: Vec<i64> = outcome.fires.iter().map(|f| f.first_arrival_us).collect();
    let steady_seconds = stats::per_second(arrivals.iter().copied(), steady_from, cutoff_us);
    let steady_count: u64 = steady_seconds.iter().sum();
    let (min, median, max) = stats::spread(&steady_seconds).unwrap_or_default();
    let mut all_lags: Vec<i64> = outcome.fires.iter().map(|f| f.lag_us()).collect();
    let mut steady_lags: Vec<i64> = outcome
        .fires
        .iter()
        .filter(|f| f.scheduled_for_us >= steady_from && f.scheduled_for_us <= cutoff_us)
        .map(|f| f.lag_us())
        .collect();
    let figures = DeliveryFigures {
        run_seconds: (stop_us - t0) as f64 / 1e6,
        overall_per_s: outcome.delivered as f64 / ((cutoff_us - create_from_us) as f64 / 1e6),
        steady_from_s: (steady_from - t0) as f64 / 1e6,
        steady_to_s: (cutoff_us - t0) as f64 / 1e6,
        steady_per_s: steady_count as f64 / steady_seconds.len().max(1) as f64,
        nominal_per_s: accounting::nominal_rate(&grids),
        steady_second_min: min,
        steady_second_median: median,
        steady_second_max: max,
        lag_all: stats::summarise(&mut all_lags),
        lag_steady: stats::summarise(&mut steady_lags),
        drain_seconds: (end_us - drain_from) as f64 / 1e6,
        arrived_during_drain,
        per_second: stats::per_second(arrivals.iter().copied(), t0, end_us),
        max_lag_ms_per_second: stats::max_per_second(
            outcome
                .fires
                .iter()
                .map(|f| (f.scheduled_for_us, f.lag_us())),
            t0,
            cutoff_us,
        ),
    };
    record_stages(stack, steady_from, cutoff_us, report).await?;
    if let Some(wal) = wal {
        record_wal(stack, wal.closed().await, "steady state", report);
    }
    let p99 = figures.lag_steady.map_or(f64::INFINITY, |l| l.p99_ms);
    report.goals.push(goal(
        "≥ 5,000 deliveries/s sustained with p99 fire lag < 500 ms",
        format!(
            "{:.0} fires/s (nominal {:.0}/s), p99 {:.0} ms",
            figures.steady_per_s, figures.nominal_per_s, p99
        ),
        figures.steady_per_s >= 5000.0 && p99 < 500.0,
    ));
    report.goals.push(goal(
        "no lost and no duplicate fires",
        format!(
            "{} lost, {} duplicated",
            outcome.lost, outcome.duplicate_fires
        ),
        outcome.lost == 0 && outcome.duplicate_fires == 0,
    ));
    if figures.nominal_per_s < 5000.0 {
        report.notes.push(format!(
            "these schedules ask for only {:.0} fires/s; the 5,000/s goal needs about {} schedules with periods 1–5 s",
            figures.nominal_per_s,
            (5000.0 / (figures.nominal_per_s / grids.len().max(1) as f64)).ceil()
        ));
    }
    report.delivery = Some(figures);
    report.fires = Some(outcome);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_walk_the_range() {
        let periods: Vec<u32> = (0..7).map(|i| every(i, 1, 5)).collect();
        assert_eq!(periods, vec![1, 2, 3, 4, 5, 1, 2]);
        assert_eq!(every(9, 3, 3), 3);
    }

    #[test]
    fn spread_phases_place_each_period_evenly() {
        // 10 schedules over periods 1 and 2: five of each, at fifths of their period.
        let phases: Vec<i64> = (0..10)
            .map(|i| phase_us(i, 10, 1, 2, Phases::Spread))
            .collect();
        assert_eq!(
            phases,
            vec![0, 0, 200_000, 400_000, 400_000, 800_000, 600_000, 1_200_000, 800_000, 1_600_000]
        );
        assert!((0..10).all(|i| phase_us(i, 10, 1, 2, Phases::Aligned) == 0));
    }
}

//! The scenarios, and what they share: the stack options from the command line, the start of a
//! measurement window (PostgreSQL counters, activity sampling) and its close (stop the workers,
//! collect process, database, log and receiver figures), and where each fire's time went.

mod burst;
mod idle;
mod sustained;

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{Cli, DatabaseMode, Scenario};
use crate::clock::{now_us, to_datetime};
use crate::history;
use crate::pgstats::{self, ActivityProfile, ActivitySampler, Counters};
use crate::pgwal::{self, ClosedWindow};
use crate::report::{Goal, PostgresFigures, ReceiverFigures, Report, SqliteFigures};
use crate::sqlite;
use crate::stack::{Stack, StackOptions, Teardown};

pub async fn run(cli: &Cli, teardown: &Teardown) -> anyhow::Result<Report> {
    let common = &cli.common;
    let options = StackOptions {
        hookbeat_bin: common.hookbeat_bin.clone(),
        database: common.database,
        postgres_url: common.postgres_url().to_owned(),
        run_dir: common.run_dir.clone(),
        rust_log: common.rust_log.clone(),
        tenants: usize::from(common.tenants),
        api_concurrency: usize::from(common.concurrency),
        hookbeat_env: common.hookbeat_env.clone(),
        receiver_ports: usize::from(common.receiver_ports),
        pg_settings: common.pg_settings.clone(),
    };
    let mut report = Report {
        scenario: cli.scenario.name().to_owned(),
        database: common.database,
        started_at: chrono::Utc::now().to_rfc3339(),
        environment: crate::environment::describe(&common.hookbeat_bin),
        ..Report::default()
    };
    let mut stack = Stack::up(&options, teardown).await?;
    let grace = Duration::from_secs(common.stop_grace);
    match &cli.scenario {
        Scenario::Sustained(args) => {
            sustained::run(&mut stack, common, args, grace, &mut report).await?
        }
        Scenario::Burst(args) => burst::run(&mut stack, common, args, grace, &mut report).await?,
        Scenario::IdleMemory(args) => idle::run(&mut stack, args, grace, &mut report).await?,
        Scenario::Cleanup | Scenario::ReceiverCheck(_) => {
            anyhow::bail!("{} sets up no stack; main runs it", cli.scenario.name())
        }
    }
    if !common.pg_settings.is_empty() {
        report.settings["pg_settings"] = serde_json::json!(common
            .pg_settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>());
    }
    if !common.hookbeat_env.is_empty() {
        report.settings["hookbeat_env"] = serde_json::json!(common
            .hookbeat_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>());
    }
    stack.close().await;
    Ok(report)
}

/// An open measurement window.
pub struct Measurement {
    pub from_us: i64,
    database: Window,
}

/// What a measurement window keeps of the database while it is open.
enum Window {
    /// The counters at the start, and the activity sampled since.
    Postgres(Counters, ActivitySampler),
    /// The file, whose sizes are read at the close.
    Sqlite(PathBuf),
}

/// What a closing window read of the database before hookbeat stopped.
enum Closing {
    /// The counters at the window's start, and the activity sampled over it.
    Postgres(Counters, ActivityProfile),
    Sqlite(PathBuf, sqlite::Sizes),
}

impl Measurement {
    pub async fn start(stack: &Stack) -> anyhow::Result<Self> {
        let database = match (stack.mode, &stack.sqlite_file) {
            (DatabaseMode::Sqlite, Some(file)) => Window::Sqlite(file.clone()),
            (DatabaseMode::Sqlite, None) => anyhow::bail!("an SQLite stack without its file"),
            (DatabaseMode::Postgres, _) => Window::Postgres(
                pgstats::counters(&stack.db).await?,
                ActivitySampler::start(stack.db.clone()),
            ),
        };
        Ok(Self {
            from_us: now_us(),
            database,
        })
    }

    /// Closes the window at `to_us`: stops the workers (PostgreSQL backends flush their
    /// statistics when they exit, so the counters read afterwards are complete; on SQLite that
    /// stops `hookbeat serve`, so the file's sizes are read first) and fills in the figures
    /// every scenario reports.
    pub async fn finish(
        self,
        stack: &mut Stack,
        to_us: i64,
        grace: Duration,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        // What can only be read while hookbeat runs.
        let before_stop = match self.database {
            Window::Postgres(counters, activity) => {
                Closing::Postgres(counters, activity.finish(12).await)
            }
            Window::Sqlite(file) => {
                let sizes = sqlite::sizes(&file);
                Closing::Sqlite(file, sizes)
            }
        };
        let stop_started = std::time::Instant::now();
        let killed = stack.stop_workers(grace).await;
        if !killed.is_empty() {
            report.notes.push(format!(
                "{} did not stop within {grace:?} of SIGTERM and were killed",
                killed.join(", ")
            ));
        }
        report.notes.push(format!(
            "{} took {:.1} s to stop after SIGTERM",
            match stack.mode {
                DatabaseMode::Postgres => "the workers",
                DatabaseMode::Sqlite => "`hookbeat serve`",
            },
            stop_started.elapsed().as_secs_f64()
        ));
        let run_states = history::run_states(&stack.db).await?;
        match before_stop {
            Closing::Postgres(counters, activity) => {
                let counters = pgstats::counters(&stack.db).await?.since(&counters);
                let server = pgstats::server_settings(&stack.db).await?;
                if server.get("autovacuum").is_some_and(|v| v == "off") {
                    report.notes.push(
                        "autovacuum is off on this server: dead index entries pile up all run \
                         long, which production servers (autovacuum on by default) do not see"
                            .to_owned(),
                    );
                }
                report.postgres = Some(PostgresFigures {
                    counters,
                    activity,
                    stages: None,
                    run_states,
                    server,
                    wal: None,
                });
            }
            Closing::Sqlite(file, sizes) => {
                report.sqlite = Some(SqliteFigures {
                    file: file.display().to_string(),
                    version: sqlite::version(&stack.db).await?,
                    database_bytes: sizes.database_bytes,
                    wal_bytes: sizes.wal_bytes,
                    stages: None,
                    run_states,
                });
                report.not_applicable = sqlite::not_applicable();
            }
        }
        stack.stop_sampling().await;
        let (processes, machine) = stack.sampler.summarise(self.from_us, to_us);
        report.processes = processes;
        report.machine_cpu = Some(machine);
        report.machine_series = stack.sampler.machine_series();
        for (name, path) in stack.logs() {
            report.logs.insert(name, crate::logs::tally(&path));
        }
        report.receiver = ReceiverFigures {
            requests: stack.receiver.recorded.all().len(),
            connections: stack.receiver.recorded.connections(),
            malformed: stack.receiver.recorded.malformed(),
        };
        Ok(())
    }
}

/// Fails the run if a worker died: the figures would describe a different system.
pub fn check_workers_alive(stack: &Stack) -> anyhow::Result<()> {
    for worker in &stack.workers {
        if let Some(status) = stack.supervisor.exited(&worker.name) {
            anyhow::bail!(
                "{} exited ({status}) during the run:\n{}",
                worker.name,
                crate::logs::last_lines(&worker.log, 10)
            );
        }
    }
    Ok(())
}

/// Where the time of the fires scheduled in `[from_us, to_us]` went, into the report's figures
/// for its database.
pub async fn record_stages(
    stack: &Stack,
    from_us: i64,
    to_us: i64,
    report: &mut Report,
) -> anyhow::Result<()> {
    let stages = history::stages(&stack.db, to_datetime(from_us), to_datetime(to_us)).await?;
    if let Some(pg) = &mut report.postgres {
        pg.stages = Some(stages);
    } else if let Some(lite) = &mut report.sqlite {
        lite.stages = Some(stages);
    }
    Ok(())
}

/// WAL over `window` (named `name` in the report), per fire whose first delivery reached the
/// receiver in it, into the report's PostgreSQL figures. A window that could not be read is a
/// note: the run's other figures stand without it.
pub fn record_wal(
    stack: &Stack,
    window: anyhow::Result<ClosedWindow>,
    name: &str,
    report: &mut Report,
) {
    let window = match window {
        Ok(window) => window,
        Err(error) => {
            report
                .notes
                .push(format!("WAL over the {name} not measured: {error:#}"));
            return;
        }
    };
    let fires = pgwal::fires_first_delivered(
        &stack.receiver.recorded.all(),
        window.start.at_us,
        window.end.at_us,
    );
    if let Some(pg) = &mut report.postgres {
        pg.wal = Some(window.figures(name, fires));
    }
}

pub fn goal(goal: &str, measured: String, met: bool) -> Goal {
    Goal {
        goal: goal.to_owned(),
        measured,
        met,
    }
}

/// How many schedules a second the API creates here: a probe of `n` disabled schedules (they
/// never fire) made with `body(i)` at `--concurrency`. Scenarios that start their schedules at a
/// chosen instant use it to leave enough time for creating them all.
pub async fn probe_create_rate(
    stack: &Stack,
    concurrency: usize,
    n: usize,
    body: impl Fn(usize) -> serde_json::Value,
) -> anyhow::Result<f64> {
    let probe: Vec<(String, serde_json::Value)> = (0..n)
        .map(|i| {
            let mut body = body(i);
            body["name"] = format!("probe-{i}").into();
            body["enabled"] = false.into();
            (stack.token_for(i).to_owned(), body)
        })
        .collect();
    let (_, probed) = stack
        .api_client
        .create_many(probe, concurrency, |_| {})
        .await;
    anyhow::ensure!(
        probed.created > 0,
        "the API created nothing: {:?}",
        probed.first_error
    );
    Ok(probed.per_second)
}

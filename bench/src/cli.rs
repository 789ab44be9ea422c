//! The command line: options shared by every scenario, then one subcommand per scenario.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Serialize;

/// The PostgreSQL server the bench creates its database on, unless `--postgres-url` says another.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// `hookbeat worker` processes on PostgreSQL, unless `--workers` says otherwise.
pub const DEFAULT_WORKERS: u16 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "hookbeat-bench",
    about = "Sets up PostgreSQL, hookbeat's API and workers and a local receiver (or, with \
             --database sqlite, one `hookbeat serve` on an SQLite file), runs a load scenario and \
             reports throughput, fire lag, duplicates, losses and resource use"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// The hookbeat binary to measure.
    #[arg(long, global = true, default_value = "target/release/hookbeat")]
    pub hookbeat_bin: PathBuf,
    /// What hookbeat runs on. `postgres`: a fresh PostgreSQL database on --postgres-url, one
    /// `hookbeat api` and --workers `hookbeat worker` processes. `sqlite`: the embedded default,
    /// one `hookbeat serve` (API and worker in one process) on a fresh SQLite file in the run
    /// directory, with no PostgreSQL involved; for burst and sustained (and cleanup).
    #[arg(long, global = true, value_enum, default_value_t = DatabaseMode::Postgres)]
    pub database: DatabaseMode,
    /// A PostgreSQL database to connect to for creating and dropping the bench database
    /// [default: postgres://postgres@127.0.0.1:5432/postgres]. Not with --database sqlite.
    #[arg(long, global = true)]
    pub postgres_url: Option<String>,
    /// `hookbeat worker` processes, each pooling up to 20 PostgreSQL connections [default: 2].
    /// With --database sqlite the worker is the one `hookbeat serve` process: leave this unset
    /// (or 1).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=8))]
    pub workers: Option<u16>,
    /// Tenants the schedules are spread over, round-robin.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub tenants: u16,
    /// Requests in flight at once when creating schedules through the API.
    #[arg(long, global = true, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// Ports the receiver listens on; schedules' targets use them round-robin. hookbeat limits
    /// deliveries in flight per host:port, so N ports stand for N receiving hosts.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub receiver_ports: u16,
    /// Keep the database and the logs instead of dropping them at the end.
    #[arg(long, global = true)]
    pub keep: bool,
    /// Also write the report as JSON to this file.
    #[arg(long, global = true)]
    pub json: Option<PathBuf>,
    /// Where the per-process logs (and with --database sqlite the database file) go: a
    /// directory named after the run is made inside; default: the system's temporary directory.
    #[arg(long, global = true)]
    pub run_dir: Option<PathBuf>,
    /// RUST_LOG for the hookbeat processes (default: hookbeat's own, `info`).
    #[arg(long, global = true)]
    pub rust_log: Option<String>,
    /// An extra variable for the hookbeat processes, KEY=VALUE (repeatable), e.g.
    /// HOOKBEAT_MAX_IN_FLIGHT_PER_HOST=256 to see whether a limit is the bottleneck. Measurements
    /// of hookbeat as shipped use none.
    #[arg(long = "hookbeat-env", global = true, value_parser = parse_env)]
    pub hookbeat_env: Vec<(String, String)>,
    /// A PostgreSQL parameter for the bench database only, KEY=VALUE (repeatable; ALTER
    /// DATABASE … SET, gone with the database), e.g. synchronous_commit=off to see how much of
    /// the time is WAL flushes. Measurements of hookbeat as shipped use none. Not with
    /// --database sqlite.
    #[arg(long = "pg-setting", global = true, value_parser = parse_env)]
    pub pg_settings: Vec<(String, String)>,
    /// Seconds a process gets to exit after SIGTERM before SIGKILL.
    #[arg(long, global = true, default_value_t = 15)]
    pub stop_grace: u64,
    /// Hard limit on the whole run, seconds; everything is stopped when it passes.
    #[arg(long, global = true, default_value_t = 900)]
    pub max_runtime: u64,
}

/// The database hookbeat runs on, and with it the processes the bench starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseMode {
    /// PostgreSQL: `hookbeat api` and N `hookbeat worker` processes.
    #[default]
    Postgres,
    /// SQLite, the embedded default: one `hookbeat serve`.
    Sqlite,
}

impl DatabaseMode {
    /// The hookbeat command that serves the API: on SQLite it also runs the worker.
    pub fn api_command(self) -> &'static str {
        match self {
            DatabaseMode::Postgres => "api",
            DatabaseMode::Sqlite => "serve",
        }
    }
}

impl Common {
    /// `--postgres-url`, or the local server.
    pub fn postgres_url(&self) -> &str {
        self.postgres_url.as_deref().unwrap_or(DEFAULT_POSTGRES_URL)
    }

    /// The processes that run hookbeat's worker: `--workers` (default 2) on PostgreSQL, the one
    /// `hookbeat serve` on SQLite.
    pub fn workers(&self) -> u16 {
        match self.database {
            DatabaseMode::Postgres => self.workers.unwrap_or(DEFAULT_WORKERS),
            DatabaseMode::Sqlite => 1,
        }
    }

    /// Refuses options that mean nothing with the chosen database, rather than ignoring them.
    pub fn validate(&self, scenario: &Scenario) -> anyhow::Result<()> {
        if self.database == DatabaseMode::Postgres {
            return Ok(());
        }
        if let Some(workers) = self.workers.filter(|w| *w != 1) {
            anyhow::bail!(
                "--workers {workers}: with --database sqlite the worker runs inside the one \
                 `hookbeat serve` process (an SQLite file has one process); leave --workers unset"
            );
        }
        anyhow::ensure!(
            self.pg_settings.is_empty(),
            "--pg-setting sets a parameter of the PostgreSQL bench database; with --database \
             sqlite there is none"
        );
        anyhow::ensure!(
            self.postgres_url.is_none(),
            "--postgres-url names a PostgreSQL server; with --database sqlite none is used"
        );
        anyhow::ensure!(
            !matches!(scenario, Scenario::IdleMemory(_)),
            "idle-memory measures a `hookbeat worker` process, which runs on PostgreSQL only; \
             --database sqlite is for burst and sustained"
        );
        Ok(())
    }
}

impl Cli {
    /// Every rule across options, checked before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.common.validate(&self.scenario)?;
        self.scenario.validate()
    }
}

#[derive(Debug, Clone, Subcommand)]
pub enum Scenario {
    /// N interval schedules with periods spread over a range, created through the API, run for
    /// a fixed time.
    Sustained(SustainedArgs),
    /// N schedules that all fire at the same minute boundary.
    Burst(BurstArgs),
    /// Many stored schedules due far in the future; one worker's start-up time and memory.
    IdleMemory(IdleArgs),
    /// Drop the databases of bench runs that were killed outright (their process is gone); with
    /// --database sqlite, remove their run directories (which hold their SQLite files).
    Cleanup,
    /// Load the receiver alone from in-process clients, to show its ceiling on this machine.
    ReceiverCheck(ReceiverCheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ReceiverCheckArgs {
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub seconds: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub connections: u16,
}

#[derive(Debug, Clone, Args)]
pub struct SustainedArgs {
    #[arg(long, default_value_t = 2_000)]
    pub schedules: usize,
    /// Shortest `every_seconds`; schedule i gets min + (i mod (max − min + 1)).
    #[arg(long, default_value_t = 1)]
    pub min_every: u32,
    #[arg(long, default_value_t = 5)]
    pub max_every: u32,
    /// Seconds to run after the last schedule was created.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Fires scheduled in the last this-many seconds before the stop are not judged.
    #[arg(long, default_value_t = 5)]
    pub tail: u64,
    /// After the stop, seconds to wait at most for late fires (up to the cut-off) to arrive.
    #[arg(long, default_value_t = 30)]
    pub drain: u64,
    /// Seconds after creation ended before the steady-state window begins (default: the
    /// longest period + 2 s, when every schedule has fired once). Longer leaves out the backlog
    /// that builds while the schedules are being created.
    #[arg(long)]
    pub warmup: Option<u64>,
    /// When the schedules begin to fire.
    #[arg(long, value_enum, default_value_t = Start::AtOnce)]
    pub start: Start,
    /// Where in its period each schedule fires (its interval `anchor`).
    #[arg(long, value_enum, default_value_t = Phases::Aligned)]
    pub phases: Phases,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Start {
    /// Each schedule as soon as it is created: the run begins with the backlog that builds
    /// while the rest are created through the API.
    AtOnce,
    /// All together once all are created (`start_at` an instant a probe of the API's create
    /// rate says is late enough): the run begins without a creation backlog.
    AfterCreation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phases {
    /// Every schedule anchored at the epoch: all fires fall on whole seconds, and every
    /// schedule fires in the same second once a minute (a burst each second).
    Aligned,
    /// The schedules of each period anchored evenly across it: the same fires per second, at an
    /// even rate within and across seconds.
    Spread,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SeedMode {
    /// POST /v1/schedules with --concurrency requests in flight.
    Api,
    /// INSERT … SELECT copies of one API-created template.
    Sql,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BurstSpec {
    /// `* * * * *`
    Crontab,
    /// every 60 s
    Interval,
}

#[derive(Debug, Clone, Args)]
pub struct BurstArgs {
    #[arg(long, default_value_t = 100_000)]
    pub schedules: usize,
    #[arg(long, value_enum, default_value_t = SeedMode::Api)]
    pub seed: SeedMode,
    #[arg(long, value_enum, default_value_t = BurstSpec::Crontab)]
    pub spec: BurstSpec,
    /// Seconds after the boundary to wait at most for the last fire.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub schedules: usize,
    /// Seconds to watch the worker after its start-up.
    #[arg(long, default_value_t = 30)]
    pub observe: u64,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err("expected KEY=VALUE".to_owned()),
    }
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Sustained(_) => "sustained",
            Scenario::Burst(_) => "burst",
            Scenario::IdleMemory(_) => "idle-memory",
            Scenario::Cleanup => "cleanup",
            Scenario::ReceiverCheck(_) => "receiver-check",
        }
    }

    /// Cross-field rules, checked before anything starts.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self {
            Scenario::Sustained(a) => {
                anyhow::ensure!(a.schedules > 0, "--schedules must be positive");
                anyhow::ensure!(
                    a.min_every >= 1 && a.min_every <= a.max_every,
                    "need 1 ≤ --min-every ≤ --max-every"
                );
                anyhow::ensure!(
                    a.duration > a.tail + 5,
                    "--duration must exceed --tail by more than 5 s"
                );
                if let Some(warmup) = a.warmup {
                    anyhow::ensure!(
                        warmup + 10 <= a.duration - a.tail,
                        "--warmup {warmup} leaves under 10 s of steady window before the cut-off \
                         (--duration {} − --tail {})",
                        a.duration,
                        a.tail
                    );
                }
            }
            Scenario::Burst(a) => {
                anyhow::ensure!(a.schedules > 0, "--schedules must be positive");
            }
            Scenario::IdleMemory(a) => {
                anyhow::ensure!(a.schedules > 0, "--schedules must be positive");
            }
            Scenario::Cleanup | Scenario::ReceiverCheck(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sustained(args: &[&str]) -> Scenario {
        let mut argv = vec!["hookbeat-bench", "sustained"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").scenario
    }

    /// The command line `hookbeat-bench ARGS…`, parsed and validated.
    fn checked(args: &[&str]) -> anyhow::Result<Cli> {
        let cli =
            Cli::try_parse_from(std::iter::once("hookbeat-bench").chain(args.iter().copied()))?;
        cli.validate()?;
        Ok(cli)
    }

    #[test]
    fn a_warmup_must_leave_a_steady_window() {
        let error = sustained(&["--duration", "60", "--warmup", "50"])
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.contains("--warmup 50"), "{error}");
        assert!(sustained(&["--duration", "90", "--warmup", "30"])
            .validate()
            .is_ok());
    }

    #[test]
    fn postgres_is_the_default_with_two_workers() {
        let cli = checked(&["burst"]).unwrap();
        assert_eq!(cli.common.database, DatabaseMode::Postgres);
        assert_eq!(cli.common.workers(), 2);
        assert_eq!(cli.common.postgres_url(), DEFAULT_POSTGRES_URL);
        let cli = checked(&["--workers", "4", "--pg-setting", "fsync=off", "burst"]).unwrap();
        assert_eq!(cli.common.workers(), 4);
    }

    #[test]
    fn sqlite_runs_one_serve_process() {
        let cli = checked(&["--database", "sqlite", "sustained"]).unwrap();
        assert_eq!(cli.common.database, DatabaseMode::Sqlite);
        assert_eq!(cli.common.workers(), 1);
        assert_eq!(cli.common.database.api_command(), "serve");
        // Saying what happens anyway is allowed.
        assert!(checked(&["--database", "sqlite", "--workers", "1", "burst"]).is_ok());
    }

    #[test]
    fn sqlite_refuses_what_only_postgres_has() {
        for (args, named) in [
            (
                &["--database", "sqlite", "--workers", "2", "burst"][..],
                "--workers 2",
            ),
            (
                &[
                    "--database",
                    "sqlite",
                    "--pg-setting",
                    "fsync=off",
                    "sustained",
                ][..],
                "--pg-setting",
            ),
            (
                &[
                    "--database",
                    "sqlite",
                    "--postgres-url",
                    "postgres://x@127.0.0.1/y",
                    "burst",
                ][..],
                "--postgres-url",
            ),
            (&["--database", "sqlite", "idle-memory"][..], "idle-memory"),
        ] {
            let error = checked(args).unwrap_err().to_string();
            assert!(error.contains(named), "{args:?}: {error}");
        }
    }
}

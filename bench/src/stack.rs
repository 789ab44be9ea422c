//! The system under test, brought up in order — sampler, receiver, run directory, database,
//! migrations, tenants and tokens, API, workers — and torn down whatever happened. On
//! PostgreSQL the API and the workers are separate processes; on SQLite (`--database sqlite`)
//! one `hookbeat serve` is both, on a file in the run directory, as the embedded default runs.
//!
//! What must be undone (child processes, the database, the run directory) is registered with a
//! [`Teardown`] that `main` owns, so a scenario that fails or is cancelled by Ctrl-C half-way
//! still leaves nothing behind.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hookbeat_scheduler::shards::SHARD_COUNT;
use sea_orm::{DatabaseConnection, DbBackend, FromQueryResult, Statement};

use crate::api_client::Api;
use crate::cli::DatabaseMode;
use crate::database::BenchDatabase;
use crate::hookbeat::{self, Hookbeat, Spawned};
use crate::progress::note;
use crate::receiver::Receiver;
use crate::sampler::{Sampler, SamplerTask, Watch};
use crate::sqlite;
use crate::supervisor::Supervisor;

/// Connections in each hookbeat process's pool at most (`src/database.rs`).
const HOOKBEAT_POOL: i64 = 20;

/// What every scenario shares.
#[derive(Debug, Clone)]
pub struct StackOptions {
    pub hookbeat_bin: PathBuf,
    pub database: DatabaseMode,
    pub postgres_url: String,
    pub run_dir: Option<PathBuf>,
    pub rust_log: Option<String>,
    pub tenants: usize,
    pub api_concurrency: usize,
    pub hookbeat_env: Vec<(String, String)>,
    pub receiver_ports: usize,
    pub pg_settings: Vec<(String, String)>,
}

/// What has to be undone at the end of a run.
pub struct Teardown {
    pub supervisor: Arc<Supervisor>,
    database: Mutex<Option<BenchDatabase>>,
    run_dir: Mutex<Option<PathBuf>>,
    keep: bool,
    grace: Duration,
}

impl Teardown {
    pub fn new(keep: bool, grace: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            supervisor: Arc::new(Supervisor::new()?),
            database: Mutex::new(None),
            run_dir: Mutex::new(None),
            keep,
            grace,
        })
    }

    /// Stops the workers first (so no delivery is cut off by a vanished API or database), then
    /// everything else; drops the database and the run directory unless `--keep`.
    pub async fn run(&self) {
        let supervisor = &self.supervisor;
        let mut killed = supervisor
            .stop_where(|name| name.starts_with("worker"), self.grace)
            .await;
        killed.extend(supervisor.stop_where(|_| true, self.grace).await);
        if !killed.is_empty() {
            note(format!(
                "warning: {} did not exit within {:?} of SIGTERM; killed",
                killed.join(", "),
                self.grace
            ));
        }
        let left = supervisor.running();
        if !left.is_empty() {
            note(format!(
                "warning: still running after SIGKILL: {}",
                left.join(", ")
            ));
        }
        let database = self.database.lock().expect("teardown poisoned").take();
        let run_dir = self.run_dir.lock().expect("teardown poisoned").take();
        if let Some(database) = database {
            if self.keep {
                note(format!("kept the database {} (--keep)", database.url));
            } else if let Err(error) = database.drop_database().await {
                note(format!("warning: {error:#}"));
            }
        }
        if let Some(dir) = run_dir {
            if self.keep {
                let file = dir.join(sqlite::FILE_NAME);
                if file.exists() {
                    note(format!(
                        "kept the SQLite database {} (--keep)",
                        file.display()
                    ));
                }
                note(format!("kept the logs in {} (--keep)", dir.display()));
            } else {
                std::fs::remove_dir_all(&dir).ok();
            }
        }
    }
}

/// Where run directories go: `--run-dir`, or the system's temporary directory.
pub fn run_base(run_dir: &Option<PathBuf>) -> PathBuf {
    run_dir.clone().unwrap_or_else(std::env::temp_dir)
}

/// The running system.
pub struct Stack {
    pub supervisor: Arc<Supervisor>,
    pub mode: DatabaseMode,
    /// The database file on SQLite.
    pub sqlite_file: Option<PathBuf>,
    /// The bench's own connections to hookbeat's database.
    pub db: DatabaseConnection,
    /// That database's URL, for a connection of its own.
    pub database_url: String,
    pub hookbeat: Hookbeat,
    pub receiver: Receiver,
    pub sampler: Sampler,
    sampler_task: Option<SamplerTask>,
    /// `hookbeat api`, or `hookbeat serve` on SQLite.
    pub api: Spawned,
    pub api_client: Api,
    /// `(tenant, token)`.
    pub tokens: Vec<(String, String)>,
    /// The processes that run the worker: the `hookbeat worker`s, or the one `hookbeat serve`.
    pub workers: Vec<Spawned>,
}

impl Stack {
    /// Everything but the workers, which scenarios start when they need them (on SQLite the
    /// worker runs from the start, inside `hookbeat serve`, but counts as started only then).
    pub async fn up(options: &StackOptions, teardown: &Teardown) -> anyhow::Result<Self> {
        hookbeat::check_binary(&options.hookbeat_bin)?;
        let supervisor = teardown.supervisor.clone();
        let (sampler, sampler_task) = Sampler::start();
        sampler.watch("bench (receiver)", Watch::Pid(std::process::id()));
        let receiver = Receiver::start(options.receiver_ports).await?;

        let name = crate::database::run_name();
        let run_dir = run_base(&options.run_dir).join(&name);
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        *teardown.run_dir.lock().expect("teardown poisoned") = Some(run_dir.clone());
        // Absolute, for the SQLite URL.
        let run_dir = std::fs::canonicalize(&run_dir)
            .with_context(|| format!("resolving {}", run_dir.display()))?;

        let (url, jwt_secret, sqlite_file) = match options.database {
            DatabaseMode::Postgres => {
                let url = create_postgres(options, &name, teardown).await?;
                // Backends name their database in their process title.
                sampler.watch("postgres backends", Watch::Cmdline(format!(" {name}")));
                note(format!("database {name}; logs in {}", run_dir.display()));
                // Any 32+ characters do: 64 random hex digits.
                let secret = format!(
                    "{:032x}{:032x}",
                    rand::random::<u128>(),
                    rand::random::<u128>()
                );
                (url, Some(secret), None)
            }
            DatabaseMode::Sqlite => {
                let file = run_dir.join(sqlite::FILE_NAME);
                note(format!(
                    "SQLite database {}; logs beside it",
                    file.display()
                ));
                (sqlite::url(&file)?, None, Some(file))
            }
        };

        let hookbeat = Hookbeat::new(
            &options.hookbeat_bin,
            url.clone(),
            jwt_secret,
            run_dir.clone(),
            options.rust_log.clone(),
            options.hookbeat_env.clone(),
        )?;
        hookbeat.migrate(&supervisor).await?;
        let mut tokens = Vec::with_capacity(options.tenants);
        for i in 0..options.tenants.max(1) {
            let tenant = format!("bench-{i}");
            let token = hookbeat.token(&supervisor, &tenant).await?;
            tokens.push((tenant, token));
        }
        let db = crate::database::connect(&url, 4).await?;
        crate::database::raise_quotas(&db).await?;

        let (api, base) = hookbeat
            .start_api(&supervisor, options.database.api_command())
            .await?;
        sampler.watch(api.name.clone(), Watch::Pid(api.pid));
        let api_client = Api::new(&base, options.api_concurrency)?;
        api_client.wait_ready(Duration::from_secs(30)).await?;
        note(format!(
            "{} pid {} at {base}; receiver at {} ({} port(s))",
            api.name,
            api.pid,
            receiver.url(0),
            receiver.addresses.len()
        ));
        Ok(Self {
            supervisor,
            mode: options.database,
            sqlite_file,
            db,
            database_url: url,
            hookbeat,
            receiver,
            sampler,
            sampler_task: Some(sampler_task),
            api,
            api_client,
            tokens,
            workers: Vec::new(),
        })
    }

    /// Starts `count` workers, waits until each logged `worker started` and the 64 shards are
    /// shared out among them, and returns how long each took to log `worker started`. On SQLite
    /// the one worker is `hookbeat serve`'s: it only waits for that line.
    pub async fn start_workers(&mut self, count: usize) -> anyhow::Result<Vec<Duration>> {
        if self.mode == DatabaseMode::Sqlite {
            anyhow::ensure!(
                count == 1 && self.workers.is_empty(),
                "on SQLite the one worker is `hookbeat serve`'s"
            );
            let serve = self.api.clone();
            let startup = self.worker_started(&serve).await?;
            note(format!("worker up inside {} pid {}", serve.name, serve.pid));
            self.workers.push(serve);
            return Ok(vec![startup]);
        }
        self.warn_about_connections(self.workers.len() + count)
            .await;
        let mut spawned = Vec::with_capacity(count);
        for _ in 0..count {
            let index = self.workers.len() + spawned.len();
            let worker = self.hookbeat.start_worker(&self.supervisor, index).await?;
            self.sampler
                .watch(worker.name.clone(), Watch::Pid(worker.pid));
            spawned.push(worker);
        }
        let mut startup = Vec::with_capacity(count);
        for worker in &spawned {
            startup.push(self.worker_started(worker).await?);
        }
        self.workers.extend(spawned);
        self.wait_for_shards(Duration::from_secs(30)).await?;
        let pids: Vec<String> = self
            .workers
            .iter()
            .map(|w| format!("{} pid {}", w.name, w.pid))
            .collect();
        note(format!("workers up: {}", pids.join(", ")));
        Ok(startup)
    }

    /// Waits until `process` logged `worker started`; returns how long after its spawn it did.
    async fn worker_started(&self, process: &Spawned) -> anyhow::Result<Duration> {
        let line =
            hookbeat::wait_for_line(&self.supervisor, process, Duration::from_secs(60), |l| {
                crate::logs::message(l).as_deref() == Some("worker started")
            })
            .await?;
        let at = hookbeat::line_time_us(&line).unwrap_or_else(crate::clock::now_us);
        Ok(Duration::from_micros(
            (at - process.spawned_us).max(0) as u64
        ))
    }

    /// hookbeat pools up to 20 connections per process; say so when the API and `workers`
    /// workers could need more than the server allows, since connection errors would then
    /// look like hookbeat failures.
    async fn warn_about_connections(&self, workers: usize) {
        #[derive(FromQueryResult)]
        struct Limit {
            limit: i64,
        }
        let limit = Limit::find_by_statement(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_setting('max_connections')::bigint              - current_setting('superuser_reserved_connections')::bigint AS limit",
        ))
        .one(&self.db)
        .await;
        let need = (workers as i64 + 1) * HOOKBEAT_POOL + 6;
        if let Ok(Some(Limit { limit })) = limit {
            if need > limit {
                note(format!(
                    "warning: the API and {workers} workers may open {need} connections; the server allows {limit}"
                ));
            }
        }
    }

    /// Waits until every shard is leased to a live worker and each worker holds some.
    pub async fn wait_for_shards(&self, timeout: Duration) -> anyhow::Result<()> {
        #[derive(FromQueryResult)]
        struct Owners {
            owners: i64,
            shards: i64,
        }
        let deadline = Instant::now() + timeout;
        let want = self.workers.len() as i64;
        loop {
            let row = Owners::find_by_statement(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(DISTINCT owner) AS owners, count(owner) AS shards FROM shard_leases \
                 WHERE owner IS NOT NULL AND lease_until > now()",
            ))
            .one(&self.db)
            .await
            .context("reading shard leases")?;
            if let Some(row) = row {
                if row.owners == want && row.shards == SHARD_COUNT as i64 {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the shards were not shared among {want} workers within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the workers gracefully (their in-flight deliveries finish), so that the database
    /// holds the final state of every run. On SQLite that stops `hookbeat serve`, API and all.
    pub async fn stop_workers(&self, grace: Duration) -> Vec<String> {
        self.supervisor
            .stop_where(|name| self.workers.iter().any(|w| w.name == name), grace)
            .await
    }

    /// Stops sampling processes; summaries stay readable.
    pub async fn stop_sampling(&mut self) {
        if let Some(task) = self.sampler_task.take() {
            task.stop().await;
        }
    }

    /// Stops the receiver (after the workers: a delivery in flight still gets its answer).
    pub async fn close(mut self) {
        self.stop_sampling().await;
        self.receiver.stop().await;
    }

    /// Log files of the hookbeat processes, by process name (`hookbeat serve` once).
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        std::iter::once(&self.api)
            .chain(self.workers.iter().filter(|w| w.name != self.api.name))
            .map(|p| (p.name.clone(), p.log.clone()))
            .collect()
    }

    /// A token for the tenant that schedule `index` belongs to (round-robin over tenants).
    pub fn token_for(&self, index: usize) -> &str {
        &self.tokens[index % self.tokens.len()].1
    }

    pub fn tenants(&self) -> Vec<String> {
        self.tokens.iter().map(|(t, _)| t.clone()).collect()
    }
}

/// Creates the run's PostgreSQL database with its `--pg-setting`s, registers it with `teardown`
/// (which drops it at the end) and returns its URL.
async fn create_postgres(
    options: &StackOptions,
    name: &str,
    teardown: &Teardown,
) -> anyhow::Result<String> {
    let database = BenchDatabase::create(&options.postgres_url, name).await?;
    for (key, value) in &options.pg_settings {
        if let Err(error) = database.set(key, value).await {
            database.drop_database().await.ok();
            return Err(error);
        }
    }
    let url = database.url.clone();
    *teardown.database.lock().expect("teardown poisoned") = Some(database);
    Ok(url)
}

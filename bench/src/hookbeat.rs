//! Running the hookbeat binary: `migrate`, `token`, `api` and `worker` (PostgreSQL) or `serve`
//! (SQLite), each with the bench database, `--allow-private-targets` (the receiver is on
//! 127.0.0.1) and JSON logs in a file per process under the run directory; on PostgreSQL also a
//! JWT secret, which the embedded install makes and keeps itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clock::now_us;
use crate::logs::{self, LogTail};
use crate::supervisor::{ProcessSpec, Supervisor};

/// Variables of the bench's own environment that would change what the children do (besides
/// every `HOOKBEAT_*`). Proxies go too: every request must stay on 127.0.0.1.
const SCRUBBED: &[&str] = &[
    "DATABASE_URL",
    "RUST_LOG",
    "HOSTNAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A long-running hookbeat process.
#[derive(Debug, Clone)]
pub struct Spawned {
    pub name: String,
    pub pid: u32,
    pub log: PathBuf,
    /// Wall-clock instant of the spawn, µs since the epoch.
    pub spawned_us: i64,
}

pub struct Hookbeat {
    bin: PathBuf,
    database_url: String,
    /// `None` on SQLite: the first `hookbeat token` makes one and keeps it in the database file,
    /// as for anyone who runs the embedded default.
    jwt_secret: Option<String>,
    run_dir: PathBuf,
    rust_log: Option<String>,
    /// `--hookbeat-env` settings, for experiments with hookbeat's own knobs.
    extra_env: Vec<(String, String)>,
}

impl Hookbeat {
    pub fn new(
        bin: &Path,
        database_url: String,
        jwt_secret: Option<String>,
        run_dir: PathBuf,
        rust_log: Option<String>,
        extra_env: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        check_binary(bin)?;
        Ok(Self {
            bin: bin.to_owned(),
            database_url,
            jwt_secret,
            run_dir,
            rust_log,
            extra_env,
        })
    }

    fn spec(&self, name: &str, args: &[&str]) -> ProcessSpec {
        let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        all.extend(
            [
                "--listen",
                "127.0.0.1:0",
                "--allow-private-targets",
                "--log-format",
                "json",
            ]
            .map(str::to_owned),
        );
        let mut env = vec![
            // Secrets go through the environment, not the command line anyone can read in ps.
            ("DATABASE_URL".to_owned(), self.database_url.clone()),
            // Names the worker in `runs.locked_by` (worker ids are `HOSTNAME-pid-random`).
            ("HOSTNAME".to_owned(), name.to_owned()),
        ];
        if let Some(secret) = &self.jwt_secret {
            env.push(("HOOKBEAT_JWT_SECRET".to_owned(), secret.clone()));
        }
        if let Some(filter) = &self.rust_log {
            env.push(("RUST_LOG".to_owned(), filter.clone()));
        }
        env.extend(self.extra_env.iter().cloned());
        let env_remove = SCRUBBED
            .iter()
            .map(|v| (*v).to_owned())
            .chain(std::env::vars_os().filter_map(|(k, _)| {
                let k = k.to_str()?;
                k.starts_with("HOOKBEAT_").then(|| k.to_owned())
            }))
            .collect();
        ProcessSpec {
            name: name.to_owned(),
            program: self.bin.clone(),
            args: all,
            env,
            env_remove,
            stdout: self.run_dir.join(format!("{name}.out")),
            stderr: self.run_dir.join(format!("{name}.log")),
        }
    }

    /// Runs a one-shot command to completion and returns its stdout.
    async fn run(
        &self,
        supervisor: &Supervisor,
        name: &str,
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let spec = self.spec(name, args);
        supervisor.spawn(&spec).await?;
        let status = supervisor.wait(name, timeout).await?;
        if !status.success() {
            anyhow::bail!(
                "`hookbeat {}` failed ({status}):\n{}",
                args.join(" "),
                logs::last_lines(&spec.stderr, 10)
            );
        }
        std::fs::read_to_string(&spec.stdout).with_context(|| format!("reading {name}'s output"))
    }

    pub async fn migrate(&self, supervisor: &Supervisor) -> anyhow::Result<()> {
        self.run(
            supervisor,
            "migrate",
            &["migrate"],
            Duration::from_secs(120),
        )
        .await
        .map(drop)
    }

    /// Creates the tenant (if absent) and returns a token for it.
    pub async fn token(&self, supervisor: &Supervisor, tenant: &str) -> anyhow::Result<String> {
        let out = self
            .run(
                supervisor,
                &format!("token-{tenant}"),
                &["token", "--tenant", tenant, "--ttl", "1d"],
                Duration::from_secs(60),
            )
            .await?;
        let token = out.trim().to_owned();
        anyhow::ensure!(!token.is_empty(), "`hookbeat token` printed nothing");
        Ok(token)
    }

    async fn start(
        &self,
        supervisor: &Supervisor,
        name: &str,
        role: &str,
    ) -> anyhow::Result<Spawned> {
        let spec = self.spec(name, &[role]);
        let spawned_us = now_us();
        let pid = supervisor.spawn(&spec).await?;
        Ok(Spawned {
            name: name.to_owned(),
            pid,
            log: spec.stderr,
            spawned_us,
        })
    }

    /// Starts `hookbeat COMMAND` (`api`, or `serve`: the API with the worker) under the name of
    /// its command and returns it with its base URL, read from the log line that announces the
    /// address it bound (it listens on port 0).
    pub async fn start_api(
        &self,
        supervisor: &Supervisor,
        command: &str,
    ) -> anyhow::Result<(Spawned, String)> {
        let api = self.start(supervisor, command, command).await?;
        let line = wait_for_line(supervisor, &api, Duration::from_secs(30), |line| {
            logs::field(line, "address").is_some()
        })
        .await?;
        let address = logs::field(&line, "address").context("the address vanished")?;
        Ok((api, address))
    }

    pub async fn start_worker(
        &self,
        supervisor: &Supervisor,
        index: usize,
    ) -> anyhow::Result<Spawned> {
        self.start(supervisor, &format!("worker-{index}"), "worker")
            .await
    }
}

pub fn check_binary(bin: &Path) -> anyhow::Result<()> {
    if !bin.is_file() {
        anyhow::bail!(
            "the hookbeat binary {} does not exist; build it with `cargo build --release -p hookbeat` \
             (or point --hookbeat-bin at it)",
            bin.display()
        );
    }
    Ok(())
}

/// Waits until a line of the process's log satisfies `matches` and returns that line. Fails as
/// soon as the process exits, with the end of its log.
pub async fn wait_for_line(
    supervisor: &Supervisor,
    process: &Spawned,
    timeout: Duration,
    matches: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let mut tail = LogTail::new(&process.log);
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(line) = tail.read_lines().into_iter().find(|l| matches(l)) {
            return Ok(line);
        }
        if let Some(status) = supervisor.exited(&process.name) {
            anyhow::bail!(
                "{} exited ({status}) during start-up:\n{}",
                process.name,
                logs::last_lines(&process.log, 10)
            );
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{} did not get ready within {timeout:?}:\n{}",
                process.name,
                logs::last_lines(&process.log, 10)
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The `timestamp` of a JSON log line, µs since the epoch.
pub fn line_time_us(line: &str) -> Option<i64> {
    let text = logs::field(line, "timestamp")?;
    Some(
        chrono::DateTime::parse_from_rfc3339(&text)
            .ok()?
            .timestamp_micros(),
    )
}

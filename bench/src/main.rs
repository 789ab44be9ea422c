//! `hookbeat-bench`: parse the command line, run one scenario against a freshly set-up hookbeat,
//! tear everything down whatever happened (error, Ctrl-C, SIGTERM, time limit), then print the
//! report and write it as JSON if asked.

mod accounting;
mod api_client;
mod cli;
mod clock;
mod database;
mod environment;
mod history;
mod hookbeat;
mod logs;
mod monitor;
mod pgstats;
mod pgwal;
mod procfs;
mod progress;
mod receiver;
mod receiver_check;
mod report;
mod sampler;
mod scenario;
mod seed;
mod sqlite;
mod stack;
mod stats;
mod supervisor;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, DatabaseMode, Scenario};
use crate::report::Report;
use crate::stack::Teardown;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    cli.validate()?;
    match &cli.scenario {
        Scenario::Cleanup => {
            return match cli.common.database {
                DatabaseMode::Postgres => database::cleanup(cli.common.postgres_url()).await,
                DatabaseMode::Sqlite => sqlite::cleanup(&stack::run_base(&cli.common.run_dir)),
            }
        }
        Scenario::ReceiverCheck(args) => {
            return receiver_check::run(args.seconds, usize::from(args.connections)).await
        }
        _ => {}
    }
    let teardown = Teardown::new(cli.common.keep, Duration::from_secs(cli.common.stop_grace))?;
    let limit = Duration::from_secs(cli.common.max_runtime);
    let result = tokio::select! {
        result = tokio::time::timeout(limit, scenario::run(cli, &teardown)) => {
            result.unwrap_or_else(|_| Err(anyhow::anyhow!("the run exceeded --max-runtime {limit:?}")))
        }
        signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
    };
    progress::note("stopping everything");
    teardown.run().await;
    let report = result?;
    publish(cli, &report)
}

/// Resolves on the first SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => "SIGTERM",
    }
}

fn publish(cli: &Cli, report: &Report) -> anyhow::Result<()> {
    write!(std::io::stdout(), "{}", report.render())?;
    if let Some(path) = &cli.common.json {
        let json = serde_json::to_vec_pretty(report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

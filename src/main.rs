//! `hookbeat`: parse the command line, set up logging, run the chosen role or command.

use clap::Parser;
use hookbeat::app::{self, Roles};
use hookbeat::cli::{Cli, Command};
use hookbeat::{commands, telemetry};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.settings.log_format);
    let settings = &cli.settings;
    let command = cli.command.unwrap_or(Command::Serve);
    let needs_database = !matches!(command, Command::Preview { .. });
    let needs_tokens = matches!(
        command,
        Command::Serve | Command::Api | Command::Token { .. }
    );
    if needs_database {
        if let Err(error) = settings.validate(needs_tokens) {
            eprintln!("error: {error:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let result = match command {
        Command::Serve => {
            app::run(
                settings,
                Roles {
                    api: true,
                    worker: true,
                },
                true,
            )
            .await
        }
        Command::Api => {
            app::run(
                settings,
                Roles {
                    api: true,
                    worker: false,
                },
                false,
            )
            .await
        }
        Command::Worker => {
            app::run(
                settings,
                Roles {
                    api: false,
                    worker: true,
                },
                false,
            )
            .await
        }
        Command::Migrate => commands::migrate(settings).await,
        Command::Token { tenant, scope, ttl } => {
            commands::token(settings, &tenant, &scope, ttl).await
        }
        Command::Preview { after, count, spec } => commands::preview(&spec, after, count),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

//! Connecting to the database and migrating it.
//!
//! A process that runs the API and the worker gives each a pool of its own. The worker's
//! PostgreSQL connections do not wait for their commits to be flushed to disk
//! (`synchronous_commit = off`, set as the connection starts; see [`Pool::Worker`]); the API's do.
//! SQLite runs in WAL mode with a busy timeout, so the two pools in the one process take turns
//! writing instead of failing.

use std::time::Duration;

use anyhow::Context;
use hookbeat_migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

/// Whom a connection pool serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// The API and the one-shot commands: every commit is durable before it is acknowledged.
    Api,
    /// The worker. Its PostgreSQL commits do not wait for the WAL flush. Safe because every
    /// worker write can be redone: if PostgreSQL crashes and loses the last fraction of a second
    /// of them, due schedules are materialised again (the unique key prevents doubles), claims
    /// fall back to pending, and an attempt whose result was lost is delivered again with the
    /// same `webhook-id`: at least once, as promised. Not waiting is what lets one worker record
    /// thousands of attempts a second instead of one per disk flush; setting it as the
    /// connection starts, rather than in each transaction, saves a round trip per transaction
    /// and lets a single-statement write (a claim) go without one.
    Worker,
}

pub async fn connect(url: &str, pool: Pool) -> anyhow::Result<DatabaseConnection> {
    let sqlite = url.starts_with("sqlite:");
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if sqlite { 8 } else { 20 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        })
        .map_sqlx_postgres_opts(move |opts| match pool {
            Pool::Api => opts,
            Pool::Worker => opts.options([("synchronous_commit", "off")]),
        });
    Database::connect(options)
        .await
        .with_context(|| format!("connecting to the database at {}", redact(url)))
}

pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("applying migrations")
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

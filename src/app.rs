//! Composing the roles: the API, the worker, or both in one process (`serve`), sharing one
//! clock, one metrics registry and one wake-up channel. Each role has a database pool of its own
//! (see [`database::Pool`]).

use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use hookbeat_api::auth::{resolve_secret, Secret, TokenVerifier};
use hookbeat_api::state::Readiness;
use hookbeat_api::AppState;
use hookbeat_migration::{Migrator, MigratorTrait};
use hookbeat_scheduler::metrics::WorkerMetrics;
use hookbeat_scheduler::notify::Wakeup;
use hookbeat_scheduler::sealing::{Sealer, FLAG as SECRETS_KEY_FLAG};
use hookbeat_scheduler::secrets_at_rest::{self, AtRest};
use hookbeat_scheduler::{Clock, SystemClock, Worker, WorkerConfig};
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

use crate::cli::Settings;
use crate::database;

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub worker: bool,
}

/// Everything the roles share.
pub struct Components {
    /// The API's pool, or the only pool of a process with one role.
    pub db: DatabaseConnection,
    /// The worker's own pool, where the process runs the API as well.
    pub worker_db: Option<DatabaseConnection>,
    pub clock: Arc<dyn Clock>,
    pub registry: prometheus::Registry,
    pub wakeup: Wakeup,
    pub state: AppState,
    pub worker: Worker,
    /// Counts the NOTIFYs the worker's LISTEN connection receives.
    pub notifications: prometheus::IntCounter,
}

/// Options that tests set differently from production.
pub struct Options {
    pub allow_private_targets: bool,
    pub jwt_secret: Option<Secret>,
    pub jwt_public_key_pem: Option<Vec<u8>>,
    pub jwt_audience: Option<String>,
    /// How long a request's whole body may take to arrive (408 after).
    pub body_timeout: std::time::Duration,
    /// Seals the secrets the API and the worker store (the worker's own `sealer` is set from it).
    pub sealer: Sealer,
    pub worker: WorkerConfig,
}

impl Options {
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let jwt_public_key_pem = settings
            .jwt_public_key
            .as_ref()
            .map(|path| {
                std::fs::read(path)
                    .with_context(|| format!("reading the JWT public key {}", path.display()))
            })
            .transpose()?;
        let worker = WorkerConfig {
            allow_private_targets: settings.allow_private_targets,
            retention: settings.retention,
            max_in_flight_per_tenant: settings.max_in_flight_per_tenant as usize,
            max_in_flight_per_host: settings.max_in_flight_per_host as usize,
            // One process owns an SQLite file and wakes its worker in-process. PostgreSQL
            // workers are woken by NOTIFY when another process changes something; the shorter
            // idle limit only bounds the delay while the LISTEN connection is down.
            max_idle: if settings.is_sqlite() {
                chrono::Duration::seconds(30)
            } else {
                chrono::Duration::seconds(5)
            },
            ..WorkerConfig::default()
        };
        Ok(Self {
            allow_private_targets: settings.allow_private_targets,
            jwt_secret: settings.jwt_secret.clone().map(Secret::new),
            jwt_public_key_pem,
            jwt_audience: settings.jwt_audience.clone(),
            body_timeout: settings.body_timeout,
            sealer: Sealer::new(settings.secrets_key.clone()),
            worker,
        })
    }
}

/// Builds the roles' parts over `db`; the worker uses `worker_db` where given, else `db`.
pub async fn build(
    db: DatabaseConnection,
    worker_db: Option<DatabaseConnection>,
    clock: Arc<dyn Clock>,
    mut options: Options,
) -> anyhow::Result<Components> {
    // Before anything reads a secret: a database whose secrets do not open stops the start here.
    if secrets_at_rest::prepare(&db, &options.sealer).await? == AtRest::Plaintext {
        tracing::warn!(
            "signing secrets and the embedded JWT secret are stored in plaintext; set \
             {SECRETS_KEY_FLAG} to encrypt them at rest"
        );
    }
    options.worker.sealer = options.sealer.clone();
    let registry = prometheus::Registry::new();
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .context("registering process metrics")?;
    hookbeat_scheduler::metrics::register_build_info(&registry)
        .context("registering build info")?;
    let audience = options.jwt_audience.as_deref();
    let verifier = match &options.jwt_public_key_pem {
        Some(pem) => TokenVerifier::public_key(pem, audience)?,
        None => TokenVerifier::hs256(
            &resolve_secret(&db, options.jwt_secret.clone(), &options.sealer).await?,
            audience,
        ),
    };
    let wakeup = Wakeup::new();
    let pools = std::iter::once(db.clone())
        .chain(worker_db.clone())
        .collect();
    hookbeat_scheduler::metrics::DbPoolCollector::register(&registry, pools)
        .context("registering pool metrics")?;
    let metrics = WorkerMetrics::register(&registry).context("registering worker metrics")?;
    let notifications = metrics.wakeups.with_label_values(&["notify"]);
    let fires_skipped = metrics.fires_skipped.clone();
    let worker = Worker::new(
        worker_db.clone().unwrap_or_else(|| db.clone()),
        clock.clone(),
        options.worker,
        metrics,
        wakeup.clone(),
    )?;
    let state = AppState {
        db: db.clone(),
        clock: clock.clone(),
        verifier: Arc::new(verifier),
        wakeup: wakeup.clone(),
        allow_private_targets: options.allow_private_targets,
        sealer: options.sealer.clone(),
        registry: registry.clone(),
        rate_limiter: Default::default(),
        auth_failures: Arc::new(hookbeat_api::rate_limit::RateLimiter::for_auth_failures()),
        body_timeout: options.body_timeout,
        worker: None,
        fires_skipped,
    };
    Ok(Components {
        db,
        worker_db,
        clock,
        registry,
        wakeup,
        state,
        worker,
        notifications,
    })
}

/// Runs `roles` until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(settings: &Settings, roles: Roles, migrate: bool) -> anyhow::Result<()> {
    let url = &settings.database_url;
    database::warn_if_readable_by_others(url);
    let db = database::connect(
        url,
        if roles.api {
            database::Pool::Api
        } else {
            database::Pool::Worker
        },
    )
    .await?;
    if migrate {
        database::migrate(&db, url).await?;
    } else {
        let pending = Migrator::get_pending_migrations(&db).await?.len();
        if pending > 0 {
            anyhow::bail!(
                "the database has {pending} pending migration(s); run `hookbeat migrate` first"
            );
        }
    }
    let worker_db = if roles.api && roles.worker {
        Some(database::connect(url, database::Pool::Worker).await?)
    } else {
        None
    };
    let components = build(
        db,
        worker_db,
        Arc::new(SystemClock),
        Options::from_settings(settings)?,
    )
    .await?;
    let cancel = CancellationToken::new();
    // Registered before anything listens, so a signal sent right after start-up is not missed.
    tokio::spawn(shutdown_on_signal(Signals::register()?, cancel.clone()));

    if roles.worker && !settings.is_sqlite() {
        tokio::spawn(hookbeat_scheduler::notify::listen(
            settings.database_url.clone(),
            components.wakeup.clone(),
            components.notifications.clone(),
            cancel.clone(),
        ));
    }
    // Supervision: each role is a task; whichever ends first stops the others, and each one's
    // end is logged with why. A role that ends before shutdown was asked for fails the process.
    let mut running = Supervisor::default();
    if roles.worker {
        running.start("worker", components.worker.clone().run(cancel.clone()));
    }
    // Readiness reports on the worker where this process runs one.
    let state = AppState {
        worker: roles
            .worker
            .then(|| Arc::new(WorkerReadiness(components.worker.clone())) as Arc<dyn Readiness>),
        ..components.state.clone()
    };
    if let (false, Some(address)) = (roles.api, settings.metrics_listen) {
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding the metrics listener to {address}"))?;
        let bound = listener.local_addr().context("reading the bound address")?;
        let server = hookbeat_api::startup::run_operations(listener, state.clone())?;
        tracing::info!(address = %format!("http://{bound}"), "worker metrics and health listening");
        running.start("metrics listener", serve_until(server, cancel.clone()));
    }
    if roles.api {
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("binding the API to {}", settings.listen))?;
        let address = listener.local_addr().context("reading the bound address")?;
        let server = hookbeat_api::run(listener, state, None)?;
        tracing::info!(
            address = %format!("http://{address}"),
            database = %database::redact(&settings.database_url),
            worker = roles.worker,
            "hookbeat API listening; get a token with: hookbeat token --tenant demo"
        );
        running.start("API", serve_until(server, cancel.clone()));
    }
    let outcome = running.until_all_end(&cancel).await;
    components.db.close().await.ok();
    if let Some(worker_db) = components.worker_db {
        worker_db.close().await.ok();
    }
    outcome
}

/// Serves until `cancel` fires, then stops gracefully (in-flight requests finish).
async fn serve_until(
    server: actix_web::dev::Server,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let handle = server.handle();
    tokio::spawn(async move {
        cancel.cancelled().await;
        handle.stop(true).await;
    });
    server.await.context("serving failed")
}

/// The roles of a process as tasks, each with its name.
#[derive(Default)]
struct Supervisor {
    tasks: tokio::task::JoinSet<anyhow::Result<()>>,
    names: std::collections::HashMap<tokio::task::Id, &'static str>,
}

impl Supervisor {
    fn start(
        &mut self,
        name: &'static str,
        role: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let id = self.tasks.spawn(role).id();
        self.names.insert(id, name);
    }

    /// Waits for every role to end. The first to end cancels the others; each end is logged. An
    /// end before shutdown was asked for (an error, a panic, or a role that just stopped) is the
    /// process's error.
    async fn until_all_end(mut self, cancel: &CancellationToken) -> anyhow::Result<()> {
        let mut failure = None;
        while let Some(ended) = self.tasks.join_next_with_id().await {
            let asked_to_stop = cancel.is_cancelled();
            let (id, result) = match ended {
                Ok((id, result)) => (id, result),
                Err(error) => (error.id(), Err(anyhow::anyhow!("it panicked: {error}"))),
            };
            let role = self.names.get(&id).copied().unwrap_or("a role");
            let why = match result {
                Ok(()) if asked_to_stop => {
                    tracing::info!(role, "stopped");
                    None
                }
                Ok(()) => Some(format!("the {role} stopped on its own")),
                Err(error) => Some(format!("the {role} failed: {error:#}")),
            };
            if let Some(why) = why {
                tracing::error!(role, reason = %why, "a role ended; stopping the process");
                failure.get_or_insert(why);
            }
            cancel.cancel();
        }
        match failure {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Ok(()),
        }
    }
}

/// The worker as `/readyz` sees it.
struct WorkerReadiness(Worker);

impl Readiness for WorkerReadiness {
    fn readiness(&self) -> Result<String, String> {
        self.0.readiness()
    }
}

/// SIGINT and SIGTERM, listened for from the moment they are registered.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn register() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
        })
    }
}

async fn shutdown_on_signal(mut signals: Signals, cancel: CancellationToken) {
    tokio::select! {
        _ = signals.interrupt.recv() => tracing::info!("SIGINT received; shutting down"),
        _ = signals.terminate.recv() => tracing::info!("SIGTERM received; shutting down"),
    }
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A role that runs until shutdown is asked for.
    async fn until_cancelled(cancel: CancellationToken) -> anyhow::Result<()> {
        cancel.cancelled().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_role_that_fails_stops_the_others_and_fails_the_process() {
        let cancel = CancellationToken::new();
        let mut running = Supervisor::default();
        running.start("API", until_cancelled(cancel.clone()));
        running.start("worker", async { anyhow::bail!("the database is gone") });
        let outcome = running.until_all_end(&cancel).await;
        assert!(cancel.is_cancelled(), "the API was asked to stop");
        let error = outcome.expect_err("the process fails");
        assert_eq!(error.to_string(), "the worker failed: the database is gone");
    }

    #[tokio::test]
    async fn a_role_that_panics_or_just_stops_is_named() {
        let cancel = CancellationToken::new();
        let mut running = Supervisor::default();
        running.start("worker", async { panic!("bug") });
        running.start("API", until_cancelled(cancel.clone()));
        let error = running.until_all_end(&cancel).await.unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("the worker failed: it panicked"),
            "{error}"
        );

        let cancel = CancellationToken::new();
        let mut running = Supervisor::default();
        running.start("API", async { Ok(()) });
        let error = running.until_all_end(&cancel).await.unwrap_err();
        assert_eq!(error.to_string(), "the API stopped on its own");
    }

    #[tokio::test]
    async fn roles_asked_to_stop_end_the_process_cleanly() {
        let cancel = CancellationToken::new();
        let mut running = Supervisor::default();
        running.start("API", until_cancelled(cancel.clone()));
        running.start("worker", until_cancelled(cancel.clone()));
        cancel.cancel();
        running
            .until_all_end(&cancel)
            .await
            .expect("a clean shutdown");
    }
}

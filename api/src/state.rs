//! What every handler can reach: the database, the clock, token verification, the worker's
//! wake-up and readiness, and the settings that shape validation.

use std::sync::Arc;

use hookbeat_scheduler::notify::Wakeup;
use hookbeat_scheduler::sealing::Sealer;
use hookbeat_scheduler::Clock;
use sea_orm::DatabaseConnection;

use crate::auth::TokenVerifier;
use crate::rate_limit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub clock: Arc<dyn Clock>,
    pub verifier: Arc<TokenVerifier>,
    /// Wakes an in-process worker when a schedule becomes due earlier than it planned.
    pub wakeup: Wakeup,
    pub allow_private_targets: bool,
    /// Seals the secrets the API stores, opens those it reads.
    pub sealer: Sealer,
    pub registry: prometheus::Registry,
    pub rate_limiter: Arc<RateLimiter>,
    /// Failed authentications per client address (see `auth`).
    pub auth_failures: Arc<RateLimiter>,
    /// How long a request's whole body may take to arrive.
    pub body_timeout: std::time::Duration,
    /// The worker of this process, if it runs one: `/readyz` reports on it.
    pub worker: Option<Arc<dyn Readiness>>,
    /// `hookbeat_fires_skipped_total`: the API counts the fires of a pause when it resumes one.
    pub fires_skipped: prometheus::IntCounterVec,
}

/// A part of the process that `/readyz` asks whether it can do its work.
pub trait Readiness: Send + Sync {
    /// What it found when ready (`owns 16 of 64 shards`), or why it is not.
    fn readiness(&self) -> Result<String, String>;
}

//! Intake: claiming due runs, loading what their deliveries need, and handing back what the
//! admission refused.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::{run, schedule, signing_secret};
use hookbeat_entity::{RunId, ScheduleId, TenantId};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::WorkerConfig;
use crate::definition::RetryPolicy;
use crate::fairness::{self, Rotation};
use crate::metrics::WorkerMetrics;
use crate::runs;
use crate::sealing::{Row, Sealer};
use crate::signing::SigningKey;
use crate::steps::Steps;
use crate::stored;

/// A run this worker holds the lease of, with everything its delivery needs.
pub(super) struct Claimed {
    pub run: run::Model,
    /// Its schedule's steps and retry policy; `None` when the schedule cannot be read.
    pub schedule: Option<(Steps, RetryPolicy)>,
    pub keys: Vec<SigningKey>,
}

impl Claimed {
    /// The tenant and target host its delivery counts against; `None` if it will not be sent.
    pub fn limit_key(&self) -> Option<(String, String)> {
        let (steps, _) = self.schedule.as_ref()?;
        let target = steps.target_of(&self.run)?;
        Some((
            self.run.tenant_id.to_string(),
            crate::politeness::host_key(&target.url),
        ))
    }
}

/// How long a run handed back over a politeness limit waits before it is due again.
const HAND_BACK_DELAY: Duration = Duration::milliseconds(500);

/// How often a worker looks for expired leases: a lease lasts a minute, so a second more costs a
/// lost run little, and the look is a statement that would otherwise run at every pass.
const RESCUE_INTERVAL: Duration = Duration::seconds(1);

pub(super) struct Intake {
    db: DatabaseConnection,
    worker_id: String,
    lease: Duration,
    /// How many expired leases one rescue takes back at most.
    rescue_batch: usize,
    /// Opens the signing secrets it loads.
    sealer: Sealer,
    metrics: WorkerMetrics,
    /// Where the tenant rotation of fair claims stands.
    rotation: tokio::sync::Mutex<Rotation>,
    /// When this worker last looked for expired leases.
    rescued_at: Mutex<Option<DateTime<Utc>>>,
}

impl Intake {
    pub(super) fn new(
        db: DatabaseConnection,
        config: &WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Self {
        Self {
            db,
            worker_id: config.worker_id.clone(),
            lease: config.lease,
            rescue_batch: config.claim_batch,
            sealer: config.sealer.clone(),
            metrics,
            rotation: Default::default(),
            rescued_at: Mutex::new(None),
        }
    }

    /// Claims up to `limit` due runs, shared fairly among their tenants and leaving those of the
    /// tenants in `skip` where they are, and loads what their deliveries need. Runs whose worker
    /// died mid-delivery are taken back first, so the claim takes them in their turn.
    pub(super) async fn claim(
        &self,
        now: DateTime<Utc>,
        limit: usize,
        skip: &[TenantId],
    ) -> anyhow::Result<Vec<Claimed>> {
        if self.rescue_due(now) {
            let rescued = runs::rescue_expired(&self.db, now, self.rescue_batch).await?;
            if rescued > 0 {
                self.metrics.leases_expired.inc_by(rescued as u64);
                tracing::info!(runs = rescued, "took back runs whose lease expired");
            }
        }
        let runs = {
            let mut rotation = self.rotation.lock().await;
            let lease_until = now + self.lease;
            fairness::claim_fair(
                &self.db,
                &self.worker_id,
                now,
                lease_until,
                limit,
                &mut rotation,
                skip,
            )
            .await?
        };
        self.metrics.claim_batch.observe(runs.len() as f64);
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let schedule_ids: HashSet<_> = runs.iter().map(|r| r.schedule_id).collect();
        let schedules: HashMap<_, _> = schedule::Entity::find()
            .filter(schedule::Column::Id.is_in(schedule_ids))
            .all(&self.db)
            .await
            .context("loading schedules of claimed runs")?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        self.take_in(runs, &schedules, now).await
    }

    /// Takes in runs this worker holds the lease of (claimed, or leased as they were made),
    /// given their schedules: decodes each schedule's steps and loads the tenants' signing keys.
    pub(super) async fn take_in(
        &self,
        runs: Vec<run::Model>,
        schedules: &HashMap<ScheduleId, schedule::Model>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Claimed>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self
            .keys_of(runs.iter().map(|r| r.tenant_id.as_str()).collect(), now)
            .await?;
        Ok(runs
            .into_iter()
            .map(|run| {
                let schedule = schedules.get(&run.schedule_id).and_then(decode);
                let keys = keys.get(&run.tenant_id).cloned().unwrap_or_default();
                Claimed {
                    run,
                    schedule,
                    keys,
                }
            })
            .collect())
    }

    /// The signing keys valid at `now` of each of `tenants` that has any.
    pub(super) async fn keys_of(
        &self,
        tenants: HashSet<&str>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<HashMap<TenantId, Vec<SigningKey>>> {
        let mut keys: HashMap<TenantId, Vec<SigningKey>> = HashMap::new();
        for secret in signing_secret::Entity::find_valid_for_tenants(tenants, now)
            .all(&self.db)
            .await
            .context("loading signing secrets")?
        {
            if let Some(key) = self.open(&secret) {
                keys.entry(secret.tenant_id).or_default().push(key);
            }
        }
        Ok(keys)
    }

    /// Gives back runs the admission refused, due again shortly.
    pub(super) async fn hand_back(
        &self,
        refused: &[Claimed],
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        if refused.is_empty() {
            return Ok(());
        }
        self.metrics.handed_back.inc_by(refused.len() as u64);
        tracing::debug!(runs = refused.len(), "handed back over a politeness limit");
        let ids: Vec<RunId> = refused.iter().map(|c| c.run.id).collect();
        runs::hand_back(&self.db, &self.worker_id, &ids, now + HAND_BACK_DELAY, now).await
    }

    /// A signing key from its stored secret; `None` (and a log line) if it cannot be read.
    fn open(&self, secret: &signing_secret::Model) -> Option<SigningKey> {
        let row = Row::SigningSecret {
            tenant: secret.tenant_id.as_str(),
            id: secret.id,
        };
        match self.sealer.open(row, &secret.secret) {
            Ok(plaintext) => match SigningKey::from_secret(&plaintext) {
                Ok(key) => Some(key),
                Err(error) => {
                    tracing::error!(tenant_id = %secret.tenant_id, %error, "unreadable signing secret");
                    None
                }
            },
            Err(error) => {
                tracing::error!(tenant_id = %secret.tenant_id, %error, "signing secret does not decrypt");
                None
            }
        }
    }

    /// Whether to look for expired leases now, and if so, marks it done. A clock that moved back
    /// (tests set it) looks at once.
    fn rescue_due(&self, now: DateTime<Utc>) -> bool {
        let mut last = self.rescued_at.lock().expect("rescue lock poisoned");
        let due = last.is_none_or(|last| now < last || now - last >= RESCUE_INTERVAL);
        if due {
            *last = Some(now);
        }
        due
    }
}

/// A schedule's steps and retry policy; `None` (and a log line) if it cannot be read.
fn decode(schedule: &schedule::Model) -> Option<(Steps, RetryPolicy)> {
    match (stored::steps(schedule), stored::retry(schedule)) {
        (Ok(steps), Ok(retry)) => Some((steps, retry)),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(schedule_id = %schedule.id, error = %format!("{error:#}"), "unreadable schedule");
            None
        }
    }
}

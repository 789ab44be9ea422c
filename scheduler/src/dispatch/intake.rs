//! Taking work in: claiming due runs, loading what their deliveries need, and keeping only what
//! fits under the politeness limits.

use super::*;

/// A claimed run with everything its delivery needs.
pub(super) struct Claimed {
    pub(super) run: run::Model,
    pub(super) schedule: Option<(Steps, RetryPolicy)>,
    pub(super) keys: Vec<SigningKey>,
    /// Its place under the politeness limits, held until the delivery ends.
    pub(super) reservation: Option<Reservation>,
}

/// The runs a claim kept, how many it took, and whether a politeness limit sent some back.
#[derive(Default)]
pub(super) struct Claim {
    pub(super) runs: Vec<Claimed>,
    /// Runs taken, kept or handed back: as many as were asked for means more may be waiting.
    pub(super) claimed: usize,
    pub(super) limited: bool,
}

/// How long a run handed back over a politeness limit waits before it is due again.
pub(super) const HAND_BACK_DELAY: Duration = Duration::milliseconds(500);

/// How often a worker looks for expired leases. A lease lasts a minute, so a second more costs a
/// lost run little, while looking at every claim cost a statement per pass, hundreds a second
/// under load.
const RESCUE_INTERVAL: Duration = Duration::seconds(1);

impl Inner {
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

impl Worker {
    /// Claims up to `limit` due runs and loads what their deliveries need, in two queries.
    pub(super) async fn claim(&self, now: DateTime<Utc>, limit: usize) -> anyhow::Result<Claim> {
        let inner = &self.inner;
        let lease_until = now + inner.config.lease;
        // Runs whose worker died mid-delivery first become due again, so the claim below takes
        // them in their place.
        if inner.rescue_due(now) {
            let rescued = claim::rescue_expired(&inner.db, now, inner.config.claim_batch).await?;
            if rescued > 0 {
                inner.metrics.leases_expired.inc_by(rescued as u64);
                tracing::info!(runs = rescued, "took back runs whose lease expired");
            }
        }
        // Each batch is shared out among the tenants with due runs; the runs of tenants at
        // their share of the slots stay where they are, so that the others' are claimed.
        let skip = inner.limits.tenants_at_limit();
        let runs = {
            let mut rotation = inner.rotation.lock().await;
            claim::claim_fair_skipping(
                &inner.db,
                &inner.config.worker_id,
                now,
                lease_until,
                limit,
                &mut rotation,
                &skip,
            )
            .await?
        };
        self.inner.metrics.claim_batch.observe(runs.len() as f64);
        if runs.is_empty() {
            return Ok(Claim::default());
        }
        let schedule_ids: HashSet<_> = runs.iter().map(|r| r.schedule_id).collect();
        let schedules: HashMap<_, _> = schedule::Entity::find()
            .filter(schedule::Column::Id.is_in(schedule_ids))
            .all(&inner.db)
            .await
            .context("loading schedules of claimed runs")?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        self.take_in(runs, &schedules, now).await
    }

    /// Takes in runs this worker holds the lease of (claimed, or leased as they were created),
    /// given their schedules: loads the tenants' signing keys and keeps what fits under the
    /// politeness limits.
    pub(super) async fn take_in(
        &self,
        runs: Vec<run::Model>,
        schedules: &HashMap<Uuid, schedule::Model>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim> {
        if runs.is_empty() {
            return Ok(Claim::default());
        }
        let inner = &self.inner;
        let tenants: HashSet<_> = runs.iter().map(|r| r.tenant_id.clone()).collect();
        let mut keys: HashMap<String, Vec<SigningKey>> = HashMap::new();
        for secret in signing_secret::Entity::find()
            .filter(signing_secret::Column::TenantId.is_in(tenants))
            .filter(
                sea_orm::Condition::any()
                    .add(signing_secret::Column::ExpiresAt.is_null())
                    .add(signing_secret::Column::ExpiresAt.gt(now)),
            )
            .all(&inner.db)
            .await
            .context("loading signing secrets")?
        {
            let row = Row::SigningSecret {
                tenant: &secret.tenant_id,
                id: secret.id,
            };
            let opened = inner.config.sealer.open(row, &secret.secret);
            match opened.map(|plaintext| SigningKey::from_secret(&plaintext)) {
                Ok(Ok(key)) => keys.entry(secret.tenant_id).or_default().push(key),
                Ok(Err(error)) => {
                    tracing::error!(tenant_id = %secret.tenant_id, %error, "unreadable signing secret")
                }
                Err(error) => {
                    tracing::error!(tenant_id = %secret.tenant_id, %error, "signing secret does not decrypt")
                }
            }
        }
        let claimed: Vec<Claimed> = runs
            .into_iter()
            .map(|run| {
                let schedule = schedules.get(&run.schedule_id).and_then(|s| {
                    match (stored::steps(s), stored::retry(s)) {
                        (Ok(target), Ok(retry)) => Some((target, retry)),
                        (Err(error), _) | (_, Err(error)) => {
                            tracing::error!(schedule_id = %s.id, error = %format!("{error:#}"), "unreadable schedule");
                            None
                        }
                    }
                });
                let keys = keys.get(&run.tenant_id).cloned().unwrap_or_default();
                Claimed { run, schedule, keys, reservation: None }
            })
            .collect();
        self.within_limits(claimed, now).await
    }

    /// Keeps the claimed runs that fit under the politeness limits and hands the rest back.
    pub(super) async fn within_limits(
        &self,
        claimed: Vec<Claimed>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Claim> {
        let mut kept = Vec::with_capacity(claimed.len());
        let mut handed_back = Vec::new();
        let mut refusing = Vec::new();
        for mut claimed in claimed {
            let Some(target) = claimed
                .schedule
                .as_ref()
                .and_then(|(steps, _)| steps.target_of(&claimed.run))
            else {
                kept.push(claimed);
                continue;
            };
            match self
                .inner
                .limits
                .try_reserve(&claimed.run.tenant_id, &host_key(&target.url))
            {
                Ok(reservation) => {
                    claimed.reservation = Some(reservation);
                    kept.push(claimed);
                }
                Err(key) => {
                    if !refusing.contains(&key) {
                        refusing.push(key);
                    }
                    handed_back.push(claimed.run.id);
                }
            }
        }
        let take_at_most = &self.inner.take_at_most;
        if handed_back.is_empty() {
            let now_at_most = take_at_most.load(Ordering::Relaxed);
            let grown = now_at_most.saturating_add((now_at_most / 4).max(1));
            take_at_most.store(grown.min(self.inner.config.claim_batch), Ordering::Relaxed);
        } else {
            take_at_most.store(kept.len().max(1), Ordering::Relaxed);
            self.inner
                .at_limit
                .lock()
                .expect("at-limit lock poisoned")
                .refused(refusing, now);
            self.inner
                .metrics
                .handed_back
                .inc_by(handed_back.len() as u64);
            tracing::debug!(
                runs = handed_back.len(),
                "handed back over a politeness limit"
            );
            claim::hand_back(
                &self.inner.db,
                &self.inner.config.worker_id,
                &handed_back,
                now + HAND_BACK_DELAY,
                now,
            )
            .await?;
        }
        Ok(Claim {
            claimed: kept.len() + handed_back.len(),
            runs: kept,
            limited: !handed_back.is_empty(),
        })
    }
}

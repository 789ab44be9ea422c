//! The worker's upkeep around the loop: shard heartbeats, materialising its shards, the next due
//! instant, and the gauges.

use super::*;

/// The earliest schedule fire, a `MIN` over `schedules_due_idx` (SQLite: one process owns every
/// shard). The lower bound leaves out any instant outside 1970 … 9999, which SQLite's text
/// would sort first (see `materialise::SELECT_DUE`).
const NEXT_SCHEDULE: &str = "SELECT MIN(next_run_at) AS due FROM schedules \
     WHERE enabled AND next_run_at IS NOT NULL AND next_run_at >= '1970-01-01'";

/// The same within owned shards: one probe of `schedules_shard_due_idx` per shard (PostgreSQL).
const NEXT_SCHEDULE_IN_SHARDS: &str =
    "SELECT MIN(d.due) AS due FROM unnest(ARRAY[{shards}]) AS s(shard) \
     CROSS JOIN LATERAL (SELECT next_run_at AS due FROM schedules \
         WHERE shard = s.shard AND enabled AND next_run_at IS NOT NULL \
         ORDER BY next_run_at LIMIT 1) d";

/// The earliest instant a run needs this worker: a waiting run falling due (a `MIN` over
/// `runs_waiting_idx`) or a lease expiring, after which a run in flight is taken back (a `MIN`
/// over `runs_leased_idx`). One round trip; each half keeps to its own partial index.
const NEXT_RUN: &str = "SELECT MIN(due) AS due FROM ( \
     SELECT MIN(due_at) AS due FROM runs WHERE status IN ('pending', 'retrying') \
     UNION ALL SELECT MIN(due_at) AS due FROM runs WHERE status = 'delivering') AS next";

impl Worker {
    /// Renews this worker's registration and shards (PostgreSQL); returns the shards it owns.
    pub async fn heartbeat(&self) -> anyhow::Result<Vec<i32>> {
        let Some(coordinator) = &self.inner.coordinator else {
            return Ok((0..SHARD_COUNT as i32).collect());
        };
        let now = self.inner.clock.now();
        let beat = coordinator.heartbeat(now).await?;
        *self
            .inner
            .last_heartbeat
            .lock()
            .expect("heartbeat lock poisoned") = Some(now);
        let metrics = &self.inner.metrics;
        metrics.shards_owned.set(beat.owned.len() as i64);
        metrics.workers_live.set(beat.live_workers as i64);
        metrics.shards_unowned.set(beat.unowned);
        let owned = beat.owned;
        let mut current = self.inner.owned.write().expect("shard list lock poisoned");
        if *current != owned {
            tracing::info!(shards = owned.len(), "shards rebalanced");
            *current = owned.clone();
            // New shards may hold due schedules.
            self.inner.wakeup.wake();
        }
        Ok(owned)
    }

    /// Leaves the shard group at once (graceful shutdown); see [`Coordinator::leave`].
    pub async fn leave(&self) -> anyhow::Result<()> {
        if let Some(coordinator) = &self.inner.coordinator {
            *self
                .inner
                .last_heartbeat
                .lock()
                .expect("heartbeat lock poisoned") = None;
            coordinator.leave(self.inner.clock.now()).await?;
            self.inner
                .owned
                .write()
                .expect("shard list lock poisoned")
                .clear();
            self.inner.metrics.shards_owned.set(0);
        }
        Ok(())
    }

    /// Whether this worker takes part in delivering: `Ok` with what it holds, or `Err` with why
    /// not. A worker that renewed its shards within their lease is ready even while it owns
    /// none yet (it is acquiring them as other workers let go).
    pub fn readiness(&self) -> Result<String, String> {
        let Some(coordinator) = &self.inner.coordinator else {
            return Ok(format!("owns all {SHARD_COUNT} shards"));
        };
        let last = *self
            .inner
            .last_heartbeat
            .lock()
            .expect("heartbeat lock poisoned");
        let Some(last) = last else {
            return Err("not in the shard group: no successful heartbeat yet, or it left".into());
        };
        let age = self.inner.clock.now() - last;
        if age > coordinator.config().lease_ttl {
            return Err(format!(
                "its last successful heartbeat was {} s ago, longer than the shard lease ({} s): \
                 its shards are going to other workers",
                age.num_seconds(),
                coordinator.config().lease_ttl.num_seconds()
            ));
        }
        let owned = self
            .inner
            .owned
            .read()
            .expect("shard list lock poisoned")
            .len();
        Ok(if owned == 0 {
            format!("acquiring shards (owns 0 of {SHARD_COUNT})")
        } else {
            format!("owns {owned} of {SHARD_COUNT} shards")
        })
    }

    pub(super) async fn heartbeat_loop(self, cancel: CancellationToken) {
        let Some(coordinator) = &self.inner.coordinator else {
            return;
        };
        let every = coordinator
            .config()
            .heartbeat
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(2));
        while !cancel.is_cancelled() {
            if let Err(error) = self.heartbeat().await {
                tracing::warn!(error = %format!("{error:#}"), "shard heartbeat failed");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(every) => {}
            }
        }
    }

    /// Materialises one batch of this worker's due schedules, leasing up to `lease_max` of the
    /// fires already due to this worker.
    pub(super) async fn materialise(
        &self,
        now: DateTime<Utc>,
        lease_max: usize,
    ) -> anyhow::Result<materialise::Materialised> {
        let inner = &self.inner;
        let lease = (lease_max > 0).then(|| materialise::Lease {
            worker_id: &inner.config.worker_id,
            until: now + inner.config.lease,
            max: lease_max,
        });
        let owned;
        let shards = if inner.coordinator.is_none() {
            Shards::All
        } else {
            owned = inner
                .owned
                .read()
                .expect("shard list lock poisoned")
                .clone();
            Shards::Owned(&owned)
        };
        materialise::materialise_and_lease(
            &inner.db,
            now,
            inner.config.materialise_batch,
            shards,
            lease,
        )
        .await
    }

    /// The earliest instant at which one of this worker's schedules or any run becomes due.
    pub async fn next_due(&self) -> anyhow::Result<Option<DateTime<Utc>>> {
        #[derive(FromQueryResult)]
        struct Due {
            due: Option<DateTime<Utc>>,
        }
        let db = &self.inner.db;
        let backend = db.get_database_backend();
        let schedules = match &self.inner.coordinator {
            None => NEXT_SCHEDULE.to_owned(),
            Some(_) => {
                let owned = self
                    .inner
                    .owned
                    .read()
                    .expect("shard list lock poisoned")
                    .clone();
                if owned.is_empty() {
                    String::new()
                } else {
                    let list: Vec<String> = owned.iter().map(i32::to_string).collect();
                    NEXT_SCHEDULE_IN_SHARDS.replace("{shards}", &list.join(", "))
                }
            }
        };
        let mut earliest = None;
        for query in [schedules.as_str(), NEXT_RUN] {
            if query.is_empty() {
                continue;
            }
            let row = Due::find_by_statement(sql::statement(backend, query, vec![]))
                .one(db)
                .await
                .context("reading the next due time")?;
            if let Some(due) = row.and_then(|r| r.due) {
                earliest = Some(earliest.map_or(due, |e: DateTime<Utc>| e.min(due)));
            }
        }
        Ok(earliest)
    }

    /// Recounts the pending-runs and enabled-schedules gauges. These are installation-wide counts
    /// (the enabled count scans the schedules table), so with several workers only the owner of
    /// shard 0 counts; the others keep 0 (dashboards take the `max`).
    pub(super) async fn refresh_gauges(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        if self.inner.coordinator.is_some()
            && !self
                .inner
                .owned
                .read()
                .expect("shard list lock poisoned")
                .contains(&0)
        {
            self.inner.metrics.runs_pending.set(0);
            self.inner.metrics.schedules_enabled.set(0);
            return Ok(());
        }
        #[derive(FromQueryResult)]
        struct Count {
            n: i64,
        }
        let db = &self.inner.db;
        let backend = db.get_database_backend();
        let count = |query: &'static str, values: Vec<sea_orm::Value>| async move {
            Count::find_by_statement(sql::statement(backend, query, values))
                .one(db)
                .await
                .map(|row| row.map_or(0, |r| r.n))
        };
        let pending = count(
            "SELECT COUNT(*) AS n FROM runs WHERE status IN ('pending', 'retrying', 'delivering') AND due_at <= $1",
            vec![now.into()],
        )
        .await
        .context("counting pending runs")?;
        let enabled = count("SELECT COUNT(*) AS n FROM schedules WHERE enabled", vec![])
            .await
            .context("counting enabled schedules")?;
        self.inner.metrics.runs_pending.set(pending);
        self.inner.metrics.schedules_enabled.set(enabled);
        Ok(())
    }
}

//! Shard leases among workers (PostgreSQL): registration, rebalancing and leaving, as SQL.
//!
//! Every heartbeat a worker (1) registers itself with an expiry, (2) forgets workers whose
//! expiry passed, (3) ranks the live workers by id and computes its fair share — shard `s`
//! belongs to the worker of rank `s mod n`, so shares differ by at most one — (4) gives back the
//! shards outside its share and (5) takes or renews the shards of its share that are free, its
//! own, or held under an expired lease. A worker that joins or leaves moves shards within one
//! heartbeat; one that dies loses its shards when its lease expires (`lease_ttl`, 15 s).

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::{list, SHARD_COUNT};
use crate::runs;
use crate::sql;

#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// How often a worker renews its registration and its shards.
    pub heartbeat: Duration,
    /// How long a registration and a shard lease last without renewal.
    pub lease_ttl: Duration,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::seconds(2),
            lease_ttl: Duration::seconds(15),
        }
    }
}

const REGISTER: &str = "INSERT INTO workers (id, started_at, heartbeat_at, expires_at) \
     VALUES ($1, $2, $2, $3) \
     ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2, expires_at = $3";
const REAP: &str = "DELETE FROM workers WHERE expires_at < $1";
const LIVE: &str = "SELECT id FROM workers WHERE expires_at >= $1 ORDER BY id";
const RELEASE_ALL: &str =
    "UPDATE shard_leases SET owner = NULL, lease_until = NULL WHERE owner = $1";
const DEREGISTER: &str = "DELETE FROM workers WHERE id = $1";
const UNOWNED: &str =
    "SELECT COUNT(*) AS n FROM shard_leases WHERE owner IS NULL OR lease_until < $1";
/// What a heartbeat found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The shards this worker owns now.
    pub owned: Vec<i32>,
    pub live_workers: usize,
    /// Shards nobody owns (or whose owner's lease expired) after this heartbeat.
    pub unowned: i64,
}

/// The shards of the worker ranked `rank` among `workers` live workers.
pub fn fair_share(rank: usize, workers: usize) -> Vec<i32> {
    (0..SHARD_COUNT as i32)
        .filter(|shard| (*shard as usize) % workers.max(1) == rank)
        .collect()
}

pub struct Coordinator {
    db: DatabaseConnection,
    worker_id: String,
    config: ShardConfig,
    started_at: DateTime<Utc>,
}

impl Coordinator {
    pub fn new(
        db: DatabaseConnection,
        worker_id: String,
        config: ShardConfig,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            db,
            worker_id,
            config,
            started_at,
        }
    }

    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// One heartbeat at `now`.
    pub async fn heartbeat(&self, now: DateTime<Utc>) -> anyhow::Result<Heartbeat> {
        let owned = self.rebalance(now).await?;
        let count = sql::statement(self.db.get_database_backend(), UNOWNED, vec![now.into()]);
        let unowned: Option<i64> = sql::value(&self.db, count, "n")
            .await
            .context("counting unowned shards")?;
        let unowned = unowned.unwrap_or(0);
        let live_workers = self.live(now).await?.len();
        Ok(Heartbeat {
            owned,
            live_workers,
            unowned,
        })
    }

    async fn live(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
        let live = sql::statement(self.db.get_database_backend(), LIVE, vec![now.into()]);
        sql::column(&self.db, live, "id")
            .await
            .context("listing live workers")
    }

    /// Registers, reaps, and takes or gives shards to match the fair share; returns those owned.
    async fn rebalance(&self, now: DateTime<Utc>) -> anyhow::Result<Vec<i32>> {
        let db = &self.db;
        let backend = db.get_database_backend();
        let id = self.worker_id.as_str();
        let expires = now + self.config.lease_ttl;
        db.execute(sql::statement(
            backend,
            REGISTER,
            vec![id.into(), self.started_at.into(), expires.into()],
        ))
        .await
        .context("registering the worker")?;
        db.execute(sql::statement(backend, REAP, vec![now.into()]))
            .await
            .context("forgetting expired workers")?;
        let live = self.live(now).await?;
        let rank = live.iter().position(|w| w == id).unwrap_or(0);
        let share = fair_share(rank, live.len());

        let release = if share.is_empty() {
            RELEASE_ALL.to_owned()
        } else {
            format!("{RELEASE_ALL} AND shard NOT IN ({})", list(&share))
        };
        db.execute(sql::statement(backend, &release, vec![id.into()]))
            .await
            .context("giving back shards")?;
        if share.is_empty() {
            return Ok(Vec::new());
        }
        let acquire = format!(
            "UPDATE shard_leases SET owner = $1, lease_until = $2 \
             WHERE shard IN ({}) AND (owner IS NULL OR owner = $1 OR lease_until < $3) \
             RETURNING shard",
            list(&share)
        );
        let acquire = sql::statement(
            backend,
            &acquire,
            vec![id.into(), expires.into(), now.into()],
        );
        let mut owned: Vec<i32> = sql::column(db, acquire, "shard")
            .await
            .context("taking shards")?;
        owned.sort_unstable();
        Ok(owned)
    }

    /// Leaves the group: gives back every shard, makes this worker's unfinished runs claimable
    /// now, and deregisters, so the others rebalance at their next heartbeat.
    pub async fn leave(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let backend = self.db.get_database_backend();
        let id = self.worker_id.as_str();
        self.db
            .execute(sql::statement(backend, RELEASE_ALL, vec![id.into()]))
            .await
            .context("giving back shards")?;
        runs::release_owned(&self.db, id, now)
            .await
            .context("releasing run leases")?;
        self.db
            .execute(sql::statement(backend, DEREGISTER, vec![id.into()]))
            .await
            .context("deregistering")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_every_shard_once_and_differ_by_at_most_one() {
        for workers in 1..=10 {
            let shares: Vec<Vec<i32>> =
                (0..workers).map(|rank| fair_share(rank, workers)).collect();
            let mut all: Vec<i32> = shares.iter().flatten().copied().collect();
            all.sort_unstable();
            assert_eq!(
                all,
                (0..SHARD_COUNT as i32).collect::<Vec<_>>(),
                "{workers} workers"
            );
            let sizes: Vec<usize> = shares.iter().map(Vec::len).collect();
            assert!(
                sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
                "{sizes:?}"
            );
        }
    }
}

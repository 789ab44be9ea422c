//! Shards: which schedules a worker materialises. Every schedule belongs to one of
//! [`SHARD_COUNT`] shards, fixed by its id; live workers share the shards out through leases
//! (PostgreSQL, [`Coordinator`]), and one process owns them all on SQLite. [`ShardView`] is a
//! worker's view: what it owns, when it last renewed, and whether it is ready.
//!
//! Ownership is about load, not correctness: while a shard changes hands two workers may both
//! materialise it for an instant, and row locks plus the unique (schedule, scheduled_for) key
//! still make every fire exactly one run.

mod coordinator;

pub use coordinator::{fair_share, Coordinator, Heartbeat, ShardConfig};

use std::sync::{Mutex, RwLock};

use chrono::{DateTime, Utc};
use hookbeat_entity::ScheduleId;
use sea_orm::DatabaseConnection;

/// Schedules are spread over a fixed number of logical shards, the unit that workers divide
/// among themselves. Fixed at install: changing it would move every schedule.
pub const SHARD_COUNT: u64 = 64;

/// The shard of a schedule, from its id's random bits.
pub fn shard_of(id: ScheduleId) -> i32 {
    (crate::schedule::splitmix64(id.0.as_u128() as u64) % SHARD_COUNT) as i32
}

/// Shard ids as an SQL list (`1, 5, 9`); they are integers, so they are written into the SQL.
pub(crate) fn list(shards: &[i32]) -> String {
    shards
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which shards a pass may materialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shards {
    /// Every shard: the one process of an embedded (SQLite) install.
    All,
    /// These shards only.
    Owned(Vec<i32>),
}

impl Shards {
    /// The SQL condition restricting a query to these shards (empty for all shards).
    pub fn condition(&self) -> String {
        match self {
            Shards::All => String::new(),
            Shards::Owned(shards) => format!(" AND shard IN ({})", list(shards)),
        }
    }
}

/// A worker's view of the shards: the leases it holds (PostgreSQL) or all of them (SQLite).
pub struct ShardView {
    /// Shares the shards with other workers; `None` on SQLite, where one process owns them all.
    coordinator: Option<Coordinator>,
    owned: RwLock<Vec<i32>>,
    /// When this worker last renewed its shards; `None` before it joined and after it left.
    last_heartbeat: Mutex<Option<DateTime<Utc>>>,
}

/// What a heartbeat changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    pub heartbeat: Heartbeat,
    /// Whether the shards owned differ from before the heartbeat.
    pub moved: bool,
}

impl ShardView {
    /// A view that shares the shards through `db` when `coordinated`, else owns them all.
    pub fn new(
        db: DatabaseConnection,
        worker_id: String,
        config: ShardConfig,
        coordinated: bool,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            coordinator: coordinated.then(|| Coordinator::new(db, worker_id, config, now)),
            owned: RwLock::new(Vec::new()),
            last_heartbeat: Mutex::new(None),
        }
    }

    /// Whether other workers may own shards (PostgreSQL).
    pub fn is_shared(&self) -> bool {
        self.coordinator.is_some()
    }

    /// How often to renew the leases; `None` when there is nothing to renew.
    pub fn heartbeat_every(&self) -> Option<std::time::Duration> {
        let coordinator = self.coordinator.as_ref()?;
        Some(
            coordinator
                .config()
                .heartbeat
                .to_std()
                .unwrap_or(std::time::Duration::from_secs(2)),
        )
    }

    /// Renews this worker's registration and leases at `now`; `None` when there is nothing to
    /// renew (it owns every shard).
    pub async fn heartbeat(&self, now: DateTime<Utc>) -> anyhow::Result<Option<Renewed>> {
        let Some(coordinator) = &self.coordinator else {
            return Ok(None);
        };
        let heartbeat = coordinator.heartbeat(now).await?;
        *self.last_heartbeat.lock().expect("heartbeat lock poisoned") = Some(now);
        let mut owned = self.owned.write().expect("shard list lock poisoned");
        let moved = *owned != heartbeat.owned;
        if moved {
            owned.clone_from(&heartbeat.owned);
        }
        Ok(Some(Renewed { heartbeat, moved }))
    }

    /// Leaves the group at once (graceful shutdown); see [`Coordinator::leave`].
    pub async fn leave(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        if let Some(coordinator) = &self.coordinator {
            *self.last_heartbeat.lock().expect("heartbeat lock poisoned") = None;
            coordinator.leave(now).await?;
            self.owned
                .write()
                .expect("shard list lock poisoned")
                .clear();
        }
        Ok(())
    }

    /// The shards a pass may materialise now.
    pub fn scope(&self) -> Shards {
        match &self.coordinator {
            None => Shards::All,
            Some(_) => Shards::Owned(self.owned.read().expect("shard list lock poisoned").clone()),
        }
    }

    /// The shards this worker owns.
    pub fn owned(&self) -> Vec<i32> {
        match &self.coordinator {
            None => (0..SHARD_COUNT as i32).collect(),
            Some(_) => self.owned.read().expect("shard list lock poisoned").clone(),
        }
    }

    /// Whether this worker owns `shard`.
    pub fn owns(&self, shard: i32) -> bool {
        self.coordinator.is_none()
            || self
                .owned
                .read()
                .expect("shard list lock poisoned")
                .contains(&shard)
    }

    /// Whether this worker takes part in delivering at `now`: `Ok` with what it holds, or `Err`
    /// with why not. A worker that renewed its shards within their lease is ready even while it
    /// owns none yet (it is acquiring them as other workers let go).
    pub fn readiness(&self, now: DateTime<Utc>) -> Result<String, String> {
        let Some(coordinator) = &self.coordinator else {
            return Ok(format!("owns all {SHARD_COUNT} shards"));
        };
        let last = *self.last_heartbeat.lock().expect("heartbeat lock poisoned");
        let Some(last) = last else {
            return Err("not in the shard group: no successful heartbeat yet, or it left".into());
        };
        let age = now - last;
        let ttl = coordinator.config().lease_ttl;
        if age > ttl {
            return Err(format!(
                "its last successful heartbeat was {} s ago, longer than the shard lease ({} s): \
                 its shards are going to other workers",
                age.num_seconds(),
                ttl.num_seconds()
            ));
        }
        let owned = self.owned.read().expect("shard list lock poisoned").len();
        Ok(if owned == 0 {
            format!("acquiring shards (owns 0 of {SHARD_COUNT})")
        } else {
            format!("owns {owned} of {SHARD_COUNT} shards")
        })
    }
}

//! The worker's settings and their defaults.

use chrono::Duration;

use crate::sealing::Sealer;
use crate::shards::ShardConfig;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in `runs.locked_by`; unique per process.
    pub worker_id: String,
    /// Requests in flight at once. A delivery holds its slot until the receiver's answer is in;
    /// recording the result does not hold it (see `admission`).
    pub concurrency: usize,
    /// Runs claimed per statement, and fires leased per materialise batch: as many as the
    /// delivery slots by default, so that one pass can refill every slot that came free while
    /// the last one ran.
    pub claim_batch: usize,
    /// Schedules materialised per transaction.
    pub materialise_batch: u64,
    /// How long a claim is held. It must outlast the default delivery timeout (15 s) with room
    /// for recording the result; longer timeouts extend their own lease before sending.
    pub lease: Duration,
    /// The longest the loop sleeps without looking at the database.
    pub max_idle: Duration,
    /// How long in-flight deliveries may finish after shutdown begins.
    pub shutdown_grace: std::time::Duration,
    pub allow_private_targets: bool,
    /// Opens the signing secrets the worker loads (`app::build` gives it the API's keys).
    pub sealer: Sealer,
    /// Shard heartbeats and leases (PostgreSQL).
    pub shards: ShardConfig,
    /// How long finished runs are kept.
    pub retention: Duration,
    /// Deliveries in flight per tenant, in this worker.
    pub max_in_flight_per_tenant: usize,
    /// Deliveries in flight per target host (`host:port`), in this worker.
    pub max_in_flight_per_host: usize,
    /// How long a worker may record no result while work has been due that long before it
    /// reports a stall (see `stall`).
    pub stall_after: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            worker_id: default_worker_id(),
            concurrency: 256,
            claim_batch: 256,
            materialise_batch: 500,
            lease: Duration::seconds(60),
            max_idle: Duration::seconds(1),
            shutdown_grace: std::time::Duration::from_secs(30),
            allow_private_targets: false,
            sealer: Sealer::plaintext(),
            shards: ShardConfig::default(),
            retention: Duration::days(30),
            max_in_flight_per_tenant: 128,
            max_in_flight_per_host: 64,
            stall_after: Duration::seconds(30),
        }
    }
}

/// `host-pid-random`: readable in `runs.locked_by`, unique across restarts.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

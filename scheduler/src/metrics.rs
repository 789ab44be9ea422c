//! The worker's Prometheus metrics (names fixed by the contract, §6). Registered on a registry
//! the binary owns, so several apps in one test process do not share counters.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};

/// Fire lag spans 1 ms (a healthy worker) to 10 min (a worker that was down).
const FIRE_LAG_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];
/// Receivers answer in milliseconds to the 15-minute timeout ceiling.
const DELIVERY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 300.0,
    900.0,
];

#[derive(Clone)]
pub struct WorkerMetrics {
    pub fire_lag: Histogram,
    pub deliveries: IntCounterVec,
    pub delivery_duration: Histogram,
    pub runs_pending: IntGauge,
    pub schedules_enabled: IntGauge,
    pub shards_owned: IntGauge,
    /// Runs per claim statement: how full the batches are.
    pub claim_batch: Histogram,
    /// Runs that failed for good (the dead letters).
    pub dead_letters: IntCounter,
    /// Claimed runs handed back over a politeness limit.
    pub handed_back: IntCounter,
    /// Runs this worker holds, leased, waiting for a place under their tenant's or host's limit.
    pub runs_waiting: IntGauge,
    /// Live workers, as this worker saw them at its last heartbeat (PostgreSQL).
    pub workers_live: IntGauge,
    /// Shards without a live owner at this worker's last heartbeat (PostgreSQL).
    pub shards_unowned: IntGauge,
    /// Runs taken back from a worker whose lease expired before it recorded a result.
    pub leases_expired: IntCounter,
    /// Write-backs of a group of results that failed (and were tried again while the runs'
    /// leases held).
    pub write_back_failures: IntCounter,
    /// Why the worker loop woke: `timer` (the next due instant or the idle limit), `early` (a
    /// wake-up: an API change, a NOTIFY, a delivery slot coming free), `notify` (NOTIFYs received
    /// from PostgreSQL, counted as they arrive).
    pub wakeups: IntCounterVec,
    /// 1 while the worker is stalled: no result recorded while work is due (see
    /// `dispatch::stall`).
    pub worker_stalled: IntGauge,
    /// Stalls that began.
    pub worker_stalls: IntCounter,
    /// Fires the engine passed over without a run, by reason (`crate::skips::SkipReason`).
    pub fires_skipped: IntCounterVec,
    /// Schedules by health state, installation-wide (counted by the owner of shard 0, like the
    /// other installation-wide gauges; the others keep 0).
    pub schedules_by_health: IntGaugeVec,
    /// Notices issued, by transition (`crate::notices::Transition`).
    pub notices: IntCounterVec,
    /// Attempts at delivering notices, by outcome: delivered, retry, failed (given up).
    pub notice_deliveries: IntCounterVec,
}

impl WorkerMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            fire_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "hookbeat_fire_lag_seconds",
                    "Start of a run's first attempt minus its scheduled time.",
                )
                .buckets(FIRE_LAG_BUCKETS.to_vec()),
            )?,
            deliveries: IntCounterVec::new(
                Opts::new(
                    "hookbeat_deliveries_total",
                    "Delivery attempts by outcome: success, retry (will be retried) or failed (for good).",
                ),
                &["outcome"],
            )?,
            delivery_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "hookbeat_delivery_duration_seconds",
                    "Duration of one delivery attempt, from sending to the end of the response.",
                )
                .buckets(DELIVERY_BUCKETS.to_vec()),
            )?,
            runs_pending: IntGauge::new(
                "hookbeat_runs_pending",
                "Runs that are due and not yet delivered (pending, retrying or in flight).",
            )?,
            schedules_enabled: IntGauge::new("hookbeat_schedules_enabled", "Enabled schedules.")?,
            shards_owned: IntGauge::new(
                "hookbeat_shards_owned",
                "Schedule shards this worker owns.",
            )?,
            claim_batch: Histogram::with_opts(
                HistogramOpts::new("hookbeat_claim_batch_size", "Runs claimed per claim statement.")
                    .buckets(vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0]),
            )?,
            dead_letters: IntCounter::new(
                "hookbeat_dead_letters_total",
                "Runs that failed for good (kept as failed until redelivered or pruned).",
            )?,
            handed_back: IntCounter::new(
                "hookbeat_handed_back_total",
                "Claimed runs handed back because their tenant or host was at its in-flight limit.",
            )?,
            runs_waiting: IntGauge::new(
                "hookbeat_runs_waiting_for_place",
                "Runs a worker holds, leased, until their tenant or host is under its in-flight limit.",
            )?,
            write_back_failures: IntCounter::new(
                "hookbeat_write_back_failures_total",
                "Failed write-backs of a group of delivery results; each is tried again while the runs' leases hold.",
            )?,
            workers_live: IntGauge::new(
                "hookbeat_workers_live",
                "Live workers seen at this worker's last heartbeat.",
            )?,
            shards_unowned: IntGauge::new(
                "hookbeat_shards_unowned",
                "Shards without a live owner at this worker's last heartbeat.",
            )?,
            leases_expired: IntCounter::new(
                "hookbeat_leases_expired_total",
                "Runs taken back because their worker's lease expired before it recorded a result.",
            )?,
            wakeups: IntCounterVec::new(
                Opts::new(
                    "hookbeat_wakeups_total",
                    "Worker loop wake-ups by source: timer, early (any wake-up), notify (NOTIFYs received).",
                ),
                &["source"],
            )?,
            worker_stalled: IntGauge::new(
                "hookbeat_worker_stalled",
                "1 while this worker has recorded no result for its stall limit (30 s) while work has been due that long.",
            )?,
            worker_stalls: IntCounter::new(
                "hookbeat_worker_stalls_total",
                "Stalls of this worker that began (see hookbeat_worker_stalled).",
            )?,
            fires_skipped: IntCounterVec::new(
                Opts::new(
                    "hookbeat_fires_skipped_total",
                    "Fires passed over without a run, by reason: overlap, catchup, dst_gap, paused, max_runs, end_at.",
                ),
                &["reason"],
            )?,
            schedules_by_health: IntGaugeVec::new(
                Opts::new(
                    "hookbeat_schedules_by_health",
                    "Schedules by health state (healthy, failing, late, paused, ended), installation-wide: counted by one worker, 0 on the others.",
                ),
                &["state"],
            )?,
            notices: IntCounterVec::new(
                Opts::new(
                    "hookbeat_notices_total",
                    "Notices issued to notify targets, by transition: failing, recovered, paused.",
                ),
                &["transition"],
            )?,
            notice_deliveries: IntCounterVec::new(
                Opts::new(
                    "hookbeat_notice_deliveries_total",
                    "Attempts at delivering notices, by outcome: delivered, retry (will be retried) or failed (given up).",
                ),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(metrics.fire_lag.clone()))?;
        registry.register(Box::new(metrics.deliveries.clone()))?;
        registry.register(Box::new(metrics.delivery_duration.clone()))?;
        registry.register(Box::new(metrics.runs_pending.clone()))?;
        registry.register(Box::new(metrics.schedules_enabled.clone()))?;
        registry.register(Box::new(metrics.shards_owned.clone()))?;
        registry.register(Box::new(metrics.claim_batch.clone()))?;
        registry.register(Box::new(metrics.dead_letters.clone()))?;
        registry.register(Box::new(metrics.handed_back.clone()))?;
        registry.register(Box::new(metrics.runs_waiting.clone()))?;
        registry.register(Box::new(metrics.workers_live.clone()))?;
        registry.register(Box::new(metrics.shards_unowned.clone()))?;
        registry.register(Box::new(metrics.leases_expired.clone()))?;
        registry.register(Box::new(metrics.write_back_failures.clone()))?;
        registry.register(Box::new(metrics.wakeups.clone()))?;
        registry.register(Box::new(metrics.worker_stalled.clone()))?;
        registry.register(Box::new(metrics.worker_stalls.clone()))?;
        registry.register(Box::new(metrics.fires_skipped.clone()))?;
        registry.register(Box::new(metrics.schedules_by_health.clone()))?;
        registry.register(Box::new(metrics.notices.clone()))?;
        registry.register(Box::new(metrics.notice_deliveries.clone()))?;
        for state in crate::health::HealthState::ALL {
            metrics
                .schedules_by_health
                .with_label_values(&[state.as_str()]);
        }
        for transition in crate::notices::Transition::ALL {
            metrics.notices.with_label_values(&[transition.as_str()]);
        }
        for outcome in ["delivered", "retry", "failed"] {
            metrics.notice_deliveries.with_label_values(&[outcome]);
        }
        for reason in crate::skips::SkipReason::ALL {
            metrics.fires_skipped.with_label_values(&[reason.as_str()]);
        }
        // Pre-create every label value so dashboards see zeros instead of missing series.
        for outcome in ["success", "retry", "failed"] {
            metrics.deliveries.with_label_values(&[outcome]);
        }
        for source in ["timer", "early", "notify"] {
            metrics.wakeups.with_label_values(&[source]);
        }
        Ok(metrics)
    }
}

/// `hookbeat_build_info{version} 1`: which version each process runs.
pub fn register_build_info(registry: &Registry) -> prometheus::Result<()> {
    let info = IntGauge::with_opts(
        Opts::new(
            "hookbeat_build_info",
            "Always 1; the version label says which build runs.",
        )
        .const_label("version", env!("CARGO_PKG_VERSION")),
    )?;
    info.set(1);
    registry.register(Box::new(info))
}

/// `hookbeat_db_connections{state="idle|in_use"}`: the process's database pools, read at each
/// scrape.
pub struct DbPoolCollector {
    /// The process's pools (the API's and the worker's): the gauges count them together.
    pools: Vec<DatabaseConnection>,
    connections: IntGaugeVec,
}

impl DbPoolCollector {
    pub fn register(registry: &Registry, pools: Vec<DatabaseConnection>) -> prometheus::Result<()> {
        let connections = IntGaugeVec::new(
            Opts::new(
                "hookbeat_db_connections",
                "Database pool connections of this process by state: idle or in_use.",
            ),
            &["state"],
        )?;
        registry.register(Box::new(Self { pools, connections }))
    }

    /// (open, idle) connections of the pools.
    fn pools(&self) -> (u32, usize) {
        self.pools
            .iter()
            .map(pool)
            .fold((0, 0), |(open, idle), (o, i)| (open + o, idle + i))
    }
}

/// (open, idle) connections of one pool.
fn pool(db: &DatabaseConnection) -> (u32, usize) {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DbBackend::Sqlite => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size(), pool.num_idle())
        }
        DbBackend::MySql => (0, 0),
    }
}

impl Collector for DbPoolCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.connections.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (open, idle) = self.pools();
        let idle = idle as i64;
        self.connections.with_label_values(&["idle"]).set(idle);
        self.connections
            .with_label_values(&["in_use"])
            .set((open as i64 - idle).max(0));
        self.connections.collect()
    }
}

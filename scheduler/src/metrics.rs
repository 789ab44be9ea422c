//! The worker's Prometheus metrics (names fixed by the contract, §6). Registered on a registry
//! the binary owns, so several apps in one test process do not share counters.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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
    /// Live workers, as this worker saw them at its last heartbeat (PostgreSQL).
    pub workers_live: IntGauge,
    /// Shards without a live owner at this worker's last heartbeat (PostgreSQL).
    pub shards_unowned: IntGauge,
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
            workers_live: IntGauge::new(
                "hookbeat_workers_live",
                "Live workers seen at this worker's last heartbeat.",
            )?,
            shards_unowned: IntGauge::new(
                "hookbeat_shards_unowned",
                "Shards without a live owner at this worker's last heartbeat.",
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
        registry.register(Box::new(metrics.workers_live.clone()))?;
        registry.register(Box::new(metrics.shards_unowned.clone()))?;
        // Pre-create every outcome so dashboards see zeros instead of missing series.
        for outcome in ["success", "retry", "failed"] {
            metrics.deliveries.with_label_values(&[outcome]);
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

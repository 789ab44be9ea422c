//! The worker's Prometheus metrics (names fixed by the contract, §6). Registered on a registry
//! the binary owns, so several apps in one test process do not share counters.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

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
        };
        registry.register(Box::new(metrics.fire_lag.clone()))?;
        registry.register(Box::new(metrics.deliveries.clone()))?;
        registry.register(Box::new(metrics.delivery_duration.clone()))?;
        registry.register(Box::new(metrics.runs_pending.clone()))?;
        registry.register(Box::new(metrics.schedules_enabled.clone()))?;
        registry.register(Box::new(metrics.shards_owned.clone()))?;
        // Pre-create every outcome so dashboards see zeros instead of missing series.
        for outcome in ["success", "retry", "failed"] {
            metrics.deliveries.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }
}

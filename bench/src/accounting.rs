//! Fire accounting: which fires were expected, which were delivered, which more than once and
//! which never. Pure: it takes what the bench created and what the receiver recorded.
//!
//! A *fire* is a (schedule id, scheduled-for) pair. Every schedule the bench makes fires on a
//! grid, `first + k × period` (an interval schedule anchored at the epoch, or `* * * * *`, which
//! is the 60 s grid in UTC), so the expected set is every grid instant from the schedule's first
//! `next_run_at` up to a cut-off. The cut-off lies a few seconds before the stop, so that fires
//! still legitimately in flight at the stop are neither expected nor blamed.

use std::collections::HashMap;

use serde::Serialize;
use uuid::Uuid;

/// One request as the receiver saw it. Times are microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub arrival_us: i64,
    pub schedule_id: Uuid,
    pub scheduled_for_us: i64,
    pub webhook_id: Uuid,
    pub attempt: u32,
}

/// The fires of one schedule: `first_us + k × period_us`, k ≥ 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub first_us: i64,
    pub period_us: i64,
}

impl Grid {
    /// How many fires fall at or before `cutoff_us`.
    pub fn count_until(&self, cutoff_us: i64) -> u64 {
        if cutoff_us < self.first_us || self.period_us <= 0 {
            return 0;
        }
        ((cutoff_us - self.first_us) / self.period_us) as u64 + 1
    }

    pub fn contains(&self, t_us: i64) -> bool {
        self.period_us > 0 && t_us >= self.first_us && (t_us - self.first_us) % self.period_us == 0
    }
}

/// What happened to one delivered fire.
#[derive(Debug, Clone, Copy)]
struct Seen {
    deliveries: u32,
    first_arrival_us: i64,
    webhook_id: Uuid,
    /// Delivered under more than one webhook-id: two runs were made for one fire.
    several_ids: bool,
}

/// A delivered fire: when it was due and when its first delivery arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveredFire {
    pub scheduled_for_us: i64,
    pub first_arrival_us: i64,
}

impl DeliveredFire {
    pub fn lag_us(&self) -> i64 {
        self.first_arrival_us - self.scheduled_for_us
    }
}

/// The result of matching deliveries against the expected fires.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// Fires due at or before the cut-off.
    pub expected: u64,
    /// Expected fires delivered at least once.
    pub delivered: u64,
    /// Expected fires never delivered.
    pub lost: u64,
    /// Requests that matched an expected fire (first deliveries and repeats).
    pub deliveries: u64,
    /// Fires delivered more than once.
    pub duplicate_fires: u64,
    /// Requests beyond the first of each fire.
    pub extra_deliveries: u64,
    /// Duplicate fires whose repeats all carried the same webhook-id (one run, delivered again:
    /// a retry or a redelivery after a lost lease, which receivers deduplicate).
    pub duplicates_same_webhook_id: u64,
    /// Duplicate fires delivered under two or more webhook-ids (two runs for one fire, which a
    /// receiver deduplicating on webhook-id cannot catch).
    pub duplicates_distinct_webhook_ids: u64,
    /// Requests with `hookbeat-attempt` above 1.
    pub retry_attempts: u64,
    /// Requests for fires after the cut-off (not judged).
    pub beyond_cutoff: u64,
    /// Requests naming a schedule the bench did not create.
    pub unknown_schedule: u64,
    /// Requests whose scheduled-for is not on the schedule's grid (or before its first fire).
    pub off_grid: u64,
    /// Up to ten lost fires, as (schedule id, scheduled-for µs), for looking them up.
    pub lost_examples: Vec<(Uuid, i64)>,
    #[serde(skip)]
    pub fires: Vec<DeliveredFire>,
}

/// Matches `deliveries` against the fires of `grids` due at or before `cutoff_us`.
pub fn account(grids: &HashMap<Uuid, Grid>, deliveries: &[Delivery], cutoff_us: i64) -> Outcome {
    let mut outcome = Outcome {
        expected: grids.values().map(|g| g.count_until(cutoff_us)).sum(),
        ..Outcome::default()
    };
    let mut seen: HashMap<(Uuid, i64), Seen> = HashMap::with_capacity(deliveries.len());
    for d in deliveries {
        if d.attempt > 1 {
            outcome.retry_attempts += 1;
        }
        let Some(grid) = grids.get(&d.schedule_id) else {
            outcome.unknown_schedule += 1;
            continue;
        };
        if d.scheduled_for_us > cutoff_us {
            outcome.beyond_cutoff += 1;
            continue;
        }
        if !grid.contains(d.scheduled_for_us) {
            outcome.off_grid += 1;
            continue;
        }
        outcome.deliveries += 1;
        seen.entry((d.schedule_id, d.scheduled_for_us))
            .and_modify(|s| {
                s.deliveries += 1;
                s.first_arrival_us = s.first_arrival_us.min(d.arrival_us);
                s.several_ids |= s.webhook_id != d.webhook_id;
            })
            .or_insert(Seen {
                deliveries: 1,
                first_arrival_us: d.arrival_us,
                webhook_id: d.webhook_id,
                several_ids: false,
            });
    }
    outcome.delivered = seen.len() as u64;
    outcome.lost = outcome.expected - outcome.delivered;
    for ((_, scheduled_for_us), s) in &seen {
        if s.deliveries > 1 {
            outcome.duplicate_fires += 1;
            outcome.extra_deliveries += u64::from(s.deliveries - 1);
            if s.several_ids {
                outcome.duplicates_distinct_webhook_ids += 1;
            } else {
                outcome.duplicates_same_webhook_id += 1;
            }
        }
        outcome.fires.push(DeliveredFire {
            scheduled_for_us: *scheduled_for_us,
            first_arrival_us: s.first_arrival_us,
        });
    }
    outcome.fires.sort_unstable_by_key(|f| f.scheduled_for_us);
    if outcome.lost > 0 {
        outcome.lost_examples = lost_examples(grids, &seen, cutoff_us, 10);
    }
    outcome
}

/// The earliest lost fires (by scheduled time), at most `limit`.
fn lost_examples(
    grids: &HashMap<Uuid, Grid>,
    seen: &HashMap<(Uuid, i64), Seen>,
    cutoff_us: i64,
    limit: usize,
) -> Vec<(Uuid, i64)> {
    let mut lost = Vec::new();
    for (id, grid) in grids {
        let mut t = grid.first_us;
        while t <= cutoff_us {
            if !seen.contains_key(&(*id, t)) {
                lost.push((*id, t));
                break; // One per schedule is enough to look at.
            }
            t += grid.period_us;
        }
    }
    lost.sort_unstable_by_key(|(id, t)| (*t, *id));
    lost.truncate(limit);
    lost
}

/// The fire rate the schedules ask for once all of them run: Σ 1/period.
pub fn nominal_rate(grids: &HashMap<Uuid, Grid>) -> f64 {
    grids
        .values()
        .filter(|g| g.period_us > 0)
        .map(|g| 1e6 / g.period_us as f64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn delivery(
        schedule: u128,
        at_s: i64,
        arrival_us: i64,
        webhook: u128,
        attempt: u32,
    ) -> Delivery {
        Delivery {
            arrival_us,
            schedule_id: id(schedule),
            scheduled_for_us: at_s * S,
            webhook_id: id(webhook),
            attempt,
        }
    }

    #[test]
    fn grids_count_their_fires_up_to_the_cutoff() {
        let g = Grid {
            first_us: 10 * S,
            period_us: 3 * S,
        };
        // 10, 13, 16, 19 ≤ 20
        assert_eq!(g.count_until(20 * S), 4);
        assert_eq!(g.count_until(19 * S), 4);
        assert_eq!(g.count_until(19 * S - 1), 3);
        assert_eq!(g.count_until(10 * S), 1);
        assert_eq!(g.count_until(9 * S), 0);
        assert!(g.contains(16 * S));
        assert!(!g.contains(17 * S));
        assert!(!g.contains(7 * S));
        let broken = Grid {
            first_us: 0,
            period_us: 0,
        };
        assert_eq!(broken.count_until(S), 0);
        assert!(!broken.contains(0));
    }

    #[test]
    fn duplicates_losses_and_strays_are_told_apart() {
        let grids: HashMap<Uuid, Grid> = [
            (
                id(1),
                Grid {
                    first_us: 100 * S,
                    period_us: S,
                },
            ),
            (
                id(2),
                Grid {
                    first_us: 101 * S,
                    period_us: 2 * S,
                },
            ),
        ]
        .into_iter()
        .collect();
        // Cut-off 104 s: schedule 1 fires 100..=104 (5), schedule 2 fires 101, 103 (2).
        let deliveries = vec![
            delivery(1, 100, 100 * S + 20_000, 10, 1),
            delivery(1, 101, 101 * S + 30_000, 11, 1),
            // A retry of the same run: a duplicate sharing the webhook-id.
            delivery(1, 101, 106 * S, 11, 2),
            delivery(1, 102, 102 * S + 10_000, 12, 1),
            // 103 lost.
            delivery(1, 104, 104 * S + 50_000, 14, 1),
            delivery(1, 105, 105 * S, 15, 1), // beyond the cut-off
            delivery(2, 101, 101 * S + 5_000, 20, 1),
            // Two runs for one fire: distinct webhook-ids. The later one arrived first.
            delivery(2, 103, 103 * S + 90_000, 21, 1),
            delivery(2, 103, 103 * S + 40_000, 22, 1),
            delivery(2, 102, 102 * S, 23, 1), // off the grid
            delivery(3, 100, 100 * S, 30, 1), // not ours
        ];
        let outcome = account(&grids, &deliveries, 104 * S);
        assert_eq!(outcome.expected, 7);
        assert_eq!(outcome.delivered, 6);
        assert_eq!(outcome.lost, 1);
        assert_eq!(outcome.lost_examples, vec![(id(1), 103 * S)]);
        assert_eq!(outcome.deliveries, 8);
        assert_eq!(outcome.duplicate_fires, 2);
        assert_eq!(outcome.extra_deliveries, 2);
        assert_eq!(outcome.duplicates_same_webhook_id, 1);
        assert_eq!(outcome.duplicates_distinct_webhook_ids, 1);
        assert_eq!(outcome.retry_attempts, 1);
        assert_eq!(outcome.beyond_cutoff, 1);
        assert_eq!(outcome.off_grid, 1);
        assert_eq!(outcome.unknown_schedule, 1);
        // Lag counts from the first arrival of each fire.
        let mut lags: Vec<i64> = outcome.fires.iter().map(DeliveredFire::lag_us).collect();
        lags.sort_unstable();
        assert_eq!(lags, vec![5_000, 10_000, 20_000, 30_000, 40_000, 50_000]);
    }

    #[test]
    fn nominal_rate_sums_the_frequencies() {
        let grids: HashMap<Uuid, Grid> = (1..=5)
            .map(|k| {
                (
                    id(k),
                    Grid {
                        first_us: 0,
                        period_us: k as i64 * S,
                    },
                )
            })
            .collect();
        // 1 + 1/2 + 1/3 + 1/4 + 1/5
        assert!((nominal_rate(&grids) - 2.283_333).abs() < 1e-6);
    }
}

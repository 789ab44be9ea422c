//! The live view of a run: the deliveries recorded since the last look, for the progress bar and
//! for deciding when a scenario may stop (every expected fire up to the cut-off has arrived).
//! The exact accounting is done once at the end by [`crate::accounting`].

use std::collections::HashSet;
use std::sync::Arc;

use uuid::Uuid;

use crate::receiver::Recorded;

pub struct Monitor {
    recorded: Arc<Recorded>,
    cursor: usize,
    fires: HashSet<(Uuid, i64)>,
    cutoff_us: i64,
    fires_until_cutoff: u64,
}

/// What arrived since the previous look.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fresh {
    pub deliveries: usize,
    pub max_lag_ms: i64,
}

impl Monitor {
    pub fn new(recorded: Arc<Recorded>) -> Self {
        Self {
            recorded,
            cursor: 0,
            fires: HashSet::new(),
            cutoff_us: i64::MAX,
            fires_until_cutoff: 0,
        }
    }

    /// Takes in the deliveries recorded since the last call.
    pub fn poll(&mut self) -> Fresh {
        let fresh = self.recorded.since(self.cursor);
        self.cursor += fresh.len();
        let mut out = Fresh {
            deliveries: fresh.len(),
            max_lag_ms: 0,
        };
        for d in fresh {
            out.max_lag_ms = out
                .max_lag_ms
                .max((d.arrival_us - d.scheduled_for_us) / 1000);
            if self.fires.insert((d.schedule_id, d.scheduled_for_us))
                && d.scheduled_for_us <= self.cutoff_us
            {
                self.fires_until_cutoff += 1;
            }
        }
        out
    }

    /// Counts from now on only fires scheduled at or before `cutoff_us`.
    pub fn set_cutoff(&mut self, cutoff_us: i64) {
        self.cutoff_us = cutoff_us;
        self.fires_until_cutoff = self.fires.iter().filter(|(_, t)| *t <= cutoff_us).count() as u64;
    }

    /// Distinct fires delivered, scheduled at or before the cut-off.
    pub fn fires_until_cutoff(&self) -> u64 {
        self.fires_until_cutoff
    }

    pub fn deliveries(&self) -> usize {
        self.cursor
    }
}

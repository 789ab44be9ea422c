//! The waiting room: runs a politeness limit refused, or fires leased as they were made beyond
//! the free delivery slots, kept by the worker that holds their lease until their tenant and
//! host have a place and a slot is free, instead of handed back to the database and claimed
//! again (two writes and two round trips per run, and the hand-back's delay). A run waits at
//! most [`WaitingRoom::hold_limit`]; one that waited longer, or finds the room full, is handed
//! back, so a slow host's backlog returns to the queue for every worker to share. No I/O.

use std::collections::VecDeque;
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

/// A run in the room, with when it was first refused.
pub(super) struct Waiting<T> {
    pub run: T,
    pub since: DateTime<Utc>,
}

impl<T> Waiting<T> {
    /// A run taken in at `now`, not refused yet.
    pub(super) fn new(run: T, now: DateTime<Utc>) -> Self {
        Self { run, since: now }
    }
}

/// What leaves the room at a pass: the runs to admit again, and those that waited too long.
pub(super) struct Leaving<T> {
    pub ready: Vec<Waiting<T>>,
    pub overdue: Vec<T>,
}

pub(super) struct WaitingRoom<T> {
    held: Mutex<VecDeque<Waiting<T>>>,
    capacity: usize,
    hold_limit: Duration,
}

impl<T> WaitingRoom<T> {
    /// A room for `capacity` runs, each kept at most `hold_limit`.
    pub(super) fn new(capacity: usize, hold_limit: Duration) -> Self {
        Self {
            held: Mutex::new(VecDeque::with_capacity(capacity)),
            capacity,
            hold_limit,
        }
    }

    /// Keeps the refused runs, in order, as far as there is room; returns those that do not fit.
    pub(super) fn hold(&self, refused: Vec<Waiting<T>>) -> Vec<T> {
        let mut held = self.held.lock().expect("waiting room poisoned");
        let mut overflow = Vec::new();
        for waiting in refused {
            if held.len() < self.capacity {
                held.push_back(waiting);
            } else {
                overflow.push(waiting.run);
            }
        }
        overflow
    }

    /// Empties the room: the runs refused no longer than the hold limit before `now`, oldest
    /// first, and the rest.
    pub(super) fn leave(&self, now: DateTime<Utc>) -> Leaving<T> {
        let held = std::mem::take(&mut *self.held.lock().expect("waiting room poisoned"));
        let (ready, overdue): (Vec<_>, Vec<_>) = held
            .into_iter()
            .partition(|waiting| now - waiting.since <= self.hold_limit);
        Leaving {
            ready,
            overdue: overdue.into_iter().map(|waiting| waiting.run).collect(),
        }
    }

    /// Empties the room (the worker stops, or a test pass ends).
    pub(super) fn empty(&self) -> Vec<T> {
        let held = std::mem::take(&mut *self.held.lock().expect("waiting room poisoned"));
        held.into_iter().map(|waiting| waiting.run).collect()
    }

    /// How many more runs the room can take.
    pub(super) fn free(&self) -> usize {
        self.capacity.saturating_sub(self.len())
    }

    pub(super) fn len(&self) -> usize {
        self.held.lock().expect("waiting room poisoned").len()
    }

    /// How long a run may wait.
    pub(super) fn hold_limit(&self) -> Duration {
        self.hold_limit
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    use super::{Waiting, WaitingRoom};

    fn at(millis: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + millis).unwrap()
    }

    #[test]
    fn refused_runs_wait_in_order_until_the_room_is_full() {
        let room = WaitingRoom::new(2, Duration::seconds(5));
        let overflow = room.hold(vec![
            Waiting::new("a", at(0)),
            Waiting::new("b", at(0)),
            Waiting::new("c", at(0)),
        ]);
        assert_eq!(overflow, vec!["c"]);
        assert_eq!(room.len(), 2);
        let leaving = room.leave(at(10));
        let ready: Vec<&str> = leaving.ready.iter().map(|w| w.run).collect();
        assert_eq!(ready, vec!["a", "b"]);
        assert!(leaving.overdue.is_empty());
        assert_eq!(room.len(), 0, "leaving empties the room");
    }

    #[test]
    fn a_run_that_waited_past_the_limit_leaves_as_overdue_and_keeps_its_first_refusal() {
        let room = WaitingRoom::new(8, Duration::seconds(5));
        room.hold(vec![Waiting::new("old", at(0))]);
        // Refused again at a later pass: it goes back with its first refusal's time.
        let again = room.leave(at(3_000)).ready;
        room.hold(again);
        room.hold(vec![Waiting::new("new", at(4_000))]);
        let leaving = room.leave(at(5_001));
        assert_eq!(leaving.overdue, vec!["old"]);
        let ready: Vec<&str> = leaving.ready.iter().map(|w| w.run).collect();
        assert_eq!(ready, vec!["new"]);
    }

    #[test]
    fn emptying_gives_every_run_back() {
        let room = WaitingRoom::new(8, Duration::seconds(5));
        room.hold(vec![Waiting::new(1, at(0)), Waiting::new(2, at(0))]);
        assert_eq!(room.empty(), vec![1, 2]);
        assert_eq!(room.len(), 0);
    }
}
